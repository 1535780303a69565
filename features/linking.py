"""Link 110 incidents to the registry: the caller (a person) and the place (a household).

An incident carries what the caller said, not keys: a name or a title (张女士), a
phone and an ID number that are whole, masked (``135****9668``,
``1505**********2829``) or missing, and a location as spoken ("4-1-302",
"XX小区门口", a misspelt compound, a street corner). Everything downstream (the
household risk ranking, repeat-call counts, escalation labels) needs registry
keys, so this module turns that evidence into ``person_id`` / ``household_id``
with the method that produced each link. ``docs/linking.md`` has the measured
precision and recall and the decisions behind the rules.

This module is the entry point (:func:`link_incidents`), the registry as the
linker keeps it, and the statistics; the work is in three parts:
``features/linking_text.py`` normalises what callers say (names, titles,
identifiers, spoken locations), ``features/linking_persons.py`` finds the
caller, ``features/linking_places.py`` the place.

Design rules:

* **A wrong link costs more than a missing one.** A wrong household sends
  officers to the wrong family's door and pollutes that family's history, so a
  link is made only when the evidence leaves exactly one candidate; ties stay
  unlinked and are counted.
* **Vectorised.** Every step is a merge on normalised, integer-coded keys (or a
  bigram merge for the fuzzy fallback), never a loop over the registry per
  incident.
* **No personal data leaves.** Nothing here logs; exceptions name columns only;
  ``stats`` holds counts and shares.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from features.linking_persons import AREA_MAX_COINCIDENCES, _Evidence, _link_persons, _lookup, _Persons
from features.linking_places import _AddressMatch, _match_addresses, _Places
from features.linking_text import _STR, HOMOPHONES, fold_homophones, parse_location

__all__ = [
    "AREA_MAX_COINCIDENCES",
    "HOMOPHONES",
    "HOUSEHOLD_CONFIDENCE",
    "HOUSEHOLD_METHODS",
    "PERSON_CONFIDENCE",
    "REQUIRED_COLUMNS",
    "LinkRegistry",
    "LinkResult",
    "fold_homophones",
    "link_incidents",
    "link_quality",
    "link_registry",
    "link_stats",
    "parse_location",
]

REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "incidents": ("incident_id", "caller_name", "caller_phone", "caller_id_number", "location_text", "station_id"),
    "persons": ("person_id", "id_number", "name", "sex", "phone", "household_id"),
    "households": ("household_id", "address_id"),
    "addresses": (
        "address_id",
        "county_code",
        "county_name",
        "station_id",
        "township",
        "community",
        "building",
        "unit",
        "room",
        "house_no",
    ),
}

HOUSEHOLD_METHODS = ("address", "fuzzy_address", "caller")

PERSON_CONFIDENCE: dict[str, float] = {
    "id": 0.99,
    "phone": 0.99,
    "masked_id+masked_phone": 0.99,
    "masked_id+masked_phone+name": 0.99,
    "masked_id+name": 0.99,
    "masked_phone+name": 0.99,
    "masked_id+name+area": 0.99,
    "masked_id+masked_phone+area": 0.99,
    "masked_id+masked_phone+name+area": 0.99,
    "masked_phone+name+area": 0.99,
    "masked_phone+area": 0.98,
    "masked_id+area": 0.95,
}
"""Prior precision of a caller link per ``person_method``: the lowest precision measured on the
simulated cities of docs/linking.md (100k, 1M, 2.87M persons), rounded down and capped at 0.99 (a
simulator makes no typing errors in IDs and has no shared family phones); 0.95 where a method was
seen too rarely to measure. A prior for ranking and thresholds, not a guarantee for a real export."""

HOUSEHOLD_CONFIDENCE: dict[str, float] = {
    "address": 0.99,
    "fuzzy_address": 0.95,
    "caller": 0.98,
    "caller_in_named_compound": 0.94,
}
"""Prior precision of a household link (``links.confidence``), measured as for
:data:`PERSON_CONFIDENCE`. ``fuzzy_address`` is set below its measured 1.0 because the simulator's
misspellings are all in the homophone table; the bigram fallback links a compound unknown to the
registry about 2 times in 1,000 (docs/linking.md). ``caller`` is multiplied by the caller link's
:data:`PERSON_CONFIDENCE`; ``caller_in_named_compound`` applies when the place is the caller's own
compound named without a room (XX小区门口), where neighbours calling about the flat next door make the
caller's household a worse guess than for a street or a shop."""


@dataclass(frozen=True)
class LinkResult:
    """Links (one row per input incident, in input order, with its index) and how they were made.

    ``links`` columns: ``incident_id``; ``person_id`` (the caller, nullable) and ``person_method``;
    ``household_id`` (the household the incident is about, nullable) and ``household_method``
    (``address`` | ``fuzzy_address`` | ``caller`` | None); ``address_id`` (nullable); ``confidence``,
    the prior precision of the household link (0 when there is none, see
    :data:`HOUSEHOLD_CONFIDENCE`; the caller link's own prior is ``PERSON_CONFIDENCE[person_method]``).
    ``stats`` holds counts and shares only, never a value from a record.
    """

    links: pd.DataFrame
    stats: dict[str, int | float] = field(default_factory=dict)
    detail: pd.DataFrame | None = field(default=None, repr=False, compare=False)
    """Per incident, what :func:`link_stats` counts (``DETAIL_COLUMNS``): kept so that links cached per
    incident (pipelines/incident_cache.py) give the same ``stats`` as linking every incident again."""


# --------------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LinkRegistry:
    """The registry as the linker reads it: persons and places normalised once, independent of any incident.

    Built by :func:`link_registry`; :meth:`tables` and :meth:`from_tables` let a cache keep it per
    registry (pipelines/incident_cache.py), since normalising 2.87M persons costs more than a day's
    calls.
    """

    persons: _Persons
    places: _Places

    def tables(self) -> dict[str, pd.DataFrame]:
        """``persons`` and ``places``: plain frames from which :meth:`from_tables` rebuilds the registry."""
        return {"persons": self.persons.table(), "places": self.places.table()}

    @classmethod
    def from_tables(cls, tables: dict[str, pd.DataFrame]) -> LinkRegistry:
        return cls(_Persons.from_table(tables["persons"]), _Places.from_table(tables["places"]))


def link_registry(persons: pd.DataFrame, households: pd.DataFrame, addresses: pd.DataFrame) -> LinkRegistry:
    """The persons, households and addresses normalised for :func:`link_incidents` (``registry=``)."""
    for frame, table in ((persons, "persons"), (households, "households"), (addresses, "addresses")):
        _require(frame, table)
    return LinkRegistry(_Persons(persons, households, addresses), _Places(addresses))


def _require(frame: pd.DataFrame, table: str) -> None:
    missing = [c for c in REQUIRED_COLUMNS[table] if c not in frame.columns]
    if missing:
        raise ValueError(f"link_incidents: table '{table}' lacks column(s) {', '.join(missing)}")


def link_incidents(
    incidents: pd.DataFrame,
    persons: pd.DataFrame,
    households: pd.DataFrame,
    addresses: pd.DataFrame,
    *,
    fuzzy_min: float = 0.75,
    fuzzy_margin: float = 0.15,
    registry: LinkRegistry | None = None,
) -> LinkResult:
    """Link every incident to its caller (a person) and to the household it is about.

    Person: exact ID; then exact phone (unless a masked ID or the name contradicts it); then a
    masked ID / masked phone narrowed by the other masked identifier, the name (full name, or the
    surname and the sex of 女士/先生) and the station's area, linked only when exactly one person is
    left (the area only where a chance match there is unlikely, :data:`AREA_MAX_COINCIDENCES`).

    Household: the spoken address parsed and matched on (compound, building, unit, room) or
    (village, house number) within the incident's county: exact name, then near-homophones folded,
    then character-bigram Dice (``fuzzy_min``, and ``fuzzy_margin`` over the runner-up). If the place
    is not a home address (street, shop, compound without a room, missing), the caller's household,
    provided it lies in the incident's county. A home address that is not in the registry is not
    replaced by the caller's household. Unlinked incidents stay, with null ids, and are counted.

    ``registry``: the same persons, households and addresses already normalised
    (:func:`link_registry`, or a copy kept per registry by pipelines/incident_cache.py); without it
    they are normalised here. Everything registry-wide is either in it or restricted to the keys of
    this batch, so linking a day's 900 calls does not cost the millions of registry rows again.
    """
    for frame, table in (
        (incidents, "incidents"),
        (persons, "persons"),
        (households, "households"),
        (addresses, "addresses"),
    ):
        _require(frame, table)
    n = len(incidents)

    ev = _Evidence(incidents)
    if registry is None:
        registry = link_registry(persons, households, addresses)
    reg = registry.persons.for_batch()
    person, person_method, person_ambiguous = _link_persons(ev, reg)
    has_person = person >= 0

    places = registry.places
    loc = parse_location(incidents["location_text"].reset_index(drop=True), places.county_names)
    said = _lookup(loc["county_name"], places.county_of_name).to_numpy(dtype=object)
    by_station = _lookup(pd.Series(ev.keys["area"]), places.county_of_station).to_numpy(dtype=object)
    county = np.where(pd.notna(said), said, by_station)
    match = _match_addresses(loc, county, ev.keys["area"], places, fuzzy_min, fuzzy_margin)

    # Address -> household: the one household living there, or the caller's among several.
    aidx = match.aidx
    at_address = aidx >= 0
    address_id = np.full(n, None, dtype=object)
    address_id[at_address] = places.addresses["address_id"].take(aidx[at_address]).to_numpy(dtype=object)
    hh = households[["household_id", "address_id"]].dropna()
    hh_here = hh[hh["address_id"].isin(address_id[at_address])]  # the same groups, of this batch's addresses only
    per_address = hh_here.groupby("address_id")["household_id"].agg(["size", "first"])
    info = per_address.reindex(address_id[at_address])
    rows = np.flatnonzero(at_address)
    household = np.full(n, None, dtype=object)
    single = info["size"].to_numpy() == 1
    household[rows[single]] = info["first"].to_numpy(dtype=object)[single]
    caller_household = np.full(n, None, dtype=object)
    caller_household[has_person] = reg.household_id.take(person[has_person]).to_numpy(dtype=object)
    several = rows[info["size"].fillna(0).to_numpy() > 1]
    if len(several):
        pairs = pd.DataFrame(
            {"row": several, "address_id": address_id[several], "household_id": caller_household[several]}
        )
        ok = pairs.merge(hh_here, on=["address_id", "household_id"])["row"].to_numpy()
        household[ok] = caller_household[ok]
    household_method = np.where(pd.notna(household), match.method, None).astype(object)

    # Caller fallback: the place is not a home address, and the caller's household is in its county
    # and, when the place is a registry compound named without a room, in that compound.
    callers = hh[hh["household_id"].isin(caller_household[has_person])]
    address_of = callers.drop_duplicates("household_id").set_index("household_id")["address_id"]
    addresses_here = places.addresses[places.addresses["address_id"].isin(address_of.to_numpy())]
    caller_aidx = _lookup(
        _lookup(pd.Series(caller_household), address_of), addresses_here.set_index("address_id")["aidx"]
    ).to_numpy()
    caller_aidx = np.where(pd.notna(caller_aidx), caller_aidx, -1).astype(np.int64)
    known = caller_aidx >= 0
    caller_county = np.full(n, None, dtype=object)
    caller_county[known] = places.addresses["county_code"].take(caller_aidx[known]).to_numpy(dtype=object)
    caller_ck = np.where(known, places.addresses["ck"].to_numpy()[caller_aidx], -1)
    not_home = np.isin(loc["kind"].to_numpy(), ["place", "missing"])
    same_county = pd.isna(county) | (caller_county == county)
    elsewhere = (match.named_ck >= 0) & (caller_ck != match.named_ck)
    fallback = not_home & has_person & pd.isna(household) & same_county & ~elsewhere & ~at_address
    household[fallback] = caller_household[fallback]
    household_method[fallback] = "caller"
    in_named = fallback & (match.named_ck >= 0)

    confidence = np.zeros(n, dtype=float)
    for m in ("address", "fuzzy_address"):
        confidence[household_method == m] = HOUSEHOLD_CONFIDENCE[m]
    person_conf = np.array([PERSON_CONFIDENCE.get(m, 0.5) if m else 0.0 for m in person_method], dtype=float)
    prior = np.where(in_named, HOUSEHOLD_CONFIDENCE["caller_in_named_compound"], HOUSEHOLD_CONFIDENCE["caller"])
    confidence[fallback] = (prior * person_conf)[fallback]

    links = pd.DataFrame(
        {
            "incident_id": incidents["incident_id"].to_numpy(),
            "person_id": np.where(has_person, reg.person_id.take(np.maximum(person, 0)).to_numpy(dtype=object), None),
            "person_method": person_method,
            "household_id": household,
            "household_method": household_method,
            "address_id": address_id,
            "confidence": confidence.round(4),
        },
        index=incidents.index,
    )
    for col in ("incident_id", "person_id", "person_method", "household_id", "household_method", "address_id"):
        links[col] = links[col].astype(_STR)
    detail = pd.DataFrame(
        {
            "kind": loc["kind"].to_numpy(dtype=object),
            "person_ambiguous": person_ambiguous,
            "address_found": match.aidx >= 0,
            "bigram": match.bigram,
            "address_ambiguous": match.ambiguous,
            "named_compound": match.named_ck >= 0,
            "fallback": fallback,
            "in_named": in_named,
            "could_fall_back": not_home & has_person,
        },
        index=incidents.index,
    )
    return LinkResult(links=links, stats=link_stats(links, detail), detail=detail)


DETAIL_COLUMNS = (
    "kind",
    "person_ambiguous",
    "address_found",
    "bigram",
    "address_ambiguous",
    "named_compound",
    "fallback",
    "in_named",
    "could_fall_back",
)
"""Columns of ``LinkResult.detail``: the location kind and the per-incident flags :func:`link_stats` counts."""


def link_stats(links: pd.DataFrame, detail: pd.DataFrame) -> dict[str, int | float]:
    """``LinkResult.stats`` from the links and their per-incident ``detail`` (any subset, any order of rows)."""
    flag = {c: detail[c].to_numpy(dtype=bool) for c in DETAIL_COLUMNS if c != "kind"}
    match = _AddressMatch(
        aidx=np.where(flag["address_found"], 0, -1),
        method=np.full(len(detail), None, dtype=object),
        bigram=flag["bigram"],
        ambiguous=flag["address_ambiguous"],
        named_ck=np.where(flag["named_compound"], 0, -1),
    )
    kind = detail["kind"].to_numpy(dtype=object)
    return _stats(
        links, kind, flag["person_ambiguous"], match, flag["fallback"], flag["in_named"], flag["could_fall_back"]
    )


def _stats(
    links: pd.DataFrame,
    kind: np.ndarray,
    person_ambiguous: np.ndarray,
    match: _AddressMatch,
    fallback: np.ndarray,
    in_named: np.ndarray,
    could_fall_back: np.ndarray,
) -> dict[str, int | float]:
    """Counts per method, unlinked counts and shares; never a value from a record."""
    n = len(links)

    def share(k: int) -> float:
        return round(k / n, 4) if n else 0.0

    stats: dict[str, int | float] = {"incidents": n}
    for side in ("person", "household"):
        linked = int(links[f"{side}_id"].notna().sum())
        stats[f"{side}_linked"] = linked
        stats[f"{side}_unlinked"] = n - linked
        stats[f"{side}_unlinked_share"] = share(n - linked)
        for method, k in links[f"{side}_method"].value_counts().sort_index().items():
            stats[f"{side}_method.{method}"] = int(k)
            stats[f"{side}_share.{method}"] = share(int(k))
    stats["person_ambiguous"] = int(person_ambiguous.sum())
    for k in ("urban", "rural", "place", "missing"):
        stats[f"location.{k}"] = int((kind == k).sum())
    home = np.isin(kind, ["urban", "rural"])
    stats["address_linked"] = int(links["address_id"].notna().sum())
    stats["address_fuzzy_bigram"] = int(match.bigram.sum())
    stats["address_ambiguous"] = int(match.ambiguous.sum())
    stats["address_not_found"] = int((home & (match.aidx < 0) & ~match.ambiguous).sum())
    stats["address_without_household"] = int((links["address_id"].notna() & links["household_id"].isna()).sum())
    stats["place_is_registry_compound"] = int((match.named_ck >= 0).sum())
    stats["caller_in_named_compound"] = int(in_named.sum())
    stats["caller_fallback_refused"] = int((could_fall_back & ~fallback).sum())
    return stats


# --------------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------------


def _scores(frame: pd.DataFrame, total: int | None = None) -> dict[str, int | float]:
    """n, linked, correct, precision (correct / linked) and recall (correct / ``total``, default n)."""
    n = len(frame)
    linked = int(frame["linked"].sum())
    correct = int(frame["correct"].sum())
    total = n if total is None else total
    return {
        "n": n,
        "linked": linked,
        "correct": correct,
        "precision": round(correct / linked, 4) if linked else float("nan"),
        "recall": round(correct / total, 4) if total else float("nan"),
    }


def link_quality(links: pd.DataFrame, truth_incidents: pd.DataFrame) -> dict[str, Any]:
    """Precision and recall of the links against known truth: overall, per method, per caller role.

    ``truth_incidents`` needs ``incident_id``, ``caller_person_id`` and ``place_household_id``;
    ``caller_role`` is optional. For ``person`` and ``household``:

    * ``overall``: precision = correct / linked, recall = correct / incidents with a known true id;
    * ``by_method``: per method, precision of its links and its contribution to the overall recall
      (correct by this method / all incidents; the contributions add up to the overall recall);
    * ``unlinked``: incidents without a link;
    * ``by_caller_role``: overall figures within each true caller role (party, family_member,
      neighbor, passerby), when the truth has it.

    The caller passes the truth in; this module never loads it.
    """
    cols = ["incident_id", "caller_person_id", "place_household_id"]
    by_role = "caller_role" in truth_incidents.columns
    truth = truth_incidents[cols + (["caller_role"] if by_role else [])].drop_duplicates("incident_id")
    merged = links.reset_index(drop=True).merge(truth, on="incident_id", how="left", validate="many_to_one")
    out: dict[str, Any] = {}
    for side, true_col in (("person", "caller_person_id"), ("household", "place_household_id")):
        frame = merged[merged[true_col].notna()]
        pred = frame[f"{side}_id"].astype(object)
        scored = pd.DataFrame(
            {
                "linked": pred.notna().to_numpy(),
                "correct": (pred.to_numpy() == frame[true_col].astype(object).to_numpy()) & pred.notna().to_numpy(),
                "method": frame[f"{side}_method"].astype(object).fillna("unlinked").to_numpy(),
                "role": frame["caller_role"].astype(object).to_numpy() if by_role else "all",
            }
        )
        total = len(scored)
        result: dict[str, Any] = {"overall": _scores(scored)}
        linked = scored[scored["linked"]]
        result["by_method"] = {m: _scores(g, total) for m, g in linked.groupby("method", sort=True)}
        result["unlinked"] = int((~scored["linked"]).sum())
        if by_role:
            result["by_caller_role"] = {r: _scores(g) for r, g in scored.groupby("role", sort=True)}
        out[side] = result
    return out

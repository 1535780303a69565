"""Linking the spoken place to a registry address: compounds and villages, their spoken variants, fuzzy names.

Part of features/linking.py (the entry point and the design rules).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.linking_text import _nfkc, fold_homophones

# --------------------------------------------------------------------------------------------------
# Places
# --------------------------------------------------------------------------------------------------


class _Places:
    """Registry compounds and villages with the spoken variants of their names, and the address keys."""

    def __init__(self, addresses: pd.DataFrame) -> None:
        src = addresses.reset_index(drop=True)
        a = pd.DataFrame(
            {
                "address_id": src["address_id"].array,
                "county_code": _nfkc(src["county_code"]).array,
                "county_name": _nfkc(src["county_name"]).array,
                "station_id": _nfkc(src["station_id"]).array,
                "township": _nfkc(src["township"]).fillna("").array,
                "community": _nfkc(src["community"]).fillna("").array,
            }
        )
        for col in ("building", "unit", "room", "house_no"):
            a[col] = pd.to_numeric(src[col], errors="coerce").astype("Int64")
        a["aidx"] = np.arange(len(a))
        a["ck"] = a.groupby(["county_code", "township", "community"], sort=False).ngroup().to_numpy()
        self._finish(a)

    @classmethod
    def from_table(cls, table: pd.DataFrame) -> _Places:
        """The places from :meth:`table` (the normalised addresses), without normalising them again."""
        self = cls.__new__(cls)
        self._finish(table.reset_index(drop=True))
        return self

    def table(self) -> pd.DataFrame:
        """The normalised addresses with their compound code ``ck``: everything else is derived from them."""
        return self.addresses

    def _finish(self, a: pd.DataFrame) -> None:
        self.addresses = a
        self.county_names = tuple(a["county_name"].dropna().unique().tolist())
        self.county_of_name = a.drop_duplicates("county_name").set_index("county_name")["county_code"]
        first = a.drop_duplicates("station_id")
        self.county_of_station = first.set_index("station_id")["county_code"]
        comm = a.drop_duplicates("ck")[["ck", "county_code", "township", "community"]]
        town_short = comm["township"].str.replace(r"(?:街道|镇|乡|苏木)$", "", regex=True)
        variants = pd.concat(
            [
                comm.assign(text=comm["community"]),
                comm.assign(text=comm["township"] + comm["community"]),
                comm.assign(text=town_short + comm["community"]),
            ],
            ignore_index=True,
        )[["ck", "county_code", "text"]]
        variants = variants[variants["text"] != ""].drop_duplicates(["ck", "text"]).reset_index(drop=True)
        variants["folded"] = fold_homophones(variants["text"]).to_numpy()
        variants["vid"] = np.arange(len(variants))
        self.variants = variants
        self.urban_keys = a.dropna(subset=["building", "unit", "room"])[
            ["ck", "building", "unit", "room", "aidx", "station_id"]
        ]
        self.rural_keys = a.dropna(subset=["house_no"])[["ck", "house_no", "aidx", "station_id"]]
        self._bigrams: pd.DataFrame | None = None

    def bigrams(self) -> pd.DataFrame:
        """(county_code, ck, vid, gram, n_grams) of the folded name variants, built on first use."""
        if self._bigrams is None:
            grams = _bigrams(self.variants["folded"])
            v = self.variants
            self._bigrams = grams.assign(
                vid=v["vid"].to_numpy()[grams["sid"]],
                ck=v["ck"].to_numpy()[grams["sid"]],
                county_code=v["county_code"].to_numpy()[grams["sid"]],
            ).drop(columns="sid")
        return self._bigrams


def _bigrams(strings: pd.Series) -> pd.DataFrame:
    """Distinct character bigrams of ``^text$`` per string: (sid, gram, n_grams)."""
    sid: list[int] = []
    grams: list[str] = []
    sizes: list[int] = []
    for i, s in enumerate(strings.fillna("").tolist()):
        padded = f"^{s}$"
        distinct = {padded[j : j + 2] for j in range(len(padded) - 1)}
        sid.extend([i] * len(distinct))
        grams.extend(distinct)
        sizes.extend([len(distinct)] * len(distinct))
    return pd.DataFrame({"sid": np.array(sid, dtype=np.int64), "gram": grams, "n_grams": sizes})


def _pick_address(cand: pd.DataFrame, station: np.ndarray) -> tuple[pd.Series, np.ndarray]:
    """One address per row from (row, aidx, station_id) candidates: the only one, or the only one at
    the incident's station. Returns the chosen aidx per resolved row and the rows left ambiguous."""
    if cand.empty:
        return pd.Series(dtype=np.int64), np.empty(0, np.int64)
    cand = cand.drop_duplicates(["row", "aidx"])
    size = cand.groupby("row")["aidx"].transform("size").to_numpy()
    same = cand["station_id"].to_numpy() == station[cand["row"].to_numpy()]
    n_same = pd.Series(same).groupby(cand["row"].to_numpy()).transform("sum").to_numpy()
    keep = (size == 1) | (same & (n_same == 1))
    chosen = cand[keep].drop_duplicates("row").set_index("row")["aidx"]
    return chosen, np.setdiff1d(cand["row"].unique(), chosen.index.to_numpy())


@dataclass
class _AddressMatch:
    aidx: np.ndarray  # registry address position per incident, -1 when none
    method: np.ndarray  # 'address' | 'fuzzy_address' | None
    bigram: np.ndarray  # matched through the bigram stage (a subset of fuzzy_address)
    ambiguous: np.ndarray  # a home address with several equally good registry addresses
    named_ck: np.ndarray  # compound named without a room (-1 when none or not a registry compound)


def _match_addresses(
    loc: pd.DataFrame, county: np.ndarray, station: np.ndarray, places: _Places, fuzzy_min: float, fuzzy_margin: float
) -> _AddressMatch:
    """Address per incident: exact name variant, then homophone-folded name, then bigram similarity.

    Every stage is restricted to the incident's county (the county said in the text, else the
    station's) and needs the building/unit/room or house number to exist in the candidate compound,
    so a similar-sounding compound without that room cannot match.
    """
    n = len(loc)
    kind = loc["kind"].to_numpy()
    home = np.isin(kind, ["urban", "rural"])
    m = _AddressMatch(
        aidx=np.full(n, -1, dtype=np.int64),
        method=np.full(n, None, dtype=object),
        bigram=np.zeros(n, dtype=bool),
        ambiguous=np.zeros(n, dtype=bool),
        named_ck=np.full(n, -1, dtype=np.int64),
    )
    urban_cols = {c: loc[c].to_numpy() for c in ("building", "unit", "room", "house_no")}

    def name_hits(rows: np.ndarray, text: np.ndarray, column: str) -> pd.DataFrame:
        left = pd.DataFrame({"row": rows, "text": text[rows], "county_code": county[rows]}).dropna(subset=["text"])
        v = places.variants[["ck", "county_code", column]].rename(columns={column: "text"})
        hits = left.merge(v, on="text", how="inner", suffixes=("", "_reg"))
        own = (hits["county_code_reg"].to_numpy() == hits["county_code"].to_numpy()) | hits["county_code"].isna()
        return hits[own.to_numpy(dtype=bool)][["row", "ck"]].drop_duplicates()

    def with_keys(hits: pd.DataFrame) -> pd.DataFrame:
        rows = hits["row"].to_numpy()
        h = hits.assign(kind=kind[rows], **{c: v[rows] for c, v in urban_cols.items()})
        u = h[h["kind"] == "urban"].drop(columns="house_no")
        r = h[h["kind"] == "rural"].drop(columns=["building", "unit", "room"])
        for frame, cols in ((u, ["building", "unit", "room"]), (r, ["house_no"])):
            for c in cols:
                frame[c] = frame[c].astype("Int64")
        urban_keys = places.urban_keys[np.isin(places.urban_keys["ck"].to_numpy(), u["ck"].to_numpy())]
        rural_keys = places.rural_keys[np.isin(places.rural_keys["ck"].to_numpy(), r["ck"].to_numpy())]
        found = pd.concat(
            [
                u.merge(urban_keys, on=["ck", "building", "unit", "room"]),
                r.merge(rural_keys, on=["ck", "house_no"]),
            ],
            ignore_index=True,
        )
        return found

    place = loc["place"].reset_index(drop=True)
    texts = {"text": place.to_numpy(dtype=object), "folded": fold_homophones(place).to_numpy(dtype=object)}
    todo = home.copy()
    for label, column in (("address", "text"), ("fuzzy_address", "folded")):
        rows = np.flatnonzero(todo)
        hits = name_hits(rows, texts[column], column)
        chosen, amb = _pick_address(with_keys(hits), station)
        m.aidx[chosen.index.to_numpy()] = chosen.to_numpy()
        m.method[chosen.index.to_numpy()] = label
        m.ambiguous[amb] = True
        # A compound found by name that lacks the room means a wrong room, not a misspelt name:
        # looking further (folded, fuzzy) could only find a different compound.
        todo[hits["row"].to_numpy()] = False
        todo &= m.aidx < 0

    # Bigram Dice on folded names within the county; the best must be clear of the runner-up.
    rows = np.flatnonzero(todo & pd.notna(county))
    if len(rows):
        grams = _bigrams(pd.Series(texts["folded"][rows]))
        grams["row"] = rows[grams["sid"].to_numpy()]
        grams["county_code"] = county[grams["row"].to_numpy()]
        pairs = grams.merge(places.bigrams(), on=["county_code", "gram"], suffixes=("_q", "_r"))
        if not pairs.empty:
            shared = pairs.groupby(["row", "vid"], sort=False).agg(
                shared=("gram", "size"), nq=("n_grams_q", "first"), nr=("n_grams_r", "first"), ck=("ck", "first")
            )
            shared["score"] = 2.0 * shared["shared"] / (shared["nq"] + shared["nr"])
            best = shared.reset_index().groupby(["row", "ck"], sort=False)["score"].max().reset_index()
            found = with_keys(best[best["score"] >= fuzzy_min - fuzzy_margin])
            if not found.empty:
                found = found.sort_values(["row", "score"], ascending=[True, False], kind="stable")
                top = found.drop_duplicates("row")
                runner = found.groupby("row")["score"].nth(1)
                runner = pd.Series(runner.to_numpy(), index=found.loc[runner.index, "row"].to_numpy())
                second = runner.reindex(top["row"].to_numpy()).fillna(0.0).to_numpy()
                score = top["score"].to_numpy()
                clear = (score >= fuzzy_min) & (score - second >= fuzzy_margin)
                m.aidx[top["row"].to_numpy()[clear]] = top["aidx"].to_numpy()[clear]
                m.method[top["row"].to_numpy()[clear]] = "fuzzy_address"
                m.bigram[top["row"].to_numpy()[clear]] = True
                m.ambiguous[top["row"].to_numpy()[~clear & (score >= fuzzy_min)]] = True

    # Places without a number: is it a registry compound (exact or folded name, unique in the
    # county)? Then the caller's household can be checked against it; otherwise it is a street,
    # a shop, a crossing.
    rows = np.flatnonzero(kind == "place")
    vague = loc["vague_place"].reset_index(drop=True)
    for column, text in (("text", vague), ("folded", fold_homophones(vague))):
        hits = name_hits(rows, text.to_numpy(dtype=object), column)
        unique = hits.groupby("row")["ck"].agg(["size", "first"])
        unique = unique[unique["size"] == 1]
        m.named_ck[unique.index.to_numpy()] = unique["first"].to_numpy()
        rows = np.setdiff1d(rows, hits["row"].to_numpy())
    m.ambiguous &= m.aidx < 0
    return m

"""Who made which version champion, when and why: promote and roll back by hand, with a durable history.

MLflow moves an alias without remembering where it pointed before, so the
succession of champions is kept here, inside the same MLflow store: every
change of ``champion`` is one tag on the registered model,
``champion.history.<UTC time>`` = ``{"action", "from", "to", "by", "why", "at"}``.
A tag per event (never one growing list) means two writers cannot overwrite
each other, and the history moves with the store (``var/``) like the models.
Actions are ``promote`` (a person, ``yujing models promote``), ``rollback``
(``yujing models rollback``: back to the champion before the current one) and
``gate`` (the promotion gate of a training run: ``yujing train`` or the
scheduled training).

The *previous* champion is read from the succession, not guessed: replaying the
history gives the chain of champions (a promotion pushes, a rollback pops), so
rolling back twice walks two steps back, and a rollback is never undone by the
next rollback. Champions made before this history existed (``registry.promote``
tags ``promoted_at``) seed the chain in the order of those tags.

Free text a person gives (``why``) is masked with :func:`models.notes.mask_note`
and checked by the registry's personal-data guard before it is stored. This
module only reads and writes the registry through ``models.registry``; it never
imports ``pipelines``.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models import registry

if TYPE_CHECKING:
    import pandas as pd

HISTORY_PREFIX = "champion.history."
ACTIONS = ("promote", "rollback", "gate")
MAX_WHY = 500
"""Characters of ``why`` kept: a reason, not a report (the run's report holds the numbers)."""
MAX_BY = 80
SHORT_NAMES = {"escalation": registry.ESCALATION_MODEL, "dispute": registry.DISPUTE_MODEL}


class ChampionError(ValueError):
    """A request the registry cannot follow (unknown model or version, nothing to roll back to, no reason).

    The message names the model, version or option and the fix; the CLI prints it as it is.
    """


@dataclass(frozen=True)
class Action:
    """One change of a model's champion, as recorded in the registry."""

    name: str
    action: str
    from_version: int | None
    to_version: int
    by: str
    why: str
    at: str
    """UTC, ISO 8601 with microseconds: also the tag's key, so the history sorts by it."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def tag_key(self) -> str:
        stamp = datetime.fromisoformat(self.at).astimezone(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        return f"{HISTORY_PREFIX}{stamp}"

    def tag_value(self) -> str:
        record = {"action": self.action, "from": self.from_version, "to": self.to_version}
        return json.dumps(record | {"by": self.by, "why": self.why, "at": self.at}, ensure_ascii=False)

    @classmethod
    def from_tag(cls, name: str, value: str) -> Action | None:
        """The action a history tag holds; None for a tag that is not one (hand-edited, truncated)."""
        try:
            record = json.loads(value)
            return cls(
                name,
                str(record["action"]),
                None if record.get("from") is None else int(record["from"]),
                int(record["to"]),
                str(record.get("by", "")),
                str(record.get("why", "")),
                str(record["at"]),
            )
        except (ValueError, KeyError, TypeError):
            return None


# --------------------------------------------------------------------------- input checks


def model_name(name: str, option: str = "NAME") -> str:
    """The registered model's full name (``escalation``/``dispute`` accepted), else :class:`ChampionError`."""
    text = str(name).strip()
    text = SHORT_NAMES.get(text, text)
    if text not in registry.MODEL_NAMES:
        raise ChampionError(
            f"{option}: unknown registered model {name!r}; fix: use one of {', '.join(registry.MODEL_NAMES)}"
        )
    return text


def version_number(value: str | int) -> int:
    """``3`` or ``v3`` -> 3, else :class:`ChampionError`."""
    text = str(value).strip().lower().removeprefix("v")
    if not text.isdigit() or int(text) < 1:
        raise ChampionError(
            f"VERSION: {value!r} is not a model version; fix: give a number such as 3 (see `models list`)"
        )
    return int(text)


def default_actor() -> str:
    """The operating-system user: who ran the command, when ``--by`` is not given."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # containers without a passwd entry
        return "unknown"


def clean_why(why: str | None) -> str:
    """The reason as it will be stored: required, one line, masked (IDs, phones, names), at most :data:`MAX_WHY`."""
    text = " ".join(str(why or "").split())
    if not text:
        raise ChampionError(
            "--why: a reason is required and was empty; fix: say why in a few words, "
            "e.g. --why 'v3 over-warns county 150502 since the new call-taker style'"
        )
    from models.notes import mask_note

    masked = mask_note(text)[:MAX_WHY]
    _check_private("--why", masked)
    return masked


def clean_by(by: str | None) -> str:
    """Who acted: ``by`` (a user name or a role) or the OS user; printable, at most :data:`MAX_BY` characters."""
    text = " ".join(str(by).split()) if by is not None else default_actor()
    if not text or len(text) > MAX_BY or not text.isprintable():
        raise ChampionError(
            f"--by: give who acts as a user name of 1 to {MAX_BY} printable characters, e.g. --by wang.l"
        )
    _check_private("--by", text)
    return text


def _check_private(option: str, text: str) -> None:
    try:
        registry.assert_no_personal_values("tags", {"value": text})
    except registry.PersonalDataError:
        raise ChampionError(
            f"{option}: holds an ID or mobile number that cannot be masked; fix: leave personal data out"
        ) from None


# --------------------------------------------------------------------------- reading the store


def _store_exists(tracking_uri: str) -> bool:
    return not tracking_uri.startswith("sqlite:///") or Path(tracking_uri.removeprefix("sqlite:///")).is_file()


def require_store(tracking_uri: str) -> None:
    """:class:`ChampionError` when a SQLite store does not exist (reading must not create an empty one)."""
    if not _store_exists(tracking_uri):
        raise ChampionError(
            f"no MLflow store at {tracking_uri.removeprefix('sqlite:///')}; fix: run `yujing train` first, "
            "or point MLFLOW_TRACKING_URI (or home in yujing.toml) at the store"
        )


def _registered_tags(name: str, tracking_uri: str) -> dict[str, str]:
    from mlflow.exceptions import MlflowException

    try:
        return dict(registry._client(tracking_uri).get_registered_model(name).tags)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return {}
        raise


def history(name: str, tracking_uri: str) -> list[Action]:
    """Every recorded change of ``name``'s champion, oldest first."""
    name = model_name(name)
    tags = _registered_tags(name, tracking_uri)
    found = (Action.from_tag(name, v) for k, v in sorted(tags.items()) if k.startswith(HISTORY_PREFIX))
    return sorted((a for a in found if a is not None), key=lambda a: a.at)


def history_frame(names: Iterable[str], tracking_uri: str) -> pd.DataFrame:
    """The history of several models as one table, oldest first (the columns of :class:`Action`)."""
    import pandas as pd

    rows = [a.to_dict() for name in names for a in history(name, tracking_uri)]
    columns = list(Action.__dataclass_fields__)
    return pd.DataFrame(rows, columns=columns).sort_values("at", kind="stable").reset_index(drop=True)


def _versions(name: str, tracking_uri: str) -> list[Any]:
    """The registry's versions of ``name`` (MLflow ``ModelVersion``), oldest first; [] when not registered."""
    client = registry._client(tracking_uri)
    found = client.search_model_versions(f"name='{name}'")
    return sorted(found, key=lambda mv: int(mv.version))


def _legacy_champions(versions: list[Any], events: list[Action]) -> list[int]:
    """Champions made before the history began, in the order of their ``promoted_at`` tags (registry.promote).

    A version some recorded action made champion is left out: its ``promoted_at`` belongs to
    that action (it is set a moment before the action is recorded, so the times cannot tell).
    """
    cutoff = datetime.fromisoformat(events[0].at).replace(microsecond=0) if events else None
    recorded = {event.to_version for event in events}
    stamped = []
    for mv in versions:
        at = mv.tags.get("promoted_at")
        if not at or int(mv.version) in recorded:
            continue
        when = datetime.fromisoformat(at)
        if cutoff is None or when < cutoff:
            stamped.append((when, int(mv.version)))
    return [v for _, v in sorted(stamped)]


def succession(name: str, tracking_uri: str) -> list[int]:
    """The chain of champions, the current one last: a promotion pushes, a rollback pops.

    A champion set outside this history (``registry.promote`` by code, an alias moved in
    MLflow's UI) is taken in where it is seen: as the ``from`` of the next recorded action,
    or as the current alias at the end.
    """
    name = model_name(name)
    events = history(name, tracking_uri)
    versions = _versions(name, tracking_uri)
    chain: list[int] = []

    def push(version: int | None) -> None:
        if version is not None and (not chain or chain[-1] != version):
            chain.append(version)

    for version in _legacy_champions(versions, events):
        push(version)
    for event in events:
        push(event.from_version)
        if event.action == "rollback":
            if chain and chain[-1] == event.from_version:
                chain.pop()
            push(event.to_version)
        else:
            push(event.to_version)
    push(registry.aliases(name, tracking_uri).get(registry.CHAMPION))
    return chain


def previous_champion(name: str, tracking_uri: str) -> int | None:
    """The champion before the current one (what ``rollback`` restores), or None."""
    chain = succession(name, tracking_uri)
    return chain[-2] if len(chain) >= 2 else None


def champions_now(tracking_uri: str) -> dict[str, int | None]:
    """Each model's champion version now (None without one, or without a store: nothing is created)."""
    if not _store_exists(tracking_uri):
        return dict.fromkeys(registry.MODEL_NAMES)
    return {name: registry.aliases(name, tracking_uri).get(registry.CHAMPION) for name in registry.MODEL_NAMES}


# --------------------------------------------------------------------------- acting


def record(
    name: str, action: str, from_version: int | None, to_version: int, by: str, why: str, tracking_uri: str
) -> Action:
    """Append one action to ``name``'s history (a registered-model tag) and return it."""
    if action not in ACTIONS:
        raise ValueError(f"action {action!r} is not one of {', '.join(ACTIONS)}")
    event = Action(
        model_name(name),
        action,
        from_version,
        int(to_version),
        by,
        why,
        datetime.now(UTC).isoformat(timespec="microseconds"),
    )
    registry.assert_no_personal_values("tags", {event.tag_key: event.tag_value()})
    registry._client(tracking_uri).set_registered_model_tag(event.name, event.tag_key, event.tag_value())
    return event


def _check_version(name: str, version: int, tracking_uri: str) -> None:
    known = [int(mv.version) for mv in _versions(name, tracking_uri)]
    if version not in known:
        listed = ", ".join(str(v) for v in known) or "none registered yet"
        raise ChampionError(
            f"{name} has no version {version} (versions: {listed}); fix: pick a version from `yujing models list`"
        )


def promote(name: str, version: int | str, why: str, by: str | None = None, *, tracking_uri: str) -> Action:
    """Make ``version`` the champion by hand and record who and why (checked before anything moves)."""
    name, number = model_name(name), version_number(version)
    why, by = clean_why(why), clean_by(by)
    require_store(tracking_uri)
    _check_version(name, number, tracking_uri)
    current = registry.aliases(name, tracking_uri).get(registry.CHAMPION)
    if current == number:
        raise ChampionError(f"{name} v{number} is already the champion; fix: nothing to do, or promote another version")
    registry.promote(name, number, tracking_uri)
    return record(name, "promote", current, number, by, why, tracking_uri)


def rollback(name: str, why: str, by: str | None = None, *, tracking_uri: str) -> Action:
    """Move ``champion`` back to the champion before the current one, read from the history, and record it."""
    name = model_name(name)
    why, by = clean_why(why), clean_by(by)
    require_store(tracking_uri)
    current = registry.aliases(name, tracking_uri).get(registry.CHAMPION)
    if current is None:
        raise ChampionError(f"{name} has no champion to roll back; fix: promote a version with `yujing models promote`")
    previous = previous_champion(name, tracking_uri)
    if previous is None:
        raise ChampionError(
            f"{name} has no previous champion before v{current} in its history; "
            f"fix: promote a version by hand with `yujing models promote {name} VERSION --why ...`"
        )
    registry.promote(name, previous, tracking_uri)
    return record(name, "rollback", current, previous, by, why, tracking_uri)


def record_gate(
    name: str, version: int, decision: Mapping[str, Any], previous: int | None, by: str, tracking_uri: str
) -> Action | None:
    """Record a training run's automatic promotion (``by``: ``yujing train`` or ``scheduled training``).

    ``decision`` is the gate's (``Decision.to_dict()``); nothing is recorded when it kept the
    champion (the version's ``promotion``/``promotion.reason`` tags already say why).
    """
    if not decision.get("promote"):
        return None
    why = " ".join(str(decision.get("reason") or "promoted by the gate").split())[:MAX_WHY]
    return record(name, "gate", previous, int(version), by, why, tracking_uri)


# --------------------------------------------------------------------------- listing


def _millis(value: Any) -> str | None:
    if not value:
        return None
    return datetime.fromtimestamp(int(value) / 1000, UTC).isoformat(timespec="seconds")


def _gate_columns(name: str, run_tags: Mapping[str, str]) -> dict[str, Any]:
    """The metric the version was judged on and its value, from the decision logged on its run."""
    prefix = f"promotion.{name}."
    label = run_tags.get(f"{prefix}metric_label") or run_tags.get(f"{prefix}metric")
    raw = run_tags.get(f"{prefix}gate_value") or run_tags.get(f"{prefix}candidate_value")
    try:
        value = float(raw) if raw not in (None, "None") else None
    except ValueError:
        value = None
    return {"metric": label, "value": value}


def versions_frame(names: Iterable[str], tracking_uri: str) -> pd.DataFrame:
    """One row per registered version, newest first within each model.

    Columns: ``name, version, aliases, created, run_id, metric, value, decision, reason``
    (the gate's verdict on the version, from its tags and run) and ``action, by, why, at``
    (the last recorded action that made it champion, if any).
    """
    import pandas as pd
    from mlflow.exceptions import MlflowException

    require_store(tracking_uri)
    client = registry._client(tracking_uri)
    rows = []
    for name in (model_name(n) for n in names):
        made = {a.to_version: a for a in history(name, tracking_uri)}
        on: dict[int, list[str]] = {}  # search results carry no aliases: read them from the registered model
        for alias, version in registry.aliases(name, tracking_uri).items():
            on.setdefault(version, []).append(alias)
        for mv in reversed(_versions(name, tracking_uri)):
            try:
                run_tags = client.get_run(mv.run_id).data.tags if mv.run_id else {}
            except MlflowException:  # a deleted run: the version is still listed
                run_tags = {}
            last = made.get(int(mv.version))
            rows.append(
                {
                    "name": name,
                    "version": int(mv.version),
                    "aliases": ",".join(sorted(on.get(int(mv.version), []))),
                    "created": _millis(mv.creation_timestamp),
                    "run_id": mv.run_id,
                    **_gate_columns(name, run_tags),
                    "decision": mv.tags.get("promotion"),
                    "reason": mv.tags.get("promotion.reason"),
                    "action": last.action if last else None,
                    "by": last.by if last else None,
                    "why": last.why if last else None,
                    "at": last.at if last else None,
                }
            )
    columns = ["name", "version", "aliases", "created", "run_id", "metric", "value", "decision", "reason"]
    return pd.DataFrame(rows, columns=[*columns, "action", "by", "why", "at"])

"""The service's current engine, and how a new champion or ranking replaces it without dropping requests.

:class:`ServiceState` holds one :class:`serving.incident.Engine` at a time.
``reload()`` looks at where models and history come from (the registry's
champions, or an explicit bundle folder, and the latest published ranking);
when anything changed it builds a whole new engine beside the old one (jieba
and onnxruntime sessions warmed) and swaps one reference. Requests read that
reference once, so a request in flight finishes on the engine it started
with and the next one gets the new engine: nothing is dropped or mixed.

A bundle that is missing or corrupt does not stop the service: the engine is
built without it (degraded, the rules answer) and ``/healthz`` says why.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from features.lexicon import default_lexicon
from features.text import get_segmenter
from models import registry
from models.bundle import load_manifest
from serving.history import REQUIRED, HistoryError, HouseholdHistory
from serving.incident import Engine
from serving.scorer import OnnxScorer

log = logging.getLogger("yujing.serving")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class Sources:
    """Where the engine's parts come from; a new value means a reload is due."""

    dispute: tuple[str, str] | None  # (bundle folder, version label)
    escalation: tuple[str, str] | None
    history: str | None
    problems: tuple[str, ...]


def latest_ranking(rankings_dir: Path, today: date | None = None) -> Path | None:
    """The newest *completed* ranking: its manifest names its own date, and it carries the online tables.

    Chosen by the date its manifest states, not by folder name alone, and
    never a date after tomorrow (``today``: the local clock): a folder someone
    copied in, or one published from a future-dated export, must not become
    the service's history (issue 11).
    """
    if not Path(rankings_dir).is_dir():
        return None
    limit = (today or date.today()) + timedelta(days=1)
    dates = sorted((p for p in Path(rankings_dir).iterdir() if _DATE.match(p.name)), key=lambda p: p.name)
    for folder in reversed(dates):
        if not all((folder / name).is_file() for name in REQUIRED) or _manifest_date(folder) != folder.name:
            continue
        if date.fromisoformat(folder.name) <= limit:
            return folder.resolve()
    return None


def _manifest_date(folder: Path) -> str | None:
    """The date a ranking folder's manifest states (None when it has no readable manifest)."""
    try:
        return str(json.loads((folder / "manifest.json").read_text(encoding="utf-8")).get("date"))
    except (OSError, ValueError, AttributeError):
        return None


def ranking_folder(rankings_dir: Path, date: str) -> Path | None:
    """The published folder of one date (None when that date was never ranked)."""
    if not _DATE.match(date):
        return None
    folder = Path(rankings_dir) / date
    return folder.resolve() if (folder / "ranking.parquet").is_file() else None


class ServiceState:
    """The current engine and its reloading (see the module docstring)."""

    def __init__(
        self,
        *,
        rankings_dir: Path,
        thresholds: dict[str, float],
        tracking_uri: str | None = None,
        champion_cache: Path | None = None,
        bundle: Path | None = None,
    ) -> None:
        self.rankings_dir = Path(rankings_dir)
        self.thresholds = dict(thresholds)
        self.tracking_uri = tracking_uri
        self.champion_cache = Path(champion_cache) if champion_cache else None
        self.bundle = Path(bundle) if bundle else None
        self._lock = threading.Lock()
        self._sources: Sources | None = None
        self._engine: Engine | None = None
        self._history_cache: tuple[str, HouseholdHistory] | None = None
        self._history_hooks: list[Callable[[HouseholdHistory], None]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.reloads = 0
        get_segmenter()  # jieba's dictionary, once per process
        self.reload()

    def add_history_hook(self, hook: Callable[[HouseholdHistory], None]) -> None:
        """Call ``hook(history)`` whenever a newly published ranking is loaded, before requests see it.

        The workbench precomputes its per-ranking views here (serving/workbench/folder.py), in the
        reload thread, so the first page after a new ranking is not the one that pays for them.
        """
        self._history_hooks.append(hook)

    @property
    def engine(self) -> Engine:
        """The engine to score the next request with (read it once per request)."""
        assert self._engine is not None
        return self._engine

    def _bundle_sources(self) -> tuple[tuple[str, str] | None, tuple[str, str] | None, list[str]]:
        problems: list[str] = []
        if self.bundle is not None:
            try:
                manifest = load_manifest(self.bundle)
                label = f"bundle {self.bundle.name} ({manifest.models['escalation'].sha256[:12]})"
            except Exception as exc:  # a corrupt bundle: degraded, and say why
                return None, None, [f"bundle {self.bundle} unusable: {type(exc).__name__}: {str(exc)[:200]}"]
            return (str(self.bundle), label), (str(self.bundle), label), problems
        if not self.tracking_uri or self.champion_cache is None:
            return None, None, ["no bundle and no model registry configured"]
        found: dict[str, tuple[str, str] | None] = {}
        for name in (registry.DISPUTE_MODEL, registry.ESCALATION_MODEL):
            try:
                path = registry.champion_bundle(self.tracking_uri, self.champion_cache, name)
            except Exception as exc:  # the registry is down or the download failed: keep answering
                problems.append(f"{name}: champion not available ({type(exc).__name__})")
                path = None
            if path is None:
                if not any(p.startswith(name) for p in problems):
                    problems.append(f"{name}: no champion registered")
                found[name] = None
            else:
                found[name] = (str(path), f"{name} v{path.name.rsplit('-v', 1)[1]}")
        return found[registry.DISPUTE_MODEL], found[registry.ESCALATION_MODEL], problems

    def sources(self) -> Sources:
        """Where models and history would come from right now."""
        dispute, escalation, problems = self._bundle_sources()
        history = latest_ranking(self.rankings_dir)
        if history is None:
            problems.append(f"no published ranking with history under {self.rankings_dir}; run yujing rank")
        return Sources(dispute, escalation, str(history) if history else None, tuple(problems))

    def _history(self, folder: str | None, problems: list[str]) -> HouseholdHistory | None:
        if folder is None:
            return None
        if self._history_cache is not None and self._history_cache[0] == folder:
            return self._history_cache[1]
        try:
            history = HouseholdHistory(Path(folder))
        except (HistoryError, OSError, ValueError, KeyError) as exc:
            problems.append(f"history {folder} unusable: {type(exc).__name__}")
            return None
        self._history_cache = (folder, history)
        for hook in self._history_hooks:  # before the swap: readers of the new engine find their caches ready
            try:
                hook(history)
            except Exception as exc:  # a hook's failure must not keep the new ranking out of service
                log.warning("a history hook failed: %s", type(exc).__name__)
        return history

    def _build(self, sources: Sources) -> Engine:
        from serving.dispute import load_dispute_model

        problems = list(sources.problems)
        dispute = escalation = None
        versions: dict[str, Any] = {"dispute": None, "escalation": None}
        if sources.dispute is not None:
            try:
                dispute = load_dispute_model(sources.dispute[0])
                versions["dispute"] = sources.dispute[1]
            except Exception as exc:
                problems.append(f"dispute model unusable: {type(exc).__name__}: {str(exc)[:200]}")
        if sources.escalation is not None:
            try:
                escalation = OnnxScorer.from_bundle(sources.escalation[0])
                escalation.entry("escalation")
                versions["escalation"] = sources.escalation[1]
            except Exception as exc:
                problems.append(f"escalation model unusable: {type(exc).__name__}: {str(exc)[:200]}")
                escalation = None
        history = self._history(sources.history, problems)
        if history is not None and escalation is not None:
            wanted = list(escalation.feature_names("escalation"))
            if wanted != history.feature_names:
                problems.append(
                    f"history {history.date} was ranked with other features than the escalation champion; "
                    "household risk comes from the rules until the next yujing rank"
                )
                escalation = None
                versions["escalation"] = None
        lexicon = default_lexicon().version
        versions.update({"lexicon": lexicon, "history_date": history.date if history else None})
        return Engine(
            dispute=dispute,
            escalation=escalation,
            history=history,
            thresholds=self.thresholds,
            versions=versions,
            problems=tuple(problems),
            lexicon_version=lexicon,
        )

    def reload(self) -> bool:
        """Swap in a new engine when models or history changed; True when it did."""
        with self._lock:
            sources = self.sources()
            if sources == self._sources and self._engine is not None:
                return False
            engine = self._build(sources)
            self._engine, self._sources = engine, sources
            self.reloads += 1
            log.info("engine loaded: %s; degraded=%s", engine.versions, engine.degraded)
            return True

    def watch(self, interval_seconds: float) -> None:
        """Check for a new champion or ranking every ``interval_seconds`` in a daemon thread."""
        if interval_seconds <= 0 or self._thread is not None:
            return

        def loop() -> None:
            while not self._stop.wait(interval_seconds):
                try:
                    self.reload()
                except Exception as exc:  # never let the watcher die; the current engine keeps serving
                    log.warning("reload failed: %s", type(exc).__name__)

        self._thread = threading.Thread(target=loop, name="yujing-reload", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the watcher thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

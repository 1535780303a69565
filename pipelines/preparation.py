"""Loading, rule scoring and linking: the ``Prepared`` city that training and the daily ranking both start from.

Kept apart from ``pipelines/training.py`` so the daily ranking does not import
what only training needs (LightGBM, scikit-learn: about a second of every
``yujing rank`` start).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from features.fingerprint import dataset_fingerprint
from features.linking import LinkResult, link_incidents
from features.loaders import OPTIONAL_TABLES, DataContractError, Dataset, load_dataset
from features.quarantine import FOLDER as QUARANTINE_FOLDER
from features.quarantine import write_quarantine
from models.rules import rule_verdicts
from pipelines import incident_cache

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Prepared:
    """Everything the models are trained from, after loading, scoring and linking."""

    tables: dict[str, pd.DataFrame]
    fingerprint: str
    load_summary: dict[str, dict[str, Any]]
    """Per table: read, accepted, quarantined and the count per reason (``LoadResult.counts``), for reports."""
    incidents: pd.DataFrame
    rules: pd.DataFrame
    links: LinkResult
    calls: pd.DataFrame
    export_date: pd.Timestamp | None = None
    """The morning the data was exported (its manifest, the setting, or the load day): what `rank` ranks by default."""
    quarantine: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False)
    """Per table, the rows the load rejected (raw text, personal data): written to the run's ``quarantine/`` only."""
    cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    """How the incident cache served this run (``incident_cache.CacheStats``; empty without a cache): reported, never
    written into an output, so a cached run publishes the same bytes as a full one."""
    incident_store: Any = field(default=None, repr=False, compare=False)
    """The incident cache for the steps after loading (``incident_readings.IncidentStore``: the recent calls' readings
    and OOD scores); None without a cache, when those steps score every text themselves."""


def code_version() -> str:
    """The git commit of the code (with ``+dirty`` for uncommitted changes), or ``unknown``."""
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def load_data(data_dir: Path, partition: Any = None, load: Callable[..., Any] | None = None) -> Dataset:
    """Load and validate every contract table; quarantined rows are counted and kept apart, not used.

    A required table whose every row was quarantined stops the run here, with
    the reasons' counts: training or ranking on nothing would fail later with
    a message about models, or publish an empty day. ``partition``
    (``features.partitions.Partition``) selects one city or county of a partitioned dataset.
    ``load``: a ``load_table`` that reuses validated registry tables (pipelines/table_cache.py).
    """
    dataset = load_dataset(data_dir, partition=partition, load=load)
    for name, result in dataset.tables.items():
        if result.read and not result.accepted and name not in OPTIONAL_TABLES:
            top = ", ".join(f"{n:,} × {reason}" for reason, n in list(result.reasons().items())[:3])
            raise DataContractError(
                f"{result.source}: all {result.read:,} rows of required table {name!r} were quarantined ({top}); "
                f"fix: run `yujing validate --data {dataset.root}` and correct the rows it writes to quarantine/"
            )
    return dataset


def prepare(data_dir: Path, partition: Any = None, cache_dir: Path | None = None) -> Prepared:
    """Load, score every narrative with the rules, and link every incident to a household.

    ``partition`` (``features.partitions.Partition``): one city or county of a partitioned dataset.
    ``cache_dir``: reuse the rule verdicts and links of incidents seen before
    (pipelines/incident_cache.py), so a daily run scores and links only the new calls; the result
    is the same as without it (``cache`` then says how many rows were reused).
    """
    stats = incident_cache.CacheStats()
    load = None
    if cache_dir is not None:
        from pipelines.table_cache import table_loader

        load = table_loader(Path(cache_dir), stats)
    dataset = load_data(data_dir, partition, load)
    tables = {name: r.data for name, r in dataset.tables.items()}
    summary = {name: r.counts() for name, r in dataset.tables.items()}
    quarantine = {name: r.quarantine for name, r in dataset.tables.items()}
    export_date = dataset.window.export_date if dataset.window else None
    incidents = tables["incidents"].reset_index(drop=True)
    registry = (tables["persons"], tables["households"], tables["addresses"])
    cache: dict[str, Any] = {}
    if cache_dir is None:
        rules = rule_verdicts(incidents["narrative"]).reset_index(drop=True)
        links = link_incidents(incidents, *registry)
    else:
        from conf import get_settings
        from pipelines.table_cache import tables_size

        scope = Path(cache_dir) / incident_cache.scope_key(Path(data_dir), dataset, partition)
        keep_days = get_settings().incident_cache_keep_days
        stats.scopes_removed = incident_cache.use_scope(Path(cache_dir), scope, keep_days)
        hashes: dict[str, Any] = {}  # the narratives are an input of both: hashed once (incident_cache.row_hashes)
        rules = incident_cache.cached_rule_verdicts(incidents, scope, stats, hashes)
        links = incident_cache.cached_links(incidents, *registry, scope, stats, hashes)
        stats.bytes_on_disk = incident_cache.cache_size(scope)
        stats.tables_bytes = tables_size(Path(cache_dir), partition)
        cache = stats.to_dict()
    calls = incident_calls(incidents, rules, links.links)
    fingerprint = dataset_fingerprint(data_dir, partition)
    prepared = Prepared(tables, fingerprint, summary, incidents, rules, links, calls, export_date, quarantine)
    prepared.cache = cache
    if cache_dir is not None:
        from pipelines.incident_readings import IncidentStore

        prepared.incident_store = IncidentStore(scope, prepared.cache)  # adds its counts to ``cache``
    return prepared


def write_run_quarantine(prepared: Prepared, out_dir: Path) -> list[Path]:
    """The rows this run's load rejected, into ``out_dir/quarantine/`` (counts are in the report's ``load``)."""
    return write_quarantine(prepared.quarantine, out_dir / QUARANTINE_FOLDER)


def incident_calls(incidents: pd.DataFrame, rules: pd.DataFrame, links: pd.DataFrame) -> pd.DataFrame:
    """One row per incident: when, which household and caller, and what the rules saw."""
    cues = [c for c in rules.columns if c.startswith("cue_")]
    return pd.DataFrame(
        {
            "incident_id": incidents["incident_id"].to_numpy(),
            "received_at": incidents["received_at"].to_numpy(),
            "household_id": links["household_id"].to_numpy(),
            "person_id": links["person_id"].to_numpy(),
            "is_dispute": rules["is_dispute"].to_numpy(bool),
            "category": rules["category"].to_numpy(object),
            "dispute_score": rules["dispute_score"].to_numpy(),
            "n_deescalation": rules["n_deescalation"].to_numpy(),
            **{c: rules[c].to_numpy() for c in cues},
        }
    )

"""Typed settings: every path and default the pipeline uses, in one object.

Resolution order (first wins): explicit keyword arguments, ``YUJING_*``
environment variables, the TOML file named by ``YUJING_CONFIG`` (or
``./yujing.toml`` when present), then the defaults below. All paths default to
folders under ``<cwd>/var`` so a fresh clone writes nowhere else.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from conf.errors import ConfigFileError


def _config_file() -> Path | None:
    named = os.environ.get("YUJING_CONFIG")
    if named:
        path = Path(named)
        if not path.is_file():
            raise ConfigFileError(f"YUJING_CONFIG names {path}, which is not a file")
        return path
    local = Path.cwd() / "yujing.toml"
    return local if local.is_file() else None


class Settings(BaseSettings):
    """Where things live and the defaults a run starts from."""

    model_config = SettingsConfigDict(env_prefix="YUJING_", extra="forbid")

    home: Path = Field(default_factory=lambda: Path.cwd() / "var")
    data_dir: Path | None = None
    runs_dir: Path | None = None
    outputs_dir: Path | None = None
    prefect_home: Path | None = None
    mlflow_tracking_uri: str | None = None

    seed: int = 20240411
    sim_persons: int = 300_000
    """The default city: large enough that a station-week list tells the model from the rules (docs/escalation.md)."""
    sim_days: int = 730
    sim_start: str = "2023-01-01"

    # Training and evaluation (docs/training.md).
    horizon_days: int = 90
    """Escalation label: a violent case within this many days after the snapshot."""
    snapshot_every_days: int = 7
    split_fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
    """Dispute classifier: earliest, middle and latest shares of the incidents for training, tuning and testing."""
    backtest_folds: int = 4
    """Escalation backtest: consecutive test periods, each trained only on what came before (docs/escalation.md)."""
    backtest_test_share: float = 0.4
    """Share of the snapshot dates, at the end, that the backtest's folds test on."""
    top_k: int = 5
    """Households a station can visit per snapshot (week): recall and precision are measured at this k."""
    bootstrap_samples: int = 200
    promotion_margin: float = 0.005
    """A challenger that beats the rules replaces the champion only when it is at least this much better on
    ``promotion_metric`` (on the same test rows when the champion can score them; docs/registry.md)."""
    promotion_metric: str = "recall_at_k"
    """The escalation gate's metric, pooled over the backtest folds: recall_at_k, pr_auc or precision_at_k."""
    parity_rows: int = 10_000
    earliest_event_date: str = "2000-01-01"
    """Calls, cases and visits before this day are quarantined as implausible (a 1900 default, a typo)."""
    export_date: str | None = None
    """The day the data was exported (YYYY-MM-DD), when the export's manifest.json does not say: later rows are
    quarantined and ``yujing rank`` ranks this day by default. Unset and unsaid: the day the data is loaded."""
    warning_models: Path | None = None
    """The scoring warning models file (default: conf/warning_models.toml)."""
    dispute_labels_path: Path | None = None
    """Police codes -> dispute-classifier labels (default: conf/dispute_labels.toml; features/labels.py)."""
    drift_config: Path | None = None
    """Drift thresholds and reference windows (default: conf/drift.toml; models/drift.py, docs/drift.md)."""

    # Daily ranking (docs/ranking.md).
    rankings_dir: Path | None = None
    """Where ``yujing rank`` publishes ``<date>/`` (default: <outputs_dir>/rankings)."""
    warnings_db_url: str | None = None
    """SQLAlchemy URL of the warnings table (default: SQLite under home; PostgreSQL URLs work too)."""
    level_thresholds: dict[str, float] = Field(
        default_factory=lambda: {"red": 0.08, "orange": 0.04, "yellow": 0.02, "blue": 0.015}
    )
    """Calibrated probability of a violent case within ``horizon_days`` that earns each level: 8, 4, 2 and 1.5 times
    the ~1 % base rate of households with a dispute on record (docs/escalation.md says why)."""
    station_capacity: dict[str, int] = Field(default_factory=lambda: {"red": 3, "orange": 5, "yellow": 12})
    """Most warnings of a level one station gets per day; the rest move one level down (blue: no limit)."""
    schedule_cron: str = "0 6 * * *"
    """When ``yujing schedule`` runs the daily ranking (cron, in ``schedule_timezone``)."""
    schedule_timezone: str = "Asia/Shanghai"
    """The time zone of ``schedule_cron`` (IANA name): 06:00 in Beijing, not 06:00 UTC (14:00 in Beijing)."""

    # Online endpoint (docs/serving.md).
    api_keys_file: Path | None = None
    """JSON file of API keys and their scopes (``YUJING_API_KEYS``; default ``<home>/keys.json`` when it exists, as
    ``yujing keys add`` writes it); no file means every request is 401."""
    serve_bundle: Path | None = None
    """Serve this bundle folder instead of the registry's champions (reloaded when its content changes)."""
    serve_host: str = "127.0.0.1"
    serve_port: int = 8000
    max_batch: int = 500
    """Most incidents one ``score-batch`` request may carry."""
    max_body_bytes: int = 1_000_000
    max_narrative_chars: int = 5_000
    reload_interval_seconds: float = 30.0
    """How often the service checks the registry for a new champion (0 = never)."""

    # The closed loop in the browser (docs/workbench.md) and the analysis reports (docs/reports.md).
    warning_deadline_hours: dict[str, int] = Field(
        default_factory=lambda: {"red": 24, "orange": 72, "yellow": 168, "blue": 360}
    )
    """Hours a station has to handle a warning of each level, counted from when the ranking pushed it (a county's
    supervision sets a new deadline); an open warning past it is overdue (models/loop.py)."""
    session_secret_file: Path | None = None
    """Key that signs the workbench's session cookies (default ``<home>/session.key``, made 0600 on first use)."""
    session_max_age_seconds: int = 43_200
    """How long a workbench sign-in lasts (12 hours: one shift)."""
    workbench_page_size: int = 50
    """Warnings listed per workbench page (a station's page, the overdue lists)."""
    reports_dir: Path | None = None
    """Where ``yujing report`` writes (default: <outputs_dir>/reports)."""
    report_cron: str = "0 7 * * 1"
    """When ``yujing schedule`` writes the weekly analysis report (cron, in ``schedule_timezone``): Monday 07:00."""
    train_cron: str = "0 2 1 * *"
    """When ``yujing schedule`` retrains on the latest data (cron, in ``schedule_timezone``): 02:00 on the 1st of each
    month, done before that morning's ranking; the gate decides whether the new model ranks (docs/retraining.md)."""
    cluster_workers: int = Field(default=2, ge=1)
    """Workers of the local Dask cluster that ``--cluster local`` starts (one process each, one thread each)."""
    cluster_memory_limit: str = "8GiB"
    """Memory each Dask worker may use before its nanny stops it (docs/province.md): the bound per process."""
    incident_cache_dir: Path | None = None
    """Where rule verdicts and links are cached per incident (default: <home>/cache/incidents; docs/province.md)."""
    incident_cache_keep_days: int = Field(default=14, ge=1)
    """A cache scope (one registry of one city) that no ranking has used for this many days is deleted."""

    @model_validator(mode="after")
    def _derive_paths(self) -> Settings:
        self.home = self.home.resolve()
        self.data_dir = (self.data_dir or self.home / "data").resolve()
        self.runs_dir = (self.runs_dir or self.home / "runs").resolve()
        self.outputs_dir = (self.outputs_dir or self.home / "outputs").resolve()
        self.prefect_home = (self.prefect_home or self.home / "prefect").resolve()
        self.rankings_dir = (self.rankings_dir or self.outputs_dir / "rankings").resolve()
        levels = ("red", "orange", "yellow", "blue")
        self.reports_dir = (self.reports_dir or self.outputs_dir / "reports").resolve()
        self.incident_cache_dir = (self.incident_cache_dir or self.home / "cache" / "incidents").resolve()
        self.session_secret_file = (self.session_secret_file or self.home / "session.key").resolve()
        if set(self.warning_deadline_hours) != set(levels) or min(self.warning_deadline_hours.values()) < 1:
            raise ValueError(f"warning_deadline_hours needs exactly {levels}, each at least 1 hour")
        self.warnings_db_url = self.warnings_db_url or f"sqlite:///{(self.home / 'warnings.db').resolve()}"
        if set(self.level_thresholds) != set(levels):
            raise ValueError(f"level_thresholds needs exactly {levels}, got {sorted(self.level_thresholds)}")
        if [self.level_thresholds[k] for k in levels] != sorted(self.level_thresholds.values(), reverse=True):
            raise ValueError(f"level_thresholds must fall from red to blue, got {self.level_thresholds}")
        if not set(self.station_capacity) <= set(levels[:3]) or min(self.station_capacity.values(), default=1) < 0:
            raise ValueError("station_capacity takes red/orange/yellow with counts >= 0 (blue has no limit)")
        if self.promotion_metric not in ("recall_at_k", "pr_auc", "precision_at_k"):
            raise ValueError(
                f"promotion_metric {self.promotion_metric!r} cannot gate promotion; "
                "use recall_at_k, pr_auc or precision_at_k (higher is better, with a paired interval)"
            )
        try:
            ZoneInfo(self.schedule_timezone)
        except (ZoneInfoNotFoundError, ValueError):
            zone = self.schedule_timezone
            raise ValueError(f"schedule_timezone {zone!r} is not an IANA time zone, e.g. Asia/Shanghai") from None
        if self.api_keys_file is None and os.environ.get("YUJING_API_KEYS"):
            self.api_keys_file = Path(os.environ["YUJING_API_KEYS"])
        if self.api_keys_file is None and (self.home / "keys.json").is_file():
            self.api_keys_file = self.home / "keys.json"
        if not self.mlflow_tracking_uri:
            self.mlflow_tracking_uri = os.environ.get("MLFLOW_TRACKING_URI") or (
                f"sqlite:///{(self.home / 'mlflow.db').resolve()}"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _config_file()
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)


def setting_default(name: str) -> Any:
    """A setting's built-in default (not the environment's or the TOML file's): dataclass defaults mirror these."""
    spec = Settings.model_fields[name]
    return spec.default_factory() if spec.default_factory is not None else spec.default  # type: ignore[call-arg]


@lru_cache(maxsize=1)
def get_settings(**overrides: Any) -> Settings:
    """The process-wide settings (cached; call ``get_settings.cache_clear()`` in tests)."""
    return Settings(**overrides)

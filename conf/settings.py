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

from pydantic import Field, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


def _config_file() -> Path | None:
    named = os.environ.get("YUJING_CONFIG")
    if named:
        path = Path(named)
        if not path.is_file():
            raise FileNotFoundError(f"YUJING_CONFIG names {path}, which is not a file")
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
    sim_persons: int = 50_000
    sim_days: int = 730
    sim_start: str = "2023-01-01"

    # Training and evaluation (docs/training.md).
    horizon_days: int = 90
    """Escalation label: a violent case within this many days after the snapshot."""
    snapshot_every_days: int = 7
    split_fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
    embargo_days: int = 0
    top_k: int = 5
    """Households a station can visit per snapshot (week): recall and precision are measured at this k."""
    bootstrap_samples: int = 200
    promotion_margin: float = 0.005
    """A challenger replaces the champion only when its test PR-AUC is at least this much higher."""
    promotion_metric: str = "pr_auc"
    parity_rows: int = 10_000
    warning_models: Path | None = None
    """The scoring warning models file (default: conf/warning_models.toml)."""

    @model_validator(mode="after")
    def _derive_paths(self) -> Settings:
        self.home = self.home.resolve()
        self.data_dir = (self.data_dir or self.home / "data").resolve()
        self.runs_dir = (self.runs_dir or self.home / "runs").resolve()
        self.outputs_dir = (self.outputs_dir or self.home / "outputs").resolve()
        self.prefect_home = (self.prefect_home or self.home / "prefect").resolve()
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


@lru_cache(maxsize=1)
def get_settings(**overrides: Any) -> Settings:
    """The process-wide settings (cached; call ``get_settings.cache_clear()`` in tests)."""
    return Settings(**overrides)

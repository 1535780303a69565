"""The drift thresholds and reference windows: conf/drift.toml, read and checked in one place."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_CONFIG", "DriftConfig", "DriftConfigError", "load_drift_config"]

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "conf" / "drift.toml"


class DriftConfigError(ValueError):
    """conf/drift.toml (or the file the setting names) cannot be used; the message names the key and the fix."""


@dataclass(frozen=True)
class DriftConfig:
    """The knobs of conf/drift.toml, flattened (``psi_warn`` is ``[psi] warn``); meanings are in the file."""

    snapshot_weeks: int = 13
    text_days: int = 91
    volume_weeks: int = 26
    bins: int = 10
    psi_warn: float = 0.1
    psi_alert: float = 0.25
    psi_min_rows: int = 200
    text_window_days: int = 28
    text_share_warn: float = 0.05
    text_share_alert: float = 0.10
    text_ood_warn: float = 0.01
    text_ood_alert: float = 0.03
    text_z: float = 3.0
    text_min_calls: int = 100
    volume_window_days: int = 7
    volume_ratio_warn: float = 1.5
    volume_ratio_alert: float = 1.8
    volume_p_warn: float = 1e-3
    volume_p_alert: float = 1e-4

    def thresholds(self) -> dict[str, Any]:
        """The thresholds as the report shows them (JSON-plain)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


_SECTIONS = {"reference": "", "psi": "psi_", "text": "text_", "volume": "volume_"}


def load_drift_config(path: str | Path | None = None) -> DriftConfig:
    """Read the thresholds file (default: the setting ``drift_config``, else conf/drift.toml)."""
    if path is None:
        from conf.settings import get_settings

        path = get_settings().drift_config or DEFAULT_CONFIG
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DriftConfigError(f"{path}: cannot read the drift thresholds ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise DriftConfigError(f"{path}: not valid TOML ({exc}); fix the line named") from None
    known = {f.name: f.type for f in fields(DriftConfig)}
    values: dict[str, Any] = {}
    for section, table in raw.items():
        if section == "version":
            continue
        if section not in _SECTIONS or not isinstance(table, dict):
            raise DriftConfigError(f"{path}: unknown section [{section}]; use {', '.join(_SECTIONS)}")
        for key, value in table.items():
            name = _SECTIONS[section] + key
            if name not in known:
                raise DriftConfigError(f"{path}: unknown key '{key}' in [{section}]; see conf/drift.toml for the keys")
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise DriftConfigError(f"{path}: [{section}] {key} must be a number, got {value!r}")
            values[name] = int(value) if known[name] in ("int", int) else float(value)
    config = DriftConfig(**values)
    for low, high in (("psi_warn", "psi_alert"), ("text_share_warn", "text_share_alert")):
        if not 0 < getattr(config, low) <= getattr(config, high):
            raise DriftConfigError(f"{path}: need 0 < {low} <= {high}")
    if not 0 < config.text_ood_warn <= config.text_ood_alert:
        raise DriftConfigError(f"{path}: need 0 < [text] ood_warn <= ood_alert")
    if not 1 < config.volume_ratio_warn <= config.volume_ratio_alert:
        raise DriftConfigError(f"{path}: need 1 < [volume] ratio_warn <= ratio_alert")
    if not 0 < config.volume_p_alert <= config.volume_p_warn < 1:
        raise DriftConfigError(f"{path}: need 0 < [volume] p_alert <= p_warn < 1")
    if min(config.bins, config.snapshot_weeks, config.text_days, config.volume_weeks, config.volume_window_days) < 1:
        raise DriftConfigError(f"{path}: bins, weeks and days must be at least 1")
    return config

"""Training labels that come from the exported tables, never from the simulator's truth.

A real center has no ground truth for "was this call a dispute": it has the
category codes its call takers chose (纠纷警情 / 家庭纠纷 ...). Those codes are
the dispute classifier's labels, and they are noisy in two ways. Some codes
name a dispute of the wrong kind or a quarrel that is not one (a taxi-fare
quarrel coded 其他纠纷). Others name an *act* rather than a relation: a
husband beating his wife is as likely to be coded 打架斗殴 as 家庭暴力, so
reading 打架斗殴 as "not a dispute" teaches a model that violence means no
dispute. ``conf/dispute_labels.toml`` therefore sorts codes into a dispute
category, ``not_dispute`` or ``ignore``; ignored codes are not training
labels either way (``usable`` is False). Evaluation measures the result
against truth where truth exists (the simulator) and says how noisy the codes were.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features.schema import CATEGORIES, CATEGORY_L1

DEFAULT_LABELS = Path(__file__).resolve().parents[1] / "conf" / "dispute_labels.toml"
NOT_DISPUTE = "not_dispute"
IGNORE = "ignore"
LABELS: tuple[str, ...] = (*CATEGORIES, NOT_DISPUTE, IGNORE)
"""What a code may mean: a dispute category, not a dispute, or nothing usable."""


class LabelMappingError(ValueError):
    """A bad entry in a dispute-labels file; the message names the file, the entry and the fix."""


@dataclass(frozen=True)
class LabelMapping:
    """Police codes -> labels, as read from one file.

    ``codes`` maps ``"家庭纠纷"`` (any level-1) or ``"治安警情/打架斗殴"`` (that
    level-1 only, which wins) to a category, ``not_dispute`` or ``ignore``.
    """

    codes: dict[str, str]
    source: str = "<dict>"

    def label_of(self, level1: object, level2: object) -> str | None:
        """The label of one code pair; None when the file does not list it."""
        l1 = "" if level1 is None or pd.isna(level1) else str(level1).strip()
        l2 = "" if level2 is None or pd.isna(level2) else str(level2).strip()
        return self.codes.get(f"{l1}/{l2}", self.codes.get(l2))


def _check_code(path: Path, label: str, code: object) -> str:
    if not isinstance(code, str) or not code.strip():
        raise LabelMappingError(f"{path}: '{label}' lists {code!r}: every code must be a non-empty string")
    code = code.strip()
    if "/" in code:
        l1, _, l2 = code.partition("/")
        if l1 not in CATEGORY_L1 or not l2 or "/" in l2:
            raise LabelMappingError(
                f"{path}: code '{code}' under '{label}': write a level-2 code, or 'level-1/level-2' with level-1 "
                f"one of {', '.join(CATEGORY_L1)}"
            )
    return code


def load_label_mapping(path: str | Path | None = None) -> LabelMapping:
    """Read a dispute-labels file (default: the setting ``dispute_labels_path``, else conf/dispute_labels.toml).

    Raises :class:`LabelMappingError` with one line naming the file, the bad
    key or code and the fix: an unknown label, a code listed twice, a value
    that is not a list of codes, a malformed ``level-1/level-2`` code.
    """
    if path is None:
        from conf.settings import get_settings

        path = get_settings().dispute_labels_path or DEFAULT_LABELS
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise LabelMappingError(f"{path}: cannot read the dispute-labels file ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise LabelMappingError(
            f"{path}: not valid TOML ({exc}): fix the line named (each label may appear only once)"
        ) from None
    codes: dict[str, str] = {}
    for label, listed in raw.items():
        if label not in LABELS:
            raise LabelMappingError(f"{path}: unknown label '{label}': use one of {', '.join(LABELS)}")
        if not isinstance(listed, list):
            raise LabelMappingError(f"{path}: '{label}' must be a list of codes, e.g. {label} = [\"家庭纠纷\"]")
        for item in listed:
            code = _check_code(path, label, item)
            if code in codes:
                where = "twice under" if codes[code] == label else f"under both '{codes[code]}' and"
                raise LabelMappingError(
                    f"{path}: code '{code}' is listed {where} '{label}': keep it under one label only"
                )
            codes[code] = label
    if not any(v in CATEGORIES for v in codes.values()):
        raise LabelMappingError(f"{path}: no code maps to a dispute category: list at least one under e.g. 'family'")
    return LabelMapping(codes, str(path))


def dispute_labels_from_codes(incidents: pd.DataFrame, mapping: LabelMapping | None = None) -> pd.DataFrame:
    """``is_dispute``, ``category`` and ``usable`` per incident from its police codes.

    ``category`` is the dispute category (None when not a dispute);
    ``usable`` is False for codes the mapping marks ``ignore`` *and* for codes
    it does not list at all. An unlisted code is not a negative: it is a code
    nobody has sorted yet (a new code, a county's own spelling), and a call
    about a beaten wife under a code nobody anticipated must not be taught as
    "not a dispute". Train on ``usable`` rows only; ``is_dispute`` is False on
    the others so that older callers that ignore ``usable`` see the old meaning.
    """
    mapping = mapping or load_label_mapping()
    l1 = incidents["category_l1"] if "category_l1" in incidents else pd.Series(None, index=incidents.index)
    pairs = pd.DataFrame({"l1": l1.to_numpy(dtype=object), "l2": incidents["category_l2"].to_numpy(dtype=object)})
    uniques = pairs.drop_duplicates()
    looked_up = {
        (a, b): mapping.label_of(a, b) for a, b in zip(uniques["l1"], uniques["l2"], strict=True)
    }  # a few dozen distinct pairs, not one lookup per row
    label = np.array([looked_up[(a, b)] for a, b in zip(pairs["l1"], pairs["l2"], strict=True)], dtype=object)
    is_dispute = np.isin(label, np.array(CATEGORIES, dtype=object))
    usable = is_dispute | (label == NOT_DISPUTE)
    category = pd.Series(np.where(is_dispute, label, None), index=incidents.index, dtype=object)  # None, not NaN
    return pd.DataFrame({"is_dispute": is_dispute, "category": category, "usable": usable}, index=incidents.index)


def label_noise(coded: pd.DataFrame, truth: pd.DataFrame) -> dict[str, float]:
    """How far the code-derived labels are from the truth (simulator only): for the docs and report.

    Precision, recall and category agreement are computed on the usable rows
    (all rows when ``coded`` has no ``usable`` column); ``usable_share`` says
    how many rows that is.
    """
    usable = coded["usable"].to_numpy(bool) if "usable" in coded else np.ones(len(coded), dtype=bool)
    y = truth["is_dispute"].to_numpy(bool)[usable]
    c = coded["is_dispute"].to_numpy(bool)[usable]
    both = y & c
    agree = coded["category"].to_numpy(object)[usable][both] == truth["category"].to_numpy(object)[usable][both]
    return {
        "usable_share": round(float(usable.mean()) if len(usable) else 0.0, 4),
        "coded_share": round(float(c.mean()) if len(c) else 0.0, 4),
        "coded_precision": round(float(both.sum() / max(c.sum(), 1)), 4),
        "coded_recall": round(float(both.sum() / max(y.sum(), 1)), 4),
        "negative_precision": round(float((~y & ~c).sum() / max((~c).sum(), 1)), 4),
        "label_accuracy": round(float(np.mean(y == c)) if len(c) else 0.0, 4),
        "category_agreement": round(float(np.mean(agree)) if len(agree) else 0.0, 4),
    }

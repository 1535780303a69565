"""``POST /v1/warnings/{warning_id}/status``: a station moves its warning along the closed loop.

Also the service's handle on the warnings database (:func:`warning_store`,
:func:`from_store`; risk answers never depend on it) and the masking of the
free-text notes stations write (:func:`mask_note`).
"""

from __future__ import annotations

import functools
import logging
import re
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Request, Response

from serving.audit import record
from serving.routers._common import CheckedRoute, errors, json_ok
from serving.schemas import MAX_WARNING_ID, StatusIn, WarningRecord
from serving.security import Caller

router = APIRouter(prefix="/v1/warnings", tags=["warnings"], route_class=CheckedRoute)
log = logging.getLogger("yujing.serving")

_NAME_MARKERS = (
    "姓名|名叫|叫做|我叫|我是|名字是|名字叫|本人|当事人|报警人|户主|联系人|家属|丈夫|妻子|老公|老婆|"
    "儿子|女儿|父亲|母亲|邻居|对方|走访|联系了|联系|找到|约谈|见到"
)

_COMPOUND_SURNAMES = (
    "欧阳",
    "司马",
    "诸葛",
    "上官",
    "东方",
    "皇甫",
    "尉迟",
    "公孙",
    "慕容",
    "长孙",
    "夏侯",
    "令狐",
    "端木",
)


def warning_store(request: Request) -> Any:
    """The warnings table, opened once per app (None when unreachable: answers that only read it go on)."""
    stores = request.app.state.stores
    if "store" not in stores:
        from models.warning_store import WarningStore

        try:
            stores["store"] = WarningStore(request.app.state.settings.warnings_db_url)
        except Exception as exc:  # unreachable or misconfigured: say so in the server log, answer without it
            log.warning("warnings database unavailable: %s", type(exc).__name__)
            return None
    return stores["store"]


def from_store(request: Request, method: str, *args: Any) -> Any:
    """A read from the warnings table, or None when it is unreachable or fails."""
    store = warning_store(request)
    if store is None:
        return None
    try:
        return getattr(store, method)(*args)
    except Exception as exc:
        log.warning("warnings database read %s failed: %s", method, type(exc).__name__)
        return None


def mask_note(note: str) -> str:
    """A station's note with IDs, phones, plates and names replaced, before it is stored.

    The project's masker (features.text.mask) replaces IDs, phones, cards,
    plates and a 110 header's caller. Names in free text have no reliable
    pattern, so three rules are added, each erring towards masking:
    a person-name word of the segmenter's dictionary (``王建国``; the same
    list the dispute model replaces before counting tokens), a word jieba
    found only by its HMM (not in any dictionary) that starts with a common
    surname (``王翠兰``), and a surname (or a compound one, 司马) plus one or two characters
    right after a marker such as 姓名/我是/当事人/户主/走访. A name written without any of
    these (a rare given name split into dictionary words, no marker before it)
    can still pass: docs/serving.md says so.
    """
    from features.text import NAME, get_segmenter, mask
    from models.text_features import SURNAMES, person_name_words

    text = mask(note)
    segmenter = get_segmenter()
    names = person_name_words()
    plain = set(segmenter.cut(text, hmm=False))
    found = {
        tok
        for tok in segmenter.cut(text)
        if tok in names
        or (tok not in plain and 2 <= len(tok) <= 4 and (tok[0] in SURNAMES or tok[:2] in _COMPOUND_SURNAMES))
    }
    for tok in sorted(found, key=len, reverse=True):
        text = text.replace(tok, NAME)
    return _after_marker(SURNAMES).sub(lambda m: m.group(1) + m.group(2) + NAME, text)


@functools.cache
def _after_marker(surnames: str) -> re.Pattern[str]:
    """A marker (姓名, 我是, 当事人 ...), up to two joiners (：是为叫), then a surname and one or two characters."""
    compound = "|".join(_COMPOUND_SURNAMES)
    return re.compile(f"({_NAME_MARKERS})([：:\\s是为叫]{{0,2}})(?:{compound}|[{surnames}])[\u4e00-\u9fff]{{1,2}}")


@router.post("/{warning_id}/status", response_model=WarningRecord, responses=errors(400, 401, 403, 404, 409, 422, 503))
def warning_status(
    request: Request,
    principal: Caller,
    warning_id: Annotated[int, Path(ge=1, le=MAX_WARNING_ID, description="The warning's id (from a ranking).")],
    body: StatusIn,
) -> Response:
    """Move a warning along the closed loop: acknowledged, handled, fed back (with an outcome)."""
    from models.warning_store import WarningStoreError

    store = warning_store(request)
    if store is None:
        raise HTTPException(503, "the warnings database is unreachable; try again later")
    try:
        current = store.get(warning_id)
    except WarningStoreError:
        current = None
    if current is None:
        raise HTTPException(404, "no such warning")
    record(request, warning=warning_id)
    if not principal.sees(current["station_id"], current["county_code"]):
        raise HTTPException(403, "this key may not act on that warning")
    note = mask_note(body.note) if body.note else None
    try:
        moved = store.set_status(warning_id, body.status, actor=principal.key_id, note=note, outcome=body.outcome)
    except WarningStoreError as exc:
        raise HTTPException(409, str(exc)) from None
    return json_ok(moved)

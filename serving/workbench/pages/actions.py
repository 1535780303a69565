"""The forms' POSTs: move a warning along the loop (acknowledge, handle, feed back) and supervise it (督办).

Every POST passes the same gates, in this order: a signed-in session (else 303 to the
sign-in page), this session's CSRF token and a same-origin browser (else 403), the
warning exists (404) and lies in the viewer's scope (403). The write goes through
:class:`~models.warning_store.WarningStore` (these routes are sync: the thread pool, not
the event loop), with the signed-in key's id and name as the actor; free text is masked
with :func:`models.notes.mask_note` first. A move the store refuses (acknowledging a
handled warning, a deadline in the past) comes back as a flash message on the page, not
an error page; the message is the workbench's own, never the input.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response

from models.notes import mask_note
from models.warning_tables import MAX_COMMENT, MAX_DEADLINE_DAYS, MAX_WARNING_ID, OUTCOMES, STATUSES
from serving.audit import record
from serving.workbench.core import (
    PageError,
    Viewer,
    checked_post,
    forbidden,
    not_found,
    redirect_with,
    service_parts,
    viewer,
    workbench_of,
)
from web.labels import OUTCOME_NAMES, STATUS_NAMES
from web.render import LOCAL_ZONE

router = APIRouter(include_in_schema=False)
log = logging.getLogger("yujing.serving")
MAX_NOTE = 500


def _warning(request: Request, warning_id: str, who: Viewer) -> tuple[Any, dict[str, Any]]:
    """The store and the warning, or 404/403 pages (an id that is not a number cannot exist)."""
    _, store = service_parts(request)
    if store is None:
        raise PageError(503, "预警库不可用", "预警库暂时无法访问，请稍后重试。")
    if not warning_id.isdigit() or len(warning_id) > 19 or not 1 <= int(warning_id) <= MAX_WARNING_ID:
        raise not_found("没有该预警。")
    from models.warning_store import WarningStoreError

    try:
        warning = store.get(int(warning_id))
    except WarningStoreError:
        warning = None
    if warning is None:
        raise not_found("没有该预警。")
    record(request, warning=warning["id"])
    if not who.sees(warning["station_id"], warning["county_code"]):
        raise forbidden("您的账号无权处理该预警。")
    return store, warning


def _refresh(request: Request) -> None:
    """Recompute the caches the next page reads now, in this POST (best effort: pages recompute anyway)."""
    wb = workbench_of(request)
    history, store = service_parts(request)
    try:
        wb.data.after_write(store, wb.data.views(history))
    except Exception as exc:
        log.warning("workbench refresh after a write failed: %s", type(exc).__name__)


def _station_page(warning: dict[str, Any]) -> str:
    from urllib.parse import quote

    return f"/wb/stations/{quote(warning['station_id'], safe='')}?date={warning['date']}"


@router.post("/wb/warnings/{warning_id}/status")
def move_warning(
    request: Request,
    warning_id: str,
    who: Annotated[Viewer, Depends(viewer)],
    csrf_token: Annotated[str | None, Form()] = None,
    status: Annotated[str | None, Form()] = None,
    outcome: Annotated[str | None, Form()] = None,
    note: Annotated[str | None, Form()] = None,
) -> Response:
    """Acknowledge, handle or feed back a warning; 303 back to its station's page with a flash message."""
    checked_post(request, who, csrf_token)
    store, warning = _warning(request, warning_id, who)
    back = _station_page(warning)
    wid = warning["id"]
    if status not in STATUSES or status == "pushed":
        return redirect_with(request, back, "error", f"预警 {wid}：未知的操作。")
    if status == "fed_back" and outcome not in OUTCOMES:
        return redirect_with(request, back, "error", f"预警 {wid}：反馈需选择处置结果。")
    if note is not None and len(note) > MAX_NOTE:
        return redirect_with(request, back, "error", f"预警 {wid}：备注不能超过 {MAX_NOTE} 字。")
    from models.warning_store import WarningStoreError

    masked = mask_note(note.strip()) if note and note.strip() else None
    try:
        store.set_status(wid, status, actor=who.actor, note=masked, outcome=outcome if status == "fed_back" else None)
    except WarningStoreError:  # a move backwards or sideways (e.g. acknowledging a handled warning)
        latest = store.get(wid)
        current = STATUS_NAMES.get(latest["status"], "已变更") if latest else "已删除"
        return redirect_with(
            request, back, "error", f"预警 {wid} 当前为“{current}”，不能改为“{STATUS_NAMES[status]}”。"
        )
    _refresh(request)
    done = f"预警 {wid} 已{STATUS_NAMES[status].removeprefix('已')}"
    if status == "fed_back":
        done += f"（{OUTCOME_NAMES[str(outcome)]}）"
    return redirect_with(request, back, "ok", done + "。")


def _deadline(value: str | None) -> datetime | None:
    """A ``datetime-local`` value (``YYYY-MM-DDTHH:MM``) read as Beijing time, or None."""
    if not value or len(value) > 19:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.replace(tzinfo=LOCAL_ZONE) if moment.tzinfo is None else None


@router.post("/wb/warnings/{warning_id}/supervise")
def supervise_warning(
    request: Request,
    warning_id: str,
    who: Annotated[Viewer, Depends(viewer)],
    csrf_token: Annotated[str | None, Form()] = None,
    comment: Annotated[str | None, Form()] = None,
    new_deadline: Annotated[str | None, Form()] = None,
) -> Response:
    """A county (or the city) supervises an open warning: a comment and a new deadline; stations may not."""
    checked_post(request, who, csrf_token)
    if who.scope == "station":
        raise forbidden("督办由县（区）局或市局发起。")
    store, warning = _warning(request, warning_id, who)
    back = f"/wb/counties/{warning['county_code']}/supervision"
    wid = warning["id"]
    deadline = _deadline(new_deadline)
    if deadline is None:
        return redirect_with(request, back, "error", f"预警 {wid}：请填写新的办结期限。")
    if not comment or not comment.strip() or len(comment) > MAX_COMMENT:
        return redirect_with(request, back, "error", f"预警 {wid}：请填写督办意见（不超过 {MAX_COMMENT} 字）。")
    from models.warning_store import WarningStoreError

    try:
        store.supervise(wid, actor=who.actor, comment=mask_note(comment.strip()), new_deadline=deadline)
    except WarningStoreError as exc:
        return redirect_with(request, back, "error", _supervise_refusal(wid, str(exc)))
    _refresh(request)
    return redirect_with(request, back, "ok", f"预警 {wid} 已督办，新期限 {deadline.strftime('%Y-%m-%d %H:%M')}。")


def _supervise_refusal(wid: int, reason: str) -> str:
    """The store's refusal in the workbench's words (its message is English and for logs)."""
    if "future" in reason:
        return f"预警 {wid}：新期限须晚于当前时间。"
    if "days ahead" in reason:
        return f"预警 {wid}：新期限过远（不超过 {MAX_DEADLINE_DAYS} 天）。"
    if "already" in reason or "withdrawn" in reason:
        return f"预警 {wid} 已办结或已撤回，无需督办。"
    return f"预警 {wid}：督办未能保存，请重试。"

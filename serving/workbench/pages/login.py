"""``/wb/login`` and ``/wb/logout``: sign in with a key, sign out.

A key per person is the sign-in (docs/workbench.md#signing-in): the same keys file as the
API, made and revoked with ``yujing keys``. The form posts the key once; the answer sets
a session cookie holding the key's id and scope (serving/workbench/session.py) and sends
the browser to the principal's home page. A wrong key is a 401 with the same form and an
error that never repeats what was typed.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from serving.audit import record
from serving.workbench import csrf
from serving.workbench.core import (
    LOGIN,
    PageError,
    Viewer,
    clear_session,
    current_viewer,
    page,
    session_of,
    set_session,
    workbench_of,
)
from serving.workbench.session import new_session

router = APIRouter(include_in_schema=False)
MAX_KEY_CHARS = 256


def _login_page(request: Request, status: int = 200, error: str | None = None) -> Response:
    """The sign-in form with a fresh anonymous session (its nonce signs the form's CSRF token)."""
    wb = workbench_of(request)
    session = session_of(request)
    if session is None or session.signed_in:
        session = new_session()
    response = page(
        request, "login.html", None, status=status, error=error, csrf_token=csrf.token_for(wb.secret, session.nonce)
    )
    set_session(request, response, session)
    return response


@router.get("/wb/login")
async def login_form(request: Request) -> Response:
    """The sign-in form; a signed-in browser goes straight to its home page."""
    signed_in = current_viewer(request)
    if signed_in is not None:
        return RedirectResponse(signed_in.home, status_code=303)
    return _login_page(request)


@router.post("/wb/login")
async def login(
    request: Request,
    key: Annotated[str | None, Form()] = None,
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    """Check the key; 303 to the principal's home with a new session, or 401 with the form again."""
    wb = workbench_of(request)
    session = session_of(request)
    if session is None or not csrf.token_ok(wb.secret, session.nonce, csrf_token) or not csrf.same_origin(request):
        raise PageError(403, "请求无效", "登录表单已过期，请刷新登录页后重试。")
    typed = key.strip() if key and len(key) <= MAX_KEY_CHARS else None
    person = wb.people.sign_in(typed)
    if person is None:
        problem = "登录暂不可用：密钥文件无法读取，请联系管理员。" if wb.people.problem else "密钥无效或已停用。"
        return _login_page(request, status=401, error=problem)
    principal = person.principal
    request.state.principal = principal
    record(request, signed_in=principal.key_id)
    fresh = new_session(principal.key_id, principal.scope)  # a new nonce: no session fixation
    response = RedirectResponse(Viewer(person, fresh, "").home, status_code=303)
    set_session(request, response, fresh)
    return response


@router.post("/wb/logout")
async def logout(request: Request, csrf_token: Annotated[str | None, Form()] = None) -> Response:
    """End the session in this browser (the CSRF token is checked: a foreign page cannot sign anyone out)."""
    viewer = current_viewer(request)
    if viewer is not None and not csrf.token_ok(workbench_of(request).secret, viewer.session.nonce, csrf_token):
        raise PageError(403, "请求无效", "表单已过期，请返回页面刷新后重试。")
    response = RedirectResponse(LOGIN, status_code=303)
    clear_session(response)
    return response

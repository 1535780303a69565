"""What every workbench page shares: the signed-in viewer, scope refusals, rendering, flash messages.

* :func:`viewer` (a dependency) reads the session cookie, finds its key in the keys file
  again (a revoked key's session ends here) and puts the principal on the request for the
  audit log; without a valid session a page answers 303 to ``/wb/login``.
* :class:`PageError` is a refusal rendered as a page (403 ``无权访问``, 404, 503); nothing
  the caller sent is repeated in it.
* :func:`checked_post` is the gate of every form: the session's CSRF token and the
  browser's Origin/Referer (serving/workbench/csrf.py).
* :func:`page` renders a template of web/templates/workbench/ with the navigation, the
  viewer, the CSRF token and a pending flash message; :func:`redirect_with` sets one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer

from serving.auth import Principal
from serving.workbench import csrf
from serving.workbench.data import WorkbenchData
from serving.workbench.people import KeyDirectory, Person
from serving.workbench.session import COOKIE, COOKIE_PATH, Session, SessionCodec
from web.render import render

FLASH_COOKIE = "yujing_flash"
LOGIN = "/wb/login"
SCOPE_NAMES = {"city": "市局指挥中心", "county": "县（区）局", "station": "派出所"}


@dataclass
class Workbench:
    """The workbench's per-app parts (on ``app.state.workbench``)."""

    codec: SessionCodec
    people: KeyDirectory
    data: WorkbenchData
    settings: Any

    @property
    def secret(self) -> bytes:
        return self.codec.secret

    def flash_serializer(self) -> URLSafeTimedSerializer:
        return URLSafeTimedSerializer(self.codec.secret, salt="yujing-workbench-flash")


def workbench_of(request: Request) -> Workbench:
    return request.app.state.workbench  # type: ignore[no-any-return]


class SignInRequired(Exception):
    """No valid session: the page answers 303 to the sign-in page."""


class PageError(Exception):
    """A refusal shown as a page: ``status``, a heading and one sentence (never the caller's input)."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(title)
        self.status, self.title, self.message = status, title, message


def forbidden(message: str = "您的账号无权查看或处理该内容。") -> PageError:
    return PageError(403, "无权访问", message)


def not_found(message: str = "没有找到该页面或记录。") -> PageError:
    return PageError(404, "未找到", message)


@dataclass(frozen=True)
class Viewer:
    """The signed-in person: their key's principal, name, session and the session's CSRF token."""

    person: Person
    session: Session
    csrf_token: str

    @property
    def principal(self) -> Principal:
        return self.person.principal

    @property
    def scope(self) -> str:
        return self.principal.scope

    @property
    def name(self) -> str:
        return self.person.name or f"密钥 {self.principal.key_id}"

    @property
    def actor(self) -> str:
        """What the warnings store records as the actor: the key id and, when the keys file names it, the name."""
        named = f"{self.principal.key_id} {self.person.name}" if self.person.name else self.principal.key_id
        return named[:64]

    @property
    def home(self) -> str:
        if self.scope == "county":
            return f"/wb/counties/{self.principal.county}"
        if self.scope == "station":
            return f"/wb/stations/{self.principal.station}"
        return "/wb/"

    def sees_county(self, county_code: str) -> bool:
        return self.scope == "city" or (self.scope == "county" and self.principal.county == county_code)

    def sees(self, station_id: str | None, county_code: str | None) -> bool:
        return self.principal.sees(station_id, county_code)

    def nav(self) -> list[tuple[str, str]]:
        p = self.principal
        if self.scope == "city":
            return [("总览", "/wb/"), ("考评", "/wb/assessment"), ("分析报告", "/wb/reports")]
        if self.scope == "county":
            return [
                ("本县（区）", f"/wb/counties/{p.county}"),
                ("督办", f"/wb/counties/{p.county}/supervision"),
                ("考评", "/wb/assessment"),
                ("分析报告", "/wb/reports"),
            ]
        return [("本所预警", f"/wb/stations/{p.station}"), ("考评", "/wb/assessment")]


def session_of(request: Request) -> Session | None:
    return workbench_of(request).codec.loads(request.cookies.get(COOKIE))


def current_viewer(request: Request) -> Viewer | None:
    """The signed-in viewer of this request, or None (no cookie, forged, expired, or the key revoked)."""
    wb = workbench_of(request)
    session = session_of(request)
    if session is None or not session.signed_in:
        return None
    person = wb.people.by_id(session.key_id)
    if person is None or person.principal.scope != session.scope:
        return None
    request.state.principal = person.principal  # the audit log names the key (serving/audit.py)
    return Viewer(person, session, csrf.token_for(wb.secret, session.nonce))


async def viewer(request: Request) -> Viewer:
    """Dependency: the signed-in viewer, or :class:`SignInRequired` (async: no thread hop for a dict lookup)."""
    found = current_viewer(request)
    if found is None:
        raise SignInRequired
    return found


def checked_post(request: Request, viewer: Viewer, token: str | None) -> None:
    """Refuse (403) a form without this session's CSRF token, or sent from another origin."""
    if not csrf.token_ok(workbench_of(request).secret, viewer.session.nonce, token) or not csrf.same_origin(request):
        raise PageError(403, "请求无效", "表单已过期或来源不明，请返回页面刷新后重试。")


def service_parts(request: Request) -> tuple[Any, Any]:
    """The engine's history and the warnings store (503 page while the service loads)."""
    from serving.routers.warnings import warning_store

    service = request.app.state.service
    if service is None:
        raise PageError(503, "正在加载", "服务正在加载模型和数据，请稍后刷新。")
    return service.engine.history, warning_store(request)


def _pop_flash(request: Request) -> dict[str, str] | None:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    try:
        value = workbench_of(request).flash_serializer().loads(raw, max_age=120)
    except (BadSignature, ValueError, TypeError):
        return None
    if isinstance(value, dict) and value.get("k") in ("ok", "error") and isinstance(value.get("t"), str):
        return {"kind": value["k"], "text": value["t"]}
    return None


def page(request: Request, template: str, viewer: Viewer | None, status: int = 200, **context: Any) -> HTMLResponse:
    """A workbench template rendered with the navigation, the viewer, the CSRF token and any pending flash."""
    flash = _pop_flash(request)
    html = render(
        f"workbench/{template}",
        viewer=viewer,
        nav=viewer.nav() if viewer else [],
        scope_name=SCOPE_NAMES.get(viewer.scope, "") if viewer else "",
        csrf_token=viewer.csrf_token if viewer else context.pop("csrf_token", ""),
        flash=flash,
        **context,
    )
    response = HTMLResponse(html, status_code=status)
    if flash is not None:
        response.delete_cookie(FLASH_COOKIE, path=COOKIE_PATH)
    return response


def redirect_with(request: Request, url: str, kind: str, text: str) -> Response:
    """303 to ``url`` carrying a one-time message (a signed cookie; the text is the server's, never the input)."""
    response = RedirectResponse(url, status_code=303)
    value = workbench_of(request).flash_serializer().dumps({"k": kind, "t": text})
    response.set_cookie(
        FLASH_COOKIE,
        value,
        max_age=120,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


def set_session(request: Request, response: Response, session: Session) -> None:
    wb = workbench_of(request)
    response.set_cookie(
        COOKIE,
        wb.codec.dumps(session),
        max_age=wb.codec.max_age,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def clear_session(response: Response) -> None:
    response.delete_cookie(COOKIE, path=COOKIE_PATH)

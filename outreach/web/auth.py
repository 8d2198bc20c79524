"""Staff logins for ``outreach serve``: sessions, API tokens, CSRF, the login rate limit and
roles. Accounts themselves are :mod:`outreach.accounts` (``outreach users``).

The interface for route modules (the dashboard, the JSON API)
-------------------------------------------------------------
* ``@requires("viewer")`` / ``@requires("admin")`` on an endpoint ``async def f(request)``:
  nobody reaches it without a login. Pages: an anonymous visit is redirected (303) to
  ``/login?next=<path>``; a user without the role gets a 403 page. With ``api=True``: 401
  JSON (``WWW-Authenticate: Bearer``) and 403 JSON instead. Every POST/PUT/PATCH/DELETE
  through it must carry the session's CSRF token (form field ``csrf_token`` or header
  ``X-CSRF-Token``), else 403; bearer-token calls need none (browsers never send them by
  themselves).
* ``request.state.user``: a :class:`~outreach.accounts.StaffUser` (``email``, ``role``,
  ``is_admin``, ``via``) or None, set for every request by :class:`Identify` (a session cookie
  or ``Authorization: Bearer``).
* In templates (through ``services.page``): ``user``, ``csrf_token`` and ``{{ csrf_field() }}``,
  the hidden input every state-changing form must contain. Staff pages extend
  ``staff.html``, whose header shows who is logged in and a log-out button (a POST).
* ``await form(request)``: the urlencoded body as a dict (bounded; read once, cached, and
  already read by ``@requires`` for a POST).
* A login without ``?next=`` lands on ``/`` when a route serves it (the dashboard), else on
  ``/account``; the header's "outreach" links there too.
* ``await services.audit(user, action, target, why)`` records an admin change
  (:class:`~outreach.store.codes.AuditAction`), or ``outreach.accounts.record`` inside a
  ``services.db`` call to record it in the change's own transaction.

Sessions
--------
A login creates a session: 256 random bits (:mod:`secrets`) in the cookie ``outreach_session``,
signed with ``OUTREACH_SECRET_KEY`` (itsdangerous, HMAC-SHA256), ``HttpOnly``,
``SameSite=Lax``, ``Path=/``, and ``Secure`` whenever the request came over https (directly, or
through a trusted proxy's ``X-Forwarded-Proto: https``). The store keeps the SHA-256 of the id
and the session's CSRF token. A session ends after :data:`~outreach.accounts.SESSION_IDLE`
without a request (2 h), or :data:`~outreach.accounts.SESSION_MAX` after the login (12 h),
whichever comes first; at logout (POST ``/logout``); when its user is removed or given a new
password. A new login always makes a new session (no fixation).

The login form is protected too: ``GET /login`` sets a random nonce cookie
(``outreach_login``) and the form carries its signature. Failed logins are counted in the
store, per account and per client address (:func:`outreach.accounts.begin_login`): after 10
in 15 minutes the answer is 429 with ``Retry-After``.

``--insecure-no-auth`` (local use only) makes every request an admin named ``local:<OS user>``;
CSRF tokens are still required, from a per-process secret.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable
from datetime import timedelta
from urllib.parse import parse_qsl, quote

from itsdangerous import BadSignature, Signer
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from outreach import accounts
from outreach.accounts import ActiveSession, RateLimited, StaffUser
from outreach.exceptions import ConfigError, LedgerError
from outreach.store.codes import StaffRole
from outreach.web.services import CSRF_FIELD, Services, read_capped

log = logging.getLogger("outreach.server")

SESSION_COOKIE = "outreach_session"
LOGIN_COOKIE = "outreach_login"  # the login form's CSRF nonce
CSRF_HEADER = "X-CSRF-Token"
LOGIN_PATH = "/login"
LOGOUT_PATH = "/logout"
HOME = "/"  # where a login lands without ?next=: the dashboard, when a route serves "/"…
FALLBACK_HOME = "account"  # …else the account page (a service without the dashboard)
MAX_FORM = 64 * 1024  # bytes of a form body
SECRET_MIN = 32  # characters of OUTREACH_SECRET_KEY
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOGIN_NONCE_AGE = 3600  # seconds the login form's nonce cookie lives

Endpoint = Callable[[Request], Awaitable[Response]]


def check_secret(secret: str | None) -> str:
    """``OUTREACH_SECRET_KEY``, or a one-line error saying how to make one."""
    make = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
    if not secret:
        raise ConfigError(
            "OUTREACH_SECRET_KEY is not set: staff logins need it to sign their cookies",
            hint=f"put one in the environment or .env (make one with {make}), "
            "or pass --insecure-no-auth for local use only",
        )
    if len(secret) < SECRET_MIN:
        raise ConfigError(
            f"OUTREACH_SECRET_KEY is too short ({len(secret)} characters; at least {SECRET_MIN})",
            hint=f"make a new one with {make}",
        )
    return secret


def home(conn: HTTPConnection) -> str:
    """The path of the staff's landing page: the dashboard at ``/``, or the account page."""
    if any(getattr(route, "path", None) == HOME for route in conn.app.routes):
        return HOME
    return conn.app.url_path_for(FALLBACK_HOME)


def safe_next(request: Request, target: str | None) -> str:
    """Where to go after a login: a path on this site only (never ``//host`` or a URL)."""
    if (
        not target
        or not target.startswith("/")
        or target.startswith(("//", "/\\"))
        or any(c in target for c in "\r\n\\")
    ):
        return home(request)
    return target


def absolute(request: Request, path: str) -> str:
    """``path`` on this site as a full URL, on the scheme the client used (https behind a
    trusted proxy that says so)."""
    return str(request.base_url).rstrip("/") + path


def is_https(conn: HTTPConnection) -> bool:
    """The request came over https (the proxy's word, when its headers are trusted)."""
    return conn.url.scheme == "https"


class Gate:
    """The staff login of one app: signs cookies, finds who is asking, checks CSRF tokens."""

    def __init__(self, services: Services) -> None:
        self.services = services
        s = services.settings
        self.no_auth = s.no_auth
        if self.no_auth:
            from outreach.suppressions import default_user

            self.local = StaffUser(f"local:{default_user()}", StaffRole.ADMIN, "insecure")
            # `outreach serve` gives every worker the same one (their CSRF tokens must agree)
            secret = s.secret_key or secrets.token_urlsafe(32)
        else:
            secret = check_secret(s.secret_key)
        self._sessions = Signer(secret, salt="outreach.session", digest_method=hashlib.sha256)
        self._login = Signer(secret, salt="outreach.login", digest_method=hashlib.sha256)
        self._local_csrf = hmac.new(secret.encode(), b"insecure-no-auth csrf", "sha256").hexdigest()
        self.idle = accounts.SESSION_IDLE
        self.maximum = accounts.SESSION_MAX
        self._home: str | None = None

    # -- who is asking ------------------------------------------------------------------------

    async def identify(self, conn: HTTPConnection) -> None:
        """Set ``state.user`` (None: anonymous), ``state.csrf_token`` and ``state.session``."""
        state = conn.state
        state.user = None
        state.csrf_token = None
        state.session = None
        state.no_auth = self.no_auth
        state.auth_error = None
        if self._home is None:  # the routes are fixed once the app runs
            self._home = home(conn)
        state.home = self._home
        if self.no_auth:
            state.user = self.local
            state.csrf_token = self._local_csrf
            return
        header = conn.headers.get("authorization")
        cookie = conn.cookies.get(SESSION_COOKIE)
        if header is None and cookie is None:
            return
        sv = self.services
        try:
            if header is not None:
                scheme, _, token = header.partition(" ")
                if scheme.lower() == "bearer" and token.strip():
                    state.user = await sv.db(accounts.token_user, token.strip(), sv.now())
                else:
                    state.auth_error = "bad-authorization"
                return
            assert cookie is not None
            try:
                session_id = self._sessions.unsign(cookie).decode("ascii")
            except (BadSignature, UnicodeDecodeError):
                return
            found: ActiveSession | None = await sv.db(
                accounts.session_user, session_id, sv.now(), idle=self.idle, maximum=self.maximum
            )
            if found is not None:
                state.user = found.user
                state.csrf_token = found.csrf_token
                state.session = found
        except LedgerError as exc:
            log.error("could not check a login: %s", exc.message)
            state.auth_error = "store-unavailable"

    # -- CSRF ---------------------------------------------------------------------------------

    async def csrf_ok(self, request: Request) -> bool:
        """The request carries the session's CSRF token (header or form field)."""
        expected = request.state.csrf_token
        if not expected:
            return False
        given = request.headers.get(CSRF_HEADER)
        if given is None:
            ctype = request.headers.get("content-type", "")
            if ctype.split(";")[0].strip() == "application/x-www-form-urlencoded":
                given = (await form(request)).get(CSRF_FIELD)
        return given is not None and hmac.compare_digest(given.encode(), expected.encode())

    def login_token(self, nonce: str) -> str:
        return self._login.get_signature(nonce).decode("ascii")

    # -- cookies ------------------------------------------------------------------------------

    def set_session_cookie(self, response: Response, request: Request, session_id: str) -> None:
        response.set_cookie(
            SESSION_COOKIE,
            self._sessions.sign(session_id).decode("ascii"),
            max_age=int(self.maximum.total_seconds()),
            path="/",
            secure=is_https(request),
            httponly=True,
            samesite="lax",
        )

    def clear_session_cookie(self, response: Response, request: Request) -> None:
        response.delete_cookie(
            SESSION_COOKIE, path="/", secure=is_https(request), httponly=True, samesite="lax"
        )


class Identify:
    """ASGI middleware: who is asking, for every HTTP request (see :meth:`Gate.identify`)."""

    def __init__(self, app: ASGIApp, services: Services) -> None:
        self.app = app
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # the stylesheet is public and sent with every page: no store call for it
        if (
            scope["type"] == "http"
            and self.services.gate is not None
            and not scope["path"].startswith("/static/")
        ):
            await self.services.gate.identify(HTTPConnection(scope))
        await self.app(scope, receive, send)


# ------------------------------------------------------------------------------------------
# Guarding routes


def _gate(request: Request) -> Gate:
    gate = request.app.state.services.gate
    assert gate is not None, "the auth routes were not mounted"
    return gate


def api_error(status: int, error: str, message: str, **headers: str) -> JSONResponse:
    """The JSON API's error document: ``{"error": code, "message": words}`` (never cached)."""
    return JSONResponse(
        {"error": error, "message": message},
        status_code=status,
        headers={"Cache-Control": "no-store", **headers},
    )


def refuse(request: Request, status: int, title: str, message: str, *, api: bool) -> Response:
    """A refusal as the API's JSON or as a page."""
    if api:
        code = {401: "unauthenticated", 403: "forbidden", 503: "unavailable"}.get(status, "error")
        headers = {"WWW-Authenticate": 'Bearer realm="outreach"'} if status == 401 else {}
        return api_error(status, code, message, **headers)
    sv: Services = request.app.state.services
    return sv.page(
        request, "auth/message.html", {"title": title, "message": message}, status=status
    )


def requires(role: StaffRole | str, *, api: bool = False) -> Callable[[Endpoint], Endpoint]:
    """Only logged-in staff with ``role`` (``viewer`` or ``admin``) reach the endpoint; state
    changes need the CSRF token. See the module's docstring."""
    needed = StaffRole(role)

    def wrap(endpoint: Endpoint) -> Endpoint:
        @functools.wraps(endpoint)
        async def guarded(request: Request) -> Response:
            state = request.state
            user: StaffUser | None = getattr(state, "user", None)
            if user is None:
                if state.auth_error == "store-unavailable":
                    return refuse(
                        request, 503, "Try again", "The database cannot be read now.", api=api
                    )
                if api:
                    return refuse(
                        request, 401, "Log in", "log in, or send Authorization: Bearer", api=True
                    )
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(
                    f"{request.url_for('login')}?next={quote(target, safe='/')}", status_code=303
                )
            if not user.may(needed):
                log.warning(
                    "refused %s %s to %s (%s; needs %s)",
                    request.method,
                    request.url.path,
                    user.email,
                    user.role,
                    needed,
                )
                return refuse(
                    request,
                    403,
                    "Not allowed",
                    f"This needs the {needed} role; your account is a {user.role}.",
                    api=api,
                )
            if (
                request.method not in SAFE_METHODS
                and user.via != "token"
                and not await _gate(request).csrf_ok(request)
            ):
                log.warning("refused %s %s: no valid CSRF token", request.method, request.url)
                return refuse(
                    request,
                    403,
                    "Form expired",
                    "The request had no valid CSRF token: reload the page and try again.",
                    api=api,
                )
            return await endpoint(request)

        guarded.staff_role = needed  # type: ignore[attr-defined]
        return guarded

    return wrap


async def form(request: Request) -> dict[str, str]:
    """The request's urlencoded form (first value of each field; at most :data:`MAX_FORM`
    bytes read), cached on the request."""
    cached = getattr(request.state, "form", None)
    if cached is not None:
        return cached
    fields: dict[str, str] = {}
    for key, value in parse_qsl(await read_capped(request, MAX_FORM), keep_blank_values=True):
        fields.setdefault(key, value)
    request.state.form = fields
    return fields


# ------------------------------------------------------------------------------------------
# /login and /logout


class Login:
    def __init__(self, services: Services, gate: Gate) -> None:
        self.services = services
        self.gate = gate

    def _form(
        self,
        request: Request,
        *,
        email: str = "",
        error: str | None = None,
        status: int = 200,
        next_path: str | None = None,
    ) -> Response:
        nonce = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(24)
        request.state.csrf_token = self.gate.login_token(nonce)
        response = self.services.page(
            request,
            "auth/login.html",
            {
                "title": "Log in",
                "email": email,
                "error": error,
                "next": next_path or safe_next(request, request.query_params.get("next")),
            },
            status=status,
        )
        response.set_cookie(
            LOGIN_COOKIE,
            nonce,
            max_age=LOGIN_NONCE_AGE,
            path=LOGIN_PATH,
            secure=is_https(request),
            httponly=True,
            samesite="lax",
        )
        return response

    async def page(self, request: Request) -> Response:
        if request.state.user is not None:
            return RedirectResponse(
                absolute(request, safe_next(request, request.query_params.get("next"))),
                status_code=303,
            )
        return self._form(request)

    async def submit(self, request: Request) -> Response:
        sv = self.services
        if self.gate.no_auth:
            return RedirectResponse(absolute(request, home(request)), status_code=303)
        fields = await form(request)
        nonce = request.cookies.get(LOGIN_COOKIE)
        token = fields.get(CSRF_FIELD, "")
        if not nonce or not hmac.compare_digest(token, self.gate.login_token(nonce)):
            sv.stats.rejected["login-csrf"] += 1
            return self._form(
                request,
                error="The login form had expired. Please try again.",
                status=403,
                next_path=safe_next(request, fields.get("next")),
            )
        email = fields.get("email", "").strip()
        password = fields.get("password", "")
        nxt = safe_next(request, fields.get("next"))
        client = request.client.host if request.client else None
        now = sv.now()
        try:
            attempt = await sv.db(accounts.begin_login, email, client, now)
        except RateLimited as exc:
            log.warning(
                "login refused (rate limit) for %s from %s", accounts.account_key(email), client
            )
            response = sv.page(
                request,
                "auth/message.html",
                {
                    "title": "Too many attempts",
                    "message": "Too many failed logins. Please wait "
                    f"{_minutes(exc.retry_after)} and try again.",
                },
                status=429,
            )
            response.headers["Retry-After"] = str(exc.retry_after)
            return response
        except LedgerError as exc:
            log.error("login: %s", exc.message)
            return refuse(request, 503, "Try again", "The database cannot be read now.", api=False)
        if len(password) > accounts.PASSWORD_MAX:
            check = accounts.Check(False)
        else:
            stored = attempt.user.password_hash if attempt.user else None
            check = await run_in_threadpool(accounts.check_password, stored, password)
        ua = request.headers.get("user-agent")
        new = await sv.db(accounts.finish_login, attempt, check, now, client=client, user_agent=ua)
        if new is None:
            log.warning("failed login for %s from %s", attempt.email, client)
            return self._form(
                request, email=email, error="Wrong email or password.", status=401, next_path=nxt
            )
        log.info("login: %s (%s) from %s", new.user.email, new.user.role, client)
        response = RedirectResponse(absolute(request, nxt), status_code=303)
        self.gate.set_session_cookie(response, request, new.session_id)
        response.delete_cookie(LOGIN_COOKIE, path=LOGIN_PATH)
        return response

    async def logout(self, request: Request) -> Response:
        state = request.state
        response = RedirectResponse(str(request.url_for("login")), status_code=303)
        if state.session is not None:
            if not await self.gate.csrf_ok(request):
                return refuse(
                    request,
                    403,
                    "Form expired",
                    "The request had no valid CSRF token: reload the page and try again.",
                    api=False,
                )
            await self.services.db(accounts.end_session, state.session.key)
            log.info("logout: %s", state.user.email)
        self.gate.clear_session_cookie(response, request)
        return response


def _minutes(seconds: int) -> str:
    minutes = max(1, round(seconds / 60))
    return "a minute" if minutes == 1 else f"{minutes} minutes"


# ------------------------------------------------------------------------------------------
# Pages of one's own: who am I, and (admins) the audit log


@requires(StaffRole.VIEWER)
async def account_page(request: Request) -> Response:
    sv: Services = request.app.state.services
    session: ActiveSession | None = request.state.session
    return sv.page(
        request,
        "auth/account.html",
        {
            "title": "Your account",
            "expires_at": session.expires_at.strftime("%Y-%m-%d %H:%M") if session else None,
            "idle_hours": _hours(accounts.SESSION_IDLE),
            "max_hours": _hours(accounts.SESSION_MAX),
        },
    )


@requires(StaffRole.ADMIN)
async def audit_page(request: Request) -> Response:
    sv: Services = request.app.state.services
    entries = await sv.db(accounts.audit_log, 200)
    return sv.page(request, "auth/audit.html", {"title": "Audit log", "entries": entries})


def _hours(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 3600:g}"


def routes(services: Services) -> list[BaseRoute]:
    gate = Gate(services)
    services.gate = gate
    login = Login(services, gate)
    return [
        Route(LOGIN_PATH, login.page, methods=["GET"], name="login"),
        Route(LOGIN_PATH, login.submit, methods=["POST"], name="login_submit"),
        Route(LOGOUT_PATH, login.logout, methods=["POST"], name="logout"),
        Route("/account", account_page, methods=["GET"], name="account"),
        Route("/audit", audit_page, methods=["GET"], name="audit"),
    ]

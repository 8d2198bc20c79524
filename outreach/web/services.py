"""What the routes of one ``outreach serve`` worker share: the workspace, the settings, a clock,
the counters it logs, the templates, and its own store connection.

Route modules receive a :class:`Services` and reach the store only through :meth:`Services.db`,
which runs a store call in a worker thread, one call at a time (one connection per process).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from markupsafe import Markup
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response
from starlette.templating import Jinja2Templates

from outreach.ledger import Ledger
from outreach.store.codes import AuditAction, AuditVia
from outreach.web.templating import environment
from outreach.workspace import Workspace

if TYPE_CHECKING:
    from outreach.accounts import StaffUser
    from outreach.web.auth import Gate

log = logging.getLogger("outreach.server")

DEFAULT_MAX_AGE = 600
DEFAULT_MAX_BODY = 5 * 1024 * 1024
DEFAULT_TRUSTED_PROXIES = "127.0.0.1,::1"

T = TypeVar("T")

SECRET_SETTINGS = ("public_key", "secret_key")  # read again by each worker, never passed on
CSRF_FIELD = "csrf_token"  # the form field (and X-CSRF-Token header) of the CSRF token


@dataclass
class ServerSettings:
    """How the app behaves. Everything but the key travels to worker processes as JSON."""

    public_key: str | None = None  # SENDGRID_WEBHOOK_PUBLIC_KEY (re-read by each worker)
    secret_key: str | None = None  # OUTREACH_SECRET_KEY: signs staff cookies (re-read too)
    insecure: bool = False  # accept unsigned webhook requests (local tests only)
    no_auth: bool = False  # --insecure-no-auth: staff pages without a login (local use only)
    max_age: int = DEFAULT_MAX_AGE  # seconds a signed timestamp may be from now
    max_body: int = DEFAULT_MAX_BODY  # bytes of webhook body
    unsubscribe_prefixes: tuple[str, ...] = ("/u",)
    proxy_headers: bool = False  # trust X-Forwarded-Proto/-For from forwarded_allow_ips
    forwarded_allow_ips: str = DEFAULT_TRUSTED_PROXIES
    now: float | None = None  # a fixed clock in Unix seconds (tests, the hidden --now)

    def shared(self) -> dict:
        """The settings a worker process receives (JSON-safe, without the secrets)."""
        return {k: v for k, v in asdict(self).items() if k not in SECRET_SETTINGS}

    @classmethod
    def from_shared(
        cls, data: dict, public_key: str | None, secret_key: str | None = None
    ) -> ServerSettings:
        return cls(
            public_key=public_key,
            secret_key=secret_key,
            **{**data, "unsubscribe_prefixes": tuple(data["unsubscribe_prefixes"])},
        )


@dataclass
class Stats:
    """Counters of one worker, logged on every rejection and when it stops."""

    rejected: Counter = field(default_factory=Counter)
    batches: int = 0
    events: int = 0
    stored: int = 0
    duplicates: int = 0
    unmatched: int = 0
    unsubscribes: int = 0

    def summary(self) -> str:
        return (
            f"{self.batches} batch(es), {self.events} event(s), {self.stored} stored, "
            f"{self.duplicates} duplicate, {self.unmatched} unmatched, "
            f"{self.unsubscribes} unsubscribe(s); rejections: "
            + (", ".join(f"{k}={v}" for k, v in sorted(self.rejected.items())) or "none")
        )


class Services:
    """Shared by the routes of one app (one per worker process)."""

    def __init__(
        self, ws: Workspace, settings: ServerSettings, clock: Callable[[], float] | None = None
    ) -> None:
        self.ws = ws
        self.settings = settings
        if clock is None:
            fixed = settings.now
            clock = time.time if fixed is None else (lambda: fixed)
        self.clock = clock
        self.stats = Stats()
        self.templates = Jinja2Templates(env=environment(), context_processors=[staff_context])
        self.ledger: Ledger | None = None
        self.gate: Gate | None = None  # the staff login (outreach.web.auth), set by its routes
        # per-worker caches of route modules (outreach.web.live keeps computed reports here)
        self.caches: dict[str, Any] = {}
        self.tasks: set[asyncio.Task] = set()  # background work, awaited at shutdown
        self._lock = threading.Lock()

    # -- the store ---------------------------------------------------------------------------

    def open(self) -> None:
        """Open this worker's own connection (at startup; migrations ran in the parent)."""
        self.ledger = Ledger.open(
            self.ws.db_url(), self.ws.root, purpose=f"outreach serve (pid {os.getpid()})"
        )

    def close(self) -> None:
        if self.ledger is not None:
            self.ledger.close()
            self.ledger = None

    async def db(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        """``fn(ledger, *args, **kw)`` in a worker thread, never two at once on the connection."""
        return await run_in_threadpool(self._locked, fn, *args, **kw)

    def _locked(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        with self._lock:
            if self.ledger is None:
                raise RuntimeError("the app's store is not open (was the lifespan started?)")
            return fn(self.ledger, *args, **kw)

    def spawn(self, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run ``work`` in the background; the worker waits for it before it stops."""
        task = asyncio.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def drain(self) -> None:
        """Wait for the background work (at shutdown, before the store is closed)."""
        while self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)

    def now(self) -> datetime:
        """The app's clock as an aware datetime (UTC)."""
        return datetime.fromtimestamp(self.clock(), UTC)

    async def audit(
        self,
        user: StaffUser,
        action: AuditAction | str,
        target: str | None,
        why: str | None,
        *,
        via: AuditVia | str = AuditVia.WEB,
    ) -> None:
        """Record an admin change in the audit log: who (``user``), when (the app's clock),
        what (``action`` on ``target``), why, and from where (``via``: web or api). To record
        it in the same transaction as the change, call :func:`outreach.accounts.record` inside
        the function given to :meth:`db` instead."""
        from outreach.accounts import record

        await self.db(
            record, user.email, AuditAction(action), target, why, via=AuditVia(via), now=self.now()
        )

    # -- answers -----------------------------------------------------------------------------

    def reject(self, status: int, reason: str, request: Request, detail: str = "") -> Response:
        """A plain-text refusal, logged with its reason and the running count per reason."""
        self.stats.rejected[reason] += 1
        counts = ", ".join(f"{k}={v}" for k, v in sorted(self.stats.rejected.items()))
        client = request.client.host if request.client else "?"
        log.warning(
            "rejected %s %s from %s%s (rejections so far: %s)",
            status,
            reason,
            client,
            f": {detail}" if detail else "",
            counts,
        )
        return PlainTextResponse(f"{status} {reason}\n", status_code=status)

    def page(
        self, request: Request, template: str, context: dict[str, Any], *, status: int = 200
    ) -> Response:
        """A page from ``outreach/web/templates`` (never cached: it may name a recipient)."""
        return self.templates.TemplateResponse(
            request, template, context, status_code=status, headers={"Cache-Control": "no-store"}
        )


# the staff header's links: (route name, words, admins only)
NAV = (
    ("campaigns", "Campaigns", False),
    ("contacts", "Contacts", False),
    ("suppressions", "Suppressions", False),
    ("audit", "Audit log", True),
)


def staff_nav(request: Request, user: StaffUser | None) -> list[dict[str, Any]]:
    """The header's links for ``user`` (none when logged out): the dashboard's pages that this
    app serves, the one being shown marked ``current``."""
    if user is None:
        return []
    names = {getattr(r, "name", None) for r in request.app.routes}
    here = request.url.path
    out = []
    for name, words, admin in NAV:
        if name not in names or (admin and not user.is_admin):
            continue
        href = request.app.url_path_for(name)
        current = (
            here == href or here.startswith(href + "/") or (name == "campaigns" and here == "/")
        )
        out.append({"href": href, "words": words, "current": current})
    return out


def staff_context(request: Request) -> dict[str, Any]:
    """What every page's template sees about the staff login (set by
    :class:`outreach.web.auth.Identify`): ``user`` (a StaffUser or None), ``csrf_token`` and
    ``csrf_field()``, the hidden input every state-changing form must carry."""
    state = request.state
    token = getattr(state, "csrf_token", None) or ""

    def csrf_field() -> Markup:
        return Markup('<input type="hidden" name="{}" value="{}">').format(CSRF_FIELD, token)

    user = getattr(state, "user", None)
    return {
        "user": user,
        "nav": staff_nav(request, user),
        "no_auth": getattr(state, "no_auth", False),
        "home_url": getattr(state, "home", "/"),
        "csrf_token": token,
        "csrf_field": csrf_field,
    }


async def read_capped(request: Request, limit: int) -> str:
    """A form body as text, at most ``limit`` bytes of it read (a client that closes early
    gives what arrived)."""
    raw = bytearray()
    try:
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > limit:
                break
    except ClientDisconnect:
        pass
    return raw[:limit].decode("utf-8", "replace")

"""The ASGI app of ``outreach serve``: one Starlette application built from route modules.

Each module in :data:`ROUTE_MODULES` exposes ``routes(services) -> list[BaseRoute]`` and reaches
the store only through :class:`~outreach.web.services.Services` (the staff dashboard, the JSON
API and the recipients' preference pages are added the same way). This module owns what every
route shares: ``/healthz``, the stylesheet under ``/static``, security headers, the trusted-proxy
handling, who is asking (:class:`outreach.web.auth.Identify`: the staff login), and the lifespan
that opens and closes the worker's own store connection.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from outreach.exceptions import LedgerError
from outreach.ledger import Ledger
from outreach.web import api, auth, dashboard, unsubscribe, webhook
from outreach.web.services import ServerSettings, Services
from outreach.workspace import Workspace

log = logging.getLogger("outreach.server")

ROUTE_MODULES = (webhook, unsubscribe, auth, api, dashboard)

# Pages carry secrets in their URL (an unsubscribe token): never send it on as a Referer.
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
}


class SecurityHeaders:
    """Adds :data:`SECURITY_HEADERS` to every HTTP response that does not set its own."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(
    ws: Workspace, settings: ServerSettings, *, clock: Callable[[], float] | None = None
) -> Starlette:
    """The app for one worker. ``clock`` (Unix seconds) defaults to ``settings.now`` or the
    wall clock; the webhook's timestamp window and recorded unsubscribes use it."""
    services = Services(ws, settings, clock)

    async def healthz(request: Request) -> Response:
        try:
            await services.db(Ledger.ping)
        except LedgerError as exc:
            log.error("health check failed: %s", exc.message)
            return PlainTextResponse("database unavailable\n", status_code=503)
        return PlainTextResponse("ok\n")

    routes: list[BaseRoute] = [
        Route("/healthz", healthz, methods=["GET"], name="healthz"),
        Mount("/static", StaticFiles(packages=[("outreach.web", "static")]), name="static"),
    ]
    for module in ROUTE_MODULES:
        routes += module.routes(services)

    @asynccontextmanager
    async def lifespan(app: Starlette):
        services.open()
        try:
            yield
        finally:
            await services.drain()  # e.g. a report being computed
            services.close()
            # logged on shutdown (uvicorn re-raises SIGTERM/SIGINT after this, ending the process)
            log.info("worker %d stopped: %s", os.getpid(), services.stats.summary())

    async def http_error(request: Request, exc: Exception) -> Response:
        """404, 405…: JSON under /api/ (docs/api.md), plain text elsewhere."""
        assert isinstance(exc, HTTPException)
        headers = dict(exc.headers or {})
        if request.url.path.startswith("/api/"):
            return JSONResponse(
                {
                    "error": "not-found" if exc.status_code == 404 else "http-error",
                    "message": exc.detail,
                },
                status_code=exc.status_code,
                headers=headers,
            )
        return PlainTextResponse(exc.detail, status_code=exc.status_code, headers=headers)

    # outermost first; Identify runs last, so it sees the proxy's scheme and client address
    middleware = [Middleware(SecurityHeaders), Middleware(auth.Identify, services=services)]
    if settings.proxy_headers:
        # outermost: the scheme and client address are the proxy's word before anything runs
        middleware.insert(
            0, Middleware(ProxyHeadersMiddleware, trusted_hosts=settings.forwarded_allow_ips)
        )
    app = Starlette(
        routes=routes,
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers={HTTPException: http_error},
    )
    app.state.services = services
    return app

"""``outreach serve``: run the app (:mod:`outreach.web.app`) under uvicorn.

One worker runs in this process. With ``workers > 1`` uvicorn starts that many processes on one
socket; each builds its own app through :func:`worker_app` (an import string, as uvicorn needs)
and opens its own store connection. The settings reach them as JSON in an environment
variable; the webhook key is read again from the workspace (environment or ``.env``), never
passed along.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import time
from dataclasses import dataclass

import uvicorn
from starlette.applications import Starlette
from uvicorn.supervisors.multiprocess import Multiprocess

from outreach.exceptions import ConfigError
from outreach.ledger import Ledger
from outreach.web.app import create_app
from outreach.web.services import (
    DEFAULT_MAX_AGE,
    DEFAULT_MAX_BODY,
    DEFAULT_TRUSTED_PROXIES,
    ServerSettings,
)
from outreach.web.unsubscribe import unsubscribe_prefixes
from outreach.workspace import Workspace

log = logging.getLogger("outreach.server")

WORKER_ENV = "OUTREACH_SERVE_WORKER"  # {"root": …, "settings": …} for worker processes
WORKER_APP = "outreach.web.serve:worker_app"


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8025
    workers: int = 1
    proxy_headers: bool = False
    forwarded_allow_ips: str | None = None  # default: DEFAULT_TRUSTED_PROXIES
    max_age: int = DEFAULT_MAX_AGE
    max_body: int = DEFAULT_MAX_BODY
    insecure: bool = False
    no_auth: bool = False  # --insecure-no-auth: staff pages without a login (local use only)
    now: float | None = None  # a fixed clock, in Unix seconds (tests)


def settings_for(ws: Workspace, options: ServeOptions) -> ServerSettings:
    """The app's settings from the command's options and the workspace."""
    if options.forwarded_allow_ips is not None and not options.proxy_headers:
        raise ConfigError(
            "--forwarded-allow-ips only matters with --proxy-headers",
            hint="add --proxy-headers to trust X-Forwarded-Proto/-For from those addresses",
        )
    if options.workers < 1:
        raise ConfigError("--workers must be at least 1")
    return ServerSettings(
        public_key=ws.setting("SENDGRID_WEBHOOK_PUBLIC_KEY"),
        secret_key=ws.setting("OUTREACH_SECRET_KEY"),
        insecure=options.insecure,
        no_auth=options.no_auth,
        max_age=options.max_age,
        max_body=options.max_body,
        unsubscribe_prefixes=unsubscribe_prefixes(ws),
        proxy_headers=options.proxy_headers,
        forwarded_allow_ips=options.forwarded_allow_ips or DEFAULT_TRUSTED_PROXIES,
        now=options.now,
    )


def serve(ws: Workspace, options: ServeOptions) -> None:
    """Run the server until interrupted (SIGINT/SIGTERM)."""
    setup_logging()
    settings = settings_for(ws, options)
    if settings.no_auth and not settings.secret_key:
        # nothing to sign sessions with, but the workers' CSRF tokens must still agree: a key
        # for this run only, inherited by the worker processes through the environment
        key = secrets.token_urlsafe(32)
        os.environ["OUTREACH_SECRET_KEY"] = key
        ws.env["OUTREACH_SECRET_KEY"] = key
        settings.secret_key = key
    app = create_app(ws, settings)  # checks the key and the routes before anything starts
    with Ledger.open(ws.db_url(), ws.root) as ledger:  # migrations run here, once
        ledger.ping()
        db_path = ledger.location
    if settings.insecure:
        banner = "!" * 78
        log.warning(banner)
        log.warning("SIGNATURE VERIFICATION IS OFF (--insecure-no-verify): anyone who can reach")
        log.warning("this port can write events and suppress addresses. Local tests only.")
        log.warning(banner)
    if settings.no_auth:
        warn_no_auth(options.host)
    log.info(
        "outreach serve on http://%s:%d — POST /events (%s, timestamps ±%d s, max %d bytes); "
        "unsubscribe at %s; GET /healthz; staff pages and /api/ %s; %d worker(s); %s; ledger %s",
        options.host,
        options.port,
        "signature verification OFF" if settings.insecure else "signed",
        settings.max_age,
        settings.max_body,
        ", ".join(p + "/<send_id>" for p in settings.unsubscribe_prefixes),
        "WITHOUT A LOGIN" if settings.no_auth else "behind a login",
        options.workers,
        f"proxy headers trusted from {settings.forwarded_allow_ips}"
        if settings.proxy_headers
        else "proxy headers ignored",
        db_path,
    )
    common = {
        "host": options.host,
        "port": options.port,
        "log_config": None,
        "access_log": False,
        "lifespan": "on",
        "timeout_graceful_shutdown": 5,
        # the app applies the proxy headers itself (and is tested so), from the same addresses
        "proxy_headers": False,
        "server_header": False,
    }
    if options.workers == 1:
        server = uvicorn.Server(uvicorn.Config(app, **common))
        with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises Ctrl-C after shutdown
            asyncio.run(server.serve())
        return
    os.environ[WORKER_ENV] = json.dumps({"root": str(ws.root), "settings": settings.shared()})
    config = uvicorn.Config(WORKER_APP, factory=True, workers=options.workers, **common)
    sock = config.bind_socket()
    try:
        Supervisor(config, sockets=[sock]).run()
    finally:
        sock.close()


def worker_app() -> Starlette:
    """The app of one worker process (uvicorn calls this in each process it starts)."""
    setup_logging()
    data = json.loads(os.environ[WORKER_ENV])
    ws = Workspace.open(data["root"])
    settings = ServerSettings.from_shared(
        data["settings"],
        ws.setting("SENDGRID_WEBHOOK_PUBLIC_KEY"),
        ws.setting("OUTREACH_SECRET_KEY"),
    )
    log.info("worker %d started", os.getpid())
    return create_app(ws, settings)


class Supervisor(Multiprocess):
    """uvicorn's worker supervisor (restarts dead workers, stops them all on SIGINT/SIGTERM),
    with its main loop polling by ``time.sleep``: its ``Event.wait(0.5)`` never returns under
    libfaketime, which the test suite also runs under."""

    def run(self) -> None:
        log.info("started parent process %d", os.getpid())
        self.init_processes()
        while not self.should_exit.is_set():
            time.sleep(0.5)
            self.handle_signals()
            self.keep_subprocess_alive()
        self.terminate_all()
        self.join_all()
        log.info("stopped parent process %d", os.getpid())


NO_AUTH_WARNING = (
    "STAFF LOGIN IS OFF (--insecure-no-auth): whoever can reach {where} is an admin",
    "of the dashboard and the API (reports, contacts, suppressions). Local use only;",
    "never behind a proxy or on a public address.",
)


def warn_no_auth(host: str) -> None:
    """The loud warning of ``--insecure-no-auth`` (logged to stderr at start)."""
    where = host + (" (every address of this machine)" if host in ("0.0.0.0", "::") else "")
    banner = "!" * 78
    log.warning(banner)
    for line in NO_AUTH_WARNING:
        log.warning(line.format(where=where))
    log.warning(banner)


def setup_logging() -> None:
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    root.setLevel(logging.INFO)

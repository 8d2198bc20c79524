"""``outreach events serve``: SendGrid's signed Event Webhook and the one-click unsubscribe
endpoint, on Starlette + uvicorn.

``POST /events``
    A JSON array of SendGrid events. The request must carry
    ``X-Twilio-Email-Event-Webhook-Signature`` and ``-Timestamp``; the signature (ECDSA P-256
    over timestamp + raw body) is checked with ``sendgrid.helpers.eventwebhook.EventWebhook``
    and the public key in ``SENDGRID_WEBHOOK_PUBLIC_KEY``. Answers: 200 once the events are
    committed to SQLite; 403 bad or missing signature, or a timestamp more than ``max_age``
    seconds away from now (replay); 400 a malformed body (not UTF-8, not JSON, not an array of
    event objects, truncated); 413 a body over ``max_body`` bytes (by ``Content-Length`` and by
    what is actually streamed); 503 when the ledger cannot be written (SendGrid retries).
``GET /u/<send_id>``
    A small confirmation page, in the recipient's language, whose button POSTs.
``POST /u/<send_id>``
    RFC 8058 one-click unsubscribe (body ``List-Unsubscribe=One-Click``): suppresses the
    row's address, records an ``unsubscribe`` event, answers 200. ``test`` and ``preview`` are
    inert tokens; unknown ids answer 404 without saying more. The path prefix is the path of
    the campaigns' ``unsubscribe.url`` (``/u`` by default).
``GET /healthz``
    ``ok``.

Every rejection is logged with its reason and the running count per reason.
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import html
import json
import logging
import re
import threading
import time
from collections import Counter
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlparse

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from outreach.events import TEST_TOKENS, SendInfo, find_send, ingest, unsubscribe_link
from outreach.exceptions import ConfigError, EventError, LedgerError
from outreach.ledger import Ledger
from outreach.workspace import Workspace

log = logging.getLogger("outreach.server")

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
DEFAULT_MAX_AGE = 600
DEFAULT_MAX_BODY = 5 * 1024 * 1024
_SEND_ID = re.compile(r"^[0-9a-f]{32}$")
_TS = re.compile(r"^[0-9]{1,12}$")


@dataclass
class ServerSettings:
    public_key: str | None
    insecure: bool = False
    max_age: int = DEFAULT_MAX_AGE
    max_body: int = DEFAULT_MAX_BODY
    unsubscribe_prefixes: tuple[str, ...] = ("/u",)


@dataclass
class Stats:
    rejected: Counter = field(default_factory=Counter)
    batches: int = 0
    events: int = 0
    stored: int = 0
    duplicates: int = 0
    unmatched: int = 0
    unsubscribes: int = 0


def load_verifier(public_key: str):
    """An ``EventWebhook`` for the key (base64 DER, as SendGrid shows it, or PEM)."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from sendgrid.helpers.eventwebhook import EventWebhook

    key = public_key.strip()
    if key.startswith("-----BEGIN"):
        key = "".join(line for line in key.splitlines() if not line.startswith("-----"))
    try:
        verifier = EventWebhook(key)
    except (ValueError, TypeError, binascii.Error) as exc:
        raise ConfigError(
            f"SENDGRID_WEBHOOK_PUBLIC_KEY is not a valid public key ({exc.__class__.__name__})",
            where="SENDGRID_WEBHOOK_PUBLIC_KEY",
            hint="copy the verification key from SendGrid (Settings → Mail Settings → Event Webhook → Signature Verification)",
        ) from None
    if not isinstance(verifier.public_key, ec.EllipticCurvePublicKey) or not isinstance(
        verifier.public_key.curve, ec.SECP256R1
    ):
        raise ConfigError(
            "SENDGRID_WEBHOOK_PUBLIC_KEY is not an ECDSA P-256 key",
            where="SENDGRID_WEBHOOK_PUBLIC_KEY",
            hint="SendGrid signs with ECDSA P-256; copy its verification key as shown",
        )
    return verifier


def verify(verifier, body_text: str, signature: str, timestamp: str) -> bool:
    """True if the signature is good; False for a bad one, including undecodable base64."""
    try:
        return bool(verifier.verify_signature(body_text, signature, timestamp))
    except (binascii.Error, ValueError, TypeError):
        return False


class App:
    """The Starlette application and its state (one ledger connection behind a lock)."""

    def __init__(self, ws: Workspace, ledger: Ledger, settings: ServerSettings) -> None:
        self.ws = ws
        self.ledger = ledger
        self.settings = settings
        self.stats = Stats()
        self.lock = threading.Lock()
        self.verifier = (
            load_verifier(settings.public_key)
            if settings.public_key and not settings.insecure
            else None
        )
        self._orgs: dict[str, str] = {}
        routes = [
            Route("/events", self.webhook, methods=["POST"]),
            Route("/healthz", self.healthz, methods=["GET"]),
        ]
        for prefix in settings.unsubscribe_prefixes:
            routes.append(
                Route(prefix + "/{token}", self.unsubscribe, methods=["GET", "POST", "HEAD"])
            )
        self.app = Starlette(routes=routes, lifespan=self._lifespan)

    @asynccontextmanager
    async def _lifespan(self, app: Starlette):
        yield
        # logged on shutdown (uvicorn re-raises SIGTERM/SIGINT after this, ending the process)
        st = self.stats
        log.info(
            "stopped: %d batch(es), %d event(s), %d stored, %d duplicate, %d unmatched, "
            "%d unsubscribe(s); rejections: %s",
            st.batches,
            st.events,
            st.stored,
            st.duplicates,
            st.unmatched,
            st.unsubscribes,
            ", ".join(f"{k}={v}" for k, v in sorted(st.rejected.items())) or "none",
        )

    # -- helpers ---------------------------------------------------------------------------

    def reject(self, status: int, reason: str, request: Request, detail: str = "") -> Response:
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

    def _locked(self, fn, *args, **kw):
        with self.lock:
            return fn(*args, **kw)

    # -- routes ----------------------------------------------------------------------------

    async def healthz(self, request: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def webhook(self, request: Request) -> Response:
        s = self.settings
        length = request.headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                return self.reject(400, "bad-content-length", request)
            if int(length) > s.max_body:
                return self.reject(413, "too-large", request, f"Content-Length {length}")
        signature = request.headers.get(SIGNATURE_HEADER)
        timestamp = request.headers.get(TIMESTAMP_HEADER)
        if self.verifier is not None:
            if not signature or not timestamp:
                return self.reject(403, "missing-signature", request)
            if not _TS.match(timestamp):
                return self.reject(403, "bad-timestamp", request)
            age = time.time() - int(timestamp)
            if abs(age) > s.max_age:
                return self.reject(
                    403, "stale-timestamp", request, f"{age:+.0f} s, window ±{s.max_age} s"
                )
        body = bytearray()
        try:
            async for chunk in request.stream():
                body += chunk
                if len(body) > s.max_body:
                    return self.reject(413, "too-large", request, f"over {s.max_body} bytes")
        except ClientDisconnect:
            return self.reject(400, "truncated", request, "the client closed mid-body")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return self.reject(400, "bad-utf8", request)
        if self.verifier is not None:
            ok = await run_in_threadpool(verify, self.verifier, text, signature, timestamp)
            if not ok:
                return self.reject(403, "bad-signature", request)
        else:
            log.warning("UNVERIFIED webhook request accepted (--insecure-no-verify)")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            return self.reject(400, "bad-json", request, f"{exc.msg} at char {exc.pos}")
        if not isinstance(data, list):
            return self.reject(400, "not-array", request, type(data).__name__)
        try:
            res = await run_in_threadpool(self._locked, ingest, self.ledger, data, "webhook")
        except EventError as exc:
            return self.reject(400, "bad-event", request, exc.message)
        except LedgerError as exc:
            log.error("could not store %d event(s): %s", len(data), exc.message)
            return self.reject(503, "storage-error", request)
        st = self.stats
        st.batches += 1
        st.events += res.received
        st.stored += res.stored
        st.duplicates += res.duplicates
        st.unmatched += res.unmatched
        log.info(
            "stored %d event(s) (%d duplicate, %d unmatched, %d suppression change(s))",
            res.stored,
            res.duplicates,
            res.unmatched,
            res.suppressions_changed,
        )
        for example in res.unmatched_examples[:3]:
            log.info("  unmatched: %s", example)
        return JSONResponse(
            {"stored": res.stored, "duplicates": res.duplicates, "unmatched": res.unmatched}
        )

    async def unsubscribe(self, request: Request) -> Response:
        token = request.path_params["token"]
        if token in TEST_TOKENS:
            if request.method == "POST":
                return _page("en", "test", "Test link: nothing was changed.", status=200)
            return _page(
                "en",
                "test",
                "This is a test link from a test or preview message: using it changes nothing.",
            )
        info: SendInfo | None = None
        if _SEND_ID.match(token):
            info = await run_in_threadpool(self._locked, find_send, self.ledger, token)
        if info is None:
            return PlainTextResponse("Not found\n", status_code=404)
        lang = (info.language or "en").split("-")[0]
        lang = lang if lang in TEXTS else "en"
        org = self._org(info.campaign)
        t = TEXTS[lang]
        email = mask(info.email)
        if request.method != "POST":
            form = (
                f"<p>{html.escape(t['ask'].format(org=org, email=email))}</p>"
                '<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">'
                f'<input type="hidden" name="via" value="page"><button type="submit">{html.escape(t["button"])}</button></form>'
            )
            return _page(lang, t["title"], form, raw=True)
        raw = b""
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > 4096:
                break
        fields = parse_qs(raw[:4096].decode("utf-8", "replace"))
        via = "confirmation page" if fields.get("via") == ["page"] else "one-click"
        if fields.get("List-Unsubscribe") == ["One-Click"] and via == "one-click":
            via = "one-click (List-Unsubscribe-Post)"
        client = request.client.host if request.client else None
        try:
            _info, changed = await run_in_threadpool(
                self._locked, unsubscribe_link, self.ledger, token, via=via, client=client
            )
        except LedgerError as exc:
            log.error("could not record an unsubscribe: %s", exc.message)
            return PlainTextResponse("Please try again in a minute.\n", status_code=503)
        if changed:
            self.stats.unsubscribes += 1
            log.info("unsubscribe via %s for send %s…", via, token[:8])
        return _page(lang, t["title"], t["done"].format(org=org, email=email))

    def _org(self, campaign: str) -> str:
        if campaign not in self._orgs:
            try:
                from outreach.campaign import load_campaign

                self._orgs[campaign] = load_campaign(self.ws.root, campaign).sender.from_name
            except Exception:  # a campaign file that no longer loads must not break unsubscribing
                self._orgs[campaign] = ""
        return self._orgs[campaign] or TEXTS["en"]["us"]


TEXTS = {
    "en": {
        "title": "Unsubscribe",
        "ask": "Stop receiving emails from {org} at {email}?",
        "button": "Unsubscribe",
        "done": "You are unsubscribed: {email} will not receive further emails from {org}.",
        "us": "this sender",
    },
    "es": {
        "title": "Darse de baja",
        "ask": "¿Dejar de recibir correos de {org} en {email}?",
        "button": "Darme de baja",
        "done": "Se ha dado de baja: {email} no recibirá más correos de {org}.",
    },
    "fr": {
        "title": "Se désabonner",
        "ask": "Ne plus recevoir les courriels de {org} à l’adresse {email} ?",
        "button": "Me désabonner",
        "done": "Votre désabonnement est enregistré : {email} ne recevra plus de courriels de {org}.",
    },
}


def mask(email: str) -> str:
    """``j•••@example.org``: enough for the owner to recognise, little for anyone else."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}•••@{domain}" if domain else "•••"


def _page(lang: str, title: str, body: str, *, raw: bool = False, status: int = 200) -> Response:
    content = body if raw else f"<p>{html.escape(body)}</p>"
    page = f"""<!doctype html>
<html lang="{html.escape(lang)}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1"><meta name="robots" content="noindex">
<title>{html.escape(title)}</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:34em;margin:3em auto;padding:0 1em;color:#222}}
button{{font:inherit;padding:.5em 1.2em;border:0;border-radius:4px;background:#8a1538;color:#fff;cursor:pointer}}</style>
</head><body><h1>{html.escape(title)}</h1>{content}</body></html>
"""
    return HTMLResponse(page, status_code=status, headers={"Cache-Control": "no-store"})


def unsubscribe_prefixes(ws: Workspace) -> tuple[str, ...]:
    """The URL paths of the workspace's campaigns' ``unsubscribe.url`` (default ``/u``)."""
    from outreach.campaign import load_campaign

    found: set[str] = set()
    for path in sorted((ws.root / "campaigns").glob("*.y*ml")):
        try:
            url = load_campaign(ws.root, path.stem).spec.unsubscribe.url
        except Exception as exc:  # a broken campaign must not stop the server
            log.warning(
                "campaign %s does not load (%s); its unsubscribe path is not served", path.name, exc
            )
            continue
        if url:
            p = urlparse(url).path.rstrip("/")
            if p and p != "/events" and p != "/healthz":
                found.add(p)
    return tuple(sorted(found)) or ("/u",)


def serve(
    ws: Workspace,
    *,
    host: str = "127.0.0.1",
    port: int = 8025,
    max_age: int = DEFAULT_MAX_AGE,
    max_body: int = DEFAULT_MAX_BODY,
    insecure: bool = False,
) -> Stats:
    """Run the server until interrupted; returns the counts it logged."""
    import uvicorn

    _setup_logging()
    key = ws.setting("SENDGRID_WEBHOOK_PUBLIC_KEY")
    if not key and not insecure:
        raise ConfigError(
            "SENDGRID_WEBHOOK_PUBLIC_KEY is not set: refusing to accept unsigned events",
            hint="set it to the verification key SendGrid shows for the Event Webhook, "
            "or pass --insecure-no-verify for a local test (never on the internet)",
        )
    settings = ServerSettings(
        public_key=key,
        insecure=insecure,
        max_age=max_age,
        max_body=max_body,
        unsubscribe_prefixes=unsubscribe_prefixes(ws),
    )
    with Ledger.open(ws.db_url(), ws.root) as ledger:
        app = App(ws, ledger, settings)
        if insecure:
            banner = "!" * 78
            log.warning(banner)
            log.warning(
                "SIGNATURE VERIFICATION IS OFF (--insecure-no-verify): anyone who can reach"
            )
            log.warning("this port can write events and suppress addresses. Local tests only.")
            log.warning(banner)
        log.info(
            "outreach events serve on http://%s:%d — POST /events (%s, timestamps ±%d s, max %d bytes); "
            "unsubscribe at %s; ledger %s",
            host,
            port,
            "signature verification OFF" if insecure else "signed",
            max_age,
            max_body,
            ", ".join(p + "/<send_id>" for p in settings.unsubscribe_prefixes),
            ledger.location,
        )
        config = uvicorn.Config(
            app.app,
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=5,
        )
        server = uvicorn.Server(config)
        with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises Ctrl-C after shutdown
            asyncio.run(server.serve())
        return app.stats


def _setup_logging() -> None:
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    root.setLevel(logging.INFO)

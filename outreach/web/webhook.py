"""``POST /events``: SendGrid's signed Event Webhook.

The request must carry ``X-Twilio-Email-Event-Webhook-Signature`` and ``-Timestamp``; the
signature (ECDSA P-256 over timestamp + raw body) is checked with
``sendgrid.helpers.eventwebhook.EventWebhook`` and the key in ``SENDGRID_WEBHOOK_PUBLIC_KEY``.
Answers: 200 once the events are committed; 403 a bad or missing signature, or a timestamp
more than ``max_age`` seconds from the app's clock (a replay); 400 a malformed body (not UTF-8,
not JSON, not an array of event objects, truncated); 413 a body over ``max_body`` bytes (by
``Content-Length`` and by what is actually streamed); 503 when the store cannot be written
(SendGrid retries).
"""

from __future__ import annotations

import binascii
import json
import logging
import re

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from outreach.events import ingest, split_array
from outreach.exceptions import ConfigError, EventError, LedgerError
from outreach.web.services import Services

log = logging.getLogger("outreach.server")

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
_TS = re.compile(r"^[0-9]{1,12}$")


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


class Webhook:
    def __init__(self, services: Services) -> None:
        self.services = services
        s = services.settings
        if not s.insecure and not s.public_key:
            raise ConfigError(
                "SENDGRID_WEBHOOK_PUBLIC_KEY is not set: refusing to accept unsigned events",
                hint="set it to the verification key SendGrid shows for the Event Webhook, "
                "or pass --insecure-no-verify for a local test (never on the internet)",
            )
        self.verifier = None if s.insecure else load_verifier(s.public_key or "")

    async def post(self, request: Request) -> Response:
        sv = self.services
        s = sv.settings
        length = request.headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                return sv.reject(400, "bad-content-length", request)
            if int(length) > s.max_body:
                return sv.reject(413, "too-large", request, f"Content-Length {length}")
        signature = request.headers.get(SIGNATURE_HEADER)
        timestamp = request.headers.get(TIMESTAMP_HEADER)
        if self.verifier is not None:
            if not signature or not timestamp:
                return sv.reject(403, "missing-signature", request)
            if not _TS.match(timestamp):
                return sv.reject(403, "bad-timestamp", request)
            age = sv.clock() - int(timestamp)
            if abs(age) > s.max_age:
                return sv.reject(
                    403, "stale-timestamp", request, f"{age:+.0f} s, window ±{s.max_age} s"
                )
        body = bytearray()
        try:
            async for chunk in request.stream():
                body += chunk
                if len(body) > s.max_body:
                    return sv.reject(413, "too-large", request, f"over {s.max_body} bytes")
        except ClientDisconnect:
            return sv.reject(400, "truncated", request, "the client closed mid-body")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return sv.reject(400, "bad-utf8", request)
        if self.verifier is not None:
            ok = await run_in_threadpool(verify, self.verifier, text, signature, timestamp)
            if not ok:
                return sv.reject(403, "bad-signature", request)
        else:
            log.warning("UNVERIFIED webhook request accepted (--insecure-no-verify)")
        # each event's text as received, for its raw column (encoding it again cost more
        # than parsing it); anything unusual goes through json.loads for its error
        split = split_array(text)
        if split is not None:
            data, raw = split
        else:
            raw = None
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                return sv.reject(400, "bad-json", request, f"{exc.msg} at char {exc.pos}")
            if not isinstance(data, list):
                return sv.reject(400, "not-array", request, type(data).__name__)
        try:
            res = await sv.db(ingest, data, "webhook", raw=raw)
        except EventError as exc:
            return sv.reject(400, "bad-event", request, exc.message)
        except LedgerError as exc:
            log.error("could not store %d event(s): %s", len(data), exc.message)
            return sv.reject(503, "storage-error", request)
        st = sv.stats
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


def routes(services: Services) -> list[BaseRoute]:
    return [Route("/events", Webhook(services).post, methods=["POST"], name="webhook")]

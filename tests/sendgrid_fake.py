"""A local stand-in for SendGrid's v3 API, for tests and the benchmark.

It serves ``POST /v3/mail/send`` (validating the payload against SendGrid's documented limits,
answering with a scripted status, and *applying the substitutions* to record what each
recipient would receive), ``POST /v3/mail/batch``, ``POST/GET/PATCH
/v3/user/scheduled_sends[/{batch_id}]``, the suppression lists ``GET
/v3/suppression/{bounces,blocks,spam_reports,invalid_emails,unsubscribes}`` (``limit`` ≤ 500 and
``offset`` paging) and ``GET /v3/asm/suppressions``, the account endpoints that ``outreach
doctor`` reads (``GET /v3/scopes``, ``/v3/verified_senders``, ``/v3/whitelabel/domains``,
``/v3/user/webhooks/event/settings/all``), and ``GET /_fake/stats``. Responses have the shapes
of SendGrid's OpenAPI specs (``../shared/sendgrid-oai``, and twilio/sendgrid-oai for verified
senders, domain authentication and scopes); each endpoint answers 403 when the key lacks its
permission (``scopes``).

In a test::

    with FakeSendGrid(key="SG.test") as fake:
        fake.queue(500, (429, 3), 202)   # the next three mail/send answers
        ... SENDGRID_API_HOST=fake.url ...
        fake.messages                     # one per recipient accepted

As a process (benchmark, manual runs)::

    python tests/sendgrid_fake.py --port 0 [--fast] [--delay 0.2]   # prints "PORT n"

Scripted answers for mail/send: an HTTP status (``202``, ``400``, ``401``, ``403``, ``413``,
``500``…), ``(status, body_dict)``, ``(429, seconds_until_reset)``, or one of:
``"hang"`` (accept, then answer only after ``hang`` seconds: the client times out after
sending), ``"drop"`` (read the request, close without answering, nothing accepted),
``"accept-drop"`` (accept, then close without answering). Any other endpoint takes the same
kinds of answers through ``fake.queue_at("GET /v3/suppression/bounces", 500, (429, 2))``
(``"hang"`` there answers late; then back to the normal answer).

Concurrent clients: answers are taken in the order requests arrive. ``delay`` (``--delay``)
adds latency to every mail/send answer; ``("after", seconds, answer)`` gives one answer its
own latency; ``("storm", seconds)`` starts a rate-limit storm: this request and every
mail/send request that arrives in the next ``seconds`` get 429 with the same
``X-RateLimit-Reset``. ``in_flight`` / ``max_in_flight`` count mail/send requests being
answered, and each :class:`Received` has its arrival and answer times (``time.monotonic``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import re
import secrets
import socket
import struct
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

MAX_PERSONALIZATIONS = 1000
MAX_FIELD_BYTES = 10_000
MAX_REQUEST_BYTES = 30_000_000
MAX_SCHEDULE = 72 * 3600
RESERVED_HEADERS = {
    "x-sg-id",
    "x-sg-eid",
    "received",
    "dkim-signature",
    "content-type",
    "content-transfer-encoding",
    "to",
    "from",
    "subject",
    "reply-to",
    "cc",
    "bcc",
}
ASM_TAG = "<%asm_group_unsubscribe_raw_url%>"
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
SUPPRESSION_LISTS = ("bounces", "blocks", "spam_reports", "invalid_emails", "unsubscribes")
MAX_SUPPRESSION_PAGE = 500
# a key with these permissions can do everything outreach does (the fake's default key)
ALL_SCOPES = (
    "mail.send",
    "mail.batch.create",
    "user.scheduled_sends.create",
    "user.scheduled_sends.read",
    "user.scheduled_sends.update",
    "suppression.read",
    "asm.groups.suppressions.read",
    "user.webhooks.event.settings.read",
    "whitelabel.read",
)


@dataclass
class Received:
    """One HTTP request as the fake saw it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int = 0
    message_id: str | None = None
    index: int = -1  # in FakeSendGrid.requests
    arrived: float = 0.0  # time.monotonic() when the request had been read
    answered: float = 0.0  # … when the answer was written (0: never)

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class Message:
    """What one recipient would receive, after SendGrid applied the substitutions."""

    to: str
    name: str | None
    subject: str
    html: str
    text: str
    custom_args: dict[str, str]
    headers: dict[str, str]
    send_at: int | None
    batch_id: str | None
    message_id: str
    categories: list[str]
    request: int  # index in FakeSendGrid.requests
    cancelled: bool = False


@dataclass
class FakeSendGrid:
    key: str | None = None  # the API key to expect (None: any Bearer token)
    apply: bool = True  # record per-recipient messages (False: only count, for the benchmark)
    hang: float = 5.0  # seconds a "hang" answer waits
    delay: float = 0.0  # seconds before every mail/send answer (the request is accepted first)
    clock: Callable[[], float] = time.time  # SendGrid's "now" (send_at must be ≤ now + 72 h)
    requests: list[Received] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    batch_ids: list[str] = field(default_factory=list)
    scheduled: dict[str, str] = field(default_factory=dict)  # batch id → pause/cancel
    stats: Counter = field(default_factory=Counter)
    # the account, as the API shows it (see verify_sender, authenticate_domain, add_webhook)
    scopes: list[str] = field(default_factory=lambda: list(ALL_SCOPES))  # the key's permissions
    suppressions: dict[str, list] = field(default_factory=dict)  # API path → entries
    verified_senders: list[dict] = field(default_factory=list)
    domains: list[dict] = field(default_factory=list)
    webhooks: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.script: deque = deque()
        self.scripts: dict[str, deque] = {}  # "METHOD /path" → answers for other endpoints
        self.lock = threading.Lock()
        self.mail_arrivals = 0  # mail/send requests read so far (set before any delay)
        self.in_flight = 0  # mail/send requests read and not yet answered
        self.max_in_flight = 0
        self.storm_until = 0.0  # clock(): mail/send requests before this get 429
        self.server: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None
        self._patterns: dict[tuple[str, ...], re.Pattern] = {}

    # -- control ----------------------------------------------------------------------------

    def queue(self, *answers: Any) -> FakeSendGrid:
        """Script the next mail/send answers (then back to 202)."""
        self.script.extend(answers)
        return self

    def queue_at(self, endpoint: str, *answers: Any) -> FakeSendGrid:
        """Script the next answers of another endpoint (``"GET /v3/suppression/bounces"``):
        a status, ``(status, body)``, ``(429, seconds_until_reset)`` or ``"hang"``."""
        self.scripts.setdefault(endpoint, deque()).extend(answers)
        return self

    # -- the account ----------------------------------------------------------------------

    def verify_sender(self, email: str, verified: bool = True) -> dict:
        """A Single Sender Verification entry (``GET /v3/verified_senders``)."""
        sender = {
            "id": 1000 + len(self.verified_senders),
            "nickname": email.split("@")[0],
            "from_email": email,
            "from_name": "Sender",
            "reply_to": email,
            "reply_to_name": "Sender",
            "address": "1 Example Street",
            "address2": "",
            "state": "",
            "city": "Geneva",
            "country": "CH",
            "zip": "1201",
            "verified": verified,
            "locked": False,
        }
        self.verified_senders.append(sender)
        return sender

    def authenticate_domain(
        self, domain: str, valid: bool = True, subdomain: str = "em1234"
    ) -> dict:
        """An authenticated domain (``GET /v3/whitelabel/domains``), automated security on."""
        user = 4242
        entry = {
            "id": 500 + len(self.domains),
            "user_id": user,
            "subdomain": subdomain,
            "domain": domain,
            "username": "coalition",
            "ips": [],
            "custom_spf": False,
            "default": not self.domains,
            "legacy": False,
            "automatic_security": True,
            "valid": valid,
            "dns": {
                "mail_cname": {
                    "valid": valid,
                    "type": "cname",
                    "host": f"{subdomain}.{domain}",
                    "data": f"u{user}.wl.sendgrid.net",
                },
                "dkim1": {
                    "valid": valid,
                    "type": "cname",
                    "host": f"s1._domainkey.{domain}",
                    "data": f"s1.domainkey.u{user}.wl.sendgrid.net",
                },
                "dkim2": {
                    "valid": valid,
                    "type": "cname",
                    "host": f"s2._domainkey.{domain}",
                    "data": f"s2.domainkey.u{user}.wl.sendgrid.net",
                },
            },
        }
        self.domains.append(entry)
        return entry

    def add_webhook(
        self,
        url: str,
        *,
        enabled: bool = True,
        public_key: str | None = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE-fake-key",
        events: tuple[str, ...] = (
            "delivered",
            "bounce",
            "deferred",
            "dropped",
            "open",
            "click",
            "spam_report",
            "unsubscribe",
            "group_unsubscribe",
            "group_resubscribe",
        ),
    ) -> dict:
        """An Event Webhook (``GET /v3/user/webhooks/event/settings/all``); ``public_key`` is
        returned only when signature verification is on (None: unsigned)."""
        hook: dict[str, Any] = {
            "enabled": enabled,
            "url": url,
            **{
                name: name in events
                for name in (
                    "group_resubscribe",
                    "delivered",
                    "group_unsubscribe",
                    "spam_report",
                    "bounce",
                    "deferred",
                    "unsubscribe",
                    "processed",
                    "open",
                    "click",
                    "dropped",
                )
            },
            "friendly_name": "outreach",
            "id": f"77d4a5da-7015-11ed-a1eb-{len(self.webhooks):012d}",
            "created_date": "2026-01-01T12:00:00Z",
            "updated_date": "2026-01-01T12:00:00Z",
        }
        if public_key is not None:
            hook["public_key"] = public_key
        self.webhooks.append(hook)
        return hook

    def start(self, port: int = 0) -> FakeSendGrid:
        server = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
        server.daemon_threads = True
        server.fake = self  # type: ignore[attr-defined]
        self.server = server
        self.thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def __enter__(self) -> FakeSendGrid:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def wait_for_mail(self, n: int, timeout: float = 30.0, proc=None) -> bool:
        """Wait until ``n`` mail/send requests have been read (the nth may still be answering).

        Polls instead of a timed ``Condition.wait``: under libfaketime a timed wait on a lock
        never returns. With ``proc`` (the ``outreach send`` child), a child that has exited
        fails at once instead of waiting out the deadline."""
        from tests.waiting import wait_until

        return wait_until(lambda: self.mail_arrivals >= n, timeout, proc=proc)

    @property
    def mail_requests(self) -> list[Received]:
        return [r for r in self.requests if r.path == "/v3/mail/send"]

    def received_by(self) -> Counter:
        """How many (not cancelled) messages each address received."""
        return Counter(m.to.lower() for m in self.messages if not m.cancelled)

    # -- mail/send ----------------------------------------------------------------------------

    def mail_send(self, req: Received) -> tuple[int, dict[str, str], Any, str]:
        """(status, headers, body, action) where action is '', 'hang', 'drop' or 'accept-drop'."""
        with self.lock:
            self.mail_arrivals += 1
            self.stats["mail_requests"] += 1
            self.stats["bytes"] += len(req.body)
            answer = self.script.popleft() if self.script else 202
            if isinstance(answer, tuple) and answer[0] == "storm":
                self.storm_until = self.clock() + answer[1]
            if self.clock() < self.storm_until:
                answer = (429, self.storm_until - self.clock())
        if isinstance(answer, tuple) and answer[0] == "after":
            req.latency = answer[1]  # type: ignore[attr-defined]
            answer = answer[2]
        if not self._authorized(req):
            return (
                401,
                {},
                _error("The provided authorization grant is invalid, expired, or revoked", None),
                "",
            )
        if "mail.send" not in self.scopes:
            return 403, {}, _error("access forbidden", None), ""
        if len(req.body) >= MAX_REQUEST_BYTES:
            return 413, {}, _error("content too large", None), ""
        if answer == "drop":
            return 0, {}, None, "drop"
        if isinstance(answer, tuple) and answer[0] == 429:
            return 429, self._rate_limited(answer[1]), _error("too many requests", None), ""
        if isinstance(answer, tuple):
            return int(answer[0]), {}, answer[1], ""
        if isinstance(answer, int) and answer != 202:
            return answer, {}, _error(_REASONS.get(answer, "error"), None), ""
        if not self.apply:
            n = req.body.count(b'"send_id":')
            with self.lock:
                self.stats["personalizations"] += n
            return 202, {"X-Message-Id": _message_id()}, None, ""
        try:
            data = json.loads(req.body)
        except ValueError:
            return 400, {}, _error("Bad Request", None), ""
        errors = self.check(data)
        if errors:
            return 400, {}, {"errors": errors}, ""
        mid = _message_id()
        req.message_id = mid
        self._accept(data, mid, req.index)
        action = answer if answer in ("hang", "accept-drop") else ""
        return 202, {"X-Message-Id": mid}, None, action

    def _authorized(self, req: Received) -> bool:
        auth = req.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or not auth[len("Bearer ") :].strip():
            return False  # any non-empty token will do unless a key is expected
        return self.key is None or auth == f"Bearer {self.key}"

    def check(self, data: Any) -> list[dict[str, str]]:
        """SendGrid's documented limits, as SendGrid-style errors (field, message)."""
        errs: list[dict[str, str]] = []

        def err(field: str | None, message: str) -> None:
            errs.append({"field": field or "null", "message": message})

        if not isinstance(data, dict):
            return [{"field": "null", "message": "Bad Request"}]
        ps = data.get("personalizations")
        if not isinstance(ps, list) or not ps:
            err("personalizations", "The personalizations field is required.")
            ps = []
        if len(ps) > MAX_PERSONALIZATIONS:
            err("personalizations", "The personalizations field may not have more than 1000 items.")
        seen: dict[str, str] = {}
        recipients = 0
        now = self.clock()
        for i, p in enumerate(ps):
            where = f"personalizations.{i}"
            for kind in ("to", "cc", "bcc"):
                for j, addr in enumerate(p.get(kind) or []):
                    email = str(addr.get("email", ""))
                    recipients += 1
                    if not _EMAIL.match(email):
                        err(f"{where}.{kind}.{j}.email", "Does not contain a valid address.")
                    low = email.lower()
                    if low in seen:
                        err(
                            f"{where}.{kind}.{j}.email",
                            "Each email address in the personalization block should be unique "
                            f"between to, cc, and bcc. We found the first duplicate instance of "
                            f"[{email}] in the {seen[low]} field.",
                        )
                    seen.setdefault(low, f"{where}.{kind}")
                    name = addr.get("name")
                    if name and ("," in name or ";" in name) and not name.startswith('"'):
                        err(f"{where}.{kind}.{j}.name", "The name may not contain , or ; unquoted.")
            if not p.get("to"):
                err(f"{where}.to", "The to array is required for all personalization objects.")
            for fld in ("substitutions", "custom_args"):
                value = p.get(fld)
                if value is None:
                    continue
                if not isinstance(value, dict) or any(
                    not isinstance(v, str) for v in value.values()
                ):
                    err(f"{where}.{fld}", f"{fld} values must be strings.")
                    continue
                size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())
                if size > MAX_FIELD_BYTES:
                    err(f"{where}.{fld}", f"The {fld} may not exceed 10,000 bytes.")
            for h, v in (p.get("headers") or {}).items():
                if h.lower() in RESERVED_HEADERS or not isinstance(v, str):
                    err(f"{where}.headers", f"Invalid or reserved header {h!r}.")
            send_at = p.get("send_at")
            if send_at is not None and (
                not isinstance(send_at, int) or send_at > now + MAX_SCHEDULE
            ):
                err(f"{where}.send_at", "The send_at parameter must be within 72 hours.")
        for h, v in (data.get("headers") or {}).items():
            if h.lower() in RESERVED_HEADERS or not isinstance(v, str):
                err("headers", f"Invalid or reserved header {h!r}.")
        if recipients > MAX_PERSONALIZATIONS:
            err("personalizations", "The total number of recipients must be less than 1000.")
        frm = data.get("from") or {}
        if not _EMAIL.match(str(frm.get("email", ""))):
            err("from.email", "The from object must be provided for every email send.")
        content = data.get("content")
        if not isinstance(content, list) or not content:
            err(
                "content",
                "Unless a valid template_id is provided, the content parameter is required.",
            )
        else:
            types = [c.get("type") for c in content]
            if "text/plain" in types and types[0] != "text/plain":
                err("content", "If present, text/plain must be first.")
            for k, c in enumerate(content):
                if not c.get("value"):
                    err(
                        f"content.{k}.value",
                        "The content value must be a string at least one character in length.",
                    )
        if not data.get("subject") and not all(p.get("subject") for p in ps):
            err("subject", "The subject is required.")
        cats = data.get("categories") or []
        if len(cats) > 10 or len(set(cats)) != len(cats) or any(len(c) > 255 for c in cats):
            err("categories", "Up to 10 unique categories of at most 255 characters.")
        asm = data.get("asm")
        if asm is not None and not isinstance(asm.get("group_id"), int):
            err("asm.group_id", "The asm group_id must be an integer.")
        bid = data.get("batch_id")
        if bid is not None and bid not in self.batch_ids:
            err("batch_id", "invalid batch id")
        return errs

    def _accept(self, data: dict, mid: str, request: int) -> None:
        subject0 = data.get("subject", "")
        content = {c["type"]: c["value"] for c in data.get("content", [])}
        tracking = data.get("tracking_settings") or {}
        sub_tracking = tracking.get("subscription_tracking") or {}
        asm = data.get("asm")
        msgs = []
        for p in data["personalizations"]:
            subs = p.get("substitutions") or {}
            fill = self._filler(subs)
            to = p["to"][0]
            email = to["email"]
            subject = fill(p.get("subject") or subject0)
            html = fill(content.get("text/html", ""))
            text = fill(content.get("text/plain", ""))
            headers = dict(data.get("headers") or {}) | dict(p.get("headers") or {})
            # what SendGrid itself adds for its unsubscribe features
            if asm is not None:
                url = f"{self.url}/asm/unsubscribe?group={asm['group_id']}&to={email}"
                html, text = html.replace(ASM_TAG, url), text.replace(ASM_TAG, url)
                headers.setdefault("List-Unsubscribe", f"<{url}>")
                headers.setdefault("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")
            if sub_tracking.get("enable"):
                url = f"{self.url}/subscription/unsubscribe?to={email}"
                tag = sub_tracking.get("substitution_tag")
                if tag:
                    html, text = html.replace(tag, url), text.replace(tag, url)
                else:
                    html += f'<p><a href="{url}">Unsubscribe</a></p>'
                    text += f"\nUnsubscribe: {url}\n"
                headers["List-Unsubscribe"] = f"<{url}>"
                headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
            msgs.append(
                Message(
                    to=email,
                    name=to.get("name"),
                    subject=subject,
                    html=html,
                    text=text,
                    custom_args=dict(data.get("custom_args") or {})
                    | dict(p.get("custom_args") or {}),
                    headers=headers,
                    send_at=p.get("send_at", data.get("send_at")),
                    batch_id=data.get("batch_id"),
                    message_id=mid,
                    categories=list(data.get("categories") or []),
                    request=request,
                )
            )
        with self.lock:
            self.messages.extend(msgs)
            self.stats["personalizations"] += len(msgs)

    def _filler(self, subs: dict[str, str]) -> Callable[[str], str]:
        """Replace every substitution key by its value, in one pass (as SendGrid does)."""
        if not subs:
            return lambda s: s
        keys = tuple(sorted(subs, key=lambda k: (-len(k), k)))
        pattern = self._patterns.get(keys)
        if pattern is None:
            pattern = self._patterns[keys] = re.compile("|".join(map(re.escape, keys)))
        return lambda s: pattern.sub(lambda m: subs[m.group(0)], s)

    # -- the other endpoints -----------------------------------------------------------------

    def other(self, req: Received) -> tuple[int, dict[str, str], Any, str]:
        """(status, headers, body, action) for every endpoint but mail/send."""
        path, _, query = req.path.partition("?")
        if req.method == "GET" and path == "/_fake/stats":
            return 200, {}, dict(self.stats), ""
        if not self._authorized(req):
            return 401, {}, _error("authorization required", None), ""
        script = self.scripts.get(f"{req.method} {path}")
        answer = script.popleft() if script else None
        if isinstance(answer, tuple) and answer[0] == 429:
            return 429, self._rate_limited(answer[1]), _error("too many requests", None), ""
        if isinstance(answer, tuple):
            return int(answer[0]), {}, answer[1], ""
        if isinstance(answer, int):
            return answer, {}, _error(_REASONS.get(answer, "error"), None), ""
        scopes = _needs(req.method, path)
        if scopes and not set(scopes) & set(self.scopes):
            return 403, {}, _error("access forbidden", None), ""
        params = {k: v[-1] for k, v in parse_qs(query).items()}
        status, headers, body = self._route(req, path, params)
        return status, headers, body, "hang" if answer == "hang" else ""

    def _rate_limited(self, seconds: float) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": "600",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(math.ceil(self.clock() + seconds)),  # whole seconds
        }

    def _route(self, req: Received, path: str, params: dict) -> tuple[int, dict[str, str], Any]:
        if req.method == "POST" and path == "/v3/mail/batch":
            bid = secrets.token_urlsafe(24).replace("-", "x").replace("_", "y")
            with self.lock:
                self.batch_ids.append(bid)
            return 201, {}, {"batch_id": bid}
        if path == "/v3/user/scheduled_sends" and req.method == "POST":
            data = req.json() or {}
            bid, status = data.get("batch_id"), data.get("status")
            if bid not in self.batch_ids or status not in ("pause", "cancel"):
                return 400, {}, _error("invalid batch id or status", "batch_id")
            if bid in self.scheduled:
                return 400, {}, _error("a status is already set for this batch id", "batch_id")
            self._set_status(bid, status)
            return 201, {}, {"batch_id": bid, "status": status}
        m = re.fullmatch(r"/v3/user/scheduled_sends/([^/]+)", path)
        if m:
            bid = m.group(1)
            if req.method == "GET":
                if bid not in self.scheduled:
                    return 404, {}, _error("not found", None)
                return 200, {}, [{"batch_id": bid, "status": self.scheduled[bid]}]
            if req.method == "PATCH":
                status = (req.json() or {}).get("status")
                if bid not in self.scheduled or status not in ("pause", "cancel"):
                    return 400, {}, _error("invalid status", "status")
                self._set_status(bid, status)
                return 204, {}, None
        if req.method != "GET":
            return 404, {}, _error("not found", None)
        m = re.fullmatch(r"/v3/suppression/([a-z_]+)", path)
        if m and m.group(1) in SUPPRESSION_LISTS:
            try:
                limit = int(params.get("limit", 500))
                offset = int(params.get("offset", 0))
            except ValueError:
                return 400, {}, _error("limit and offset must be integers", "limit")
            if not 1 <= limit <= MAX_SUPPRESSION_PAGE or offset < 0:
                return 400, {}, _error("limit must be between 1 and 500", "limit")
            return 200, {}, self.suppressions.get(path, [])[offset : offset + limit]
        if path == "/v3/asm/suppressions":
            return 200, {}, self.suppressions.get(path, [])
        if path == "/v3/scopes":
            return 200, {}, {"scopes": list(self.scopes)}
        if path == "/v3/verified_senders":
            return 200, {}, {"results": list(self.verified_senders)}
        if path == "/v3/whitelabel/domains":
            found = [d for d in self.domains if params.get("domain", d["domain"]) in d["domain"]]
            offset = int(params.get("offset", 0))
            limit = int(params.get("limit", len(found) or 1))
            return 200, {}, found[offset : offset + limit]
        if path == "/v3/user/webhooks/event/settings/all":
            return 200, {}, {"max_allowed": 5, "webhooks": list(self.webhooks)}
        return 404, {}, _error("not found", None)

    def _set_status(self, bid: str, status: str) -> None:
        with self.lock:
            self.scheduled[bid] = status
            if status == "cancel":
                now = self.clock()
                for m in self.messages:
                    if m.batch_id == bid and m.send_at is not None and m.send_at > now:
                        m.cancelled = True


_REASONS = {
    400: "Bad Request",
    401: "authorization required",
    403: "access forbidden",
    404: "not found",
    413: "content too large",
    500: "internal server error",
    502: "bad gateway",
    503: "service unavailable",
}


def _needs(method: str, path: str) -> tuple[str, ...]:
    """The API key permissions that allow a request (any one of them), as SendGrid names them."""
    if path == "/v3/mail/batch":
        return ("mail.batch.create",)
    if path.startswith("/v3/user/scheduled_sends"):
        verb = {"POST": "create", "GET": "read", "PATCH": "update", "DELETE": "delete"}
        return (f"user.scheduled_sends.{verb.get(method, 'read')}",)
    m = re.fullmatch(r"/v3/suppression/([a-z_]+)", path)
    if m and method == "GET":
        return ("suppression.read", f"suppression.{m.group(1)}.read")
    if path == "/v3/asm/suppressions":
        return ("asm.groups.suppressions.read",)
    if path.startswith("/v3/whitelabel/"):
        return ("whitelabel.read",)
    if path.startswith("/v3/user/webhooks/event/settings"):
        return ("user.webhooks.event.settings.read",)
    return ()


def _error(message: str, field: str | None) -> dict:
    return {"errors": [{"message": message, "field": field}]}


def _message_id() -> str:
    return secrets.token_urlsafe(16)[:22]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeSendGrid/1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _read(self) -> Received:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        req = Received(
            self.command,
            self.path,
            {k.lower(): v for k, v in self.headers.items()},
            body,
            arrived=time.monotonic(),
        )
        fake: FakeSendGrid = self.server.fake  # type: ignore[attr-defined]
        with fake.lock:
            req.index = len(fake.requests)
            fake.requests.append(req)
            fake.stats["requests"] += 1
        return req

    def _answer(self, req: Received, status: int, headers: dict[str, str], body: Any) -> None:
        req.status = status
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        if data:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data:
            self.wfile.write(data)

    def _hang_up(self) -> None:
        # an abortive close (RST): the client sees a reset, not a clean end of stream
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()

    def _dispatch(self) -> None:
        fake: FakeSendGrid = self.server.fake  # type: ignore[attr-defined]
        req = self._read()
        if req.method == "POST" and req.path == "/v3/mail/send":
            with fake.lock:
                fake.in_flight += 1
                fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
            try:
                self._mail_send(fake, req)
            finally:
                with fake.lock:
                    fake.in_flight -= 1
            return
        status, headers, body, action = fake.other(req)
        if action == "hang":
            time.sleep(fake.hang)
        with contextlib.suppress(OSError):  # the client went away (timeout)
            self._answer(req, status, headers, body)

    def _mail_send(self, fake: FakeSendGrid, req: Received) -> None:
        status, headers, body, action = fake.mail_send(req)
        latency = getattr(req, "latency", fake.delay)
        if latency:
            time.sleep(latency)
        if action in ("drop", "accept-drop"):
            req.status = -1
            self._hang_up()
            return
        if action == "hang":
            time.sleep(fake.hang)
        with contextlib.suppress(OSError):  # the client went away (timeout, killed)
            self._answer(req, status, headers, body)
            req.answered = time.monotonic()

    do_POST = do_GET = do_PATCH = do_DELETE = _dispatch


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--key", default=None, help="the API key to expect (default: any)")
    ap.add_argument("--fast", action="store_true", help="count only; do not parse or record")
    ap.add_argument("--delay", type=float, default=0.0, help="seconds before each mail/send answer")
    args = ap.parse_args(argv)
    fake = FakeSendGrid(key=args.key, apply=not args.fast, delay=args.delay)
    fake.start(args.port)
    print(f"PORT {fake.server.server_address[1]}", flush=True)  # type: ignore[union-attr]
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()


if __name__ == "__main__":
    main(sys.argv[1:])

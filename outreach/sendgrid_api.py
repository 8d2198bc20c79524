"""The one SendGrid v3 API client of outreach: the transport, ``suppressions sync`` and
``doctor`` all go through :class:`SendGridAPI`.

It owns

* **the client**: the official ``sendgrid`` library's ``SendGridAPIClient``, built from the
  workspace settings ``SENDGRID_API_KEY``, ``SENDGRID_API_HOST`` (default
  ``https://api.sendgrid.com``; tests point it at ``tests/sendgrid_fake.py``) and
  ``SENDGRID_TIMEOUT`` (seconds per request, default 30);
* **classification** of every failure into the error model: 429 → :class:`TransientError`
  that waits until ``X-RateLimit-Reset``; 5xx, and network errors *before* the request was
  fully sent → :class:`TransientError`; 400 on recipients only → :class:`PermanentError`
  (that batch fails, others go on); 400 on a setting, 401, 403, 413, TLS errors →
  :class:`FatalError`; no answer *after* a non-idempotent request was sent →
  :class:`UnknownOutcome` (it may have been accepted). A read (``GET``) with no answer is
  simply transient;
* **retries** of transient errors with capped exponential backoff and "equal" jitter, honouring
  the 429 reset time; ``sleep`` and ``clock`` are injectable, so tests never wait;
* **the shared 429 gate**: requests may run in several threads at once (the transport sends
  up to ``sendgrid.concurrency`` at a time); when one gets 429 with ``X-RateLimit-Reset``,
  the gate closes until then and every thread waits there before its next attempt, so none
  keeps hammering a rate-limited account;
* **the wording**: the status, SendGrid's own error message, which field (in the campaign
  file's words, with its file:line) and which recipient (CSV row, contact, send id);
* **redaction**: the API key never appears in a message, and the HTTP library's debug log
  (which prints request headers) is scrubbed.
"""

from __future__ import annotations

import copy
import http.client
import json
import logging
import random
import re
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.error import URLError
from urllib.parse import urlparse

from python_http_client.exceptions import HTTPError as SGHTTPError
from sendgrid import SendGridAPIClient

from outreach.exceptions import (
    ConfigError,
    FatalError,
    PermanentError,
    TransientError,
    TransportError,
    UnknownOutcome,
)
from outreach.ledger import short_id

if TYPE_CHECKING:
    from outreach.campaign import Campaign
    from outreach.transports.base import Batch
    from outreach.workspace import Workspace

T = TypeVar("T")

API_HOST = "https://api.sendgrid.com"
DEFAULT_TIMEOUT = 30.0  # seconds, for every request
JSON_UTF8 = "application/json; charset=utf-8"
MAIL_SEND = "POST /v3/mail/send"

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
PERSONALIZATION_RE = re.compile(r"^personalizations[.\[](\d+)\]?(?:\.(.*))?$")

# SendGrid's field names in the words of the campaign file (and the key path they come from)
FIELD_WORDS = {
    "from": ("the sender", ("sender", "from_email")),
    "from.email": ("the sender address", ("sender", "from_email")),
    "from.name": ("the sender name", ("sender", "from_name")),
    "reply_to": ("the reply-to address", ("sender", "reply_to")),
    "reply_to.email": ("the reply-to address", ("sender", "reply_to")),
    "reply_to.name": ("the reply-to name", ("sender", "reply_to_name")),
    "categories": ("the categories", ("sendgrid", "categories")),
    "asm": ("the unsubscribe group", ("sendgrid", "unsubscribe_group")),
    "asm.group_id": ("the unsubscribe group", ("sendgrid", "unsubscribe_group")),
    "ip_pool_name": ("the IP pool", ("sendgrid", "ip_pool")),
    "batch_id": ("the scheduled-send batch id", None),
    "send_at": ("the scheduled send time", None),
    "subject": ("the subject", None),
    "headers": ("the List-Id header (from the campaign's title and sender)", ("title",)),
    "content": ("the message body", None),
    "tracking_settings": ("the tracking settings", ("sendgrid", "tracking")),
    "mail_settings": ("the mail settings (sandbox)", ("sendgrid", "sandbox")),
}
PERSONALIZATION_WORDS = {
    "to": "the recipient address",
    "substitutions": "the per-recipient values (substitutions)",
    "custom_args": "the tracking arguments (custom_args)",
    "headers": "the List-Unsubscribe headers",
    "send_at": "the scheduled send time",
}


class _Redact(logging.Filter):
    """Scrubs secrets from records of the HTTP client's logger (it logs request headers)."""

    def __init__(self, redact: Callable[[str], str]) -> None:
        super().__init__()
        self.redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redact(record.getMessage())
        record.args = ()
        return True


def _install_redaction(redact: Callable[[str], str]) -> None:
    logger = logging.getLogger("python_http_client.client")
    for f in list(logger.filters):
        if isinstance(f, _Redact):
            logger.removeFilter(f)
    logger.addFilter(_Redact(redact))


@dataclass(frozen=True)
class Settings:
    """The workspace's SendGrid settings, checked."""

    key: str
    host: str
    timeout: float

    @classmethod
    def of(cls, ws: Workspace, *, need: str = "", timeout: float | None = None) -> Settings:
        """Read and check the settings; ``need`` says what the key is for (in the hint)."""
        key = ws.setting("SENDGRID_API_KEY")
        if not key:
            raise ConfigError(
                "SENDGRID_API_KEY is not set",
                where="environment / .env",
                hint="put SENDGRID_API_KEY=SG.… in the workspace's .env (never in a campaign "
                "file)" + (f"; {need}" if need else ""),
            )
        host = (ws.setting("SENDGRID_API_HOST") or API_HOST).rstrip("/")
        parsed = urlparse(host)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ConfigError(
                f"SENDGRID_API_HOST {host!r} is not an http(s) URL",
                where="environment / .env",
                hint="leave it unset for https://api.sendgrid.com, or use e.g. http://127.0.0.1:4010",
            )
        raw = timeout or ws.setting("SENDGRID_TIMEOUT") or DEFAULT_TIMEOUT
        try:
            seconds = float(raw)
            if not seconds > 0:
                raise ValueError
        except ValueError:
            raise ConfigError(
                f"SENDGRID_TIMEOUT {raw!r} is not a number of seconds",
                where="environment / .env",
                hint=f"leave it unset for {DEFAULT_TIMEOUT:g} s",
            ) from None
        return cls(key, host, seconds)


class SendGridAPI:
    """One configured client: requests, retries, errors in plain words (module docstring)."""

    def __init__(
        self,
        settings: Settings,
        *,
        redact: Callable[[str], str] = lambda text: text,
        retries: int = 5,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.host = settings.host
        self.timeout = settings.timeout
        self.client = SendGridAPIClient(api_key=settings.key, host=settings.host)
        self._key = settings.key
        self._redact = redact
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.sleep = sleep
        self.clock = clock  # compared with X-RateLimit-Reset (seconds since the epoch)
        self.on_retry: Callable[[str], None] | None = None
        self.requests = 0  # every attempt, retries included
        self._lock = threading.Lock()
        self._gate = 0.0  # clock() time before which no request starts (after a 429)
        self._waited = threading.local()  # .until: the gate time this thread has slept to
        _install_redaction(self.redact)

    @classmethod
    def from_workspace(
        cls, ws: Workspace, *, need: str = "", timeout: float | None = None, **kw: Any
    ) -> SendGridAPI:
        """The client for the workspace's settings (raises :class:`ConfigError` in plain words)."""
        return cls(Settings.of(ws, need=need, timeout=timeout), redact=ws.redact, **kw)

    def redact(self, text: str) -> str:
        text = self._redact(text)
        return text.replace(self._key, "[redacted]") if len(self._key) >= 4 else text

    @property
    def is_default_host(self) -> bool:
        return self.host == API_HOST

    # -- requests -----------------------------------------------------------------------------

    def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        raw_body: str | None = None,
        query: dict[str, Any] | None = None,
        scope: str | None = None,
        idempotent: bool | None = None,
        batch: Batch | None = None,
        campaign: Campaign | None = None,
    ) -> Any:
        """One request (no retry): the response, or a classified :class:`TransportError`.

        ``path`` is relative to ``/v3`` (``mail/send``). ``scope`` is the API key permission
        the call needs (named in a 403). ``idempotent`` (default: ``GET`` only) decides what no
        answer after sending means: transient for a read, :class:`UnknownOutcome` otherwise.
        ``batch`` and ``campaign`` let errors name the batch, recipients and campaign keys.
        """
        what = f"{method} /v3/{path.strip('/')}"
        # the library's client nodes share one mutable headers dict: give each call its own,
        # so that calls in several threads never touch the same one
        node = copy.copy(self.client.client)
        node.request_headers = dict(node.request_headers)
        for part in path.strip("/").split("/"):
            node = node._(part)
        kw: dict[str, Any] = {"timeout": self.timeout}
        if body is not None or raw_body is not None:
            kw["request_body"] = raw_body if raw_body is not None else _dumps(body)
            kw["request_headers"] = {"Content-Type": JSON_UTF8}
        if query:
            kw["query_params"] = query
        with self._lock:
            self.requests += 1
        try:
            return getattr(node, method.lower())(**kw)
        except SGHTTPError as exc:
            raise self.http_error(
                int(exc.status_code),
                _text(exc.body),
                exc.headers,
                what=what,
                scope=scope,
                batch=batch,
                campaign=campaign,
            ) from None
        except URLError as exc:
            raise self._not_sent(exc.reason, what) from None
        except (OSError, http.client.HTTPException) as exc:
            if idempotent if idempotent is not None else method.upper() == "GET":
                raise TransientError(
                    f"cannot reach SendGrid at {self.host}: no answer to {what} ({_why(exc)})",
                    hint="check the network connection and SENDGRID_API_HOST",
                ) from None
            if batch is not None:
                raise UnknownOutcome(
                    f"batch {short_id(batch.id)} ({batch.size} recipients) was sent to SendGrid "
                    f"but no answer came ({_why(exc)}); it may or may not have been accepted",
                    hint="it is marked unknown and is not resent; check SendGrid's Email Activity, "
                    "then pass --resend-unknown only for messages that did not arrive",
                ) from None
            raise UnknownOutcome(
                f"{what} was sent to SendGrid but no answer came ({_why(exc)}); it may or may "
                "not have taken effect"
            ) from None

    def request(self, method: str, path: str, **kw: Any) -> Any:
        """:meth:`call`, retrying transient failures (:meth:`retrying`)."""
        return self.retrying(lambda: self.call(method, path, **kw))

    def get_json(self, path: str, query: dict[str, Any] | None = None, **kw: Any) -> Any:
        """``GET`` a JSON document (with retries)."""
        resp = self.request("GET", path, query=query, **kw)
        try:
            return json.loads(resp.body or b"null")
        except ValueError:
            raise FatalError(
                f"SendGrid answered GET /v3/{path} with something that is not JSON: "
                f"{self.redact(_text(resp.body))[:200]}",
                hint="check SENDGRID_API_HOST (leave it unset for https://api.sendgrid.com)",
            ) from None

    # -- retries ------------------------------------------------------------------------------

    def retrying(self, call: Callable[[], T]) -> T:
        """Run ``call``, retrying :class:`TransientError` (honouring ``retry_after``); after
        ``retries`` retries the last one becomes a :class:`PermanentError`.

        Every attempt first waits at the shared 429 gate (:meth:`wait_at_gate`); a 429 with a
        reset time closes it for every thread (:meth:`close_gate`)."""
        attempt = 0
        while True:
            self.wait_at_gate()
            try:
                return call()
            except TransientError as exc:
                attempt += 1
                if attempt > self.retries:
                    raise PermanentError(
                        f"gave up after {attempt} attempts: {exc.message}",
                        status=exc.status,
                        body=exc.body,
                        where=exc.where,
                        hint=exc.hint,
                        details=exc.details,
                    ) from None
                delay = self.delay(attempt, exc.retry_after)
                if exc.retry_after is not None:
                    self.close_gate(self.clock() + delay)
                if self.on_retry:
                    self.on_retry(
                        f"{exc.message}; retrying in {delay:.1f} s (attempt {attempt + 1})"
                    )
                self.sleep(delay)

    def close_gate(self, until: float) -> None:
        """No request starts before ``until`` (a ``clock()`` time), in any thread. The thread
        that closes it sleeps on its own (its retry delay), so it counts as having waited."""
        with self._lock:
            self._gate = max(self._gate, until)
        self._waited.until = until

    def wait_at_gate(self) -> None:
        """Sleep until the gate opens, unless this thread already slept to its time."""
        with self._lock:
            gate = self._gate
        if gate <= getattr(self._waited, "until", 0.0):
            return
        self._waited.until = gate
        wait = gate - self.clock()
        if wait > 0:
            if self.on_retry:
                self.on_retry(f"another request met SendGrid's rate limit; waiting {wait:.1f} s")
            self.sleep(wait)

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds before retry ``attempt`` (1-based): the rate-limit reset if known, else
        ``backoff·2^(attempt-1)`` capped at ``max_backoff``, with equal jitter."""
        if retry_after is not None:
            return max(0.0, min(retry_after, self.max_backoff * 5))
        cap = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
        return random.uniform(cap / 2, cap)

    # -- errors in plain words ----------------------------------------------------------------

    def _not_sent(self, reason: object, what: str) -> TransientError | FatalError:
        if isinstance(reason, ssl.SSLCertVerificationError):
            return FatalError(
                f"{what}: the TLS certificate of {self.host} is not valid ({reason})",
                hint="check SENDGRID_API_HOST",
            )
        return TransientError(
            f"cannot reach SendGrid at {self.host} ({_why(reason)}); nothing was sent",
            hint="check the network connection and SENDGRID_API_HOST",
        )

    def http_error(
        self,
        status: int,
        body: str,
        headers: Any = None,
        *,
        what: str,
        scope: str | None = None,
        batch: Batch | None = None,
        campaign: Campaign | None = None,
    ) -> TransportError:
        """A SendGrid error answer as an :class:`OutreachError` a coordinator can act on."""
        body = self.redact(body)
        errors = _errors(body)
        first = errors[0].get("message") if errors else None
        said = f": {first}" if first else ""
        sending = what == MAIL_SEND
        subject = (
            f"batch {short_id(batch.id)} of step {batch.step.id} ({batch.size} recipients, "
            f"variant {batch.variant.id})"
            if batch is not None
            else what
        )
        stopped = "; nothing more was sent" if sending else ""
        kw: dict[str, Any] = {"status": status, "body": body}
        if status == 429:
            reset = _header(headers, "X-RateLimit-Reset")
            wait = None
            if reset:
                try:
                    wait = max(0.0, float(reset) - self.clock())
                except ValueError:
                    wait = None
            until = (
                f" until {datetime.fromtimestamp(float(reset), UTC):%H:%M:%S} UTC"  # type: ignore[arg-type]
                if wait is not None
                else ""
            )
            return TransientError(
                f"SendGrid's rate limit was reached (429); waiting{until}",
                retry_after=wait,
                **kw,
            )
        if status >= 500:
            return TransientError(f"SendGrid had a server error ({status}{said})", **kw)
        if status == 401:
            return FatalError(
                f"SendGrid did not accept the API key (401 Unauthorized{said}){stopped}",
                hint="check SENDGRID_API_KEY in the environment or the workspace's .env: it must "
                "be a complete key (SG.…) that has not been deleted",
                **kw,
            )
        explain = self.explain(errors, batch, campaign)
        if status == 403:
            needs = f"the API key needs the '{scope}' permission" if scope else ""
            if sending and campaign is not None:
                needs = (
                    "the API key needs the 'Mail Send' permission, and "
                    f"{campaign.sender.from_email} must be a verified sender "
                    "(SendGrid → Settings → Sender Authentication)"
                )
            return FatalError(
                f"SendGrid refused {subject} (403 Forbidden{said}){stopped}",
                hint=needs
                or "the API key lacks a permission this needs (SendGrid → Settings → API Keys)",
                details=explain,
                **kw,
            )
        if status == 413 and batch is not None and campaign is not None:
            return FatalError(
                f"SendGrid found {subject} too large (413{said}){stopped}",
                where=campaign.where("sendgrid", "batch_size"),
                hint=f"lower sendgrid.batch_size (now {campaign.spec.sendgrid.batch_size}) in "
                "the campaign file",
                **kw,
            )
        if status == 400:
            per_recipient = bool(errors) and all(
                PERSONALIZATION_RE.match(str(e.get("field") or "")) for e in errors
            )
            if per_recipient and batch is not None:
                return PermanentError(
                    f"SendGrid rejected {subject} (400) because of {len(errors)} recipient "
                    "problem(s); the other batches go on",
                    details=explain,
                    hint="fix these contacts in the list (or remove them) and run the same "
                    "command again: only this batch is retried",
                    **kw,
                )
            where = None
            if campaign is not None:
                where = next((w for w in (_field_where(e, campaign) for e in errors) if w), None)
            return FatalError(
                f"SendGrid rejected {subject} (400 Bad Request){stopped}",
                details=explain or ([body[:300]] if body else []),
                where=where,
                hint="fix the campaign setting named above and run the same command again"
                if where
                else "see SendGrid's message above",
                **kw,
            )
        return FatalError(
            f"unexpected answer {status} from {self.host} to {what}{said}",
            hint="check SENDGRID_API_HOST (leave it unset for https://api.sendgrid.com)",
            **kw,
        )

    def explain(
        self, errors: list[dict], batch: Batch | None, campaign: Campaign | None = None
    ) -> list[str]:
        """One plain line per SendGrid error: the field in our words, the recipient if any."""
        lines = []
        for e in errors[:20]:
            field = str(e.get("field") or "")
            message = str(e.get("message") or "").strip()
            m = PERSONALIZATION_RE.match(field)
            if m:
                index, rest = int(m.group(1)), m.group(2) or ""
                what = PERSONALIZATION_WORDS.get(rest.split(".")[0], rest or "the recipient")
                who = f"personalization {index}"
                if batch is not None and index < batch.size:
                    r = batch.recipients[index]
                    who = (
                        f"recipient {r.to or r.contact.email} ({r.contact.where}, contact "
                        f"{r.contact.contact_id}, send {short_id(r.send_id)})"
                    )
                lines.append(f"{who}: {what} — {message}")
            elif field and field != "null":
                words = FIELD_WORDS.get(field) or FIELD_WORDS.get(field.split(".")[0])
                label = f"{words[0]} ({field})" if words else field
                lines.append(f"{label}: {message}")
            elif message:
                lines.append(message)
        return [self.redact(line) for line in lines]


# ------------------------------------------------------------------------------------------
# helpers


def _field_where(error: dict, campaign: Campaign) -> Any:
    field = str(error.get("field") or "")
    words = FIELD_WORDS.get(field) or FIELD_WORDS.get(field.split(".")[0])
    if words and words[1]:
        return campaign.where(*words[1])
    return None


def _text(body: bytes | str | None) -> str:
    if body is None:
        return ""
    return body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)


def _errors(body: str) -> list[dict]:
    try:
        data = json.loads(body)
    except ValueError:
        return []
    errors = data.get("errors") if isinstance(data, dict) else None
    return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


def _header(headers: Any, name: str) -> str | None:
    if headers is None:
        return None
    try:
        return headers.get(name)
    except AttributeError:
        return None


def _why(reason: object) -> str:
    if isinstance(reason, TimeoutError):
        return "timed out"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, ConnectionResetError | http.client.RemoteDisconnected):
        return "connection reset"
    return str(reason) or type(reason).__name__

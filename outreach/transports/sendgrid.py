"""SendGrid delivery through the v3 Mail Send API (``POST /v3/mail/send``).

One request carries up to 1,000 recipients of **one structural variant**: the variant's subject,
HTML and text travel once, with their ``[[h:…]]``/``[[t:…]]`` markers intact, and each recipient
is a *personalization* whose ``substitutions`` fill the markers (HTML-escaped values for ``h:``
keys, raw values for ``t:`` keys, see :meth:`outreach.render.Variant.substitutions`). What
SendGrid builds for each recipient is therefore byte-identical to a direct render.

Payload of one request::

    personalizations[]   to (email, name), substitutions, custom_args {campaign, step,
                         contact_id, send_id}, headers (own one-click unsubscribe), send_at
    from, reply_to       the campaign's sender and coordinator
    subject, content     text/plain then text/html, markers intact
    headers              List-Id (RFC 2919), the same for every recipient of the campaign
    categories           the campaign's (≤ 8) + campaign name + step id (≤ 10)
    tracking_settings    open/click tracking from the campaign; subscription tracking (below)
    asm.group_id         when the campaign names an unsubscribe group
    mail_settings        sandbox_mode (sendgrid.sandbox)
    ip_pool_name         sendgrid.ip_pool
    batch_id             scheduled batches only (created with POST /v3/mail/batch)

Unsubscribe, in order of preference:

* **own endpoint** (``unsubscribe.url``, served by ``outreach serve``): every
  personalization carries ``List-Unsubscribe: <URL/send_id>, <mailto:…>`` and
  ``List-Unsubscribe-Post: List-Unsubscribe=One-Click`` (RFC 8058), and the footer's
  ``unsubscribe_url`` is the same URL. SendGrid's subscription tracking is switched *off*, so
  the message has one unsubscribe link and one List-Unsubscribe header, both ours. If the
  campaign also names an ``unsubscribe_group``, ``asm.group_id`` is added so SendGrid also
  suppresses that group's unsubscribers.
* **ASM group** (no own URL, ``sendgrid.unsubscribe_group`` set): ``asm.group_id``; the footer
  link is SendGrid's ``<%asm_group_unsubscribe_raw_url%>`` and SendGrid adds the
  List-Unsubscribe headers.
* **subscription tracking** (neither): ``subscription_tracking`` is enabled with the footer
  link as its ``substitution_tag``; SendGrid adds List-Unsubscribe and List-Unsubscribe-Post.

Requests go through :class:`outreach.sendgrid_api.SendGridAPI` (client, timeout, retries, errors
in plain words, key redaction). Responses: 2xx → accepted (``X-Message-Id`` is stored on every
ledger row of the batch; webhook events carry it as the prefix of ``sg_message_id``); 429 →
wait until ``X-RateLimit-Reset``; 5xx, and network errors before the request was fully sent →
retried with capped exponential backoff and jitter; 400/401/403/413 → stop, with SendGrid's
error body explained (which field, which recipient, which batch); a timeout or reset *after*
the request was sent → :class:`UnknownOutcome` (the batch becomes ``unknown`` and is resent
only with ``--resend-unknown``). The API key never appears in a message, a log record or the
ledger.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import markupsafe

from outreach.exceptions import (
    ConfigError,
    FatalError,
    ListError,
    OutreachError,
    PermanentError,
    TransientError,
    UnknownOutcome,
)
from outreach.ledger import short_id
from outreach.render import apply_transforms
from outreach.sendgrid_api import PERSONALIZATION_WORDS, SendGridAPI
from outreach.transports.base import Batch, Capability, Delivery, Recipient, Transport

if TYPE_CHECKING:
    from outreach.campaign import Campaign
    from outreach.ledger import Row
    from outreach.render import Variant
    from outreach.workspace import Workspace

T = TypeVar("T")
MAX_PERSONALIZATIONS = 1000  # personalizations, and recipients, per request
MAX_FIELD_BYTES = 10_000  # substitutions, and custom_args, per personalization
MAX_CATEGORIES = 10
MAX_REQUEST_BYTES = 30_000_000  # "the total size of your email … must be less than 30MB"
SCHEDULE_AHEAD = timedelta(hours=71, minutes=30)  # leaves 30 min between planning and sending
ASM_UNSUBSCRIBE_TAG = "<%asm_group_unsubscribe_raw_url%>"
SUBSCRIPTION_TAG = "[unsubscribe]"
UNSUBSCRIBE_MARKERS = ("[[h:unsubscribe_url]]", "[[t:unsubscribe_url]]")
_BATCH_ID_ALLOWANCE = 200  # bytes reserved in size estimates for ',"batch_id":"…"'

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_encode = json.encoder.encode_basestring  # what _dumps uses for strings (C-accelerated)
_HTML_SPECIAL = re.compile(r"[&<>'\"]")  # what markupsafe.escape replaces


def _forward(name: str) -> property:
    """An attribute of the transport that lives on its API client (retry policy, timeout…)."""
    return property(
        lambda self: getattr(self.api, name),
        lambda self, value: setattr(self.api, name, value),
        doc=f"the API client's {name}",
    )


@dataclass
class _Shape:
    """What every request for one variant shares, serialized once."""

    common: str  # the payload's members after "personalizations", as JSON text without braces
    drop: tuple[str, ...]  # markers filled by SendGrid itself (not by substitutions)
    has_unsubscribe_link: bool
    subs: tuple[tuple[str, bool, str, tuple[str, ...]], ...]  # (marker, html?, key, chain)
    occurrences: dict[str, int]  # how often each marker appears in ``common``
    key_format: str  # the short substitution keys of a request: "[[{}]]" unless the text has some


def display_name(name: str) -> str:
    """A recipient name SendGrid takes as is: with ``,`` or ``;`` it must be quoted."""
    if "," in name or ";" in name:
        return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return name


class SendGridTransport(Transport):
    """Batched delivery through SendGrid (see the module docstring for the payload)."""

    name = "sendgrid"
    real = True
    max_batch = MAX_PERSONALIZATIONS
    capabilities = Capability.SCHEDULES | Capability.CANCELS | Capability.CONCURRENT
    schedule_ahead = SCHEDULE_AHEAD

    # the retry policy, timeout and request count live on the API client
    retries = _forward("retries")
    backoff = _forward("backoff")
    max_backoff = _forward("max_backoff")
    sleep = _forward("sleep")
    timeout = _forward("timeout")
    on_retry = _forward("on_retry")
    clock = _forward("clock")  # "now", for send_at and X-RateLimit-Reset alike
    requests = _forward("requests")

    def __init__(
        self,
        workspace: Workspace,
        campaign: Campaign,
        *,
        timeout: float | None = None,
        **kw: Any,
    ) -> None:
        self.api = SendGridAPI.from_workspace(
            workspace, need="or use --transport outbox", timeout=timeout, **kw
        )
        super().__init__(workspace, campaign)
        self.host = self.api.host
        self.max_request_bytes = MAX_REQUEST_BYTES
        opts = campaign.spec.sendgrid
        self.options = opts
        self.max_batch = min(opts.batch_size, MAX_PERSONALIZATIONS)  # type: ignore[misc]
        self.concurrency = opts.concurrency
        if opts.sandbox:
            # a sandbox run is recorded apart: it must not count as having sent the step
            self.name = "sendgrid-sandbox"  # type: ignore[misc]
        unsub = campaign.spec.unsubscribe
        if unsub.url:
            self.unsubscribe_mode = "own"
        elif opts.unsubscribe_group is not None:
            self.unsubscribe_mode = "asm"
        else:
            self.unsubscribe_mode = "subscription"
        self._shapes: dict[tuple[str, bool], _Shape] = {}
        self._batch_ids: dict[str, str] = {}
        self._builder: ThreadPoolExecutor | None = None
        self._bodies: dict[str, Future[str]] = {}
        self._planned_bytes: Counter = Counter()

    # -- small helpers ------------------------------------------------------------------------

    def redact(self, text: str) -> str:
        return self.api.redact(text)

    def retrying(self, call: Callable[[], T]) -> T:
        return self.api.retrying(call)

    def describe(self) -> str:
        where = "" if self.api.is_default_host else f" at {self.host}"
        if self.options.sandbox:
            return f"SendGrid{where} in SANDBOX mode (validated by SendGrid, nothing delivered)"
        return f"SendGrid{where}"

    def unsubscribe_url(self, send_id: str) -> str:
        if self.unsubscribe_mode == "own":
            return super().unsubscribe_url(send_id)
        return ASM_UNSUBSCRIBE_TAG if self.unsubscribe_mode == "asm" else SUBSCRIPTION_TAG

    def categories(self, step: str) -> list[str]:
        cats = list(dict.fromkeys([*self.options.categories, self.campaign.name, step]))
        if len(cats) > MAX_CATEGORIES:
            raise ConfigError(
                f"{len(cats)} SendGrid categories; SendGrid allows {MAX_CATEGORIES}",
                where=self.campaign.where("sendgrid", "categories"),
                hint="outreach adds the campaign name and the step id: list at most 8",
            )
        return cats

    # -- payload ------------------------------------------------------------------------------

    def _shape(self, variant: Variant, step: str, test: bool) -> _Shape:
        key = (variant.id, test)
        shape = self._shapes.get(key)
        if shape is not None:
            return shape
        sender = self.campaign.sender
        subject, html, text = variant.subject, variant.html, variant.text
        drop: tuple[str, ...] = ()
        has_link = UNSUBSCRIBE_MARKERS[0] in html
        if self.unsubscribe_mode != "own":
            # SendGrid fills its own unsubscribe URL: put its tag in place of our marker
            tag = self.unsubscribe_url("")
            drop = UNSUBSCRIBE_MARKERS
            for marker in UNSUBSCRIBE_MARKERS:
                subject, html, text = (
                    subject.replace(marker, tag),
                    html.replace(marker, tag),
                    text.replace(marker, tag),
                )
        if test:
            subject = "[TEST] " + subject
        payload: dict[str, Any] = {
            # the same for every recipient: SendGrid merges these with each personalization's
            "custom_args": {"campaign": self.campaign.name, "step": step},
            "from": _address(sender.from_email, sender.from_name),
            "reply_to": _address(sender.reply_to, sender.reply_to_name),
            "subject": subject,
            # the same for every recipient: once per request (List-Unsubscribe is per person)
            "headers": self.campaign_headers(),
            "content": [
                {"type": "text/plain", "value": text},
                {"type": "text/html", "value": html},
            ],
            "categories": self.categories(step),
            "tracking_settings": self._tracking(has_link),
            "mail_settings": {"sandbox_mode": {"enable": bool(self.options.sandbox)}},
        }
        if self.options.unsubscribe_group is not None:
            payload["asm"] = {"group_id": int(self.options.unsubscribe_group)}
        if self.options.ip_pool:
            payload["ip_pool_name"] = self.options.ip_pool
        if self.unsubscribe_mode == "own":
            sample = self.headers(None, test=True)  # type: ignore[arg-type]
            shared = {k: v for k, v in sample.items() if k != "List-Unsubscribe"}
            if shared:  # List-Unsubscribe-Post
                payload["headers"] = {**payload.get("headers", {}), **shared}
        subs = tuple(
            (marker, html, key, chain)
            for marker, html, key, chain in variant._specs
            if marker not in drop
        )
        common = _dumps(payload)[1:-1]
        occurrences = {spec[0]: common.count(_encode(spec[0])[1:-1]) for spec in subs}
        tok = next(t for t in ("", "~", "~~", "~~~") if not re.search(rf"\[\[{t}\d", common))
        shape = _Shape(common, drop, has_link, subs, occurrences, f"[[{tok}{{}}]]")
        self._shapes[key] = shape
        return shape

    def _tracking(self, has_link: bool) -> dict[str, Any]:
        t = self.options.tracking
        sub: dict[str, Any] = {"enable": self.unsubscribe_mode == "subscription"}
        if self.unsubscribe_mode == "subscription" and has_link:
            sub["substitution_tag"] = SUBSCRIPTION_TAG
        return {
            "click_tracking": {"enable": bool(t.clicks), "enable_text": False},
            "open_tracking": {"enable": bool(t.opens)},
            "subscription_tracking": sub,
        }

    def personalization(
        self, batch: Batch, r: Recipient, shape: _Shape | None = None
    ) -> dict[str, Any]:
        """The personalization object for one recipient of a batch."""
        shape = shape or self._shape(batch.variant, batch.step.id, batch.test)
        return self._personalization(batch.variant, batch.step.id, batch.test, r, shape)

    def _personalization(
        self, variant: Variant, step: str, test: bool, r: Recipient, shape: _Shape
    ) -> dict[str, Any]:
        contact = r.contact
        to: dict[str, str] = {"email": r.to or contact.email}
        name = "" if r.to else contact.full_name
        if name:
            to["name"] = display_name(name)
        p: dict[str, Any] = {"to": [to]}
        subs = variant.substitutions(r.values)
        for marker in shape.drop:
            subs.pop(marker, None)
        if subs:
            p["substitutions"] = subs
        p["custom_args"] = {
            "campaign": self.campaign.name,
            "step": step,
            "contact_id": contact.contact_id,
            "send_id": r.send_id,
        }
        if self.unsubscribe_mode == "own":
            headers = self.headers(r, test)
            if headers:
                p["headers"] = headers
        if r.send_at is not None:
            at = int(r.send_at.timestamp())
            if at > self.clock():  # a time already past means "now"
                p["send_at"] = at
        return p

    def payload(self, batch: Batch) -> str:
        """The request body (JSON text) for a batch, as small as the messages allow.

        What each recipient receives is exactly :meth:`personalization` applied to the
        variant (the property tests check it through the fake SendGrid), but the request
        says it in fewer bytes:

        * markers whose values are the same for every recipient of the request (HTML and
          text forms of a plain name, a hashtag and its URL-encoded form) share one
          substitution, under a short key (``[[0]]``, ``[[1]]``…);
        * the part of a value that every recipient shares (the unsubscribe URL up to the
          send id's random end) is written once into the content around the key, and a value
          the same for everyone is written there whole — each only when that makes the
          request smaller, so a request is never larger than the plain form that
          :meth:`split` sized;
        * campaign and step (custom_args) and List-Unsubscribe-Post (a header) are the same
          for everyone: they travel once, at the top level, where SendGrid merges them into
          every personalization's own (as django-anymail's merge_headers do).
        """
        shape = self._shape(batch.variant, batch.step.id, batch.test)
        recipients = batch.recipients
        n = len(recipients)
        escape, special = markupsafe.escape, _HTML_SPECIAL.search
        groups: dict[tuple[str, ...], list[str]] = {}  # a column of values → its markers
        # each recipient's values once (a planned recipient builds them when they are read),
        # and each key's column of values once (its HTML and text markers share it)
        values = [r.values for r in recipients] if shape.subs else []
        read: dict[str, list[Any]] = {}
        for marker, html, key, chain in shape.subs if n else ():
            raw = read.get(key)
            if raw is None:
                raw = read[key] = [vals[key] for vals in values]
            column = (
                [apply_transforms(v, chain) for v in raw]
                if chain
                else [v if type(v) is str else apply_transforms(v, chain) for v in raw]
            )
            if html:
                column = [str(escape(v)) if special(v) else v for v in column]
            groups.setdefault(tuple(column), []).append(marker)
        common = shape.common
        columns: list[tuple[str, tuple[str, ...], int, int]] = []  # key, values, cuts
        for column, markers in groups.items():
            occ = sum(shape.occurrences[m] for m in markers) or 1
            key = shape.key_format.format(len(columns))
            first = column[0]
            if n == 1 or len(set(column)) == 1:
                if n * (len(key) + len(first) + 6) > occ * len(first):
                    fill = _encode(first)[1:-1]  # the same for everyone: into the content
                    for m in markers:
                        common = common.replace(_encode(m)[1:-1], fill)
                    continue
                head = tail = ""
            else:
                head, tail = _shared_ends(column) if n > occ else ("", "")
            fill = _encode(head)[1:-1] + key + _encode(tail)[1:-1]
            for m in markers:
                common = common.replace(_encode(m)[1:-1], fill)
            columns.append((_encode(key) + ":", column, len(head), len(tail)))
        parts = []
        own = self.unsubscribe_mode == "own"
        test = batch.test
        now = self.clock()
        for j, r in enumerate(recipients):
            contact = r.contact
            name = "" if r.to else contact.full_name
            out = ['{"to":[{"email":', _encode(r.to or contact.email)]
            if name:
                out += [',"name":', _encode(display_name(name))]
            out.append("}]")
            if columns:
                items = []
                for key, column, cut, cut_end in columns:
                    v = column[j]
                    items.append(key + _encode(v[cut : len(v) - cut_end]))
                out += [',"substitutions":{', ",".join(items), "}"]
            out += [',"custom_args":{"contact_id":', _encode(contact.contact_id)]
            out += [',"send_id":', _encode(r.send_id), "}"]
            if own:
                unsubscribe = self.headers(r, test).get("List-Unsubscribe")
                if unsubscribe:
                    out += [',"headers":{"List-Unsubscribe":', _encode(unsubscribe), "}"]
            if r.send_at is not None:
                at = int(r.send_at.timestamp())
                if at > now:  # a time already past means "now"
                    out += [',"send_at":', str(at)]
            out.append("}")
            parts.append("".join(out))
        batch_id = (
            f',"batch_id":{_dumps(batch.provider_batch_id)}' if batch.provider_batch_id else ""
        )
        return '{"personalizations":[' + ",".join(parts) + "]" + batch_id + "," + common + "}"

    # -- batching -----------------------------------------------------------------------------

    def split(
        self, variant: Variant, recipients: list[Recipient]
    ) -> list[tuple[list[Recipient], list[str]]]:
        """Requests of ≤ ``batch_size`` personalizations, each address once per request, each
        personalization's substitutions and custom_args ≤ 10,000 bytes, each request < 30 MB.

        A recipient whose own values pass a per-personalization limit is an error naming the
        contact (values are never truncated). Splits beyond ⌈n/batch_size⌉ get a note.
        """
        if not recipients:
            return []
        step = variant.step
        shape = self._shape(variant, step, False)
        base = len(shape.common.encode()) + len('{"personalizations":[]}') + _BATCH_ID_ALLOWANCE
        bound = self._bounder(variant, step, shape)
        cap, limit = self.max_batch, self.max_request_bytes
        chunks: list[list[Recipient]] = []
        reasons: Counter = Counter()
        items: Iterable[tuple[Recipient, int | None]] = ((r, None) for r in recipients)
        while True:
            deferred: list[tuple[Recipient, int]] = []
            cur: list[Recipient] = []
            emails: set[str] = set()
            size = base
            for r, n in items:
                if n is None:
                    n = bound(r)  # an upper bound of the personalization's bytes
                addr = (r.to or r.contact.email).lower()
                if addr in emails:
                    deferred.append((r, n))
                    continue
                if size + n + 1 >= limit:
                    n = self._measure(variant, step, r, shape)  # exact, near the limit only
                if cur and (len(cur) >= cap or size + n + 1 >= limit):
                    if len(cur) < cap:
                        reasons["to stay under SendGrid's 30 MB per request"] += 1
                    chunks.append(cur)
                    cur, emails, size = [], set(), base
                if size + n + 1 >= limit:
                    raise ListError(
                        f"{r.contact.email}: one message is {n + base:,} bytes, over SendGrid's "
                        "30 MB per request",
                        where=r.contact.where,
                    )
                cur.append(r)
                emails.add(addr)
                size += n + 1
            if cur:
                chunks.append(cur)
            if not deferred:
                break
            reasons["because an address may appear only once per request"] += 1
            items = deferred
        # the plan's size estimate: each chunk's first personalization, measured exactly
        self._planned_bytes[step] += sum(
            base + len(c) * (self._measure(variant, step, c[0], shape) + 1) for c in chunks
        )
        minimum = -(-len(recipients) // cap)
        notes = []
        if len(chunks) > minimum:
            why = "; ".join(f"{n} split(s) {reason}" for reason, n in reasons.items())
            notes.append(
                f"variant {variant.id}: {len(recipients)} recipient(s) need {len(chunks)} "
                f"requests instead of {minimum} ({why})"
            )
        return [(c, notes if i == 0 else []) for i, c in enumerate(chunks)]

    def _bounder(self, variant: Variant, step: str, shape: _Shape) -> Callable[[Recipient], int]:
        """A fast upper bound of a recipient's personalization size, in bytes of JSON.

        Every character of a value costs at most 6 bytes in JSON (``\\u00XX``, or ``&#34;`` in
        HTML); ``urlencode`` triples that and a case change can triple the characters. When a
        bound passes a per-recipient limit, the exact size is computed (and an error raised if
        it is really over).
        """
        weights: dict[str, int] = defaultdict(int)
        subs_fixed = 2
        for marker, _html, key, chain in variant._specs:
            if marker in shape.drop:
                continue
            w = 6
            for t in chain:
                w *= 2 if t == "urlencode" else (1 if t == "trim" else 3)
            weights[key] += w
            subs_fixed += len(marker) + 6
        pairs = tuple(weights.items())
        args = {"campaign": self.campaign.name, "step": step, "contact_id": "", "send_id": ""}
        ca_fixed = len(_dumps(args).encode())
        hdr_fixed = 0
        if self.unsubscribe_mode == "own":
            blank = Recipient("", None, "", "", "", {})  # type: ignore[arg-type]
            hdr_fixed = len(_dumps(self.headers(blank)).encode()) + 16
        fixed = 160 + hdr_fixed  # keys, brackets, send_at, the to object
        measure = self._measure

        def subs_bound(values: dict[str, Any]) -> int:
            subs = subs_fixed
            for key, w in pairs:
                v = values[key]
                subs += w * (len(v) if type(v) is str else len(apply_transforms(v, ())))
            return subs

        def bound(r: Recipient) -> int:
            subs = subs_bound(r.values)
            sid = len(r.send_id)
            ca = ca_fixed + 6 * (len(r.contact.contact_id) + sid)
            if subs > MAX_FIELD_BYTES or ca > MAX_FIELD_BYTES:
                return measure(variant, step, r, shape)  # exact; raises if really over
            to = 6 * (
                len(r.to or r.contact.email)
                + len(r.contact.first_name)
                + len(r.contact.last_name)
                + 4
            )
            return fixed + subs + ca + to + 12 * sid

        bound.subs = subs_bound  # type: ignore[attr-defined]  (for the tests)
        return bound

    def _measure(self, variant: Variant, step: str, r: Recipient, shape: _Shape) -> int:
        """Bytes of one personalization in the request; raises if it passes a per-recipient limit."""
        p = self._personalization(variant, step, False, r, shape)
        for field in ("substitutions", "custom_args"):
            value = p.get(field)
            if not value:
                continue
            n = _nbytes(_dumps(value))
            if n > MAX_FIELD_BYTES:
                biggest = sorted(value.items(), key=lambda kv: -len(kv[1]))[:3]
                raise ListError(
                    f"{r.contact.email}: this contact's {PERSONALIZATION_WORDS[field]} take "
                    f"{n:,} bytes; SendGrid allows {MAX_FIELD_BYTES:,} per recipient",
                    where=r.contact.where,
                    details=[f"{k} is {_nbytes(v):,} bytes" for k, v in biggest],
                    hint="shorten these values in the list (outreach never truncates them), "
                    "or remove the contact",
                )
        return _nbytes(_dumps(p))

    def plan_notes(self, batches: list[Batch]) -> list[str]:
        if not batches:
            return []
        by_variant: dict[str, int] = defaultdict(int)
        for b in batches:
            by_variant[b.variant.id] += b.size
        recipients = sum(by_variant.values())
        minimum = sum(-(-n // self.max_batch) for n in by_variant.values())
        mb = self._planned_bytes[batches[0].step.id] / 1e6
        notes = [
            f"SendGrid: {len(batches)} request(s) for {recipients} recipient(s) in "
            f"{len(by_variant)} variant(s), up to {self.max_batch} per request "
            f"(minimum {minimum}); about {mb:.1f} MB of JSON in all"
        ]
        scheduled = sum(1 for b in batches for r in b.recipients if r.send_at is not None)
        if scheduled:
            notes.append(
                f"{scheduled} recipient(s) are scheduled (send_at, local time); a SendGrid "
                f"batch id is created when sending, so `outreach cancel {self.campaign.name} "
                f"--step {batches[0].step.id}` can stop them"
            )
        notes.append(self._unsubscribe_note())
        missing = {
            b.variant.id
            for b in batches
            if not self._shape(b.variant, b.step.id, False).has_unsubscribe_link
        }
        if missing and self.unsubscribe_mode != "subscription":
            notes.append(
                f"{len(missing)} variant(s) have no unsubscribe link in the HTML "
                "(print {{ unsubscribe_url }} in the footer)"
            )
        if self.options.sandbox:
            notes.append(
                "sandbox mode: SendGrid validates every request but delivers nothing; the "
                "ledger records it under 'sendgrid-sandbox', apart from real sends"
            )
        return notes

    def _unsubscribe_note(self) -> str:
        group = self.options.unsubscribe_group
        if self.unsubscribe_mode == "own":
            extra = f"; asm.group_id {group} also applies" if group is not None else ""
            return (
                "unsubscribe: own one-click endpoint "
                f"{self.campaign.spec.unsubscribe.url}/<send_id> in List-Unsubscribe and the "
                f"footer; SendGrid subscription tracking off{extra}"
            )
        if self.unsubscribe_mode == "asm":
            return (
                f"unsubscribe: SendGrid group {group} (asm.group_id); the footer link and "
                "List-Unsubscribe headers are SendGrid's"
            )
        return (
            "unsubscribe: SendGrid subscription tracking (no unsubscribe.url or "
            "unsubscribe_group in the campaign); the footer link and List-Unsubscribe headers "
            "are SendGrid's"
        )

    # -- delivery -----------------------------------------------------------------------------

    def prepare_batch(self, batch: Batch) -> None:
        """Scheduled recipients need a SendGrid batch id (one per step and run) for cancelling.

        Then the request body starts being built in a worker thread: the engine writes the
        batch's ledger rows meanwhile (SQLite works without holding the GIL), and
        :meth:`_deliver` picks the body up.
        """
        self._assign_batch_id(batch)
        if self._builder is None:
            self._builder = ThreadPoolExecutor(1, thread_name_prefix="sendgrid-payload")
        self._bodies[batch.id] = self._builder.submit(self.payload, batch)

    def _assign_batch_id(self, batch: Batch) -> None:
        if batch.provider_batch_id or not any(r.send_at for r in batch.recipients):
            return
        step = batch.step.id
        if step not in self._batch_ids:
            try:
                self._batch_ids[step] = self.retrying(self._create_batch_id)
            except PermanentError as exc:
                raise FatalError(
                    f"could not create a SendGrid batch id for scheduled sends: {exc.message}",
                    status=exc.status,
                    hint=exc.hint,
                    details=exc.details,
                ) from None
        batch.provider_batch_id = self._batch_ids[step]

    def _create_batch_id(self) -> str:
        resp = self.api.call("POST", "mail/batch", scope="mail.batch.create", idempotent=True)
        try:
            return str(json.loads(resp.body)["batch_id"])
        except (ValueError, KeyError, TypeError):
            raise TransientError(
                f"SendGrid answered POST /v3/mail/batch without a batch id: "
                f"{self.redact(_text(resp.body))[:200]}"
            ) from None

    def deliver(self, batch: Batch) -> Delivery:
        try:
            return super().deliver(batch)
        finally:
            self._bodies.pop(batch.id, None)

    def _body(self, batch: Batch) -> str:
        """The request body, built once per batch (retries reuse it)."""
        future = self._bodies.get(batch.id)
        if future is None:
            future = self._bodies[batch.id] = Future()
            try:
                future.set_result(self.payload(batch))
            except BaseException as exc:
                future.set_exception(exc)
        try:
            return future.result()
        except OutreachError as exc:  # nothing was sent
            raise FatalError(f"batch {short_id(batch.id)} could not be built: {exc}") from None

    def _deliver(self, batch: Batch) -> Delivery:
        body = self._body(batch)
        size = _nbytes(body)
        if size >= self.max_request_bytes:
            raise FatalError(
                f"batch {short_id(batch.id)} would be {size:,} bytes, over SendGrid's 30 MB",
                hint="lower sendgrid.batch_size in the campaign file",
            )
        self.count(nbytes=size)
        resp = self.api.call(
            "POST",
            "mail/send",
            raw_body=body,
            scope="mail.send",
            batch=batch,
            campaign=self.campaign,
        )
        if not 200 <= resp.status_code < 300:
            raise UnknownOutcome(
                f"SendGrid answered {resp.status_code} to batch {short_id(batch.id)}",
                status=resp.status_code,
            )
        mid = resp.headers.get("X-Message-Id")
        return Delivery(mid or None, detail=f"{resp.status_code}")

    # -- crash recovery and cancelling ---------------------------------------------------------

    def close(self) -> None:
        if self._builder is not None:
            self._builder.shutdown(wait=True, cancel_futures=True)
            self._builder = None
        self._bodies.clear()

    def reconcile(self, rows: Iterable[Row]) -> dict[str, tuple[str, str | None]]:
        """SendGrid cannot be asked whether a request was accepted: pending rows become unknown."""
        return {
            r.send_id: (
                "unknown",
                "the run stopped while this batch was being handed to SendGrid; it may have "
                "been accepted (check Email Activity for this send_id)",
            )
            for r in rows
        }

    def cancel_scheduled(self, provider_batch_id: str) -> str:
        """Cancel a scheduled batch (``POST /v3/user/scheduled_sends``, status ``cancel``).

        Returns ``cancelled`` or ``already cancelled``; raises :class:`FatalError`.
        """

        api = self.api
        try:
            api.request(
                "POST",
                "user/scheduled_sends",
                body={"batch_id": provider_batch_id, "status": "cancel"},
                scope="user.scheduled_sends.create",
                idempotent=True,
            )
            return "cancelled"
        except FatalError as exc:
            if exc.status != 400:
                raise
        # a status was set before (SendGrid answers 400): look at it, and turn a pause into cancel
        path = f"user/scheduled_sends/{provider_batch_id}"
        current = api.get_json(path, scope="user.scheduled_sends.read") or []
        statuses = {str(s.get("status")) for s in current if isinstance(s, dict)}
        if "cancel" in statuses:
            return "already cancelled"
        api.request(
            "PATCH",
            path,
            body={"status": "cancel"},
            scope="user.scheduled_sends.update",
            idempotent=True,
        )
        return "cancelled"


# ------------------------------------------------------------------------------------------
# helpers


def _address(email: str, name: str | None) -> dict[str, str]:
    out = {"email": email}
    if name:
        out["name"] = display_name(name)
    return out


def _shared_ends(values: tuple[str, ...]) -> tuple[str, str]:
    """The longest prefix and suffix that every value has (not overlapping in any value)."""
    head = _common_prefix(values)
    room = min(len(v) for v in values) - len(head)
    if room <= 0:
        return head, ""
    tail = _common_prefix([v[::-1] for v in values])[:room][::-1]
    return head, tail


def _common_prefix(values) -> str:
    lo, hi = min(values), max(values)  # the prefix all share is the one these two share
    i, end = 0, min(len(lo), len(hi))
    while i < end and lo[i] == hi[i]:
        i += 1
    return lo[:i]


def _nbytes(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode())


def _text(body: bytes | str | None) -> str:
    if body is None:
        return ""
    return body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)

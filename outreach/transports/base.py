"""The transport seam.

The send engine (:mod:`outreach.send`) owns the ledger protocol; a transport owns how a batch of
recipients of one variant reaches the outside world. This base class owns what every transport
shares: splitting a variant's recipients into batches, the message headers and crash
reconciliation (a network transport adds retries by overriding :meth:`Transport.retrying`). A concrete transport supplies only
:meth:`Transport._deliver` (payload and response parsing), like django-anymail's ESP backends.
"""

from __future__ import annotations

import functools
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.header import Header
from email.utils import formataddr
from enum import Flag, auto
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

T = TypeVar("T")
_URI_SAFE = "!#$%&'()*+,/:;=?@[]~"  # RFC 3986 reserved characters, and % (already encoded)

if TYPE_CHECKING:
    from outreach.campaign import Campaign, ResolvedStep
    from outreach.contacts import Contact
    from outreach.ledger import Ledger, Row
    from outreach.render import Message, Variant
    from outreach.workspace import Workspace


@dataclass(slots=True)
class Recipient:
    """One addressee of a batch. ``values`` are the per-recipient slot values."""

    send_id: str
    contact: Contact
    segment: str
    country_status: str
    language: str
    # the values, or a maker shared by many recipients that builds them from the contact and
    # the send id when they are read (a planned million then holds no values object each)
    _values: Mapping[str, Any] | Callable[[Contact, str], Mapping[str, Any]]
    send_at: datetime | None = None  # scheduled delivery (None: now)
    to: str | None = None  # overrides contact.email (test sends)

    @property
    def values(self) -> Mapping[str, Any]:
        """The per-recipient slot values (``contact.first_name``, ``unsubscribe_url``…)."""
        v = self._values
        return v(self.contact, self.send_id) if callable(v) else v


@dataclass
class Batch:
    """Recipients of one variant handed off together (one request, one ledger transaction)."""

    id: str
    campaign: Campaign
    step: ResolvedStep
    variant: Variant
    recipients: list[Recipient]
    test: bool = False
    provider_batch_id: str | None = None
    notes: list[str] = field(default_factory=list)
    # resends rows whose earlier outcome was unknown or cancelled: never written ahead of its
    # hand-off, so that a crash or a pause can only leave them unknown again, never "not sent"
    resends_uncertain: bool = False

    @property
    def size(self) -> int:
        return len(self.recipients)


@dataclass
class Delivery:
    """What the transport reports for an accepted batch: message id(s)."""

    message_ids: dict[str, str] | str | None
    detail: str = ""


class Capability(Flag):
    """What a transport can do beyond handing batches over; the engine asks, never guesses."""

    NONE = 0
    WRITES_INDEX = auto()  # writes an index of what it delivered (write_index)
    SCHEDULES = auto()  # delivers at a per-recipient time up to schedule_ahead (send_at)
    CANCELS = auto()  # cancels scheduled deliveries (cancel_scheduled)
    CONCURRENT = auto()  # several hand-offs may be in flight at once (thread-safe deliver)


class Transport:
    """Base class. Subclasses set the class attributes and implement ``_deliver``."""

    name: ClassVar[str] = "base"
    real: ClassVar[bool] = True  # False: nothing leaves the machine (outbox)
    max_batch: ClassVar[int] = 1
    capabilities: ClassVar[Capability] = Capability.NONE
    schedule_ahead: ClassVar[timedelta] = timedelta(0)  # how far ahead delivery can be scheduled

    def __init__(self, workspace: Workspace, campaign: Campaign) -> None:
        self.workspace = workspace
        self.campaign = campaign
        self.clock: Callable[[], float] = time.time  # "now" in seconds since the epoch
        self.requests = 0
        self.bytes_sent = 0
        self.on_retry: Callable[[str], None] | None = None
        self.concurrency = 1  # hand-offs in flight at once (CONCURRENT transports only)
        self._count_lock = threading.Lock()

    def can(self, capability: Capability) -> bool:
        return capability in self.capabilities

    def count(self, *, requests: int = 0, nbytes: int = 0) -> None:
        """Add to the request and byte counters (thread-safe: deliveries may overlap)."""
        with self._count_lock:
            self.requests += requests
            self.bytes_sent += nbytes

    # -- batching ------------------------------------------------------------------------

    def split(
        self, variant: Variant, recipients: list[Recipient]
    ) -> list[tuple[list[Recipient], list[str]]]:
        """Split one variant's recipients into batches; returns (recipients, notes) pairs."""
        n = self.max_batch
        return [(recipients[i : i + n], []) for i in range(0, len(recipients), n)]

    def plan_notes(self, batches: list[Batch]) -> list[str]:
        """Lines the plan prints about a step's batches (how they map to provider requests)."""
        return []

    def prepare_batch(self, batch: Batch) -> None:
        """Called before a batch's rows are written ``pending``: set ``batch.provider_batch_id``
        if the provider needs one (SendGrid: scheduled sends). Raises :class:`FatalError`."""

    # -- delivery ------------------------------------------------------------------------

    def deliver(self, batch: Batch) -> Delivery:
        """Hand a batch over (through :meth:`retrying`).

        Raises :class:`PermanentError`/:class:`FatalError` (nothing accepted), or
        :class:`UnknownOutcome` (may have been accepted).
        """
        return self.retrying(lambda: self._deliver(batch))

    def retrying(self, call: Callable[[], T]) -> T:
        """Run ``call``; a network transport retries transient failures here (the base does not:
        nothing it does can be retried)."""
        return call()

    def _deliver(self, batch: Batch) -> Delivery:
        raise NotImplementedError

    def reconcile(self, rows: Iterable[Row]) -> dict[str, tuple[str, str | None]]:
        """Outcome of ``pending`` rows left by a crashed run: (status, message id or reason).

        The default cannot know, so every row becomes ``unknown``.
        """
        return {
            r.send_id: ("unknown", "the run stopped while this batch was being handed off")
            for r in rows
        }

    def close(self) -> None:
        """Release connections."""

    # -- optional abilities (see :class:`Capability`) ---------------------------------------

    def write_index(self, ledger: Ledger, step: str) -> Path | None:
        """WRITES_INDEX: write an index of what was delivered for ``step``; its path."""
        raise NotImplementedError(f"the {self.name} transport writes no index")

    def cancel_scheduled(self, provider_batch_id: str) -> str:
        """CANCELS: cancel a scheduled batch; ``cancelled`` or ``already cancelled``."""
        raise NotImplementedError(f"the {self.name} transport cannot cancel")

    def describe(self) -> str:
        return self.name

    # -- message parts shared by transports ------------------------------------------------

    def unsubscribe_url(self, send_id: str) -> str:
        base = self.campaign.spec.unsubscribe.url
        return f"{base}/{send_id}" if base else ""

    def list_id(self) -> str:
        """The campaign's RFC 2919 ``List-Id``: ``Title <name.sender-domain>``.

        The id is the campaign's name (lower-cased, reduced to letters, digits and hyphens)
        under the From address's domain, which the sender controls: stable from one year's
        sends to the next, distinct between campaigns and between senders. The title is the
        description, RFC 2047-encoded if it is not ASCII, so the header is always ASCII.
        """
        domain = self.campaign.sender.from_email.rpartition("@")[2]
        domain = domain.encode("idna").decode("ascii").lower()
        label = re.sub(r"[^a-z0-9-]+", "-", self.campaign.name.lower()).strip("-") or "campaign"
        title = " ".join(self.campaign.title.split())
        if title.isascii():
            return formataddr((title, f"{label}.{domain}"))
        # encoded words short enough to follow "List-Id: " on a 76-character line
        phrase = " ".join(Header(title, "utf-8").encode(maxlinelen=60).split())
        return f"{phrase} <{label}.{domain}>"

    def campaign_headers(self) -> dict[str, str]:
        """Headers every message of the campaign carries, whoever the recipient (``List-Id``)."""
        return {"List-Id": self.list_id()}

    def headers(self, recipient: Recipient, test: bool = False) -> dict[str, str]:
        """RFC 8058 one-click unsubscribe headers for one recipient (ASCII, see below)."""
        url, mailto = self._unsubscribe_targets
        token = "test" if test else recipient.send_id
        targets = []
        if url:
            targets.append(f"<{url}/{token}>")
        if mailto:
            # send ids are hex: quoting them is the identity (the fast path of a hot loop)
            q = token if token.isalnum() and token.isascii() else quote(token)
            targets.append(f"<mailto:{mailto}?subject=unsubscribe%20{q}>")
        headers = {}
        if targets:
            headers["List-Unsubscribe"] = ", ".join(targets)
        if url:
            headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        return headers

    @functools.cached_property
    def _unsubscribe_targets(self) -> tuple[str, str]:
        """The campaign's unsubscribe URL and address as URI parts: a header carries ASCII, so
        a host that is not ASCII becomes IDNA and other characters are percent-encoded."""
        unsub = self.campaign.spec.unsubscribe
        url = unsub.url or ""
        if not url.isascii():
            parts = urlsplit(url)
            host = parts.netloc.rpartition("@")[2].split(":")[0]
            netloc = parts.netloc.replace(host, host.encode("idna").decode("ascii"))
            url = urlunsplit(parts._replace(netloc=netloc))
        return quote(url, safe=_URI_SAFE), quote(unsub.mailto or "", safe=_URI_SAFE)

    def from_header(self) -> str:
        s = self.campaign.sender
        return formataddr((s.from_name, s.from_email))

    def reply_to_header(self) -> str:
        s = self.campaign.sender
        return formataddr((s.reply_to_name or "", s.reply_to))

    def message_for(self, batch: Batch, recipient: Recipient) -> Message:
        msg = batch.variant.fill(recipient.values)
        if batch.test:
            from outreach.render import Message as M

            msg = M(f"[TEST] {msg.subject}", msg.html, msg.text)
        return msg

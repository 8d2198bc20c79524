"""Delivering a plan: a pipeline of batches under the ledger protocol (see :mod:`outreach.ledger`).

One thread — the caller's — owns the ledger and decides; a pool of ``concurrency`` threads only
hands batches over. Each batch moves through three places:

1. **prepared**: the transport prepares it (e.g. a SendGrid batch id, the request body starts
   being built) and its rows are written ``pending`` in a ``queued`` batch. At most
   2 × concurrency batches wait here, so memory stays bounded while the writing overlaps the
   requests in flight.
2. **in flight**: just before its request the batch is flipped to handed-off, durably
   (:meth:`Ledger.mark_handed_off`), then a worker delivers it. At most ``concurrency`` are
   here, so a crash leaves at most that many batches whose outcome is unknown; a batch still
   in (1) is known never to have left.
3. **recorded**: ``sent``, or an error turned into a ledger outcome by :data:`ON_ERROR`.

Three failed batches in a row (in the order their answers come) pause the run; a fatal error
stops it. Either way nothing more is handed off, the requests in flight are waited for and
recorded, and prepared batches are released (their rows ``failed``: never handed off, retried
by the next run).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from outreach.exceptions import FatalError, PermanentError, TransportError, UnknownOutcome
from outreach.ledger import Ledger, Row, short_id
from outreach.transports import Batch, Capability, Delivery, Recipient, Transport

if TYPE_CHECKING:
    from outreach.send import UI, SendPlan

PAUSE_AFTER = 3  # consecutive failed batches before the run pauses
AHEAD = 2  # batches prepared ahead, per request in flight
MAX_CONCURRENCY = 32


@dataclass
class StepResult:
    step: str
    sent: int = 0
    failed: int = 0
    unknown: int = 0
    batches: int = 0
    released: int = 0  # prepared, never handed off (the run paused or stopped first)
    errors: list[str] = field(default_factory=list)


@dataclass
class SendSummary:
    campaign: str
    edition: int
    transport: str
    real: bool
    dry_run: bool
    steps: list[StepResult]
    seconds: float
    paused: str | None = None
    test_sends: int = 0
    outbox_index: list[str] = field(default_factory=list)
    requests: int = 0
    bytes_sent: int = 0
    concurrency: int = 1
    wire_seconds: float = 0.0  # wall time with at least one request in flight

    @property
    def sent(self) -> int:
        return sum(s.sent for s in self.steps)

    @property
    def failed(self) -> int:
        return sum(s.failed for s in self.steps)

    @property
    def unknown(self) -> int:
        return sum(s.unknown for s in self.steps)

    @property
    def released(self) -> int:
        return sum(s.released for s in self.steps)


@dataclass(frozen=True)
class Handling:
    """What an error from a hand-off means for the ledger and for the run."""

    status: str  # the batch's rows become this (``failed``: nothing accepted, retried later)
    streak: bool  # counts towards the pause after PAUSE_AFTER failed batches in a row
    stop: bool  # nothing more is handed off in this run


# error class → outcome; the first matching class wins (TransientError never gets here: the
# transport retries it and gives up with PermanentError)
ON_ERROR: tuple[tuple[type[TransportError], Handling], ...] = (
    (UnknownOutcome, Handling("unknown", streak=True, stop=False)),
    (FatalError, Handling("failed", streak=False, stop=True)),
    (PermanentError, Handling("failed", streak=True, stop=False)),
    (TransportError, Handling("failed", streak=True, stop=False)),
)


def handling(exc: TransportError) -> Handling:
    return next(h for cls, h in ON_ERROR if isinstance(exc, cls))


@dataclass
class _Ticket:
    batch: Batch
    result: StepResult
    queued: bool = True  # False: written pending (handed off as soon as written)
    started: float = 0.0


class _Wire:
    """Wall time during which at least one request was in flight (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active = 0
        self._since = 0.0
        self.seconds = 0.0

    def __enter__(self) -> None:
        with self._lock:
            if self._active == 0:
                self._since = time.monotonic()
            self._active += 1

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._active -= 1
            if self._active == 0:
                self.seconds += time.monotonic() - self._since


def row_of(batch: Batch, r: Recipient) -> Row:
    return Row(r.send_id, r.contact.contact_id, r.contact.email, "pending", batch.id, None, None)


def ledger_row(r: Recipient) -> dict:
    return {
        "send_id": r.send_id,
        "contact_id": r.contact.contact_id,
        "email": r.contact.email,
        "segment": r.segment,
        "relationship": r.contact.relationship,
        "country": r.contact.country,
        "country_status": r.country_status,
        "language": r.language,
        "send_at": r.send_at.isoformat() if r.send_at else None,
    }


class Executor:
    """Runs one plan (see the module docstring). Use :func:`execute`."""

    def __init__(self, plan: SendPlan, ledger: Ledger, ui: UI) -> None:
        self.plan, self.ledger, self.ui = plan, ledger, ui
        self.transport: Transport = plan.transport
        t = self.transport
        wanted = plan.options.concurrency or t.concurrency
        self.concurrency = (
            max(1, min(wanted, MAX_CONCURRENCY)) if t.can(Capability.CONCURRENT) else 1
        )
        campaign = plan.campaign
        self.results = {sp.step.id: StepResult(sp.step.id) for sp in plan.steps}
        self.summary = SendSummary(
            campaign.name,
            campaign.edition,
            t.name,
            t.real,
            False,
            list(self.results.values()),
            0,
            concurrency=self.concurrency,
        )
        self.prepared: deque[_Ticket] = deque()
        self.in_flight: dict[Future[Delivery], _Ticket] = {}
        self.consecutive = 0
        self.stopping: str | None = None  # why nothing more is handed off
        self.outcome = "complete"
        self.wire = _Wire()
        self.run_id = 0

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> SendSummary:
        t0 = time.monotonic()
        plan, ledger, t = self.plan, self.ledger, self.transport
        campaign = plan.campaign
        self.run_id = ledger.begin_run(
            campaign.name,
            campaign.edition,
            t.name,
            {k: v for k, v in vars(plan.options).items() if k != "now"},
        )
        t.on_retry = self.ui.note
        todo = iter([(sp, b) for sp in plan.steps for b in sp.batches])
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="outreach-send")
        try:
            with self.ui.progress(plan.total, f"Sending via {t.describe()}") as advance:
                self.advance = advance
                self._loop(todo, pool)
        except BaseException:
            self.outcome = "interrupted"
            self._abandon()
            raise
        finally:
            pool.shutdown(wait=self.outcome != "interrupted", cancel_futures=True)
            self._finish(t0)
        return self.summary

    def _loop(self, todo: Iterator, pool: ThreadPoolExecutor) -> None:
        n = self.concurrency
        upcoming = next(todo, None)
        while True:
            for future in [f for f in self.in_flight if f.done()]:
                self._record(self.in_flight.pop(future), future)
            going = self.stopping is None
            if going and self.prepared and len(self.in_flight) < n:
                self._hand_off(self.prepared.popleft(), pool)
                continue
            if going and upcoming is not None and len(self.prepared) < AHEAD * n:
                sp, batch = upcoming
                if not batch.resends_uncertain:
                    self._prepare(sp, batch)
                    upcoming = next(todo, None)
                    continue
                if not self.prepared and len(self.in_flight) < n:
                    # written pending and handed off at once (see Batch.resends_uncertain)
                    self._prepare(sp, batch, queued=False)
                    if self.prepared:
                        self._hand_off(self.prepared.popleft(), pool)
                    upcoming = next(todo, None)
                    continue
            if self.in_flight:
                wait(list(self.in_flight), return_when=FIRST_COMPLETED)
                continue
            break
        self._release("the run " + ("paused" if self.outcome == "paused" else "stopped"))

    def _prepare(self, sp, batch: Batch, *, queued: bool = True) -> None:
        """Phase 1: the transport prepares the batch, its rows are written ``queued`` (or
        ``pending`` when it is handed off at once)."""
        res = self.results[sp.step.id]
        try:
            self.transport.prepare_batch(batch)  # e.g. a SendGrid batch id (scheduled)
        except FatalError as exc:
            res.errors.append(str(exc))
            self._stop("stopped", f"stopped: {exc.message}")
            return
        campaign = self.plan.campaign
        self.ledger.mark_pending(
            campaign=campaign.name,
            edition=campaign.edition,
            step=sp.step.id,
            transport=self.transport.name,
            batch_id=batch.id,
            variant=batch.variant.id,
            run_id=self.run_id,
            provider_batch_id=batch.provider_batch_id,
            rows=(ledger_row(r) for r in batch.recipients),
            queued=queued,
        )
        self.prepared.append(_Ticket(batch, res, queued=queued))

    def _hand_off(self, ticket: _Ticket, pool: ThreadPoolExecutor) -> None:
        """Phase 2: flip the batch to handed-off (durably), then a worker delivers it."""
        if ticket.queued:
            self.ledger.mark_handed_off(ticket.batch.id)
        ticket.result.batches += 1
        ticket.started = time.monotonic()
        self.in_flight[pool.submit(self._deliver, ticket.batch)] = ticket

    def _deliver(self, batch: Batch) -> Delivery:
        with self.wire:
            return self.transport.deliver(batch)

    def _record(self, ticket: _Ticket, future: Future[Delivery]) -> None:
        """Phase 3: the outcome of a hand-off, into the ledger and the step's result."""
        batch, res = ticket.batch, ticket.result
        exc = future.exception()
        if exc is None:
            self.ledger.mark_sent(batch.id, future.result().message_ids)
            res.sent += batch.size
            self.consecutive = 0
        elif isinstance(exc, TransportError):
            how = handling(exc)
            self.ledger.mark_batch(batch.id, how.status, exc.message)
            if how.status == "unknown":
                res.unknown += batch.size
                res.errors.append(f"batch {short_id(batch.id)}: {exc.message}")
            else:
                res.failed += batch.size
                res.errors.append(
                    str(exc)
                    if how.stop
                    else f"batch {short_id(batch.id)} ({batch.size} recipients): {exc}"
                )
            if how.stop:
                self._stop("stopped", f"stopped: {exc.message}")
            if how.streak:
                self.consecutive += 1
                if self.consecutive >= PAUSE_AFTER:
                    self._stop(
                        "paused",
                        f"paused after {self.consecutive} failed batches in a row; nothing else "
                        "was attempted. Fix the cause and run the same command again to resume",
                    )
        else:
            # a bug or an interrupt inside the hand-off: we cannot know what went out
            self.ledger.resolve_rows(
                self.transport.reconcile(row_of(batch, r) for r in batch.recipients)
            )
            raise exc
        self.advance(batch.size, len(self.in_flight))

    def _stop(self, outcome: str, why: str) -> None:
        if self.stopping is None:
            self.stopping, self.outcome = why, outcome
            self.summary.paused = why

    # -- leaving ----------------------------------------------------------------------------

    def _release(self, why: str) -> None:
        """Prepared batches that were never handed off: their rows become ``failed`` (the next
        run sends them)."""
        while self.prepared:
            ticket = self.prepared.popleft()
            self.ledger.mark_batch(ticket.batch.id, "failed", f"not handed off: {why} first")
            ticket.result.released += ticket.batch.size

    def _abandon(self) -> None:
        """Interrupted (Ctrl-C) or a bug: record what finished, ask the transport about what
        is still in flight (SendGrid cannot tell: unknown), release what never left."""
        for future, ticket in list(self.in_flight.items()):
            del self.in_flight[future]
            if future.done() and isinstance(future.exception(), TransportError | type(None)):
                try:
                    self._record(ticket, future)
                    continue
                except Exception:
                    pass
            rows = [row_of(ticket.batch, r) for r in ticket.batch.recipients]
            self.ledger.resolve_rows(self.transport.reconcile(rows))
        self._release("the run was interrupted")

    def _finish(self, t0: float) -> None:
        ledger, t, summary = self.ledger, self.transport, self.summary
        ledger.end_run(self.run_id, self.outcome)
        summary.seconds = time.monotonic() - t0
        summary.wire_seconds = self.wire.seconds
        summary.requests = t.requests
        summary.bytes_sent = t.bytes_sent
        if t.can(Capability.WRITES_INDEX):
            for sp in self.plan.steps:
                p = t.write_index(ledger, sp.step.id)
                if p:
                    summary.outbox_index.append(str(p.relative_to(self.plan.campaign.root)))
        t.close()


def execute(plan: SendPlan, ledger: Ledger, ui: UI) -> SendSummary:
    """Deliver the plan (see the module docstring)."""
    return Executor(plan, ledger, ui).run()


__all__ = ["ON_ERROR", "PAUSE_AFTER", "Executor", "SendSummary", "StepResult", "execute"]

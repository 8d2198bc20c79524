"""Tracking events: ingestion from SendGrid's Event Webhook, from exported files, and from
outreach's own one-click unsubscribe endpoint.

:func:`ingest` is the one way events enter the ledger. It is idempotent: an event is keyed by
its ``sg_event_id`` (SendGrid retries a batch for 24 hours), or, when it has none, by a hash of
its content. Each event is mapped to a ledger row through the ``custom_args`` that every
message carries as top-level event keys (``send_id``, ``contact_id``, ``campaign``, ``step``),
falling back to ``sg_message_id``, whose part before the first ``.`` is the ``X-Message-Id``
recorded on the row (with the address to pick the row within a batch). Events that match no
row are stored with ``matched = 0`` and reported: nothing is dropped. New events also update
the suppression list (:func:`outreach.suppressions.from_events`), in the same transaction.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from outreach import suppressions
from outreach.exceptions import EventError, Location
from outreach.store import Store as Ledger
from outreach.store import now_iso, short_id
from outreach.workspace import Workspace

CHUNK = 1000  # events per transaction when importing files


@dataclass
class IngestResult:
    """What one :func:`ingest` call did. ``matched``/``unmatched`` count newly stored events."""

    received: int = 0
    stored: int = 0
    duplicates: int = 0
    matched: int = 0
    unmatched: int = 0
    suppressions_changed: int = 0
    by_event: Counter = field(default_factory=Counter)
    unmatched_examples: list[str] = field(default_factory=list)

    def add(self, other: IngestResult) -> None:
        for name in (
            "received",
            "stored",
            "duplicates",
            "matched",
            "unmatched",
            "suppressions_changed",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.by_event.update(other.by_event)
        room = 10 - len(self.unmatched_examples)
        if room > 0:
            self.unmatched_examples.extend(other.unmatched_examples[:room])

    def as_dict(self) -> dict:
        return {
            "received": self.received,
            "stored": self.stored,
            "duplicates": self.duplicates,
            "matched": self.matched,
            "unmatched": self.unmatched,
            "suppressions_changed": self.suppressions_changed,
            "by_event": dict(sorted(self.by_event.items())),
            "unmatched_examples": self.unmatched_examples,
        }


# ------------------------------------------------------------------------------------------
# Normalizing


def _text(value) -> str | None:
    if value.__class__ is str:  # the common case, first
        return value.strip() or None
    if value is None or isinstance(value, dict | list):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    s = str(value).strip()
    return s or None


def _int(value) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if isinstance(value, str):
        try:
            return int(float(value.strip()))
        except ValueError:
            return None
    return None


def _truthy(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def event_id(event: dict) -> str:
    """``sg_event_id``, or a stable hash of the event's content when it has none."""
    sid = _text(event.get("sg_event_id"))
    if sid:
        return sid
    canon = json.dumps(
        event, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    )
    return "sha256:" + hashlib.sha256(canon.encode()).hexdigest()[:40]


@dataclass(slots=True)
class _Norm:
    eid: str
    event: str
    email: str | None
    timestamp: int | None
    send_id: str | None
    campaign: str | None
    step: str | None
    contact_id: str | None
    message_id: str | None
    url: str | None
    type: str | None
    reason: str | None
    machine_open: int
    raw: str
    original: dict


# json.dumps(event, separators=(",", ":"), ensure_ascii=False, default=str) without building
# an encoder for every event
_raw_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str).encode


def _normalize(event: object, index: int, raw: str | None = None) -> _Norm:
    if not isinstance(event, dict):
        raise EventError(
            f"event #{index + 1} is a {type(event).__name__}, not a JSON object",
            hint="SendGrid posts a JSON array of objects",
        )
    get = event.get
    kind = _text(get("event"))
    if not kind:
        raise EventError(f"event #{index + 1} has no 'event' field")
    return _Norm(  # positional, in the fields' order (a webhook batch makes 1,000 of these)
        event_id(event),
        kind.lower(),
        _text(get("email")),
        _int(get("timestamp")),
        _text(get("send_id")),
        _text(get("campaign")),
        _text(get("step")),
        _text(get("contact_id")),
        _text(get("sg_message_id")),
        _text(get("url")),
        _text(get("type")),
        _text(get("reason")),
        int(_truthy(get("sg_machine_open"))),
        _raw_json(event) if raw is None else raw,
        event,
    )


def normalize(events: Iterable[object], raw: Sequence[str] | None = None) -> list[_Norm]:
    """Check the shape of every event (raises :class:`EventError` naming the first bad one).
    ``raw``: each event's JSON text as received (default: the event encoded again)."""
    if raw is None:
        return [_normalize(e, i) for i, e in enumerate(events)]
    events = list(events)
    if len(raw) != len(events):
        raise ValueError(f"{len(raw)} raw texts for {len(events)} events")
    return [_normalize(e, i, r) for i, (e, r) in enumerate(zip(events, raw, strict=True))]


_WS = re.compile(r"[ \t\n\r]*")  # JSON's whitespace
_decode_at = json.JSONDecoder().raw_decode


def split_array(text: str) -> tuple[list, list[str]] | None:
    """The elements of a JSON array and the text of each as received, parsed by the same
    decoder as ``json.loads``; None when ``text`` is anything but one well-formed array (parse
    it with ``json.loads`` then, for the error or the value). Saves the webhook encoding every
    event again for its ``raw`` column."""
    ws = _WS.match
    i = ws(text).end()
    if text[i : i + 1] != "[":
        return None
    i = ws(text, i + 1).end()
    items: list = []
    texts: list[str] = []
    try:
        if text[i : i + 1] != "]":
            while True:
                item, end = _decode_at(text, i)
                items.append(item)
                texts.append(text[i:end])
                i = ws(text, end).end()
                if text[i : i + 1] != ",":
                    break
                i = ws(text, i + 1).end()
            if text[i : i + 1] != "]":
                return None
    except ValueError:  # json.JSONDecodeError
        return None
    if ws(text, i + 1).end() != len(text):
        return None  # something after the array
    return items, texts


# ------------------------------------------------------------------------------------------
# Matching


def _chunks(items: list, n: int) -> Iterator[list]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


Match = tuple[str, str, int | None, str, str]  # send_id, campaign, edition, step, contact_id


def _match(ledger: Ledger, evs: list[_Norm]) -> dict[int, Match]:
    """index → (send_id, campaign, edition, step, contact_id) of each event's ledger row."""
    by_send = ledger.sends_by_id(sorted({e.send_id for e in evs if e.send_id}))
    out: dict[int, Match] = {}
    fallback: list[int] = []
    for i, e in enumerate(evs):
        hit = by_send.get(e.send_id) if e.send_id else None
        if hit:
            out[i] = hit  # type: ignore[assignment]
        elif e.message_id:
            fallback.append(i)
    if fallback:
        prefixes = sorted({evs[i].message_id.split(".", 1)[0] for i in fallback})  # type: ignore[union-attr]
        by_mid: dict[tuple[str, str], Match] = {}
        single: dict[str, list[Match]] = {}
        for r in ledger.sends_by_message_id(prefixes):
            row = (r[0], r[1], r[2], r[3], r[4])
            by_mid[(r[5], r[6].lower())] = row
            single.setdefault(r[5], []).append(row)
        for i in fallback:
            e = evs[i]
            prefix = e.message_id.split(".", 1)[0]  # type: ignore[union-attr]
            hit = by_mid.get((prefix, (e.email or "").lower()))
            if hit is None and len(single.get(prefix, ())) == 1:
                hit = single[prefix][0]
            if hit:
                out[i] = hit
    return out


# ------------------------------------------------------------------------------------------
# Ingesting


def ingest(
    ledger: Ledger,
    events: Iterable[object],
    source: str,
    who: str | None = None,
    *,
    raw: Sequence[str] | None = None,
) -> IngestResult:
    """Store events durably (one transaction), deduplicated, matched, with suppressions.

    ``source`` says where they came from (``webhook``, ``import:FILE``, ``unsubscribe-link``);
    ``who`` is recorded in the suppression log (default: derived from ``source``); ``raw``
    holds each event's JSON text as received (:func:`split_array`), stored as it is (default:
    the event encoded again). Raises :class:`EventError` before storing anything if an event
    is not an object with an ``event`` field. When this returns, the events are committed.
    """
    evs = normalize(events, raw)
    result = IngestResult(received=len(evs))
    if not evs:
        return result
    received_at = now_iso()
    return ledger.atomic(lambda: _store(ledger, evs, source, who, received_at))


def _store(
    ledger: Ledger, evs: list[_Norm], source: str, who: str | None, received_at: str
) -> IngestResult:
    """The work of :func:`ingest`, inside its transaction (run again after a conflict with
    another process's ingestion, so it starts from scratch)."""
    result = IngestResult(received=len(evs))
    matches = _match(ledger, evs)
    seen: set[str] = set()
    candidates: list[int] = []
    params = []
    for i, e in enumerate(evs):
        if e.eid in seen:
            continue  # a repeat inside this batch is a duplicate too
        seen.add(e.eid)
        m = matches.get(i)
        send_id, campaign, edition, step, contact_id = (
            m if m else (e.send_id, e.campaign, None, e.step, e.contact_id)
        )
        params.append(
            (
                e.eid,
                e.event,
                e.email,
                e.timestamp,
                send_id,
                campaign,
                edition,
                step,
                contact_id,
                e.message_id,
                e.url,
                e.type,
                e.reason,
                e.machine_open,
                1 if m else 0,
                source,
                received_at,
                e.raw,
            )
        )
        candidates.append(i)
    stored = ledger.insert_events(params)  # the unique index on sg_event_id decides
    new = [i for i in candidates if evs[i].eid in stored]
    result.stored = len(new)
    result.duplicates = len(evs) - len(new)
    for i in new:
        e = evs[i]
        result.by_event[e.event] += 1
        if i in matches:
            result.matched += 1
        else:
            result.unmatched += 1
            if len(result.unmatched_examples) < 10:
                result.unmatched_examples.append(_why_unmatched(e))
    # each address's suppressions follow its events' order in time (a resubscribe after an
    # unsubscribe); addresses go in one order, so concurrent ingestions lock their rows in the
    # same order and do not deadlock
    new.sort(key=lambda i: ((evs[i].email or "").strip().lower(), evs[i].timestamp or 0, i))
    result.suppressions_changed += suppressions.from_events(
        ledger, (evs[i].original for i in new), source=source, who=who or _who(source)
    )
    return result


def _who(source: str) -> str:
    return {"webhook": "SendGrid Event Webhook"}.get(source, source)


def _why_unmatched(e: _Norm) -> str:
    what = f"{e.event} for {e.email or 'no address'}"
    if e.send_id:
        return f"{what}: send_id …{short_id(e.send_id)} is not in this ledger"
    if e.message_id:
        return f"{what}: message id {e.message_id.split('.', 1)[0]} is not in this ledger"
    return f"{what}: no send_id or sg_message_id"


# ------------------------------------------------------------------------------------------
# The one-click unsubscribe endpoint


TEST_TOKENS = frozenset({"test", "preview"})


@dataclass(frozen=True, slots=True)
class SendInfo:
    send_id: str
    email: str
    campaign: str
    step: str
    language: str | None


def find_send(ledger: Ledger, send_id: str) -> SendInfo | None:
    """The ledger row behind an unsubscribe link, or None."""
    r = ledger.find_send(send_id)
    return SendInfo(*r) if r else None


def unsubscribe_link(
    ledger: Ledger,
    send_id: str,
    *,
    via: str,
    client: str | None = None,
    now: float | None = None,
) -> tuple[SendInfo | None, bool]:
    """Record a click on ``unsubscribe.url/<send_id>``: an ``unsubscribe`` event and suppression.

    Returns (the row or None when the id is unknown, whether this call changed anything).
    Repeated requests for the same id are idempotent (one event per send id). ``now`` (Unix
    seconds, default the clock) is the event's timestamp.
    """
    info = find_send(ledger, send_id)
    if info is None:
        return None, False
    import time

    why = f"unsubscribe link ({via})" + (f" from {client}" if client else "")
    event = {
        "event": "unsubscribe",
        "email": info.email,
        "timestamp": int(time.time() if now is None else now),
        "sg_event_id": f"outreach-unsubscribe:{send_id}",
        "send_id": send_id,
        "campaign": info.campaign,
        "step": info.step,
        "reason": why,
    }
    res = ingest(ledger, [event], "unsubscribe-link", who=f"the recipient ({info.email})")
    return info, bool(res.stored or res.suppressions_changed)


# ------------------------------------------------------------------------------------------
# Files: JSON array, NDJSON or CSV exports


def read_file(path: Path) -> list[dict]:
    """Events from a JSON array, NDJSON or CSV file (raises :class:`EventError` with the line)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise EventError(f"cannot read the file: {exc.strerror}", where=Location(path)) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise EventError(
            "the file is not UTF-8 text", where=Location(path, line), hint="export it as UTF-8"
        ) from None
    head = text.lstrip()[:1]
    if path.suffix.lower() == ".csv" or head not in ("[", "{", ""):
        return _read_csv(text, path)
    if head == "[":
        try:
            events = json.loads(text)
        except json.JSONDecodeError as exc:
            raise EventError(
                f"not valid JSON: {exc.msg}", where=Location(path, exc.lineno, column=exc.colno)
            ) from None
        if not isinstance(events, list):
            raise EventError("expected a JSON array of events", where=Location(path, 1))
        _check(events, path)
        return events
    events = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            ev = json.loads(line)
        except json.JSONDecodeError as exc:
            raise EventError(
                f"not a JSON event: {exc.msg}",
                where=Location(path, n, column=exc.colno),
                hint="NDJSON files hold one JSON object per line",
            ) from None
        if isinstance(ev, list):
            events.extend(ev)
        else:
            events.append(ev)
    _check(events, path)
    return events


def _check(events: list, path: Path) -> None:
    try:
        normalize(events)
    except EventError as exc:
        raise EventError(exc.message, where=Location(path), hint=exc.hint) from None


_CSV_INTS = ("timestamp", "asm_group_id", "url_offset", "attempt")


def _read_csv(text: str, path: Path) -> list[dict]:
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
        fields = reader.fieldnames or []
        if "event" not in fields:
            raise EventError(
                "the CSV has no 'event' column",
                where=Location(path, 1),
                hint="export the events with their SendGrid field names (event, email, timestamp, sg_event_id, …)",
            )
        out = []
        for row in reader:
            ev: dict = {}
            for k, v in row.items():
                if k is None or v is None or v == "":
                    continue
                if k in _CSV_INTS:
                    iv = _int(v)
                    ev[k] = iv if iv is not None else v
                elif k == "sg_machine_open":
                    ev[k] = _truthy(v)
                else:
                    ev[k] = v
            out.append(ev)
    except csv.Error as exc:
        raise EventError(f"malformed CSV: {exc}", where=Location(path, reader.line_num)) from None
    for i, ev in enumerate(out):
        if not ev.get("event"):
            raise EventError("row has no event", where=Location(path, i + 2))
    return out


@dataclass
class ImportResult:
    total: IngestResult
    files: dict[str, IngestResult]


def import_files(ws: Workspace, paths: Iterable[Path | str]) -> ImportResult:
    """``outreach events import``: every file is read and checked, then ingested in chunks."""
    loaded = [(Path(p), read_file(Path(p))) for p in paths]
    total = IngestResult()
    files: dict[str, IngestResult] = {}
    with Ledger.open(ws.db_url(), ws.root, purpose="outreach events import") as ledger:
        for path, events in loaded:
            res = IngestResult()
            for part in _chunks(events, CHUNK):
                res.add(ingest(ledger, part, f"import:{path.name}"))
            files[str(path)] = res
            total.add(res)
    return ImportResult(total, files)

"""Local suppressions: addresses that no later send may reach, each change logged.

The ``suppressions`` table holds one active row per lower-case address (its ``reason`` is a
short code the send plan shows: ``suppressed: bounce``); ``suppression_log`` keeps every
change with who, when, why and the source. Suppressions come from

* tracking events (:func:`from_events`, called by :func:`outreach.events.ingest`):
  ``bounce`` of type ``bounce`` (hard; ``blocked`` is soft and is not suppressed),
  ``dropped`` because the address is invalid, bounced, reported spam or unsubscribed,
  ``spamreport``, ``unsubscribe`` and ``group_unsubscribe``; ``group_resubscribe`` lifts a
  ``group_unsubscribe`` (and nothing stronger);
* the one-click unsubscribe endpoint of ``outreach serve`` (reason ``unsubscribe``);
* ``outreach suppressions sync`` (SendGrid's own lists, see :func:`sync`);
* ``outreach suppressions add|remove`` (manual fixes, see :func:`add` and :func:`remove`).

``suppressions.created_at`` is when the suppressing fact happened (the event's time, SendGrid's
``created``, or now); ``suppression_log.at`` is when outreach recorded the change.
"""

from __future__ import annotations

import getpass
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from outreach.exceptions import ConfigError, OutreachError, TransportError
from outreach.store import Store as Ledger
from outreach.store import now_iso
from outreach.store.codes import SuppressionAction, SuppressionReason
from outreach.workspace import Workspace

if TYPE_CHECKING:
    from outreach.sendgrid_api import SendGridAPI

# reasons a later event may replace or lift; every other reason is permanent until removed by hand
LIFTABLE = frozenset({SuppressionReason.GROUP_UNSUBSCRIBE})

# SendGrid `dropped` reasons that say the address itself must not be mailed again
DROPPED_ADDRESS_REASONS = {
    "invalid": "invalid address",
    "bounced address": "bounced address",
    "spam reporting address": "spam-reporting address",
    "unsubscribed address": "unsubscribed address",
}

SYNC_PAGE = 500  # the maximum page size of SendGrid's suppression list endpoints


class SyncError(OutreachError):
    """SendGrid's suppression lists could not be read."""


@dataclass(frozen=True, slots=True)
class Suppression:
    email: str
    reason: str
    source: str
    detail: str | None
    created_at: str
    created_by: str | None


def default_user() -> str:
    """The OS user, for ``--by``."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _ts_iso(ts: int | float | None) -> str:
    if ts is None:
        return now_iso()
    return datetime.fromtimestamp(float(ts), UTC).isoformat(timespec="milliseconds")


# ------------------------------------------------------------------------------------------
# Changes (each in the caller's transaction, if there is one)


def suppress(
    ledger: Ledger,
    email: str,
    reason: str,
    *,
    source: str,
    who: str | None,
    why: str | None,
    at: str | None = None,
) -> bool:
    """Suppress ``email`` (lower-cased); True if anything changed.

    An address already suppressed keeps its row, except that a permanent reason replaces a
    liftable one (a hard bounce after a group unsubscribe must not be lifted by a resubscribe).
    """
    key = email.strip().lower()
    if not key:
        return False
    reason = SuppressionReason(reason)
    with ledger.transaction():
        row = ledger.suppression(key)
        if row is not None and (row[0] == reason or row[0] not in LIFTABLE or reason in LIFTABLE):
            return False
        ledger.suppress(
            key,
            reason,
            source=source,
            who=who,
            why=why,
            at=at or now_iso(),
            replace=row is not None,
        )
    return True


def lift(
    ledger: Ledger,
    email: str,
    *,
    source: str,
    who: str | None,
    why: str | None,
    only: Iterable[str] | None = None,
    not_after: str | None = None,
) -> bool:
    """Remove the suppression of ``email``; True if there was one to remove.

    ``only`` restricts which reasons may be lifted; ``not_after`` (ISO time) leaves alone a
    suppression that happened after the lifting fact (events can arrive out of order).
    """
    key = email.strip().lower()
    with ledger.transaction():
        row = ledger.suppression(key)
        if row is None:
            return False
        if only is not None and row[0] not in set(only):
            return False
        if not_after is not None and row[1] > not_after:
            return False
        ledger.lift(key, row[0], source=source, who=who, why=why)
    return True


def rule_for(event: dict) -> tuple[str, str, str] | None:
    """What an event does to the suppression list: (action, reason, why) or None."""
    kind = event.get("event")
    reason_text = str(event.get("reason") or "").strip()
    if kind == "bounce":
        btype = str(event.get("type") or "bounce").lower()
        if btype == "blocked":
            return None  # soft: the receiving server refused this time; try again next send
        status = event.get("status")
        why = (
            "hard bounce"
            + (f" ({status})" if status else "")
            + (f": {reason_text}" if reason_text else "")
        )
        return "suppress", "bounce", why
    if kind == "dropped":
        label = DROPPED_ADDRESS_REASONS.get(reason_text.lower())
        if label is None:
            return None  # e.g. spam content or a bad header: not about the address
        return "suppress", "dropped", f"dropped by SendGrid: {label}"
    if kind == "spamreport":
        return "suppress", "spamreport", "marked the message as spam"
    if kind == "unsubscribe":
        return "suppress", "unsubscribe", reason_text or "unsubscribed"
    if kind == "group_unsubscribe":
        group = event.get("asm_group_id")
        return (
            "suppress",
            "group_unsubscribe",
            "unsubscribed from group" + (f" {group}" if group else ""),
        )
    if kind == "group_resubscribe":
        group = event.get("asm_group_id")
        return "lift", "group_unsubscribe", "resubscribed to group" + (f" {group}" if group else "")
    return None


def from_event(ledger: Ledger, event: dict, *, source: str, who: str) -> int:
    """Apply one (new) event to the suppression list; returns 1 if it changed something."""
    rule = rule_for(event)
    email = event.get("email")
    if rule is None or not isinstance(email, str) or not email.strip():
        return 0
    action, reason, why = rule
    ts = event.get("timestamp")
    at = _ts_iso(ts if isinstance(ts, int | float) else None)
    if action == "suppress":
        return int(suppress(ledger, email, reason, source=source, who=who, why=why, at=at))
    return int(lift(ledger, email, source=source, who=who, why=why, only=LIFTABLE, not_after=at))


def from_events(ledger: Ledger, events: Iterable[dict], *, source: str, who: str) -> int:
    """:func:`from_event` for each event in turn (new events, in the order their changes must
    apply), with one read of the addresses' suppressions and the changes written together;
    returns how many events changed something. Same outcome, rows and log as one by one."""
    todo = []
    for event in events:
        rule = rule_for(event)
        email = event.get("email")
        if rule is None or not isinstance(email, str) or not email.strip():
            continue
        action, reason, why = rule
        ts = event.get("timestamp")
        at = _ts_iso(ts if isinstance(ts, int | float) else None)
        todo.append((email.strip().lower(), action, reason, why, at))
    if not todo:
        return 0
    changed = 0
    with ledger.transaction():
        state: dict[str, tuple[str, str]] = ledger.suppressions_of(sorted({t[0] for t in todo}))
        existed = set(state)
        rows: dict[str, tuple | None] = {}
        log: list[tuple] = []
        for key, action, reason, why, at in todo:
            row = state.get(key)
            if action == "suppress":  # as suppress()
                reason = SuppressionReason(reason)
                if row is not None and (
                    row[0] == reason or row[0] not in LIFTABLE or reason in LIFTABLE
                ):
                    continue
                state[key] = (reason, at)
                rows[key] = (reason, source, why, at, who)
                act = SuppressionAction.REPLACE if row is not None else SuppressionAction.ADD
                log.append((key, act, reason, source, who, why))
            else:  # as lift(only=LIFTABLE, not_after=at)
                if row is None or row[0] not in LIFTABLE or row[1] > at:
                    continue
                del state[key]
                rows[key] = None
                log.append((key, SuppressionAction.REMOVE, row[0], source, who, why))
            changed += 1
        if log:
            ledger.write_suppressions(rows, existed, log)
    return changed


# ------------------------------------------------------------------------------------------
# Manual fixes and listing


@contextmanager
def _opened(target: Ledger | Workspace) -> Iterator[Ledger]:
    if isinstance(target, Ledger):
        yield target
    else:
        with Ledger.open(target.db_url(), target.root) as ledger:
            yield ledger


def add(target: Ledger | Workspace, email: str, reason: str, by: str | None = None) -> bool:
    """``outreach suppressions add``: suppress an address by hand (reason ``manual``)."""
    from outreach.contacts import validate_address

    norm, problem = validate_address(email)
    if norm is None:
        raise ConfigError(f"{email!r} is not a valid address: {problem}")
    if not reason.strip():
        raise ConfigError("say why with --reason", hint='e.g. --reason "asked by phone, 3 Dec"')
    with _opened(target) as ledger:
        return suppress(
            ledger, norm, "manual", source="manual", who=by or default_user(), why=reason
        )


def remove(target: Ledger | Workspace, email: str, reason: str, by: str | None = None) -> bool:
    """``outreach suppressions remove``: lift a suppression by hand (logged with the reason)."""
    if not reason.strip():
        raise ConfigError(
            "say why with --reason", hint='e.g. --reason "bounce was a full mailbox, fixed"'
        )
    with _opened(target) as ledger:
        return lift(ledger, email, source="manual", who=by or default_user(), why=reason)


@dataclass
class Listing:
    suppressions: list[Suppression]
    log: list[dict]  # the change history when one address was asked for


def listing(target: Ledger | Workspace, email: str | None = None) -> Listing:
    """``outreach suppressions list``: active suppressions, newest first (with the history of
    ``email`` when one is given)."""
    with _opened(target) as ledger:
        rows = [Suppression(*r) for r in ledger.suppression_rows(_key(email))]
        log = history(ledger, email) if email else []
    return Listing(rows, log)


def history(ledger: Ledger, email: str | None = None) -> list[dict]:
    """The suppression log (optionally of one address), oldest first."""
    return ledger.suppression_history(_key(email))


def _key(email: str | None) -> str | None:
    return email.strip().lower() if email else None


# ------------------------------------------------------------------------------------------
# Sync from SendGrid


@dataclass
class SyncResult:
    fetched: Counter = field(default_factory=Counter)  # list → entries read
    added: Counter = field(default_factory=Counter)  # reason → new suppressions
    requests: int = 0
    blocks_not_suppressed: int = 0

    @property
    def changed(self) -> int:
        return sum(self.added.values())


# (list name, API path, the key's permission for it, reason, paged)
SYNC_LISTS = (
    ("bounces", "suppression/bounces", "suppression.bounces.read", "bounce", True),
    # blocks are soft: fetched and counted, never suppressed
    ("blocks", "suppression/blocks", "suppression.blocks.read", None, True),
    (
        "spam_reports",
        "suppression/spam_reports",
        "suppression.spam_reports.read",
        "spamreport",
        True,
    ),
    (
        "invalid_emails",
        "suppression/invalid_emails",
        "suppression.invalid_emails.read",
        "dropped",
        True,
    ),
    (
        "global_unsubscribes",
        "suppression/unsubscribes",
        "suppression.unsubscribes.read",
        "unsubscribe",
        True,
    ),
    (
        "group_suppressions",
        "asm/suppressions",
        "asm.groups.suppressions.read",
        "group_unsubscribe",
        False,
    ),
)
# the key permissions `suppressions sync` needs (SendGrid's "suppression.read" grants all reads)
SYNC_SCOPES = tuple(scope for _n, _p, scope, _r, _pg in SYNC_LISTS)


def sync(
    ws: Workspace,
    ledger: Ledger | None = None,
    *,
    by: str | None = None,
    timeout: float | None = None,
    sleep: Callable[[float], None] | None = None,
    clock: Callable[[], float] | None = None,
) -> SyncResult:
    """``outreach suppressions sync``: add SendGrid's suppression lists to the local one.

    Pages through bounces, blocks, spam reports, invalid emails and global unsubscribes
    (``limit``/``offset``, 500 per page) and reads the group suppressions, through
    :class:`~outreach.sendgrid_api.SendGridAPI` (429 waits for the rate-limit reset, 5xx and
    network errors are retried). Only adds: an address SendGrid has forgotten stays suppressed
    here until someone removes it by hand. Blocks are soft failures: counted, not suppressed.
    A list that cannot be read changes nothing for that list.
    """
    from outreach.sendgrid_api import SendGridAPI

    kw = {k: v for k, v in (("sleep", sleep), ("clock", clock)) if v is not None}
    api = SendGridAPI.from_workspace(
        ws, need="the key needs read access to Suppressions", timeout=timeout, **kw
    )
    with _opened(ledger or ws) as opened:
        return _sync(api, opened, by or default_user())


def _read(api: SendGridAPI, name: str, path: str, scope: str, query: dict | None) -> list:
    try:
        data = api.get_json(path, query, scope=scope)
    except TransportError as exc:
        raise SyncError(
            f"reading SendGrid's {name}: {exc.message}",
            hint=exc.hint or "run the sync again later; nothing was changed for this list",
            details=exc.details,
        ) from None
    if not isinstance(data, list):
        raise SyncError(f"SendGrid sent an unexpected shape for {name} (expected a list)")
    return data


def _sync(api: SendGridAPI, ledger: Ledger, who: str) -> SyncResult:
    result = SyncResult()
    for name, path, scope, reason, paged in SYNC_LISTS:
        entries: list = []
        offset = 0
        requests = api.requests
        while True:
            query = {"limit": SYNC_PAGE, "offset": offset} if paged else None
            page = _read(api, name, path, scope, query)
            entries.extend(page)
            if not paged or len(page) < SYNC_PAGE:
                break
            offset += SYNC_PAGE
        result.requests += api.requests - requests
        result.fetched[name] = len(entries)
        if reason is None:
            result.blocks_not_suppressed = len(entries)
            continue
        with ledger.transaction():
            for entry in entries:
                email, why, created = _entry(name, entry)
                if not email:
                    continue
                if suppress(
                    ledger,
                    email,
                    reason,
                    source="sendgrid-sync",
                    who=who,
                    why=why,
                    at=_ts_iso(created),
                ):
                    result.added[reason] += 1
    return result


def _entry(name: str, entry) -> tuple[str | None, str, int | None]:
    if isinstance(entry, str):
        return entry, f"SendGrid {name}", None
    if not isinstance(entry, dict):
        return None, "", None
    email = entry.get("email")
    created = entry.get("created", entry.get("created_at"))
    created = created if isinstance(created, int | float) else None
    bits = [f"SendGrid {name}"]
    if entry.get("group_id") is not None:
        bits.append(f"group {entry.get('group_id')} {entry.get('group_name') or ''}".strip())
    if entry.get("status"):
        bits.append(str(entry["status"]))
    if entry.get("reason"):
        bits.append(str(entry["reason"])[:300])
    return (email if isinstance(email, str) else None), ": ".join(bits), created

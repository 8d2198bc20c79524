"""What the staff dashboard (:mod:`outreach.web.dashboard`) and the JSON API
(:mod:`outreach.web.api`) share: the workspace's campaigns with their step counts, the live
report (cached per worker until the store changes), one address's history, and admin changes
to suppressions (recorded in the audit log in the same transaction).

The report cache
----------------
A report over 1M events takes seconds to compute; a dashboard view must not. Each worker keeps
the reports it computed, keyed by what they depend on: the campaign, the ``?edition=``,
``?step=`` and ``?transport=`` asked for, the current edition (for "the latest edition"), the
campaign file's modification time (its link names), and the store's
:meth:`~outreach.store.base.Store.data_version` (the last event id, the number of sends and the
last change to one). Any event stored, by any worker or ``outreach events import``, changes the
version: the report is computed again, in the background on a connection of its own (logins
and other pages do not wait behind it), one computation per worker at a time. The dashboard's
page shows the older figures meanwhile, marked as being updated; the API waits. A warm view
costs the version query, the campaign file and the page.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from starlette.concurrency import run_in_threadpool

from outreach import accounts, suppressions
from outreach import report as reports
from outreach.campaign import Campaign, load_campaign
from outreach.exceptions import ConfigError, OutreachError
from outreach.ledger import Ledger
from outreach.report import LinkNamer, Report
from outreach.store.codes import AuditAction, AuditVia, SendStatus
from outreach.web.services import Services

log = logging.getLogger("outreach.server")

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")  # a campaign file's stem, no path
CACHE_SIZE = 32  # reports kept per worker (each is a few kilobytes of aggregates)
COUNT_KEYS = ("sent", "scheduled", "pending", "failed", "unknown", "cancelled")


class NotFound(OutreachError):
    """No such campaign (a 404)."""


def campaign_names(sv: Services) -> list[str]:
    """The workspace's campaign files (their stems), sorted."""
    return sorted(p.stem for p in (sv.ws.root / "campaigns").glob("*.y*ml"))


def check_name(sv: Services, name: str) -> None:
    if not NAME.match(name) or name not in campaign_names(sv):
        raise NotFound(f"no campaign named {name!r}")


def int_param(raw: str | None, name: str, lo: int, hi: int) -> int | None:
    """A query parameter that must be a number from ``lo`` to ``hi`` (None when absent)."""
    if raw in (None, ""):
        return None
    assert raw is not None
    if not raw.isdigit() or not lo <= int(raw) <= hi:
        raise ConfigError(f"?{name}= must be a number from {lo} to {hi}")
    return int(raw)


def edition_param(raw: str | None) -> int | None:
    return int_param(raw, "edition", 1900, 9999)


# ------------------------------------------------------------------------------------------
# Campaigns and their steps


def step_rows(ledger: Ledger, c: Campaign) -> tuple[str | None, list[tuple], list[int]]:
    """What the step counts of ``c``'s edition are made of: (the transport its report uses,
    :meth:`~outreach.store.base.Store.step_send_times` through it, the editions with sends)."""
    transport = reports.choose_transport(ledger, c.name, c.edition, None)
    rows = ledger.step_send_times(c.name, c.edition, transport)
    return transport, rows, sorted(ledger.editions(c.name))


def count_steps(c: Campaign, rows: list[tuple], now: datetime) -> dict[str, dict[str, int]]:
    """{step: {sent, scheduled, pending, failed, unknown, cancelled}} from :func:`step_rows`.
    ``scheduled``: accepted by the provider, to be delivered at a time still ahead (local-time
    steps); ``sent`` counts the others."""
    out = {s.id: dict.fromkeys(COUNT_KEYS, 0) for s in c.steps}
    for step, status, send_at, n in rows:
        counts = out.setdefault(step, dict.fromkeys(COUNT_KEYS, 0))
        key = str(status)
        if key == SendStatus.SENT and send_at and _after(send_at, now):
            key = "scheduled"
        counts[key] = counts.get(key, 0) + n
    return out


def step_counts(
    ledger: Ledger, c: Campaign, now: datetime
) -> tuple[str | None, dict[str, dict[str, int]]]:
    """(transport, :func:`count_steps`) of ``c``'s edition, read now."""
    transport, rows, _editions = step_rows(ledger, c)
    return transport, count_steps(c, rows, now)


def _after(iso: str, now: datetime) -> bool:
    try:
        at = datetime.fromisoformat(iso)
    except ValueError:
        return False
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at > now


def summary(
    c: Campaign,
    transport: str | None,
    rows: list[tuple],
    editions: list[int],
    now: datetime,
) -> dict:
    """A campaign for ``GET /api/campaigns`` and the campaigns page: its steps with their due
    times and counts (the current edition), and the editions with sends."""
    counts = count_steps(c, rows, now)
    return {
        "name": c.name,
        "title": c.title,
        "recurs": c.spec.recurs,
        "current_edition": c.current_edition(now),
        "editions": editions,
        "transport": transport,
        "steps": [
            {
                "step": s.id,
                "send_at": s.send_at.isoformat(),
                "local_time": s.local_time,
                "counts": counts.get(s.id, dict.fromkeys(COUNT_KEYS, 0)),
            }
            for s in c.steps
        ],
    }


@dataclass
class Campaigns:
    campaigns: list[dict]
    unreadable: list[dict]  # {"name", "error"} of campaign files that do not load


async def campaigns(sv: Services) -> Campaigns:
    """Every campaign of the workspace (current edition), and the files that do not load."""
    now = sv.now()
    found, problems = [], []
    # the store's figures of each campaign, kept until the store changes (like reports)
    kept: dict = sv.caches.setdefault("step_rows", {})
    version = None
    for name in campaign_names(sv):
        try:
            c = await run_in_threadpool(load_campaign, sv.ws.root, name, now=now)
        except OutreachError as exc:
            problems.append({"name": name, "error": exc.message})
            continue
        if version is None:
            version = await sv.db(Ledger.data_version)
        hit = kept.get((name, c.edition))
        if hit is None or hit[0] != version:
            hit = kept[(name, c.edition)] = (version, *(await sv.db(step_rows, c)))
        one = summary(c, *hit[1:], now)
        one["campaign"] = c
        found.append(one)
    return Campaigns(found, problems)


# ------------------------------------------------------------------------------------------
# The live report


@dataclass
class LiveReport:
    """A report with what the page says about its data."""

    report: Report
    computed_at: datetime  # when these figures were computed (the app's clock)
    last_event_at: datetime | None  # the newest tracking event they count
    version: tuple
    steps: list[str] = field(default_factory=list)  # the campaign's step ids
    editions: list[int] = field(default_factory=list)  # the editions with sends
    cached: bool = False  # served from the cache
    stale: bool = False  # the store has changed since: newer figures are being computed


@dataclass
class ReportCache:
    """The reports one worker computed, newest use last, and the computations under way (see
    the module's docstring)."""

    entries: OrderedDict = field(default_factory=OrderedDict)
    running: dict = field(default_factory=dict)  # key → asyncio.Task computing it
    hits: int = 0  # answered from the cache, up to date
    stale: int = 0  # answered from the cache while newer figures were being computed
    misses: int = 0  # computations

    def put(self, key: tuple, live: LiveReport) -> None:
        self.entries[key] = live
        self.entries.move_to_end(key)
        while len(self.entries) > CACHE_SIZE:
            self.entries.popitem(last=False)


def report_cache(sv: Services) -> ReportCache:
    """This worker's report cache."""
    cache = sv.caches.get("reports")
    if cache is None:
        cache = sv.caches["reports"] = ReportCache()
    return cache


_COMPUTING = threading.Lock()  # one report computed at a time per worker (memory, 2 cores)


def _compute(
    sv: Services, c: Campaign, step: str | None, transport: str | None, latest: bool, now
) -> tuple:
    """Read a report's data on a connection of its own, so that logins and other pages of
    this worker are not held behind a read of a million events; then build it."""
    with (
        _COMPUTING,
        Ledger.open(sv.ws.db_url(), sv.ws.root, purpose="outreach serve (report)") as ledger,
    ):
        c, tname, data = reports.read(ledger, c, step, transport=transport, latest=latest, now=now)
        editions = sorted(ledger.editions(c.name))
    ts = data.ev_ts[~np.isnan(data.ev_ts)] if len(data.ev_ts) else data.ev_ts
    last = datetime.fromtimestamp(float(ts.max()), UTC) if len(ts) else None
    rep = reports.build(c, data, tname, step, now=now)
    return rep, last, [s.id for s in c.steps], editions


async def _refresh(
    sv: Services,
    cache: ReportCache,
    key: tuple,
    c: Campaign,
    step: str | None,
    transport: str | None,
    latest: bool,
    version: tuple,
) -> LiveReport:
    now = sv.now()
    try:
        cache.misses += 1
        rep, last, steps, editions = await run_in_threadpool(
            _compute, sv, c, step, transport, latest, now
        )
        live = LiveReport(rep, now, last, version, steps, editions)
        cache.put(key, live)
        return live
    finally:
        cache.running.pop(key, None)


def _logged(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        exc = task.exception()
        log.error("computing a report failed: %s", getattr(exc, "message", exc))


async def live_report(
    sv: Services,
    name: str,
    *,
    step: str | None = None,
    edition: int | None = None,
    transport: str | None = None,
    wait: bool = True,
) -> LiveReport | None:
    """The report ``outreach report NAME`` would print now (``--step``, ``--edition``,
    ``--transport``), from the cache when nothing changed since it was computed.

    When the store has changed, the report is computed again (one computation per report at a
    time: a second view waits for the same one). ``wait=False`` (the dashboard's page) does
    not wait when older figures are cached: they are answered, marked ``stale``, while the
    new ones are computed in the background; and answers None when nothing is cached (it
    only starts the computation: :func:`warm`).

    Raises :class:`NotFound`, :class:`ConfigError` (a bad step or edition) or LedgerError."""
    check_name(sv, name)
    if transport not in (None, "outbox", "sendgrid"):
        raise ConfigError("?transport= must be outbox or sendgrid")
    now = sv.now()
    c = await run_in_threadpool(reports.campaign_for, sv.ws, name, step, edition, now)
    path = next((sv.ws.root / "campaigns").glob(f"{name}.y*ml"))
    key = (name, edition, step, transport, c.current_edition(now), path.stat().st_mtime_ns)
    cache = report_cache(sv)
    version = await sv.db(Ledger.data_version)
    found: LiveReport | None = cache.entries.get(key)
    if found is not None and found.version == version:
        cache.hits += 1
        cache.entries.move_to_end(key)
        return replace(found, cached=True)
    task = cache.running.get(key)
    if task is None:
        task = sv.spawn(_refresh(sv, cache, key, c, step, transport, edition is None, version))
        task.add_done_callback(_logged)
        cache.running[key] = task
    if not wait:
        if found is None:
            return None
        cache.stale += 1
        return replace(found, cached=True, stale=True)
    # shielded: a visitor who leaves does not cancel what the next one will need
    return await asyncio.shield(task)


async def warm(sv: Services, name: str) -> None:
    """Start computing ``name``'s default report (every step, latest edition) unless it is
    cached and up to date: the campaigns page asks for each campaign, so that the report a
    visitor opens next is ready, or on its way."""
    await live_report(sv, name, wait=False)


# ------------------------------------------------------------------------------------------
# One address


@dataclass
class ContactHistory:
    """What one address was sent, what happened to each message, and its suppression."""

    email: str
    sends: list[dict]  # each send, with "events" (its events in time order) and "summary"
    suppression: suppressions.Suppression | None
    log: list[dict]  # the address's suppression history, oldest first


# the outcome of a message, from its events: the strongest first
OUTCOMES = (
    ("bounce", "bounced"),
    ("dropped", "dropped"),
    ("spamreport", "reported as spam"),
    ("unsubscribe", "unsubscribed"),
    ("group_unsubscribe", "unsubscribed"),
    ("click", "clicked"),
    ("open", "opened"),
    ("delivered", "delivered"),
    ("deferred", "delayed"),
    ("processed", "accepted by SendGrid"),
)


def contact_history(ledger: Ledger, root: Path, email: str, now: datetime) -> ContactHistory:
    """Everything the store knows about ``email`` (a person's look-up, not a bulk query);
    clicked URLs are named after the links of the campaign files under ``root``."""
    key = email.strip().lower()
    sends = ledger.contact_sends(key)
    events = ledger.contact_events([s["send_id"] for s in sends]) if sends else []
    per: dict[str, list[dict]] = {}
    for e in events:
        per.setdefault(e["send_id"], []).append(e)
    namers: dict[tuple[str, int], LinkNamer | None] = {}
    for s in sends:
        evs = per.get(s["send_id"], [])
        namer = _namer(namers, root, s["campaign"], s["edition"], now)
        for e in evs:
            e["at"] = (
                datetime.fromtimestamp(e["timestamp"], UTC) if e["timestamp"] is not None else None
            )
            e["machine"] = bool(e["machine_open"])
            e["link"] = None
            if e["event"] == "click" and e["url"]:
                e["link"] = namer.names(str(e["url"]))[0] if namer else str(e["url"])
        s["events"] = evs
        kinds = {e["event"] for e in evs if not (e["event"] == "open" and e["machine"])}
        s["outcome"] = next((words for kind, words in OUTCOMES if kind in kinds), None)
        s["clicked"] = sorted({e["link"] for e in evs if e["link"]})
    listing = suppressions.listing(ledger, key)
    return ContactHistory(
        key, sends, listing.suppressions[0] if listing.suppressions else None, listing.log
    )


def _namer(
    cache: dict, root: Path, campaign: str, edition: int | None, now: datetime
) -> LinkNamer | None:
    k = (campaign, edition or 0)
    if k not in cache:
        try:
            c = load_campaign(root, campaign, edition=edition, now=now)
            cache[k] = LinkNamer(c)
        except (OutreachError, OSError):
            cache[k] = None
    return cache[k]


# ------------------------------------------------------------------------------------------
# Admin changes


def change_suppression(
    ledger: Ledger,
    add: bool,
    email: str,
    why: str,
    who: str,
    now: datetime,
    via: AuditVia = AuditVia.API,
) -> bool:
    """Suppress (``add``) or lift ``email`` by hand and record it in the audit log, in one
    transaction; returns whether anything changed. ``why`` must not be blank."""
    if not why.strip():
        raise ConfigError("say why")
    with ledger.transaction():
        if add:
            changed = suppressions.add(ledger, email, why, who)
        else:
            changed = suppressions.remove(ledger, email, why, who)
        if changed:
            action = AuditAction.SUPPRESSION_ADD if add else AuditAction.SUPPRESSION_REMOVE
            accounts.record(ledger, who, action, email.strip().lower(), why, via=via, now=now)
    return changed

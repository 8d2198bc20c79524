"""The report's figures against a plain per-event computation on random ledgers.

The stores hand the report its events their own way (PostgreSQL: joined to their sends and
read as arrays, counted in the same pass; SQLite: rows matched to their sends in Python).
Whatever the path, every figure must be what counting the events one by one gives."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path

import pytest

from outreach.campaign import load_campaign
from outreach.events import ingest
from outreach.ledger import Ledger
from outreach.report import COUNTS, KINDS, LinkNamer, report
from outreach.workspace import Workspace
from tests import stores

pytestmark = pytest.mark.both_backends

NOW = datetime(2026, 12, 20, 12, tzinfo=UTC)
T0 = 1_796_115_600
URLS = (
    "https://www.ohchr.org/en/treaty-bodies/cescr",
    "https://www.ohchr.org/en/treaty-bodies/cescr/",
    "https://bsky.app/intent/compose?text=x",
    "https://x.com/intent/post?text=y",
    "https://example.org/other?a=1",
    "https://example.org/other?a=2",
    "",
    None,
)


@pytest.fixture
def ws(sent_template: Path, tmp_path: Path) -> Workspace:
    return Workspace.open(stores.copy_workspace(sent_template, tmp_path / "ws"))


def random_events(sends: list[dict], seed: int) -> list[dict]:
    """Events of every kind (and some the report leaves out), some without a time or a URL,
    some of no known send; over hours (seed even) or over days (odd)."""
    rnd = random.Random(seed)
    spread = 2 * 86400 if seed % 2 == 0 else 9 * 86400
    out = []
    for i in range(rnd.randrange(150, 400)):
        kind = rnd.choice(
            [
                "processed",
                "delivered",
                "deferred",
                "bounce",
                "dropped",
                "open",
                "click",
                "unsubscribe",
                "group_unsubscribe",
                "spamreport",
            ]
        )
        if rnd.random() < 0.08:
            send_id, email = f"nosuch{rnd.randrange(5)}", f"ghost{i}@example.org"
        else:
            r = rnd.choice(sends)
            send_id, email = r["send_id"], r["email"]
        ev = {
            "event": kind,
            "email": email,
            "send_id": send_id,
            "campaign": "december",
            "sg_event_id": f"ev{seed}-{i}",
        }
        if rnd.random() < 0.93:
            ev["timestamp"] = T0 + rnd.randrange(spread)
        if kind == "bounce":
            ev["type"] = rnd.choice(["bounce", "blocked", "BLOCKED", None])
        elif kind == "open":
            ev["sg_machine_open"] = rnd.random() < 0.3
        elif kind == "click":
            url = rnd.choice(URLS)
            if url is not None:
                ev["url"] = url
        out.append(ev)
    return out


def kind_of(e: dict) -> int | None:
    """The event's index in KINDS, as the report counts it (None: not counted)."""
    name = {
        "delivered": "delivered",
        "deferred": "deferred",
        "dropped": "dropped",
        "click": "click",
        "unsubscribe": "unsubscribe",
        "group_unsubscribe": "unsubscribe",
        "spamreport": "spamreport",
    }.get(e["event"])
    if e["event"] == "bounce":
        name = "bounced_soft" if (e["type"] or "").lower() == "blocked" else "bounced_hard"
    elif e["event"] == "open":
        name = "machine_open" if e["machine_open"] == 1 else "open"
    return KINDS.index(name) if name else None


def expected(ws: Workspace, step: str | None) -> dict:
    """Figures counted event by event from the ledger's rows."""
    c = load_campaign(ws.root, "december", now=NOW)
    window = (c.edition_end(c.edition - 1).timestamp(), c.edition_end(c.edition).timestamp())
    with Ledger.open(ws.db_url(), ws.root) as ledger:
        sends = {
            r["send_id"]: r
            for r in ledger.table_rows("sends", campaign="december", edition=c.edition)
            if r["transport"] == "outbox" and (step is None or r["step"] == step)
        }
        events = ledger.table_rows("events", campaign="december")
    matched = [e for e in events if e["matched"] == 1 and e["edition"] == c.edition]
    unmatched = [
        e
        for e in events
        if e["matched"] == 0
        and e["timestamp"] is not None
        and window[0] <= e["timestamp"] < window[1]
        and (step is None or e["step"] == step)
    ]
    kept = [(e, kind_of(e)) for e in matched if e["send_id"] in sends and kind_of(e) is not None]
    per_send: dict[str, Counter] = defaultdict(Counter)
    for e, k in kept:
        per_send[e["send_id"]][KINDS[k]] += 1
    times = [e["timestamp"] for e, _ in kept if e["timestamp"] is not None]
    granularity = "hour" if not times or max(times) - min(times) <= 3 * 86400 else "day"
    size = 3600 if granularity == "hour" else 86400
    fmt = "%Y-%m-%dT%H:00Z" if granularity == "hour" else "%Y-%m-%d"
    namer = LinkNamer(c)

    def timeline(rows: list) -> list[dict]:
        per: dict[int, list[int]] = {}
        for e, k in rows:
            if e["timestamp"] is not None and KINDS[k] in ("open", "click"):
                per.setdefault(e["timestamp"] // size, [0, 0])[KINDS[k] == "click"] += 1
        return [
            {"bucket": datetime.fromtimestamp(b * size, UTC).strftime(fmt), "opens": o, "clicks": n}
            for b, (o, n) in sorted(per.items())
        ]

    steps = {}
    for sid in sorted({r["step"] for r in sends.values()}):
        totals: Counter = Counter()
        for send_id, r in sends.items():
            n = per_send.get(send_id, Counter())
            if r["step"] != sid or (r["status"] != "sent" and not n):
                continue
            totals["sent"] += r["status"] == "sent"
            for metric, kind in (
                ("delivered", "delivered"),
                ("deferred", "deferred"),
                ("bounced_hard", "bounced_hard"),
                ("dropped", "dropped"),
                ("opens_unique", "open"),
                ("machine_opens_unique", "machine_open"),
                ("clicks_unique", "click"),
                ("unsubscribes", "unsubscribe"),
                ("spam_reports", "spamreport"),
            ):
                totals[metric] += n[kind] > 0
            totals["bounced_soft"] += n["bounced_soft"] > 0 and n["bounced_hard"] == 0
            totals["opens_total"] += n["open"]
            totals["clicks_total"] += n["click"]
        rows = [(e, k) for e, k in kept if sends[e["send_id"]]["step"] == sid]
        links: dict[str, list] = {}
        for e, k in rows:
            if KINDS[k] == "click" and e["url"] is not None:
                link = links.setdefault(namer.names(e["url"])[0], [0, set()])
                link[0] += 1
                link[1].add(e["send_id"])
        steps[sid] = {
            "totals": {m: totals[m] for m in COUNTS},
            "links": {name: (n, len(who)) for name, (n, who) in links.items()},
            "timeline": timeline(rows),
        }
    return {
        "matched": sum(1 for e in matched if step is None or e["step"] == step),
        "unmatched": len(unmatched),
        "granularity": granularity,
        "timeline": timeline(kept),
        "steps": steps,
    }


def figures(ws: Workspace, step: str | None) -> dict:
    rep = report(ws, "december", step, now=NOW)
    return {
        "matched": rep.events_matched,
        "unmatched": rep.events_unmatched,
        "granularity": rep.granularity,
        "timeline": rep.timeline,
        "steps": {
            s.step: {
                "totals": {m: s.totals[m] for m in COUNTS},
                "links": {x["link"]: (x["clicks_total"], x["clicks_unique"]) for x in s.links},
                "timeline": s.timeline,
            }
            for s in rep.steps
        },
    }


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_report_equals_counting_event_by_event(ws: Workspace, seed: int) -> None:
    with Ledger.open(ws.db_url(), ws.root) as ledger:
        sends = ledger.table_rows("sends", step="circular")
        ingest(ledger, random_events(sends, seed), "test")
    for step in (None, "circular"):
        want = expected(ws, step)
        assert want["steps"]["circular"]["totals"]["delivered"]  # the ledger has figures
        assert figures(ws, step) == want
    # another transport's report: none of these sends, the same matched events
    other = report(ws, "december", transport="sendgrid", now=NOW)
    assert other.steps == [] and other.events_matched == expected(ws, None)["matched"]

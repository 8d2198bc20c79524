"""Synthetic ledgers for the benchmarks: a copy of the example workspace whose ledger holds
many ``sends`` rows (and optionally events), shaped as outreach writes them."""

from __future__ import annotations

import json
import random
import shutil
import uuid
from pathlib import Path

from outreach.ledger import Ledger, now_iso

REPO = Path(__file__).resolve().parent.parent
STEPS = ("circular", "human-rights-day", "last-call")
SEGMENTS = (("members", "member"), ("allies", "ally"), ("newcomers", "newcomer"))
STATUSES = ("ratified", "signed", "not_signed")
COUNTRIES = ("AR", "BR", "CL", "DE", "ES", "FR", "GH", "IN", "MX", "NG", "PT", "US", "ZA", "JP")
LANGS = ("en", "es", "fr")
LINKS = (
    "https://www.escr-net.org/",
    "https://www.ohchr.org/en/treaty-bodies/cescr",
    "https://x.com/intent/post?text=Move%20forward%20%23Brazil",
    "https://bsky.app/intent/compose?text=Well%20done%20%23Chile",
)


def workspace(dest: Path) -> Path:
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for name in ("campaigns", "lists", "templates"):
        shutil.copytree(REPO / name, dest / name)
    return dest


def add_sends(root: Path, n: int, seed: int = 1) -> list[tuple[str, str, str, str]]:
    """``n`` sent rows spread over the campaign's steps; returns (send_id, email, step, contact_id)."""
    rnd = random.Random(seed)
    ts = now_iso()
    rows = []
    out = []
    for i in range(n):
        step = STEPS[i % len(STEPS)] if i >= n // 2 else "circular"
        seg, rel = SEGMENTS[i % 3]
        sid = uuid.UUID(int=rnd.getrandbits(128)).hex
        email = f"person{i}@example.org"
        cid = f"c-{i:016x}"
        rows.append(
            (
                sid,
                "december",
                step,
                cid,
                "outbox",
                email,
                "sent",
                "b",
                "v",
                seg,
                rel,
                COUNTRIES[i % len(COUNTRIES)],
                STATUSES[i % 3],
                LANGS[i % 3],
                f"msg{i // 1000}",
                ts,
                ts,
            )
        )
        out.append((sid, email, step, cid))
    db = f"sqlite:///{root / '.outreach' / 'outreach.db'}"
    with Ledger.open(db, root) as ledger, ledger.transaction() as c:
        c.executemany(
            "INSERT INTO sends (send_id, campaign, edition, step, contact_id, transport, email, status, "
            "batch_id, variant, segment, relationship, country, country_status, language, message_id, "
            "created_at, updated_at) VALUES (?,?,2026,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            rows,
        )
    return out


def events_for(
    sends: list[tuple[str, str, str, str]], n: int, seed: int = 2, t0: int = 1_796_115_600
):
    """``n`` SendGrid-shaped events (custom_args as top-level keys) for random sends."""
    rnd = random.Random(seed)
    kinds = [
        "processed",
        "delivered",
        "delivered",
        "open",
        "open",
        "open",
        "click",
        "bounce",
        "deferred",
    ]
    for k in range(n):
        sid, email, step, cid = sends[rnd.randrange(len(sends))]
        kind = kinds[k % len(kinds)]
        ev = {
            "email": email,
            "timestamp": t0 + rnd.randrange(5 * 86400),
            "smtp-id": f"<{sid}@escr-net.org>",
            "event": kind,
            "category": ["op-icescr", "december", step],
            "sg_event_id": f"bench-{seed}-{k}",
            "sg_message_id": f"{sid[:22]}.filterdrecv-1-{k}.0",
            "send_id": sid,
            "contact_id": cid,
            "campaign": "december",
            "step": step,
        }
        if kind == "open":
            ev["sg_machine_open"] = rnd.random() < 0.3
            ev["useragent"] = "Mozilla/5.0"
        elif kind == "click":
            ev["url"] = LINKS[k % len(LINKS)]
        elif kind == "bounce":
            ev["type"] = "bounce" if rnd.random() < 0.5 else "blocked"
            ev["reason"] = "550 5.1.1 unknown user"
        yield ev


def insert_events_fast(root: Path, events) -> int:
    """Bulk-insert events as ``ingest`` stores them (benchmark set-up only: no suppressions)."""
    n = 0
    with Ledger.open(f"sqlite:///{root / '.outreach' / 'outreach.db'}", root) as ledger:
        ledger.conn.execute("PRAGMA synchronous = OFF")
        batch = []
        ts = now_iso()
        for e in events:
            batch.append(
                (
                    e["sg_event_id"],
                    e["event"],
                    e["email"],
                    e["timestamp"],
                    e["send_id"],
                    e["campaign"],
                    e["step"],
                    e["contact_id"],
                    e["sg_message_id"],
                    e.get("url"),
                    e.get("type"),
                    e.get("reason"),
                    int(bool(e.get("sg_machine_open"))),
                    1,
                    "bench",
                    ts,
                    json.dumps(e, separators=(",", ":")),
                )
            )
            if len(batch) == 50_000:
                n += _flush(ledger, batch)
                batch = []
        n += _flush(ledger, batch)
    return n


def _flush(ledger: Ledger, batch: list) -> int:
    with ledger.transaction() as c:
        c.executemany(
            "INSERT INTO events (sg_event_id, event, email, timestamp, send_id, campaign, edition, step, "
            "contact_id, message_id, url, type, reason, machine_open, matched, source, received_at, raw) "
            "VALUES (?,?,?,?,?,?,2026,?,?,?,?,?,?,?,?,?,?,?)",
            batch,
        )
    return len(batch)

"""Synthetic ledgers for the benchmarks: a copy of the example workspace whose ledger holds
many ``sends`` rows (and optionally events), shaped as outreach writes them."""

from __future__ import annotations

import atexit
import json
import os
import random
import shutil
import sys
import uuid
from pathlib import Path

from outreach.ledger import Ledger, now_iso
from outreach.store.base import EVENT_COLUMNS
from outreach.workspace import Workspace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

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


BACKENDS = ("sqlite", "postgresql")
PG_URL = os.environ.get("OUTREACH_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
_PG: list = []


def pg_store_url() -> str:
    """A new, empty PostgreSQL store (a schema in a database made for this benchmark run,
    dropped at exit), on ``OUTREACH_TEST_PG_URL``'s server."""
    if not _PG:
        from tests.stores import PGServer

        _PG.append(PGServer(PG_URL))
        atexit.register(_PG[0].drop)
    return _PG[0].new_url()


def workspace(dest: Path, backend: str = "sqlite") -> Path:
    """A copy of the example workspace; with ``postgresql``, its store is a new schema named
    in its ``.env`` (SQLite: the default file)."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for name in ("campaigns", "lists", "templates"):
        shutil.copytree(REPO / name, dest / name)
    if backend == "postgresql":
        (dest / ".env").write_text(f"OUTREACH_DB={pg_store_url()}\n")
    return dest


def open_ledger(root: Path) -> Ledger:
    ws = Workspace.open(root)
    return Ledger.open(ws.db_url(), ws.root)


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
    columns = [
        "send_id",
        "campaign",
        "step",
        "contact_id",
        "transport",
        "email",
        "status",
        "batch_id",
        "variant",
        "segment",
        "relationship",
        "country",
        "country_status",
        "language",
        "message_id",
        "created_at",
        "updated_at",
        "edition",
    ]
    with open_ledger(root) as ledger, ledger.transaction():
        ledger.write_table("sends", columns, [(*r, 2026) for r in rows])
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
    """Bulk-insert events as ``ingest`` stores them (benchmark set-up only: no suppressions),
    with the store's bulk path (COPY on PostgreSQL)."""
    n = 0
    ts = now_iso()
    with open_ledger(root) as ledger, ledger.transaction():
        batch = []
        for e in events:
            batch.append(
                (
                    e["sg_event_id"],
                    e["event"],
                    e["email"],
                    e["timestamp"],
                    e["send_id"],
                    e["campaign"],
                    2026,
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
                ledger.write_table("events", EVENT_COLUMNS, batch)
                n += len(batch)
                batch = []
        ledger.write_table("events", EVENT_COLUMNS, batch)
        n += len(batch)
    return n

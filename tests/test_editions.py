"""Editions of the yearly December circular: each year is sent to everyone again, within its own
edition ("already sent", follow-ups, reports), while suppressions carry over; an old ledger is
migrated; and the content follows the edition's date."""

from __future__ import annotations

import email
import json
import re
import sqlite3
from email import policy
from pathlib import Path

import pytest

from outreach.campaign import load_campaign
from outreach.countries import CountryTable
from outreach.ledger import Ledger
from outreach.store import SCHEMA_VERSION, Store
from outreach.store.base import TABLES
from tests.content_render import REPO, World, contact, squash

FIXTURES = Path(__file__).parent / "fixtures" / "ledger"
FIXTURE_V3 = FIXTURES / "schema3-december-2026.sql"
CIRCULAR_2026 = "2026-12-01T14:30:00+00:00"
CIRCULAR_2027 = "2027-12-01T15:00:00+00:00"
LAST_CALL_2026 = "2026-12-16T12:00:00+00:00"
LAST_CALL_2027 = "2027-12-16T12:00:00+00:00"


def sent(ws: Path, edition: int, step: str = "circular") -> dict[str, str]:
    """{address: send id} of the messages the outbox wrote for a step of an edition."""
    out = {}
    for f in (ws / "outbox" / "december" / str(edition) / step).glob("*.eml"):
        msg = email.message_from_bytes(f.read_bytes(), policy=policy.default)
        out[msg["To"].addresses[0].addr_spec.lower()] = msg["X-Outreach-Send-Id"]
    return out


def import_events(cli, ws: Path, name: str, events: list[dict]) -> None:
    path = ws / f"{name}.json"
    path.write_text(json.dumps(events), encoding="utf-8")
    r = cli(ws, "events", "import", str(path))
    assert r.exit_code == 0, r.output


def event(kind: str, address: str, send_id: str, ts: int, eid: str, **extra) -> dict:
    return {
        "event": kind,
        "email": address,
        "timestamp": ts,
        "sg_event_id": eid,
        "send_id": send_id,
        "campaign": "december",
        **extra,
    }


def report_json(cli, ws: Path, *args: str) -> dict:
    r = cli(ws, "report", "december", "--format", "json", *args)
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    data.pop("generated_at")
    return data


def totals(rep: dict, step: str = "circular") -> dict:
    return next(s["totals"] for s in rep["steps"] if s["step"] == step)


def test_the_circular_goes_out_again_the_next_year(workspace: Path, cli) -> None:
    # 1. the 2026 edition
    r = cli(workspace, "send", "december", "--yes", "--now", CIRCULAR_2026)
    assert r.exit_code == 0, r.output
    assert "2026 edition" in r.output
    in_2026 = sent(workspace, 2026)
    assert len(in_2026) == 57
    people = sorted(in_2026)
    openers_2026, openers_2027 = set(people[:10]), set(people[10:20])
    bounced, unsubscribed = people[20], people[21]

    # 2. its events: opens, a hard bounce, an unsubscribe (dated 1 December 2026)
    t = 1796140800
    events = [event("open", a, in_2026[a], t + i, f"o26-{i}") for i, a in enumerate(openers_2026)]
    events += [
        event("bounce", bounced, in_2026[bounced], t, "b26", type="bounce", reason="550 no user"),
        event("unsubscribe", unsubscribed, in_2026[unsubscribed], t, "u26"),
    ]
    import_events(cli, workspace, "events-2026", events)
    report_2026 = report_json(cli, workspace, "--edition", "2026", "--now", CIRCULAR_2027)
    assert report_2026["edition"] == 2026
    assert totals(report_2026)["opens_unique"] == 10

    # 3. a year later: everyone again, except the addresses suppressed in 2026
    r = cli(workspace, "send", "december", "--yes", "--now", CIRCULAR_2027)
    assert r.exit_code == 0, r.output
    assert "2027 edition" in r.output and "already sent" not in r.output
    assert re.search(r"Recipients: 55\b", r.output)
    assert "suppressed: bounce" in r.output and "suppressed: unsubscribe" in r.output
    in_2027 = sent(workspace, 2027)
    assert set(in_2027) == set(in_2026) - {bounced, unsubscribed}
    assert not set(in_2027.values()) & set(in_2026.values())  # new send ids, new ledger rows
    assert len(sent(workspace, 2026)) == 57  # last year's outbox is untouched

    # 4. the 2027 follow-up targets the non-openers of 2027, not those of 2026
    t27 = t + 365 * 86400
    import_events(
        cli,
        workspace,
        "events-2027",
        [event("open", a, in_2027[a], t27 + i, f"o27-{i}") for i, a in enumerate(openers_2027)],
    )
    r = cli(
        workspace,
        *("send", "december", "--step", "last-call", "--yes", "--now", LAST_CALL_2027),
    )
    assert r.exit_code == 0, r.output
    followed = set(sent(workspace, 2027, "last-call"))
    assert followed == set(in_2027) - openers_2027
    assert openers_2026 <= followed  # opening last year's circular does not count this year

    # 5. the 2026 report is unchanged by everything 2027 did
    assert report_json(cli, workspace, "--edition", "2026", "--now", LAST_CALL_2027) == report_2026

    # 6. the two editions side by side
    cmp = report_json(cli, workspace, "--compare", "2026", "--now", LAST_CALL_2027)
    assert (cmp["edition"], cmp["compared_with"]) == (2027, 2026)
    circular = next(s for s in cmp["steps"] if s["step"] == "circular")["metrics"]
    assert circular["sent"] == {"edition": 55, "other": 57, "change": -2}
    assert circular["opens_unique"] == {"edition": 10, "other": 10, "change": 0}
    table = cli(workspace, "report", "december", "--compare", "2026", "--now", LAST_CALL_2027)
    assert "2027 edition compared with 2026" in table.output
    assert re.search(r"sent\s+55\s+57\s+-2", table.output)

    # and status knows both editions
    status = json.loads(
        cli(workspace, "status", "december", "--json", "--now", LAST_CALL_2027).output
    )
    assert status["edition"] == 2027
    assert [(e["edition"], e["sent"], e["current"]) for e in status["editions"]] == [
        (2026, 57, False),
        (2027, 55 + len(followed), True),
    ]


def test_an_explicit_edition(workspace: Path, cli) -> None:
    r = cli(
        workspace,
        *("send", "december", "--edition", "2027", "--step", "circular", "--dry-run"),
        *("--now", CIRCULAR_2026),
    )
    assert r.exit_code == 0, r.output
    assert "2027 edition" in r.output
    assert "due 2027-12-01 09:00" in r.output and "before its time" in r.output
    bad = cli(workspace, "send", "december", "--edition", "27", "--dry-run")
    assert bad.exit_code == 2 and "27 is not in the range" in bad.output


def load_dump(ws: Path, dump: Path) -> Path:
    """Write a ledger as an older outreach left it (the one place tests write SQL: old
    ledgers are SQLite files, and upgrading them in place is what is tested)."""
    db = ws / ".outreach" / "outreach.db"
    db.parent.mkdir(exist_ok=True)
    with sqlite3.connect(db) as conn:
        conn.executescript(dump.read_text(encoding="utf-8"))
    conn.close()
    return ws


@pytest.fixture
def old_ledger(workspace: Path) -> Path:
    """The workspace with a ledger written at schema 3 (the 2026 circular and its events)."""
    return load_dump(workspace, FIXTURE_V3)


@pytest.mark.parametrize(
    ("dump", "counts"),
    [
        ("schema1-december-2025.sql", (1, 1, 2, 2, 1, 1)),
        ("schema2-december-2025.sql", (1, 1, 2, 2, 1, 1)),
        ("schema3-december-2026.sql", (1, None, 57, 69, 2, 2)),
        ("schema4-december-2026.sql", (1, None, 57, 0, 1, 1)),
    ],
)
def test_every_old_ledger_is_upgraded_in_place(workspace: Path, cli, tmp_path: Path, dump, counts):
    """Ledgers written at schemas 1 to 4 (by ``PRAGMA user_version``) become the current
    schema in place, every row kept; the schema is then the one a new store gets."""
    ws = load_dump(workspace, FIXTURES / dump)
    r = cli(ws, "db", "status", "--json")
    assert r.exit_code == 0, r.output
    st = json.loads(r.output)
    assert (st["backend"], st["schema"]) == ("sqlite", SCHEMA_VERSION)
    got = st["counts"]
    runs, batches, sends, events, suppressions, log = counts
    assert (got["runs"], got["sends"], got["events"]) == (runs, sends, events)
    assert (got["suppressions"], got["suppression_log"]) == (suppressions, log)
    if batches is not None:
        assert got["batches"] == batches
    with (
        Store.open(f"sqlite:///{ws / '.outreach' / 'outreach.db'}") as old,
        Store.open(f"sqlite:///{tmp_path / 'new.db'}") as new,
    ):
        for table in TABLES:
            assert set(old.columns(table)) == set(new.columns(table)), table
    # a second opening has nothing left to do, and the send works on the upgraded ledger
    again = cli(ws, "send", "december", "--step", "circular", "--yes", "--now", CIRCULAR_2027)
    assert again.exit_code == 0, again.output


def test_a_ledger_from_a_newer_outreach_is_refused(workspace: Path, cli) -> None:
    db = workspace / ".outreach" / "outreach.db"
    db.parent.mkdir()
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA user_version = 99")
    conn.close()
    r = cli(workspace, "send", "december", "--step", "circular", "--yes", "--now", CIRCULAR_2027)
    assert r.exit_code == 1
    assert (
        f"the ledger has schema version 99; this outreach understands up to {SCHEMA_VERSION}"
        in r.output
    )
    assert "upgrade outreach" in r.output
    assert not (workspace / "outbox").exists()


def test_a_schema_3_ledger_is_migrated_with_its_rows_in_their_edition(old_ledger: Path, cli):
    ws = old_ledger
    status = json.loads(cli(ws, "status", "december", "--json", "--now", CIRCULAR_2027).output)
    assert [(e["edition"], e["sent"], e["current"]) for e in status["editions"]] == [
        (2026, 57, False),
        (2027, 0, True),
    ]
    with Ledger.open(f"sqlite:///{ws / '.outreach' / 'outreach.db'}", ws) as ledger:
        assert ledger.undated("december") is None  # every old row got its edition
        assert ledger.sent_contacts("december", 2026, "circular", "outbox")
    # 2026's events and suppressions are intact, in the 2026 edition
    rep = report_json(cli, ws, "--edition", "2026", "--now", CIRCULAR_2027)
    t = totals(rep)
    assert (t["sent"], t["delivered"], t["opens_unique"]) == (57, 57, 10)
    assert (t["bounced_hard"], t["unsubscribes"]) == (1, 1)
    assert rep["events"] == {"matched": 69, "unmatched": 0}
    # the 2026 follow-up would target 2026's non-openers (and not the suppressed)
    plan = cli(
        ws,
        *("send", "december", "--edition", "2026", "--step", "last-call", "--dry-run"),
        *("--now", LAST_CALL_2026),
    )
    assert re.search(r"Recipients: 45\b", plan.output), plan.output
    # 2027 goes to everyone but the two suppressed in 2026
    r = cli(ws, "send", "december", "--yes", "--now", CIRCULAR_2027)
    assert r.exit_code == 0, r.output
    assert "already sent" not in r.output
    assert len(sent(ws, 2027)) == 55


@pytest.mark.parametrize(
    ("edition", "ordinal", "germany_joined"),
    [(2015, "7th", False), (2026, "18th", True), (2030, "22nd", True)],
)
def test_the_content_follows_the_edition(edition: int, ordinal: str, germany_joined: bool):
    """One set of templates, three years: each render is true to the data as of its date."""
    campaign = load_campaign(REPO, "december", edition=edition)
    world = World(campaign)
    as_of = campaign.step("circular").wall_clock[0]
    counts = CountryTable.load(campaign.countries_path()).counts(as_of)
    if edition == 2015:
        assert counts["parties"] == 21  # the seed circular's own figure
    r = world.render("circular", contact("DE", "en", "member"))
    text = squash(r.text)
    assert f"{counts['parties']} countries have become party to the OP-ICESCR" in text
    assert f"Another {counts['signed_only']} countries have signed it" in text
    assert f"is the {ordinal} anniversary of the adoption" in text
    assert f"December {edition}" in text
    if germany_joined:
        assert "Your country: Germany acceded to the OP-ICESCR on 20 April 2023." in text
    else:
        assert "Your country: Germany has not yet signed the OP-ICESCR." in text
    # the non-party examples come from the data as of the edition
    story = text.split("But what if you live in", 1)[1].split("?", 1)[0]
    assert ("Germany" in story) is not germany_joined

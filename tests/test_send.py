"""`outreach send` / `status` / `preview` through the CLI on a copy of the shipped workspace."""

from __future__ import annotations

import email
import json
import re
from collections import Counter
from email import policy
from pathlib import Path

import pytest

from outreach.campaign import load_campaign
from outreach.contacts import load_for_campaign
from outreach.countries import CountryTable
from outreach.store import Store
from tests.dates import BEFORE_CIRCULAR
from tests.stores import open_store, rows

pytestmark = pytest.mark.both_backends

CIRCULAR = ("send", "december", "--step", "circular", "--skip-invalid", "--now", BEFORE_CIRCULAR)


def eligible(ws: Path) -> set[str]:
    """Addresses the circular should reach: valid contacts minus the no-december segment."""
    c = load_campaign(ws, "december")
    contacts = load_for_campaign(c, CountryTable.load(c.countries_path())).contacts
    return {x.email for x in contacts if "no-december" not in x.tags}


def emls(ws: Path, step: str = "circular") -> list[Path]:
    return sorted((ws / "outbox" / "december" / "2026" / step).glob("*.eml"))


def ledger(ws: Path, table: str = "sends", **where) -> list[dict]:
    """The store's rows (read through the store, whatever the backend)."""
    return rows(ws, table, **where)


def test_send_step_writes_one_eml_per_eligible_contact(workspace: Path, cli) -> None:
    r = cli(workspace, *CIRCULAR, "--yes")
    assert r.exit_code == 0, r.output
    assert "sending before its time because you chose --step" in r.output
    assert "Nothing was emailed" in r.output
    files = emls(workspace)
    expected = eligible(workspace)
    recipients = []
    for f in files:
        msg = email.message_from_bytes(f.read_bytes(), policy=policy.default)
        recipients.append(msg["To"].addresses[0].addr_spec)
        assert msg.get_content_type() == "multipart/alternative"
        assert {p.get_content_type() for p in msg.iter_parts()} == {"text/plain", "text/html"}
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert msg["List-Unsubscribe"].startswith("<https://")
        assert msg["Reply-To"].addresses[0].addr_spec == "ilarrosa@escr-net.org"
        html = msg.get_body(("html",)).get_content()
        assert "[[" not in html and "{{" not in html
    assert sorted(recipients) == sorted(expected)
    assert (workspace / "outbox" / "december" / "2026" / "circular" / "index.html").is_file()
    assert Counter(r["status"] for r in ledger(workspace)) == {"sent": len(expected)}


def test_second_run_sends_nothing(workspace: Path, cli) -> None:
    cli(workspace, *CIRCULAR, "--yes")
    before = {f.name: f.stat().st_mtime_ns for f in emls(workspace)}
    r = cli(workspace, *CIRCULAR, "--yes")
    assert r.exit_code == 0
    assert f"{len(before)}  already sent" in r.output
    assert "Total to write: 0 message(s)" in r.output
    assert {f.name: f.stat().st_mtime_ns for f in emls(workspace)} == before


def test_list_errors_block_the_send(with_errors: Path, cli) -> None:
    r = cli(with_errors, "send", "december", "--step", "circular", "--yes")
    assert r.exit_code == 1
    assert "5 problem(s) in the contact list; nothing was sent" in r.output
    assert "lists/examples/with-errors.csv:4 [email]" in r.output
    assert "--skip-invalid" in r.output
    assert not (with_errors / "outbox").exists()


def test_skipped_rows_are_listed(with_errors: Path, cli) -> None:
    r = cli(with_errors, *CIRCULAR, "--dry-run")
    assert "Skipped 5 invalid row(s)" in r.output
    assert (
        "lists/examples/with-errors.csv:6 [country]: unknown country 'Argentinia' "
        "(did you mean Argentina (AR)?)" in r.output
    )


def test_the_shipped_workspace_sends_without_any_flag(workspace: Path, cli) -> None:
    """The coordinator's command, as written, whenever a step is due."""
    r = cli(workspace, "send", "december", "--yes", "--now", "2026-12-01T14:30:00+00:00")
    assert r.exit_code == 0, r.output
    assert "Skipped" not in r.output
    assert len(emls(workspace)) == len(eligible(workspace)) == 57


def test_dry_run_writes_nothing(workspace: Path, cli) -> None:
    r = cli(workspace, *CIRCULAR, "--dry-run")
    assert r.exit_code == 0
    assert "Dry run: nothing will be sent or written." in r.output
    assert "Recipients: " in r.output and "Excluded:" in r.output
    assert not (workspace / "outbox").exists()
    assert ledger(workspace) == []


def test_without_yes_and_without_a_terminal_nothing_is_sent(workspace: Path, cli) -> None:
    r = cli(workspace, *CIRCULAR)
    assert r.exit_code == 1
    assert "not confirmed" in r.output and "cancelled; nothing was sent" in r.output
    assert not emls(workspace)


def test_limit_sends_in_slices_without_repeating(workspace: Path, cli) -> None:
    cli(workspace, *CIRCULAR, "--yes", "--limit", "5")
    assert len(emls(workspace)) == 5
    cli(workspace, *CIRCULAR, "--yes", "--limit", "5")
    assert len(emls(workspace)) == 10
    assert len({r["contact_id"] for r in ledger(workspace, status="sent")}) == 10


def test_test_sends_go_to_staff_only_and_are_not_campaign_sends(workspace: Path, cli) -> None:
    r = cli(workspace, *CIRCULAR, "--yes", "--test-to", "staff@example.org")
    assert r.exit_code == 0, r.output
    tests = sorted(
        (workspace / "outbox" / "december" / "2026" / "circular" / "tests").glob("*.eml")
    )
    assert tests and not emls(workspace)
    for f in tests:
        msg = email.message_from_bytes(f.read_bytes(), policy=policy.default)
        assert msg["To"].addresses[0].addr_spec == "staff@example.org"
        assert msg["Subject"].startswith("[TEST] ")
        assert "/u/test>" in msg["List-Unsubscribe"]
    variants = len({r["variant"] for r in ledger(workspace, "test_sends")})
    assert variants == len(tests)
    assert ledger(workspace) == []


def test_nothing_is_due_in_november(workspace: Path, cli) -> None:
    r = cli(
        workspace,
        "send",
        "december",
        "--skip-invalid",
        "--yes",
        "--now",
        "2026-11-27T12:00:00+00:00",
    )
    assert r.exit_code == 0
    assert "No step is due." in r.output
    assert "Not yet due: circular at 2026-12-01 09:00" in r.output
    assert not (workspace / "outbox").exists()


def test_due_steps_go_without_step_option(workspace: Path, cli) -> None:
    r = cli(
        workspace,
        "send",
        "december",
        "--skip-invalid",
        "--yes",
        "--now",
        "2026-12-02T12:00:00+00:00",
    )
    assert r.exit_code == 0, r.output
    assert "Step circular" in r.output and ": due" in r.output
    assert "Not yet due: human-rights-day" in r.output
    assert len(emls(workspace)) == len(eligible(workspace))


def test_follow_up_without_events_reaches_every_recipient_and_says_so(workspace: Path, cli) -> None:
    cli(
        workspace,
        "send",
        "december",
        "--skip-invalid",
        "--yes",
        "--now",
        "2026-12-02T12:00:00+00:00",
    )
    r = cli(
        workspace,
        *("send", "december", "--step", "last-call", "--skip-invalid", "--yes"),
        *("--now", "2026-12-16T12:00:00+00:00"),
    )
    assert r.exit_code == 0, r.output
    assert "no tracking events recorded yet" in r.output
    assert len(emls(workspace, "last-call")) == len(eligible(workspace))


def test_status_json(workspace: Path, cli) -> None:
    cli(workspace, *CIRCULAR, "--yes", "--limit", "7")
    r = cli(workspace, "status", "december", "--json", "--now", BEFORE_CIRCULAR)
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    steps = {s["id"]: s for s in data["steps"]}
    assert data["transport"] == "outbox"
    assert steps["circular"]["sent"] == 7
    assert steps["circular"]["recipients"] == len(eligible(workspace))
    assert steps["human-rights-day"]["local_time"] is True
    assert {"due_at", "pending", "failed", "unknown"} <= set(steps["circular"])
    table = cli(workspace, "status", "december", "--now", BEFORE_CIRCULAR)
    assert "circular" in table.output and "last-call" in table.output


def test_preview_writes_html_and_text(workspace: Path, cli) -> None:
    r = cli(
        workspace,
        "preview",
        "december",
        "--step",
        "circular",
        "--contact",
        "LUCIA.fernandez@example.com",
        "--now",
        BEFORE_CIRCULAR,
    )
    assert r.exit_code == 0, r.output
    assert "2026 edition" in r.output
    out = workspace / "previews" / "december" / "2026" / "circular"
    html = next(out.glob("*.html")).read_text()
    assert "<html" in html and "Lucía" in html
    assert next(out.glob("*.txt")).read_text().startswith("Subject: ")
    by_row = cli(
        workspace, "preview", "december", "--step", "circular", "--row", "60", "--edition", "2026"
    )
    assert by_row.exit_code == 1 and "row 60 is not a valid contact" in by_row.output
    both = cli(workspace, "preview", "december", "--step", "circular")
    assert both.exit_code == 2


def test_workspace_option_and_current_directory(workspace: Path, cli, monkeypatch) -> None:
    from click.testing import CliRunner

    from outreach.cli import main

    monkeypatch.chdir(workspace)
    r = CliRunner().invoke(main, ["lists", "check"])
    assert "58 valid contact(s)" in r.output
    r2 = cli(workspace, "lists", "check", "december")
    assert r2.output == r.output
    elsewhere = CliRunner().invoke(main, ["-C", str(workspace.parent), "lists", "check"])
    assert elsewhere.exit_code == 1 and "has no campaigns/ folder" in elsewhere.output


def test_usage_errors_exit_2(workspace: Path, cli) -> None:
    assert cli(workspace, "send", "december", "--bogus").exit_code == 2
    assert cli(workspace, "send").exit_code == 2


# -- bad input: one clear line with its location, exit 1, nothing sent ------------------------


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


BAD_INPUTS = {
    "missing key": (
        "campaigns/december.yaml",
        "  postal_address: ESCR-Net, 370 Lexington Avenue, Suite 700, New York, NY 10017, USA\n",
        "",
        "campaigns/december.yaml:{sender:}: sender.postal_address: missing required key 'postal_address'",
    ),
    "mistyped key": (
        "campaigns/december.yaml",
        "    template: circular",
        "    templte: circular",
        "unknown key 'templte' (did you mean 'template'?)",
    ),
    "wrong date": (
        "campaigns/december.yaml",
        "send_at: 12-01 09:00",
        "send_at: 13-01 09:00",
        "campaigns/december.yaml:{send_at: 13-01}: steps[0].send_at: '13-01 09:00' is not a date and time",
    ),
    "unknown segment": (
        "campaigns/december.yaml",
        "exclude_segments: [no-december]",
        "exclude_segments: [no-decmber]",
        "unknown segment 'no-decmber' (did you mean 'no-december'?)",
    ),
    "missing template": (
        "campaigns/december.yaml",
        "    template: circular",
        "    template: circulr",
        "campaigns/december.yaml:{template: circulr}: steps[0].template: no template 'circulr': "
        "templates/en/circulr.mjml does not exist (did you mean 'circular'?)",
    ),
    "malformed CSV": (
        "lists/contacts.csv",
        "ines.carvalho@example.com,Inês,Carvalho,Direitos Já,PT,en,member,,",
        'ines.carvalho@example.com,"Inês,Carvalho,Direitos Já,PT,en,member,,',
        "lists/contacts.csv:2: malformed CSV",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_clear_line_and_nothing_is_sent(workspace: Path, cli, case: str) -> None:
    rel, old, new, expected = BAD_INPUTS[case]
    _edit(workspace / rel, old, new)
    # "{text}" in the expectation stands for the line number where text is found after the edit
    lines = (workspace / rel).read_text(encoding="utf-8").splitlines()
    expected = re.sub(
        r"\{([^}]+)\}",
        lambda m: str(next(i for i, line in enumerate(lines, 1) if m.group(1) in line)),
        expected,
    )
    r = cli(workspace, *CIRCULAR, "--yes")
    assert r.exit_code == 1
    assert r.output.startswith("Error: ")
    assert expected in r.output.splitlines()[0] + " " + " ".join(r.output.splitlines()[1:3])
    assert "Traceback" not in r.output
    assert not emls(workspace)


def test_empty_list(workspace: Path, cli) -> None:
    (workspace / "lists" / "contacts.csv").write_text("email,first_name,relationship\n")
    r = cli(workspace, *CIRCULAR, "--yes")
    assert r.exit_code == 1
    assert r.output.startswith("Error: lists/contacts.csv: the contact list has no rows")


def test_locked_ledger(workspace: Path, cli, monkeypatch, backend: str) -> None:
    """Another process in the middle of a write: the send waits a while, then says so."""
    if backend != "sqlite":
        pytest.skip("SQLite's one-writer lock; PostgreSQL writers do not block each other")
    monkeypatch.setattr("outreach.store.sqlite.BUSY_TIMEOUT_MS", 200)
    holder = open_store(workspace)
    try:
        with holder.transaction():  # SQLite's write lock, held
            r = cli(workspace, *CIRCULAR, "--yes")
    finally:
        holder.close()
    assert r.exit_code == 1
    assert r.output.startswith("Error: ") and "the ledger is locked by another process" in r.output
    assert "Plan for" not in r.output  # refused before showing a plan that could not be sent
    assert not emls(workspace)


def test_a_second_concurrent_send_is_refused(workspace: Path, cli) -> None:
    holder = open_store(workspace)
    holder.acquire_send_lock("december")
    try:
        r = cli(workspace, *CIRCULAR, "--yes")
    finally:
        holder.close()
    assert r.exit_code == 1
    assert "another outreach send is running on this ledger" in r.output
    # who holds it, and since when: the coordinator can tell a stuck laptop from a live run
    assert re.search(r"\(campaign december, pid \d+ on [^,]+, since 20\d\d-", r.output), r.output
    assert not emls(workspace)


def test_outreach_db_url(workspace: Path, cli, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OUTREACH_DB", f"sqlite:///{tmp_path / 'elsewhere.db'}")
    cli(workspace, *CIRCULAR, "--yes", "--limit", "3")
    with Store.open(f"sqlite:///{tmp_path / 'elsewhere.db'}") as store:
        assert store.counts()["sends"] == 3
    monkeypatch.setenv("OUTREACH_DB", "mysql://root:hunter2@db.example.org/outreach")
    r = cli(workspace, *CIRCULAR, "--yes")
    assert r.exit_code == 1 and "unsupported database URL scheme 'mysql'" in r.output
    assert "hunter2" not in r.output and "mysql://root:***@db.example.org" in r.output
    assert len(r.output.strip().splitlines()) == 2  # the error and what to do


def test_missing_subject_language_falls_back_and_the_plan_says_so(workspace: Path, cli) -> None:
    path = workspace / "campaigns" / "december.yaml"
    text = path.read_text(encoding="utf-8")
    path.write_text(
        re.sub(r"\n      fr: Agissez en décembre[^\n]*", "", text, count=1), encoding="utf-8"
    )
    r = cli(workspace, *CIRCULAR, "--dry-run")
    assert r.exit_code == 0, r.output
    assert "contact(s) get the 'en' subject: the step has none in 'fr'" in r.output

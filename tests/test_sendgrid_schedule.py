"""Local-time steps through SendGrid: per-recipient send_at within 72 h, one SendGrid batch id
per step and run (stored in the ledger), recipients further ahead held, and cancelling."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from outreach.cli import main
from outreach.countries import CountryTable
from outreach.exclusions import Exclusion, Reason
from outreach.scheduled import cancel
from outreach.transports.sendgrid import SCHEDULE_AHEAD
from outreach.workspace import Workspace
from tests.sendgrid_fake import FakeSendGrid
from tests.sendgrid_helpers import (
    KEY,
    batches,
    copy_example,
    plan_only,
    rows,
    run_send,
    use_fake,
)

STEP = "human-rights-day"
DAY = date(2026, 12, 10)  # the shipped step: 09:00 local time on Human Rights Day
# two days before: everyone's 09:00 (UTC+14 to UTC-12) is ahead and within 72 h
NOW = datetime(2026, 12, 8, 12, 0, tzinfo=UTC)


@pytest.fixture
def fake(fake: FakeSendGrid) -> FakeSendGrid:
    """The fake SendGrid, whose clock (for the 72 h send_at limit) reads ``NOW``."""
    fake.clock = NOW.timestamp
    return fake


def example(tmp_path: Path) -> Path:
    return copy_example(tmp_path / "ws")


def local_nine(ws: Path, country: str | None, day: date) -> datetime:
    """09:00 on ``day`` in the contact's country (the campaign's timezone without a country)."""
    tz = "America/New_York"
    if country:
        c = CountryTable.load(ws / "lists/countries.csv").get(country)
        tz = c.timezone or tz
    return datetime.combine(day, time(9), tzinfo=ZoneInfo(tz))


def test_local_time_step_is_scheduled_per_recipient(
    tmp_path: Path, fake: FakeSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    day = DAY
    ws = example(tmp_path)
    use_fake(monkeypatch, fake.url)
    summary, plan = run_send(ws, "december", steps=(STEP,), now=NOW)
    sp = plan.steps[0]
    assert sp.held == 0 and summary.sent == len(sp.recipients) == 57
    assert any("scheduled (send_at, local time)" in n for n in sp.notes)
    # one SendGrid batch id for the step, created before the first hand-off, on every request
    assert len(fake.batch_ids) == 1
    bid = fake.batch_ids[0]
    assert [r.path for r in fake.requests[:1]] == ["/v3/mail/batch"]
    assert {r.json()["batch_id"] for r in fake.mail_requests} == {bid}
    assert {b["provider_batch_id"] for b in batches(ws)} == {bid}
    # each recipient's send_at is 09:00 in their country
    by_email = {r.contact.email: r.contact for r in sp.recipients}
    for m in fake.messages:
        want = local_nine(ws, by_email[m.to].country, day)
        assert m.send_at == int(want.timestamp()), m.to
    assert len({m.send_at for m in fake.messages}) > 5  # many time zones
    # the ledger keeps the intended local time
    for r in rows(ws):
        assert datetime.fromisoformat(r["send_at"]).time() == time(9)


def test_recipients_beyond_72_hours_are_held(
    tmp_path: Path, fake: FakeSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    day = DAY
    # pretend it is 71.5 h before 09:00 UTC that day: UTC+0 and east are in reach, the Americas not
    now = datetime.combine(day, time(9), tzinfo=UTC) - SCHEDULE_AHEAD
    fake.clock = now.timestamp
    ws = example(tmp_path)
    use_fake(monkeypatch, fake.url)
    summary, plan = run_send(ws, "december", steps=(STEP,), now=now)
    sp = plan.steps[0]
    horizon = now + SCHEDULE_AHEAD
    assert sp.held > 0 and summary.sent > 0 and summary.sent + sp.held == 57
    held = sp.exclusions[Exclusion(Reason.HELD)]
    assert held == sp.held
    for m in fake.messages:
        assert now.timestamp() < m.send_at <= horizon.timestamp()
        assert m.send_at - now.timestamp() <= 72 * 3600
    sent = {m.to for m in fake.messages}
    assert "lucia.fernandez@example.com" not in sent  # Argentina (UTC−3) waits for a later run
    # a later run picks up the rest, with a new batch id of its own
    later = now + timedelta(hours=15)
    fake.clock = later.timestamp
    summary, plan = run_send(ws, "december", steps=(STEP,), now=later)
    assert plan.steps[0].held == 0 and summary.sent == held
    assert len(fake.batch_ids) == 2
    assert fake.received_by() == Counter({e: 1 for e in fake.received_by()})
    assert sum(fake.received_by().values()) == 57


def test_cancel_stops_scheduled_messages_and_marks_them(
    tmp_path: Path, fake: FakeSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = example(tmp_path)
    use_fake(monkeypatch, fake.url)
    run_send(ws, "december", steps=(STEP,), now=NOW)
    bid = fake.batch_ids[0]
    preview = cancel(Workspace.open(ws), "december", STEP, now=NOW, dry_run=True)
    assert preview.cancelled == 57 and fake.scheduled == {}
    result = cancel(Workspace.open(ws), "december", STEP, now=NOW)
    assert result.cancelled == 57 and result.batches == [(bid, "cancelled", 57)]
    assert fake.scheduled == {bid: "cancel"}
    cancel_req = next(r for r in fake.requests if r.path == "/v3/user/scheduled_sends")
    assert cancel_req.json() == {"batch_id": bid, "status": "cancel"}
    assert fake.received_by() == Counter()  # nothing will be delivered
    assert {r["status"] for r in rows(ws)} == {"cancelled"}
    assert {b["status"] for b in batches(ws)} == {"cancelled"}
    # nothing left: no second call; and a new send does not resend them
    n = len(fake.requests)
    assert cancel(Workspace.open(ws), "december", STEP, now=NOW).nothing
    assert len(fake.requests) == n
    summary, plan = run_send(ws, "december", steps=(STEP,), now=NOW)
    assert summary.sent == 0
    assert plan.steps[0].exclusions[Exclusion(Reason.CANCELLED)] == 57
    again = plan_only(ws, "december", steps=(STEP,), resend_cancelled=True, now=NOW)
    assert len(again.steps[0].recipients) == 57 and again.steps[0].retrying == 57


def test_cancel_turns_a_pause_into_a_cancel(
    tmp_path: Path, fake: FakeSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = example(tmp_path)
    use_fake(monkeypatch, fake.url)
    run_send(ws, "december", steps=(STEP,), now=NOW)
    bid = fake.batch_ids[0]
    fake.scheduled[bid] = "pause"  # someone paused it in SendGrid's UI
    result = cancel(Workspace.open(ws), "december", STEP, now=NOW)
    assert result.batches == [(bid, "cancelled", 57)]
    assert fake.scheduled[bid] == "cancel"
    assert [r.method for r in fake.requests if "scheduled_sends" in r.path] == [
        "POST",
        "GET",
        "PATCH",
    ]


def test_cancel_command(
    tmp_path: Path, fake: FakeSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = example(tmp_path)
    use_fake(monkeypatch, fake.url)
    run_send(ws, "december", steps=(STEP,), now=NOW)
    runner = CliRunner()
    refused = runner.invoke(
        main, ["-C", str(ws), "cancel", "december", "--step", STEP, "--now", NOW.isoformat()]
    )
    assert refused.exit_code == 1 and "not cancelled" in refused.output
    assert fake.scheduled == {}
    done = runner.invoke(
        main,
        ["-C", str(ws), "cancel", "december", "--step", STEP, "--yes", "--now", NOW.isoformat()],
    )
    assert done.exit_code == 0, done.output
    assert "Cancelled 57 scheduled message(s) of step human-rights-day" in done.output
    again = runner.invoke(
        main,
        ["-C", str(ws), "cancel", "december", "--step", STEP, "--yes", "--now", NOW.isoformat()],
    )
    assert "Nothing to cancel" in again.output
    bad = runner.invoke(
        main,
        ["-C", str(ws), "cancel", "december", "--step", "nope", "--yes", "--now", NOW.isoformat()],
    )
    assert bad.exit_code == 1 and "has no step 'nope'" in bad.output
    assert KEY not in done.output + refused.output + again.output

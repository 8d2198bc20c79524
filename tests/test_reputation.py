"""The reputation guard: ``report`` shows each step's complaint and hard-bounce rates against
0.3 % and 2 %; when the previous step passed either, the next real ``send`` stops, says why and
names the segments and countries where the rate was highest; ``--force`` proceeds. Also the
readiness checks in the send plan, and the refusal of a real send on a failed check."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from outreach.events import ingest
from outreach.ledger import Ledger
from outreach.reputation import Level, assess, pct
from outreach.workspace import Workspace
from tests.dates import CIRCULAR_DUE, LAST_CALL_DUE
from tests.sendgrid_fake import FakeSendGrid
from tests.sendgrid_helpers import (
    copy_example,
    copy_fixture,
    edit,
    rows,
    run_send,
    sendgrid_event,
    use_fake,
)

T0 = 1796130000


@pytest.fixture
def sent(tmp_path: Path, fake: FakeSendGrid, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The December circular sent to the fake SendGrid (57 recipients), no events yet."""
    use_fake(monkeypatch, fake.url)
    root = copy_example(tmp_path / "ws")
    summary, _ = run_send(
        root, "december", steps=("circular",), now=datetime.fromisoformat(CIRCULAR_DUE)
    )
    assert summary.sent == 57
    return root


def events_for(root: Path, fake: FakeSendGrid, complain: set[str], bounce: set[str]) -> int:
    """Deliver every message except the bounced ones; the complainers report spam."""
    events, n = [], 0
    for m in fake.messages:
        n += 1
        if m.to in bounce:
            events.append(sendgrid_event(m, "bounce", T0, n, type="bounce", reason="550 5.1.1"))
            continue
        events.append(sendgrid_event(m, "delivered", T0, n))
        if m.to in complain:
            n += 1
            events.append(sendgrid_event(m, "spamreport", T0 + 600, n))
    ws = Workspace.open(root)
    with Ledger.open(ws.db_url(), ws.root) as ledger:
        return ingest(ledger, events, "import:test").stored


def newcomers(root: Path, n: int) -> list[dict]:
    return sorted((r for r in rows(root) if r["segment"] == "newcomers"), key=lambda r: r["email"])[
        :n
    ]


def send_last_call(cli, root: Path, *extra: str):
    return cli(root, "send", "december", "--step", "last-call", "--yes", "--skip-invalid",
               "--now", LAST_CALL_DUE, *extra)  # fmt: skip


# ------------------------------------------------------------------------------------------
# The guard


def test_guard_stops_the_next_step_and_names_segments_and_countries(
    sent: Path, fake: FakeSendGrid, cli
) -> None:
    complainers = newcomers(sent, 2)
    events_for(sent, fake, {r["email"] for r in complainers}, set())
    before = len(fake.mail_requests)
    r = send_last_call(cli, sent)
    assert r.exit_code == 1, r.output
    out = r.output
    assert "reputation guard: not sent: 1 readiness check(s) failed" in out
    assert (
        "✗ Reputation after step circular: complaints reached 0.30 %: complaints 3.5 % "
        "(2 of 57 delivered; limit 0.30 %), hard bounces 0.00 % (0 of 57 sent; limit 2.0 %)"
    ) in out
    n_new = sum(1 for x in rows(sent) if x["segment"] == "newcomers")
    assert f"segment newcomers: {pct(2 / n_new)} complaints (2 of {n_new})" in out
    for country in {c["country"] for c in complainers}:
        assert f"country {country}: " in out
    assert "--force sends anyway" in out
    assert len(fake.mail_requests) == before  # nothing was handed over
    # --force proceeds (the complainers themselves are suppressed)
    r = send_last_call(cli, sent, "--force")
    assert r.exit_code == 0, r.output
    got = {m.to for m in fake.messages[57:]}
    assert got and not got & {c["email"] for c in complainers}


def test_hard_bounces_alone_trip_the_guard(sent: Path, fake: FakeSendGrid, cli) -> None:
    bounced = {r["email"] for r in rows(sent)[:2]}
    events_for(sent, fake, set(), bounced)
    r = send_last_call(cli, sent)
    assert r.exit_code == 1
    assert "hard bounces reached 2.0 %: complaints 0.00 % (0 of 55 delivered" in r.output
    assert "hard bounces 3.5 % (2 of 57 sent; limit 2.0 %)" in r.output


def test_below_the_limits_the_next_step_goes(sent: Path, fake: FakeSendGrid, cli) -> None:
    events_for(sent, fake, set(), {rows(sent)[0]["email"]})  # 1 of 57 bounced: 1.75 %
    r = send_last_call(cli, sent)
    assert r.exit_code == 0, r.output
    assert "✓ Reputation after step circular: complaints 0.00 % (0 of 56 delivered" in r.output
    assert len(fake.messages) > 57


def test_without_delivery_events_the_guard_warns_but_does_not_stop(
    sent: Path, fake: FakeSendGrid, cli
) -> None:
    r = send_last_call(cli, sent)
    assert r.exit_code == 0, r.output
    assert "! Reputation after step circular: complaints unknown (0 with no delivery events)" in (
        r.output
    )
    assert "check the Event Webhook (outreach doctor)" in r.output


# ------------------------------------------------------------------------------------------
# The report


def test_report_shows_both_rates_against_the_limits(sent: Path, fake: FakeSendGrid, cli) -> None:
    complainers = newcomers(sent, 1)
    events_for(sent, fake, {complainers[0]["email"]}, {rows(sent)[-1]["email"]})
    r = cli(sent, "report", "december", "--format", "json")
    step = json.loads(r.output)["steps"][0]
    assert step["totals"]["hard_bounce_rate"] == round(1 / 57, 4)
    rep = step["reputation"]
    assert rep == {
        "complaint_rate": 1 / 56,
        "complaint_limit": 0.003,
        "complaint_target": 0.001,
        "hard_bounce_rate": 1 / 57,
        "hard_bounce_limit": 0.02,
        "level": "over",
        "hot_spots": rep["hot_spots"],
    }
    assert [h["dimension"] for h in rep["hot_spots"]][:1] == ["segment"]
    assert rep["hot_spots"][0]["value"] == "newcomers"
    assert all(h["rate_name"] == "complaint_rate" for h in rep["hot_spots"])
    table = cli(sent, "report", "december").output
    assert "✗ reputation: complaints 1.8 % (1 of 56 delivered; limit 0.30 %), hard bounces" in (
        " ".join(table.split())
    )
    assert "the next step will not be sent without --force" in " ".join(table.split())
    csv_header = cli(sent, "report", "december", "--format", "csv").output.splitlines()[0]
    assert csv_header.endswith(",spam_rate,hard_bounce_rate,link_url")


@pytest.mark.parametrize(
    "delivered, complaints, sent, hard, level",
    [
        (1000, 3, 1000, 0, Level.OVER),  # exactly 0.3 %: Gmail's "never reach"
        (10000, 29, 10000, 0, Level.WATCH),  # 0.29 %
        (10000, 9, 10000, 0, Level.OK),  # 0.09 %
        (1000, 0, 1000, 20, Level.OVER),  # exactly 2 % hard bounces
        (1000, 0, 1000, 19, Level.OK),
        (0, 0, 57, 0, Level.UNKNOWN),  # no delivery events
        (0, 0, 0, 0, Level.UNKNOWN),
    ],
)
def test_levels_at_the_limits(delivered, complaints, sent, hard, level) -> None:
    totals = {
        "sent": sent,
        "delivered": delivered,
        "spam_reports": complaints,
        "bounced_hard": hard,
    }
    assert assess("circular", totals, {}).level is level


def test_hot_spots_are_the_highest_rates_first() -> None:
    def row(value, delivered, complaints):
        return {"value": value, "sent": delivered, "delivered": delivered,
                "spam_reports": complaints, "bounced_hard": 0}  # fmt: skip

    by = {
        "segment": [row("members", 500, 2), row("allies", 100, 2), row("newcomers", 50, 0)],
        "country": [row(c, 100, i % 3) for i, c in enumerate(["AR", "BR", "CV", "DE", "ES"])],
    }
    health = assess("circular", {"sent": 650, "delivered": 650, "spam_reports": 4}, by)
    assert [(h.dimension, h.value) for h in health.hot_spots] == [
        ("segment", "allies"),
        ("segment", "members"),
        ("country", "CV"),
        ("country", "BR"),
        ("country", "ES"),
    ]
    assert health.where()[0] == "segment allies: 2.0 % complaints (2 of 100)"


# ------------------------------------------------------------------------------------------
# Readiness checks in the plan


@pytest.fixture
def sg(tmp_path: Path, fake: FakeSendGrid, monkeypatch: pytest.MonkeyPatch) -> Path:
    use_fake(monkeypatch, fake.url)
    root = copy_fixture(tmp_path / "ws")
    edit(
        root / "campaigns/sg.yaml",
        "  mailto: unsub@example.org\n",
        "  mailto: unsub@example.org\n  todo: deploy the server first\n",
    )
    return root


def test_real_send_stops_on_a_failed_check_and_force_proceeds(
    sg: Path, fake: FakeSendGrid, cli
) -> None:
    args = ("send", "sg", "--yes", "--allow-late", "--now", "2026-01-05T10:00:00+00:00")
    r = cli(sg, *args)
    assert r.exit_code == 1
    assert "Readiness (a real send stops on ✗ unless --force):" in r.output
    assert "✗ Unsubscribe endpoint: marked not deployed yet (deploy the server first)" in r.output
    assert "Error: not sent: 1 readiness check(s) failed; nothing was handed to SendGrid" in (
        r.output
    )
    assert fake.mail_requests == []
    r = cli(sg, *args, "--force")
    assert r.exit_code == 0, r.output
    assert len(fake.received_by()) == 7


def test_test_sends_and_the_outbox_are_not_stopped(sg: Path, fake: FakeSendGrid, cli) -> None:
    now = ("--now", "2026-01-05T10:00:00+00:00")
    r = cli(sg, "send", "sg", "--test-to", "staff@example.org", "--yes", *now)
    assert r.exit_code == 0, r.output
    assert {m.to for m in fake.messages} == {"staff@example.org"}
    r = cli(sg, "send", "sg", "--transport", "outbox", "--yes", *now)
    assert r.exit_code == 0, r.output
    assert "Readiness (a real send would stop on ✗):" in r.output
    assert "Reputation" not in r.output  # nothing is emailed: no reputation to guard

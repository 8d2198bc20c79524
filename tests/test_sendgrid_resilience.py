"""SendGrid transport under trouble: 429, 5xx, timeouts, resets, refused connections, 400, 401,
403, 413, pauses after consecutive failures, unknown outcomes, and the key never leaking."""

from __future__ import annotations

import logging
import socket
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from outreach import console as console_mod
from outreach.cli import main
from outreach.exclusions import Exclusion, Reason
from outreach.executor import PAUSE_AFTER
from outreach.send import QuietUI
from tests.sendgrid_fake import FakeSendGrid
from tests.sendgrid_helpers import KEY, Sleeps, copy_fixture, rows, use_fake
from tests.sendgrid_helpers import run_send as _run_send


def run_send(*args, **kw):
    """One request at a time: these tests count each request's attempts and sleeps (the
    concurrent cases are in test_concurrency.py)."""
    kw.setdefault("concurrency", 1)
    return _run_send(*args, **kw)


EVERYONE = Counter(
    {
        "ana@example.org": 1,
        "ben@example.org": 1,
        "chloe@example.org": 1,
        "dev@example.org": 1,
        "eve@example.org": 1,
        "femi@example.org": 1,
        "gus@example.org": 1,
    }
)
BATCHES = 6  # the fixture's plan: six requests (batch_size 2; one variant has two recipients)


@pytest.fixture
def sg(tmp_path: Path, fake: FakeSendGrid, monkeypatch: pytest.MonkeyPatch) -> Path:
    use_fake(monkeypatch, fake.url)
    return copy_fixture(tmp_path / "ws")


def printed(summary) -> str:
    """What the CLI prints for a summary."""
    saved = console_mod.console
    console_mod.console = Console(record=True, width=200, force_terminal=False)
    try:
        console_mod.print_summary(summary)
        return console_mod.console.export_text()
    finally:
        console_mod.console = saved


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ------------------------------------------------------------------------------------------
# Waiting and retrying


def test_429_waits_until_the_rate_limit_resets(sg: Path, fake: FakeSendGrid) -> None:
    fake.queue((429, 7))
    sleeps, ui = Sleeps(), QuietUI(True)

    def same_clock(t) -> None:  # SendGrid's clock and ours agree (else the set-up time counts)
        t.clock = fake.clock

    summary, _ = run_send(sg, "sg", steps=("note",), sleep=sleeps, ui=ui, configure=same_clock)
    assert summary.sent == 7 and not summary.paused
    assert len(sleeps) == 1 and 5.5 <= sleeps[0] <= 8.0  # the reset is in whole seconds
    assert "rate limit was reached (429); waiting until" in ui.notes[0]
    assert fake.received_by() == EVERYONE
    assert len(fake.mail_requests) == BATCHES + 1


def test_5xx_is_retried_with_capped_exponential_backoff_and_jitter(
    sg: Path, fake: FakeSendGrid
) -> None:
    fake.queue(500, 503, 502, 500, 500, 500, 500)  # seven failures, then 202

    def configure(t) -> None:
        t.retries, t.backoff, t.max_backoff = 8, 1.0, 4.0

    sleeps = Sleeps()
    summary, _ = run_send(sg, "sg", steps=("note",), sleep=sleeps, configure=configure)
    assert summary.sent == 7 and summary.failed == 0
    caps = [1, 2, 4, 4, 4, 4, 4]  # 1·2^(n-1), capped at max_backoff
    assert len(sleeps) == len(caps)
    for delay, cap in zip(sleeps, caps, strict=True):
        assert cap / 2 <= delay <= cap  # "equal jitter"
    assert len(set(sleeps[2:])) > 1  # jitter: the capped delays are not all the same
    # the failed attempts were not accepted: one copy each
    assert fake.received_by() == EVERYONE
    # every attempt at the first batch sent the same body
    assert len({r.body for r in fake.mail_requests[:8]}) == 1


def test_consecutive_failures_pause_the_run_and_rerun_resumes(sg: Path, fake: FakeSendGrid) -> None:
    fake.queue(*[500] * 100)
    sleeps = Sleeps()
    summary, _ = run_send(sg, "sg", steps=("note",), sleep=sleeps, retries=1)
    assert summary.paused and f"paused after {PAUSE_AFTER} failed batches" in summary.paused
    assert len(fake.mail_requests) == PAUSE_AFTER * 2  # two attempts per batch, then the pause
    assert len(sleeps) == PAUSE_AFTER
    failed = rows(sg)
    assert {r["status"] for r in failed} == {"failed"}
    tried = [r for r in failed if "gave up after 2 attempts" in r["error"]]
    assert len(tried) == summary.failed
    # batches prepared ahead were never handed off, and say so
    released = [r for r in failed if r not in tried]
    assert len(released) == summary.released and released
    assert all(r["error"] == "not handed off: the run paused first" for r in released)
    out = printed(summary)
    assert "run the same command again to resume" in out
    assert "SendGrid had a server error (500" in out
    # resume: the failed and the never-attempted recipients, once each
    fake.script.clear()
    summary, plan = run_send(sg, "sg", steps=("note",))
    assert plan.steps[0].retrying == len(failed)
    assert summary.sent == 7 and not summary.paused
    assert fake.received_by() == EVERYONE
    assert {r["status"] for r in rows(sg)} == {"sent"}


def test_refused_connection_is_retried_then_given_up(
    sg: Path, fake: FakeSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_fake(monkeypatch, f"http://127.0.0.1:{closed_port()}")
    sleeps = Sleeps()
    summary, _ = run_send(sg, "sg", steps=("note",), sleep=sleeps, retries=2)
    assert len(sleeps) == PAUSE_AFTER * 2
    failed = sum(1 for r in rows(sg) if r["status"] == "failed")
    assert summary.paused and summary.failed + summary.released == failed
    assert "connection refused" in summary.steps[0].errors[0]
    assert "nothing was sent" in summary.steps[0].errors[0]


# ------------------------------------------------------------------------------------------
# Unknown outcomes


@pytest.mark.parametrize(
    "answer, accepted", [("hang", True), ("accept-drop", True), ("drop", False)]
)
def test_no_answer_after_sending_is_unknown_and_resent_only_on_request(
    sg: Path, fake: FakeSendGrid, answer: str, accepted: bool
) -> None:
    fake.hang = 3.0
    fake.queue(202, answer)  # the second request (two recipients) gets no answer
    summary, plan = run_send(sg, "sg", steps=("note",), timeout=0.5)
    lost = {r.contact.email for r in plan.steps[0].batches[1].recipients}
    assert lost == {"ben@example.org", "femi@example.org"}
    assert summary.unknown == 2 and summary.sent == 5 and not summary.paused
    assert "no answer came" in summary.steps[0].errors[0]
    unknown = {r["email"] for r in rows(sg, status="unknown")}
    assert unknown == lost
    want = EVERYONE if accepted else EVERYONE - Counter(lost)
    assert fake.received_by() == want
    # a plain re-run does not resend them
    summary, plan = run_send(sg, "sg", steps=("note",))
    assert summary.sent == 0
    assert plan.steps[0].exclusions[Exclusion(Reason.UNKNOWN_OUTCOME)] == 2
    assert fake.received_by() == want
    # --resend-unknown does
    summary, _ = run_send(sg, "sg", steps=("note",), resend_unknown=True)
    assert summary.sent == 2
    assert fake.received_by() == want + Counter(lost)
    assert {r["status"] for r in rows(sg)} == {"sent"}


# ------------------------------------------------------------------------------------------
# Errors that stop, in plain words


def test_400_for_one_recipient_fails_only_that_batch(sg: Path, fake: FakeSendGrid) -> None:
    error = {
        "field": "personalizations.1.to.0.email",
        "message": "Does not contain a valid address.",
    }
    fake.queue(202, (400, {"errors": [error]}))
    summary, _ = run_send(sg, "sg", steps=("note",))
    assert summary.failed == 2 and summary.sent == 5 and not summary.paused
    text = summary.steps[0].errors[0]
    assert "SendGrid rejected batch" in text and "(2 recipients" in text
    assert "recipient femi@example.org (lists/contacts.csv:7" in text
    assert "the recipient address — Does not contain a valid address." in text
    assert "fix these contacts in the list" in text


def test_400_on_a_campaign_setting_stops_and_points_at_the_file(
    sg: Path, fake: FakeSendGrid
) -> None:
    error = {
        "field": "from.email",
        "message": "The from address does not match a verified Sender Identity.",
    }
    fake.queue((400, {"errors": [error]}))
    summary, _ = run_send(sg, "sg", steps=("note",))
    assert summary.paused and summary.paused.startswith("stopped: SendGrid rejected batch")
    assert len(fake.mail_requests) == 1
    text = summary.steps[0].errors[0]
    assert text.startswith("campaigns/sg.yaml:")  # the line of sender.from_email
    assert "sender.from_email" in text
    assert "the sender address (from.email): The from address does not match" in text
    attempted = [r for r in rows(sg) if "not handed off" not in r["error"]]
    assert len(attempted) == 1 and attempted[0]["status"] == "failed"


@pytest.mark.parametrize(
    "status, phrase, hint",
    [
        (401, "did not accept the API key (401", "SENDGRID_API_KEY"),
        (403, "(403 Forbidden", "verified sender"),
        (413, "too large (413", "lower sendgrid.batch_size (now 2)"),
    ],
)
def test_401_403_413_stop_the_run(
    sg: Path, fake: FakeSendGrid, status: int, phrase: str, hint: str
) -> None:
    fake.queue(status)
    summary, _ = run_send(sg, "sg", steps=("note",))
    assert len(fake.mail_requests) == 1
    assert summary.paused and summary.paused.startswith("stopped:")
    text = summary.steps[0].errors[0]
    assert phrase in text and hint in text
    assert KEY not in text
    out = printed(summary)
    assert phrase in out


def test_wrong_key_stops_at_the_first_request(
    sg: Path, fake: FakeSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_fake(monkeypatch, fake.url, key="SG.wrong-key-0123456789")
    summary, _ = run_send(sg, "sg", steps=("note",))
    assert len(fake.mail_requests) == 1
    assert "401" in summary.paused and "SG.wrong-key-0123456789" not in printed(summary)


# ------------------------------------------------------------------------------------------
# The key never leaks


def test_key_is_redacted_everywhere(
    sg: Path, fake: FakeSendGrid, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # python_http_client logs request headers at DEBUG
    echo = {"errors": [{"message": f"bad key {KEY}", "field": None}]}
    fake.queue((500, echo), (400, echo))
    summary, _ = run_send(sg, "sg", steps=("note",))
    assert summary.paused
    assert "[redacted]" in caplog.text  # the Authorization header was logged, scrubbed
    assert KEY not in caplog.text
    assert KEY not in printed(summary)
    assert all(KEY not in e for e in summary.steps[0].errors)
    assert "bad key [redacted]" in summary.steps[0].errors[0]
    for name in ("outreach.db", "outreach.db-wal"):
        path = sg / ".outreach" / name
        if path.exists():
            assert KEY.encode() not in path.read_bytes()


def test_key_is_redacted_in_cli_output(sg: Path, fake: FakeSendGrid) -> None:
    fake.queue((401, {"errors": [{"message": f"key {KEY} revoked", "field": None}]}))
    result = CliRunner().invoke(
        main,
        ["-C", str(sg), "send", "sg", "--step", "note", "--yes", "--allow-late"],
        catch_exceptions=False,
    )
    assert result.exit_code == 1
    assert "401" in result.output and "key [redacted] revoked" in result.output
    assert KEY not in result.output


def test_bad_settings_are_explained(sg: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from outreach.exceptions import ConfigError
    from outreach.send import load
    from outreach.transports import make_transport
    from outreach.workspace import Workspace

    campaign = load(Workspace.open(sg), "sg").campaign
    monkeypatch.setenv("SENDGRID_TIMEOUT", "soon")
    with pytest.raises(ConfigError, match="SENDGRID_TIMEOUT 'soon' is not a number"):
        make_transport(Workspace.open(sg), campaign, "sendgrid")
    monkeypatch.delenv("SENDGRID_TIMEOUT")
    monkeypatch.setenv("SENDGRID_API_HOST", "api.sendgrid.com")
    with pytest.raises(ConfigError, match="is not an http"):
        make_transport(Workspace.open(sg), campaign, "sendgrid")
    monkeypatch.delenv("SENDGRID_API_KEY")
    with pytest.raises(ConfigError, match="SENDGRID_API_KEY is not set"):
        make_transport(Workspace.open(sg), campaign, "sendgrid")

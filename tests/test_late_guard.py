"""The late-send guard: a real send more than 24 h overdue asks again; --yes is not enough."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.sendgrid_fake import FakeSendGrid
from tests.sendgrid_helpers import KEY, copy_example, use_fake

LATE = "2026-12-05T12:00:00+00:00"  # the circular was due on 1 December


@pytest.fixture
def ws(tmp_path: Path, fake: FakeSendGrid, monkeypatch: pytest.MonkeyPatch) -> Path:
    use_fake(monkeypatch, fake.url)
    return copy_example(tmp_path / "ws")


def test_overdue_real_send_is_refused_without_allow_late(ws: Path, fake: FakeSendGrid, cli) -> None:
    r = cli(ws, "send", "december", "--step", "circular", "--skip-invalid", "--yes", "--now", LATE)
    assert r.exit_code == 1
    assert "OVERDUE" in r.output
    assert (
        "late-send guard: circular (due 2026-12-01 09:00 EST) is overdue; nothing was sent"
        in r.output
    )
    assert "--allow-late" in r.output
    assert not [q for q in fake.requests if q.path == "/v3/mail/send"]


def test_overdue_real_send_asks_at_a_terminal(ws: Path, fake: FakeSendGrid, monkeypatch) -> None:
    from outreach.console import RichUI
    from outreach.send import SendOptions, send
    from outreach.workspace import Workspace

    class Answers(RichUI):
        def __init__(self, answers: list[bool]) -> None:
            super().__init__(interactive=True)
            self.questions: list[str] = []
            self.answers = answers

        def confirm(self, question: str) -> bool:
            self.questions.append(question)
            return self.answers.pop(0)

    from datetime import datetime

    ui = Answers([True])
    options = SendOptions(
        steps=("circular",), skip_invalid=True, yes=True, now=datetime.fromisoformat(LATE)
    )
    summary = send(Workspace.open(ws), "december", options, ui)
    assert ui.questions == [
        "Late-send guard: circular (due 2026-12-01 09:00 EST) is more than 24 h overdue. Send anyway?"
    ]
    assert summary.sent > 0


def test_allow_late_sends(ws: Path, fake: FakeSendGrid, cli) -> None:
    r = cli(
        ws,
        "send",
        "december",
        "--step",
        "circular",
        "--skip-invalid",
        "--yes",
        "--allow-late",
        "--now",
        LATE,
    )
    assert r.exit_code == 0, r.output
    assert [q for q in fake.requests if q.path == "/v3/mail/send"]


def test_the_outbox_has_no_late_guard(tmp_path: Path, cli, monkeypatch) -> None:
    for var in ("SENDGRID_API_KEY", "SENDGRID_API_HOST"):
        monkeypatch.delenv(var, raising=False)
    ws = copy_example(tmp_path / "ws2")
    r = cli(ws, "send", "december", "--step", "circular", "--skip-invalid", "--yes", "--now", LATE)
    assert r.exit_code == 0, r.output
    assert list((ws / "outbox" / "december" / "2026" / "circular").glob("*.eml"))


def test_the_key_never_appears(ws: Path, fake: FakeSendGrid, cli) -> None:
    r = cli(
        ws,
        "send",
        "december",
        "--step",
        "circular",
        "--skip-invalid",
        "--yes",
        "--allow-late",
        "--now",
        LATE,
    )
    assert KEY not in r.output
    assert KEY not in (ws / ".outreach" / "outreach.db").read_bytes().decode("latin-1")

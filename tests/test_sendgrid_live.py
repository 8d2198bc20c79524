"""Against the real SendGrid API, in sandbox mode (validated, nothing delivered).

Runs only with ``SENDGRID_API_KEY`` in the environment (a key with Mail Send permission). The
sender is the example campaign's (op-icescr@escr-net.org) unless ``OUTREACH_LIVE_FROM`` names
another verified sender of that account.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.sendgrid_helpers import copy_fixture, edit, rows, run_send

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(not os.environ.get("SENDGRID_API_KEY"), reason="needs SENDGRID_API_KEY"),
]


def test_sandbox_send_is_accepted_by_sendgrid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SENDGRID_API_HOST", raising=False)
    monkeypatch.delenv("OUTREACH_DB", raising=False)
    ws = copy_fixture(tmp_path / "ws")
    edit(
        ws / "campaigns/sg.yaml",
        "from_email: sender@example.org",
        f"from_email: {os.environ.get('OUTREACH_LIVE_FROM', 'op-icescr@escr-net.org')}",
    )
    edit(ws / "campaigns/sg.yaml", "  batch_size: 2\n", "  batch_size: 1000\n  sandbox: true\n")
    summary, plan = run_send(ws, "sg", steps=("note",))
    assert summary.transport == "sendgrid-sandbox"
    assert summary.failed == summary.unknown == 0, summary.steps[0].errors
    assert summary.sent == len(plan.steps[0].recipients)
    assert summary.requests == len(plan.steps[0].variants)
    assert {r["status"] for r in rows(ws)} == {"sent"}

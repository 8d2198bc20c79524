"""The whole loop through SendGrid: send the example campaign to the fake SendGrid, turn what it
received into the signed events SendGrid would post (custom_args copied into each event,
``sg_message_id`` built from the X-Message-Id), POST them to a real ``outreach serve``,
then check ``outreach report --format json`` and the plan of the follow-up step."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from outreach.exclusions import Exclusion, Reason
from outreach.ledger import Ledger
from outreach.send import SendOptions, prepare
from outreach.workspace import Workspace
from tests.dates import CIRCULAR_DUE, LAST_CALL_DUE
from tests.sendgrid_fake import FakeSendGrid
from tests.sendgrid_helpers import KEY, copy_example, run_send, sendgrid_event, use_fake
from tests.tracking_support import Signer, http, run_server

pytestmark = pytest.mark.slow


def test_sendgrid_send_events_report_and_follow_up(tmp_path: Path, monkeypatch) -> None:
    ws = copy_example(tmp_path / "ws")
    with FakeSendGrid(key=KEY) as fake:
        use_fake(monkeypatch, fake.url)
        summary, plan = run_send(ws, "december", steps=("circular",))
        msgs = sorted(fake.messages, key=lambda m: m.to)
    assert summary.sent == len(msgs) == 57
    assert len([r for r in fake.requests if r.path == "/v3/mail/send"]) == len(
        plan.steps[0].batches
    )

    t0 = int(datetime.fromisoformat(CIRCULAR_DUE).timestamp()) + 3600  # events of the 2026 edition
    opener, proxy_only, clicker, bouncer, unsub = msgs[0], msgs[1], msgs[2], msgs[3], msgs[4]
    events = [sendgrid_event(m, "delivered", t0, i) for i, m in enumerate(msgs) if m is not bouncer]
    events += [
        sendgrid_event(bouncer, "bounce", t0, 100, type="bounce", reason="550 no such user"),
        sendgrid_event(opener, "open", t0 + 60, 101, sg_machine_open=False),
        sendgrid_event(proxy_only, "open", t0 + 60, 102, sg_machine_open=True),
        sendgrid_event(clicker, "click", t0 + 90, 103, url=plan.campaign.links["model_letter"].url),
        sendgrid_event(unsub, "unsubscribe", t0 + 120, 104),
    ]
    data = json.dumps(events).encode()
    signer = Signer.new()
    with run_server(ws, {"SENDGRID_WEBHOOK_PUBLIC_KEY": signer.public_b64}) as server:
        status, _h, body = http(server.port, "POST", "/events", data, signer.headers(data))
        assert status == 200, body
        assert json.loads(body) == {"stored": len(events), "duplicates": 0, "unmatched": 0}
        # SendGrid retries: the same batch again is acknowledged and not stored twice
        status, _h, body = http(server.port, "POST", "/events", data, signer.headers(data))
        assert json.loads(body)["duplicates"] == len(events)
        # a forged batch is refused
        forged = data.replace(b'"delivered"', b'"spamreport"', 1)
        assert http(server.port, "POST", "/events", forged, signer.headers(data))[0] == 403

    out = subprocess.run(
        [sys.executable, "-m", "outreach", "-C", str(ws), "report", "december", "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    rep = json.loads(out.stdout)
    assert rep["events"] == {"matched": len(events), "unmatched": 0}
    [circ] = rep["steps"]
    totals = circ["totals"]
    assert (totals["sent"], totals["delivered"], totals["bounced_hard"]) == (57, 56, 1)
    assert (totals["opens_unique"], totals["machine_opens_unique"]) == (1, 1)
    assert (totals["clicks_unique"], totals["unsubscribes"]) == (1, 1)

    # the follow-up: everyone who received the circular except the human opener and the
    # clicker (a click implies a person), and except the suppressed bounce and unsubscribe
    with Ledger.open(Workspace.open(ws).db_url(), ws) as ledger:
        last = prepare(
            Workspace.open(ws),
            "december",
            SendOptions(
                steps=("last-call",),
                dry_run=True,
                skip_invalid=True,
                transport="sendgrid",
                now=datetime.fromisoformat(LAST_CALL_DUE),
            ),
            ledger,
        )
    to = {r.contact.email for r in last.steps[0].recipients}
    assert proxy_only.to in to  # a machine open is not an open
    assert not to & {opener.to, clicker.to, bouncer.to, unsub.to}
    assert len(to) == 57 - 4
    assert last.steps[0].exclusions[Exclusion(Reason.SUPPRESSED, "bounce")] == 1
    assert last.steps[0].exclusions[Exclusion(Reason.SUPPRESSED, "unsubscribe")] == 1

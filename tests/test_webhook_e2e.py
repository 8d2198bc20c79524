"""The real ``outreach serve`` in a subprocess (uvicorn, h11, real sockets): it commits before it
answers 2xx (proved by SIGKILLing it right after the answers), real HTTP edge cases that only a
real server sees (a client that hangs up mid-body, a chunked body over the limit), and the
old ``events serve`` name with several workers. Each route's behaviour in detail is tested
through Starlette's TestClient (test_web_*.py)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys

import pytest

from outreach.ledger import Ledger
from tests.dates import webhook_now
from tests.tracking_support import body, circular_batches, http, run_server

pytestmark = [pytest.mark.slow, pytest.mark.both_backends]

ONE_CLICK = {"Content-Type": "application/x-www-form-urlencoded"}


def post(server, signer, data: bytes, **kw):
    return http(server.port, "POST", "/events", data, signer.headers(data), **kw)


def test_the_real_server_commits_before_it_answers(sent_ws, circular_rows, signer) -> None:
    root = sent_ws.root
    b1, b2, b3 = circular_batches(circular_rows)
    key = {"SENDGRID_WEBHOOK_PUBLIC_KEY": signer.public_b64}
    with run_server(root, key, "--max-body", "200000") as server:
        for batch in (b1, b2, b3):
            status, _h, resp = post(server, signer, body(batch))
            assert status == 200, resp
            assert json.loads(resp)["stored"] == len(batch)
        sid = circular_rows[13]["send_id"]
        status, _h, page = http(
            server.port, "POST", f"/u/{sid}", b"List-Unsubscribe=One-Click", ONE_CLICK
        )
        assert status == 200 and b"<!doctype html>" in page
        # answered, so committed: kill it now, with no chance to flush anything
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(timeout=30)
    with Ledger.open(sent_ws.db_url(), root) as ledger:
        # every event of a 2026 message (the two strays match none) and the unsubscribe
        assert ledger.events_count("december", 2026) == len(b1) + len(b2) - 2 + len(b3) + 1
        assert ledger.suppressed()[circular_rows[13]["email"].lower()] == "unsubscribe"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "outreach",
            "-C",
            str(root),
            "report",
            "december",
            "--format",
            "json",
            "--now",
            webhook_now().isoformat(),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    totals = json.loads(out.stdout)["steps"][0]["totals"]
    assert (totals["sent"], totals["delivered"], totals["opens_unique"]) == (57, 53, 20)
    assert (totals["clicks_unique"], totals["unsubscribes"]) == (9, 3)


def test_what_only_a_real_server_sees(sent_ws, signer) -> None:
    """Raw HTTP: a forged batch, a client that dies mid-body, a chunked body over the limit."""
    key = {"SENDGRID_WEBHOOK_PUBLIC_KEY": signer.public_b64}
    events = [
        {"event": "open", "email": "a@example.org", "sg_event_id": f"e{i}"} for i in range(50)
    ]
    whole = body(events)
    with run_server(sent_ws.root, key, "--max-body", "2000") as server:
        small = body(events[:5])
        forged = small.replace(b'"open"', b'"spamreport"', 1)
        assert http(server.port, "POST", "/events", forged, signer.headers(small))[0] == 403
        status, _h, _b = http(
            server.port,
            "POST",
            "/events",
            small[:20],
            signer.headers(small),
            content_length=len(small),
        )
        assert status in (400, 0)  # 0: the answer may not reach a client that hung up
        assert post(server, signer, whole, chunked=True)[0] == 413
        assert post(server, signer, whole)[0] == 413
        assert post(server, signer, small)[0] == 200
        assert http(server.port, "GET", "/healthz")[:3:2] == (200, b"ok\n")
    log = server.log
    assert "rejected 403 bad-signature" in log
    assert "truncated=1" in log or "bad-json=1" in log
    assert re.search(r"worker \d+ stopped: 1 batch\(es\), 5 event\(s\), 5 stored", log), log[-2000:]


def test_the_old_name_with_workers_and_no_verification(sent_ws) -> None:
    with run_server(
        sent_ws.root,
        {},
        "--insecure-no-verify",
        "--workers",
        "2",
        command=("events", "serve"),
    ) as server:
        stored = 0
        for i in range(6):
            data = body([{"event": "open", "email": "a@example.org", "sg_event_id": f"x{i}"}])
            status, _h, resp = http(server.port, "POST", "/events", data)
            assert status == 200, resp
            stored += json.loads(resp)["stored"]
        assert stored == 6
        assert http(server.port, "GET", "/healthz")[0] == 200
    assert server.proc.returncode is not None
    log = server.log
    assert "`outreach events serve` is now `outreach serve`" in log
    assert "SIGNATURE VERIFICATION IS OFF" in log and "2 worker(s)" in log
    assert log.count("UNVERIFIED webhook request accepted") == 6
    workers = set(re.findall(r"worker (\d+) started", log))
    assert len(workers) == 2, log[-3000:]
    stopped = re.findall(r"worker (\d+) stopped: \d+ batch\(es\), (\d+) event", log)
    assert {pid for pid, _n in stopped} == workers  # each worker ran its lifespan to the end
    assert sum(int(n) for _pid, n in stopped) == 6
    assert "stopped parent process" in log

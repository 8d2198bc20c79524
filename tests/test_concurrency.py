"""Several SendGrid requests in flight at once, against the fake with scripted latency and
faults: the same ledger and messages as one at a time, a SIGKILL leaves at most N batches
unknown (and nobody gets a message twice), a 429 storm makes every worker wait, a request that
hangs past the timeout does not hold the others up."""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest

from outreach.send import QuietUI, clock_from
from tests.dates import CIRCULAR_DUE
from tests.sendgrid_fake import FakeSendGrid
from tests.sendgrid_helpers import (
    KEY,
    batches,
    copy_example,
    edit,
    finish_send,
    rows,
    run_send,
    start_send,
    use_fake,
)
from tests.waiting import wait_until

VALID = 57  # valid contacts of the shipped example list


def example(root: Path, batch_size: int) -> Path:
    """The shipped example with small requests, so that one send makes many of them."""
    copy_example(root)
    edit(
        root / "campaigns/december.yaml",
        "  sandbox: false",
        f"  sandbox: false\n  batch_size: {batch_size}",
    )
    return root


@pytest.fixture
def ws(tmp_path: Path, fake: FakeSendGrid, monkeypatch: pytest.MonkeyPatch) -> Path:
    use_fake(monkeypatch, fake.url)
    return example(tmp_path / "ws", 2)


def handed_off_batches(root: Path) -> list[dict]:
    return [b for b in batches(root) if b["status"] == "pending"]


# ------------------------------------------------------------------------------------------
# One at a time and eight at a time: the same result


def _ledger_view(root: Path) -> list[tuple]:
    keep = ("contact_id", "email", "step", "status", "variant", "segment", "country_status")
    return sorted(tuple(r[k] for k in keep) for r in rows(root))


def _delivered_view(fake: FakeSendGrid) -> list[tuple]:
    """Each message as its recipient sees it, with its (random) send id replaced by SID."""
    out = []
    for m in fake.messages:
        sid = m.custom_args["send_id"]

        def norm(text: str, sid: str = sid) -> str:
            return text.replace(sid, "SID")

        args = {k: norm(v) for k, v in m.custom_args.items()}
        headers = {k: norm(v) for k, v in m.headers.items()}
        what = (m.to, m.name, m.subject, norm(m.html), norm(m.text))
        out.append((*what, sorted(args.items()), sorted(headers.items()), tuple(m.categories)))
    return sorted(out)


def test_concurrency_1_and_8_give_the_same_ledger_and_messages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = clock_from(datetime.fromisoformat(CIRCULAR_DUE))
    seen = {}
    for n in (1, 8):
        # at 8, answers slow enough that the next requests surely leave meanwhile, even on a
        # loaded machine (the in-flight count below is what this run proves)
        with FakeSendGrid(key=KEY, clock=clock, delay=0.03 if n == 1 else 1.0) as fake:
            use_fake(monkeypatch, fake.url)
            root = example(tmp_path / f"c{n}", 2)
            summary, plan = run_send(root, "december", steps=("circular",), concurrency=n)
            assert summary.sent == VALID and summary.concurrency == n
            assert not (summary.failed or summary.unknown or summary.paused)
            assert len(fake.mail_requests) == len(plan.steps[0].batches) > 20
            assert fake.max_in_flight == 1 if n == 1 else 2 <= fake.max_in_flight <= n
            assert fake.received_by() == Counter(
                {r.contact.email.lower(): 1 for r in plan.steps[0].recipients}
            )
            seen[n] = (_ledger_view(root), _delivered_view(fake))
    assert seen[1][0] == seen[8][0]  # the same ledger
    assert seen[1][1] == seen[8][1]  # the same messages, byte for byte
    assert len(seen[8][1]) == VALID


# ------------------------------------------------------------------------------------------
# Rate limits and hangs


def test_a_429_storm_makes_every_worker_wait_until_the_reset(ws: Path, fake: FakeSendGrid) -> None:
    fake.delay = 0.2
    # the first three requests are answered after 1 s; the 4th starts 3 s of 429s (every request
    # arriving meanwhile gets one), answered after 0.2 s: when the three workers whose requests
    # went well are free again, the rate limit is still on, and they must not try
    slow = ("after", 1.0, 202)
    fake.queue(slow, slow, slow, ("storm", 3))
    ui = QuietUI(True)
    summary, _ = run_send(ws, "december", steps=("circular",), sleep=time.sleep, ui=ui)
    assert summary.sent == VALID and not summary.paused and summary.failed == 0
    assert fake.received_by() == Counter(set(fake.received_by()))  # once each
    assert sum(fake.received_by().values()) == VALID
    limited = [r for r in fake.mail_requests if r.status == 429]
    first = min(limited, key=lambda r: r.answered)
    # only requests already on their way when the first 429 came back were rate-limited …
    assert 1 <= len(limited) <= 8
    assert all(r.arrived <= first.answered + 0.25 for r in limited)
    # … and none started until the reset: no worker kept hammering
    storm_end = min(r.arrived for r in limited) + 3
    assert not [r for r in fake.mail_requests if first.answered + 0.25 < r.arrived < storm_end]
    assert [r for r in fake.mail_requests if r.arrived > storm_end]  # then the run went on
    assert any("rate limit" in note for note in ui.notes)


def test_a_request_that_hangs_past_the_timeout_does_not_hold_up_the_others(
    ws: Path, fake: FakeSendGrid
) -> None:
    fake.delay, fake.hang = 0.05, 4.0
    fake.queue(202, "hang")  # the second request is accepted, then answered after 4 s
    summary, _ = run_send(ws, "december", steps=("circular",), timeout=1.0, concurrency=4)
    hung = [r for r in fake.mail_requests if r.answered == 0 or r.answered - r.arrived > 3]
    assert len(hung) == 1
    size = len(hung[0].json()["personalizations"])
    assert summary.unknown == size and summary.sent == VALID - size and not summary.paused
    # the others went on while it hung: answers came back before its timeout
    during = [
        r
        for r in fake.mail_requests
        if r is not hung[0] and hung[0].arrived < r.answered < hung[0].arrived + 1.0
    ]
    assert during
    assert Counter(r["status"] for r in rows(ws)) == {"sent": VALID - size, "unknown": size}


# ------------------------------------------------------------------------------------------
# SIGKILL with several requests in flight


@pytest.mark.slow
def test_sigkill_with_requests_in_flight_leaves_at_most_n_unknown_and_no_duplicate(
    ws: Path, fake: FakeSendGrid
) -> None:
    n = 4
    fake.delay = 0.6  # every request is accepted at once and answered 0.6 s later
    # 1. killed while exactly n requests are on the wire
    proc = start_send(ws, fake.url, "--concurrency", str(n))
    try:
        assert wait_until(lambda: fake.in_flight >= n, 60, proc=proc, what=f"{n} in flight")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    handed = handed_off_batches(ws)
    queued = [b for b in batches(ws) if b["status"] == "queued"]
    assert 1 <= len(handed) <= n  # at most n batches can be in doubt …
    assert queued  # … the ones written ahead are known never to have left
    received = set(fake.received_by())
    queued_rows = [r for r in rows(ws) if r["batch_id"] in {b["batch_id"] for b in queued}]
    assert queued_rows and not {r["email"].lower() for r in queued_rows} & received

    # 2. killed again and again at random moments
    rng = random.Random(1210)
    unknown_batches = [len(handed)]
    for _ in range(3):
        before = {b["batch_id"] for b in batches(ws) if b["status"] in ("unknown", "reconciled")}
        proc = start_send(ws, fake.url, "--concurrency", str(n))
        time.sleep(rng.uniform(1.2, 3.0))  # start-up is about 1 s
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        unknown_batches.append(len(handed_off_batches(ws)))
        assert len(handed_off_batches(ws)) <= n
        assert before <= {b["batch_id"] for b in batches(ws)}

    # 3. the run after the crashes: no duplicate, unknown only what was on the wire
    fake.delay = 0.0
    left = any(r["status"] == "pending" for r in rows(ws))  # the last kill may land early
    out = finish_send(ws, fake.url)
    assert ("in-flight messages were checked" in out) == left
    received = fake.received_by()
    assert set(received.values()) == {1}, "a recipient got the circular twice"
    ledger = rows(ws)
    status = Counter(r["status"] for r in ledger)
    assert status["pending"] == 0 and status["failed"] == 0
    assert status["sent"] + status["unknown"] == VALID
    assert {r["email"].lower() for r in ledger if r["status"] == "sent"} <= set(received)
    unknown = [r for r in ledger if r["status"] == "unknown"]
    assert len({r["batch_id"] for r in unknown}) <= n * len(unknown_batches)
    # never resent without --resend-unknown
    finish_send(ws, fake.url)
    assert fake.received_by() == received
    print(
        f"\nSIGKILL with {n} in flight, 4 kills: batches in doubt per kill {unknown_batches}, "
        f"unknown rows {len(unknown)}, duplicates {sum(v - 1 for v in received.values())}"
    )

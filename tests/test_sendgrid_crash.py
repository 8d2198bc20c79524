"""Crash safety: a real ``outreach send`` process, killed with SIGKILL while a SendGrid request
is in flight (or at random moments), then run again: nobody receives a message twice; a batch
whose outcome is unknown is resent only with ``--resend-unknown``."""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.sendgrid_fake import FakeSendGrid
from tests.sendgrid_helpers import (
    batches,
    copy_example,
    edit,
    finish_send,
    rows,
    start_send,
)

pytestmark = [pytest.mark.slow, pytest.mark.both_backends]

VALID = 57


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    root = copy_example(tmp_path / "ws")
    # smaller requests, so that a run makes many of them (about twenty)
    edit(root / "campaigns/december.yaml", "  sandbox: false", "  sandbox: false\n  batch_size: 4")
    return root


def kill_in_flight(ws: Path, fake: FakeSendGrid, nth: int) -> list[dict]:
    """Start a send (one request at a time), SIGKILL it while the ``nth`` mail/send request
    is being answered. (Several at a time: tests/test_concurrency.py.)"""
    proc = start_send(ws, fake.url, "--concurrency", "1")
    try:
        assert fake.wait_for_mail(nth, timeout=60, proc=proc), "the send never reached the fake"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    return rows(ws)


def handed_off(ws: Path, ledger: list[dict]) -> set[str]:
    """Addresses of rows left pending in a batch that was handed off (not merely queued)."""
    state = {b["batch_id"]: b["status"] for b in batches(ws)}
    return {
        r["email"].lower()
        for r in ledger
        if r["status"] == "pending" and state[r["batch_id"]] == "pending"
    }


def test_killed_while_sendgrid_accepts_a_batch(ws: Path, fake: FakeSendGrid) -> None:
    fake.delay = 1.0  # each request is accepted, then answered a second later
    ledger = kill_in_flight(ws, fake, 4)
    status = Counter(r["status"] for r in ledger)
    assert status["sent"] > 0 and status["pending"] > 0  # killed mid hand-off
    in_flight = handed_off(ws, ledger)
    queued = {r["email"].lower() for r in ledger if r["status"] == "pending"} - in_flight
    assert 1 <= len(in_flight) <= 4 and queued  # one batch on the wire, the next ones ahead
    # SendGrid got the in-flight batch; the killed run never heard back
    assert in_flight <= set(fake.received_by())
    assert not queued & set(fake.received_by())
    fake.delay = 0.0
    out = finish_send(ws, fake.url)
    assert f"in-flight messages were checked: {len(in_flight)} unknown" in out
    assert f"{len(queued)} never handed off" in out
    assert "outcome unknown (pass --resend-unknown to resend)" in out
    received = fake.received_by()
    assert sum(received.values()) == VALID and set(received.values()) == {1}  # no duplicate
    ledger = rows(ws)
    assert {r["email"].lower() for r in ledger if r["status"] == "unknown"} == in_flight
    assert Counter(r["status"] for r in ledger) == {
        "sent": VALID - len(in_flight),
        "unknown": len(in_flight),
    }
    # only an explicit --resend-unknown sends them again
    finish_send(ws, fake.url)
    assert fake.received_by() == received
    finish_send(ws, fake.url, "--resend-unknown")
    assert fake.received_by() == received + Counter(in_flight)


def test_killed_before_sendgrid_accepts_a_batch(ws: Path, fake: FakeSendGrid) -> None:
    fake.delay = 1.0
    fake.queue(202, 202, 202, "drop")  # the fourth request is read but never accepted
    ledger = kill_in_flight(ws, fake, 4)
    in_flight = handed_off(ws, ledger)
    assert in_flight and not in_flight & set(fake.received_by())
    fake.delay = 0.0
    finish_send(ws, fake.url)
    received = fake.received_by()
    assert set(received.values()) == {1}
    assert set(received) | in_flight == {r["email"].lower() for r in rows(ws)}
    assert len(received) == VALID - len(in_flight)
    finish_send(ws, fake.url, "--resend-unknown")
    received = fake.received_by()
    assert sum(received.values()) == VALID and set(received.values()) == {1}  # each exactly once


def test_killed_at_random_moments(ws: Path, fake: FakeSendGrid) -> None:
    rng = random.Random(20261210)
    fake.delay = 0.15
    for _ in range(3):
        proc = start_send(ws, fake.url)
        time.sleep(rng.uniform(0.8, 2.5))  # start-up is ~1 s: sometimes before, mostly during
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    fake.delay = 0.0
    finish_send(ws, fake.url)
    received = fake.received_by()
    ledger = rows(ws)
    status = Counter(r["status"] for r in ledger)
    assert set(received.values()) <= {1}  # never twice
    assert status["pending"] == 0 and status["failed"] == 0
    assert status["sent"] + status["unknown"] == VALID
    sent = {r["email"].lower() for r in ledger if r["status"] == "sent"}
    assert sent <= set(received)  # what the ledger calls sent really arrived
    finish_send(ws, fake.url, "--resend-unknown")
    assert set(fake.received_by()) == {r["email"].lower() for r in rows(ws)}

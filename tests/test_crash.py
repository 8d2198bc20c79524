"""Crash safety: a real `outreach send` killed with SIGKILL, then run again.

Whatever moment the kill lands (between the ledger's pending write and the hand-off, during
the hand-off, before the outcome is recorded), the re-run must end with every recipient
having exactly one message: zero duplicates, zero losses.
"""

from __future__ import annotations

import csv
import email
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from email import policy
from pathlib import Path

import pytest

from outreach.store import Store
from tests.conftest import copy_workspace
from tests.dates import BEFORE_CIRCULAR
from tests.stores import open_store

pytestmark = [pytest.mark.slow, pytest.mark.both_backends]

N = 1500


def make_workspace(tmp_path: Path) -> Path:
    ws = copy_workspace(tmp_path / "ws")
    with open(ws / "lists" / "countries.csv", encoding="utf-8") as f:
        codes = [r["iso2"] for r in csv.DictReader(f)]
    rng = random.Random(7)
    with open(ws / "lists" / "contacts.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["email", "first_name", "last_name", "country", "language", "relationship"])
        for i in range(N):
            w.writerow(
                [
                    f"person{i}@example.org",
                    rng.choice(["Ana", "Kwame", "Léa", "", "Zoë"]),
                    f"N{i}",
                    rng.choice(codes),
                    rng.choice(["en", "es", "fr"]),
                    rng.choice(["member", "ally", "newcomer"]),
                ]
            )
    return ws


def start(ws: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SENDGRID_", "OUTREACH_"))}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "outreach",
            "-C",
            str(ws),
            "send",
            "december",
            "--step",
            "circular",
            "--yes",
            "--now",
            BEFORE_CIRCULAR,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )


def handed_off(store: Store) -> int:
    """Rows written pending or sent so far (read through the store while the send runs)."""
    counts = store.step_counts("december", 2026).get("circular", {})
    return counts.get("sent", 0) + counts.get("pending", 0)


def kill_when(store: Store, proc: subprocess.Popen, at_least: int, extra: float) -> None:
    deadline = time.monotonic() + 60
    while handed_off(store) < at_least:
        assert proc.poll() is None, proc.stdout.read().decode()
        assert time.monotonic() < deadline, "send did not progress"
        time.sleep(0.005)
    time.sleep(extra)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def test_sigkill_at_any_moment_then_rerun_gives_each_recipient_exactly_once(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    rng = random.Random(11)
    kills = 0
    with open_store(ws) as store:
        for at_least in (1, 350, 800, 1200):
            proc = start(ws)
            kill_when(store, proc, at_least, rng.uniform(0, 0.05))
            kills += proc.returncode == -signal.SIGKILL
    assert kills == 4, "every run should have been killed mid-send"
    # the run after the crashes: finishes, and reports what it reconciled
    proc = start(ws)
    out = proc.communicate(timeout=120)[0].decode()
    assert proc.returncode == 0, out
    assert "previous run was interrupted" in out or "already sent" in out

    folder = ws / "outbox" / "december" / "2026" / "circular"
    recipients = Counter()
    for f in folder.glob("*.eml"):
        msg = email.message_from_bytes(f.read_bytes(), policy=policy.default)
        recipients[msg["To"].addresses[0].addr_spec] += 1
    assert not list(folder.glob("*.tmp")), "no half-written files are left"
    assert len(recipients) == N, "zero losses"
    assert max(recipients.values()) == 1, "zero duplicates"
    with open_store(ws) as store:
        assert store.step_counts("december", 2026) == {"circular": {"sent": N}}
    # and one more run has nothing left to do
    again = start(ws)
    out = again.communicate(timeout=120)[0].decode()
    assert f"{N}  already sent" in out and "Total to write: 0" in out

"""Webhook ingestion throughput: batches of 1,000 signed SendGrid events, verified and stored
(one durable transaction per batch), in each store backend in turn, in the same run.

1. ``ingest()`` alone (parse + match + insert + suppressions), and verify + ingest in-process;
2. through a real ``outreach serve`` subprocess over loopback HTTP: one worker with 1 and 2
   clients, and ``--workers 2`` with 2 clients, POSTing pre-signed batches back to back
   (signing is the client's cost, done before timing).

On Linux each server run also reports the CPU time spent per event by the server processes
(``server_cpu_us_per_event``) and by this run's PostgreSQL backends (``db_cpu_us_per_event``,
when the database runs on this machine): on a shared machine those move much less with the
load than events/s do.

Usage: python benchmarks/bench_ingest.py [--events 100000] [--sends 100000]
       [--backend sqlite --backend postgresql]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.tracking_support

from synth import add_sends, events_for, open_ledger, workspace

from outreach.events import ingest
from outreach.web.webhook import load_verifier, verify
from outreach.workspace import Workspace
from tests.tracking_support import Signer, http, run_server

BATCH = 1000


def batches(sends, n: int, seed: int) -> list[bytes]:
    evs = list(events_for(sends, n, seed=seed))
    return [
        json.dumps(evs[i : i + BATCH], separators=(",", ":")).encode()
        for i in range(0, len(evs), BATCH)
    ]


def bench_function(root: Path, bodies: list[bytes], signer: Signer) -> dict:
    verifier = load_verifier(signer.public_b64)
    signed = [(b, signer.headers(b)) for b in bodies]
    n = 0
    with open_ledger(root) as ledger:
        t0 = time.perf_counter()
        for body, _h in signed[: len(signed) // 2]:
            res = ingest(ledger, json.loads(body), "webhook")
            n += res.stored
        t1 = time.perf_counter()
        m = 0
        for body, h in signed[len(signed) // 2 :]:
            text = body.decode()
            assert verify(
                verifier,
                text,
                h["X-Twilio-Email-Event-Webhook-Signature"],
                h["X-Twilio-Email-Event-Webhook-Timestamp"],
            )
            m += ingest(ledger, json.loads(text), "webhook").stored
        t2 = time.perf_counter()
    return {
        "ingest_only_events_per_s": round(n / (t1 - t0)),
        "verify_and_ingest_events_per_s": round(m / (t2 - t1)),
        "events": n + m,
    }


def _cpu_seconds(pids: list[str]) -> float:
    """User + system CPU time of these processes so far (Linux ``/proc``; gone ones count 0)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def _processes(match) -> list[str]:
    """Ids of the processes whose ``/proc/<pid>/stat`` fields and command line ``match``."""
    out = []
    for pid in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if not pid.isdigit():
            continue
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, UnicodeDecodeError):
            continue
        if match(stat, cmdline):
            out.append(pid)
    return out


def _db_backends(db_name: str | None) -> set[str]:
    """This run's PostgreSQL backends on this machine (none for SQLite)."""
    if not db_name:
        return set()
    return set(_processes(lambda _s, c: c.startswith("postgres: ") and f" {db_name} " in c))


def _ready(server, workers: int, db_name: str | None, before: set[str]) -> tuple[list, list]:
    """Wait (up to 30 s) until every worker has started and, on PostgreSQL, opened its
    connection; then the server's processes and those connections. /healthz answers as soon
    as one worker does: a worker still starting would count its imports as ingestion."""
    deadline = time.monotonic() + 30
    while True:
        started = len(re.findall(r"worker \d+ started", server.log)) if workers > 1 else 1
        db = _db_backends(db_name) - before
        if started >= workers and len(db) >= (workers if db_name else 0):
            break
        if time.monotonic() > deadline or not os.path.isdir("/proc"):
            break
        time.sleep(0.1)
    pid = str(server.proc.pid)
    return [pid, *_processes(lambda st, _c: st[1] == pid)], sorted(db)


def bench_server(
    root: Path, bodies: list[bytes], signer: Signer, clients: int, workers: int = 1
) -> dict:
    key = {"SENDGRID_WEBHOOK_PUBLIC_KEY": signer.public_b64}
    url = Workspace.open(root).db_url()
    db_name = urlsplit(url).path.lstrip("/") if url.startswith("postgresql") else None
    before = _db_backends(db_name)  # e.g. this process's own, idle
    with run_server(root, key, "--max-age", "3600", "--workers", str(workers)) as server:
        signed = [(b, signer.headers(b)) for b in bodies]
        server_pids, db_pids = _ready(server, workers, db_name, before)
        parts = [signed[i::clients] for i in range(clients)]
        stored = [0] * clients
        errors: list[str] = []

        def worker(k: int) -> None:
            port = server.port
            for body, h in parts[k]:
                status, _hd, resp = http(port, "POST", "/events", body, h, timeout=60)
                if status != 200:
                    errors.append(f"{status} {resp[:100]!r}")
                    return
                stored[k] += json.loads(resp)["stored"]

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
        cpu0 = _cpu_seconds(server_pids), _cpu_seconds(db_pids)
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        dt = time.perf_counter() - t0
        cpu = _cpu_seconds(server_pids) - cpu0[0], _cpu_seconds(db_pids) - cpu0[1]
    if errors:
        raise SystemExit(f"server errors: {errors[:3]}")
    total = sum(stored)
    return {
        "workers": workers,
        "clients": clients,
        "events": total,
        "seconds": round(dt, 2),
        "events_per_s": round(total / dt),
        "batches_per_s": round(len(bodies) / dt, 1),
        "server_cpu_us_per_event": round(cpu[0] / total * 1e6, 1) if server_pids else None,
        "db_cpu_us_per_event": round(cpu[1] / total * 1e6, 1) if db_pids else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--sends", type=int, default=100_000)
    ap.add_argument("--backend", action="append", choices=("sqlite", "postgresql"))
    args = ap.parse_args()
    signer = Signer.new()
    results: dict = {}
    for backend in args.backend or ["sqlite"]:
        with tempfile.TemporaryDirectory(prefix="outreach-bench-") as tmp:
            root = workspace(Path(tmp) / "ws", backend)
            sends = add_sends(root, args.sends)
            res = results[backend] = {}
            res["function"] = bench_function(root, batches(sends, args.events, 10), signer)
            print(backend, json.dumps(res["function"]), flush=True)
            for workers, clients, seed in ((1, 1, 11), (1, 2, 12), (2, 2, 13)):
                r = bench_server(root, batches(sends, args.events, seed), signer, clients, workers)
                res[f"server_{workers}w_{clients}c"] = r
                print(backend, json.dumps(r), flush=True)
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    (out / "ingest.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

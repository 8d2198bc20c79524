"""``outreach report`` over 1M events: wall time of the real CLI (a fresh process, imports
included) for each format, on a ledger of 200,000 sends and 1,000,000 matched events.

Usage: python benchmarks/bench_report.py [--events 1000000] [--sends 200000]
       [--backend sqlite --backend postgresql]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from synth import add_sends, events_for, insert_events_fast, workspace


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--sends", type=int, default=200_000)
    ap.add_argument("--backend", action="append", choices=("sqlite", "postgresql"))
    args = ap.parse_args()
    everything: dict = {}
    for backend in args.backend or ["sqlite"]:
        print(f"--- {backend}", flush=True)
        everything[backend] = run(args, backend)
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    (out / "report.json").write_text(json.dumps(everything, indent=2))
    print(json.dumps(everything, indent=2))


def run(args, backend: str) -> dict:
    results: dict = {"events": args.events, "sends": args.sends}
    with tempfile.TemporaryDirectory(prefix="outreach-bench-") as tmp:
        root = workspace(Path(tmp) / "ws", backend)
        t0 = time.perf_counter()
        sends = add_sends(root, args.sends)
        n = insert_events_fast(root, events_for(sends, args.events))
        results["setup_seconds"] = round(time.perf_counter() - t0, 1)
        print(
            f"ledger: {args.sends} sends, {n} events ({results['setup_seconds']} s to build)",
            flush=True,
        )
        for fmt in ("json", "csv", "table", "html"):
            out = Path(tmp) / f"report.{fmt}"
            cmd = [
                sys.executable,
                "-m",
                "outreach",
                "-C",
                str(root),
                "report",
                "december",
                "--format",
                fmt,
                "-o",
                str(out),
            ]
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            dt = time.perf_counter() - t0
            results[f"report_{fmt}_seconds"] = round(dt, 2)
            print(f"outreach report --format {fmt}: {dt:.2f} s", flush=True)
        data = json.loads((Path(tmp) / "report.json").read_text())
        results["check_events_matched"] = data["events"]["matched"]
        results["check_sent"] = sum(s["totals"]["sent"] for s in data["steps"])
    return results


if __name__ == "__main__":
    main()

"""Benchmark: the real ``outreach send`` through SendGrid batching, against a local fake.

For each N it generates N synthetic contacts spread over every UN Member State in
lists/countries.csv, the three relationships and the three languages, in a temporary copy of
the example workspace (campaigns/, templates/, lists/countries.csv). It starts a local
SendGrid-compatible server in its own process (``tests/sendgrid_fake.py --fast``: it reads and
counts every request but does not apply substitutions), then runs ``outreach send december
--step circular --skip-invalid --yes`` as a library call in a fresh Python process and reports:

* wall time of the send (load, validate, plan, render, send, ledger), split into the plan
  (load … split into requests) and the delivery (requests and ledger), and of the whole process
  (interpreter start and imports included)
* requests (and the lower bound Σ over variants of ⌈n_v/1000⌉), bytes sent
* MJML compiles and variants
* peak RSS of the process

``--latency 0.25`` makes the fake answer every mail/send request 250 ms late (the round trip,
upload and processing of a real request), and ``-c N`` (repeatable) runs each size with N
requests in flight (``--concurrency N``); the grid of sizes × concurrencies × latencies runs in
one invocation, so that its figures compare.

Usage::

    python benchmarks/send_bench.py                       # N = 100k and 1M, + batching off
    python benchmarks/send_bench.py -n 10000 -n 100000    # chosen sizes
    python benchmarks/send_bench.py --baseline-n 5000     # size of the batch_size=1 comparison
    python benchmarks/send_bench.py --profile -n 100000   # cProfile of the send (top 30)
    python benchmarks/send_bench.py -n 5000 -n 100000 -n 1000000 -c 1 -c 4 -c 8 -c 16 \
        --latency 0 --latency 0.25 --no-baseline          # the concurrency table
    python benchmarks/send_bench.py -n 100000 --no-baseline --backend sqlite --backend postgresql
                                                          # both stores, in the same run

``--backend postgresql`` puts the ledger in a new PostgreSQL database (on
``OUTREACH_TEST_PG_URL``'s server, default the local one), dropped at the end.

Results are printed as a table and written to benchmarks/results/ (git-ignored) as JSON.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FAKE = REPO / "tests" / "sendgrid_fake.py"
KEY = "SG.benchmark-key-not-a-secret"
RELATIONSHIPS = ("member", "ally", "newcomer")
LANGUAGES = ("en", "es", "fr")
FIRST = ["Ana", "Ben", "Chloé", "Dev", "Eve", "Femi", "Gus", "Hana", "Inês", "José", "Kofi", "Lía"]
LAST = ["Pérez", "Okafor", "Martin", "Patel", "Smith", "Adeyemi", "Nakamura", "Silva", "Kowalska"]
ORGS = ["Rights Now", "Derechos Ya", "Droits d'abord", "ESCR Watch", "Seva", "Ajo Collective"]


def make_workspace(dest: Path, n: int, batch_size: int = 1000) -> Path:
    """A copy of the example workspace whose list has ``n`` synthetic contacts."""
    for name in ("campaigns", "templates"):
        shutil.copytree(REPO / name, dest / name)
    (dest / "lists").mkdir()
    shutil.copy(REPO / "lists" / "countries.csv", dest / "lists" / "countries.csv")
    with (REPO / "lists" / "countries.csv").open(encoding="utf-8") as f:
        countries = [row["iso2"] for row in csv.DictReader(f)]
    rng = random.Random(n)
    with (dest / "lists" / "contacts.csv").open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "email",
                "first_name",
                "last_name",
                "organization",
                "country",
                "language",
                "relationship",
            ]
        )
        for i in range(n):
            w.writerow(
                [
                    f"c{i}@org{i % 997}.example.org",
                    rng.choice(FIRST),
                    rng.choice(LAST),
                    rng.choice(ORGS),
                    countries[i % len(countries)],
                    LANGUAGES[(i // len(countries)) % 3],
                    RELATIONSHIPS[(i // (3 * len(countries))) % 3],
                ]
            )
    campaign = dest / "campaigns" / "december.yaml"
    text = campaign.read_text(encoding="utf-8")
    text = text.replace("  sandbox: false", f"  sandbox: false\n  batch_size: {batch_size}")
    campaign.write_text(text, encoding="utf-8")
    return dest


def start_fake(latency: float = 0.0) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, str(FAKE), "--fast", "--port", "0", "--key", KEY, "--delay", f"{latency}"],
        stdout=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()  # "PORT n"
    return proc, f"http://127.0.0.1:{int(line.split()[1])}"


def fake_stats(url: str) -> dict:
    import urllib.request

    with urllib.request.urlopen(f"{url}/_fake/stats", timeout=10) as r:
        return json.loads(r.read())


# ------------------------------------------------------------------------------------------
# The measured run (in a fresh process, so that peak RSS is its own)


def worker(ws: Path, profile: bool, concurrency: int | None = None) -> dict:
    """``outreach send december --step circular --skip-invalid --yes``, timed by phase.

    The same calls as :func:`outreach.send.send` (open the ledger, take the send lock,
    :func:`prepare`, the readiness checks, :func:`execute`), minus printing, so that the plan (load, validate,
    plan, render, split) and the delivery (requests and ledger) are timed apart.
    """
    t0 = time.perf_counter()
    from outreach.ledger import Ledger
    from outreach.readiness import plan_checks
    from outreach.send import QuietUI, SendOptions, execute, prepare
    from outreach.workspace import Workspace

    imported = time.perf_counter()
    options = SendOptions(
        steps=("circular",),
        skip_invalid=True,
        yes=True,
        transport="sendgrid",
        concurrency=concurrency,
    )
    ui = QuietUI(True)
    phases: dict[str, float] = {}

    def run():
        ws_ = Workspace.open(ws)
        with Ledger.open(ws_.db_url(), ws_.root) as ledger:
            ledger.acquire_send_lock("december")
            t = time.perf_counter()
            plan = prepare(ws_, "december", options, ledger)
            phases["plan_seconds"] = time.perf_counter() - t
            phases["plan_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            t = time.perf_counter()
            plan.checks = plan_checks(plan, ledger)  # as send() does: the readiness checks
            phases["checks_seconds"] = time.perf_counter() - t
            ui.show_plan(plan)
            t = time.perf_counter()
            summary = execute(plan, ledger, ui)
            phases["deliver_seconds"] = time.perf_counter() - t
            return summary

    if profile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        summary = prof.runcall(run)
        pstats.Stats(prof, stream=sys.stderr).sort_stats("cumulative").print_stats(30)
        pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(25)
    else:
        summary = run()
    done = time.perf_counter()
    plan = ui.plan
    sp = plan.steps[0]
    per_variant: dict[str, int] = {}
    for b in sp.batches:
        per_variant[b.variant.id] = per_variant.get(b.variant.id, 0) + b.size
    cap = plan.transport.max_batch
    return {
        "recipients": len(sp.recipients),
        "sent": summary.sent,
        "failed": summary.failed,
        "unknown": summary.unknown,
        "send_seconds": done - imported,
        "import_seconds": imported - t0,
        "requests": summary.requests,
        "min_requests": sum(-(-n // 1000) for n in per_variant.values()),
        "min_requests_at_batch_size": sum(-(-n // cap) for n in per_variant.values()),
        "bytes": summary.bytes_sent,
        "bytes_per_personalization": summary.bytes_sent / max(1, summary.sent),
        "concurrency": summary.concurrency,
        "wire_seconds": summary.wire_seconds,
        "compiles": plan.renderer.compiles,
        "variants": len(sp.variants),
        "batch_size": cap,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        **phases,
    }


_MADE: dict[tuple[int, int], Path] = {}


def measure(
    n: int,
    batch_size: int,
    profile: bool = False,
    concurrency: int | None = None,
    latency: float = 0.0,
    backend: str = "sqlite",
) -> dict:
    with tempfile.TemporaryDirectory(prefix="outreach-bench-") as tmp:
        t0 = time.perf_counter()
        made = _MADE.get((n, batch_size))
        if made is None or not made.exists():  # generate once per size, copy for each run
            made = Path(tempfile.mkdtemp(prefix="outreach-bench-src-")) / "ws"
            make_workspace(made, n, batch_size)
            _MADE[(n, batch_size)] = made
        ws = Path(tmp) / "ws"
        shutil.copytree(made, ws)
        if backend == "postgresql":  # a new, empty store for every run
            sys.path.insert(0, str(REPO / "benchmarks"))
            from synth import pg_store_url

            (ws / ".env").write_text(f"OUTREACH_DB={pg_store_url()}\n")
        generated = time.perf_counter() - t0
        fake, url = start_fake(latency)
        try:
            env = {k: v for k, v in os.environ.items() if k != "OUTREACH_DB"}
            env |= {"SENDGRID_API_KEY": KEY, "SENDGRID_API_HOST": url}
            cmd = [sys.executable, __file__, "--worker", str(ws)] + (
                ["--profile"] if profile else []
            )
            if concurrency:
                cmd += ["--concurrency", str(concurrency)]
            t1 = time.perf_counter()
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
            process_seconds = time.perf_counter() - t1
            if out.returncode != 0:
                raise SystemExit(f"worker failed:\n{out.stderr[-4000:]}")
            if profile:
                print(out.stderr, file=sys.stderr)
            result = json.loads(out.stdout.strip().splitlines()[-1])
            stats = fake_stats(url)
        finally:
            fake.terminate()
            fake.wait(timeout=10)
    result |= {
        "backend": backend,
        "n": n,
        "latency": latency,
        "process_seconds": process_seconds,
        "generate_seconds": generated,
        "server_requests": stats.get("mail_requests", 0),
        "server_bytes": stats.get("bytes", 0),
        "server_personalizations": stats.get("personalizations", 0),
    }
    return result


def row(r: dict) -> str:
    return (
        f"{r['backend']:>10} {r['n']:>9,} {r['batch_size']:>5} {r['latency'] * 1000:>5.0f} "
        f"{r['concurrency']:>4} "
        f"{r['send_seconds']:>8.1f} {r['plan_seconds']:>7.1f} "
        f"{r['deliver_seconds']:>8.1f} {r['process_seconds']:>8.1f} "
        f"{r['requests']:>9,} {r['min_requests_at_batch_size']:>9,} {r['bytes'] / 1e6:>9.1f} "
        f"{r['bytes_per_personalization']:>6.0f} {r['wire_seconds']:>7.1f} "
        f"{r['compiles']:>8} {r['variants']:>8} {r['peak_rss_mb']:>8.0f}"
    )


HEADER = (
    f"{'store':>10} {'N':>9} {'batch':>5} {'lat ms':>5} {'conc':>4} "
    f"{'send s':>8} {'plan s':>7} {'deliv s':>8} {'proc s':>8} "
    f"{'requests':>9} {'Σ⌈n/b⌉':>9} "
    f"{'MB sent':>9} {'B/pers':>6} {'wire s':>7} {'compiles':>8} {'variants':>8} {'RSS MB':>8}"
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "-n", type=int, action="append", help="contacts (repeatable); default 100k and 1M"
    )
    ap.add_argument(
        "--baseline-n", type=int, default=5000, help="N for the batch_size=1 comparison"
    )
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument(
        "-c", "--concurrency", type=int, action="append", help="requests in flight (repeatable)"
    )
    ap.add_argument(
        "--latency", type=float, action="append", help="seconds the fake waits before every answer"
    )
    ap.add_argument(
        "--backend",
        action="append",
        choices=("sqlite", "postgresql"),
        help="store(s) to measure (repeatable, measured in turn in this run); default sqlite",
    )
    ap.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        conc = args.concurrency[0] if args.concurrency else None
        print(json.dumps(worker(args.worker, args.profile, conc)))
        return
    sizes = args.n or [100_000, 1_000_000]
    results = []
    print(HEADER)
    backends = args.backend or ["sqlite"]
    for latency in args.latency or [0.0]:
        for n in sizes:
            for c in args.concurrency or [None]:
                for backend in backends:
                    r = measure(n, 1000, args.profile, c, latency, backend)
                    results.append(r)
                    print(row(r), flush=True)
                if len(backends) == 2:
                    pg, lite = results[-1], results[-2]
                    print(
                        f"PostgreSQL / SQLite at N={n:,}: send ×"
                        f"{pg['send_seconds'] / lite['send_seconds']:.2f}, delivery (requests + "
                        f"ledger) ×{pg['deliver_seconds'] / lite['deliver_seconds']:.2f}",
                        flush=True,
                    )
    if not args.no_baseline:
        batched = measure(args.baseline_n, 1000)
        single = measure(args.baseline_n, 1)
        results += [batched, single]
        print(row(batched))
        print(row(single))
        print(
            f"batching off / on at N={args.baseline_n:,}: requests ×{single['requests'] / batched['requests']:.0f}, "
            f"send time ×{single['send_seconds'] / batched['send_seconds']:.1f}, "
            f"bytes ×{single['bytes'] / batched['bytes']:.1f}"
        )
    out = REPO / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"send_bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"wrote {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()

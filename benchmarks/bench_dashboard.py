"""The staff dashboard's campaign page over 100k recipients and 1M events: cold (the first
view after the server starts, or after an event arrived) and warm (the report is cached).

For each backend the script builds a temporary copy of the example workspace whose store
holds ``--sends`` sent rows and ``--events`` matched events (benchmarks/synth.py), adds a
staff account, starts the app of ``outreach serve`` in-process (Starlette's TestClient: the
whole ASGI stack, middleware and login included, without a socket) and times GET requests:

* ``outreach report december`` as a library call (the same computation, for comparison);
* ``/campaigns/december``: cold (the first view), then ``--warm`` warm views;
* one more event is stored: the next view answers at once with the figures it has, marked
  as being updated, while they are computed again in the background (timed, with another
  page requested meanwhile); then the updated view;
* ``/campaigns/december?step=circular`` cold and warm, ``/`` (campaigns), a contact look-up
  and ``/suppressions``.

Usage: python benchmarks/bench_dashboard.py [--sends 100000] [--events 1000000] [--warm 5]
       [--backend sqlite --backend postgresql]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from synth import add_sends, events_for, insert_events_fast, open_ledger, workspace

NOW = 1_796_212_800  # 2026-12-02 12:00 UTC: the day after the synthetic events begin
SECRET = "benchmark-secret-key-of-forty-characters!"
PASSWORD = "benchmark password of the dashboard"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sends", type=int, default=100_000)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--warm", type=int, default=5)
    ap.add_argument("--backend", action="append", choices=("sqlite", "postgresql"))
    args = ap.parse_args()
    everything: dict = {}
    for backend in args.backend or ["sqlite", "postgresql"]:
        print(f"--- {backend}", flush=True)
        everything[backend] = run(args, backend)
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    (out / "dashboard.json").write_text(json.dumps(everything, indent=2))
    print(json.dumps(everything, indent=2))


def timed(client, path: str) -> tuple[float, str]:
    t0 = time.perf_counter()
    r = client.get(path)
    dt = time.perf_counter() - t0
    if r.status_code != 200:
        raise SystemExit(f"GET {path}: {r.status_code}\n{r.text[:2000]}")
    return dt, r.text


def run(args, backend: str) -> dict:
    from starlette.testclient import TestClient

    from outreach.accounts import add_user
    from outreach.web.app import create_app
    from outreach.web.services import ServerSettings
    from outreach.workspace import Workspace

    results: dict = {"sends": args.sends, "events": args.events}
    with tempfile.TemporaryDirectory(prefix="outreach-bench-") as tmp:
        root = workspace(Path(tmp) / "ws", backend)
        t0 = time.perf_counter()
        sends = add_sends(root, args.sends)
        n = insert_events_fast(root, events_for(sends, args.events))
        with open_ledger(root) as ledger:
            # as autovacuum would after a bulk load (the test server runs without it; without
            # statistics PostgreSQL joins 1M events to 100k sends in a nested loop: minutes)
            ledger.refresh_statistics()
        results["setup_seconds"] = round(time.perf_counter() - t0, 1)
        print(f"store: {args.sends} sends, {n} events ({results['setup_seconds']} s)", flush=True)
        ws = Workspace.open(root)
        add_user(ws, "bench@example.org", "viewer", PASSWORD, by="benchmark")
        app = create_app(ws, ServerSettings(secret_key=SECRET, now=NOW, insecure=True))
        with TestClient(app) as client:
            page = client.get("/login")
            token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
            form = {"email": "bench@example.org", "password": PASSWORD, "csrf_token": token}
            assert client.post("/login", data=form, follow_redirects=False).status_code == 303

            def measure(name: str, path: str, warm: int) -> str:
                cold, text = timed(client, path)
                warms = [timed(client, path)[0] for _ in range(warm)]
                results[f"{name}_cold_s"] = round(cold, 3)
                if warms:
                    results[f"{name}_warm_median_s"] = round(statistics.median(warms), 3)
                    results[f"{name}_warm_max_s"] = round(max(warms), 3)
                print(
                    f"{name}: cold {cold:.2f} s"
                    + (
                        f", warm median {statistics.median(warms):.3f} s (max {max(warms):.3f})"
                        if warms
                        else ""
                    ),
                    flush=True,
                )
                return text

            # the same computation as `outreach report december --format json`, in-process
            from outreach import report as reports

            t0 = time.perf_counter()
            reports.report(ws, "december", now=datetime.fromtimestamp(NOW, UTC))
            results["outreach_report_s"] = round(time.perf_counter() - t0, 3)
            print(f"outreach report (library call): {results['outreach_report_s']:.2f} s")
            text = measure("report", "/campaigns/december", args.warm)
            sent = sum(
                int(x.replace(",", ""))
                for x in re.findall(r'data-metric="sent"><dt>sent</dt><dd>([^<]*)</dd>', text)
            )
            results["check_sent_on_page"] = sent
            cache = client.app.state.services.caches["reports"]
            # one more event: the next view answers the figures it has at once (marked as
            # being updated) and computes the new ones in the background
            with open_ledger(root) as ledger:
                version = ledger.data_version()
            insert_events_fast(root, events_for(sends[:1], 1, seed=99))
            with open_ledger(root) as ledger:
                assert ledger.data_version() != version
            t0 = time.perf_counter()
            stale, text = timed(client, "/campaigns/december")
            assert 'id="stale"' in text
            results["report_after_event_stale_view_s"] = round(stale, 3)
            # meanwhile other pages of the worker are not held behind the computation
            during = [timed(client, "/suppressions")[0] for _ in range(3)]
            results["other_page_during_update_max_s"] = round(max(during), 3)
            while cache.running:
                time.sleep(0.05)
            results["report_update_in_background_s"] = round(time.perf_counter() - t0, 2)
            print(
                f"after an event: the view {stale:.3f} s (figures being updated), another page "
                f"meanwhile ≤ {max(during):.3f} s, updated in {results['report_update_in_background_s']} s",
                flush=True,
            )
            measure("report_updated", "/campaigns/december", args.warm)
            measure("report_step", "/campaigns/december?step=circular", args.warm)
            measure("campaigns", "/", args.warm)
            while cache.running:
                time.sleep(0.05)
            measure("contact", "/contacts?email=person12345%40example.org", 2)
            measure("suppressions", "/suppressions", 2)
            results["cache"] = {"hits": cache.hits, "stale": cache.stale, "misses": cache.misses}
    return results


if __name__ == "__main__":
    main()

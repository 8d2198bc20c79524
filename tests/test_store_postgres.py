"""The shared store under concurrency and faults (PostgreSQL): several ``events serve``
processes ingesting at once, the database going away and coming back, connections killed with
``pg_terminate_backend`` in the middle of a send and of an ingestion, and errors for people."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from outreach.exceptions import LedgerError
from outreach.store import Store
from tests import stores
from tests.dates import CIRCULAR_DUE
from tests.pg_proxy import Proxy
from tests.sendgrid_fake import FakeSendGrid
from tests.sendgrid_helpers import copy_example, edit, start_send
from tests.tracking_support import Signer, http, make_workspace, run_server, send_outbox

pytestmark = [pytest.mark.postgresql_only, pytest.mark.slow]

VALID = 57


# ------------------------------------------------------------------------------------------
# errors for people


def test_an_unreachable_database_is_one_line_without_the_password(workspace, cli, monkeypatch):
    monkeypatch.setenv("OUTREACH_DB", "postgresql://coordinator:s3cr3t-pw@127.0.0.1:1/outreach")
    for args in (("send", "december", "--step", "circular", "--yes"), ("db", "status")):
        r = cli(workspace, *args)
        assert r.exit_code == 1
        lines = r.output.strip().splitlines()
        assert lines[0].startswith(
            "Error: postgresql://coordinator:***@127.0.0.1:1/outreach: cannot connect to the database"
        ), r.output
        assert lines[1].strip().startswith("→ check that PostgreSQL is running")
        assert "s3cr3t-pw" not in r.output and "Traceback" not in r.output
    assert not (workspace / "outbox").exists()


def test_a_url_without_a_database_says_what_to_add(workspace, cli, monkeypatch):
    monkeypatch.setenv("OUTREACH_DB", "postgresql://u:pw@127.0.0.1:5432")
    r = cli(workspace, "db", "status")
    assert r.exit_code == 1 and "names no database" in r.output and "pw@" not in r.output


# ------------------------------------------------------------------------------------------
# the send lock across machines


def test_a_second_send_elsewhere_is_refused_with_the_first_ones_host_and_time(workspace, cli):
    """Another machine = another connection to the same database: the advisory lock holds."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from outreach.store import Store\n"
            "s = Store.open(sys.argv[1], purpose='outreach send (laptop)')\n"
            "s.acquire_send_lock('december')\n"
            "print('locked', flush=True)\n"
            "sys.stdin.read()\n",
            stores.store_url(workspace),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        r = cli(workspace, "send", "december", "--step", "circular", "--yes", "--now", CIRCULAR_DUE)
        assert r.exit_code == 1
        assert "another outreach send is running on this ledger" in r.output
        assert f"pid {holder.pid} on " in r.output and ", since 20" in r.output
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    # the holder's connection is gone: so is the lock
    r = cli(workspace, "send", "december", "--step", "circular", "--yes", "--now", CIRCULAR_DUE)
    assert r.exit_code == 0, r.output


# ------------------------------------------------------------------------------------------
# ingestion from several processes at once


def _events(rows: list[dict], n_batches: int, per: int) -> list[list[dict]]:
    kinds = ["delivered", "open", "click", "open", "bounce", "unsubscribe", "deferred"]
    out = []
    for b in range(n_batches):
        batch = []
        for i in range(per):
            r = rows[(b * per + i) % len(rows)]
            kind = kinds[(b + i) % len(kinds)]
            e = {
                "event": kind,
                "email": r["email"],
                "timestamp": 1_796_115_600 + b * 60 + i,
                "sg_event_id": f"ev-{b}-{i}",
                "send_id": r["send_id"],
                "campaign": "december",
                "step": "circular",
            }
            if kind == "bounce":
                e["type"] = "bounce"
            if kind == "click":
                e["url"] = "https://www.escr-net.org/"
            batch.append(e)
        out.append(batch)
    return out


def _post_until_stored(port: int, signer: Signer, events: list[dict], codes: Counter) -> None:
    """Post like SendGrid: again after a 5xx or a dropped connection, until a 2xx."""
    data = json.dumps(events).encode()
    deadline = time.monotonic() + 90
    while True:
        try:
            status, _h, _b = http(port, "POST", "/events", data, signer.headers(data), timeout=30)
        except OSError:
            status = 0
        codes[status] += 1
        if 200 <= status < 300:
            return
        assert status in (0, 503), f"unexpected {status}"
        assert time.monotonic() < deadline, "the server did not recover"
        time.sleep(0.05)


def test_several_servers_ingest_at_once_without_loss_or_duplicate(tmp_path: Path) -> None:
    root = make_workspace(tmp_path / "ws")
    send_outbox(root, "circular")
    rows = sorted(stores.rows(root, step="circular"), key=lambda r: r["email"])
    signer = Signer.new()
    batches = _events(rows, 24, 50)
    unique = {e["sg_event_id"] for b in batches for e in b}
    env = {"SENDGRID_WEBHOOK_PUBLIC_KEY": signer.public_b64}
    codes: Counter = Counter()
    with (
        run_server(root, env) as a,
        run_server(root, env) as b,
        run_server(root, env) as c,
        stores.open_store(root) as reader,
    ):
        ports = [a.port, b.port, c.port]
        committed_before_2xx: list[bool] = []

        def client(k: int) -> None:
            # every batch goes to two servers at once (a retry racing the original)
            for i, batch in enumerate(batches):
                if i % 3 == k % 3 or i % 3 == (k + 1) % 3:
                    _post_until_stored(ports[(i + k) % 3], signer, batch, codes)
                    seen = reader_rows(batch[0]["sg_event_id"])
                    committed_before_2xx.append(bool(seen))

        lock = threading.Lock()

        def reader_rows(eid: str) -> list[dict]:
            with lock:
                return reader.event_rows(sg_event_id=eid)

        failures: list[BaseException] = []

        def guarded(k: int) -> None:
            try:
                client(k)
            except BaseException as exc:  # reported below: a thread's assert is not a failure
                failures.append(exc)

        threads = [threading.Thread(target=guarded, args=(k,)) for k in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()  # each client's posts have deadlines
        assert not failures, (failures, a.log[-3000:], b.log[-3000:], c.log[-3000:])
        assert all(committed_before_2xx), "a 2xx came before the events were committed"
        stored = reader.event_rows()
    assert len(stored) == len(unique) and {e["sg_event_id"] for e in stored} == unique
    assert codes[200] >= len(batches) * 2
    logs = a.log + b.log + c.log
    assert "Traceback" not in logs


# ------------------------------------------------------------------------------------------
# the database going away


def test_the_webhook_answers_503_while_the_database_is_down_then_recovers(tmp_path: Path) -> None:
    root = make_workspace(tmp_path / "ws")
    send_outbox(root, "circular")
    rows = sorted(stores.rows(root, step="circular"), key=lambda r: r["email"])
    url = stores.store_url(root)
    proxy = Proxy(url)
    signer = Signer.new()
    batches = _events(rows, 6, 40)
    try:
        env = {"SENDGRID_WEBHOOK_PUBLIC_KEY": signer.public_b64, "OUTREACH_DB": proxy.url}
        with run_server(root, env) as server:
            codes: Counter = Counter()
            _post_until_stored(server.port, signer, batches[0], codes)
            proxy.down()
            answers = []
            for batch in batches[1:4]:  # SendGrid keeps posting; each is refused, none lost
                data = json.dumps(batch).encode()
                answers.append(http(server.port, "POST", "/events", data, signer.headers(data))[0])
            assert answers == [503, 503, 503]
            proxy.up()  # no restart: the next request reconnects
            for batch in batches[1:]:
                _post_until_stored(server.port, signer, batch, codes)
            assert "storage-error" in server.log
    finally:
        proxy.close()
    with stores.open_store(root) as store:
        stored = store.event_rows()
    assert len(stored) == sum(len(b) for b in batches)  # nothing lost, nothing twice


def test_connections_killed_mid_ingestion_lose_nothing(tmp_path: Path) -> None:
    root = make_workspace(tmp_path / "ws")
    send_outbox(root, "circular")
    rows = sorted(stores.rows(root, step="circular"), key=lambda r: r["email"])
    signer = Signer.new()
    batches = _events(rows, 30, 100)
    codes: Counter = Counter()
    env = {"SENDGRID_WEBHOOK_PUBLIC_KEY": signer.public_b64}
    with run_server(root, env) as server:
        done = threading.Event()

        def client() -> None:
            try:
                for batch in batches:
                    _post_until_stored(server.port, signer, batch, codes)
            finally:
                done.set()

        failures: list[BaseException] = []

        def guarded() -> None:
            try:
                client()
            except BaseException as exc:
                failures.append(exc)
                done.set()

        t = threading.Thread(target=guarded)
        t.start()
        kills = 0
        while not done.is_set() and kills < 200:
            kills += stores.SERVER[0].terminate("outreach serve%")
            time.sleep(0.05)
        t.join()
        assert not failures, (failures, server.log[-3000:])
    assert kills >= 3, "the server's connection was never killed"
    assert codes[503] >= 1  # what SendGrid saw while the connection was gone
    with stores.open_store(root) as store:
        assert store.counts()["events"] == sum(len(b) for b in batches)


def test_a_send_whose_connection_is_killed_stops_before_the_next_hand_off(
    tmp_path: Path, fake: FakeSendGrid
) -> None:
    ws = copy_example(tmp_path / "ws")
    edit(ws / "campaigns/december.yaml", "  sandbox: false", "  sandbox: false\n  batch_size: 4")
    fake.delay = 0.5  # each request is answered half a second after it arrived
    # one request at a time, so that "the next hand-off" is well defined (tests/
    # test_concurrency.py covers crashes with several requests in flight)
    proc = start_send(ws, fake.url, "--concurrency", "1")
    try:
        assert fake.wait_for_mail(3, timeout=60, proc=proc), "the send never reached the fake"
        assert stores.SERVER[0].terminate("outreach send%") >= 1
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, out
    assert "the connection to the database" in out and "Traceback" not in out
    received = fake.received_by()
    requests_then = len(fake.messages)
    ledger = {r["email"].lower(): r for r in stores.rows(ws)}
    # every message that went out had its row committed first; none went out after the kill
    assert set(received) <= set(ledger)
    # the third request was in flight when the connection died: its outcome could not be
    # recorded, so the send stopped there (its rows stay pending, for the next run)
    assert len(fake.mail_requests) == 3
    queued = {b["batch_id"] for b in stores.rows(ws, "batches") if b["status"] == "queued"}
    handed_off = {
        e for e, r in ledger.items() if r["status"] == "pending" and r["batch_id"] not in queued
    }
    assert handed_off and handed_off <= set(received)  # written ahead (queued) never left
    assert not {e for e, r in ledger.items() if r["batch_id"] in queued} & set(received)
    # the next run reconciles (what was in flight is unknown) and sends the rest, once
    fake.delay = 0.0
    proc = start_send(ws, fake.url)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    received = fake.received_by()
    assert set(received.values()) == {1}, "a recipient got two messages"
    statuses = Counter(r["status"] for r in stores.rows(ws))
    assert statuses["sent"] + statuses["unknown"] == VALID and statuses["pending"] == 0
    assert len(fake.messages) > requests_then


def test_send_refuses_to_start_when_the_database_is_down(tmp_path: Path, cli) -> None:
    ws = make_workspace(tmp_path / "ws")
    proxy = Proxy(stores.store_url(ws))
    try:
        stores.attach(ws, "postgresql")
        (ws / ".env").write_text(f"OUTREACH_DB={proxy.url}\n")
        proxy.down()
        r = cli(ws, "send", "december", "--step", "circular", "--yes", "--now", CIRCULAR_DUE)
        assert r.exit_code == 1 and "cannot connect to the database" in r.output
        assert not (ws / "outbox").exists()
    finally:
        proxy.close()


def test_a_lost_connection_without_the_lock_reconnects(tmp_path: Path) -> None:
    url = stores.new_url("postgresql", tmp_path)
    with Store.open(url, purpose="outreach reader") as store:
        store.ping()
        # ≥ 1: the connection that ran the migrations may still be listed while it exits
        assert stores.SERVER[0].terminate("outreach reader") >= 1
        with pytest.raises(LedgerError, match="lost the connection"):
            store.ping()
        store.ping()  # reconnected
        store.acquire_send_lock("december")
        stores.SERVER[0].terminate("outreach reader")
        with pytest.raises(LedgerError):
            store.ping()
        with pytest.raises(LedgerError, match="and the send lock with it"):
            store.ping()  # never silently again: the lock is gone


# ------------------------------------------------------------------------------------------
# how ingestion reads and stages


def test_webhook_batches_probe_sends_by_index_and_leave_no_staging_behind(tmp_path: Path) -> None:
    """A batch finds its sends (by send id, and by message id for the fallback) one index
    probe per id: ``= ANY(…)`` made the planner scan all of ``sends`` for every batch of a
    freshly loaded ledger. The staging table is emptied at commit: after a DELETE it kept its
    pages (no autovacuum for temporary tables) and grew by every batch."""
    from outreach.events import ingest

    n = 3000
    sends = [(f"{i:032x}", f"p{i}@example.org", f"msg{i}") for i in range(n)]
    columns = ("send_id", "campaign", "edition", "step", "contact_id", "transport", "email")
    columns += ("status", "message_id", "created_at", "updated_at")
    at = "2026-12-01T10:00:00+00:00"
    with Store.open(stores.new_url("postgresql", tmp_path), purpose="outreach tests") as store:
        rows = [
            (sid, "december", 2026, "circular", f"c{i}", "outbox", email, "sent", mid, at, at)
            for i, (sid, email, mid) in enumerate(sends)
        ]
        store.write_table("sends", columns, rows)

        def batch(b: int) -> list[dict]:
            out = []
            for i in range(b * 200, b * 200 + 200):
                sid, email, mid = sends[(i * 7) % n]
                e = {"event": "open", "email": email, "timestamp": 1_796_115_600 + i}
                e["sg_event_id"] = f"ev-{i}"
                if i % 2:
                    e["send_id"] = sid
                else:  # no custom_args: matched by the message id's prefix and the address
                    e["sg_message_id"] = f"{mid}.filterdrecv-{i}.0"
                out.append(e)
            return out

        with store.transaction():
            res = ingest(store, batch(0), "webhook")
            assert stores.pg_seq_scans(store, "sends") == 0
        assert (res.stored, res.matched) == (200, 200)
        with store.transaction():  # two batches in one transaction: nothing counted twice
            assert ingest(store, batch(1), "webhook").stored == 200
            assert ingest(store, batch(1) + batch(2), "webhook").stored == 200
        for b in range(3, 8):
            assert ingest(store, batch(b), "webhook").matched == 200
        assert stores.pg_staging_bytes(store) == 0
        assert len(store.event_rows()) == 8 * 200

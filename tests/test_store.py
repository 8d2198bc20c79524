"""The store itself, on every backend: typed codes enforced by the schema, the migration
history, errors for people, the send lock, ``outreach db status`` and ``outreach db copy``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from outreach.exceptions import LedgerError
from outreach.store import HEAD, SCHEMA_VERSION, Store, redact_url
from outreach.store.base import EVENT_COLUMNS, TABLES
from outreach.store.codes import (
    AuditAction,
    AuditVia,
    BatchStatus,
    RunOutcome,
    SendStatus,
    StaffRole,
    SuppressionAction,
    SuppressionReason,
)
from outreach.store.migrate import MIGRATIONS
from tests import stores
from tests.dates import BEFORE_CIRCULAR

pytestmark = pytest.mark.both_backends

CIRCULAR = ("send", "december", "--step", "circular", "--yes", "--now", BEFORE_CIRCULAR)
T = "2026-12-01T09:00:00.000+00:00"

# a valid row per table, with the typed column to vary
SAMPLES = {
    "sends": (
        "status",
        SendStatus,
        {
            "send_id": "x",
            "campaign": "c",
            "edition": 2026,
            "step": "s",
            "contact_id": "k",
            "transport": "outbox",
            "email": "a@example.org",
            "attempts": 1,
            "created_at": T,
            "updated_at": T,
        },
    ),
    "batches": (
        "status",
        BatchStatus,
        {
            "batch_id": "b",
            "campaign": "c",
            "step": "s",
            "transport": "outbox",
            "size": 1,
            "created_at": T,
            "updated_at": T,
        },
    ),
    "runs": (
        "outcome",
        RunOutcome,
        {"campaign": "c", "transport": "outbox", "started_at": T},
    ),
    "suppressions": (
        "reason",
        SuppressionReason,
        {"email": "a@example.org", "source": "manual", "created_at": T},
    ),
    "suppression_log": (
        "action",
        SuppressionAction,
        {"email": "a@example.org", "at": T},
    ),
    "users": (
        "role",
        StaffRole,
        {
            "email": "a@example.org",
            "password_hash": "$argon2id$x",
            "created_at": T,
            "password_changed_at": T,
        },
    ),
    "audit_log": ("action", AuditAction, {"at": T, "who": "w", "via": "cli"}),
    "audit_log.via": ("via", AuditVia, {"at": T, "who": "w", "action": "user_add"}),
}


def new_store(backend: str, tmp_path: Path) -> Store:
    return Store.open(stores.new_url(backend, tmp_path))


# the columns that must differ between rows of a table (its keys)
KEYS = {
    "sends": ("send_id", "contact_id"),
    "batches": ("batch_id",),
    "suppressions": ("email",),
    "users": ("email",),
}


@pytest.mark.parametrize("table", sorted(SAMPLES))
def test_every_status_is_a_typed_code_the_schema_enforces(backend, tmp_path, table) -> None:
    column, codes, row = SAMPLES[table]
    table = table.split(".")[0]  # "audit_log.via": another column of the same table

    def variant(i: int, code: str) -> dict:
        values = {**row, column: code}
        for key in KEYS.get(table, ()):
            values[key] = f"{i}{values[key]}"
        return values

    with new_store(backend, tmp_path) as store:
        for i, code in enumerate(codes):
            values = variant(i, code.value)
            store.write_table(table, list(values), [tuple(values.values())])
        assert {r[column] for r in store.table_rows(table)} == {c.value for c in codes}
        bad = variant(99, "sent-ish")
        with pytest.raises(LedgerError, match="database error"):
            store.write_table(table, list(bad), [tuple(bad.values())])
        assert len(store.table_rows(table)) == len(codes)


def test_the_migration_history_ends_at_head(backend, tmp_path) -> None:
    files = sorted(p.name.split("_", 1)[0] for p in (MIGRATIONS / "versions").glob("0*.py"))
    assert files[-1] == HEAD and int(HEAD) == SCHEMA_VERSION
    assert files == [f"{n:04d}" for n in range(1, SCHEMA_VERSION + 1)]  # one line, no branch
    with new_store(backend, tmp_path) as store:
        assert store.revision() == HEAD
        assert store.is_empty()


def test_db_status_names_the_store_without_its_password(workspace, cli, backend) -> None:
    r = cli(workspace, *CIRCULAR, "--limit", "3")
    assert r.exit_code == 0, r.output
    r = cli(workspace, "db", "status", "--json")
    assert r.exit_code == 0, r.output
    st = json.loads(r.output)
    assert st["backend"] == backend and st["schema"] == SCHEMA_VERSION
    assert st["counts"]["sends"] == 3 and st["counts"]["runs"] == 1
    text = cli(workspace, "db", "status").output
    assert f"schema:  {SCHEMA_VERSION} (revision {HEAD})" in text
    assert re.search(r"sends: 3\b", text)


def test_the_send_lock_names_its_holder(backend, tmp_path) -> None:
    url = stores.new_url(backend, tmp_path)
    with Store.open(url) as first, Store.open(url) as second:
        first.acquire_send_lock("december")
        with pytest.raises(LedgerError) as exc:
            second.acquire_send_lock("december")
        holder = first.lock_holder()
        assert holder is not None and holder.campaign == "december"
        assert (
            f"(campaign december, pid {holder.pid} on {holder.host}, since {holder.since})"
            in str(exc.value)
        )
        first.release_send_lock()
        second.acquire_send_lock("december")  # free again


def test_a_transaction_is_all_or_nothing(backend, tmp_path) -> None:
    with new_store(backend, tmp_path) as store:
        with pytest.raises(RuntimeError), store.transaction():
            store.begin_run("december", 2026, "outbox", {})
            raise RuntimeError("crash in the middle")
        assert store.counts()["runs"] == 0
        run = store.begin_run("december", 2026, "outbox", {})
        store.end_run(run, RunOutcome.COMPLETE)
        assert store.table_rows("runs")[0]["outcome"] == "complete"


def test_events_are_stored_after_a_rolled_back_first_insert(backend, tmp_path) -> None:
    """The first insert of a connection prepares its staging (on PostgreSQL, a temporary
    table); a conflict that rolls that transaction back must not leave the next insert, on
    the same connection, without it (it did: every later batch failed, 503 for ever)."""

    def event(i: int) -> tuple:
        values = {"sg_event_id": f"ev-{i}", "event": "open", "email": "a@example.org"}
        values |= {
            "timestamp": 1_796_115_600 + i,
            "received_at": T,
            "machine_open": 0,
            "matched": 0,
        }
        return tuple(values.get(c) for c in EVENT_COLUMNS)

    with new_store(backend, tmp_path) as store:
        with pytest.raises(RuntimeError), store.transaction():
            assert store.insert_events([event(1)]) == {"ev-1"}
            raise RuntimeError("a conflict: the caller rolls back and tries again")
        assert store.event_rows() == []
        assert store.insert_events([event(1), event(2)]) == {"ev-1", "ev-2"}
        assert store.insert_events([event(2), event(3)]) == {"ev-3"}
        assert sorted(r["sg_event_id"] for r in store.event_rows()) == ["ev-1", "ev-2", "ev-3"]


def test_db_copy_moves_everything_and_refuses_a_target_with_data(
    workspace, cli, backend, tmp_path
) -> None:
    assert cli(workspace, *CIRCULAR).exit_code == 0
    events = tmp_path / "events.json"
    sends = stores.rows(workspace)
    events.write_text(
        json.dumps(
            [
                {
                    "event": "open",
                    "email": r["email"],
                    "send_id": r["send_id"],
                    "sg_event_id": f"e{i}",
                }
                for i, r in enumerate(sends[:5])
            ]
            + [{"event": "bounce", "email": sends[5]["email"], "send_id": sends[5]["send_id"]}]
        )
    )
    assert cli(workspace, "events", "import", str(events)).exit_code == 0
    with stores.open_store(workspace) as src:
        before = src.counts()
    target = stores.new_url(backend, tmp_path / "target")
    r = cli(workspace, "db", "copy", "--to", target)
    assert r.exit_code == 0, r.output
    assert f"sends: {before['sends']} → {before['sends']}" in r.output
    assert "counts match" in r.output
    with Store.open(target, tmp_path) as dst:
        assert dst.counts() == before
        assert dst.suppressed() == {sends[5]["email"].lower(): "bounce"}
        # generated ids continue after the copied ones
        last = max(r["id"] for r in dst.table_rows("runs"))
        assert dst.begin_run("december", 2026, "outbox", {}) == last + 1
    again = cli(workspace, "db", "copy", "--to", target)
    assert again.exit_code == 1 and "the target already holds data" in again.output
    same = cli(workspace, "db", "copy", "--to", stores.store_url(workspace))
    assert same.exit_code == 1 and "the same store" in same.output


def test_redaction_hides_every_password() -> None:
    assert redact_url("postgresql://u:s3cr%40t@db:5432/x") == "postgresql://u:***@db:5432/x"
    assert redact_url("host=db password=s3cret dbname=x") == "host=db password=*** dbname=x"
    assert redact_url("postgresql://u@db/x") == "postgresql://u@db/x"
    assert redact_url("error at postgresql://a:b@h/d and postgres://c:d@h/e") == (
        "error at postgresql://a:***@h/d and postgres://c:***@h/e"
    )


def test_every_table_is_copied(backend, tmp_path) -> None:
    """``db copy`` and the tests' copies move every table the schema has."""
    with new_store(backend, tmp_path) as store:
        for table in TABLES:
            assert store.columns(table)

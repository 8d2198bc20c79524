"""The store's side of recipients' preferences, on every backend: the ``preferences`` table
(schema 8), its typed codes, the upgrade from schema 7, and ``db copy``."""

from __future__ import annotations

from pathlib import Path

import pytest

from outreach.exceptions import LedgerError
from outreach.store import HEAD, Store, parse
from outreach.store.base import BACKENDS, TABLES
from outreach.store.codes import ALL_CAMPAIGNS, PreferenceKind, PreferenceSource
from outreach.store.migrate import upgrade
from tests import stores

pytestmark = pytest.mark.both_backends

T = "2026-12-02T12:00:00.000+00:00"
PREVIOUS = "0007"


def row(kind: str, language: str | None = None, **extra) -> dict:
    return {
        "email": "a@example.org",
        "campaign": "december",
        "kind": kind,
        "language": language,
        "created_at": T,
        "source": "page",
        **extra,
    }


def write(store: Store, values: dict) -> None:
    store.write_table("preferences", list(values), [tuple(values.values())])


def test_every_kind_and_source_is_a_code_the_schema_enforces(backend, tmp_path) -> None:
    with Store.open(stores.new_url(backend, tmp_path)) as store:
        for kind in PreferenceKind:
            write(store, row(kind.value, "es" if kind is PreferenceKind.LANGUAGE else None))
        for source in PreferenceSource:
            write(store, row("leave_campaign", source=source.value))
        n = len(PreferenceKind) + len(PreferenceSource)
        assert len(store.table_rows("preferences")) == n
        for bad in (
            row("leave-ish"),
            row("leave_campaign", source="somewhere"),
            row("language"),  # a language choice names its language…
            row("leave_campaign", "es"),  # …and only a language choice does
        ):
            with pytest.raises(LedgerError, match="database error"):
                write(store, bad)
        assert len(store.table_rows("preferences")) == n


def test_choices_are_recorded_and_read_back_per_campaign(backend, tmp_path) -> None:
    with Store.open(stores.new_url(backend, tmp_path)) as store:
        add = store.add_preference
        kw = {"source": PreferenceSource.PAGE, "send_id": "s" * 32, "client": "203.0.113.9"}
        add("A@Example.org", "december", PreferenceKind.LEAVE_CAMPAIGN, None, at=T, **kw)
        add("b@example.org", ALL_CAMPAIGNS, PreferenceKind.LANGUAGE, "fr", at=T, **kw)
        add("c@example.org", "june", PreferenceKind.LEAVE_CAMPAIGN, None, at=T, **kw)
        assert store.campaign_preferences("december") == [
            ("a@example.org", "december", "leave_campaign", None),
            ("b@example.org", "*", "language", "fr"),
        ]
        [a] = store.preference_rows("a@EXAMPLE.org")
        assert a == {
            "email": "a@example.org",
            "campaign": "december",
            "kind": "leave_campaign",
            "language": None,
            "created_at": T,
            "source": "page",
            "send_id": "s" * 32,
            "client": "203.0.113.9",
        }
        assert len(store.preference_rows()) == 3


def test_a_store_at_the_previous_head_is_upgraded_with_its_data(backend, tmp_path: Path) -> None:
    url = stores.new_url(backend, tmp_path)
    target = parse(url, tmp_path)
    old = BACKENDS[target.backend](target, "outreach tests", True)
    old._connect()
    try:
        upgrade(old, PREVIOUS)
        assert old.revision() == PREVIOUS
        old.suppress(
            "a@example.org", "unsubscribe", source="manual", who="t", why=None, at=T, replace=False
        )
        run = old.begin_run("december", 2026, "outbox", {})
    finally:
        old.close()
    with Store.open(url, tmp_path) as store:
        assert store.revision() == HEAD
        assert store.suppressed() == {"a@example.org": "unsubscribe"}
        assert [r["id"] for r in store.table_rows("runs")] == [run]
        assert store.table_rows("preferences") == []
        store.add_preference(
            "a@example.org",
            "december",
            PreferenceKind.LANGUAGE,
            "es",
            source=PreferenceSource.PAGE,
            send_id=None,
            client=None,
            at=T,
        )
        assert store.campaign_preferences("december") == [
            ("a@example.org", "december", "language", "es")
        ]


def test_db_copy_moves_the_preferences(backend, tmp_path, workspace, cli) -> None:
    assert "preferences" in TABLES
    with stores.open_store(workspace) as src:
        for kind, lang in (("leave_campaign", None), ("language", "fr"), ("rejoin_campaign", None)):
            src.add_preference(
                "a@example.org",
                "december",
                PreferenceKind(kind),
                lang,
                source=PreferenceSource.PAGE,
                send_id="s" * 32,
                client="198.51.100.7",
                at=T,
            )
        before = src.preference_rows()
    target = stores.new_url(backend, tmp_path / "target")
    r = cli(workspace, "db", "copy", "--to", target)
    assert r.exit_code == 0, r.output
    assert "preferences: 3 → 3" in r.output
    with Store.open(target, tmp_path) as dst:
        assert dst.preference_rows() == before
        # the copy's ids continue after the copied ones
        dst.add_preference(
            "b@example.org",
            "*",
            PreferenceKind.LANGUAGE,
            "es",
            source=PreferenceSource.PAGE,
            send_id=None,
            client=None,
            at=T,
        )
        assert [r["id"] for r in dst.table_rows("preferences")] == [1, 2, 3, 4]


def test_recorded_choices_reach_the_plan(backend, workspace, cli) -> None:
    """On either backend: a choice recorded for one send's recipient changes the next plan."""
    import json
    from datetime import UTC, datetime

    from outreach import preferences
    from tests.dates import BEFORE_CIRCULAR, LAST_CALL_DUE

    r = cli(workspace, "send", "december", "--step", "circular", "--yes", "--now", BEFORE_CIRCULAR)
    assert r.exit_code == 0, r.output
    sends = stores.rows(workspace)
    leaver, switcher = sends[0], next(s for s in sends[1:] if s["language"] != "fr")
    now = datetime(2026, 12, 2, tzinfo=UTC)
    with stores.open_store(workspace) as store:
        left = preferences.record(
            store, leaver["send_id"], PreferenceKind.LEAVE_CAMPAIGN, client=None, now=now
        )
        assert left is not None and left.changed and left.info.email == leaver["email"]
        assert preferences.record(
            store, switcher["send_id"], PreferenceKind.LANGUAGE, "fr", client=None, now=now
        ).changed
        assert preferences.record(store, "f" * 32, PreferenceKind.LANGUAGE, "fr", client=None,
                                  now=now) is None  # fmt: skip
        assert preferences.record(store, "test", PreferenceKind.LEAVE_CAMPAIGN, client=None,
                                  now=now) is None  # fmt: skip
        assert len(store.preference_rows()) == 2
    r = cli(workspace, "status", "december", "--json", "--now", LAST_CALL_DUE)
    last = next(s for s in json.loads(r.output)["steps"] if s["id"] == "last-call")
    assert last["excluded"]["left_campaign"] == 1
    r = cli(workspace, "send", "december", "--step", "last-call", "--yes", "--now", LAST_CALL_DUE)
    assert r.exit_code == 0, r.output
    sent = {s["email"]: s for s in stores.rows(workspace, step="last-call")}
    assert leaver["email"] not in sent and sent[switcher["email"]]["language"] == "fr"

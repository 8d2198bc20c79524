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

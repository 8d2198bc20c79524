"""The storage seam holds: SQL and database drivers live in outreach/store/ only."""

from __future__ import annotations

import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "outreach"
TESTS = Path(__file__).resolve().parent

# a call that runs SQL, a DBAPI driver, or SQL text itself
SQL = re.compile(
    r"\.(execute|executemany|executescript)\(\s*(f?[\"']|sql\b|query\b|statement\b)"
    r"|\b(conn|cur|cursor|db)\.(execute|executemany|executescript)\("
    r"|\bimport (sqlite3|psycopg)\b|\bfrom (sqlite3|psycopg)\b"
    r"|\b(SELECT|INSERT INTO|UPDATE|DELETE FROM|CREATE TABLE|PRAGMA)\s+[\w*(]"
)


def offenders(files, allowed) -> list[str]:
    out = []
    for path in files:
        if path in allowed:
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if SQL.search(line):
                out.append(f"{path}:{n}: {line.strip()}")
    return out


def test_sql_lives_only_in_the_store() -> None:
    store = PACKAGE / "store"
    files = [p for p in PACKAGE.rglob("*.py") if store not in p.parents]
    assert offenders(files, set()) == []


def test_tests_read_state_through_the_store_or_the_cli() -> None:
    """Only the old-ledger tests write SQL (to build ledgers as older versions left them);
    tests/stores.py makes and drops the run's PostgreSQL database and kills connections."""
    allowed = {TESTS / "test_editions.py", TESTS / "stores.py", TESTS / "test_layering.py"}
    assert offenders(sorted(TESTS.rglob("*.py")), allowed) == []


def test_the_check_finds_sql(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        'conn.execute("SELECT 1")\nimport sqlite3\nx = "UPDATE sends SET a = 1"\n'
        "from psycopg import sql\nthe update of a send\n"
    )
    assert [line.rsplit(":", 2)[1] for line in offenders([bad], set())] == ["1", "2", "3", "4"]

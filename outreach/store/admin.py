"""``outreach db status`` and ``outreach db copy``: what a store holds, and moving a ledger into
an empty store (typically from the laptop's SQLite file into a shared PostgreSQL database)."""

from __future__ import annotations

from dataclasses import dataclass, field

from outreach.exceptions import LedgerError
from outreach.store.base import TABLES, Store
from outreach.store.migrate import schema_number
from outreach.store.url import parse, redact_url
from outreach.workspace import Workspace

COPY_BATCH = 10_000  # rows per read and write


@dataclass
class StoreStatus:
    backend: str
    location: str  # path or URL, password redacted
    revision: str
    schema: int
    counts: dict[str, int]

    def as_dict(self) -> dict:
        return {
            "backend": self.backend,
            "location": self.location,
            "revision": self.revision,
            "schema": self.schema,
            "counts": self.counts,
        }


def status(ws: Workspace) -> StoreStatus:
    """The workspace's store: backend, where (without password), schema, rows per table."""
    with Store.open(ws.db_url(), ws.root, purpose="outreach db status") as store:
        revision = store.revision() or ""
        return StoreStatus(
            store.backend, store.location, revision, schema_number(revision) or 0, store.counts()
        )


@dataclass
class CopyResult:
    source: str
    target: str
    counts: dict[str, tuple[int, int]] = field(default_factory=dict)  # table → (source, target)

    @property
    def rows(self) -> int:
        return sum(n for n, _ in self.counts.values())


def copy(ws: Workspace, to: str, *, progress=None) -> CopyResult:
    """Copy every row of the workspace's store into the empty store at ``to``, in one
    transaction there, and check the counts. The source is left as it was; no send may run
    meanwhile (its send lock is held)."""
    source_url = parse(ws.db_url(), ws.root)
    target_url = parse(to, ws.root)
    if (source_url.path and source_url.path == target_url.path) or source_url.url == target_url.url:
        raise LedgerError(
            "the source and the target are the same store",
            where=f"--to {target_url.shown}",
            hint="OUTREACH_DB names the store to copy from; --to names a new, empty one",
        )
    with (
        Store.open(ws.db_url(), ws.root, create=False, purpose="outreach db copy") as src,
        Store.open(to, ws.root, purpose="outreach db copy") as dst,
    ):
        src.acquire_send_lock("(db copy)")
        if not dst.is_empty():
            raise LedgerError(
                "the target already holds data: refusing to mix two ledgers",
                where=dst.location,
                hint="copy into a new, empty database (createdb …); `outreach db status` with "
                "OUTREACH_DB set to it shows what it holds",
            )
        result = CopyResult(src.location, dst.location)
        with dst.transaction():
            for table in TABLES:
                columns = src.columns(table)
                for part in src.read_table(table, COPY_BATCH):
                    dst.write_table(table, columns, part)
                    if progress is not None:
                        progress(table, len(part))
            dst.after_copy()
            before, after = src.counts(), dst.counts()
            result.counts = {t: (before[t], after[t]) for t in TABLES}
            wrong = [t for t in TABLES if before[t] != after[t]]
            if wrong:  # rolls the whole copy back
                raise LedgerError(
                    "the copy does not match its source: "
                    + ", ".join(f"{t} {before[t]} → {after[t]}" for t in wrong),
                    where=dst.location,
                    hint="nothing was kept in the target; run the copy again",
                )
    return result


__all__ = ["CopyResult", "StoreStatus", "copy", "redact_url", "status"]

"""Terminal output for tracking: event imports and suppressions (rich). The report's terminal
table is :mod:`outreach.report_table`."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from outreach.console import console, say
from outreach.events import ImportResult
from outreach.suppressions import Listing


def print_import(result: ImportResult) -> None:
    for path, r in result.files.items():
        say(
            f"{path}: {r.received} event(s): {r.stored} stored, {r.duplicates} duplicate(s), "
            f"{r.matched} matched, {r.unmatched} unmatched, {r.suppressions_changed} suppression change(s)"
        )
    t = result.total
    if len(result.files) > 1:
        say(
            f"total: {t.stored} stored, {t.duplicates} duplicate(s), {t.unmatched} unmatched, "
            f"{t.suppressions_changed} suppression change(s)"
        )
    if t.unmatched_examples:
        say("unmatched (kept, not counted in reports):")
        for ex in t.unmatched_examples:
            say(f"  {ex}")


def print_suppressions(result: Listing) -> None:
    rows = result.suppressions
    if not rows:
        console.print("No active suppressions.")
    else:
        table = Table(title=f"{len(rows)} suppressed address(es)")
        for col in ("email", "reason", "since", "source", "by", "why"):
            table.add_column(col, overflow="fold")
        for r in rows:
            table.add_row(
                Text(r.email),
                r.reason,
                r.created_at[:16].replace("T", " "),
                r.source,
                Text(r.created_by or ""),
                Text(r.detail or ""),
            )
        console.print(table)
    if result.log:
        console.print("History:")
        for entry in result.log:
            say(
                f"  {entry['at'][:19].replace('T', ' ')}  {entry['action']:<7} {entry['reason'] or ''} "
                f"by {entry['who'] or '?'} ({entry['source']}): {entry['note'] or ''}"
            )

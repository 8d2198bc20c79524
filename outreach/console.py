"""Terminal output: plans, progress, summaries and check reports, drawn with rich.

Only presentation lives here; every figure comes from the library objects passed in.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import click
from rich.console import Console
from rich.padding import Padding
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from outreach.campaign import Campaign
from outreach.checks import Area, Check, Checkup, Status
from outreach.contacts import ContactList
from outreach.send import SendPlan, SendSummary, StepPlan

# wide when not a terminal, so that logs and CI output do not wrap mid-sentence
console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)


def say(text: str) -> None:
    """Print text that may contain user data (no rich markup interpretation)."""
    console.print(text, markup=False)


def _when(dt: datetime, now: datetime) -> str:
    delta = dt - now
    word = "in " if delta.total_seconds() > 0 else ""
    ago = "" if delta.total_seconds() > 0 else " ago"
    return f"{dt:%Y-%m-%d %H:%M %Z} ({word}{_span(abs(delta))}{ago})"


def _step_time(step, due_at: datetime, now: datetime) -> str:
    """When a step is due, in words; local-time steps show the wall clock and the first instant."""
    if not step.local_time:
        return _when(due_at, now)
    d, t = step.wall_clock
    first = due_at.astimezone(UTC)
    return f"{d} {t:%H:%M} local time in each recipient's country (from {_when(first, now)})"


def _span(d: timedelta) -> str:
    s = int(d.total_seconds())
    if s < 3600:
        return f"{s // 60} min"
    if s < 86400 * 2:
        return f"{s // 3600} h"
    return f"{s // 86400} days"


class _RateColumn(ProgressColumn):
    """Messages per second and requests in flight."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        rate = f"{speed:,.0f} msg/s" if speed else "– msg/s"
        return Text(f"{rate} · {task.fields.get('in_flight', 0)} in flight", style="cyan")


class RichUI:
    """The CLI's :class:`outreach.send.UI`."""

    def __init__(self, interactive: bool | None = None) -> None:
        self.interactive = sys.stdin.isatty() if interactive is None else interactive

    def show_plan(self, plan: SendPlan) -> None:
        print_plan(plan)

    def confirm(self, question: str) -> bool:
        if not self.interactive:
            console.print(
                f"[bold]{question}[/] — not a terminal, so not confirmed (pass --yes to confirm)"
            )
            return False
        return click.confirm(question, default=False)

    @contextmanager
    def progress(self, total: int, label: str) -> Iterator[Callable[[int, int], None]]:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            _RateColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
            disable=not console.is_terminal,
        ) as prog:
            task = prog.add_task(label, total=total, in_flight=0)
            yield lambda n, in_flight=0: prog.update(task, advance=n, in_flight=in_flight)

    def note(self, text: str) -> None:
        say(f"  … {text}")


def edition_label(c: Campaign) -> str:
    """'2027 edition' (a yearly campaign says so)."""
    return f"{c.edition} edition" + (" (yearly)" if c.recurring else "")


def print_plan(plan: SendPlan) -> None:
    c = plan.campaign
    t = plan.transport
    console.print(f"[bold]Plan for {c.name}[/] — {c.title} — [bold]{edition_label(c)}[/]")
    if t.real:
        console.print(f"Transport: [bold]{t.describe()}[/] (real email)")
    else:
        console.print(
            f"Transport: [bold]{t.name}[/] — writes .eml files under outbox/; [bold]nothing is emailed[/]"
        )
    console.print(f"Now: {plan.now:%Y-%m-%d %H:%M %Z}")
    if plan.options.dry_run:
        console.print("[bold cyan]Dry run: nothing will be sent or written.[/]")
    if plan.reconciled:
        words = {"retry": "never handed off (they go now)"}
        parts = ", ".join(f"{n} {words.get(k, k)}" for k, n in plan.reconciled.items())
        console.print(
            f"[yellow]A previous run was interrupted; its in-flight messages were checked: {parts}[/]"
        )
    for sp in plan.steps:
        _print_step(plan, sp)
    if not plan.steps:
        console.print("\nNo step is due.")
    for step, due_at in plan.not_due:
        console.print(f"Not yet due: [bold]{step.id}[/] at {_step_time(step, due_at, plan.now)}")
    if plan.skipped:
        rows = plan.contacts.error_rows
        console.print(f"\n[yellow]Skipped {len(rows)} invalid row(s) (--skip-invalid):[/]")
        for issue in plan.skipped:
            say(f"  {issue}")
    if plan.warnings:
        console.print("\n[yellow]Warnings:[/]")
        for w in plan.warnings:
            say(f"  ! {w}")
    if plan.checks is not None:
        stops = "a real send stops on ✗ unless --force" if t.real else "a real send would stop on ✗"
        console.print(f"\n[bold]Readiness[/] ({stops}):")
        for check in plan.checks.checks:
            _print_check(check, indent="  ")
        for note in plan.checks.notes:
            say(f"  not checked here: {note}")
    console.print(f"\nTotal to {'send' if t.real else 'write'}: [bold]{plan.total}[/] message(s)")


def _print_step(plan: SendPlan, sp: StepPlan) -> None:
    step = sp.step
    state = {
        "due": "[green]due[/]",
        "forced": "[yellow]not yet due — sending before its time because you chose --step[/]",
        "late": "[red]OVERDUE[/]",
        "not_due": "not due",
    }[sp.state]
    console.print(
        f"\n[bold]Step {step.id}[/] — due {_step_time(step, sp.due_at, plan.now)}: {state}"
    )
    batches = len(sp.batches)
    console.print(
        f"  Recipients: [bold]{len(sp.recipients)}[/]   variants: {len(sp.variants)}   batches: {batches}"
        + (f"   retrying earlier failures: {sp.retrying}" if sp.retrying else "")
    )
    if sp.breakdown:
        langs = sorted({k[2] for k in sp.breakdown})
        table = Table(show_edge=False, pad_edge=False, box=None)
        table.add_column("segment")
        table.add_column("country status")
        for lang in langs:
            table.add_column(lang, justify="right")
        table.add_column("total", justify="right")
        rows: dict[tuple[str, str], Counter] = {}
        for (seg, status, lang), n in sp.breakdown.items():
            rows.setdefault((seg, status), Counter())[lang] += n
        for (seg, status), cnt in sorted(rows.items()):
            table.add_row(
                seg, status, *[str(cnt.get(lang, "")) for lang in langs], str(sum(cnt.values()))
            )
        console.print(Padding(table, (0, 0, 0, 4)))
    if sp.exclusions:
        console.print("  Excluded:")
        for why, n in sp.exclusions.most_common():
            ex = sp.examples.get(why)
            more = f" — e.g. {', '.join(ex[:3])}" if ex else ""
            say(f"    {n:>6}  {why.words()}{more}")
    for note in dict.fromkeys(sp.notes):
        say(f"  note: {note}")


def print_summary(summary: SendSummary) -> None:
    if summary.dry_run:
        console.print("\nDry run finished: nothing was sent.")
        return
    if summary.test_sends:
        console.print(
            f"\nSent {summary.test_sends} test message(s), marked [TEST]; none was recorded as a campaign send."
        )
        return
    table = Table(
        title=f"Summary — {summary.campaign}, {summary.edition} edition, via {summary.transport}",
        show_edge=True,
    )
    for col in ("step", "sent", "failed", "unknown", "batches"):
        table.add_column(col, justify="left" if col == "step" else "right")
    for s in summary.steps:
        table.add_row(s.step, str(s.sent), str(s.failed), str(s.unknown), str(s.batches))
    console.print()
    console.print(table)
    at_once = f" (up to {summary.concurrency} at a time)" if summary.concurrency > 1 else ""
    console.print(
        f"{summary.requests} request(s){at_once}, {summary.bytes_sent / 1e6:.1f} MB sent, "
        f"{summary.wire_seconds:.1f} s on the wire, {summary.seconds:.1f} s in all"
    )
    for s in summary.steps:
        for e in s.errors[:10]:
            say(f"  {s.step}: {e}")
    if not summary.real:
        console.print("[bold]Nothing was emailed[/]: the outbox transport only wrote .eml files.")
        for p in summary.outbox_index:
            console.print(f"  open {p}")
    if summary.unknown:
        console.print(
            f"[yellow]{summary.unknown} message(s) have an unknown outcome; they will not be resent "
            "unless you pass --resend-unknown.[/]"
        )
    if summary.released:
        console.print(
            f"[yellow]{summary.released} message(s) were prepared but not handed off; the next "
            "run sends them.[/]"
        )
    if summary.paused:
        console.print(f"[red]{summary.paused}[/]")


def print_check(contacts: ContactList, counts: dict, as_of: str, warnings: list[str]) -> None:
    """The ``outreach lists check`` report."""
    for source, enc in contacts.encodings.items():
        say(f"{source}: read as {enc}")
    errors, warns = contacts.errors, contacts.warnings
    console.print(
        f"{contacts.rows_read} row(s): [bold]{len(contacts.contacts)}[/] valid contact(s), "
        f"[red]{len(errors)} error(s)[/], [yellow]{len(warns)} warning(s)[/]"
    )
    if errors:
        console.print(
            "\n[red]Errors[/] (these rows are not sent to; `send` refuses to start until fixed or --skip-invalid):"
        )
        for i in errors:
            say(f"  {i}")
    if warns:
        console.print("\n[yellow]Warnings[/] (these contacts are kept):")
        for i in warns:
            say(f"  {i}")
    console.print(f"\nContacts per segment × country status × language (status as of {as_of}):")
    table = Table(show_edge=False, box=None, pad_edge=False)
    langs = sorted({lang for seg in counts.values() for (_s, lang) in seg})
    table.add_column("segment")
    table.add_column("status")
    for lang in langs:
        table.add_column(lang, justify="right")
    table.add_column("total", justify="right")
    for seg, cnt in counts.items():
        statuses = sorted({s for (s, _lang) in cnt})
        for status in statuses:
            row = [str(cnt.get((status, lang), "")) for lang in langs]
            table.add_row(seg, status, *row, str(sum(cnt.get((status, lang), 0) for lang in langs)))
    console.print(table)
    if warnings:
        console.print("\n[yellow]Campaign warnings:[/]")
        for w in warnings:
            say(f"  ! {w}")


_STATUS_STYLE = {Status.OK: "green", Status.WARN: "yellow", Status.FAIL: "red"}


def _print_check(check: Check, indent: str = "  ", details: int = 5) -> None:
    style = _STATUS_STYLE[check.status]
    console.print(f"{indent}[{style}]{check.status.mark}[/] ", end="")
    say(f"{check.title}: {check.result}")
    if check.status is Status.OK:
        return
    for d in check.details[:details]:
        say(f"{indent}    {d}")
    if len(check.details) > details:
        say(f"{indent}    … and {len(check.details) - details} more (--json shows them all)")
    if check.fix:
        say(f"{indent}    → {check.fix}")


def print_checkup(checkup: Checkup, title: str) -> None:
    """``outreach doctor``: the checks by area, one line each, a fix under each ! and ✗."""
    console.print(f"[bold]{title}[/]")
    for area in Area:
        checks = [c for c in checkup.checks if c.area is area]
        if not checks:
            continue
        console.print(f"\n[bold]{area.value}[/]")
        for check in checks:
            _print_check(check)
    for note in checkup.notes:
        say(f"\nnot checked: {note}" if note is checkup.notes[0] else f"not checked: {note}")
    failures, warnings = len(checkup.failures), len(checkup.warnings)
    if failures:
        verdict = (
            f"[red]{failures} failure(s)[/], {warnings} warning(s): fix every ✗ before a real "
            "send (`send` refuses it without --force)"
        )
    elif warnings:
        verdict = f"[yellow]{warnings} warning(s)[/], no failure: ready, but read the ! lines"
    else:
        verdict = "[green]all checks passed[/]: ready to send"
    console.print(f"\n{verdict} (exit {checkup.exit_code})")

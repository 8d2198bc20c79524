"""The report as terminal tables (rich): ``outreach report`` with ``--format table``, and two
editions side by side (``--compare``)."""

from __future__ import annotations

import io

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from outreach.console import console
from outreach.report import COMPARED, DIMENSIONS, Comparison, Report, StepReport
from outreach.reputation import COMPLAINT_TARGET, Level, pct


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{v * 100:.1f}%"


def _step_renderables(s: StepReport) -> list:
    t = s.totals
    head = Table(show_header=True, box=None, pad_edge=False, title=None)
    cols = [
        ("sent", "sent"),
        ("delivered", "delivered"),
        ("bounced hard", "bounced_hard"),
        ("soft", "bounced_soft"),
        ("dropped", "dropped"),
        ("opened (people)", "opens_unique"),
        ("machine opens", "machine_opens_unique"),
        ("clicked", "clicks_unique"),
        ("unsubscribed", "unsubscribes"),
        ("spam reports", "spam_reports"),
    ]
    for label, _ in cols:
        head.add_column(label, justify="right")
    head.add_row(*(str(t[k]) for _, k in cols))
    head.add_row(
        "",
        _pct(t["delivered_rate"]),
        _pct(t["bounce_rate"]),
        "",
        _pct(t["dropped_rate"]),
        _pct(t["open_rate"]),
        "",
        _pct(t["click_rate"]),
        _pct(t["unsubscribe_rate"]),
        _pct(t["spam_rate"]),
    )
    out: list = [head, _reputation_line(s)]
    for dim in DIMENSIONS:
        rows = s.by[dim]
        if not rows:
            continue
        table = Table(title=f"by {dim.replace('_', ' ')}", title_justify="left", box=None)
        table.add_column(dim.replace("_", " "))
        for label in (
            "sent",
            "delivered",
            "bounced",
            "opened",
            "open rate",
            "clicked",
            "click rate",
            "unsub.",
            "spam",
        ):
            table.add_column(label, justify="right")
        for r in rows[:25]:
            table.add_row(
                Text(r["value"]),
                str(r["sent"]),
                str(r["delivered"]),
                str(r["bounced_hard"] + r["bounced_soft"]),
                str(r["opens_unique"]),
                _pct(r["open_rate"]),
                str(r["clicks_unique"]),
                _pct(r["click_rate"]),
                str(r["unsubscribes"]),
                str(r["spam_reports"]),
            )
        if len(rows) > 25:
            table.add_row(Text(f"… {len(rows) - 25} more (see --format csv)"), *[""] * 9)
        out.append(table)
    if s.links:
        table = Table(title="clicks per link", title_justify="left", box=None)
        table.add_column("link")
        table.add_column("people", justify="right")
        table.add_column("clicks", justify="right")
        for link in s.links:
            table.add_row(Text(link["link"]), str(link["clicks_unique"]), str(link["clicks_total"]))
        out.append(table)
    return out


_LEVEL_STYLE = {
    Level.OK: ("✓", "green"),
    Level.WATCH: ("!", "yellow"),
    Level.UNKNOWN: ("!", "yellow"),
    Level.OVER: ("✗", "red"),
}


def _reputation_line(s: StepReport) -> Text:
    h = s.reputation
    mark, style = _LEVEL_STYLE[h.level]
    text = Text(f"{mark} reputation: ", style=style)
    text.append(h.summary())
    if h.level is Level.OVER:
        text.append(
            "\n  the next step will not be sent without --force; highest in: "
            + "; ".join(h.where())
        )
    elif h.level is Level.WATCH:
        text.append(f"\n  Gmail asks to stay below {pct(COMPLAINT_TARGET)} complaints")
    return text


def report_renderables(rep: Report) -> list:
    out: list = [
        Text.from_markup(
            f"[bold]{rep.title}[/] — campaign [bold]{rep.campaign}[/], "
            f"[bold]{rep.edition} edition[/]"
        ),
        Text(
            f"transport: {rep.transport or 'none'}; {rep.events_matched} event(s) matched"
            + (f", {rep.events_unmatched} unmatched" if rep.events_unmatched else "")
            + f"; generated {rep.generated_at}"
        ),
    ]
    for note in rep.notes:
        out.append(Text(f"note: {note}", style="yellow"))
    for s in rep.steps:
        out.append(Panel(Group(*_step_renderables(s)), title=f"step {s.step}", title_align="left"))
    if rep.timeline:
        table = Table(
            title=f"opens and clicks per {rep.granularity}", title_justify="left", box=None
        )
        table.add_column(rep.granularity)
        table.add_column("opens", justify="right")
        table.add_column("clicks", justify="right")
        shown = rep.timeline if len(rep.timeline) <= 48 else rep.timeline[-48:]
        for b in shown:
            table.add_row(b["bucket"], str(b["opens"]), str(b["clicks"]))
        out.append(table)
    if rep.top_countries:
        table = Table(title="top countries by engagement", title_justify="left", box=None)
        for col in ("country", "status", "sent", "engaged", "rate", "opened", "clicked"):
            table.add_column(col, justify="left" if col in ("country", "status") else "right")
        for c in rep.top_countries:
            table.add_row(
                c["country"],
                c["country_status"],
                str(c["sent"]),
                str(c["engaged"]),
                _pct(c["engagement_rate"]),
                str(c["opens_unique"]),
                str(c["clicks_unique"]),
            )
        out.append(table)
    return out


def print_report(rep: Report) -> None:
    for r in report_renderables(rep):
        console.print(r)


def _plain(renderables: list, width: int) -> str:
    """Renderables as plain text (no colours), ``width`` columns wide."""
    buf = io.StringIO()
    c = Console(file=buf, width=width, force_terminal=False, color_system=None, highlight=False)
    for r in renderables:
        c.print(r)
    return buf.getvalue()


def report_text(rep: Report, width: int = 120) -> str:
    return _plain(report_renderables(rep), width)


def _value(metric: str, v: float | None) -> str:
    if v is None:
        return "—"
    return _pct(v) if metric.endswith("_rate") else str(v)


def _delta(metric: str, v: float | None) -> str:
    if v is None:
        return "—"
    if metric.endswith("_rate"):
        return f"{v * 100:+.1f} pts"
    return f"{v:+d}" if isinstance(v, int) else f"{v:+g}"


def comparison_renderables(cmp: Comparison) -> list:
    out: list = [
        Text.from_markup(
            f"[bold]{cmp.title}[/] — campaign [bold]{cmp.campaign}[/]: "
            f"[bold]{cmp.edition}[/] edition compared with [bold]{cmp.other}[/]"
        ),
        Text(f"transport: {cmp.transport or 'none'}; generated {cmp.generated_at}"),
    ]
    for note in cmp.notes:
        out.append(Text(f"note: {note}", style="yellow"))
    for s in cmp.steps:
        table = Table(box=None, pad_edge=False)
        table.add_column("metric")
        table.add_column(str(cmp.edition), justify="right")
        table.add_column(str(cmp.other), justify="right")
        table.add_column("change", justify="right")
        for metric in COMPARED:
            m = s["metrics"][metric]
            table.add_row(
                metric.replace("_", " "),
                _value(metric, m["edition"]),
                _value(metric, m["other"]),
                _delta(metric, m["change"]),
            )
        parts: list = [table]
        if s["links"]:
            links = Table(title="people who clicked, per link", title_justify="left", box=None)
            links.add_column("link")
            links.add_column(str(cmp.edition), justify="right")
            links.add_column(str(cmp.other), justify="right")
            links.add_column("change", justify="right")
            for link in s["links"]:
                c = link["clicks_unique"]
                links.add_row(
                    Text(link["link"]), str(c["edition"]), str(c["other"]), f"{c['change']:+d}"
                )
            parts.append(links)
        out.append(Panel(Group(*parts), title=f"step {s['step']}", title_align="left"))
    return out


def comparison_text(cmp: Comparison, width: int = 120) -> str:
    return _plain(comparison_renderables(cmp), width)


def print_comparison(cmp: Comparison) -> None:
    for r in comparison_renderables(cmp):
        console.print(r)

"""The report as ONE self-contained HTML file: inline CSS, charts as inline SVG drawn with
matplotlib (Agg backend), no scripts, no network. Staff can email it around."""

from __future__ import annotations

import html
import io
import re

import matplotlib

matplotlib.use("Agg")  # no display, no GUI toolkit: safe on servers and in CI

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from outreach.report import DIMENSIONS, Report, StepReport

COLORS = {
    "sent": "#9aa5b1",
    "delivered": "#5b8def",
    "opened": "#2e9e6b",
    "clicked": "#e07b39",
    "opens": "#2e9e6b",
    "clicks": "#e07b39",
}
STATUS_ORDER = ("ratified", "signed", "not_signed", "unknown", "(none)")

CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2933;margin:0;background:#f5f7fa}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:1.6em;margin:.2em 0}h2{margin-top:1.6em;border-bottom:2px solid #d9e2ec;padding-bottom:.2em}
h3{margin:1.2em 0 .4em}
.meta{color:#52606d}.note{background:#fff3cd;border-left:4px solid #f0b429;padding:8px 12px;margin:8px 0}
.kpis{display:flex;flex-wrap:wrap;gap:10px;margin:12px 0}
.kpi{background:#fff;border:1px solid #d9e2ec;border-radius:6px;padding:8px 14px;min-width:110px}
.kpi b{display:block;font-size:1.4em}.kpi span{color:#52606d;font-size:.85em}
.charts{display:flex;flex-wrap:wrap;gap:16px}
figure{background:#fff;border:1px solid #d9e2ec;border-radius:6px;margin:0;padding:8px;flex:0 1 auto;max-width:100%}
figure svg{max-width:100%;height:auto;display:block}figcaption{color:#52606d;font-size:.85em;margin-top:4px}
table{border-collapse:collapse;background:#fff;margin:6px 0 14px;font-size:.9em}
th,td{border-bottom:1px solid #e4e7eb;padding:4px 10px;text-align:right}
th:first-child,td:first-child{text-align:left}thead th{background:#eef2f7}
details{margin:6px 0}summary{cursor:pointer;font-weight:600}
"""


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{v * 100:.1f}%"


def _svg(fig: Figure, salt: str) -> str:
    """The figure as an inline <svg> element (no XML prolog, ids unique per chart)."""
    buf = io.StringIO()
    with plt.rc_context({"svg.hashsalt": salt, "svg.fonttype": "none"}):
        fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    text = text[text.index("<svg") :]
    # ids are hashes salted per chart, but prefix them anyway so charts never share one
    prefix = re.sub(r"[^a-z0-9]", "", salt.lower()) + "-"
    text = re.sub(r'id="([^"]+)"', lambda m: f'id="{prefix}{m.group(1)}"', text)
    text = re.sub(r"url\(#([^)]+)\)", lambda m: f"url(#{prefix}{m.group(1)})", text)
    text = re.sub(r'href="#([^"]+)"', lambda m: f'href="#{prefix}{m.group(1)}"', text)
    return text


def _fig(width: float = 5.2, height: float = 3.0) -> tuple[Figure, object]:
    fig, ax = plt.subplots(figsize=(width, height), dpi=100)
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_axisbelow(True)
    return fig, ax


def funnel_chart(s: StepReport) -> str:
    t = s.totals
    labels = ["sent", "delivered", "opened", "clicked"]
    values = [t["sent"], t["delivered"], t["opens_unique"], t["clicks_unique"]]
    fig, ax = _fig(5.2, 2.6)
    y = list(range(len(labels)))[::-1]
    ax.barh(y, values, color=[COLORS[k] for k in labels], height=0.62)
    ax.set_yticks(y, [f"{lab}" for lab in labels])
    top = max(values) if max(values) > 0 else 1
    ax.set_xlim(0, top * 1.22)
    for yi, v in zip(y, values, strict=True):
        share = f" ({v / t['sent'] * 100:.0f}%)" if t["sent"] and v != t["sent"] else ""
        ax.text(v + top * 0.01, yi, f"{v}{share}", va="center", fontsize=9)
    ax.set_title(f"Funnel — step {s.step}", loc="left", fontsize=11)
    ax.grid(axis="x", color="#e4e7eb")
    return _svg(fig, f"funnel{s.step}")


def timeline_chart(rep: Report) -> str | None:
    if not rep.timeline:
        return None
    import pandas as pd

    x = pd.to_datetime([b["bucket"] for b in rep.timeline], utc=True)
    opens = [b["opens"] for b in rep.timeline]
    clicks = [b["clicks"] for b in rep.timeline]
    fig, ax = _fig(5.2, 3.0)
    if len(x) == 1:
        ax.bar(x, opens, width=0.02, color=COLORS["opens"], label="opens (people)")
        ax.bar(x, clicks, width=0.02, color=COLORS["clicks"], label="clicks", bottom=opens)
    else:
        ax.plot(x, opens, color=COLORS["opens"], marker="o", ms=3, label="opens (people)")
        ax.plot(x, clicks, color=COLORS["clicks"], marker="o", ms=3, label="clicks")
    import matplotlib.dates as mdates

    locator = mdates.AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.set_title(f"Opens and clicks per {rep.granularity} (UTC)", loc="left", fontsize=11)
    ax.legend(frameon=False, fontsize=9)
    ax.grid(axis="y", color="#e4e7eb")
    return _svg(fig, "timeline")


def links_chart(rep: Report) -> str | None:
    totals: dict[str, int] = {}
    for s in rep.steps:
        for link in s.links:
            totals[link["link"]] = totals.get(link["link"], 0) + link["clicks_unique"]
    if not totals:
        return None
    items = sorted(totals.items(), key=lambda kv: kv[1])[-15:]
    fig, ax = _fig(5.2, 0.8 + 0.32 * len(items))
    ax.barh([k for k, _ in items], [v for _, v in items], color=COLORS["clicks"], height=0.6)
    for i, (_, v) in enumerate(items):
        ax.text(v, i, f" {v}", va="center", fontsize=9)
    ax.set_title("People who clicked, per link", loc="left", fontsize=11)
    ax.grid(axis="x", color="#e4e7eb")
    ax.tick_params(axis="y", labelsize=9)
    return _svg(fig, "links")


def status_chart(rep: Report) -> str | None:
    agg: dict[str, dict[str, int]] = {}
    for s in rep.steps:
        for r in s.by["country_status"]:
            a = agg.setdefault(r["value"], {"delivered": 0, "sent": 0, "opens": 0, "clicks": 0})
            a["delivered"] += r["delivered"]
            a["sent"] += r["sent"]
            a["opens"] += r["opens_unique"]
            a["clicks"] += r["clicks_unique"]
    if not agg:
        return None
    names = sorted(agg, key=lambda k: STATUS_ORDER.index(k) if k in STATUS_ORDER else 99)
    open_rate, click_rate = [], []
    for n in names:
        den = agg[n]["delivered"] or agg[n]["sent"]
        open_rate.append(agg[n]["opens"] / den * 100 if den else 0)
        click_rate.append(agg[n]["clicks"] / den * 100 if den else 0)
    fig, ax = _fig(5.2, 3.0)
    xs = range(len(names))
    ax.bar(
        [x - 0.2 for x in xs], open_rate, width=0.4, color=COLORS["opens"], label="opened (people)"
    )
    ax.bar([x + 0.2 for x in xs], click_rate, width=0.4, color=COLORS["clicks"], label="clicked")
    ax.set_xticks(list(xs), [n.replace("_", " ") for n in names])
    ax.set_ylabel("% of delivered")
    ax.set_title("Engagement by country status", loc="left", fontsize=11)
    ax.legend(frameon=False, fontsize=9)
    ax.grid(axis="y", color="#e4e7eb")
    return _svg(fig, "status")


def _table(rows: list[dict], first: str) -> str:
    head = (
        f"<tr><th>{html.escape(first)}</th><th>sent</th><th>delivered</th><th>bounced</th><th>dropped</th>"
        "<th>opened</th><th>open rate</th><th>machine opens</th><th>clicked</th><th>click rate</th>"
        "<th>unsubscribed</th><th>spam</th></tr>"
    )
    body = "".join(
        "<tr>"
        f"<td>{html.escape(r['value'])}</td><td>{r['sent']}</td><td>{r['delivered']}</td>"
        f"<td>{r['bounced_hard'] + r['bounced_soft']}</td><td>{r['dropped']}</td>"
        f"<td>{r['opens_unique']}</td><td>{_pct(r['open_rate'])}</td><td>{r['machine_opens_unique']}</td>"
        f"<td>{r['clicks_unique']}</td><td>{_pct(r['click_rate'])}</td>"
        f"<td>{r['unsubscribes']}</td><td>{r['spam_reports']}</td></tr>"
        for r in rows
    )
    return f"<table><thead>{head}</thead><tbody>{body}</tbody></table>"


def _kpis(t: dict) -> str:
    items = [
        ("sent", str(t["sent"])),
        ("delivered", f"{t['delivered']} · {_pct(t['delivered_rate'])}"),
        ("hard / soft bounces", f"{t['bounced_hard']} / {t['bounced_soft']}"),
        ("dropped", str(t["dropped"])),
        ("opened (people)", f"{t['opens_unique']} · {_pct(t['open_rate'])}"),
        ("machine opens", str(t["machine_opens_unique"])),
        ("clicked", f"{t['clicks_unique']} · {_pct(t['click_rate'])}"),
        ("unsubscribed", str(t["unsubscribes"])),
        ("spam reports", str(t["spam_reports"])),
    ]
    return (
        '<div class="kpis">'
        + "".join(
            f'<div class="kpi"><b>{html.escape(v)}</b><span>{html.escape(k)}</span></div>'
            for k, v in items
        )
        + "</div>"
    )


def to_html(rep: Report) -> str:
    """The whole report page."""
    e = html.escape
    parts = [
        f"<h1>{e(rep.title)} — {rep.edition} edition</h1>",
        f'<p class="meta">Campaign <b>{e(rep.campaign)}</b>'
        + (f", step <b>{e(rep.step_filter)}</b>" if rep.step_filter else "")
        + f" · transport {e(rep.transport or 'none')} · {rep.events_matched} tracking event(s)"
        + (f", {rep.events_unmatched} unmatched" if rep.events_unmatched else "")
        + f" · generated {e(rep.generated_at)}</p>",
    ]
    parts += [f'<p class="note">{e(n)}</p>' for n in rep.notes]
    overview = [timeline_chart(rep), links_chart(rep), status_chart(rep)]
    captions = [
        "Opens count people only: machine opens (privacy proxies) are excluded.",
        "Each person counts once per link.",
        "Share of delivered messages opened or clicked, by the country's OP-ICESCR status.",
    ]
    charts = [
        f'<figure class="chart">{svg}<figcaption>{e(cap)}</figcaption></figure>'
        for svg, cap in zip(overview, captions, strict=True)
        if svg
    ]
    if charts:
        parts.append('<h2>Overview</h2><div class="charts">' + "".join(charts) + "</div>")
    for s in rep.steps:
        parts.append(f"<h2>Step {e(s.step)}</h2>")
        parts.append(_kpis(s.totals))
        parts.append(
            f'<div class="charts"><figure class="chart">{funnel_chart(s)}'
            "<figcaption>Unique messages at each stage.</figcaption></figure></div>"
        )
        for dim in DIMENSIONS:
            rows = s.by[dim]
            if rows:
                opened = " open" if dim in ("segment", "country_status") else ""
                parts.append(
                    f"<details{opened}><summary>By {e(dim.replace('_', ' '))}</summary>"
                    + _table(rows, dim.replace("_", " "))
                    + "</details>"
                )
        if s.links:
            rows = "".join(
                f"<tr><td>{e(link['link'])}</td><td>{link['clicks_unique']}</td><td>{link['clicks_total']}</td></tr>"
                for link in s.links
            )
            parts.append(
                "<h3>Clicks per link</h3><table><thead><tr><th>link</th><th>people</th><th>clicks</th></tr></thead>"
                f"<tbody>{rows}</tbody></table>"
            )
    if rep.top_countries:
        rows = "".join(
            f"<tr><td>{e(c['country'])}</td><td>{e(c['country_status'].replace('_', ' '))}</td><td>{c['sent']}</td>"
            f"<td>{c['engaged']}</td><td>{_pct(c['engagement_rate'])}</td><td>{c['opens_unique']}</td><td>{c['clicks_unique']}</td></tr>"
            for c in rep.top_countries
        )
        parts.append(
            "<h2>Top countries by engagement</h2><table><thead><tr><th>country</th><th>status</th><th>sent</th>"
            "<th>engaged</th><th>rate</th><th>opened</th><th>clicked</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>"
        )
    body = "\n".join(parts)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{e(rep.title)} — {rep.edition} edition — report</title><style>{CSS}</style></head>
<body><main>
{body}
</main></body></html>
"""

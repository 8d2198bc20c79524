"""The report as ONE self-contained HTML file: the shared stylesheet inlined, charts as inline
SVG drawn with matplotlib (Agg backend), no scripts, no network. Staff can email it around.

The page is the ``report/page.html`` template; its body (``report/body.html``) and the charts
(:func:`charts`) are what the dashboard reuses to show the same model live."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")  # no display, no GUI toolkit: safe on servers and in CI

import matplotlib.pyplot as plt
from markupsafe import Markup
from matplotlib.figure import Figure

from outreach.report import DIMENSIONS, Report, StepReport
from outreach.web.templating import render_document

COLORS = {
    "sent": "#9aa5b1",
    "delivered": "#5b8def",
    "opened": "#2e9e6b",
    "clicked": "#e07b39",
    "opens": "#2e9e6b",
    "clicks": "#e07b39",
}
STATUS_ORDER = ("ratified", "signed", "not_signed", "unknown", "(none)")


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


OVERVIEW_CAPTIONS = (
    "Opens count people only: machine opens (privacy proxies) are excluded.",
    "Each person counts once per link.",
    "Share of delivered messages opened or clicked, by the country's OP-ICESCR status.",
)


@dataclass
class Charts:
    """The report's charts as inline SVG markup: ``overview`` is (svg, caption) for each chart
    that has data; ``funnel`` is one chart per step id."""

    overview: list[tuple[Markup, str]]
    funnel: dict[str, Markup]


def charts(rep: Report) -> Charts:
    """Draw every chart of ``rep`` (matplotlib escapes the text it writes into the SVG)."""
    overview = [timeline_chart(rep), links_chart(rep), status_chart(rep)]
    return Charts(
        overview=[
            (Markup(svg), caption)
            for svg, caption in zip(overview, OVERVIEW_CAPTIONS, strict=True)
            if svg
        ],
        funnel={s.step: Markup(funnel_chart(s)) for s in rep.steps},
    )


def to_html(rep: Report) -> str:
    """The whole report page."""
    return render_document(
        "report/page.html", rep=rep, charts=charts(rep), dimensions=DIMENSIONS, lang="en"
    )

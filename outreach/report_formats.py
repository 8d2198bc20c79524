"""The report's exports: JSON and CSV (stable, documented in ``docs/report-format.md``), and
:func:`render` / :func:`render_comparison`, the entry points that write a
:class:`~outreach.report.Report` (or a :class:`~outreach.report.Comparison` of two editions)
in any format. Each format depends on the model, never the reverse."""

from __future__ import annotations

import csv
import io
import json
import math

from outreach.exceptions import ConfigError
from outreach.report import COMPARED, DIMENSIONS, METRICS, Comparison, Report

FORMATS = ("table", "json", "csv", "html")


def to_json(rep: Report) -> str:
    """The report document (``format: outreach-report/1``), as the JSON API will serve it."""
    return json.dumps(rep.as_dict(), indent=2, ensure_ascii=False) + "\n"


CSV_FIELDS = ("step", "dimension", "value", *METRICS, "link_url")


def to_csv(rep: Report) -> str:
    """One row per (step, dimension, value); ``dimension`` is ``all`` for the step's totals and
    ``link`` for clicks per link (only ``clicks_total``/``clicks_unique`` filled)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    w.writeheader()

    def fmt(v):
        if v is None:
            return ""
        if isinstance(v, float):
            return "" if math.isnan(v) else f"{v:.4f}"
        return v

    for s in rep.steps:
        w.writerow(
            {
                "step": s.step,
                "dimension": "all",
                "value": "all",
                **{k: fmt(s.totals[k]) for k in METRICS},
            }
        )
        for dim in DIMENSIONS:
            for row in s.by[dim]:
                w.writerow(
                    {
                        "step": s.step,
                        "dimension": dim,
                        **{k: fmt(row[k]) for k in ("value", *METRICS)},
                    }
                )
        for link in s.links:
            w.writerow(
                {
                    "step": s.step,
                    "dimension": "link",
                    "value": link["link"],
                    "clicks_total": link["clicks_total"],
                    "clicks_unique": link["clicks_unique"],
                    "link_url": link["url"] or "",
                }
            )
    return buf.getvalue()


def comparison_csv(cmp: Comparison) -> str:
    """One row per (step, metric) and per (step, link): both editions' values and the change."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        ["step", "metric", "link", f"edition_{cmp.edition}", f"edition_{cmp.other}", "change"]
    )

    def fmt(v):
        return "" if v is None else (f"{v:.4f}" if isinstance(v, float) else v)

    for s in cmp.steps:
        for metric in COMPARED:
            m = s["metrics"][metric]
            w.writerow(
                [s["step"], metric, "", fmt(m["edition"]), fmt(m["other"]), fmt(m["change"])]
            )
        for link in s["links"]:
            c = link["clicks_unique"]
            w.writerow(
                [s["step"], "clicks_unique", link["link"], c["edition"], c["other"], c["change"]]
            )
    return buf.getvalue()


def render_comparison(cmp: Comparison, fmt: str) -> str:
    """The comparison as ``json``, ``csv`` or plain ``table`` text."""
    if fmt == "json":
        return json.dumps(cmp.as_dict(), indent=2, ensure_ascii=False) + "\n"
    if fmt == "csv":
        return comparison_csv(cmp)
    if fmt == "table":
        from outreach.report_table import comparison_text

        return comparison_text(cmp)
    raise ConfigError(
        f"--compare is printed as table, json or csv, not {fmt}",
        hint="pass --format table, json or csv",
    )


def render(rep: Report, fmt: str) -> str:
    """The report as ``json``, ``csv``, ``html`` or plain ``table`` text."""
    if fmt == "json":
        return to_json(rep)
    if fmt == "csv":
        return to_csv(rep)
    # imported here: matplotlib and rich take a while to load, and JSON/CSV need neither
    if fmt == "html":
        from outreach.report_html import to_html

        return to_html(rep)
    if fmt == "table":
        from outreach.report_table import report_text

        return report_text(rep)
    raise ConfigError(f"unknown report format {fmt!r}", hint=f"use {', '.join(FORMATS)}")

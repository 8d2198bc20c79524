"""``outreach report``: figures from sends ⨝ events, link names, formats, empty campaigns."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from outreach.campaign import load_campaign
from outreach.cli import main
from outreach.events import ingest
from outreach.exceptions import ConfigError
from outreach.ledger import Ledger
from outreach.report import METRICS, LinkNamer, _links, report
from outreach.report_formats import CSV_FIELDS, render
from outreach.workspace import Workspace
from tests import stores
from tests.tracking_support import make_workspace

pytestmark = pytest.mark.both_backends

NOW = datetime(2026, 12, 20, 12, tzinfo=UTC)  # after the circular, within its edition

DOC = Path(__file__).resolve().parent.parent / "docs" / "report-format.md"


@pytest.fixture
def ws(sent_template: Path, tmp_path: Path) -> Workspace:
    return Workspace.open(stores.copy_workspace(sent_template, tmp_path / "ws"))


def add_events(ws: Workspace) -> list:
    with Ledger.open(ws.db_url(), ws.root) as ledger:
        rows = sorted(ledger.table_rows("sends", step="circular"), key=lambda r: r["email"])
        t0 = 1_796_115_600
        evs = []
        for i, r in enumerate(rows):
            base = {"email": r["email"], "send_id": r["send_id"], "campaign": "december"}
            evs.append({**base, "event": "delivered", "timestamp": t0 + i, "sg_event_id": f"d{i}"})
            if i % 2 == 0:
                evs.append(
                    {
                        **base,
                        "event": "open",
                        "timestamp": t0 + 3600 * (i % 30),
                        "sg_event_id": f"o{i}",
                    }
                )
            if i % 7 == 0:
                evs.append(
                    {
                        **base,
                        "event": "open",
                        "sg_machine_open": True,
                        "timestamp": t0,
                        "sg_event_id": f"m{i}",
                    }
                )
            if i % 4 == 0:
                url = (
                    "https://www.ohchr.org/en/treaty-bodies/cescr"
                    if i % 8
                    else "https://bsky.app/intent/compose?text=x"
                )
                evs.append(
                    {
                        **base,
                        "event": "click",
                        "url": url,
                        "timestamp": t0 + 7200 * (i % 20),
                        "sg_event_id": f"c{i}",
                    }
                )
        ingest(ledger, evs, "test")
    return rows


def test_no_sends_no_events_says_so(tmp_path: Path) -> None:
    ws = Workspace.open(make_workspace(tmp_path / "ws"))
    rep = report(ws, "december", now=NOW)
    assert rep.steps == [] and not rep.has_events
    assert any("no tracking events" in n for n in rep.notes)
    assert any("nothing has been sent" in n for n in rep.notes)
    for fmt in ("json", "csv", "html", "table"):
        assert render(rep, fmt)
    assert json.loads(render(rep, "json"))["steps"] == []


def test_sent_without_events(ws: Workspace) -> None:
    rep = report(ws, "december", now=NOW)
    [s] = rep.steps
    assert s.totals["sent"] == 57 and s.totals["delivered"] == 0
    assert s.totals["open_rate"] is None  # no denominator, no made-up 0 %
    assert any("no tracking events" in n for n in rep.notes)
    text = render(rep, "table")
    assert "no tracking events" in text and "step circular" in text
    with pytest.raises(ConfigError, match="no step"):
        report(ws, "december", "nope", now=NOW)
    one = report(ws, "december", "last-call", now=NOW)
    assert any("nothing has been sent for step 'last-call'" in n for n in one.notes)


def test_figures_breakdowns_links_and_timeline(ws: Workspace) -> None:
    rows = add_events(ws)
    rep = report(ws, "december", now=NOW)
    [s] = rep.steps
    n = len(rows)
    opened = len(range(0, n, 2))
    assert s.totals["delivered"] == n
    assert s.totals["opens_unique"] == opened
    assert s.totals["machine_opens_unique"] == len(range(0, n, 7))
    assert s.totals["clicks_unique"] == len(range(0, n, 4))
    assert s.totals["open_rate"] == round(opened / n, 4)
    by_status = {g["value"]: g for g in s.by["country_status"]}
    for status in by_status:
        want = sum(1 for i, r in enumerate(rows) if r["country_status"] == status and i % 2 == 0)
        assert by_status[status]["opens_unique"] == want
    links = {link["link"]: link for link in s.links}
    assert links["committee"]["clicks_unique"] == len([i for i in range(0, n, 4) if i % 8])
    assert links["committee"]["url"] == "https://www.ohchr.org/en/treaty-bodies/cescr"
    assert links["share:bsky"]["url"] is None
    assert sum(b["opens"] for b in rep.timeline) == opened
    assert rep.granularity == "hour"
    assert rep.top_countries and rep.top_countries[0]["engaged"] >= rep.top_countries[-1]["engaged"]


def test_link_names(tmp_path: Path) -> None:
    root = make_workspace(tmp_path / "ws")
    namer = LinkNamer(load_campaign(root, "december"))
    assert namer.names("https://www.ohchr.org/en/treaty-bodies/cescr/") == (
        "committee",
        ["committee"],
    )
    label, names = namer.names("https://www.escr-net.org/")
    assert label.startswith("model_letter (+") and "qa" in names
    assert namer.names("https://x.com/intent/post?text=Well%20done")[0] == "share:x"
    assert namer.names("https://twitter.com/intent/tweet?text=a")[0] == "share:x"
    assert namer.names("https://bsky.app/intent/compose?text=a")[0] == "share:bsky"
    assert namer.names("https://www.facebook.com/sharer/sharer.php?u=a")[0] == "share:facebook"
    assert (
        namer.names("https://www.linkedin.com/sharing/share-offsite/?url=a")[0] == "share:linkedin"
    )
    assert namer.names("https://x.com/escrnet")[0] == "other: x.com/escrnet"
    assert namer.names("https://outreach.escr-net.org/u/abc")[0] == "unsubscribe link"


@pytest.mark.parametrize("order", [[0, 1, 2], [2, 1, 0], [1, 2, 0]])
def test_a_grouped_links_url_does_not_depend_on_the_clicks_order(tmp_path: Path, order) -> None:
    """Clicks on one page with different queries are one ``other:`` link; its URL is the
    alphabetically first, whatever order the store returns the clicks in."""
    root = make_workspace(tmp_path / "ws")
    namer = LinkNamer(load_campaign(root, "december"))
    clicks = ["https://example.org/page?b=2", "https://example.org/page?a=1", "https://x.com/a"]
    url = np.array([clicks[i] for i in order], dtype=object)
    row = np.array(order, dtype=np.int64)
    links = {x["link"]: x for x in _links(url, row, namer)}
    page = links["other: example.org/page"]
    assert (page["url"], page["clicks_total"], page["clicks_unique"]) == (
        "https://example.org/page?a=1",
        2,
        2,
    )
    assert links["other: x.com/a"]["url"] == "https://x.com/a"


def test_json_and_csv_are_stable_and_documented(ws: Workspace) -> None:
    add_events(ws)
    rep = report(ws, "december", now=NOW)
    data = json.loads(render(rep, "json"))
    assert data["format"] == "outreach-report/1"
    assert list(data["steps"][0]["totals"]) == list(METRICS)
    assert list(data["steps"][0]["by"]) == [
        "segment",
        "relationship",
        "country_status",
        "country",
        "language",
    ]
    text = render(rep, "csv")
    reader = csv.DictReader(io.StringIO(text))
    assert tuple(reader.fieldnames) == CSV_FIELDS
    kinds = {row["dimension"] for row in reader}
    assert kinds == {
        "all",
        "segment",
        "relationship",
        "country_status",
        "country",
        "language",
        "link",
    }
    doc = DOC.read_text()
    for name in (*CSV_FIELDS, "has_events", "top_countries", "granularity", "events.unmatched"):
        assert f"`{name}`" in doc, name


def test_html_is_one_self_contained_file(ws: Workspace) -> None:
    add_events(ws)
    html = render(report(ws, "december", now=NOW), "html")
    assert "<script" not in html and "<link" not in html and "@import" not in html
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert html.count("<svg") == 4  # timeline, links, status, one funnel per step
    ids = re.findall(r'id="([^"]+)"', html)
    assert len(ids) == len(set(ids))


def test_report_cli(ws: Workspace) -> None:
    add_events(ws)
    runner = CliRunner()
    out = ws.root / "reports" / "dec.html"
    res = runner.invoke(
        main,
        [
            "-C",
            str(ws.root),
            "report",
            "december",
            "--now",
            NOW.isoformat(),
            "--format",
            "html",
            "-o",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    assert out.read_text().startswith("<!doctype html>")
    res = runner.invoke(
        main,
        [
            "-C",
            str(ws.root),
            "report",
            "december",
            "--now",
            NOW.isoformat(),
            "--format",
            "csv",
            "--step",
            "circular",
        ],
    )
    assert res.output.splitlines()[0] == ",".join(CSV_FIELDS)
    res = runner.invoke(main, ["-C", str(ws.root), "report", "december", "--now", NOW.isoformat()])
    assert res.exit_code == 0 and "opened (people)" in res.output
    res = runner.invoke(main, ["-C", str(ws.root), "report", "nosuch"])
    assert res.exit_code == 1 and "no campaign named" in res.output


def test_events_without_timestamp_or_url(ws: Workspace) -> None:
    rows = add_events(ws)
    with Ledger.open(ws.db_url(), ws.root) as ledger:
        r = rows[1]
        res = ingest(
            ledger,
            [
                {"event": "open", "email": r["email"], "send_id": r["send_id"]},
                {
                    "event": "click",
                    "email": r["email"],
                    "send_id": r["send_id"],
                    "timestamp": 1_796_115_700,
                },
            ],
            "test",
        )
    assert res.matched == 2
    rep = report(ws, "december", now=NOW)
    [s] = rep.steps
    assert s.totals["opens_unique"] == len(range(0, len(rows), 2)) + 1
    assert sum(b["opens"] for b in rep.timeline) == len(
        range(0, len(rows), 2)
    )  # no time, no bucket
    assert s.totals["clicks_total"] == sum(link["clicks_total"] for link in s.links) + 1

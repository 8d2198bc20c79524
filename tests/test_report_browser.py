"""The HTML report in headless Chromium: no console errors, charts that are really drawn."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import pytest

from outreach.report import report
from outreach.report_formats import render
from outreach.workspace import Workspace
from tests.browser import browser_page, requires_chromium
from tests.test_report import add_events
from tests.tracking_support import make_workspace, send_outbox

pytestmark = [pytest.mark.browser, pytest.mark.slow, requires_chromium]


def test_html_report_renders_with_charts(tmp_path: Path) -> None:
    from PIL import Image, ImageStat

    root = make_workspace(tmp_path / "ws")
    send_outbox(root, "circular")
    ws = Workspace.open(root)
    add_events(ws)
    path = tmp_path / "report.html"
    path.write_text(render(report(ws, "december"), "html"), encoding="utf-8")
    with browser_page(1200, 900) as (page, errors):
        page.goto(path.as_uri())
        page.wait_for_load_state("load")
        charts = page.locator("figure.chart svg")
        assert charts.count() == 4
        for i in range(charts.count()):
            box = charts.nth(i).bounding_box()
            assert box and box["width"] > 200 and box["height"] > 100, box
            png = charts.nth(i).screenshot()
            img = Image.open(io.BytesIO(png)).convert("L")
            stat = ImageStat.Stat(img)
            assert stat.stddev[0] > 10, f"chart {i} looks blank"
            hist = img.histogram()
            assert sum(hist[:200]) > 0.01 * sum(hist), f"chart {i} has almost no ink"
        shot = page.screenshot(full_page=True)
        assert errors == []
    out = os.environ.get("OUTREACH_SCREENSHOT_DIR")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "report.png").write_bytes(shot)
        shutil.copy(path, Path(out) / "report.html")

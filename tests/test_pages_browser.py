"""The pages in headless Chromium, on a phone (375 px) and a laptop (1280 px): the recipients'
preference and unsubscribe pages served by a real ``outreach serve`` (stylesheet allowed by the
CSP, the buttons really POST), and the self-contained report and outbox index read on a phone.
Screenshots go to ``OUTREACH_SCREENSHOT_DIR`` when it is set."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from outreach.ledger import Ledger
from outreach.report import report
from outreach.report_html import to_html
from outreach.suppressions import history
from tests.browser import browser_page, requires_chromium
from tests.dates import webhook_now
from tests.tracking_support import run_server

NOW = webhook_now()  # reports and plans as of the webhook's clock

pytestmark = [pytest.mark.browser, pytest.mark.slow, requires_chromium]

WIDTHS = (375, 1280)
# what a page must satisfy at any width: nothing wider than the screen, fingers-sized buttons
LAYOUT = """() => {
  const luminance = (rgb) => {
    const [r, g, b] = rgb.match(/[0-9.]+/g).slice(0, 3).map(Number).map((v) => {
      v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const contrast = (a, b) => {
    const [x, y] = [luminance(a), luminance(b)].sort((p, q) => q - p);
    return (x + 0.05) / (y + 0.05);
  };
  const body = getComputedStyle(document.body);
  const button = document.querySelector("button");
  const bs = button && getComputedStyle(button);
  return {
    overflow: document.documentElement.scrollWidth - window.innerWidth,
    lang: document.documentElement.lang,
    background: body.backgroundColor,
    textContrast: contrast(
      getComputedStyle(document.querySelector("main p")).color,
      getComputedStyle(document.querySelector(".card") || document.body).backgroundColor,
    ),
    buttonHeight: button ? button.getBoundingClientRect().height : null,
    buttonContrast: button ? contrast(bs.color, bs.backgroundColor) : null,
  };
}"""
STYLED_BACKGROUND = "rgb(245, 247, 250)"  # --bg in outreach.css: proves the stylesheet loaded


def _shot(page, name: str) -> None:
    out = os.environ.get("OUTREACH_SCREENSHOT_DIR")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(out) / name), full_page=True)


def test_unsubscribe_pages_on_a_phone_and_a_laptop(sent_ws, circular_rows, signer) -> None:
    key = {"SENDGRID_WEBHOOK_PUBLIC_KEY": signer.public_b64}
    rows = {lang: next(r for r in circular_rows if r["language"] == lang) for lang in ("es", "fr")}
    with run_server(sent_ws.root, key) as server:
        base = f"http://127.0.0.1:{server.port}"
        with browser_page(WIDTHS[0], 800, allow=(base,)) as (page, errors):
            for width, (lang, row) in zip(WIDTHS, rows.items(), strict=True):
                page.set_viewport_size({"width": width, "height": 800})
                page.goto(f"{base}/u/{row['send_id']}")
                page.wait_for_load_state("load")
                got = page.evaluate(LAYOUT)
                assert got["lang"] == lang
                assert got["background"] == STYLED_BACKGROUND
                assert got["overflow"] <= 0, f"wider than {width} px"
                assert got["buttonHeight"] >= 44
                assert got["buttonContrast"] >= 4.5 and got["textContrast"] >= 4.5, got
                assert row["email"] not in page.content()
                _shot(page, f"unsubscribe-{lang}-{width}.png")
                # the preference page: leave this campaign only, then come back to the page
                page.click("button[type=submit] >> nth=0")
                page.wait_for_load_state("load")
                left = {"es": "Hecho: ", "fr": "C’est fait : "}[lang]
                assert left in page.inner_text("main")
                assert page.evaluate(LAYOUT)["overflow"] <= 0
                _shot(page, f"preferences-done-{lang}-{width}.png")
                page.click("main a")
                page.wait_for_load_state("load")
                # leave every mailing: the form that POSTs like a one-click client
                page.click("form:not([action]) button")
                page.wait_for_load_state("load")
                done = {"es": "Se ha dado de baja", "fr": "Votre désabonnement"}[lang]
                assert done in page.inner_text("main")
                assert page.evaluate(LAYOUT)["overflow"] <= 0
                _shot(page, f"unsubscribe-done-{lang}-{width}.png")
            page.goto(f"{base}/u/test")
            assert "changes nothing" in page.inner_text("main")
            assert errors == []  # no CSP violation, no missing stylesheet
    with Ledger.open(sent_ws.db_url(), sent_ws.root) as ledger:
        active = ledger.suppressed()
        notes = [e["note"] for e in history(ledger)]
        left = [(p["email"], p["kind"]) for p in ledger.preference_rows()]
    assert set(active) == {r["email"].lower() for r in rows.values()}
    assert all("confirmation page" in n for n in notes)
    assert left == [(r["email"].lower(), "leave_campaign") for r in rows.values()]


def test_the_report_and_the_outbox_index_read_on_a_phone(sent_ws, tmp_path) -> None:
    from tests.test_report import add_events

    add_events(sent_ws)
    path = tmp_path / "report.html"
    path.write_text(to_html(report(sent_ws, "december", now=NOW)), encoding="utf-8")
    index = sent_ws.root / "outbox" / "december" / "2026" / "circular" / "index.html"
    with browser_page(375, 800) as (page, errors):
        for name, url in (("report", path.as_uri()), ("outbox-index", index.as_uri())):
            page.goto(url)
            page.wait_for_load_state("load")
            got = page.evaluate(LAYOUT)
            assert got["background"] == STYLED_BACKGROUND
            assert got["overflow"] <= 0, f"{name} is wider than the phone"
            assert got["textContrast"] >= 4.5
            # wide tables scroll inside their own box instead of widening the page
            wide = page.evaluate(
                "() => [...document.querySelectorAll('.table-scroll')]"
                ".filter(d => d.scrollWidth > d.clientWidth).length"
            )
            assert wide >= 1
            _shot(page, f"{name}-375.png")
        page.goto(path.as_uri())
        for i in range(page.locator("figure.chart svg").count()):
            box = page.locator("figure.chart svg").nth(i).bounding_box()
            assert box and box["width"] <= 375 and box["height"] > 50, box
        assert errors == []
    assert re.search(r"<h1>", path.read_text())

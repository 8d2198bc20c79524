"""The staff dashboard in headless Chromium against a real ``outreach serve``, on a phone
(375 px) and a laptop (1280 px): an anonymous visit lands on the login page; an admin logs in,
reads the circular's sent, delivered and opened figures (checked against
``outreach report --format json``), looks up an address, suppresses one with a reason, and
logs out; nothing is wider than the screen and nothing fails in the console (the CSP allows no
inline script or style). Screenshots go to a temporary directory, and to
``OUTREACH_SCREENSHOT_DIR`` as well when it is set."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from outreach import accounts
from tests import stores
from tests.browser import browser_page, requires_chromium
from tests.conftest import STAFF_PASSWORD
from tests.test_pages_browser import STYLED_BACKGROUND
from tests.tracking_support import cli_report, run_server

pytestmark = [pytest.mark.browser, pytest.mark.slow, requires_chromium]

ADMIN = "ana@example.org"
LAYOUT = """() => ({
  overflow: document.documentElement.scrollWidth - window.innerWidth,
  background: getComputedStyle(document.body).backgroundColor,
})"""


def shot(page, shots: Path, name: str) -> None:
    page.screenshot(path=str(shots / name), full_page=True)
    extra = os.environ.get("OUTREACH_SCREENSHOT_DIR")
    if extra:
        Path(extra).mkdir(parents=True, exist_ok=True)
        shutil.copy(shots / name, Path(extra) / name)


def figure(page, step: str, metric: str) -> int:
    text = page.inner_text(f'#step-{step} .kpi[data-metric="{metric}"] dd')
    return int(text.replace(",", ""))


def test_the_dashboard_in_a_browser(tracked, circular_rows, signer, cli, tmp_path) -> None:
    accounts.add_user(tracked, ADMIN, "admin", STAFF_PASSWORD, by="tests")
    [totals] = [s["totals"] for s in cli_report(cli, tracked, "--step", "circular")["steps"]]
    assert totals["opens_unique"] > 0  # the figures compared below are about something
    shots = tmp_path / "shots"
    shots.mkdir()
    bounced = circular_rows[0]["email"]
    env = {"SENDGRID_WEBHOOK_PUBLIC_KEY": signer.public_b64}
    with run_server(tracked.root, env) as server:
        base = f"http://127.0.0.1:{server.port}"
        with browser_page(375, 800, allow=(base,)) as (page, errors):
            for width in (375, 1280):
                page.set_viewport_size({"width": width, "height": 800})
                page.goto(f"{base}/")
                page.wait_for_load_state("load")
                assert page.url == f"{base}/login?next=/"
                page.fill("#email", ADMIN)
                page.fill("#password", STAFF_PASSWORD)
                page.click("button[type=submit]")
                page.wait_for_load_state("load")
                # the campaigns page
                assert page.url == f"{base}/"
                assert page.evaluate(LAYOUT) == {"overflow": 0, "background": STYLED_BACKGROUND}
                row = page.locator('tr[data-step="circular"]')
                assert row.locator('[data-count="sent"]').inner_text() == str(totals["sent"])
                shot(page, shots, f"campaigns-{width}.png")
                # the campaign's report, one step
                page.click('tr[data-step="circular"] a')
                page.wait_for_load_state("load")
                assert page.url.startswith(f"{base}/campaigns/december?step=circular")
                assert figure(page, "circular", "sent") == totals["sent"]
                assert figure(page, "circular", "delivered") == totals["delivered"]
                assert figure(page, "circular", "opened") == totals["opens_unique"]
                assert "Last updated" in page.inner_text("#updated")
                assert page.evaluate(LAYOUT)["overflow"] <= 0, f"wider than {width} px"
                shot(page, shots, f"report-{width}.png")
                # every step, with the timeline
                page.select_option("#step", "")
                page.click(".filters button")
                page.wait_for_load_state("load")
                assert page.locator("figure.timeline svg").count() >= 1
                assert page.evaluate(LAYOUT)["overflow"] <= 0
                # look up an address
                page.click('nav a[href="/contacts"]')
                page.wait_for_load_state("load")
                page.fill("#email", bounced)
                page.click("form.search button")
                page.wait_for_load_state("load")
                assert "Suppressed since" in page.inner_text("#suppression")
                assert "bounced" in page.inner_text("#contact .outcome")
                assert page.evaluate(LAYOUT)["overflow"] <= 0
                shot(page, shots, f"contact-{width}.png")
                # an admin suppresses an address, with a reason
                page.click('nav a[href="/suppressions"]')
                page.wait_for_load_state("load")
                address = f"asked-{width}@example.org"
                page.fill("#add-email", address)
                page.fill("#add-why", "asked by phone")
                page.click("#add-form button")
                page.wait_for_load_state("load")
                assert "now suppressed" in page.inner_text("main .done")
                assert address in page.inner_text("#one")
                assert page.evaluate(LAYOUT)["overflow"] <= 0
                shot(page, shots, f"suppressions-{width}.png")
                # log out: the pages are out of reach again
                page.click("header button")
                page.wait_for_load_state("load")
                assert page.url == f"{base}/login"
                page.goto(f"{base}/campaigns/december")
                assert page.url == f"{base}/login?next=/campaigns/december"
            assert errors == []
    audit = [a for a in stores.rows(tracked.root, "audit_log") if a["via"] == "web"]
    assert [(a["who"], a["target"], a["why"]) for a in audit] == [
        (ADMIN, "asked-375@example.org", "asked by phone"),
        (ADMIN, "asked-1280@example.org", "asked by phone"),
    ]
    assert sorted(p.name for p in shots.iterdir()) == sorted(
        f"{page}-{w}.png"
        for page in ("campaigns", "report", "contact", "suppressions")
        for w in (375, 1280)
    )

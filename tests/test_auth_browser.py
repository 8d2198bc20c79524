"""The login in headless Chromium against a real ``outreach serve``, on a phone (375 px) and a
laptop (1280 px): an anonymous visit lands on the login page, a wrong password says so, the
right one opens the page asked for, the header's button logs out, and the CSP lets nothing
fail (no console errors). Screenshots go to ``OUTREACH_SCREENSHOT_DIR`` when it is set."""

from __future__ import annotations

import pytest

from outreach import accounts
from tests.browser import browser_page, requires_chromium
from tests.conftest import STAFF_PASSWORD
from tests.test_pages_browser import STYLED_BACKGROUND, _shot
from tests.tracking_support import run_server

pytestmark = [pytest.mark.browser, pytest.mark.slow, requires_chromium]

LAYOUT = """() => ({
  overflow: document.documentElement.scrollWidth - window.innerWidth,
  background: getComputedStyle(document.body).backgroundColor,
  buttons: [...document.querySelectorAll("button, input")].map(
    (b) => b.type === "hidden" ? 44 : b.getBoundingClientRect().height),
})"""


def test_log_in_and_out_in_a_browser(sent_ws, signer) -> None:
    accounts.add_user(sent_ws, "ana@example.org", "admin", STAFF_PASSWORD, by="tests")
    env = {"SENDGRID_WEBHOOK_PUBLIC_KEY": signer.public_b64}
    with run_server(sent_ws.root, env) as server:
        base = f"http://127.0.0.1:{server.port}"
        with browser_page(375, 800, allow=(base,)) as (page, errors):
            for width in (375, 1280):
                page.set_viewport_size({"width": width, "height": 800})
                page.goto(f"{base}/audit")
                page.wait_for_load_state("load")
                assert page.url == f"{base}/login?next=/audit"
                got = page.evaluate(LAYOUT)
                assert got["background"] == STYLED_BACKGROUND
                assert got["overflow"] <= 0, f"wider than {width} px"
                assert min(got["buttons"]) >= 44, got
                _shot(page, f"login-{width}.png")
                page.fill("#email", "ana@example.org")
                page.fill("#password", "not the password")
                page.click("button[type=submit]")
                page.wait_for_load_state("load")
                assert "Wrong email or password." in page.inner_text("main")
                assert page.input_value("#email") == "ana@example.org"
                page.fill("#password", STAFF_PASSWORD)
                page.click("button[type=submit]")
                page.wait_for_load_state("load")
                assert page.url == f"{base}/audit"
                assert "Audit log" in page.inner_text("main")
                assert "ana@example.org" in page.inner_text("header")
                assert page.evaluate(LAYOUT)["overflow"] <= 0
                _shot(page, f"audit-{width}.png")
                page.click("header button")  # Log out
                page.wait_for_load_state("load")
                assert page.url == f"{base}/login"
                page.goto(f"{base}/account")
                assert page.url == f"{base}/login?next=/account"
            # no CSP violation, no missing stylesheet: only Chromium's note that the wrong
            # password's page came with its status, 401 (once per width)
            wrong = (
                "Failed to load resource: the server responded with a status of 401 (Unauthorized)"
            )
            assert errors == [wrong, wrong]
        assert STAFF_PASSWORD not in server.log

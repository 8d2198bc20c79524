"""The December messages in headless Chromium: readable at 375 px and 600 px.

Screenshots go to the test's tmp dir, and to ``OUTREACH_SCREENSHOT_DIR`` as well when it is
set (as in the other browser tests).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.browser import browser_page, requires_chromium
from tests.content_render import contact, shipped

pytestmark = [pytest.mark.browser, requires_chromium]

# the four previews the issue asks us to look at, plus a follow-up step of each kind
CASES = [
    ("circular", "ES", "es", "ally", "circular-es-ratified-ally"),
    ("circular", "TN", "fr", "newcomer", "circular-fr-not_signed-newcomer"),
    ("circular", "GH", "en", "member", "circular-en-signed-member"),
    ("circular", "", "en", "ally", "circular-en-unknown-ally"),
    ("human-rights-day", "SB", "en", "newcomer", "human-rights-day-en-signed-newcomer"),
    ("last-call", "AR", "es", "member", "last-call-es-ratified-member"),
]


@pytest.fixture(scope="module")
def browser():
    """One Chromium for the module; each test resizes the viewport and reads fresh errors."""
    with browser_page(600) as (page, errors):
        yield page, errors


def _keep(path: Path) -> None:
    target = os.environ.get("OUTREACH_SCREENSHOT_DIR")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(target) / path.name)


@pytest.mark.parametrize(("step", "code", "lang", "rel", "name"), CASES, ids=[c[-1] for c in CASES])
def test_message_reads_well_on_phone_and_desktop(
    browser, tmp_path: Path, step: str, code: str, lang: str, rel: str, name: str
) -> None:
    page, errors = browser
    r = shipped().render(step, contact(code, lang, rel, first_name="Sam"))
    page_file = tmp_path / f"{name}.html"
    page_file.write_text(r.html, encoding="utf-8")
    for width in (375, 600):
        errors.clear()
        page.set_viewport_size({"width": width, "height": 900})
        page.goto(page_file.as_uri())
        page.wait_for_load_state("load")
        scroll_width = page.evaluate("document.documentElement.scrollWidth")
        assert scroll_width <= width, f"horizontal scroll at {width}px ({scroll_width}px wide)"
        # nothing inside the content is wider than the viewport either
        widest = page.evaluate(
            "Math.max(...[...document.querySelectorAll('body *')]"
            ".map(e => e.getBoundingClientRect().right))"
        )
        assert widest <= width + 0.5, f"an element ends at {widest}px"
        assert page.evaluate("document.documentElement.lang") == lang
        heading = page.inner_text("h1")
        assert heading.strip(), "the title is visible"
        shot = tmp_path / f"{name}-{width}.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        _keep(shot)
        assert errors == [], errors

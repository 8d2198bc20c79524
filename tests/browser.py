"""Headless Chromium for tests (Debian's ``chromium`` driven by Playwright).

Browser tests are skipped only when no Chromium is installed (CI installs it: see .ci/run).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    return (
        os.environ.get("OUTREACH_CHROMIUM")
        or shutil.which("chromium")
        or shutil.which("chromium-browser")
    )


requires_chromium = pytest.mark.skipif(
    chromium_path() is None, reason="Debian's chromium is not installed"
)


@contextmanager
def browser_page(
    width: int = 600, height: int = 900, allow: tuple[str, ...] = ()
) -> Iterator[tuple[object, list[str]]]:
    """Yield ``(page, console_errors)``: a Playwright page and the errors it logs.

    The page blocks every network request that is not ``file:``/``data:`` (or starts with one
    of ``allow``, e.g. a local server under test), so a test also proves the document is
    self-contained.
    """
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True
        )
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.route(
                "**/*",
                lambda route: (
                    route.continue_()
                    if route.request.url.startswith(("file:", "data:", *allow))
                    else route.abort()
                ),
            )
            yield page, errors
        finally:
            browser.close()

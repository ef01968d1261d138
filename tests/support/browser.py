"""Headless Chromium for tests, driven by Playwright's async API.

It runs the system's Chromium (Debian's `chromium` package) and never downloads a browser;
a test that needs it skips, saying what to install, when either piece is missing, except
where AUTOLOYAL_REQUIRE_BROWSER=1 (CI sets it after installing Chromium): there it fails,
so a run that silently skipped the browser tests cannot pass. Each launch gets a fresh
temporary profile (Playwright's own), removed when the browser closes.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.async_api import Page

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PHONE = {"width": 390, "height": 844}
"""The viewport of a common phone, in CSS pixels."""
TIMEOUT_MS = 60_000
"""For each page action: the page is local, but a loaded machine may be slow to draw it."""
REQUIRE_ENV = "AUTOLOYAL_REQUIRE_BROWSER"


def chromium_or_skip() -> None:
    """Skip the test unless both the playwright package and the system's Chromium exist
    (fail instead where REQUIRE_ENV is set)."""
    missing = None
    if importlib.util.find_spec("playwright") is None:
        missing = "playwright not installed: pip install playwright (no browser download)"
    elif not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        missing = f"Chromium not installed: apt-get install chromium ({CHROMIUM} is missing)"
    if missing is None:
        return
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{missing}; {REQUIRE_ENV}=1 says the browser tests must run here")
    pytest.skip(missing)


@asynccontextmanager
async def chromium_page(*, locale: str = "ru-RU") -> AsyncIterator[Page]:
    """A page in a fresh headless Chromium with a phone-sized viewport; closed on exit."""
    chromium_or_skip()
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=ARGS, headless=True
        )
        try:
            context = await browser.new_context(
                locale=locale, viewport=PHONE, is_mobile=True, has_touch=True
            )
            page = await context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            page.set_default_navigation_timeout(TIMEOUT_MS)
            yield page
        finally:
            await browser.close()

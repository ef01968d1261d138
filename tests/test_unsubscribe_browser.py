"""The unsubscribe page in a real browser (headless Chromium): a client unticks SMS and saves,
or unsubscribes from everything, and the next campaign's message to them is skipped.

SQLite only: the page's behaviour on both databases is covered over HTTP in
test_unsubscribe_page.py; here the browser is what is under test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from aiohttp import web

from autoloyal.app import App
from autoloyal.http import make_http_app
from crm.preferences import LinkSigner, link_secret, preferences
from gateway.channels.filesink import FileSink
from tests.support.api import api_settings
from tests.support.browser import chromium_or_skip, chromium_page
from tests.support.clock import FakeClock
from tests.support.databases import Database, copy_sqlite
from tests.support.messaging import add_client, make_dispatcher, message, queue_message

if TYPE_CHECKING:
    from playwright.async_api import Page

COMPANY = "Автоцентр Север"
CAMPAIGN = 7
PHONE = "+79035254560"


@pytest.fixture
def database_url(sqlite_template: Path, tmp_path: Path) -> str:
    """SQLite only (overrides the conftest's fixture, which adds PostgreSQL)."""
    return copy_sqlite(sqlite_template, tmp_path / "autoloyal.db")


@pytest.fixture
async def site(db: Database, clock: FakeClock) -> AsyncIterator[str]:
    """The app on a loopback port the browser can reach; yields its base URL."""
    chromium_or_skip()
    app = App(api_settings(db.url, company={"name": COMPANY}), db.engine, db.sessions, clock)
    runner = web.AppRunner(make_http_app(app))
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def page() -> AsyncIterator[Page]:
    async with chromium_page() as opened:
        yield opened


async def the_client(db: Database, clock: FakeClock) -> tuple[int, str]:
    """A client with Telegram, a phone and an e-mail who allowed advertising; their link."""
    client = await add_client(db, telegram_id=5001, phone=PHONE, email="ivan@example.ru", ads=True)
    async with db.sessions() as session, session.begin():
        signer = LinkSigner(await link_secret(session, clock()), "")
    return client, signer.token(client, CAMPAIGN)


async def advertising(db: Database, client_id: int) -> dict[str, bool]:
    async with db.sessions() as session:
        found = await preferences(session, client_id)
    assert found is not None
    return found.advertising


async def open_page(page: Page, url: str) -> None:
    from playwright.async_api import expect

    response = await page.goto(url)
    assert response is not None
    assert response.status == 200
    assert response.headers["cache-control"] == "no-store"
    await expect(page.get_by_role("heading", name="Здравствуйте, Иван Петрович!")).to_be_visible()
    await expect(page.get_by_text(COMPANY)).to_be_visible()
    await expect(page.get_by_text("Акции и специальные предложения")).to_be_visible()


async def test_unticking_sms_and_saving(
    db: Database, clock: FakeClock, site: str, page: Page
) -> None:
    from playwright.async_api import expect

    client, token = await the_client(db, clock)
    await open_page(page, f"{site}/u/{token}")

    assert await page.evaluate("document.documentElement.lang") == "ru"
    # Fits a phone: nothing sticks out sideways.
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), (
        "the page is wider than the phone"
    )
    for label in ("Telegram", "SMS", "Электронная почта"):
        await expect(page.get_by_label(label)).to_be_checked()
    await expect(page.get_by_role("status")).to_have_count(0)

    await page.get_by_label("SMS").uncheck()
    await page.get_by_role("button", name="Сохранить").click()
    await page.wait_for_url(f"{site}/u/{token}?saved=1")

    await expect(page.get_by_role("status")).to_have_text("Настройки сохранены")
    await expect(page.get_by_label("SMS")).not_to_be_checked()
    await expect(page.get_by_label("Telegram")).to_be_checked()
    await expect(page.get_by_label("Электронная почта")).to_be_checked()
    assert await advertising(db, client) == {"telegram": True, "sms": False, "email": True}


async def test_unsubscribing_from_everything_stops_the_next_campaign(
    db: Database, clock: FakeClock, site: str, page: Page, tmp_path: Path
) -> None:
    from playwright.async_api import expect

    client, token = await the_client(db, clock)
    await open_page(page, f"{site}/u/{token}")

    await page.get_by_role("button", name="Отписаться от всех рассылок").click()
    await page.wait_for_url(f"{site}/u/{token}?saved=1")

    await expect(page.get_by_role("status")).to_have_text("Вы отписались от рекламных рассылок")
    for label in ("Telegram", "SMS", "Электронная почта"):
        await expect(page.get_by_label(label)).not_to_be_checked()
    assert await advertising(db, client) == {"telegram": False, "sms": False, "email": False}

    sms = FileSink("sms", tmp_path / "outbox")
    queued = await queue_message(db, clock, client, plan=("sms",))
    await make_dispatcher(db, {"sms": sms}, clock).drain()

    skipped = await message(db, queued)
    assert (skipped.state, skipped.reason) == (
        "skipped",
        "sms: the client unsubscribed from advertising",
    )
    assert not sms.path.exists()

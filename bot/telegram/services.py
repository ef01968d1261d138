"""What the bot's handlers are given: the database, the clock and the company's rules.

Handlers open a short transaction for their crm/ call and answer after it commits: a
message to Telegram never waits inside a database transaction (on SQLite a write
transaction holds the one write lock, which the dispatcher and the API need too).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.i18n import Catalogs
from bot.texts import Texts
from crm.bonuses import BonusRules
from crm.clock import Clock, Moment
from crm.context import CompanyInfo
from crm.feedback import ComplaintRules
from crm.maintenance import MaintenancePolicy
from crm.staff import StaffDirectory


@dataclass(frozen=True)
class BotServices:
    sessions: async_sessionmaker[AsyncSession]
    reading: async_sessionmaker[AsyncSession]
    """Sessions that only read: on SQLite they never wait for the write lock."""
    clock: Clock
    zone: ZoneInfo
    company: CompanyInfo
    region: str
    bonuses: BonusRules
    maintenance: MaintenancePolicy
    max_daily_km: int
    complaints: ComplaintRules
    staff: StaffDirectory
    staff_chat_id: int | None
    catalogs: Catalogs
    bot_username: str = ""
    """The bot's @username, for links that open it (a friend's invitation)."""
    write_turns: asyncio.Lock | None = None
    """On SQLite, one write transaction of the bot's at a time (see `autoloyal.telegram_bot`)."""
    engine: AsyncEngine | None = None
    """An engine of the bot's own, disposed of by `close`."""

    def moment(self) -> Moment:
        return Moment.of(self.clock, self.zone)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """One transaction, committed when the block ends without an exception."""
        turn: AbstractAsyncContextManager[Any] = self.write_turns or nullcontext()
        async with turn, self.sessions() as session, session.begin():
            yield session

    async def close(self) -> None:
        if self.engine is not None:
            await self.engine.dispose()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        async with self.reading() as session, session.begin():
            yield session

    def texts(self, locale: str) -> Texts:
        catalog = self.catalogs.locales.get(locale) or self.catalogs.locales[self.company.locale]
        return Texts(locale, catalog)

    def all_texts(self) -> Mapping[str, Texts]:
        return {locale: self.texts(locale) for locale in self.catalogs.available_locales}

    @property
    def staff_texts(self) -> Texts:
        """The staff chat reads the company's language."""
        return self.texts(self.company.locale)

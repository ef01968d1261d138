"""What the bot's handlers are given: the database, the clock and the company's rules.

Handlers open a short transaction for their crm/ call and answer after it commits: a
message to Telegram never waits inside a database transaction (on SQLite a write
transaction holds the one write lock, which the dispatcher and the API need too).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from bot.i18n import Catalogs
from bot.texts import Texts
from crm.bonuses import BonusRules
from crm.booking import BookingNotices, BookingRules
from crm.clock import Clock, Moment
from crm.context import CompanyInfo
from crm.feedback import ComplaintRules
from crm.maintenance import MaintenancePolicy
from crm.staff import StaffDirectory
from storage import ShortTransactions


@dataclass(frozen=True)
class BotServices:
    writes: ShortTransactions
    reading: async_sessionmaker[AsyncSession]
    """Sessions that only read: on SQLite they never wait for the write lock."""
    read_engine: AsyncEngine
    """The engine of `reading`, for a read that needs no session (`look_up`)."""
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
    bookings: BookingRules
    notices: BookingNotices | None
    """How a confirmed booking's confirmation is sent; None: it is not sent."""
    contact_sources: tuple[str, ...]
    """`[contacts] sources`: the answers to "how did you hear about us"."""
    bot_username: str = ""
    """The bot's @username, for links that open it (a friend's invitation)."""

    def moment(self) -> Moment:
        return Moment.of(self.clock, self.zone)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """One transaction, committed when the block ends without an exception."""
        async with self.writes.begin() as session:
            yield session

    async def close(self) -> None:
        await self.writes.close()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        async with self.reading() as session, session.begin():
            yield session

    @asynccontextmanager
    async def look_up(self) -> AsyncIterator[AsyncConnection]:
        """A connection for one short read of rows, without the ORM's session: who is
        writing is read for every update, and the session's bookkeeping cost more than the
        query."""
        async with self.read_engine.connect() as connection:
            yield connection

    def texts(self, locale: str) -> Texts:
        catalog = self.catalogs.locales.get(locale) or self.catalogs.locales[self.company.locale]
        return Texts(locale, catalog)

    def all_texts(self) -> Mapping[str, Texts]:
        return {locale: self.texts(locale) for locale in self.catalogs.available_locales}

    @property
    def staff_texts(self) -> Texts:
        """The staff chat reads the company's language."""
        return self.texts(self.company.locale)

"""The composition root: builds the engine, sessions and clock from the settings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from autoloyal.config import Settings
from crm.branches import sync_branches
from crm.clock import Clock, system_clock
from storage import create_engine, make_session_factory, normalize_database_url, upgrade

if TYPE_CHECKING:
    from crm.importing import ImportContext


class DatabaseUnavailable(Exception):
    """The configured database does not answer; the message names it (password masked)."""


@dataclass(frozen=True)
class App:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    clock: Clock

    def import_context(self) -> ImportContext:
        from crm.importing import ImportContext

        return ImportContext(
            clock=self.clock,
            tz=self.settings.company.tz,
            region=self.settings.company.country,
            batch_size=self.settings.import_.batch_size,
        )


def masked_url(settings: Settings) -> str:
    return normalize_database_url(settings.database.url).render_as_string(hide_password=True)


@asynccontextmanager
async def open_app(
    settings: Settings, *, clock: Clock = system_clock, migrate: bool = True
) -> AsyncIterator[App]:
    """Connect, bring the schema to head and the branches in line with the config (unless
    `migrate` is false), and close everything on the way out."""
    engine = create_engine(settings.database.url)
    try:
        await _check_connection(engine, settings)
        app = App(settings, engine, make_session_factory(engine), clock)
        if migrate:
            await prepare_database(app)
        yield app
    finally:
        await engine.dispose()


async def prepare_database(app: App) -> None:
    await upgrade(app.engine)
    async with app.sessions() as session, session.begin():
        await sync_branches(
            session,
            app.settings.branch,
            company_name=app.settings.company.name,
            now=app.clock(),
        )


async def _check_connection(engine: AsyncEngine, settings: Settings) -> None:
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except (DBAPIError, OSError) as exc:
        reason = getattr(exc, "orig", None) or exc
        raise DatabaseUnavailable(
            f"database.url: cannot connect to {masked_url(settings)}: {reason}"
        ) from None

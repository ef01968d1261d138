"""Fixtures that build the world: a clock, migrated databases, settings pointing at them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from autoloyal.config import Settings, parse_settings
from crm.branches import sync_branches
from tests.support.clock import FakeClock
from tests.support.databases import (
    Database,
    copy_sqlite,
    create_pg_scratch,
    drop_pg_scratch,
    empty_tables,
    migrate_sqlite_template,
    open_database,
    pg_admin_url,
)

# 09:00 in Moscow on the day this was written: a Tuesday, no holiday, mid-autumn.
NOW = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    asyncio.run(migrate_sqlite_template(path))
    return path


@pytest.fixture(scope="session")
def pg_scratch_url() -> Iterator[str]:
    admin = pg_admin_url()
    if admin is None:
        pytest.skip("PostgreSQL: set AUTOLOYAL_TEST_PG_URL to run this on PostgreSQL too")
    url = asyncio.run(create_pg_scratch(admin))
    yield url
    asyncio.run(drop_pg_scratch(admin, url))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database: a SQLite file, then PostgreSQL when configured."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        return copy_sqlite(template, tmp_path / "autoloyal.db")
    url: str = request.getfixturevalue("pg_scratch_url")
    return url


@pytest.fixture
async def db(database_url: str, clock: FakeClock) -> AsyncIterator[Database]:
    """The database as `autoloyal db upgrade` leaves it: migrated, one default branch."""
    async with open_database(database_url) as database:
        if database.dialect == "postgresql":
            await empty_tables(database.engine)
        async with database.sessions() as session, session.begin():
            await sync_branches(session, (), company_name="Автосервис", now=clock())
        yield database


@pytest.fixture
def settings(db: Database) -> Settings:
    return parse_settings({"database": {"url": db.url}})

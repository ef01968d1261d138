"""Storage: migrations from empty to head on SQLite and PostgreSQL, and what the engine promises."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import IntegrityError, StatementError

from storage import create_engine, current_revision, normalize_database_url, upgrade
from storage.engine import DatabaseUrlError, read_only
from storage.migrate import downgrade, head_revision
from storage.models import Base, Branch, Client, Visit
from tests.support.databases import (
    Database,
    create_pg_scratch,
    drop_pg_scratch,
    open_database,
    pg_admin_url,
)


@pytest.fixture(params=["sqlite", "postgresql"])
async def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A database with no tables at all."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    admin = pg_admin_url()
    if admin is None:
        pytest.skip("PostgreSQL: set AUTOLOYAL_TEST_PG_URL to run this on PostgreSQL too")
    url = await create_pg_scratch(admin, migrate=False)
    yield url
    await drop_pg_scratch(admin, url)


async def test_migrations_build_the_schema_from_empty_and_match_the_models(empty_url: str) -> None:
    async with open_database(empty_url) as db:
        await upgrade(db.engine)

        assert await current_revision(db.engine) == head_revision()
        async with db.engine.connect() as conn:
            diff = await conn.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), Base.metadata)
            )
    assert diff == [], "the models changed without a migration"


async def test_upgrading_twice_is_a_no_op_and_downgrade_removes_every_table(empty_url: str) -> None:
    async with open_database(empty_url) as db:
        await upgrade(db.engine)
        await upgrade(db.engine)

        await downgrade(db.engine, "base")

        async with db.engine.connect() as conn:
            tables = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
        assert set(tables) <= {"alembic_version"}
        await upgrade(db.engine)
        assert await current_revision(db.engine) == head_revision()


async def test_sqlite_runs_in_wal_with_a_busy_timeout_and_foreign_keys(tmp_path: Path) -> None:
    async with open_database(f"sqlite:///{tmp_path / 'x.db'}") as db, db.engine.connect() as conn:
        assert (await conn.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
        assert (await conn.execute(text("PRAGMA busy_timeout"))).scalar() == 30000
        assert (await conn.execute(text("PRAGMA foreign_keys"))).scalar() == 1


async def test_a_sqlite_file_in_a_missing_folder_is_created(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'data' / 'nested' / 'autoloyal.db'}")
    await upgrade(engine)
    await engine.dispose()

    assert (tmp_path / "data" / "nested" / "autoloyal.db").exists()


async def test_times_come_back_aware_in_utc_and_money_exact(db: Database) -> None:
    moscow = timezone(timedelta(hours=3))
    async with db.sessions() as session, session.begin():
        client = Client(
            last_name="Иванов",
            created_at=datetime(2026, 11, 24, 12, 0, tzinfo=moscow),
            updated_at=datetime(2026, 11, 24, 9, 0, tzinfo=UTC),
        )
        session.add(client)
        await session.flush()
        branch_id = await session.scalar(select(Branch.id))
        session.add(
            Visit(
                client_id=client.id,
                branch_id=branch_id,
                visited_on=datetime(2026, 11, 1).date(),
                amount=Decimal("999999999999.99"),
                kind="repair",
                created_at=client.created_at,
                updated_at=client.updated_at,
            )
        )
    async with db.sessions() as session:
        stored = await session.scalar(select(Client))
        amount = await session.scalar(select(Visit.amount))
    assert stored is not None
    assert stored.created_at == datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    assert stored.created_at.tzinfo is not None
    assert stored.created_at.utcoffset() == timedelta(0)
    assert amount == Decimal("999999999999.99")


async def test_a_naive_datetime_is_refused_rather_than_guessed(db: Database) -> None:
    now = datetime(2026, 11, 24, 9, 0)
    async with db.sessions() as session:
        session.add(Client(last_name="Иванов", created_at=now, updated_at=now))
        with pytest.raises(StatementError, match="naive datetime"):
            await session.flush()


async def test_one_phone_belongs_to_one_client(db: Database) -> None:
    now = datetime(2026, 11, 24, tzinfo=UTC)
    async with db.sessions() as session:
        session.add(Client(phone="+79035254560", created_at=now, updated_at=now))
        await session.flush()
        session.add(Client(phone="+79035254560", created_at=now, updated_at=now))
        with pytest.raises(IntegrityError):
            await session.flush()


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("sqlite:///x.db", "sqlite+aiosqlite"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite"),
        ("postgresql://u@h/db", "postgresql+asyncpg"),
        ("postgres://u@h/db", "postgresql+asyncpg"),
        ("postgresql+asyncpg://u@h/db", "postgresql+asyncpg"),
    ],
)
def test_database_urls_are_taken_as_people_write_them(url: str, driver: str) -> None:
    assert normalize_database_url(url).drivername == driver


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://u@h/db", "unsupported database 'mysql'"),
        ("postgresql+psycopg2://u@h/db", "unsupported driver 'postgresql+psycopg2'"),
        ("not a url", "not a database URL"),
    ],
)
def test_an_unusable_database_url_is_refused_with_the_reason(url: str, message: str) -> None:
    with pytest.raises(DatabaseUrlError, match=re.escape(message)):
        normalize_database_url(url)


async def test_two_processes_migrating_at_once_both_succeed(empty_url: str) -> None:
    first, second = create_engine(empty_url), create_engine(empty_url)
    try:
        await asyncio.gather(upgrade(first), upgrade(second))

        assert await current_revision(first) == head_revision()
    finally:
        await first.dispose()
        await second.dispose()


async def test_a_reader_on_sqlite_is_not_held_up_by_a_writer(tmp_path: Path) -> None:
    async with open_database(f"sqlite:///{tmp_path / 'x.db'}") as db:
        await upgrade(db.engine)
        async with db.engine.begin() as writer:
            await writer.execute(text("INSERT INTO branch (code, name, is_default, created_at) "
                                      "VALUES ('x', 'X', 0, '2026-01-01')"))  # fmt: skip
            reading = read_only(db.engine)
            async with asyncio.timeout(2), reading.connect() as reader:
                count = (await reader.execute(text("SELECT count(*) FROM branch"))).scalar()
        assert count == 0  # the reader sees the last committed state, at once

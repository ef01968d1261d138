"""Migrated databases for tests: a SQLite file each, and PostgreSQL when configured.

SQLite: the schema is migrated once into a template file, which each test copies.
PostgreSQL (AUTOLOYAL_TEST_PG_URL): a scratch database is created and migrated once per run,
each test starts from emptied tables, and the scratch database is dropped at the end.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from storage import create_engine, make_session_factory, upgrade
from storage.models import Base

PG_ENV = "AUTOLOYAL_TEST_PG_URL"
REDIS_ENV = "AUTOLOYAL_TEST_REDIS_URL"


@dataclass
class Database:
    url: str
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name


def pg_admin_url() -> str | None:
    return os.environ.get(PG_ENV) or None


async def migrate_sqlite_template(path: Path) -> str:
    url = f"sqlite:///{path}"
    engine = create_engine(url)
    await upgrade(engine)
    await engine.dispose()  # the last connection's close folds the WAL into the file
    return url


def copy_sqlite(template: Path, target: Path) -> str:
    shutil.copyfile(template, target)
    return f"sqlite:///{target}"


async def create_pg_scratch(admin_url: str, *, migrate: bool = True) -> str:
    """Create an empty database beside the one `admin_url` names; return its URL."""
    name = f"autoloyal_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    await admin.dispose()
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    if migrate:
        engine = create_engine(url)
        await upgrade(engine)
        await engine.dispose()
    return url


async def drop_pg_scratch(admin_url: str, url: str) -> None:
    name = make_url(url).database
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    await admin.dispose()


async def empty_tables(engine: AsyncEngine) -> None:
    tables = ", ".join(f'"{table.name}"' for table in Base.metadata.sorted_tables)
    async with engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@asynccontextmanager
async def open_database(url: str) -> AsyncIterator[Database]:
    engine = create_engine(url)
    try:
        yield Database(url, engine, make_session_factory(engine))
    finally:
        await engine.dispose()

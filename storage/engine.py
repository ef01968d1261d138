"""Engines and sessions for SQLite (embedded default) and PostgreSQL (scale-out)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import sqlite3
import warnings
from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path
from typing import Any

import aiosqlite
from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.ext.asyncio import create_async_engine as _create_async_engine

from storage.sqlfunc import SQLITE_SQRT

# SQLite has no decimal type: SQLAlchemy reads money back through a double and rounds it to
# the column's two places, which is exact for Numeric(14, 2). The warning says nothing more.
warnings.filterwarnings(
    "ignore", message=r"Dialect sqlite\+aiosqlite does \*not\* support Decimal objects natively"
)

SQLITE_BUSY_TIMEOUT_MS = 30_000
_READ_ONLY = "autoloyal_read_only"

_ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
}


class DatabaseUrlError(ValueError):
    """The configured database URL cannot be used."""


def normalize_database_url(url: str) -> URL:
    """Parse a database URL and pick our async driver for it.

    `sqlite:///x.db` and `postgresql://...` are accepted as people write them; only SQLite
    (aiosqlite) and PostgreSQL (asyncpg) are supported.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise DatabaseUrlError(f"not a database URL: {url!r}") from exc
    backend = parsed.get_backend_name()
    driver = _ASYNC_DRIVERS.get(backend)
    if driver is None:
        raise DatabaseUrlError(
            f"unsupported database {backend!r}: use sqlite:///FILE or postgresql://HOST/DB"
        )
    if parsed.drivername not in (backend, driver):
        raise DatabaseUrlError(
            f"unsupported driver {parsed.drivername!r}: use {driver!r} (or just {backend!r})"
        )
    return parsed.set(drivername=driver)


def create_engine(url: str, *, short_writes: bool = False, **kwargs: Any) -> AsyncEngine:
    """Create the async engine; SQLite gets WAL, a busy timeout, foreign keys and IMMEDIATE
    transactions (a read-then-write transaction never fails on a lock upgrade). Code that
    only reads uses `read_only(engine)`, so it never waits behind a writer.

    `short_writes` (SQLite): an engine for many short write transactions, whose statements
    run on the event loop's thread (see `_ShortWrites`); a PostgreSQL engine ignores it.
    """
    parsed = normalize_database_url(url)
    # Messages are Cyrillic: stored as \uXXXX escapes they would take 2.4 times the space.
    kwargs.setdefault("json_serializer", _json_dumps)
    # A statement's error names the statement, never its values: they are clients' phones,
    # names and messages, and errors end up in logs.
    kwargs.setdefault("hide_parameters", True)
    if parsed.get_backend_name() == "sqlite":
        if short_writes:
            kwargs["async_creator"] = partial(_short_writes, parsed.database or ":memory:")
        return _create_sqlite_engine(parsed, **kwargs)
    return _create_async_engine(parsed, pool_pre_ping=True, **kwargs)


class _ShortWrites(aiosqlite.Connection):
    """aiosqlite that runs a statement on the event loop's thread unless it may wait.

    aiosqlite hands every call to its own thread and back; for a work order of a dozen
    short statements those thread switches cost three times what SQLite takes to run them
    (a work order took 13.7 ms with them, 3.7 ms without). In WAL mode only taking the
    write lock can wait (up to the busy timeout, for a writer in another connection), and
    every write transaction takes it first, with BEGIN IMMEDIATE: so that BEGIN still goes
    to the thread and the loop serves others meanwhile, and the rest, which cannot wait,
    runs inline, a reading transaction's plain BEGIN too (the bot's /help went from p50
    3.0-3.9 ms to 2.4-2.8 ms). Long reads belong on an ordinary engine: inline, they would
    hold up the loop. It overrides aiosqlite's private `_execute`; pyproject pins aiosqlite
    below 0.23.
    """

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if args and isinstance(args[0], str) and _takes_write_lock(args[0]):
            return await super()._execute(fn, *args, **kwargs)  # type: ignore[no-untyped-call]
        if not self._running or not self._connection:
            raise ValueError("Connection closed")
        return fn(*args, **kwargs)


def _takes_write_lock(sql: str) -> bool:
    """BEGIN IMMEDIATE (or EXCLUSIVE) may wait for another connection's writer; a reading
    transaction's plain BEGIN takes no lock in WAL mode, so it runs inline too."""
    words = sql.split(maxsplit=2)
    return len(words) >= 2 and words[0].upper() == "BEGIN" and words[1].upper() != "DEFERRED"


async def _short_writes(database: str) -> aiosqlite.Connection:
    # Made in aiosqlite's thread, used from the loop's too (never at once: each call is awaited).
    connector = partial(sqlite3.connect, database, check_same_thread=False)
    connection = _ShortWrites(connector, iter_chunk_size=64)
    connection._thread.daemon = True  # as SQLAlchemy does for aiosqlite's own connections
    return await connection


def _json_dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _create_sqlite_engine(url: URL, **kwargs: Any) -> AsyncEngine:
    if url.database and url.database != ":memory:":
        path = Path(url.database).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        _use_wal(path)
    engine = _create_async_engine(url, **kwargs)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()
        # SQLite builds differ in whether they have math functions; storage.sqlfunc uses this.
        dbapi_connection.create_function(SQLITE_SQRT, 1, _sqrt, deterministic=True)
        # Let SQLAlchemy, not the driver, decide when a transaction begins (see _on_begin).
        dbapi_connection.isolation_level = None

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        reading = connection.get_execution_options().get(_READ_ONLY, False)
        connection.exec_driver_sql("BEGIN" if reading else "BEGIN IMMEDIATE")

    return engine


def _sqrt(value: float | None) -> float | None:
    return None if value is None or value < 0 else math.sqrt(value)


def _use_wal(path: Path) -> None:
    """Put the file in WAL mode, once, before any engine connection opens it.

    WAL is a property of the file. Switching a new file from every connection made a
    process that connected while another was migrating fail with "database is locked": the
    switch wants the file to itself, and SQLite may refuse that at once instead of waiting.
    """
    with contextlib.closing(sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000)) as db:
        db.execute("PRAGMA journal_mode=WAL")


def read_only(engine: AsyncEngine) -> AsyncEngine:
    """The same engine for code that only reads: on SQLite its transactions do not take the
    write lock, so a health check or a report is never held up by an import in progress."""
    return engine.execution_options(**{_READ_ONLY: True})


def make_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


class ShortTransactions:
    """Many short write transactions beside `engine`: on SQLite, an engine of their own whose
    statements run on the event loop's thread (`short_writes`), one transaction at a time in
    this process, so an inline statement never meets this process's other writer; elsewhere
    the engine as it is. The API's work orders and the bots write through one."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._own: AsyncEngine | None = None
        self._turns: asyncio.Lock | None = None
        if engine.dialect.name == "sqlite":
            same_file = engine.url.render_as_string(hide_password=False)
            engine = self._own = create_engine(same_file, short_writes=True)
            self._turns = asyncio.Lock()
        self.engine = engine
        """The engine the transactions run on; short reads may use it too (`read_only`)."""
        self._sessions = make_session_factory(engine)

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncSession]:
        """One transaction, committed when the block ends without an exception."""
        turn: contextlib.AbstractAsyncContextManager[Any] = self._turns or contextlib.nullcontext()
        async with turn, self._sessions() as session, session.begin():
            yield session

    async def close(self) -> None:
        if self._own is not None:
            await self._own.dispose()

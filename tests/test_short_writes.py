"""The short-writes SQLite engine: statements inline, but waiting for the write lock never
holds up the event loop."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from sqlalchemy import text

from storage import create_engine
from tests.support.databases import copy_sqlite


async def test_a_short_write_waits_for_another_writer_while_the_loop_serves_others(
    sqlite_template: Path, tmp_path: Path
) -> None:
    url = copy_sqlite(sqlite_template, tmp_path / "autoloyal.db")
    ordinary, short = create_engine(url), create_engine(url, short_writes=True)
    ticks = 0
    ticked_enough = asyncio.Event()

    async def ticking() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1
            if ticks >= 15:
                ticked_enough.set()

    async def short_write() -> None:
        async with short.begin() as conn:  # BEGIN IMMEDIATE: waits for the lock held below
            await conn.execute(text("INSERT INTO branch (code, name, is_default, created_at) "
                                    "VALUES ('b2', 'Второй', 0, '2026-11-24 06:00:00')"))  # fmt: skip

    clock = asyncio.create_task(ticking())
    try:
        async with ordinary.begin() as holder:
            await holder.execute(text("INSERT INTO branch (code, name, is_default, created_at) "
                                      "VALUES ('b1', 'Первый', 1, '2026-11-24 06:00:00')"))  # fmt: skip
            waiting = asyncio.create_task(short_write())
            # The loop keeps serving the ticker while the short write waits for the lock
            # (were the loop blocked, the ticker would never get there: 60 s then fail).
            await asyncio.wait_for(ticked_enough.wait(), 60)
            assert not waiting.done()  # the short write is blocked on the lock all this time
        await asyncio.wait_for(waiting, 60)  # the lock is free: it goes through
        async with ordinary.connect() as conn:
            codes = (await conn.execute(text("SELECT code FROM branch ORDER BY code"))).all()
        assert [code for (code,) in codes] == ["b1", "b2"]
    finally:
        clock.cancel()
        await ordinary.dispose()
        await short.dispose()


async def test_short_writes_run_on_the_loops_thread(sqlite_template: Path, tmp_path: Path) -> None:
    url = copy_sqlite(sqlite_template, tmp_path / "autoloyal.db")
    short = create_engine(url, short_writes=True)
    seen: list[str] = []
    try:
        async with short.begin() as conn:
            raw = await conn.get_raw_connection()
            sqlite = raw.driver_connection._conn  # aiosqlite's sqlite3 connection
            sqlite.create_function(
                "whose", 0, lambda: seen.append(threading.current_thread().name) or 1
            )
            await conn.execute(text("SELECT whose()"))
    finally:
        await short.dispose()
    assert seen == [threading.current_thread().name]

"""Alembic environment.

From code (storage.migrate) a connection is handed in. From the `alembic` command (for
writing new revisions) the URL comes from AUTOLOYAL_DATABASE_URL or alembic.ini.
"""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy import Connection

from storage.engine import create_engine
from storage.models import Base

config = context.config


def run_with(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=True,  # SQLite alters tables by copying them
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_standalone() -> None:
    url = os.environ.get("AUTOLOYAL_DATABASE_URL") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("set AUTOLOYAL_DATABASE_URL or sqlalchemy.url in alembic.ini")
    engine = create_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(run_with)
    await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported: run them against a database")

handed_in = config.attributes.get("connection")
if handed_in is not None:
    run_with(handed_in)
else:
    asyncio.run(run_standalone())

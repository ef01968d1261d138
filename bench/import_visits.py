"""Benchmark: import a 1C-style export of 100 000 visits (target: under 30 s on SQLite).

Writes a demo dealer as cp1251 CSV files (decimal commas, mixed phone notations), then
imports clients, cars and visits into a fresh database and prints rows and seconds for each,
and again for a re-import of the visits (every row unchanged).

    python bench/import_visits.py [--visits 100000] [--pg postgresql://postgres@127.0.0.1/test]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from crm.branches import sync_branches
from crm.demo import write_onec_export
from crm.demo.generator import generate_households
from crm.importing import IMPORTERS, ImportContext, run_import
from storage import create_engine, make_session_factory, upgrade

MOSCOW = ZoneInfo("Europe/Moscow")
VISITS_PER_CLIENT = 10.4  # what the demo generator gives


def now() -> datetime:
    return datetime.now(UTC)


async def bench(url: str, folder: Path, visits: int) -> None:
    clients = round(visits / VISITS_PER_CLIENT)
    started = time.perf_counter()
    households = generate_households(
        seed=42, today=now().astimezone(MOSCOW).date(), clients=clients
    )
    counts = write_onec_export(households, folder)
    print(f"export written: {counts} in {time.perf_counter() - started:.1f} s")

    engine = create_engine(url)
    await upgrade(engine)
    sessions = make_session_factory(engine)
    async with sessions() as session, session.begin():
        await sync_branches(session, (), company_name="Бенчмарк", now=now())
    context = ImportContext(clock=now, tz=MOSCOW)
    print(f"database: {engine.url.render_as_string(hide_password=True)}")
    for kind in ("clients", "cars", "visits", "visits"):
        started = time.perf_counter()
        report = await run_import(IMPORTERS[kind], folder / f"{kind}.csv", sessions, context)
        seconds = time.perf_counter() - started
        rate = report.total / seconds
        print(f"{report.summary():<75} {seconds:6.2f} s  {rate:9,.0f} rows/s")
    await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--visits", type=int, default=100_000)
    parser.add_argument("--pg", help="a PostgreSQL URL whose database may be filled")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        url = args.pg or f"sqlite:///{folder / 'bench.db'}"
        asyncio.run(bench(url, folder, args.visits))


if __name__ == "__main__":
    main()

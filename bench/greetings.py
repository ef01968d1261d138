"""Benchmark: the `greetings` job on 8 March over the demo dealer, beside a campaign of the same
audience (target: the job takes at most 1.2 times the campaign's time).

A demo dealer of --clients clients is loaded into the SQLite file --sqlite (a temporary one by
default; a file that already holds clients is reused as it is, so later runs skip the load).
Each timed path runs on a fresh copy of that file, `--rounds` times, alternating which goes
first; the best time of each counts:
  campaign  what `autoloyal campaign create --segment filter gender=female --template mar8
            --channels telegram,sms,email --yes` does: the whole audience in one transaction,
            pages of `[outbox] batch_size`, new keys (nothing to look up), unsubscribe links;
  job       `autoloyal job run greetings --date 2027-03-08` without the job_run bookkeeping:
            the `mar8` occasion only (audience filter(gender=female)), a transaction per page
            of the same size, keys looked up (a rerun must find them), the same links.
With --pg ADMIN_URL the same runs on PostgreSQL: the dealer is loaded once into a scratch
database, and each timed path runs on a copy made from it (CREATE DATABASE ... TEMPLATE).

    python bench/greetings.py [--clients 100000] [--rounds 2] [--sqlite /tmp/bench_greetings.db]
                              [--pg postgresql://postgres@127.0.0.1/test]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # `python bench/greetings.py` must find tests.support

from sqlalchemy import func, select, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker  # noqa: E402

from autoloyal.config import OccasionSettings, Settings, parse_settings  # noqa: E402
from autoloyal.messaging import company_info, link_signer, opt_out, template_library  # noqa: E402
from autoloyal.rules import segment_context  # noqa: E402
from crm.branches import sync_branches  # noqa: E402
from crm.campaigns import create_campaign, prepare_campaign  # noqa: E402
from crm.clock import Moment  # noqa: E402
from crm.demo.load import load_demo  # noqa: E402
from crm.importing.report import thousands  # noqa: E402
from gateway.consent import ADVERTISING  # noqa: E402
from scheduler.base import JobContext, JobResult  # noqa: E402
from scheduler.jobs import greetings  # noqa: E402
from storage import create_engine, make_session_factory, upgrade  # noqa: E402
from storage.models import Client  # noqa: E402
from storage.outbox import Message  # noqa: E402
from tests.support.databases import create_pg_scratch, drop_pg_scratch  # noqa: E402

MOSCOW = ZoneInfo("Europe/Moscow")
DAY = date(2027, 3, 8)
NOW = datetime(2027, 3, 8, 9, 0, tzinfo=MOSCOW)  # the job's default time
BUILT_AT = datetime(2026, 11, 24, 9, 0, tzinfo=MOSCOW)  # the demo's "today"
SEED = 42
TARGET_RATIO = 1.2
MAR8 = OccasionSettings(
    code="mar8", template="mar8", date="03-08", audience="filter(gender=female)"
)

# --- setup -----------------------------------------------------------------------------------


async def build(url: str, clients: int, label: str) -> None:
    """Migrate and load the demo dealer, unless the database already holds clients."""
    engine = create_engine(url)
    try:
        await upgrade(engine)
        sessions = make_session_factory(engine)
        async with sessions() as session:
            existing = int(await session.scalar(select(func.count()).select_from(Client)) or 0)
        if existing:
            print(f"setup ({label}): reused the demo dealer there: {thousands(existing)} clients")
            return
        started = time.perf_counter()
        async with sessions() as session, session.begin():
            await sync_branches(session, (), company_name="Бенчмарк", now=BUILT_AT)
        counts = await load_demo(sessions, lambda: BUILT_AT, MOSCOW, seed=SEED, clients=clients)
        rows = ", ".join(f"{thousands(count)} {name}" for name, count in counts.items())
        seconds = time.perf_counter() - started
        print(f"setup ({label}, not in the figures): demo dealer of {rows} in {seconds:.1f} s")
        if engine.dialect.name == "postgresql":
            async with engine.connect() as conn:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.execute(text("ANALYZE"))
    finally:
        await engine.dispose()  # the last close folds SQLite's WAL into the file


def settings_for(url: str) -> Settings:
    settings = parse_settings({"database": {"url": url}})
    return settings.model_copy(update={"occasion": (MAR8,)})


async def _count_messages(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(Message)) or 0)


# --- the two timed paths ---------------------------------------------------------------------


async def campaign(url: str) -> tuple[int, float]:
    """`autoloyal campaign create --segment filter gender=female --template mar8 ... --yes`."""
    settings = settings_for(url)
    engine = create_engine(url)
    sessions = make_session_factory(engine)
    try:
        await _count_messages(sessions)  # connect outside the timing
        library = template_library(settings)
        started = time.perf_counter()
        async with sessions() as session, session.begin():
            plan = await prepare_campaign(
                session,
                library,
                segment="filter",
                params={"gender": "female"},
                template="mar8",
                channels="telegram,sms,email",
                kind=ADVERTISING,
                starts_at=NOW,
                context=segment_context(settings, DAY),
            )
            _, result = await create_campaign(
                session,
                plan,
                company_info(settings),
                now=NOW,
                today=DAY,
                created_by="bench",
                batch_size=settings.outbox.batch_size,
                links=await link_signer(session, settings, NOW),
                opt_out=opt_out(settings),
            )
        seconds = time.perf_counter() - started
        assert await _count_messages(sessions) == result.queued
        return result.queued, seconds
    finally:
        await engine.dispose()


async def job(url: str) -> tuple[int, float]:
    """`autoloyal job run greetings --date 2027-03-08`, the job function alone."""
    settings = settings_for(url)
    engine = create_engine(url)
    sessions = make_session_factory(engine)
    try:
        await _count_messages(sessions)
        greetings._LIBRARIES.clear()  # compile the template in the timing, as the campaign does
        ctx = JobContext(settings, sessions, Moment(NOW, DAY), MOSCOW)
        result = JobResult()
        started = time.perf_counter()
        await greetings.run(ctx, result)
        seconds = time.perf_counter() - started
        queued = result.counts["queued"]
        assert await _count_messages(sessions) == queued
        assert result.counts["duplicates"] == 0
        skipped = result.counts["skipped: no address"]
        if skipped:
            print(f"  (job: {thousands(skipped)} women with no address on the plan not queued)")
        return queued, seconds
    finally:
        await engine.dispose()


# --- rounds ----------------------------------------------------------------------------------


async def rounds(fresh_copy: Callable[[str], Awaitable[str]], count: int) -> dict[str, float]:
    """Each path `count` times on a fresh copy, alternating which goes first; the best times."""
    paths: dict[str, Callable[[str], Awaitable[tuple[int, float]]]] = {
        "campaign": campaign,
        "job": job,
    }
    best: dict[str, float] = {}
    queued: dict[str, int] = {}
    for round_ in range(count):
        order = list(paths) if round_ % 2 == 0 else list(reversed(paths))
        for name in order:
            url = await fresh_copy(name)
            queued[name], seconds = await paths[name](url)
            best[name] = min(best.get(name, float("inf")), seconds)
            print(
                f"  round {round_ + 1}, {name:<8}: {thousands(queued[name])} messages in"
                f" {seconds:.2f} s ({thousands(queued[name] / seconds)}/s)",
                flush=True,
            )
    for name, seconds in best.items():
        print(f"{name}: best {seconds:.2f} s, {thousands(queued[name] / seconds)} messages/s")
    ratio = best["job"] / best["campaign"]
    met = "met" if ratio <= TARGET_RATIO else "NOT met"
    print(f"ratio: job/campaign time = {ratio:.2f} (target at most {TARGET_RATIO:g}): {met}")
    if queued["job"] != queued["campaign"]:
        print(
            f"  (the job queued {thousands(queued['job'])}, the campaign"
            f" {thousands(queued['campaign'])}: the job does not queue clients with no address)"
        )
    return best


def sqlite_copier(source: Path, folder: Path) -> Callable[[str], Awaitable[str]]:
    def copy_file(name: str) -> str:
        target = folder / f"{name}.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{target}{suffix}").unlink(missing_ok=True)
        shutil.copyfile(source, target)
        return f"sqlite:///{target}"

    async def copy(name: str) -> str:
        return await asyncio.to_thread(copy_file, name)

    return copy


def pg_copier(admin_url: str, source: str) -> tuple[Callable[[str], Awaitable[str]], list[str]]:
    made: list[str] = []
    source_name = make_url(source).database

    async def copy(name: str) -> str:
        target = f"{source_name}_{name}"
        engine = create_engine(admin_url)
        try:
            async with engine.connect() as conn:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.execute(text(f'DROP DATABASE IF EXISTS "{target}"'))
                await conn.execute(text(f'CREATE DATABASE "{target}" TEMPLATE "{source_name}"'))
        finally:
            await engine.dispose()
        url = make_url(source).set(database=target).render_as_string(hide_password=False)
        if url not in made:
            made.append(url)
        return url

    return copy, made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--sqlite", type=Path, help="the SQLite file: reused when it has clients")
    parser.add_argument("--pg", help="a PostgreSQL admin URL: a scratch database is made beside")
    args = parser.parse_args()
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        source: Path = args.sqlite or Path(tmp) / "bench.db"
        asyncio.run(build(f"sqlite:///{source}", args.clients, "SQLite"))
        size = source.stat().st_size / 2**20
        print(f"SQLite: {source} ({size:.0f} MB), a fresh copy per timed path; 8 March 2027")
        best = asyncio.run(rounds(sqlite_copier(source, Path(tmp)), args.rounds))
        failed |= best["job"] > TARGET_RATIO * best["campaign"]
    if args.pg:
        url = asyncio.run(create_pg_scratch(args.pg, migrate=False))
        copy, made = pg_copier(args.pg, url)
        try:
            print(f"PostgreSQL: {make_url(url).render_as_string(hide_password=True)} (scratch)")
            asyncio.run(build(url, args.clients, "PostgreSQL"))
            best = asyncio.run(rounds(copy, args.rounds))
            failed |= best["job"] > TARGET_RATIO * best["campaign"]
        finally:
            for copied in made:
                asyncio.run(drop_pg_scratch(args.pg, copied))
            asyncio.run(drop_pg_scratch(args.pg, url))
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()

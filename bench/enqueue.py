"""Benchmark: enqueue 100 000 personalised messages, render + insert (target: under 5 s on SQLite).

The second target: at least 20 times more messages per second than rendering them and adding
them one by one through the ORM with a flush per row. Both are measured in the same run.

A demo dealer of --clients clients is loaded into a fresh SQLite file (in a child process, so
its memory does not hide the enqueue's; its time is printed apart) and the file is copied.
Then, timed:
  fast   what `autoloyal campaign create --segment all --template winback
         --channels telegram,sms --yes` does: one transaction, pages of 1000 clients,
         one batched INSERT ... ON CONFLICT DO NOTHING per page;
  rerun  the same clients under campaign 1's idempotency keys: rendered again, none inserted;
  naive  on the copy, the first --naive-clients clients one at a time: client_facts, render,
         session.add(Message), flush; compared with the fast path per message.
With --pg ADMIN_URL the fast path also runs on a scratch PostgreSQL database beside the one
ADMIN_URL names (created and dropped here).

    python bench/enqueue.py [--clients 100000] [--naive-clients 5000]
                            [--pg postgresql://postgres@127.0.0.1/test]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import resource
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # `python bench/enqueue.py` must find tests.support

from sqlalchemy import func, select, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker  # noqa: E402

from crm.branches import sync_branches  # noqa: E402
from crm.campaigns import create_campaign, prepare_campaign  # noqa: E402
from crm.context import message_context  # noqa: E402
from crm.demo.load import load_demo  # noqa: E402
from crm.importing.report import thousands  # noqa: E402
from crm.recipients import client_facts, client_pages  # noqa: E402
from crm.segments import SegmentContext  # noqa: E402
from crm.templates import TemplateLibrary  # noqa: E402
from gateway.consent import ADVERTISING  # noqa: E402
from gateway.outbox import QUEUED, EnqueueResult, Recipient, enqueue  # noqa: E402
from storage import create_engine, make_session_factory, upgrade  # noqa: E402
from storage.models import Client  # noqa: E402
from storage.outbox import Campaign, Message  # noqa: E402
from tests.support.databases import create_pg_scratch, drop_pg_scratch  # noqa: E402
from tests.support.messaging import COMPANY  # noqa: E402

MOSCOW = ZoneInfo("Europe/Moscow")
TEMPLATE = "winback"
PLAN = ("telegram", "sms")
BATCH = 1000
SEED = 42
TARGET_SECONDS = 5.0
TARGET_RATIO = 20.0


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# --- setup (child process) -------------------------------------------------------------------


async def _build(url: str, clients: int, now: datetime) -> dict[str, int]:
    engine = create_engine(url)
    try:
        await upgrade(engine)
        sessions = make_session_factory(engine)
        async with sessions() as session, session.begin():
            await sync_branches(session, (), company_name=COMPANY.name, now=now)
        return await load_demo(sessions, lambda: now, MOSCOW, seed=SEED, clients=clients)
    finally:
        await engine.dispose()  # the last close folds SQLite's WAL into the file


def _build_in_process(url: str, clients: int, now: datetime) -> dict[str, int]:
    return asyncio.run(_build(url, clients, now))


def build(url: str, clients: int, now: datetime, label: str) -> None:
    """Load the demo dealer in a child process; print what it took (not part of any figure)."""
    started = time.perf_counter()
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        counts = pool.submit(_build_in_process, url, clients, now).result()
    seconds = time.perf_counter() - started
    rows = ", ".join(f"{thousands(count)} {name}" for name, count in counts.items())
    print(f"setup ({label}, not in the figures): demo dealer of {rows} in {seconds:.1f} s")


# --- the three timed paths -------------------------------------------------------------------


async def fast_path(
    sessions: async_sessionmaker[AsyncSession], now: datetime, today: date
) -> tuple[Campaign, EnqueueResult, float]:
    """`autoloyal campaign create --segment all --template winback --channels telegram,sms`."""
    started = time.perf_counter()
    async with sessions() as session, session.begin():
        plan = await prepare_campaign(
            session,
            TemplateLibrary(),
            segment="all",
            params={},
            template=TEMPLATE,
            channels=",".join(PLAN),
            kind=ADVERTISING,
            starts_at=now,
            context=SegmentContext(today=today),
        )
        campaign, result = await create_campaign(
            session, plan, COMPANY, now=now, today=today, created_by="bench", batch_size=BATCH
        )
    return campaign, result, time.perf_counter() - started


async def rerun(
    sessions: async_sessionmaker[AsyncSession], campaign_id: int, now: datetime, today: date
) -> tuple[EnqueueResult, float]:
    """The same clients under the same keys as campaign `campaign_id`: all duplicates."""
    started = time.perf_counter()
    result = EnqueueResult()
    async with sessions() as session, session.begin():
        template = await TemplateLibrary().get(session, TEMPLATE)
        async for page in client_pages(session, select(Client.id), BATCH):
            recipients = [
                Recipient(
                    client_id=client.id,
                    key=f"campaign:{campaign_id}:{client.id}",
                    context=message_context(COMPANY, client, car, today),
                )
                for client, car in page
            ]
            result.add(
                await enqueue(
                    session,
                    template,
                    recipients,
                    plan=PLAN,
                    kind=ADVERTISING,
                    now=now,
                    campaign_id=campaign_id,
                )
            )
    return result, time.perf_counter() - started


async def naive_path(
    sessions: async_sessionmaker[AsyncSession], count: int, now: datetime, today: date
) -> tuple[int, float]:
    """The first `count` clients one at a time through the ORM, a flush per message."""
    started = time.perf_counter()
    async with sessions() as session, session.begin():
        template = await TemplateLibrary().get(session, TEMPLATE)
        campaign = Campaign(
            name="naive",
            segment="all",
            segment_params={},
            template=TEMPLATE,
            plan=",".join(PLAN),
            kind=ADVERTISING,
            state="active",
            starts_at=now,
            created_by="bench",
            created_at=now,
        )
        session.add(campaign)
        await session.flush()
        ids = (await session.scalars(select(Client.id).order_by(Client.id).limit(count))).all()
        for client_id in ids:
            found = await client_facts(session, client_id)
            assert found is not None
            facts, car = found
            context = message_context(COMPANY, facts, car, today)
            session.add(
                Message(
                    idempotency_key=f"campaign:{campaign.id}:{client_id}",
                    client_id=client_id,
                    campaign_id=campaign.id,
                    template=template.name,
                    kind=ADVERTISING,
                    plan=",".join(PLAN),
                    content=template.render(context, PLAN).content,
                    state=QUEUED,
                    channel_index=0,
                    attempts=0,
                    channel_attempts=0,
                    next_attempt_at=now,
                    created_at=now,
                    updated_at=now,
                )
            )
            await session.flush()
    return len(ids), time.perf_counter() - started


async def _scalar_int(sessions: async_sessionmaker[AsyncSession], sql: str) -> int:
    async with sessions() as session:
        return int(await session.scalar(text(sql)) or 0)


async def _count_messages(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(Message)) or 0)


# --- the run ---------------------------------------------------------------------------------


class Checks:
    def __init__(self) -> None:
        self.failed: list[str] = []

    def expect(self, ok: bool, what: str) -> None:
        if not ok:
            self.failed.append(what)
            print(f"CHECK FAILED: {what}")


async def bench_sqlite(
    db: Path, copy: Path, clients: int, naive_clients: int, now: datetime, checks: Checks
) -> None:
    today = now.astimezone(MOSCOW).date()

    engine = create_engine(f"sqlite:///{db}")
    sessions = make_session_factory(engine)
    await _count_messages(sessions)  # connect and warm up outside the timing
    rss_before = _peak_rss_mb()
    campaign, result, seconds = await fast_path(sessions, now, today)
    rss_after = _peak_rss_mb()
    rows = await _count_messages(sessions)
    fast_rate = result.queued / seconds
    print(
        f"enqueue: {thousands(result.queued)} messages in {seconds:.2f} s"
        f" ({thousands(fast_rate)}/s)"
        f"  [campaign create, segment all, winback, telegram+sms, one transaction,"
        f" pages of {BATCH}]"
    )
    checks.expect(result.queued == clients, f"queued {result.queued}, expected {clients}")
    checks.expect(result.duplicates == 0, f"{result.duplicates} duplicates on a fresh outbox")
    checks.expect(rows == clients, f"{rows} rows in message, expected {clients}")
    print(
        f"  check: EnqueueResult.queued = {thousands(result.queued)},"
        f" rows in message = {thousands(rows)}"
    )
    content_mb = await _scalar_int(sessions, "SELECT sum(length(content)) FROM message") / 2**20
    print(
        f"  memory: peak RSS {rss_before:.0f} MB before, {rss_after:.0f} MB after"
        f" (+{rss_after - rss_before:.0f} MB) for {content_mb:.0f} M characters of"
        " rendered content"
    )

    again, rerun_seconds = await rerun(sessions, campaign.id, now, today)
    rows_after = await _count_messages(sessions)
    print(
        f"rerun: {thousands(clients)} messages under campaign {campaign.id}'s keys in"
        f" {rerun_seconds:.2f} s ({thousands(clients / rerun_seconds)}/s):"
        f" queued={thousands(again.queued)}, duplicates={thousands(again.duplicates)},"
        f" rows in message still {thousands(rows_after)}"
    )
    checks.expect(again.queued == 0, f"the rerun queued {again.queued}")
    checks.expect(again.duplicates == clients, f"the rerun saw {again.duplicates} duplicates")
    checks.expect(rows_after == rows, f"the rerun changed the row count to {rows_after}")
    await engine.dispose()

    engine = create_engine(f"sqlite:///{copy}")
    sessions = make_session_factory(engine)
    await _count_messages(sessions)
    done, naive_seconds = await naive_path(sessions, naive_clients, now, today)
    naive_rows = await _count_messages(sessions)
    await engine.dispose()
    naive_rate = done / naive_seconds
    print(
        f"naive: {thousands(done)} messages in {naive_seconds:.2f} s ({thousands(naive_rate)}/s)"
        f"  [ORM, one client at a time, session.add + flush per row; measured on the first"
        f" {thousands(done)} clients of the same database copy, compared per message]"
    )
    checks.expect(naive_rows == done, f"{naive_rows} rows in message, expected {done}")

    ratio = fast_rate / naive_rate
    print(f"ratio: fast/naive = {ratio:.1f}x in messages per second")
    met = "met" if seconds < TARGET_SECONDS else "NOT met"
    print(
        f"target: {thousands(clients)} messages under {TARGET_SECONDS:g} s on SQLite:"
        f" {met} ({seconds:.2f} s)"
    )
    if clients != 100_000:
        print("  (the target is for 100 000 messages; this run enqueued a different number)")
    met = "met" if ratio >= TARGET_RATIO else "NOT met"
    print(f"target: at least {TARGET_RATIO:g}x the naive rate: {met} ({ratio:.1f}x)")


async def bench_pg(url: str, clients: int, now: datetime, checks: Checks) -> None:
    today = now.astimezone(MOSCOW).date()
    engine = create_engine(url)
    sessions = make_session_factory(engine)
    await _count_messages(sessions)
    _, result, seconds = await fast_path(sessions, now, today)
    rows = await _count_messages(sessions)
    await engine.dispose()
    print(
        f"enqueue (PostgreSQL): {thousands(result.queued)} messages in {seconds:.2f} s"
        f" ({thousands(result.queued / seconds)}/s); rows in message = {thousands(rows)}"
    )
    checks.expect(result.queued == clients, f"PostgreSQL: queued {result.queued}")
    checks.expect(rows == clients, f"PostgreSQL: {rows} rows in message")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100_000)
    parser.add_argument("--naive-clients", type=int, default=5_000)
    parser.add_argument("--pg", help="a PostgreSQL admin URL: a scratch database is made beside")
    args = parser.parse_args()
    naive_clients = min(args.naive_clients, args.clients)
    now = datetime.now(UTC).replace(microsecond=0)
    checks = Checks()
    with tempfile.TemporaryDirectory() as tmp:
        db, copy = Path(tmp) / "bench.db", Path(tmp) / "naive.db"
        build(f"sqlite:///{db}", args.clients, now, "SQLite")
        for suffix in ("", "-wal"):
            if Path(f"{db}{suffix}").exists():
                shutil.copyfile(f"{db}{suffix}", f"{copy}{suffix}")
        print(f"database: SQLite {db} ({db.stat().st_size / 2**20:.0f} MB), copied for naive")
        asyncio.run(bench_sqlite(db, copy, args.clients, naive_clients, now, checks))
    if args.pg:
        url = asyncio.run(create_pg_scratch(args.pg, migrate=False))
        try:
            print(f"database: {make_url(url).render_as_string(hide_password=True)} (scratch)")
            build(url, args.clients, now, "PostgreSQL")
            asyncio.run(bench_pg(url, args.clients, now, checks))
        finally:
            asyncio.run(drop_pg_scratch(args.pg, url))
    if checks.failed:
        sys.exit(1)


if __name__ == "__main__":
    main()

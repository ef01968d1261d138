"""The bonus, win-back and snapshot jobs: expired bonuses written off and warned about
once per expiry date, a notice per accrual, a win-back per lapse, a class snapshot per
client and day; a crash half-way and a rerun queue nothing twice; a dry run writes nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from autoloyal.config import Settings, parse_settings
from autoloyal.rules import bonus_rules
from crm.bonuses import Entry, balance, credit, lock_account
from crm.clock import Moment
from crm.snapshots import ClassMark, ClassMove, class_history, class_moves, move_counts
from crm.workorders import VisitInput, post_visit
from gateway.outbox import EnqueueResult, enqueue
from scheduler.base import JobContext, JobResult
from scheduler.jobs import bonus_accrued, bonus_expiry, snapshots, winback
from storage.bonuses import BonusMovement
from storage.models import Client
from storage.outbox import Message
from storage.scheduling import ClassSnapshot
from tests.conftest import NOW
from tests.support.clock import FakeClock
from tests.support.databases import Database
from tests.support.messaging import add_client, add_visit

MOSCOW = ZoneInfo("Europe/Moscow")
TODAY = date(2026, 11, 24)
Job = Callable[[JobContext, JobResult], Awaitable[None]]


def job_settings(db: Database, **sections: dict[str, Any]) -> Settings:
    return parse_settings({"database": {"url": db.url}, **sections})


async def run(
    job: Job, db: Database, clock: FakeClock, settings: Settings, *, dry_run: bool = False
) -> JobResult:
    ctx = JobContext(settings, db.sessions, Moment.of(clock, MOSCOW), MOSCOW, dry_run=dry_run)
    result = JobResult()
    await job(ctx, result)
    result.lines.extend(ctx.would_send)
    return result


async def messages(db: Database, prefix: str) -> dict[str, Message]:
    async with db.sessions() as session:
        found = await session.scalars(
            select(Message).where(Message.idempotency_key.startswith(prefix)).order_by(Message.id)
        )
        return {message.idempotency_key: message for message in found}


async def give(db: Database, client: int, amount: int, *, on: date, valid_days: int | None) -> None:
    """Bonuses credited on `on` (at noon in Moscow), valid `valid_days` days."""
    moment = Moment(datetime(on.year, on.month, on.day, 9, tzinfo=UTC), on)
    async with db.sessions() as session, session.begin():
        await credit(
            session, client, Entry("welcome", Decimal(amount)), moment, valid_days=valid_days
        )


async def balance_of(db: Database, client: int, today: date) -> Decimal:
    async with db.sessions() as session, session.begin():
        await lock_account(session, client)
        return await balance(session, client, today)


def telegram_text(message: Message) -> str:
    return str(message.content["telegram"]["text"])


# ---------------------------------------------------------------------------- bonus_expiry


async def test_expired_bonuses_are_written_off_and_clients_warned_once_per_expiry_date(
    db: Database, clock: FakeClock
) -> None:
    settings = job_settings(db)
    client = await add_client(db, telegram_id=700_001)
    await give(db, client, 30, on=TODAY - timedelta(days=40), valid_days=30)  # gone 10 days ago
    await give(db, client, 100, on=TODAY, valid_days=10)  # expires 4 December
    await give(db, client, 50, on=TODAY, valid_days=20)  # 14 December: beyond 14 days today

    first = await run(bonus_expiry.run, db, clock, settings)
    again = await run(bonus_expiry.run, db, clock, settings)

    assert first.counts == {"expired_clients": 1, "expired_bonuses": 30, "queued": 1}
    assert again.counts == {"duplicates": 1}
    warned = await messages(db, "bonus:expiring:")
    assert list(warned) == [f"bonus:expiring:{client}:2026-12-04"]
    text = telegram_text(warned[f"bonus:expiring:{client}:2026-12-04"])
    assert "4 декабря 2026" in text
    assert "100\u00a0бонусов" in text  # expiring
    assert "150\u00a0бонусов" in text  # the balance
    assert warned[f"bonus:expiring:{client}:2026-12-04"].kind == "service"

    clock.advance(days=11)  # 5 December: the 100 expired, the 50 expire in 9 days
    later = await run(bonus_expiry.run, db, clock, settings)

    assert later.counts == {"expired_clients": 1, "expired_bonuses": 100, "queued": 1}
    assert list(await messages(db, "bonus:expiring:")) == [
        f"bonus:expiring:{client}:2026-12-04",
        f"bonus:expiring:{client}:2026-12-14",
    ]
    assert await balance_of(db, client, date(2026, 12, 5)) == Decimal("50.00")


async def test_a_warning_written_at_night_waits_for_the_clients_morning(
    db: Database, clock: FakeClock
) -> None:
    settings = job_settings(db)
    moscow = await add_client(db, telegram_id=700_011)
    far_east = await add_client(db, telegram_id=700_012, timezone="Asia/Vladivostok")
    for client in (moscow, far_east):
        await give(db, client, 100, on=TODAY, valid_days=5)
    clock.set(datetime(2026, 11, 24, 0, 30, tzinfo=UTC))  # 03:30 in Moscow, 10:30 in Vladivostok

    await run(bonus_expiry.run, db, clock, settings)

    warned = await messages(db, "bonus:expiring:")
    assert warned[f"bonus:expiring:{moscow}:2026-11-29"].next_attempt_at == datetime(
        2026, 11, 24, 6, 0, tzinfo=UTC
    )  # 09:00 in Moscow
    assert warned[f"bonus:expiring:{far_east}:2026-11-29"].next_attempt_at == clock()


async def test_clients_without_an_address_on_the_plan_are_left_out(
    db: Database, clock: FakeClock
) -> None:
    settings = job_settings(db, bonuses={"notice_channels": ["telegram"]})
    client = await add_client(db, phone="+79161234567")
    await give(db, client, 100, on=TODAY, valid_days=5)

    result = await run(bonus_expiry.run, db, clock, settings)

    assert result.counts == {"unreachable": 1}
    assert await messages(db, "bonus:") == {}


# --------------------------------------------------------------------------- bonus_accrued


async def post_work_order(
    db: Database, settings: Settings, client: int, number: str, amount: int, at: datetime
) -> int:
    """A work order posted at `at` for the client; returns its accrual's movement id."""
    moment = Moment(at, at.astimezone(MOSCOW).date())
    async with db.sessions() as session, session.begin():
        external_id = await session.scalar(select(Client.external_id).where(Client.id == client))
        assert external_id is not None
        visit = VisitInput(number, external_id, moment.today, Decimal(amount))
        outcome = await post_visit(session, bonus_rules(settings), None, visit, moment)
    assert outcome.accrued is not None
    return outcome.accrued.id


async def test_each_accrual_of_a_work_order_is_told_once(db: Database, clock: FakeClock) -> None:
    settings = job_settings(db)
    client = await add_client(db, telegram_id=700_021)
    old = await post_work_order(db, settings, client, "WO-1", 10_000, NOW - timedelta(days=4))
    first = await post_work_order(db, settings, client, "WO-2", 10_000, NOW - timedelta(hours=2))
    second = await post_work_order(db, settings, client, "WO-3", 5_000, NOW - timedelta(hours=1))

    result = await run(bonus_accrued.run, db, clock, settings)
    again = await run(bonus_accrued.run, db, clock, settings)

    assert result.counts == {"queued": 2}
    assert again.counts == {}  # nothing left without a notice: not even read again
    told = await messages(db, "bonus:accrued:")
    assert list(told) == [f"bonus:accrued:{first}", f"bonus:accrued:{second}"]
    assert f"bonus:accrued:{old}" not in told  # four days old: history, not news
    text = telegram_text(told[f"bonus:accrued:{second}"])
    assert "150\u00a0бонусов" in text  # 3 % of 5 000
    assert "750\u00a0бонусов" in text  # the balance: 300 + 300 + 150
    assert "24 ноября 2027 года" in text  # valid a year


async def test_accrual_notices_switched_off_queue_nothing(db: Database, clock: FakeClock) -> None:
    settings = job_settings(db, bonuses={"accrued_notice": False})
    client = await add_client(db, telegram_id=700_031)
    await post_work_order(db, settings, client, "WO-31", 10_000, NOW - timedelta(hours=1))

    result = await run(bonus_accrued.run, db, clock, settings)

    assert result.counts == {"off": 1}
    assert await messages(db, "bonus:accrued:") == {}


# --------------------------------------------------------------------------------- winback


async def test_a_client_who_becomes_lost_is_invited_back_once_per_lapse(
    db: Database, clock: FakeClock
) -> None:
    settings = job_settings(db)
    lapsing = await add_client(db, telegram_id=700_041)
    long_gone = await add_client(db, telegram_id=700_042)
    regular = await add_client(db, telegram_id=700_043)
    await add_visit(db, lapsing, TODAY - timedelta(days=366), "5000")  # lost as of today
    await add_visit(db, long_gone, date(2022, 3, 1), "5000")  # lost for years: history
    await add_visit(db, regular, TODAY - timedelta(days=30), "5000")

    first = await run(winback.run, db, clock, settings)
    again = await run(winback.run, db, clock, settings)

    last_visit = TODAY - timedelta(days=366)
    assert first.counts == {"queued": 1}
    assert again.counts == {"duplicates": 1}
    invited = await messages(db, "winback:")
    assert list(invited) == [f"winback:{lapsing}:{last_visit}"]
    message = invited[f"winback:{lapsing}:{last_visit}"]
    assert message.kind == "advertising"
    assert "/u/" in telegram_text(message)  # the unsubscribe link, as campaigns carry

    comeback = TODAY + timedelta(days=10)
    clock.advance(days=10)
    await add_visit(db, lapsing, comeback, "3000")
    assert (await run(winback.run, db, clock, settings)).counts == {}
    clock.advance(days=366)  # a year and a day after the comeback: lost again
    await run(winback.run, db, clock, settings)

    assert list(await messages(db, "winback:")) == [
        f"winback:{lapsing}:{last_visit}",
        f"winback:{lapsing}:{comeback}",
    ]


async def test_winback_switched_off_queues_nothing(db: Database, clock: FakeClock) -> None:
    settings = job_settings(db, winback={"enabled": False})
    client = await add_client(db, telegram_id=700_051)
    await add_visit(db, client, TODAY - timedelta(days=366), "5000")

    assert (await run(winback.run, db, clock, settings)).counts == {"off": 1}
    assert await messages(db, "winback:") == {}


# ------------------------------------------------------------------------------- snapshots


async def snapshot_rows(db: Database) -> list[tuple[date, int, str | None, str | None, Any]]:
    async with db.sessions() as session:
        rows = await session.execute(
            select(
                ClassSnapshot.taken_on,
                ClassSnapshot.client_id,
                ClassSnapshot.abc,
                ClassSnapshot.xyz,
                ClassSnapshot.revenue,
            ).order_by(ClassSnapshot.taken_on, ClassSnapshot.client_id)
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


async def small_base(db: Database) -> tuple[int, int, int, int, int]:
    """ABC over the year to 24.11.2026 (total 10 000): steady 6 000 (60 %: A), seasonal
    3 000 (90 %: B), new 1 000 (C). XYZ over Q4 2024 .. Q3 2026: the steady one in every
    quarter (X), the others once (Z) or not yet (none)."""
    steady, seasonal, new, gone, never = [await add_client(db) for _ in range(5)]
    quarters = [(2024, 11), *((y, m) for y in (2025, 2026) for m in (2, 5, 8, 11))][:8]
    for year, month in quarters:
        await add_visit(db, steady, date(year, month, 1), "2000")
    await add_visit(db, seasonal, date(2026, 9, 1), "3000")
    await add_visit(db, new, date(2026, 11, 20), "1000")
    await add_visit(db, gone, date(2025, 6, 1), "5000")  # beyond ABC's year, in XYZ's window
    return steady, seasonal, new, gone, never


async def test_snapshots_store_each_clients_classes_once_per_day(
    db: Database, clock: FakeClock
) -> None:
    settings = job_settings(db)
    steady, seasonal, new, gone, _never = await small_base(db)

    first = await run(snapshots.run, db, clock, settings)
    again = await run(snapshots.run, db, clock, settings)

    assert first.counts == again.counts == {"clients": 4}
    assert await snapshot_rows(db) == [
        (TODAY, steady, "A", "X", Decimal("6000.00")),
        (TODAY, seasonal, "B", "Z", Decimal("3000.00")),
        (TODAY, new, "C", None, Decimal("1000.00")),
        (TODAY, gone, None, "Z", None),
    ]


async def test_class_history_and_moves_are_read_from_the_snapshots(
    db: Database, clock: FakeClock
) -> None:
    settings = job_settings(db)
    steady, seasonal, new, gone, _never = await small_base(db)
    await run(snapshots.run, db, clock, settings)
    clock.advance(days=1)
    await add_visit(db, new, TODAY + timedelta(days=1), "20000")  # 21 000 of 30 000: A
    await run(snapshots.run, db, clock, settings)
    await run(snapshots.run, db, clock, settings)  # a rerun of the day replaces, never adds

    tomorrow = TODAY + timedelta(days=1)
    async with db.sessions() as session:
        history = await class_history(session, new)
        moves = await class_moves(session, TODAY, tomorrow)
        counts = await move_counts(session, TODAY, tomorrow)
        rows = await session.scalar(select(func.count()).select_from(ClassSnapshot))

    assert rows == 8
    assert history == [
        ClassMark(TODAY, "C", None, Decimal("1000.00")),
        ClassMark(tomorrow, "A", None, Decimal("21000.00")),
    ]
    assert moves == [
        ClassMove(steady, "A", "X", "B", "X"),
        ClassMove(seasonal, "B", "Z", "C", "Z"),
        ClassMove(new, "C", None, "A", None),
    ]
    assert counts == {("AX", "BX"): 1, ("BZ", "CZ"): 1, ("C-", "A-"): 1, ("-Z", "-Z"): 1}
    assert gone not in {move.client_id for move in moves}


# ------------------------------------------------------------------ crashes and dry runs


async def test_a_crash_half_way_and_a_rerun_queue_nothing_twice(
    db: Database, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = job_settings(db, outbox={"batch_size": 1})
    clients = [await add_client(db, telegram_id=700_060 + n) for n in range(3)]
    for client in clients:
        await give(db, client, 100, on=TODAY, valid_days=5)
    pages = 0

    async def enqueue_then_fall_over(*args: Any, **kwargs: Any) -> EnqueueResult:
        nonlocal pages
        pages += 1
        if pages == 2:
            raise RuntimeError("the database went away")
        return await enqueue(*args, **kwargs)

    monkeypatch.setattr("crm.notices.enqueue", enqueue_then_fall_over)
    with pytest.raises(RuntimeError, match="went away"):
        await run(bonus_expiry.run, db, clock, settings)
    assert len(await messages(db, "bonus:expiring:")) == 1  # the first page was committed
    monkeypatch.undo()

    rerun = await run(bonus_expiry.run, db, clock, settings)

    assert rerun.counts == {"queued": 2, "duplicates": 1}
    assert sorted(await messages(db, "bonus:expiring:")) == sorted(
        f"bonus:expiring:{client}:2026-11-29" for client in clients
    )


async def test_a_dry_run_of_each_job_writes_nothing(db: Database, clock: FakeClock) -> None:
    settings = job_settings(db)
    client = await add_client(db, telegram_id=700_071)
    await give(db, client, 30, on=TODAY - timedelta(days=40), valid_days=30)
    await give(db, client, 100, on=TODAY, valid_days=10)
    await post_work_order(db, settings, client, "WO-71", 10_000, NOW - timedelta(hours=1))
    lost = await add_client(db, telegram_id=700_072)
    await add_visit(db, lost, TODAY - timedelta(days=366), "5000")
    async with db.sessions() as session:
        movements_before = await session.scalar(select(func.count(BonusMovement.id)))

    results = {
        job.__module__: await run(job, db, clock, settings, dry_run=True)
        for job in (bonus_expiry.run, bonus_accrued.run, winback.run, snapshots.run)
    }

    async with db.sessions() as session:
        assert await session.scalar(select(func.count(Message.id))) == 0
        assert await session.scalar(select(func.count(BonusMovement.id))) == movements_before
        assert await session.scalar(select(func.count()).select_from(ClassSnapshot)) == 0
    expiry = results["scheduler.jobs.bonus_expiry"]
    assert expiry.counts == {"expired_clients": 1, "expired_bonuses": 30, "queued": 1}
    assert [len(results[f"scheduler.jobs.{name}"].lines) for name in
            ("bonus_expiry", "bonus_accrued", "winback")] == [1, 1, 1]  # fmt: skip
    assert results["scheduler.jobs.snapshots"].counts == {"clients": 2}

"""Maintenance and booking reminders and survey invitations, as the scheduler's jobs queue them.

The clock's NOW is 2026-11-24 06:00 UTC: 09:00 on a Tuesday in Moscow. Defaults apply: a
maintenance reminder 14 days before the planned date and once more 14 days after it, booking
reminders the day before from 12:00 and 3 hours before the start, survey invitations 3 hours
after the work order is posted (not between 21:00 and 09:00).
"""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from autoloyal.config import Settings, parse_settings
from autoloyal.messaging import template_library
from autoloyal.rules import bonus_rules, booking_rules, survey_invites
from crm.booking import BookingRequest, act, book
from crm.clock import Moment
from crm.reminders import remind_maintenance
from crm.surveys import invite_posted_visits
from crm.workorders import VisitInput, VisitOutcome, post_visit
from scheduler.base import JobContext, JobFunction, JobResult
from scheduler.jobs import booking_reminders, maintenance_reminders, surveys
from storage.models import Car, Client
from storage.outbox import Message
from tests.support.databases import Database
from tests.support.messaging import add_client, add_visit

MOSCOW = ZoneInfo("Europe/Moscow")
TODAY = date(2026, 11, 24)
_phones = itertools.count(5254560)


def phone() -> str:
    """A mobile number no other client of the test has."""
    return f"+7903{next(_phones):07d}"


def moscow(day: date, hh: int, mm: int = 0) -> datetime:
    return datetime.combine(day, time(hh, mm), MOSCOW).astimezone(UTC)


@pytest.fixture
def settings(db: Database) -> Settings:
    return parse_settings({"database": {"url": db.url}, "telegram": {"bot_username": "dealer_bot"}})


async def run(
    db: Database, settings: Settings, job: JobFunction, at: datetime, *, dry_run: bool = False
) -> JobResult:
    """Run a job as of `at` the way the scheduler does, and say what it did."""
    ctx = JobContext(
        settings, db.sessions, Moment(at, at.astimezone(MOSCOW).date()), MOSCOW, dry_run
    )
    result = JobResult()
    await job(ctx, result)
    return result


async def queued(db: Database) -> list[tuple[Any, ...]]:
    """The outbox: (key, template, kind, client, next attempt), oldest first."""
    async with db.sessions() as session:
        rows = await session.execute(
            select(Message.idempotency_key, Message.template, Message.kind, Message.client_id)
            .add_columns(Message.next_attempt_at)
            .order_by(Message.id)
        )  # fmt: skip
        return [tuple(row) for row in rows]


async def keys(db: Database) -> list[str]:
    return [row[0] for row in await queued(db)]


async def car_serviced(db: Database, client_id: int, on: date) -> int:
    """A Kia Rio of the client's, last maintained on `on` (no odometer): due by time, 12
    months later."""
    stamp = datetime(2025, 1, 1, tzinfo=UTC)
    async with db.sessions() as session, session.begin():
        car = Car(client_id=client_id, make="Kia", model="Rio", plate="А123ВС777",
                  created_at=stamp, updated_at=stamp)  # fmt: skip
        session.add(car)
        await session.flush()
        car_id = car.id
    await add_visit(db, client_id, on, 5000, kind="maintenance", car_id=car_id)
    return car_id


async def booked(
    db: Database,
    settings: Settings,
    client_id: int,
    starts_at: datetime,
    now: datetime,
    *,
    confirmed: bool = True,
) -> int:
    """A diagnostics booking of the client's, made (and confirmed) at `now`."""
    rules = booking_rules(settings)
    request = BookingRequest(client_id, "diagnostics", starts_at, "staff")
    async with db.sessions() as session, session.begin():
        view = await book(
            session, rules, request, Moment(now, now.astimezone(MOSCOW).date()), confirmed=confirmed
        )
    return view.id


# ---------------------------------------------------------------------- maintenance


async def test_a_car_due_in_14_days_is_reminded_once_and_one_due_in_15_days_not_yet(
    db: Database, settings: Settings
) -> None:
    ivan = await add_client(db, phone=phone())
    due = await car_serviced(db, ivan, date(2025, 12, 8))  # planned 2026-12-08: 14 days
    await car_serviced(db, await add_client(db, phone=phone()), date(2025, 12, 9))  # 15 days

    first = await run(db, settings, maintenance_reminders.run, moscow(TODAY, 11))
    again = await run(db, settings, maintenance_reminders.run, moscow(TODAY, 11, 30))

    assert await queued(db) == [
        (f"maintenance:{due}:2025-12-08:first", "maintenance_reminder", "service", ivan,
         moscow(TODAY, 11)),
    ]  # fmt: skip
    assert first.counts == {"queued": 1}
    assert again.counts == {}


async def test_a_day_missed_does_not_lose_the_reminder(db: Database, settings: Settings) -> None:
    ivan = await add_client(db, phone=phone())
    car = await car_serviced(db, ivan, date(2025, 12, 4))  # planned in 10 days

    await run(db, settings, maintenance_reminders.run, moscow(TODAY, 11))

    assert await keys(db) == [f"maintenance:{car}:2025-12-04:first"]


async def test_once_more_14_days_after_the_date_passes_and_then_no_more(
    db: Database, settings: Settings
) -> None:
    ivan = await add_client(db, phone=phone())
    car = await car_serviced(db, ivan, date(2025, 12, 8))
    await run(db, settings, maintenance_reminders.run, moscow(TODAY, 11))

    early = await run(db, settings, maintenance_reminders.run, moscow(date(2026, 12, 21), 11))
    late = await run(db, settings, maintenance_reminders.run, moscow(date(2026, 12, 22), 11))
    later = await run(db, settings, maintenance_reminders.run, moscow(date(2026, 12, 23), 11))

    assert (early.counts, late.counts, later.counts) == ({}, {"queued": 1}, {})
    assert await keys(db) == [
        f"maintenance:{car}:2025-12-08:first",
        f"maintenance:{car}:2025-12-08:again",
    ]


async def test_a_client_who_came_since_is_not_reminded_again(
    db: Database, settings: Settings
) -> None:
    ivan = await add_client(db, phone=phone())
    car = await car_serviced(db, ivan, date(2025, 12, 8))
    await run(db, settings, maintenance_reminders.run, moscow(TODAY, 11))
    await add_visit(db, ivan, date(2026, 12, 10), 3000, kind="repair", car_id=car)

    result = await run(db, settings, maintenance_reminders.run, moscow(date(2026, 12, 22), 11))

    assert result.counts == {"skipped (came since)": 1}
    assert await keys(db) == [f"maintenance:{car}:2025-12-08:first"]


async def test_the_reminder_stops_once_the_client_books(db: Database, settings: Settings) -> None:
    ivan = await add_client(db, phone=phone())
    car = await car_serviced(db, ivan, date(2025, 12, 8))
    await run(db, settings, maintenance_reminders.run, moscow(TODAY, 11))
    # On 20 December Иван books diagnostics for the 23rd: the reminder after the date stops.
    await booked(db, settings, ivan, moscow(date(2026, 12, 23), 10), moscow(date(2026, 12, 20), 10))

    result = await run(db, settings, maintenance_reminders.run, moscow(date(2026, 12, 22), 11))

    assert result.counts == {"skipped (booked)": 1}
    assert await keys(db) == [f"maintenance:{car}:2025-12-08:first"]


async def test_a_client_with_a_booking_gets_no_first_reminder_either(
    db: Database, settings: Settings
) -> None:
    ivan = await add_client(db, phone=phone())
    await car_serviced(db, ivan, date(2025, 12, 8))
    await booked(db, settings, ivan, moscow(date(2026, 11, 26), 10), moscow(TODAY, 9))

    result = await run(db, settings, maintenance_reminders.run, moscow(TODAY, 11))

    assert result.counts == {"skipped (booked)": 1}
    assert not any(key.startswith("maintenance:") for key in await keys(db))


async def test_a_new_maintenance_visit_starts_a_new_cycle(db: Database, settings: Settings) -> None:
    ivan = await add_client(db, phone=phone())
    car = await car_serviced(db, ivan, date(2025, 12, 8))
    await run(db, settings, maintenance_reminders.run, moscow(TODAY, 11))
    await add_visit(db, ivan, date(2026, 12, 1), 9000, kind="maintenance", car_id=car)

    result = await run(db, settings, maintenance_reminders.run, moscow(date(2027, 11, 17), 11))

    assert result.counts == {"queued": 1}
    assert await keys(db) == [
        f"maintenance:{car}:2025-12-08:first",
        f"maintenance:{car}:2026-12-01:first",
    ]


async def test_a_crash_half_way_and_a_rerun_queue_each_reminder_once(
    db: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    cars = [
        await car_serviced(db, await add_client(db, phone=phone()), date(2025, 12, 8))
        for _ in range(3)
    ]
    monkeypatch.setattr("crm.reminders.PAGE", 1)
    real = remind_maintenance
    calls = 0

    async def crashing(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("the process died")
        return await real(*args, **kwargs)

    monkeypatch.setattr(maintenance_reminders, "remind_maintenance", crashing)
    with pytest.raises(RuntimeError):
        await run(db, settings, maintenance_reminders.run, moscow(TODAY, 11))
    assert len(await keys(db)) == 1

    monkeypatch.setattr(maintenance_reminders, "remind_maintenance", real)
    rerun = await run(db, settings, maintenance_reminders.run, moscow(TODAY, 11))

    assert rerun.counts == {"queued": 2}
    assert sorted(await keys(db)) == sorted(f"maintenance:{car}:2025-12-08:first" for car in cars)


async def test_a_dry_run_writes_nothing_and_says_what_it_would_queue(
    db: Database, settings: Settings
) -> None:
    ivan = await add_client(db, phone=phone())
    car = await car_serviced(db, ivan, date(2025, 12, 8))
    ctx = JobContext(settings, db.sessions, Moment(moscow(TODAY, 11), TODAY), MOSCOW, dry_run=True)
    result = JobResult()

    await maintenance_reminders.run(ctx, result)

    assert result.counts == {"queued": 1}
    assert ctx.would_send == [
        f"client #{ivan}: maintenance_reminder by telegram,sms,email "
        f"(maintenance:{car}:2025-12-08:first)"
    ]
    assert await queued(db) == []


# ------------------------------------------------------------------------- bookings

WEDNESDAY = date(2026, 11, 25)


async def booking_keys(db: Database) -> list[str]:
    return [key for key in await keys(db) if ":reminder:" in key]


async def test_a_confirmed_booking_is_reminded_the_day_before_at_noon_and_3_hours_before(
    db: Database, settings: Settings
) -> None:
    ivan = await add_client(db, phone=phone())
    booking = await booked(db, settings, ivan, moscow(WEDNESDAY, 10), moscow(TODAY, 9))
    job = booking_reminders.run

    morning = await run(db, settings, job, moscow(TODAY, 11, 45))
    noon = await run(db, settings, job, moscow(TODAY, 12))
    after_noon = await run(db, settings, job, moscow(TODAY, 12, 15))
    at_six = await run(db, settings, job, moscow(WEDNESDAY, 6, 45))
    at_seven = await run(db, settings, job, moscow(WEDNESDAY, 7))
    after_seven = await run(db, settings, job, moscow(WEDNESDAY, 7, 15))

    assert [r.counts for r in (morning, noon, after_noon, at_six, at_seven, after_seven)] == [
        {}, {"queued": 1}, {}, {}, {"queued": 1}, {},
    ]  # fmt: skip
    assert await booking_keys(db) == [
        f"booking:{booking}:reminder:day",
        f"booking:{booking}:reminder:hours",
    ]


async def test_the_reminder_tells_the_start_on_the_branchs_clock(
    db: Database, settings: Settings
) -> None:
    ivan = await add_client(db, phone=phone())
    await booked(db, settings, ivan, moscow(WEDNESDAY, 10), moscow(TODAY, 9))

    await run(db, settings, booking_reminders.run, moscow(TODAY, 12))

    async with db.sessions() as session:
        content = await session.scalar(
            select(Message.content).where(Message.template == "booking_reminder")
        )
    assert content is not None
    assert "25 ноября в 10:00, Автосервис" in content["sms"]["text"]


async def test_a_cancelled_or_unconfirmed_booking_gets_no_reminder(
    db: Database, settings: Settings
) -> None:
    ivan = await add_client(db, phone=phone())
    olga = await add_client(db, phone=phone(), first_name="Ольга")
    cancelled = await booked(db, settings, ivan, moscow(WEDNESDAY, 10), moscow(TODAY, 9))
    await booked(db, settings, olga, moscow(WEDNESDAY, 11), moscow(TODAY, 9), confirmed=False)
    async with db.sessions() as session, session.begin():
        moment = Moment(moscow(TODAY, 10), TODAY)
        await act(session, booking_rules(settings), cancelled, "cancel", moment, actor="staff")

    await run(db, settings, booking_reminders.run, moscow(TODAY, 12))
    await run(db, settings, booking_reminders.run, moscow(WEDNESDAY, 8))

    assert await booking_keys(db) == []


async def test_a_booking_confirmed_after_noon_gets_only_the_reminder_hours_before(
    db: Database, settings: Settings
) -> None:
    ivan = await add_client(db, phone=phone())
    booking = await booked(db, settings, ivan, moscow(WEDNESDAY, 10), moscow(TODAY, 13))

    evening = await run(db, settings, booking_reminders.run, moscow(TODAY, 13, 15))
    await run(db, settings, booking_reminders.run, moscow(WEDNESDAY, 7))

    assert evening.counts == {"skipped (confirmed since it fell due)": 1}
    assert await booking_keys(db) == [f"booking:{booking}:reminder:hours"]


async def test_a_booking_already_within_3_hours_gets_only_that_reminder(
    db: Database, settings: Settings
) -> None:
    ivan = await add_client(db, phone=phone())
    booking = await booked(db, settings, ivan, moscow(WEDNESDAY, 10), moscow(TODAY, 9))

    # The scheduler was down from Tuesday morning until 07:30 on Wednesday.
    result = await run(db, settings, booking_reminders.run, moscow(WEDNESDAY, 7, 30))

    assert result.counts == {"queued": 1}
    assert await booking_keys(db) == [f"booking:{booking}:reminder:hours"]


# -------------------------------------------------------------------------- surveys


async def work_order(
    db: Database, settings: Settings, client_id: int, number: str, visited_on: date, now: datetime
) -> VisitOutcome:
    """The dealer's system posts a closed work order of the client's at `now`."""
    invites = survey_invites(settings, template_library(settings))
    async with db.sessions() as session, session.begin():
        external_id = await session.scalar(select(Client.external_id).where(Client.id == client_id))
        assert external_id is not None
        data = VisitInput(number, external_id, visited_on, Decimal(4500))
        moment = Moment(now, now.astimezone(MOSCOW).date())
        return await post_visit(session, bonus_rules(settings), invites, data, moment)


async def test_posting_a_work_order_queues_nothing_and_says_when_the_invitation_is_due(
    db: Database, settings: Settings
) -> None:
    ivan = await add_client(db, phone=phone())

    posted = await work_order(db, settings, ivan, "WO-1", TODAY, moscow(TODAY, 9))

    assert posted.survey is not None
    assert posted.survey.scheduled_at == moscow(TODAY, 12)
    assert await queued(db) == []


async def test_the_job_invites_a_posted_visit_once_for_the_time_the_answer_said(
    db: Database, settings: Settings
) -> None:
    ivan = await add_client(db, phone=phone())
    posted = await work_order(db, settings, ivan, "WO-1", TODAY, moscow(TODAY, 9))

    first = await run(db, settings, surveys.run, moscow(TODAY, 9, 10))
    again = await run(db, settings, surveys.run, moscow(TODAY, 9, 20))

    assert (first.counts, again.counts) == ({"queued": 1}, {})
    assert await queued(db) == [
        (f"survey:visit:{posted.visit_id}", "survey_invitation", "service", ivan,
         moscow(TODAY, 12)),
    ]  # fmt: skip


async def test_a_work_order_posted_in_the_evening_is_invited_for_the_morning(
    db: Database, settings: Settings
) -> None:
    ivan = await add_client(db, phone=phone())
    posted = await work_order(db, settings, ivan, "WO-1", TODAY, moscow(TODAY, 19))

    await run(db, settings, surveys.run, moscow(TODAY, 19, 10))

    assert posted.survey is not None
    assert posted.survey.scheduled_at == moscow(WEDNESDAY, 9)
    assert [row[4] for row in await queued(db)] == [moscow(WEDNESDAY, 9)]


async def test_a_job_run_late_invites_at_once_but_not_in_the_night(
    db: Database, settings: Settings
) -> None:
    ivan = await add_client(db, phone=phone())
    await work_order(db, settings, ivan, "WO-1", TODAY, moscow(TODAY, 9))

    # The scheduler was down until 23:00: the invitation waits for 09:00, not 12:00 passed.
    await run(db, settings, surveys.run, moscow(TODAY, 23))

    assert [row[4] for row in await queued(db)] == [moscow(WEDNESDAY, 9)]


async def test_a_visit_older_than_3_days_or_of_a_client_without_address_is_not_invited(
    db: Database, settings: Settings
) -> None:
    ivan = await add_client(db, phone=phone())
    nobody = await add_client(db)
    old = await work_order(db, settings, ivan, "WO-1", date(2026, 11, 20), moscow(TODAY, 9))
    unreachable = await work_order(db, settings, nobody, "WO-2", TODAY, moscow(TODAY, 9))

    result = await run(db, settings, surveys.run, moscow(TODAY, 9, 10))

    assert old.survey is not None
    assert old.survey.reason == "the visit is older than 3 days"
    assert unreachable.survey is not None
    assert unreachable.survey.scheduled_at is None
    assert result.counts == {"skipped (no address)": 1}
    assert await queued(db) == []


async def test_a_crash_between_pages_of_invitations_and_a_rerun_invite_each_visit_once(
    db: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    clients = [await add_client(db, phone=phone()) for _ in range(3)]
    visits = [
        (await work_order(db, settings, c, f"WO-{c}", TODAY, moscow(TODAY, 9))).visit_id
        for c in clients
    ]
    monkeypatch.setattr("crm.surveys.PAGE", 1)
    real = invite_posted_visits
    calls = 0

    async def crashing(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("the process died")
        return await real(*args, **kwargs)

    monkeypatch.setattr(surveys, "invite_posted_visits", crashing)
    with pytest.raises(RuntimeError):
        await run(db, settings, surveys.run, moscow(TODAY, 9, 10))
    monkeypatch.setattr(surveys, "invite_posted_visits", real)
    rerun = await run(db, settings, surveys.run, moscow(TODAY, 9, 20))

    assert rerun.counts == {"queued": 2}
    assert sorted(await keys(db)) == sorted(f"survey:visit:{v}" for v in visits)


async def test_a_dry_run_of_the_survey_job_writes_nothing(db: Database, settings: Settings) -> None:
    ivan = await add_client(db, phone=phone())
    await work_order(db, settings, ivan, "WO-1", TODAY, moscow(TODAY, 9))

    result = await run(db, settings, surveys.run, moscow(TODAY, 9, 10), dry_run=True)

    assert result.counts == {"queued": 1}
    assert await queued(db) == []

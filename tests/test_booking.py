"""Booking in crm: free slots worked out by hand, the steps of a booking, the last-slot race
on both databases, and the work order that completes a booking.

The clock's NOW is 2026-11-24 06:00 UTC: 09:00 on a Tuesday in Moscow (UTC+3 all year).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from autoloyal.config import ConfigError, parse_settings
from autoloyal.rules import bonus_rules, booking_notices, booking_rules
from crm.booking import (
    ARRIVED,
    CANCELLED,
    COMPLETED,
    CONFIRMED,
    REQUESTED,
    BookingNotices,
    BookingRequest,
    BookingRules,
    BranchHours,
    DayState,
    Service,
    SlotTaken,
    act,
    book,
    free_days,
    on_day,
    reschedule,
    upcoming,
)
from crm.booking.inbound import ContactInput, client_for_phone, record_contact
from crm.clock import Moment
from crm.errors import Conflict, DomainError, NotFound
from crm.workorders import VisitInput, post_visit
from storage.booking import Booking, InboundContact
from storage.models import Client
from storage.outbox import Message
from tests.support.clock import FakeClock
from tests.support.databases import Database
from tests.support.messaging import add_client

MOSCOW = ZoneInfo("Europe/Moscow")
BERLIN = ZoneInfo("Europe/Berlin")
TO = Service("to", "ТО", timedelta(minutes=120), "maintenance")
HOUR = Service("diag", "Диагностика", timedelta(minutes=60), "diagnostics")


def at(day: date, hh: int, mm: int = 0, zone: ZoneInfo = MOSCOW) -> datetime:
    return datetime.combine(day, time(hh, mm), zone).astimezone(UTC)


def local_times(starts: tuple[datetime, ...], zone: ZoneInfo = MOSCOW) -> list[str]:
    return [f"{s.astimezone(zone):%H:%M}" for s in starts]


def rules_with(branch: BranchHours, **policy: object) -> BookingRules:
    return BookingRules(
        services={s.code: s for s in (TO, HOUR)},
        branches={branch.code: branch},
        **policy,  # type: ignore[arg-type]
    )


MAIN = BranchHours(code="main", name="Автосервис", zone=MOSCOW)


def moment(clock: FakeClock) -> Moment:
    return Moment.of(clock, MOSCOW)


# ---------------------------------------------------------------- slots by hand


async def test_a_fresh_install_books_nine_to_six_monday_to_saturday(
    db: Database, clock: FakeClock
) -> None:
    """No [[branch]] and no [[service]] configured: the default branch and services book."""
    rules = booking_rules(parse_settings({"database": {"url": db.url}}))
    assert list(rules.branches) == ["main"]
    diag = rules.service("diagnostics")
    async with db.sessions() as session:
        days = await free_days(session, rules, rules.branch(None), diag, clock(), days=7)
    # Today (Tuesday): from 11:00 (2 h ahead) to 17:00, the last hour that ends by 18:00.
    assert days[0].day == date(2026, 11, 24)
    assert local_times(days[0].starts) == [
        f"{h:02d}:{m:02d}" for h in range(11, 17) for m in (0, 30)
    ] + ["17:00"]
    # Wednesday: the whole day from 09:00; Sunday (the 29th) closed.
    assert local_times(days[1].starts)[:3] == ["09:00", "09:30", "10:00"]
    assert [d.state for d in days] == [DayState.FREE] * 5 + [DayState.CLOSED, DayState.FREE]


async def test_lunch_bays_and_a_booking_across_lunch(db: Database, clock: FakeClock) -> None:
    branch = BranchHours(
        code="main",
        name="Автосервис",
        zone=MOSCOW,
        week=((time(9), time(18)),) * 5 + (None, None),
        lunch=(time(13), time(14)),
        bays=2,
    )
    rules = rules_with(branch)
    wednesday = date(2026, 11, 25)
    async with db.sessions() as session:
        (day,) = await free_days(session, rules, branch, TO, clock(), first=wednesday, days=1)
    # Two hours fit 09:00-11:00 before lunch and 14:00-16:00 after it, never across it.
    assert local_times(day.starts) == [
        "09:00", "09:30", "10:00", "10:30", "11:00", "14:00", "14:30", "15:00", "15:30", "16:00",
    ]  # fmt: skip
    client = await add_client(db)
    async with db.sessions() as session, session.begin():
        with pytest.raises(DomainError) as refused:
            await book(session, rules, request(client, at(wednesday, 12)), moment(clock))
    assert refused.value.code == "not_a_slot"
    # Two bays: 10:00 takes two bookings; the third finds it full, and 09:00 and 11:00
    # (overlapping the 10:00 ones) full with it.
    others = [await add_client(db) for _ in range(2)]
    async with db.sessions() as session, session.begin():
        for who in (client, others[0]):
            await book(session, rules, request(who, at(wednesday, 10)), moment(clock))
    async with db.sessions() as session, session.begin():
        with pytest.raises(SlotTaken) as taken:
            await book(session, rules, request(others[1], at(wednesday, 10)), moment(clock))
    assert taken.value.code == "slot_taken"
    offered = [f"{s.astimezone(MOSCOW):%d %H:%M}" for s in taken.value.alternatives]
    assert offered == ["25 14:00", "25 14:30", "25 15:00", "25 15:30", "25 16:00"]
    async with db.sessions() as session:
        (day,) = await free_days(session, rules, branch, TO, clock(), first=wednesday, days=1)
    assert local_times(day.starts) == ["14:00", "14:30", "15:00", "15:30", "16:00"]


async def test_holidays_a_transferred_working_saturday_and_closed_dates(
    db: Database, clock: FakeClock
) -> None:
    """February 2027 in Russia: Saturday the 20th is a working day (for Monday the 22nd);
    Tuesday the 23rd is Defender of the Fatherland Day."""
    clock.set(datetime(2027, 2, 15, 6, tzinfo=UTC))  # Monday 09:00
    branch = BranchHours(
        code="main",
        name="Автосервис",
        zone=MOSCOW,
        week=((time(10), time(19)),) + ((time(9), time(18)),) * 4 + (None, None),
        closed=frozenset({date(2027, 2, 17)}),
    )
    rules = rules_with(branch)
    async with db.sessions() as session:
        days = await free_days(
            session, rules, branch, HOUR, clock(), first=date(2027, 2, 16), days=9
        )
    states = {d.day.day: d.state for d in days}
    assert states == {
        16: DayState.FREE,
        17: DayState.CLOSED,  # a closed date
        18: DayState.FREE,
        19: DayState.FREE,
        20: DayState.FREE,  # Saturday worked, with Monday's hours
        21: DayState.CLOSED,
        22: DayState.CLOSED,  # the day off it was moved to
        23: DayState.CLOSED,  # the holiday
        24: DayState.FREE,
    }
    saturday = next(d for d in days if d.day == date(2027, 2, 20))
    assert local_times(saturday.starts)[0] == "10:00"
    assert local_times(saturday.starts)[-1] == "18:00"
    open_anyway = BranchHours(code="main", name="Автосервис", zone=MOSCOW, work_on_holidays=True)
    async with db.sessions() as session:
        (holiday,) = await free_days(
            session, rules_with(open_anyway), open_anyway, HOUR, clock(),
            first=date(2027, 2, 23), days=1,
        )  # fmt: skip
    assert holiday.state == DayState.FREE


async def test_a_zone_with_summer_time_keeps_its_hours_on_the_day_the_clocks_change(
    db: Database, clock: FakeClock
) -> None:
    """Berlin moves to summer time at 02:00 on Sunday 2027-03-28."""
    clock.set(datetime(2027, 3, 25, 6, tzinfo=UTC))
    every_day = ((time(9), time(18)),) * 7
    branch = BranchHours(code="main", name="Berlin", zone=BERLIN, week=every_day)
    round_the_clock = BranchHours(
        code="main", name="Berlin", zone=BERLIN, week=((time(0), time.max),) * 7
    )
    async with db.sessions() as session:
        days = await free_days(
            session, rules_with(branch), branch, HOUR, clock(), first=date(2027, 3, 27), days=2
        )
        whole = await free_days(
            session, rules_with(round_the_clock), round_the_clock, HOUR, clock(),
            first=date(2027, 3, 27), days=2,
        )  # fmt: skip
    saturday, sunday = days
    assert local_times(saturday.starts, BERLIN) == local_times(sunday.starts, BERLIN)
    assert saturday.starts[0] == datetime(2027, 3, 27, 8, tzinfo=UTC)  # UTC+1
    assert sunday.starts[0] == datetime(2027, 3, 28, 7, tzinfo=UTC)  # UTC+2
    # A day of 23 hours has 45 one-hour starts on the half-hour grid, and none twice.
    assert (len(whole[0].starts), len(whole[1].starts)) == (47, 45)
    assert len(set(whole[1].starts)) == 45


# ---------------------------------------------------------------- the steps


def request(client_id: int, start: datetime, **more: object) -> BookingRequest:
    return BookingRequest(
        client_id=client_id, service=more.pop("service", "to"), starts_at=start,  # type: ignore[arg-type]
        source=more.pop("source", "bot"), **more,  # type: ignore[arg-type]
    )  # fmt: skip


async def notices_for(db: Database) -> BookingNotices:
    from autoloyal.messaging import template_library

    settings = parse_settings({"database": {"url": db.url}})
    return booking_notices(settings, template_library(settings))


async def test_a_booking_requested_confirmed_arrived_and_its_confirmation_sent_once(
    db: Database, clock: FakeClock
) -> None:
    rules, notices = rules_with(MAIN), await notices_for(db)
    client = await add_client(db, telegram_id=501, phone="+79030000501")
    start = at(date(2026, 11, 26), 10)
    async with db.sessions() as session, session.begin():
        made = await book(
            session, rules, request(client, start, comment="Стучит\x00 подвеска"),
            moment(clock), notices=notices,
        )  # fmt: skip
    assert (made.state, made.comment, made.local_start.hour) == (REQUESTED, "Стучит  подвеска", 10)
    async with db.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Message)) == 0
    queued = []
    for _ in range(2):  # a second tap on the staff card changes nothing
        async with db.sessions() as session, session.begin():
            confirmed = await act(
                session, rules, made.id, "confirm", moment(clock), actor="Анна", notices=notices
            )
        queued.append(confirmed.confirmation_queued)
    assert (confirmed.state, confirmed.actor) == (CONFIRMED, "Анна")
    assert queued == [True, False]
    # A client with no address on the plan: confirmed, and nothing queued, which staff see.
    unreachable = await add_client(db)
    async with db.sessions() as session, session.begin():
        silent = await book(
            session, rules, request(unreachable, start + timedelta(days=1)), moment(clock),
            notices=notices, confirmed=True,
        )  # fmt: skip
    assert (silent.state, silent.confirmation_queued) == (CONFIRMED, False)
    async with db.sessions() as session:
        sent = (await session.scalars(select(Message))).all()
    assert [(m.template, m.idempotency_key, m.kind) for m in sent] == [
        ("booking_confirmation", f"booking:{made.id}:confirmed", "service")
    ]
    # Arrival is for the booking's day, not before.
    async with db.sessions() as session, session.begin():
        with pytest.raises(Conflict) as early:
            await act(session, rules, made.id, "arrive", moment(clock), actor="Анна")
    assert early.value.code == "too_early"
    clock.set(at(date(2026, 11, 26), 9, 50))
    async with db.sessions() as session, session.begin():
        arrived = await act(session, rules, made.id, "arrive", moment(clock), actor="Анна")
        with pytest.raises(Conflict) as wrong:
            await act(session, rules, made.id, "decline", moment(clock), actor="Анна")
    assert (arrived.state, arrived.arrived_at) == (ARRIVED, clock())
    assert wrong.value.code == "wrong_state"


async def test_what_a_client_may_do_with_their_own_booking(db: Database, clock: FakeClock) -> None:
    rules = rules_with(MAIN)
    client, stranger = await add_client(db), await add_client(db)
    start = at(date(2026, 11, 26), 10)
    async with db.sessions() as session, session.begin():
        made = await book(session, rules, request(client, start), moment(clock))
        with pytest.raises(Conflict) as twice:
            await book(session, rules, request(client, start + timedelta(hours=1)), moment(clock))
    assert twice.value.code == "already_booked"
    async with db.sessions() as session, session.begin():
        with pytest.raises(NotFound):
            await act(session, rules, made.id, "cancel", moment(clock), actor="client",
                      client_id=stranger)  # fmt: skip
        with pytest.raises(DomainError):
            await act(session, rules, made.id, "confirm", moment(clock), actor="client",
                      client_id=client)  # fmt: skip
    # Moved by the client: the old booking is cancelled, the new one points at it.
    async with db.sessions() as session, session.begin():
        moved = await reschedule(
            session, rules, made.id, start + timedelta(days=1), moment(clock),
            actor="client", source="bot", client_id=client,
        )  # fmt: skip
    assert (moved.rescheduled_from, moved.state) == (made.id, REQUESTED)
    async with db.sessions() as session:
        assert [b.id for b in await upcoming(session, rules, client, clock())] == [moved.id]
        old = await session.get(Booking, made.id)
        assert old is not None
        assert old.state == CANCELLED
    # Too close to the start to cancel in the bot: call the service centre.
    clock.set(moved.starts_at - timedelta(hours=1))
    async with db.sessions() as session, session.begin():
        with pytest.raises(Conflict) as late:
            await act(session, rules, moved.id, "cancel", moment(clock), actor="client",
                      client_id=client)  # fmt: skip
    assert late.value.code == "too_late"


async def test_bad_requests_are_refused_with_their_field(db: Database, clock: FakeClock) -> None:
    rules = rules_with(MAIN)
    client = await add_client(db)
    tomorrow = date(2026, 11, 25)
    cases = [
        (request(client, datetime(2026, 11, 25, 10)), "starts_at"),  # no offset
        (request(client, at(date(2026, 11, 24), 10)), "starts_at"),  # too soon
        (request(client, at(date(2026, 12, 20), 10)), "starts_at"),  # beyond the horizon
        (request(client, at(tomorrow, 10, 15)), "starts_at"),  # off the grid
        (request(client, at(date(2026, 11, 29), 10)), "starts_at"),  # Sunday
        (request(client, at(tomorrow, 17)), "starts_at"),  # two hours do not fit
        (request(client, at(tomorrow, 10), service="wash"), "service"),
        (request(client, at(tomorrow, 10), branch="north"), "branch"),
        (request(client, at(tomorrow, 10), source="fax"), "source"),
        (request(client, at(tomorrow, 10), comment="x" * 501), "comment"),
        (request(client, at(tomorrow, 10), car_id=10_000), "car"),
        (request(10_000, at(tomorrow, 10)), "client"),
    ]
    for bad, field in cases:
        async with db.sessions() as session, session.begin():
            with pytest.raises(DomainError) as refused:
                await book(session, rules, bad, moment(clock))
        assert refused.value.field == field, bad
    async with db.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Booking)) == 0


async def test_external_ref_answers_the_same_booking(db: Database, clock: FakeClock) -> None:
    rules = rules_with(MAIN)
    client = await add_client(db)
    start = at(date(2026, 11, 25), 10)
    async with db.sessions() as session, session.begin():
        first = await book(
            session, rules, request(client, start, external_ref="R-1"), moment(clock)
        )
    async with db.sessions() as session, session.begin():
        again = await book(
            session, rules, request(client, start, external_ref="R-1"), moment(clock)
        )
        with pytest.raises(Conflict) as reused:
            await book(session, rules, request(client, start + timedelta(hours=2),
                                               external_ref="R-1"), moment(clock))  # fmt: skip
    assert (again.id, again.created, first.created) == (first.id, False, True)
    assert reused.value.code == "ref_conflict"


# ---------------------------------------------------------------- the race


async def test_twenty_clients_race_for_the_last_bay_and_exactly_one_wins(
    db: Database, clock: FakeClock
) -> None:
    branch = BranchHours(code="main", name="Автосервис", zone=MOSCOW, bays=3)
    rules = rules_with(branch)
    start = at(date(2026, 11, 25), 10)
    earlier = [await add_client(db) for _ in range(2)]
    async with db.sessions() as session, session.begin():
        for who in earlier:
            await book(session, rules, request(who, start, service="diag"), moment(clock))
    racers = [await add_client(db) for _ in range(20)]

    async def one(client: int) -> tuple[datetime, ...] | None:
        """None: booked; else the alternatives offered to the loser."""
        try:
            async with db.sessions() as session, session.begin():
                await book(session, rules, request(client, start, service="diag"), moment(clock))
        except SlotTaken as taken:
            return taken.alternatives
        return None

    outcomes = await asyncio.gather(*(one(client) for client in racers))
    lost = [offered for offered in outcomes if offered is not None]
    assert len(lost) == 19
    assert all(offered and start not in offered for offered in lost)
    async with db.sessions() as session:
        holding = await session.scalar(
            select(func.count()).select_from(Booking).where(Booking.starts_at == start)
        )
    assert holding == 3


# ---------------------------------------------------------------- the work order


async def test_a_work_order_of_the_booking_day_completes_the_booking(
    db: Database, clock: FakeClock
) -> None:
    rules = rules_with(MAIN)
    client = await add_client(db)
    async with db.sessions() as session, session.begin():
        external = await session.get(Client, client)
        assert external is not None
        external.external_id = "C-1"
        made = await book(session, rules, request(client, at(date(2026, 11, 25), 10)),
                          moment(clock))  # fmt: skip
    clock.set(at(date(2026, 11, 25), 12))
    settings = parse_settings({"database": {"url": db.url}})
    visit = VisitInput(
        external_id="WO-1", client="C-1", visited_on=date(2026, 11, 25), amount=Decimal(9000)
    )
    async with db.sessions() as session, session.begin():
        done = await post_visit(
            session, bonus_rules(settings), None, visit, moment(clock), bookings=rules
        )
    assert done.booking_id == made.id
    async with db.sessions() as session:
        row = await session.get(Booking, made.id)
        assert row is not None
        assert (row.state, row.visit_id, row.completed_at) == (COMPLETED, done.visit_id, clock())
        listed = await on_day(session, rules, date(2026, 11, 25))
    assert [(b.id, b.state) for b in listed] == [(made.id, COMPLETED)]


# ---------------------------------------------------------------- contacts


async def test_inbound_contacts_find_or_make_the_client(db: Database, clock: FakeClock) -> None:
    sources = ("Рекомендация знакомых", "Интернет-поиск")
    known = await add_client(db, phone="+79030000777")
    async with db.sessions() as session, session.begin():
        first = await record_contact(
            session,
            ContactInput("call", "service", "not_booked", phone="8 903 000-07-77",
                         source="Интернет-поиск", staff="Анна"),
            moment(clock), sources=sources,
        )  # fmt: skip
        new = await record_contact(
            session,
            ContactInput("walk_in", "sales", "information", phone="+7 916 111 22 33",
                         name="Петров Пётр", external_ref="T-1"),
            moment(clock), sources=sources,
        )  # fmt: skip
        again = await record_contact(
            session, ContactInput("walk_in", "sales", "information", external_ref="T-1"),
            moment(clock), sources=sources,
        )  # fmt: skip
        with pytest.raises(DomainError) as unknown:
            await record_contact(session, ContactInput("call", "service", "booked",
                                 source="Газета"), moment(clock), sources=sources)  # fmt: skip
    assert (first.client_id, first.phone) == (known, "+79030000777")
    assert (again.id, again.created) == (new.id, False)
    assert unknown.value.field == "source"
    async with db.sessions() as session:
        made = await session.get(Client, new.client_id)
        assert made is not None
        assert (made.last_name, made.first_name, made.source) == ("Петров", "Пётр", "contact")
        assert await session.scalar(select(func.count()).select_from(InboundContact)) == 2
        twice = await client_for_phone(session, "+79161112233", moment(clock))
    assert twice == (new.client_id, False)


async def test_config_names_the_key_of_a_bad_service_or_hours(db: Database) -> None:
    with pytest.raises(ConfigError) as bad_hours:
        parse_settings({"branch": [{"code": "a", "name": "A", "hours": {"mon": "18:00-09:00"}}]})
    assert "hours" in str(bad_hours.value)
    assert "mon" in str(bad_hours.value)
    with pytest.raises(ConfigError) as bad_branch:
        parse_settings({"service": [{"code": "to", "name": "ТО", "duration_minutes": 60,
                                     "branches": ["north"]}]})  # fmt: skip
    assert "service[0].branches" in str(bad_branch.value)
    settings = parse_settings(
        {
            "company": {"timezone": "Asia/Vladivostok"},
            "branch": [
                {
                    "code": "vl",
                    "name": "Владивосток",
                    "bays": 4,
                    "lunch": "13:00-14:00",
                    "hours": {"mon": "08:00-20:00", "sat": "10:00-16:00"},
                }
            ],
        }
    )
    rules = booking_rules(settings)
    vl = rules.branch("vl")
    assert (vl.zone, vl.bays) == (ZoneInfo("Asia/Vladivostok"), 4)
    assert vl.week[:2] == ((time(8), time(20)), None)
    assert vl.week[5] == (time(10), time(16))


def test_a_country_without_a_holiday_calendar_works_its_plain_week() -> None:
    """Ascension Island (AC) is a phone region the `holidays` package has no calendar for:
    the branch works its week; Russia's 8 March is a day off, Ascension's is not."""
    russian = BranchHours(code="main", name="Автосервис", zone=MOSCOW)
    ascension = BranchHours(code="main", name="Ascension", zone=MOSCOW, country="AC")
    monday = date(2027, 3, 8)
    assert russian.hours_on(monday) is None
    assert ascension.hours_on(monday) == (time(9), time(18))

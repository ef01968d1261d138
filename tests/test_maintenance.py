"""The maintenance forecast: km/day, base, due by km and by time, buckets, the segment.

Every expected date below is worked out by hand in a comment; today is 2026-11-24, so the
365-day window of readings starts on 2025-11-24 (inclusive).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from sqlalchemy import select

from crm.maintenance import (
    BY_KM,
    BY_TIME,
    LATER,
    MONTH,
    OVERDUE,
    TODAY,
    TOMORROW,
    WEEK,
    CarForecast,
    MaintenancePolicy,
    forecast,
)
from crm.segments import SegmentContext, SegmentError, count, fetch_rows, fetch_summary, resolve
from crm.visits import MAINTENANCE
from storage.models import Branch, Car, OdometerReading, Visit
from tests.support.databases import Database
from tests.support.messaging import add_client

DAY = date(2026, 11, 24)  # the forecast's today (the clock's NOW, 2026-11-24 06:00 UTC)
STAMP = datetime(2026, 1, 1, tzinfo=UTC)
POLICY = MaintenancePolicy()  # 15 000 km / 12 months, 40 km/day


async def add_car(
    db: Database,
    client_id: int | None,
    *,
    make: str | None = None,
    interval_km: int | None = None,
    interval_months: int | None = None,
    readings: Sequence[tuple[date, int]] = (),
    services: Sequence[tuple[date, int | None]] = (),
    repairs: Sequence[tuple[date, int | None]] = (),
) -> int:
    """A car with odometer readings and visits: `services` are maintenance visits, `repairs`
    other work (never a base). A reading on a visit's day with its odometer is linked to it."""
    async with db.sessions() as session, session.begin():
        branch_id = await session.scalar(select(Branch.id))
        assert branch_id is not None
        car = Car(
            client_id=client_id,
            make=make,
            model="Model",
            plate=f"A{client_id or 0}{len(readings)}{len(services)}",
            service_interval_km=interval_km,
            service_interval_months=interval_months,
            created_at=STAMP,
            updated_at=STAMP,
        )
        session.add(car)
        await session.flush()
        visit_ids: dict[tuple[date, int | None], int] = {}
        for kind, visits in ((MAINTENANCE, services), ("repair", repairs)):
            for visited_on, odometer in visits:
                assert client_id is not None, "a visit needs a client"
                visit = Visit(
                    client_id=client_id,
                    car_id=car.id,
                    branch_id=branch_id,
                    visited_on=visited_on,
                    odometer=odometer,
                    amount=Decimal("5000.00"),
                    kind=kind,
                    created_at=STAMP,
                    updated_at=STAMP,
                )
                session.add(visit)
                await session.flush()
                visit_ids[(visited_on, odometer)] = visit.id
        for read_on, km in readings:
            visit_id = visit_ids.pop((read_on, km), None)
            session.add(
                OdometerReading(
                    car_id=car.id,
                    read_on=read_on,
                    km=km,
                    source="visit" if visit_id is not None else "api",
                    visit_id=visit_id,
                    created_at=STAMP,
                )
            )
        return car.id


async def run(
    db: Database,
    policy: MaintenancePolicy = POLICY,
    today: date = DAY,
    *,
    client_id: int | None = None,
    car_ids: Sequence[int] | None = None,
) -> dict[int, CarForecast]:
    async with db.sessions() as session:
        found = await forecast(session, policy, today, client_id=client_id, car_ids=car_ids)
    return {car.car_id: car for car in found}


# ------------------------------------------------------------------------ km per day


async def test_readings_29_days_apart_use_the_default_rate_30_days_the_measured_one(
    db: Database,
) -> None:
    client = await add_client(db)
    # 2026-10-01 -> 2026-10-30 is 29 days: too short, so the default 40 km/day.
    short = await add_car(
        db, client, readings=[(date(2026, 10, 1), 10_000), (date(2026, 10, 30), 12_900)]
    )
    # 2026-09-30 -> 2026-10-30 is 30 days: measured, 3 100 km / 30 days = 103.33 km/day.
    long = await add_car(
        db, client, readings=[(date(2026, 9, 30), 10_000), (date(2026, 10, 30), 13_100)]
    )

    cars = await run(db)

    a = cars[short]
    assert (a.measured, a.km_per_day) == (False, 40.0)
    assert (a.start_km, a.period_km) == (10_000, 2_900)
    # No maintenance: base is the first reading, 2026-10-01 at 10 000 km.
    assert (a.base_date, a.base_km, a.last_maintenance) == (date(2026, 10, 1), 10_000, None)
    # ceil((10 000 + 15 000 - 12 900) / 40) = ceil(302.5) = 303 days after 2026-10-30:
    # +2 -> Nov 1 (301 left), +30 Dec 1 (271), +31 Jan 1 (240), +31 Feb 1 (209), +28 Mar 1
    # (181), +31 Apr 1 (150), +30 May 1 (120), +31 Jun 1 (89), +30 Jul 1 (59), +31 Aug 1 (28),
    # +28 -> 2027-08-29.
    assert a.due_by_km == date(2027, 8, 29)
    assert a.due_by_time == date(2027, 10, 1)  # 2026-10-01 + 12 months
    assert (a.planned, a.due_by) == (date(2027, 8, 29), BY_KM)
    # 2026-11-24 -> 2027-08-24 is 30+31+31+28+31+30+31+30+31 = 273 days, +5 = 278.
    assert (a.days_left, a.bucket) == (278, LATER)
    # 25 days since 2026-10-30 at 40 km/day: 12 900 + 1 000.
    assert a.projected_km == 13_900

    b = cars[long]
    assert (b.measured, b.km_per_day) == (True, 103.3)
    assert (b.start_km, b.period_km) == (10_000, 3_100)
    # ceil((10 000 + 15 000 - 13 100) * 30 / 3 100) = ceil(357 000 / 3 100 = 115.16) = 116 days
    # after 2026-10-30: +2 Nov 1 (114 left), +30 Dec 1 (84), +31 Jan 1 (53), +31 Feb 1 (22),
    # +22 -> 2027-02-23.
    assert b.due_by_km == date(2027, 2, 23)
    assert b.due_by_time == date(2027, 9, 30)  # 2026-09-30 + 12 months
    assert (b.planned, b.due_by) == (date(2027, 2, 23), BY_KM)
    # 2026-11-24 -> 2027-02-24 is 30+31+31 = 92 days, -1 = 91.
    assert (b.days_left, b.bucket) == (91, LATER)
    # 25 days * 3 100 / 30 = 2 583.3, floored: 13 100 + 2 583.
    assert b.projected_km == 15_683


async def test_the_window_is_the_last_365_days_inclusive(db: Database) -> None:
    client = await add_client(db)
    # 2025-11-23 is outside the window (today - 366), 2025-11-24 is its first day.
    car = await add_car(
        db,
        client,
        readings=[
            (date(2025, 11, 23), 1_000),
            (date(2025, 11, 24), 1_100),
            (date(2026, 11, 19), 11_100),
        ],
    )

    got = (await run(db))[car]

    # Window: 2025-11-24 (1 100 km) -> 2026-11-19 (11 100 km): 360 days, 10 000 km.
    assert (got.start_km, got.period_km, got.measured) == (1_100, 10_000, True)
    assert got.km_per_day == 27.8  # 10 000 / 360 = 27.78
    # The base is the first reading ever, outside the window: 2025-11-23 at 1 000 km.
    assert (got.base_date, got.base_km) == (date(2025, 11, 23), 1_000)
    # ceil((1 000 + 15 000 - 11 100) * 360 / 10 000) = ceil(176.4) = 177 days after
    # 2026-11-19: +11 Nov 30 (166 left), +31 Dec 31 (135), +31 Jan 31 (104), +28 Feb 28 (76),
    # +31 Mar 31 (45), +30 Apr 30 (15), +15 -> 2027-05-15.
    assert got.due_by_km == date(2027, 5, 15)
    # By time: 2025-11-23 + 12 months = 2026-11-23, yesterday.
    assert got.due_by_time == date(2026, 11, 23)
    assert (got.planned, got.due_by, got.days_left, got.bucket) == (
        date(2026, 11, 23),
        BY_TIME,
        -1,
        OVERDUE,
    )
    # 5 days * 10 000 / 360 = 138.9, floored: 11 100 + 138.
    assert got.projected_km == 11_238


async def test_km_going_down_falls_back_to_the_default_rate(db: Database) -> None:
    client = await add_client(db)
    car = await add_car(
        db, client, readings=[(date(2026, 1, 1), 50_000), (date(2026, 11, 1), 40_000)]
    )

    got = (await run(db))[car]

    assert (got.measured, got.km_per_day) == (False, 40.0)
    assert (got.start_km, got.period_km) == (50_000, -10_000)
    # ceil((50 000 + 15 000 - 40 000) / 40) = 625 days after 2026-11-01: +365 -> 2027-11-01
    # (260 left), +30 Dec 1 (230), +31 Jan 1 2028 (199), +31 Feb 1 (168), +29 Mar 1 (139),
    # +31 Apr 1 (108), +30 May 1 (78), +31 Jun 1 (47), +30 Jul 1 (17), +17 -> 2028-07-18.
    assert got.due_by_km == date(2028, 7, 18)
    assert (got.planned, got.due_by) == (date(2027, 1, 1), BY_TIME)  # 2026-01-01 + 12 months
    assert got.projected_km == 40_920  # 23 days since 2026-11-01 * 40 = 920


async def test_a_car_that_stood_still_is_measured_at_zero_and_planned_by_time(
    db: Database,
) -> None:
    client = await add_client(db)
    car = await add_car(
        db, client, readings=[(date(2026, 6, 1), 50_000), (date(2026, 11, 1), 50_000)]
    )

    got = (await run(db))[car]

    # 153 days apart and the km did not go down: measured, 0 km/day; the km never come due.
    assert (got.measured, got.km_per_day, got.period_km) == (True, 0.0, 0)
    assert got.due_by_km is None
    assert (got.planned, got.due_by) == (date(2027, 6, 1), BY_TIME)  # 2026-06-01 + 12 months
    assert got.projected_km == 50_000


async def test_a_custom_daily_km_is_used_exactly(db: Database) -> None:
    client = await add_client(db)
    car = await add_car(db, client, interval_months=36, readings=[(date(2026, 11, 4), 0)])

    got = (await run(db, MaintenancePolicy(daily_km=33.3)))[car]

    assert (got.measured, got.km_per_day) == (False, 33.3)
    # ceil(15 000 / 33.3) = ceil(150 000 / 333 = 450.45) = 451 days after 2026-11-04:
    # +365 -> 2027-11-04 (86 left), +30 Dec 4 (56), +31 Jan 4 2028 (25), +25 -> 2028-01-29.
    assert (got.due_by_km, got.due_by) == (date(2028, 1, 29), BY_KM)
    # 20 days * 33.3 = 666.
    assert got.projected_km == 666


# ------------------------------------------------------------------------------ buckets


async def test_buckets_by_days_left_at_every_boundary(db: Database) -> None:
    client = await add_client(db)
    # Maintenance without odometer: due by km is unknown, planned = visit + 12 months.
    visits = {
        date(2025, 11, 23): (-1, OVERDUE),  # 2026-11-23
        date(2025, 11, 24): (0, TODAY),  # 2026-11-24
        date(2025, 11, 25): (1, TOMORROW),  # 2026-11-25
        date(2025, 11, 26): (2, WEEK),  # 2026-11-26
        date(2025, 12, 1): (7, WEEK),  # 2026-12-01: 6 days to Nov 30, +1
        date(2025, 12, 2): (8, MONTH),  # 2026-12-02
        date(2025, 12, 25): (31, MONTH),  # 2026-12-25: 6 + 25
        date(2025, 12, 26): (32, LATER),  # 2026-12-26
    }
    cars = {
        await add_car(db, client, services=[(visited_on, None)]): visited_on
        for visited_on in visits
    }

    got = await run(db)

    assert set(got) == set(cars)
    for car_id, visited_on in cars.items():
        one = got[car_id]
        planned = date(visited_on.year + 1, visited_on.month, visited_on.day)
        assert one.due_by_km is None
        assert (one.planned, one.due_by) == (planned, BY_TIME)
        assert (one.days_left, one.bucket) == visits[visited_on], visited_on
        assert one.last_maintenance == visited_on
    # Ordered by the planned date.
    async with db.sessions() as session:
        order = [car.car_id for car in await forecast(session, POLICY, DAY)]
    assert order == list(cars)


async def test_buckets_by_km_today_tomorrow_and_overdue(db: Database) -> None:
    client = await add_client(db)
    # One reading each, before the window: default 40 km/day, base = that reading; 24 months
    # so that km wins. ceil(15 000 / 40) = 375 days: 2025-11-14 + 365 = 2026-11-14, +10 =
    # 2026-11-24 (today); from 2025-11-15 it is 2026-11-25 (tomorrow).
    today = await add_car(db, client, interval_months=24, readings=[(date(2025, 11, 14), 5_000)])
    tomorrow = await add_car(db, client, interval_months=24, readings=[(date(2025, 11, 15), 5_000)])
    # Maintenance on 2025-12-01 at 60 000, 80 000 on 2026-06-01 (182 days: 31+31+28+31+30+31):
    # ceil((60 000 + 15 000 - 80 000) * 182 / 20 000) = ceil(-45.5) = -45 days:
    # 2026-06-01 - 31 = May 1, -14 = 2026-04-17; to 2026-11-24 is
    # 30+31+30+31+31+30+31 (to Nov 17) + 7 = 221 days ago.
    overdue = await add_car(
        db,
        client,
        readings=[(date(2025, 12, 1), 60_000), (date(2026, 6, 1), 80_000)],
        services=[(date(2025, 12, 1), 60_000)],
    )

    got = await run(db)

    assert (got[today].planned, got[today].due_by) == (date(2026, 11, 24), BY_KM)
    assert (got[today].days_left, got[today].bucket) == (0, TODAY)
    assert got[today].due_by_time == date(2027, 11, 14)
    # No reading in the window: no start or period, projected from the old reading.
    assert (got[today].start_km, got[today].period_km) == (None, None)
    assert got[today].projected_km == 20_000  # 375 days * 40 = 15 000 on top of 5 000
    assert (got[tomorrow].planned, got[tomorrow].due_by) == (date(2026, 11, 25), BY_KM)
    assert (got[tomorrow].days_left, got[tomorrow].bucket) == (1, TOMORROW)

    late = got[overdue]
    assert late.due_by_km == date(2026, 4, 17), (
        "a negative distance left must round up (ceil(-45.5) = -45 days), not down"
    )
    assert late.due_by_time == date(2026, 12, 1)
    assert (late.planned, late.due_by, late.days_left, late.bucket) == (
        date(2026, 4, 17),
        BY_KM,
        -221,
        OVERDUE,
    )
    assert (late.measured, late.start_km, late.period_km) == (True, 60_000, 20_000)
    # 176 days since 2026-06-01 * 20 000 / 182 = 19 340.66, floored.
    assert late.projected_km == 99_340


# ------------------------------------------------------------------------ time or km


async def test_time_wins_when_it_comes_first(db: Database) -> None:
    client = await add_client(db)
    car = await add_car(
        db,
        client,
        readings=[(date(2026, 1, 10), 30_000), (date(2026, 11, 10), 32_000)],
        services=[(date(2026, 1, 10), 30_000)],
        repairs=[(date(2026, 11, 10), 32_000)],  # not maintenance: not the base
    )

    got = (await run(db))[car]

    assert (got.last_maintenance, got.base_date, got.base_km) == (
        date(2026, 1, 10),
        date(2026, 1, 10),
        30_000,
    )
    # 2026-01-10 -> 2026-11-10 is 304 days, 2 000 km: 6.58 km/day.
    assert (got.measured, got.km_per_day) == (True, 6.6)
    # ceil((30 000 + 15 000 - 32 000) * 304 / 2 000) = 1 976 days after 2026-11-10:
    # +365 2027-11-10, +366 2028-11-10, +365 2029, +365 2030, +365 2031-11-10 (1 826, 150
    # left), +30 Dec 10 (120), +31 Jan 10 2032 (89), +31 Feb 10 (58), +29 Mar 10 (29), +29
    # -> 2032-04-08.
    assert got.due_by_km == date(2032, 4, 8)
    assert got.due_by_time == date(2027, 1, 10)
    # 2026-11-24 -> 2027-01-10: 6 + 31 + 10 = 47 days.
    assert (got.planned, got.due_by, got.days_left, got.bucket) == (
        date(2027, 1, 10),
        BY_TIME,
        47,
        LATER,
    )
    # 14 days * 2 000 / 304 = 92.1, floored.
    assert got.projected_km == 32_092


async def test_the_last_maintenance_visit_is_the_base(db: Database) -> None:
    client = await add_client(db)
    car = await add_car(
        db,
        client,
        readings=[(date(2025, 6, 1), 10_000), (date(2026, 5, 1), 20_000)],
        services=[(date(2025, 6, 1), 10_000), (date(2026, 5, 1), 20_000)],
    )

    got = (await run(db))[car]

    assert (got.last_maintenance, got.base_date, got.base_km) == (
        date(2026, 5, 1),
        date(2026, 5, 1),
        20_000,
    )
    # Only 2026-05-01 is in the window: default 40 km/day; 375 days after 2026-05-01 =
    # 2027-05-01 + 10 = 2027-05-11, later than 2026-05-01 + 12 months.
    assert (got.measured, got.start_km, got.period_km) == (False, 20_000, 0)
    assert got.due_by_km == date(2027, 5, 11)
    assert (got.planned, got.due_by) == (date(2027, 5, 1), BY_TIME)


# ------------------------------------------------------------------------- intervals


async def test_intervals_come_from_the_car_then_the_make_then_the_default(db: Database) -> None:
    client = await add_client(db)
    policy = MaintenancePolicy(makes={"Kia": (10_000, 6), "Skoda": (None, 24)})
    june = [(date(2026, 6, 15), 40_000)]  # maintenance, and its reading, at 40 000 km
    kias = [
        await add_car(db, client, make=make, readings=june, services=june)
        for make in ("KIA", "Kia", "kia")
    ]
    lada = await add_car(db, client, make="Lada", readings=june, services=june)
    own_km = await add_car(db, client, make="Kia", interval_km=7_500, readings=june, services=june)
    own_months = await add_car(
        db, client, make="KIA", interval_months=3, readings=june, services=june
    )
    skoda = await add_car(db, client, make="Skoda", readings=june, services=june)

    got = await run(db, policy)

    # From 2026-06-15 at 40 km/day: 10 000 km is 250 days: +183 (to 2026-12-15) +62 (to
    # 2027-02-15) +5 = 2027-02-20; 15 000 km is 375 days: 2027-06-15 + 10 = 2027-06-25;
    # 7 500 km is ceil(187.5) = 188 days: 2026-12-15 + 5 = 2026-12-20.
    for car in kias:
        assert (got[car].interval_km, got[car].interval_months) == (10_000, 6), got[car].make
        assert got[car].due_by_km == date(2027, 2, 20)
        assert (got[car].due_by_time, got[car].due_by) == (date(2026, 12, 15), BY_TIME)
    assert (got[lada].interval_km, got[lada].interval_months) == (15_000, 12)
    assert (got[lada].due_by_km, got[lada].due_by_time) == (date(2027, 6, 25), date(2027, 6, 15))
    assert (got[own_km].interval_km, got[own_km].interval_months) == (7_500, 6)
    assert (got[own_km].due_by_km, got[own_km].due_by_time) == (
        date(2026, 12, 20),
        date(2026, 12, 15),
    )
    assert (got[own_months].interval_km, got[own_months].interval_months) == (10_000, 3)
    assert got[own_months].due_by_time == date(2026, 9, 15)  # 2026-06-15 + 3 months
    assert (got[own_months].days_left, got[own_months].bucket) == (-70, OVERDUE)  # 15+31+24
    # A make with only months configured: km from the default.
    assert (got[skoda].interval_km, got[skoda].interval_months) == (15_000, 24)
    assert (got[skoda].due_by_km, got[skoda].due_by_time) == (date(2027, 6, 25), date(2028, 6, 15))
    assert got[skoda].due_by == BY_KM


async def test_the_make_matches_whatever_its_case(db: Database) -> None:
    client = await add_client(db)
    policy = MaintenancePolicy(makes={"Kia": (10_000, 6), "Land Rover": (12_000, 9)})
    odd = [
        await add_car(db, client, make=make, readings=[(date(2026, 6, 15), 40_000)])
        for make in ("kIA", "KiA", "LAND rover")
    ]

    got = await run(db, policy)

    intervals = {got[car].make: (got[car].interval_km, got[car].interval_months) for car in odd}
    # "Matched whatever the case of the make column" (crm.maintenance._make_interval).
    assert intervals == {"kIA": (10_000, 6), "KiA": (10_000, 6), "LAND rover": (12_000, 9)}, (
        "BUG in crm.maintenance._make_interval: a make in [maintenance] makes is matched with "
        "Car.make IN (as written, UPPER, lower, Title, Capitalized), so mixed-case spellings "
        "such as 'kIA' or 'LAND rover' fall back to the default interval instead of the make's"
    )


# --------------------------------------------------------------------------- the base


async def test_without_a_maintenance_visit_the_base_is_the_first_reading(db: Database) -> None:
    client = await add_client(db)
    car = await add_car(
        db,
        client,
        readings=[(date(2024, 3, 10), 1_000), (date(2026, 8, 1), 30_000)],
        repairs=[(date(2026, 8, 1), 30_000)],
    )

    got = (await run(db))[car]

    assert (got.last_maintenance, got.base_date, got.base_km) == (None, date(2024, 3, 10), 1_000)
    # 1 000 + 15 000 - 30 000 = -14 000 km: ceil(-14 000 / 40) = -350 days before 2026-08-01:
    # -31 Jul 1, -30 Jun 1, -31 May 1, -30 Apr 1, -31 Mar 1, -28 Feb 1, -31 Jan 1, -31 Dec 1
    # 2025, -30 Nov 1, -31 Oct 1, -30 Sep 1 (334), -16 -> 2025-08-16.
    assert got.due_by_km == date(2025, 8, 16)
    assert got.due_by_time == date(2025, 3, 10)  # 2024-03-10 + 12 months
    assert (got.planned, got.due_by, got.bucket) == (date(2025, 3, 10), BY_TIME, OVERDUE)
    # Only 2026-08-01 in the window.
    assert (got.measured, got.start_km, got.period_km) == (False, 30_000, 0)


async def test_a_maintenance_visit_without_odometer_is_planned_by_time(db: Database) -> None:
    client = await add_client(db)
    car = await add_car(
        db,
        client,
        readings=[(date(2026, 1, 5), 20_000), (date(2026, 11, 5), 30_000)],
        services=[(date(2026, 3, 1), None)],
    )
    no_readings = await add_car(db, client, services=[(date(2026, 2, 1), 25_000)])

    got = await run(db)

    one = got[car]
    assert (one.base_date, one.base_km) == (date(2026, 3, 1), None)
    assert one.due_by_km is None
    assert (one.due_by_time, one.planned, one.due_by) == (
        date(2027, 3, 1),
        date(2027, 3, 1),
        BY_TIME,
    )
    # The rate is still measured: 10 000 km over 2026-01-05 -> 2026-11-05 (304 days).
    assert (one.measured, one.km_per_day) == (True, 32.9)
    # 19 days * 10 000 / 304 = 625.0, floored.
    assert one.projected_km == 30_625
    # A maintenance visit alone is a base; without readings nothing is known of the km.
    other = got[no_readings]
    assert (other.base_date, other.base_km) == (date(2026, 2, 1), 25_000)
    assert (other.due_by_km, other.projected_km, other.start_km, other.period_km) == (
        None,
        None,
        None,
        None,
    )
    assert (other.planned, other.due_by) == (date(2027, 2, 1), BY_TIME)


async def test_adding_months_clamps_to_the_month_end(db: Database) -> None:
    client = await add_client(db)
    cases = [  # (maintenance visit, interval months, due by time)
        (date(2026, 1, 31), 1, date(2026, 2, 28)),  # no 31 February: clamped
        (date(2024, 2, 29), 12, date(2025, 2, 28)),  # 2025 is no leap year
        (date(2024, 1, 31), 1, date(2024, 2, 29)),  # 2024 is
        (date(2025, 12, 31), 2, date(2026, 2, 28)),  # across the year end
        (date(2026, 3, 31), 1, date(2026, 4, 30)),
        (date(2025, 1, 31), 13, date(2026, 2, 28)),
        (date(2026, 1, 15), 1, date(2026, 2, 15)),  # nothing to clamp
        (date(2023, 2, 28), 12, date(2024, 2, 28)),  # the 28th stays the 28th
    ]
    cars = {
        await add_car(db, client, interval_months=months, services=[(visited_on, None)]): (
            visited_on,
            months,
            due,
        )
        for visited_on, months, due in cases
    }

    got = await run(db)

    found = {cars[car]: (got[car].due_by_time, got[car].planned) for car in cars}
    assert found == {case: (case[2], case[2]) for case in cases}


# ------------------------------------------------------------------- what is ignored


async def test_readings_and_visits_after_today_are_ignored(db: Database) -> None:
    client = await add_client(db)
    car = await add_car(
        db,
        client,
        readings=[
            (date(2026, 9, 30), 10_000),
            (date(2026, 10, 30), 13_100),
            (date(2026, 11, 25), 20_000),  # tomorrow
        ],
        services=[(date(2026, 12, 1), 21_000)],
    )
    future_only = await add_car(
        db, client, readings=[(date(2026, 11, 30), 5_000)], services=[(date(2026, 12, 1), None)]
    )

    got = await run(db)

    # As the 30-day car of the first test: 103.3 km/day, 116 days after 2026-10-30.
    one = got[car]
    assert (one.last_maintenance, one.base_date, one.base_km) == (None, date(2026, 9, 30), 10_000)
    assert (one.start_km, one.period_km, one.km_per_day) == (10_000, 3_100, 103.3)
    assert (one.due_by_km, one.due_by_time) == (date(2027, 2, 23), date(2027, 9, 30))
    assert one.projected_km == 15_683
    assert future_only not in got
    # A forecast for a past date sees only what was known then: on 2026-10-15 the car had
    # one reading (2026-09-30, 10 000): 375 days at 40 -> 2027-09-30 + 10 = 2027-10-10.
    then = (await run(db, today=date(2026, 10, 15)))[car]
    assert (then.measured, then.start_km, then.period_km) == (False, 10_000, 0)
    assert then.due_by_km == date(2027, 10, 10)
    assert (then.planned, then.due_by, then.days_left) == (date(2027, 9, 30), BY_TIME, 350)
    assert then.projected_km == 10_600  # 15 days * 40


async def test_only_the_clients_cars_with_a_base_are_forecast(db: Database) -> None:
    ivan = await add_client(db)
    anna = await add_client(db, first_name="Анна")
    ivans = await add_car(db, ivan, readings=[(date(2026, 1, 1), 1_000)])
    bare = await add_car(db, ivan)  # no reading, no maintenance
    repaired = await add_car(db, ivan, repairs=[(date(2026, 3, 1), 5_000)])
    annas = await add_car(db, anna, services=[(date(2026, 2, 1), None)])
    ownerless = await add_car(db, None, readings=[(date(2026, 1, 1), 1_000)])

    assert set(await run(db)) == {ivans, annas}
    assert set(await run(db, client_id=ivan)) == {ivans}
    assert set(await run(db, client_id=anna)) == {annas}
    assert set(await run(db, car_ids=[ivans, bare, repaired, ownerless])) == {ivans}
    assert set(await run(db, client_id=anna, car_ids=[ivans])) == set()
    assert set(await run(db, car_ids=[])) == set()
    got = (await run(db, client_id=ivan))[ivans]
    assert (got.client_id, got.make, got.model) == (ivan, None, "Model")


# --------------------------------------------------------------------------- the segment


async def test_the_maintenance_due_segment(db: Database) -> None:
    ivan = await add_client(db, phone="+79030000001")
    anna = await add_client(db, first_name="Анна", phone="+79030000002")
    olga = await add_client(db, first_name="Ольга", phone="+79030000003")
    # Planned by time (no odometer): visit + 12 months.
    ivan_overdue = await add_car(db, ivan, services=[(date(2025, 11, 20), None)])  # -4 days
    ivan_soon = await add_car(db, ivan, services=[(date(2025, 11, 29), None)])  # 5 days
    anna_week = await add_car(db, anna, services=[(date(2025, 12, 1), None)])  # 7 days
    await add_car(db, olga, services=[(date(2025, 12, 2), None)])  # 8 days: out
    await add_car(db, None, readings=[(date(2025, 11, 14), 5_000)])  # no owner: never
    context = SegmentContext(today=DAY, maintenance=POLICY)

    async with db.sessions() as session:
        week = await resolve(session, "maintenance_due", {"within": "7"}, context)
        assert await count(session, week) == 2  # clients, not cars
        rows = await fetch_rows(session, week)
        summary = await fetch_summary(session, week)
        overdue = await resolve(session, "maintenance_due", {"bucket": "overdue"}, context)
        overdue_rows = await fetch_rows(session, overdue)
        overdue_count = await count(session, overdue)
        both = await resolve(
            session, "maintenance_due", {"within": "7", "bucket": "2-7 days"}, context
        )
        both_rows = await fetch_rows(session, both)
        short = await resolve(session, "maintenance_due", {"within": "7", "bucket": "2-7"}, context)
        assert await fetch_rows(session, short) == both_rows  # "2-7" needs no shell quotes
        everyone = await resolve(session, "maintenance_due", {}, context)
        everyone_count = await count(session, everyone)

    assert [(row["client_id"], row["car_id"]) for row in rows] == [
        (ivan, ivan_overdue),
        (ivan, ivan_soon),
        (anna, anna_week),
    ]
    assert [(row["planned"], row["due_by"], row["bucket"]) for row in rows] == [
        (date(2026, 11, 20), BY_TIME, OVERDUE),
        (date(2026, 11, 29), BY_TIME, WEEK),
        (date(2026, 12, 1), BY_TIME, WEEK),
    ]
    assert rows[0]["phone"] == "+79030000001"
    assert rows[0]["last_maintenance"] == date(2025, 11, 20)
    assert (rows[0]["projected_km"], rows[0]["km_per_day"]) == (None, 40.0)
    assert summary == [
        {"bucket": OVERDUE, "cars": 1, "clients": 1},
        {"bucket": WEEK, "cars": 2, "clients": 2},
    ]
    assert [row["car_id"] for row in overdue_rows] == [ivan_overdue]
    assert overdue_count == 1
    assert [row["car_id"] for row in both_rows] == [ivan_soon, anna_week]
    assert everyone_count == 3


async def test_the_maintenance_due_segment_refuses_bad_parameters(db: Database) -> None:
    bad = [{"within": "x"}, {"within": "-1"}, {"bucket": "soon"}, {"days": "7"}]
    async with db.sessions() as session:
        for params in bad:
            with pytest.raises(SegmentError):
                await resolve(session, "maintenance_due", params, SegmentContext(today=DAY))


async def test_within_counts_a_short_interval_due_by_time_at_the_edge(db: Database) -> None:
    # Monthly service, no odometer: due by time only.
    inside, outside = await add_client(db), await add_client(db)
    # 2026-10-31 + 1 month = 2026-11-30 (clamped): 6 days ahead, within 7.
    await add_car(db, inside, interval_months=1, services=[(date(2026, 10, 31), None)])
    # 2026-11-02 + 1 month = 2026-12-02: 8 days ahead, not within 7.
    await add_car(db, outside, interval_months=1, services=[(date(2026, 11, 2), None)])
    context = SegmentContext(today=DAY, maintenance=POLICY)
    async with db.sessions() as session:
        week = await resolve(session, "maintenance_due", {"within": "7"}, context)
        eight = await resolve(session, "maintenance_due", {"within": "8"}, context)
        assert [row["client_id"] for row in await fetch_rows(session, week)] == [inside]
        assert await count(session, week) == 1
        assert await count(session, eight) == 2

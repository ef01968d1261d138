"""The client's garage in the bot: their cars, the odometer they report, the cars they add.

Today is 2026-11-24 in Moscow (the clock's NOW); dates below are worked out from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from crm.clock import Moment
from crm.errors import Conflict, DomainError, NotFound
from crm.garage import (
    SOURCE,
    GarageCar,
    NewCar,
    OdometerRefused,
    add_car,
    client_cars,
    report_odometer,
)
from crm.maintenance import BY_KM, MaintenancePolicy
from crm.visits import MAINTENANCE
from crm.workorders import ODOMETER_MAX
from storage.models import Branch, Car, OdometerReading, Visit
from tests.support.clock import FakeClock
from tests.support.databases import Database
from tests.support.messaging import add_client

MOSCOW = ZoneInfo("Europe/Moscow")
DAY = date(2026, 11, 24)
STAMP = datetime(2026, 1, 1, tzinfo=UTC)
# 24 months, so the planned dates below come from the kilometres.
POLICY = MaintenancePolicy(interval_km=15_000, interval_months=24, daily_km=40.0)
MAX_DAILY_KM = 500


async def own_car(
    db: Database,
    client_id: int,
    *,
    plate: str | None = None,
    readings: Sequence[tuple[date, int]] = (),
    visits: Sequence[tuple[date, int]] = (),
) -> int:
    """A car of the client with readings from the API and maintenance visits with theirs."""
    async with db.sessions() as session, session.begin():
        car = Car(
            client_id=client_id,
            make="Kia",
            model="Rio",
            plate=plate,
            created_at=STAMP,
            updated_at=STAMP,
        )
        session.add(car)
        await session.flush()
        for read_on, km in readings:
            session.add(
                OdometerReading(
                    car_id=car.id, read_on=read_on, km=km, source="api", created_at=STAMP
                )
            )
        branch_id = await session.scalar(select(Branch.id))
        for visited_on, km in visits:
            visit = Visit(
                client_id=client_id,
                car_id=car.id,
                branch_id=branch_id,
                visited_on=visited_on,
                odometer=km,
                amount=Decimal("5000.00"),
                kind=MAINTENANCE,
                created_at=STAMP,
                updated_at=STAMP,
            )
            session.add(visit)
            await session.flush()
            session.add(
                OdometerReading(
                    car_id=car.id,
                    read_on=visited_on,
                    km=km,
                    source="visit",
                    visit_id=visit.id,
                    created_at=STAMP,
                )
            )
        return car.id


async def readings(db: Database, car_id: int) -> list[tuple[date, int, str]]:
    async with db.sessions() as session:
        rows = await session.execute(
            select(OdometerReading.read_on, OdometerReading.km, OdometerReading.source)
            .where(OdometerReading.car_id == car_id)
            .order_by(OdometerReading.id)
        )
        return [(read_on, km, source) for read_on, km, source in rows]


async def report(db: Database, clock: FakeClock, client_id: int, car_id: int, km: int) -> GarageCar:
    async with db.sessions() as session, session.begin():
        return await report_odometer(
            session,
            POLICY,
            client_id,
            car_id,
            km,
            Moment.of(clock, MOSCOW),
            max_daily_km=MAX_DAILY_KM,
        )


async def garage(db: Database, client_id: int) -> list[GarageCar]:
    async with db.sessions() as session:
        return await client_cars(session, POLICY, client_id, DAY)


async def new_car(db: Database, clock: FakeClock, client_id: int, car: NewCar) -> int:
    async with db.sessions() as session, session.begin():
        return await add_car(session, client_id, car, Moment.of(clock, MOSCOW))


# ------------------------------------------------------------------------ the odometer


async def test_a_reported_odometer_moves_the_forecast(db: Database, clock: FakeClock) -> None:
    ivan = await add_client(db)
    car = await own_car(db, ivan, readings=[(DAY - timedelta(days=100), 10_000)])
    [before] = await garage(db, ivan)
    # One reading: the default 40 km/day, 15 000 km in 375 days from the reading.
    assert before.forecast is not None
    assert before.forecast.planned == DAY + timedelta(days=275)

    after = await report(db, clock, ivan, car, 20_000)

    # 10 000 km in 100 days: 100 km/day, the 5 000 km left take 50 days.
    assert after.forecast is not None
    assert (after.forecast.planned, after.forecast.due_by) == (DAY + timedelta(days=50), BY_KM)
    assert (after.last_km, after.last_read_on) == (20_000, DAY)


async def test_a_reading_below_the_last_one_is_refused_naming_it(
    db: Database, clock: FakeClock
) -> None:
    ivan = await add_client(db)
    car = await own_car(db, ivan, visits=[(date(2026, 10, 1), 45_000)])

    with pytest.raises(OdometerRefused) as refused:
        await report(db, clock, ivan, car, 44_999)

    assert refused.value.field == "km"
    assert "45 000 km on 2026-10-01" in str(refused.value)
    assert (refused.value.last_km, refused.value.most_km) == (45_000, None)
    assert await readings(db, car) == [(date(2026, 10, 1), 45_000, "visit")]


async def test_more_than_plausible_since_the_last_reading_is_refused(
    db: Database, clock: FakeClock
) -> None:
    ivan = await add_client(db)
    car = await own_car(db, ivan, readings=[(date(2026, 10, 1), 45_000)])
    most = 45_000 + MAX_DAILY_KM * 54  # 54 days since 2026-10-01

    with pytest.raises(OdometerRefused) as refused:
        await report(db, clock, ivan, car, most + 1)
    assert refused.value.field == "km"
    assert refused.value.most_km == most
    assert "at most 72 000 km" in str(refused.value)

    assert (await report(db, clock, ivan, car, most)).last_km == most


@pytest.mark.parametrize("km", [-1, ODOMETER_MAX + 1])
async def test_without_a_reading_only_the_odometer_range_limits_the_report(
    db: Database, clock: FakeClock, km: int
) -> None:
    ivan = await add_client(db)
    car = await own_car(db, ivan)

    with pytest.raises(DomainError) as refused:
        await report(db, clock, ivan, car, km)
    assert refused.value.field == "km"

    assert (await report(db, clock, ivan, car, ODOMETER_MAX)).last_km == ODOMETER_MAX


async def test_a_second_report_the_same_day_replaces_the_first(
    db: Database, clock: FakeClock
) -> None:
    ivan = await add_client(db)
    car = await own_car(db, ivan, readings=[(date(2026, 11, 1), 45_000)])
    await report(db, clock, ivan, car, 46_000)

    fixed = await report(db, clock, ivan, car, 45_600)  # a typo fix may go lower than the typo

    assert fixed.last_km == 45_600
    assert await readings(db, car) == [
        (date(2026, 11, 1), 45_000, "api"),
        (DAY, 45_600, SOURCE),
    ]


async def test_a_car_that_stood_still_reports_the_last_km_again(
    db: Database, clock: FakeClock
) -> None:
    ivan = await add_client(db)
    car = await own_car(db, ivan, readings=[(date(2026, 10, 1), 45_000)])

    await report(db, clock, ivan, car, 45_000)

    assert await readings(db, car) == [(date(2026, 10, 1), 45_000, "api"), (DAY, 45_000, SOURCE)]


async def test_the_same_km_twice_a_day_is_noted_once(db: Database, clock: FakeClock) -> None:
    ivan = await add_client(db)
    car = await own_car(db, ivan)
    await report(db, clock, ivan, car, 45_000)
    clock.advance(minutes=5)
    await report(db, clock, ivan, car, 45_000)

    async with db.sessions() as session:
        noted = list(await session.scalars(select(OdometerReading.created_at)))
    assert await readings(db, car) == [(DAY, 45_000, SOURCE)]
    assert noted == [clock() - timedelta(minutes=5)]  # untouched by the second report


async def test_the_km_a_visit_read_today_is_not_noted_again(db: Database, clock: FakeClock) -> None:
    ivan = await add_client(db)
    car = await own_car(db, ivan, visits=[(DAY, 45_000)])

    await report(db, clock, ivan, car, 45_000)

    assert await readings(db, car) == [(DAY, 45_000, "visit")]


async def test_a_visits_reading_that_day_is_never_replaced(db: Database, clock: FakeClock) -> None:
    ivan = await add_client(db)
    car = await own_car(db, ivan, visits=[(DAY, 45_000)])
    await report(db, clock, ivan, car, 45_100)
    await report(db, clock, ivan, car, 45_050)

    with pytest.raises(OdometerRefused):
        await report(db, clock, ivan, car, 44_900)
    assert await readings(db, car) == [(DAY, 45_000, "visit"), (DAY, 45_050, SOURCE)]


async def test_someone_elses_car_is_not_found_as_a_missing_one(
    db: Database, clock: FakeClock
) -> None:
    ivan = await add_client(db)
    anna = await add_client(db, first_name="Анна")
    annas = await own_car(db, anna)

    with pytest.raises(NotFound) as theirs:
        await report(db, clock, ivan, annas, 45_000)
    with pytest.raises(NotFound) as missing:
        await report(db, clock, ivan, annas + 1_000, 45_000)

    assert (theirs.value.field, str(theirs.value)) == (missing.value.field, str(missing.value))
    assert theirs.value.field == "car"
    assert await readings(db, annas) == []


# ------------------------------------------------------------------------ the garage


async def test_the_latest_reading_is_by_date_then_by_id(db: Database) -> None:
    ivan = await add_client(db)
    late_entry = [(date(2026, 11, 2), 46_000), (date(2026, 11, 3), 46_500)]
    await own_car(db, ivan, readings=[(date(2026, 11, 3), 46_400), *late_entry])
    await own_car(db, ivan, readings=[(date(2026, 11, 5), 47_000), (date(2026, 11, 1), 45_000)])

    first, second = await garage(db, ivan)

    assert (first.last_km, first.last_read_on) == (46_500, date(2026, 11, 3))
    assert (second.last_km, second.last_read_on) == (47_000, date(2026, 11, 5))


async def test_a_car_without_reading_or_maintenance_is_listed_without_forecast(
    db: Database,
) -> None:
    ivan = await add_client(db)
    bare = await own_car(db, ivan)
    read = await own_car(db, ivan, readings=[(date(2026, 11, 1), 45_000)])

    cars = await garage(db, ivan)

    assert [car.car_id for car in cars] == [bare, read]
    assert (cars[0].last_km, cars[0].forecast) == (None, None)
    assert cars[1].forecast is not None
    assert cars[1].forecast.car_id == read


async def test_a_client_with_no_car_adds_one_and_sees_it_with_its_odometer(
    db: Database, clock: FakeClock
) -> None:
    ivan = await add_client(db)
    assert await garage(db, ivan) == []

    car_id = await new_car(db, clock, ivan, NewCar(" Lada ", "Vesta", 2020, "a123bc 77", 12_000))

    [car] = await garage(db, ivan)
    assert (car.car_id, car.make, car.model, car.year) == (car_id, "Lada", "Vesta", 2020)
    assert car.plate == "А123ВС77"  # stored in Cyrillic, as the state writes it
    assert (car.last_km, car.last_read_on) == (12_000, DAY)
    assert car.forecast is not None  # its first reading is the base
    assert await readings(db, car_id) == [(DAY, 12_000, SOURCE)]


async def test_a_plate_on_another_clients_car_is_a_conflict(db: Database, clock: FakeClock) -> None:
    ivan = await add_client(db)
    anna = await add_client(db, first_name="Анна")
    await own_car(db, anna, plate="А123ВС77")

    with pytest.raises(Conflict) as taken:
        await new_car(db, clock, ivan, NewCar("Kia", "Rio", plate="a123bc77"))

    assert taken.value.field == "plate"
    assert "contact the service centre" in str(taken.value)
    assert await garage(db, ivan) == []


async def test_a_plate_on_the_clients_own_car_is_a_conflict(db: Database, clock: FakeClock) -> None:
    ivan = await add_client(db)
    await own_car(db, ivan, plate="А123ВС77")

    with pytest.raises(Conflict) as again:
        await new_car(db, clock, ivan, NewCar("Kia", "Rio", plate="А123ВС 77"))

    assert again.value.field == "plate"
    assert str(again.value) == "you have this car already (А123ВС77)"
    assert len(await garage(db, ivan)) == 1


@pytest.mark.parametrize(
    ("car", "field"),
    [
        (NewCar("Kia", "Rio", year=1949), "year"),
        (NewCar("Kia", "Rio", year=2028), "year"),  # today's year + 2
        (NewCar("  ", "Rio"), "make"),
        (NewCar("K" * 65, "Rio"), "make"),
        (NewCar("Kia", ""), "model"),
        (NewCar("Kia", "Rio", plate="А123ВС77" * 3), "plate"),
        (NewCar("Kia", "Rio", odometer=-1), "km"),
    ],
)
async def test_add_car_refuses_what_cannot_be_a_car(
    db: Database, clock: FakeClock, car: NewCar, field: str
) -> None:
    ivan = await add_client(db)

    with pytest.raises(DomainError) as refused:
        await new_car(db, clock, ivan, car)

    assert refused.value.field == field
    assert await garage(db, ivan) == []


async def test_add_car_accepts_the_edge_years_and_names(db: Database, clock: FakeClock) -> None:
    ivan = await add_client(db)

    await new_car(db, clock, ivan, NewCar("K" * 64, "R", year=1950))
    await new_car(db, clock, ivan, NewCar("Kia", "Rio", year=2027))

    assert [car.year for car in await garage(db, ivan)] == [1950, 2027]

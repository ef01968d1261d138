"""A client's own cars, as the client bot shows and edits them: the odometer and new cars.

The client is the one who knows the odometer between visits; what they report is kept as
readings with source "client", one per car and day, and feeds the maintenance forecast
like any other reading. A car is only ever found through its owner: another client's car
answers exactly as a car that does not exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from crm.cars import CarError, normalize_plate
from crm.clock import Moment
from crm.errors import Conflict, DomainError, NotFound
from crm.maintenance import CarForecast, MaintenancePolicy, forecast
from crm.workorders import ODOMETER_MAX
from storage.models import Car, OdometerReading

SOURCE = "client"  # odometer_reading.source of what the client reported
NAME_MAX = 64  # car.make and car.model
YEAR_MIN = 1950


@dataclass(frozen=True, slots=True)
class GarageCar:
    """One of the client's cars with its latest odometer reading and its forecast."""

    car_id: int
    make: str | None
    model: str | None
    year: int | None
    plate: str | None
    last_km: int | None
    last_read_on: date | None
    forecast: CarForecast | None  # None: no reading and no maintenance visit to start from


@dataclass(frozen=True, slots=True)
class NewCar:
    """A car as the client describes it in the bot."""

    make: str
    model: str
    year: int | None = None
    plate: str | None = None
    odometer: int | None = None


class OdometerRefused(DomainError):
    """A reported km that the car's last reading rules out (field "km"). `most_km` is the
    most that is plausible today, None when the km went back; the bot words it from these."""

    def __init__(self, message: str, *, last_km: int, last_read_on: date, most_km: int | None):
        code = "odometer_back" if most_km is None else "odometer_implausible"
        super().__init__(message, field="km", code=code)
        self.last_km, self.last_read_on, self.most_km = last_km, last_read_on, most_km


async def client_cars(
    session: AsyncSession, policy: MaintenancePolicy, client_id: int, today: date
) -> list[GarageCar]:
    """Every car of the client, by car id, with its latest reading and forecast as of `today`.

    Readings dated after `today` are ignored, as the forecast ignores them.
    """
    return await _garage(session, policy, client_id, today)


async def report_odometer(
    session: AsyncSession,
    policy: MaintenancePolicy,
    client_id: int,
    car_id: int,
    km: int,
    moment: Moment,
    *,
    max_daily_km: int,
) -> GarageCar:
    """Note that the client's car shows `km` today; return the car with its new forecast.

    The km is checked against the last reading other than the client's own report of today:
    a second report the same day replaces the first (a typo fix may go lower than the typo),
    but never below, or beyond the plausible mileage after, a reading from a visit or the
    API. The same km twice a day is noted once.
    """
    if not 0 <= km <= ODOMETER_MAX:
        raise DomainError(f"{km} km is not an odometer reading", field="km")
    await _own_car(session, client_id, car_id)
    today = moment.today
    reading = aliased(OdometerReading)
    reported_today = (reading.read_on == today) & (reading.source == SOURCE)
    last = await session.scalar(
        select(reading)
        .where(reading.car_id == car_id, reading.read_on <= today, ~reported_today)
        .order_by(reading.read_on.desc(), reading.id.desc())
        .limit(1)
    )
    if last is not None:
        _check_against(last, km, today, max_daily_km)
    mine = await session.scalar(
        select(reading).where(reading.car_id == car_id, reported_today).order_by(reading.id)
    )
    if mine is not None:
        if mine.km != km:
            mine.km, mine.created_at = km, moment.now
    elif last is None or (last.read_on, last.km) != (today, km):
        session.add(
            OdometerReading(
                car_id=car_id, read_on=today, km=km, source=SOURCE, created_at=moment.now
            )
        )
    await session.flush()
    return (await _garage(session, policy, client_id, today, car_id=car_id))[0]


async def add_car(session: AsyncSession, client_id: int, car: NewCar, moment: Moment) -> int:
    """Add a car the client owns; return its id.

    A plate already on a car the dealer knows is a Conflict, whoever owns it (or nobody):
    staff decide whether it is the same car, so its service history is not split in two.
    """
    make, model = _name(car.make, "make"), _name(car.model, "model")
    if car.year is not None and not YEAR_MIN <= car.year <= moment.today.year + 1:
        raise DomainError(f"{car.year} is not a model year", field="year")
    plate = _plate(car.plate)
    if car.odometer is not None and not 0 <= car.odometer <= ODOMETER_MAX:
        raise DomainError(f"{car.odometer} km is not an odometer reading", field="km")
    if plate is not None:
        owners = set(await session.scalars(select(Car.client_id).where(Car.plate == plate)))
        if client_id in owners:
            raise Conflict(f"you have this car already ({plate})", field="plate")
        if owners:
            raise Conflict(
                f"a car with plate {plate} is already registered: please contact the service"
                " centre to have it added to your account",
                field="plate",
                code="plate_taken",
            )
    row = Car(
        client_id=client_id,
        make=make,
        model=model,
        year=car.year,
        plate=plate,
        created_at=moment.now,
        updated_at=moment.now,
    )
    session.add(row)
    await session.flush()
    if car.odometer is not None:
        session.add(
            OdometerReading(
                car_id=row.id,
                read_on=moment.today,
                km=car.odometer,
                source=SOURCE,
                created_at=moment.now,
            )
        )
        await session.flush()
    return row.id


async def _garage(
    session: AsyncSession,
    policy: MaintenancePolicy,
    client_id: int,
    today: date,
    *,
    car_id: int | None = None,
) -> list[GarageCar]:
    reading, latest = aliased(OdometerReading), aliased(OdometerReading)
    latest_id = (
        select(latest.id)
        .where(latest.car_id == Car.id, latest.read_on <= today)
        .order_by(latest.read_on.desc(), latest.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    query = (
        select(Car.id, Car.make, Car.model, Car.year, Car.plate, reading.km, reading.read_on)
        .outerjoin(reading, reading.id == latest_id)
        .where(Car.client_id == client_id)
        .order_by(Car.id)
    )
    if car_id is not None:
        query = query.where(Car.id == car_id)
    rows = (await session.execute(query)).all()
    car_ids = [row[0] for row in rows]
    found = await forecast(session, policy, today, client_id=client_id, car_ids=car_ids)
    by_car = {car.car_id: car for car in found}
    return [GarageCar(*row, forecast=by_car.get(row[0])) for row in rows]


async def _own_car(session: AsyncSession, client_id: int, car_id: int) -> None:
    """NotFound unless the car is the client's. On PostgreSQL the car row is held until
    commit, so two reports for one car run one after the other (NO KEY UPDATE: inserting a
    reading or a visit of the car takes KEY SHARE on it, which FOR UPDATE would wait for)."""
    query = select(Car.id).where(Car.id == car_id, Car.client_id == client_id)
    if session.get_bind().dialect.name != "sqlite":
        query = query.with_for_update(key_share=True)
    if await session.scalar(query) is None:
        raise NotFound("you have no such car", field="car")


def _check_against(last: OdometerReading, km: int, today: date, max_daily_km: int) -> None:
    """Refuse `km` below the last reading, or beyond `max_daily_km` a day since it (a
    reading taken today still allows one day's mileage)."""
    said = f"the last reading was {_km(last.km)} km on {last.read_on.isoformat()}"
    if km < last.km:
        raise OdometerRefused(
            f"{said}: the odometer cannot go back",
            last_km=last.km,
            last_read_on=last.read_on,
            most_km=None,
        )
    most = last.km + max_daily_km * max(1, (today - last.read_on).days)
    if km > most:
        raise OdometerRefused(
            f"{said}: at most {_km(most)} km is plausible today",
            last_km=last.km,
            last_read_on=last.read_on,
            most_km=most,
        )


def _name(raw: str, field: str) -> str:
    name = raw.strip()
    if not name:
        raise DomainError(f"the {field} is required", field=field)
    if len(name) > NAME_MAX:
        raise DomainError(f"the {field} is longer than {NAME_MAX} characters", field=field)
    return name


def _plate(raw: str | None) -> str | None:
    """The plate as stored (see `normalize_plate`); a blank one is no plate."""
    if raw is None:
        return None
    try:
        return normalize_plate(raw)
    except CarError as exc:
        raise DomainError(str(exc), field="plate") from None


def _km(km: int) -> str:
    return f"{km:,}".replace(",", " ")

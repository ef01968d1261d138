"""When each car is due for maintenance: by kilometres at its own pace, or by time.

The seed's mileage analysis, computed in the database for every car at once:
- km/day from the car's odometer readings over the last 365 days, when the first and last
  of them are at least 30 days apart; otherwise the company's assumed daily mileage;
- the base: the last maintenance visit (its date and odometer); without one, the car's first
  reading;
- due by km: the day the projected odometer reaches base km + the service interval (the
  car's own, else its make's from config, else the default);
- due by time: base date + the interval in months;
- planned: the earlier of the two.

Dates are compared as of `today` (readings and visits after it are ignored), so a forecast
for a past date is what it would have said then. Cars without a reading or a maintenance
visit have no base and are not forecast; cars without an owner are left out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from fractions import Fraction
from typing import Any

from sqlalchemy import ColumnElement, Float, Select, bindparam, case, cast, func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from crm.cars import same_name
from crm.visits import MAINTENANCE
from storage.models import Car, OdometerReading, Visit
from storage.sqlfunc import add_months, ceil_div, day_number, from_day_number

# Buckets of the planned date relative to today, in the order staff read them.
OVERDUE, TODAY, TOMORROW, WEEK, MONTH, LATER = (
    "overdue", "today", "tomorrow", "2-7 days", "8-31 days", "32+ days",
)  # fmt: skip
BUCKETS = (OVERDUE, TODAY, TOMORROW, WEEK, MONTH, LATER)
BY_KM, BY_TIME = "km", "time"


@dataclass(frozen=True, slots=True)
class MaintenancePolicy:
    """The company's maintenance rules (config `[maintenance]`)."""

    interval_km: int = 15_000
    interval_months: int = 12
    daily_km: float = 40.0
    makes: Mapping[str, tuple[int | None, int | None]] = field(default_factory=dict)
    window_days: int = 365
    min_span_days: int = 30

    def daily_rate(self) -> tuple[int, int]:
        """The assumed km/day as a fraction (km, days), so dates come out exact."""
        rate = Fraction(self.daily_km).limit_denominator(1000)
        return rate.numerator, rate.denominator


@dataclass(frozen=True, slots=True)
class CarForecast:
    """One car's maintenance forecast, as of `today` of the query that made it."""

    car_id: int
    client_id: int
    make: str | None
    model: str | None
    plate: str | None
    start_km: int | None  # first reading of the last 365 days
    period_km: int | None  # km driven between the first and last readings of that period
    km_per_day: float
    measured: bool  # km/day from the car's own readings, not the company default
    projected_km: int | None  # the odometer today, projected from the last reading
    last_maintenance: date | None
    base_date: date
    base_km: int | None
    interval_km: int
    interval_months: int
    due_by_km: date | None
    due_by_time: date
    planned: date
    due_by: str  # "km" or "time": which rule gave the planned date
    days_left: int
    bucket: str


def _make_interval(policy: MaintenancePolicy, which: int) -> ColumnElement[Any] | None:
    """The make's interval from config, the make matched ignoring case (see `same_name`)."""
    whens = []
    for make, intervals in policy.makes.items():
        value = intervals[which]
        if value is not None:
            whens.append((same_name(Car.make, [make]), value))
    return case(*whens) if whens else None


def forecast_query(
    policy: MaintenancePolicy,
    today: date,
    cars: ColumnElement[bool] | None = None,
    *,
    for_rows: bool = True,
) -> Select[Any]:
    """Every owned car with a base (or those matching `cars`, a condition on `Car`), one row
    each, labelled as `CarForecast`'s fields.

    `for_rows=False` is for counting and filtering: the due dates are then computed where
    they are used instead of stored in a temporary table first, which is twice as fast on
    SQLite when only a count comes out, and three times slower when every column is read.
    """
    reading = aliased(OdometerReading)
    visit = aliased(Visit)
    cutoff = today - timedelta(days=policy.window_days)

    def reading_id(*where: Any, last: bool) -> Any:
        """The id of the car's last (or first) reading up to today: one index seek per car;
        the reading's date and km are then read by primary key."""
        order: tuple[Any, ...] = (reading.read_on, reading.id)
        if last:
            order = (reading.read_on.desc(), reading.id.desc())
        return (
            select(reading.id)
            .where(reading.car_id == Car.id, reading.read_on <= today, *where)
            .order_by(*order)
            .limit(1)
            .scalar_subquery()
        )

    serviced_id = (
        select(visit.id)
        .where(visit.car_id == Car.id, visit.kind == MAINTENANCE, visit.visited_on <= today)
        .order_by(visit.visited_on.desc(), visit.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    make_km = _make_interval(policy, 0)
    make_months = _make_interval(policy, 1)
    km_default: list[Any] = [make_km] if make_km is not None else []
    months_default: list[Any] = [make_months] if make_months is not None else []
    ids_query = select(
        Car.id.label("car_id"),
        Car.client_id.label("client_id"),
        Car.make.label("make"),
        Car.model.label("model"),
        Car.plate.label("plate"),
        func.coalesce(Car.service_interval_km, *km_default, policy.interval_km).label(
            "interval_km"
        ),
        func.coalesce(Car.service_interval_months, *months_default, policy.interval_months).label(
            "interval_months"
        ),
        reading_id(last=True).label("last_id"),
        reading_id(last=False).label("first_id"),
        reading_id(reading.read_on >= cutoff, last=False).label("window_id"),
        serviced_id.label("serviced_id"),
    ).where(Car.client_id.is_not(None))
    if cars is not None:
        ids_query = ids_query.where(cars)
    # PostgreSQL would run each subquery twice (once per join) unless materialized; SQLite
    # flattens it into one pass, which is faster there.
    ids = ids_query.cte("car_ids").prefix_with("MATERIALIZED", dialect="postgresql")
    last, first, window = (aliased(OdometerReading) for _ in range(3))
    serviced = aliased(Visit)
    facts_query = (
        select(
            *(ids.c[name] for name in ("car_id", "client_id", "make", "model", "plate",
                                       "interval_km", "interval_months")),
            last.read_on.label("last_on"),
            last.km.label("last_km"),
            first.read_on.label("first_on"),
            first.km.label("first_km"),
            window.read_on.label("window_on"),
            window.km.label("window_km"),
            serviced.visited_on.label("serviced_on"),
            serviced.odometer.label("serviced_km"),
        )
        .select_from(ids)
        .outerjoin(last, last.id == ids.c.last_id)
        .outerjoin(first, first.id == ids.c.first_id)
        .outerjoin(window, window.id == ids.c.window_id)
        .outerjoin(serviced, serviced.id == ids.c.serviced_id)
    )  # fmt: skip
    facts = facts_query.cte("car_facts")

    # Dates become day numbers: integer arithmetic instead of date parsing per expression.
    f = facts.c
    last_day, window_day = day_number(f.last_on), day_number(f.window_on)
    span_days = last_day - window_day
    measured = (
        f.window_on.is_not(None) & (span_days >= policy.min_span_days) & (f.last_km >= f.window_km)
    )
    default_km, default_days = policy.daily_rate()
    rate_km = case((measured, f.last_km - f.window_km), else_=default_km)
    rate_days = case((measured, span_days), else_=default_days)
    base_date = func.coalesce(f.serviced_on, f.first_on)
    base_km = case((f.serviced_on.is_not(None), f.serviced_km), else_=f.first_km)
    km_known = (rate_km > 0) & base_km.is_not(None) & f.last_km.is_not(None)
    ahead = ceil_div((base_km + f.interval_km - f.last_km) * rate_days, rate_km)
    dues_query = select(
        *f,
        measured.label("measured"),
        rate_km.label("rate_km"),
        rate_days.label("rate_days"),
        base_date.label("base_date"),
        day_number(base_date).label("base_day"),
        base_km.label("base_km"),
        last_day.label("last_day"),
        case((km_known, last_day + ahead)).label("km_day"),
        day_number(add_months(base_date, f.interval_months)).label("time_day"),
    ).where(base_date.is_not(None))
    dues = dues_query.cte("car_dues")
    if for_rows:
        dues = dues.prefix_with("MATERIALIZED")

    d = dues.c
    today_day = day_number(literal(today))
    by_time = d.km_day.is_(None) | (d.time_day <= d.km_day)
    planned_day = case((by_time, d.time_day), else_=d.km_day)
    days_left = planned_day - today_day
    driven = (today_day - d.last_day) * d.rate_km // d.rate_days
    in_period = d.window_on.is_not(None)  # then the last reading is in the period too
    return select(
        d.car_id,
        d.client_id,
        d.make,
        d.model,
        d.plate,
        case((in_period, d.window_km)).label("start_km"),
        case((in_period, d.last_km - d.window_km)).label("period_km"),
        (cast(d.rate_km, Float) / d.rate_days).label("km_per_day"),
        d.measured,
        case((d.last_km.is_not(None), d.last_km + driven)).label("projected_km"),
        d.serviced_on.label("last_maintenance"),
        d.base_date,
        d.base_km,
        d.interval_km,
        d.interval_months,
        from_day_number(d.km_day).label("due_by_km"),
        from_day_number(d.time_day).label("due_by_time"),
        from_day_number(planned_day).label("planned"),
        case((by_time, BY_TIME), else_=BY_KM).label("due_by"),
        days_left.label("days_left"),
        bucket_of(days_left).label("bucket"),
        # For filters: "planned by day N" is "due by time or by km by day N", which reads
        # each due date once (planned_day repeats them).
        d.km_day,
        d.time_day,
        d.base_day,
        today_day.label("today_day"),
    )


def bucket_of(days_left: ColumnElement[int]) -> ColumnElement[str]:
    return case(
        (days_left < 0, OVERDUE),
        (days_left == 0, TODAY),
        (days_left == 1, TOMORROW),
        (days_left <= 7, WEEK),
        (days_left <= 31, MONTH),
        else_=LATER,
    )


async def forecast(
    session: AsyncSession,
    policy: MaintenancePolicy,
    today: date,
    *,
    client_id: int | None = None,
    car_ids: Sequence[int] | None = None,
) -> list[CarForecast]:
    """The forecast for one client's cars, or for the given cars (the bot, the scheduler)."""
    query = _forecast_statement(policy, today, client_id is not None, car_ids is not None)
    params: dict[str, Any] = {}
    if client_id is not None:
        params["forecast_client"] = client_id
    if car_ids is not None:
        params["forecast_cars"] = list(car_ids)
    result = await session.execute(query, params)
    return [_forecast(dict(row._mapping)) for row in result]


_STATEMENTS: dict[tuple[Any, ...], Select[Any]] = {}
_STATEMENTS_KEPT = 16


def _forecast_statement(
    policy: MaintenancePolicy, today: date, by_client: bool, by_cars: bool
) -> Select[Any]:
    """The forecast query with the client and the cars as bound parameters, built once per
    policy and day: building it costs more than running it for one client's cars, and the
    bot asks for it on every /cars."""
    key = (_policy_key(policy), today, by_client, by_cars)
    found = _STATEMENTS.get(key)
    if found is not None:
        return found
    cars: ColumnElement[bool] | None = None
    if by_client:
        cars = Car.client_id == bindparam("forecast_client")
    if by_cars:
        chosen = Car.id.in_(bindparam("forecast_cars", expanding=True))
        cars = chosen if cars is None else cars & chosen
    rows = forecast_query(policy, today, cars).subquery()
    statement = select(rows).order_by(rows.c.planned, rows.c.car_id)
    if len(_STATEMENTS) >= _STATEMENTS_KEPT:  # yesterday's are no longer asked for
        _STATEMENTS.clear()
    _STATEMENTS[key] = statement
    return statement


def _policy_key(policy: MaintenancePolicy) -> tuple[Any, ...]:
    return (
        policy.interval_km,
        policy.interval_months,
        policy.daily_km,
        tuple(sorted(policy.makes.items())),
        policy.window_days,
        policy.min_span_days,
    )


_FILTER_COLUMNS = {"km_day", "time_day", "base_day", "today_day"}


def _forecast(row: Mapping[str, Any]) -> CarForecast:
    values = {key: value for key, value in row.items() if key not in _FILTER_COLUMNS}
    values["measured"] = bool(values["measured"])
    values["km_per_day"] = round(float(values["km_per_day"]), 1)
    return CarForecast(**values)

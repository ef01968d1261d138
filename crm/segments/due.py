"""`maintenance_due`: the maintenance forecast as a segment, a row per car."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from crm.maintenance import BUCKETS, forecast_query
from crm.segments.base import (
    Column,
    Param,
    SegmentContext,
    SegmentSpec,
    SegmentSQL,
    choice,
    client_columns,
    whole,
    words,
)
from storage.models import Client

_SHORT = {bucket.removesuffix(" days"): bucket for bucket in BUCKETS}


def _buckets(value: str) -> tuple[str, ...]:
    """Bucket names, with "2-7" for "2-7 days" so that no quoting is needed in a shell."""
    names = [
        _SHORT.get(" ".join(item.split()).removesuffix(" days"), item) for item in words(value)
    ]
    return tuple(choice(*BUCKETS, many=True)(",".join(names)))


def build_maintenance_due(values: dict[str, Any], context: SegmentContext) -> SegmentSQL:
    cars = forecast_query(context.maintenance, context.today).subquery("forecast")
    counted = forecast_query(context.maintenance, context.today, for_rows=False).subquery()

    def chosen(forecast: Any) -> list[Any]:
        where = []
        if values["within"] is not None:  # overdue cars are due within any number of days
            last_day = forecast.c.today_day + values["within"]
            # A month has at least 28 days: a base later than that bound cannot be due by
            # time, so the calendar arithmetic runs only for the cars that may be.
            may_be_due = forecast.c.base_day <= last_day - 28 * forecast.c.interval_months
            by_time = may_be_due & (forecast.c.time_day <= last_day)
            where.append((forecast.c.km_day <= last_day) | by_time)
        if values["bucket"]:
            where.append(forecast.c.bucket.in_(values["bucket"]))
        return where

    where = chosen(cars)
    rows = (
        select(
            *client_columns(),
            cars.c.car_id,
            cars.c.make,
            cars.c.model,
            cars.c.plate,
            cars.c.start_km,
            cars.c.period_km,
            cars.c.km_per_day,
            cars.c.projected_km,
            cars.c.last_maintenance,
            cars.c.due_by,
            cars.c.planned,
            cars.c.bucket,
        )
        .join(Client, Client.id == cars.c.client_id)
        .where(*where)
        .order_by(cars.c.days_left, cars.c.car_id)  # = by planned date; an integer sorts faster
    )
    order = func.min(cars.c.days_left)
    summary = (
        select(
            cars.c.bucket,
            func.count().label("cars"),
            func.count(func.distinct(cars.c.client_id)).label("clients"),
        )
        .where(*where)
        .group_by(cars.c.bucket)
        .order_by(order)
    )
    return SegmentSQL(
        members=select(counted.c.client_id).where(*chosen(counted)).distinct(),
        rows=rows,
        columns=(
            Column("car_id", "Car", "int"),
            Column("make", "Make"),
            Column("model", "Model"),
            Column("plate", "Plate"),
            Column("start_km", "Start km", "int"),
            Column("period_km", "Km in period", "int"),
            Column("km_per_day", "Km/day", "float"),
            Column("projected_km", "Projected km", "int"),
            Column("last_maintenance", "Last maintenance", "date"),
            Column("due_by", "By"),
            Column("planned", "Planned", "date"),
            Column("bucket", "When"),
        ),
        summary=summary,
        summary_columns=(
            Column("bucket", "When"),
            Column("cars", "Cars", "int"),
            Column("clients", "Clients", "int"),
        ),
    )


MAINTENANCE_DUE = SegmentSpec(
    "maintenance_due",
    "cars by planned maintenance date (by km at their own pace, or by time), a row per car",
    (
        Param("within", "planned within this many days from today (overdue included)",
              whole(0, 3650), None, "7"),
        Param("bucket", "keep these: " + ", ".join(BUCKETS) + " (or 2-7, 8-31, 32+)",
              _buckets, (), "overdue,today"),
    ),
    build_maintenance_due,
)  # fmt: skip

"""Import cars: upsert by external_id (or by VIN when a row has none); the owner must exist."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from crm.cars import normalize_plate, normalize_vin
from crm.importing.base import ImportContext, Rejects, read
from crm.importing.reader import Columns, Row
from crm.importing.references import ClientRefs
from crm.importing.report import ImportReport, RowError
from crm.importing.values import parse_bool, parse_int, parse_text
from storage.bulk import insert_rows
from storage.models import Car

COLUMNS = Columns(
    aliases={
        "external_id": ("код", "код автомобиля", "id"),
        "client_id": ("код клиента", "владелец", "client", "owner_id"),
        "vin": ("вин", "vin-код", "vin код"),
        "plate": ("госномер", "гос. номер", "гос номер", "рег. номер"),
        "make": ("марка",),
        "model": ("модель",),
        "year": ("год", "год выпуска"),
        "service_interval_km": ("межсервисный интервал, км", "интервал то, км", "интервал км"),
        "service_interval_months": ("интервал то, мес", "интервал мес"),
        "sold_here": ("продан нами", "куплен у нас", "наша продажа", "sold here"),
    },
    required=(("client_id",), ("external_id", "vin")),
)

FIELDS = (
    "external_id", "client_id", "vin", "plate", "make", "model", "year",
    "service_interval_km", "service_interval_months", "sold_here",
)  # fmt: skip


@dataclass(frozen=True)
class CarRow:
    owner: str  # the owner's external id, resolved in apply
    values: dict[str, Any]  # non-empty cells only


class CarImporter:
    kind = "cars"
    columns = COLUMNS

    def parse(self, row: Row, ctx: ImportContext) -> CarRow:
        owner = read(row, "client_id", parse_text, max_length=64)
        if owner is None:
            raise RowError("client_id", "empty: every car needs its owner")
        values = {
            "external_id": read(row, "external_id", parse_text, max_length=64),
            "vin": read(row, "vin", normalize_vin),
            "plate": read(row, "plate", normalize_plate),
            "make": read(row, "make", parse_text, max_length=64),
            "model": read(row, "model", parse_text, max_length=64),
            "year": read(row, "year", parse_int, low=1900, high=ctx.today.year + 1),
            "service_interval_km": read(
                row, "service_interval_km", parse_int, low=500, high=100_000
            ),
            "service_interval_months": read(
                row, "service_interval_months", parse_int, low=1, high=60
            ),
            "sold_here": read(row, "sold_here", parse_bool),
        }
        if values["external_id"] is None and values["vin"] is None:
            raise RowError(None, "no external_id or vin to recognise the car by")
        return CarRow(owner, {k: v for k, v in values.items() if v is not None})

    async def apply(
        self,
        session: AsyncSession,
        batch: list[tuple[Row, CarRow]],
        report: ImportReport,
        ctx: ImportContext,
    ) -> Rejects:
        owners = await ClientRefs.load(session, {parsed.owner for _, parsed in batch})
        cars = await _load_cars(session, [parsed for _, parsed in batch])
        new: list[dict[str, Any]] = []
        changed: dict[int, dict[str, Any]] = {}
        rejects: Rejects = []
        for row, parsed in batch:
            client_id = owners.get(parsed.owner)
            if client_id is None:
                rejects.append((row, RowError("client_id", f"no client {parsed.owner!r}")))
                continue
            values = {**parsed.values, "client_id": client_id}
            car = cars.find(values)
            if car is None:
                car = {name: values.get(name) for name in FIELDS}
                new.append(car)
                cars.add(car)
                report.imported += 1
                continue
            changes = {k: v for k, v in values.items() if car.get(k) != v}
            if not changes:
                report.unchanged += 1
                continue
            car.update(changes)
            cars.add(car)
            if "id" in car:
                changed[car["id"]] = car
            report.updated += 1
        now = ctx.clock()
        await insert_rows(
            session, Car, [{**car, "created_at": now, "updated_at": now} for car in new]
        )
        if changed:
            await session.execute(
                update(Car), [{**car, "updated_at": now} for car in changed.values()]
            )
        return rejects


class _Cars:
    """Cars of a batch by external id and by VIN; dicts of column values, `id` when stored."""

    def __init__(self) -> None:
        self.by_external: dict[str, dict[str, Any]] = {}
        self.by_vin: dict[str, dict[str, Any]] = {}

    def add(self, car: dict[str, Any]) -> None:
        if car.get("external_id"):
            self.by_external[car["external_id"]] = car
        if car.get("vin"):
            self.by_vin.setdefault(car["vin"], car)

    def find(self, values: dict[str, Any]) -> dict[str, Any] | None:
        if values.get("external_id"):
            return self.by_external.get(values["external_id"])
        return self.by_vin.get(values.get("vin", ""))


async def _load_cars(session: AsyncSession, rows: list[CarRow]) -> _Cars:
    external_ids = {r.values["external_id"] for r in rows if "external_id" in r.values}
    vins = {r.values["vin"] for r in rows if "vin" in r.values and "external_id" not in r.values}
    cars = _Cars()
    found = await session.execute(
        select(Car.id, *(getattr(Car, name) for name in FIELDS))
        .where(or_(Car.external_id.in_(external_ids), Car.vin.in_(vins)))
        .order_by(Car.id)
    )
    for car_id, *values in found:
        cars.add({"id": car_id, **dict(zip(FIELDS, values, strict=True))})
    return cars

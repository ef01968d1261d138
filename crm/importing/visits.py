"""Import visits (work orders): upsert by external_id, record the odometer, map the branch."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from crm.branches import BranchResolver
from crm.importing.base import ImportContext, Rejects, read
from crm.importing.reader import Columns, Row
from crm.importing.references import ClientRefs, car_refs
from crm.importing.report import ImportReport, RowError
from crm.importing.values import parse_date, parse_int, parse_money, parse_text
from crm.visits import visit_kind
from storage.bulk import insert_returning_ids, insert_rows
from storage.models import OdometerReading, Visit

COLUMNS = Columns(
    aliases={
        "external_id": ("номер", "номер заказ-наряда", "заказ-наряд", "номер документа", "код"),
        "client_id": ("код клиента", "клиент", "client"),
        "car_id": ("код автомобиля", "автомобиль", "car"),
        "date": ("дата", "дата закрытия", "дата документа", "visited_on", "visit_date"),
        "mileage": ("пробег", "пробег, км", "odometer", "km"),
        "amount": ("сумма", "сумма документа", "сумма, руб", "total"),
        "margin": ("маржа", "прибыль", "валовая прибыль"),
        "kind": ("вид", "вид ремонта", "вид работ", "тип", "type"),
        "department": ("подразделение", "отдел", "филиал", "branch"),
    },
    required=(("external_id",), ("client_id",), ("date",)),
)

FIELDS = (
    "client_id", "car_id", "branch_id", "department", "visited_on", "odometer", "amount",
    "margin", "kind",
)  # fmt: skip
ODOMETER_MAX = 3_000_000
VISIT_SOURCE = "visit"


@dataclass(frozen=True)
class VisitRow:
    external_id: str
    client: str
    car: str | None
    visited_on: date
    odometer: int | None
    amount: Decimal
    margin: Decimal | None
    kind: str
    kind_label: str | None  # the export's name for a kind we did not recognise
    department: str | None


class VisitImporter:
    kind = "visits"
    columns = COLUMNS

    def parse(self, row: Row, ctx: ImportContext) -> VisitRow:
        external_id = read(row, "external_id", parse_text, max_length=64)
        if external_id is None:
            raise RowError("external_id", "empty: needed to recognise the visit on re-import")
        client = read(row, "client_id", parse_text, max_length=64)
        if client is None:
            raise RowError("client_id", "empty: every visit needs its client")
        visited_on = read(row, "date", parse_date, today=ctx.today)
        if visited_on is None:
            raise RowError("date", "empty")
        if visited_on > ctx.today:
            raise RowError("date", f"{visited_on:%d.%m.%Y} is in the future")
        kind_text = row.cells.get("kind", "")
        kind, recognised = visit_kind(kind_text)
        return VisitRow(
            external_id=external_id,
            client=client,
            car=read(row, "car_id", parse_text, max_length=64),
            visited_on=visited_on,
            odometer=read(row, "mileage", parse_int, low=0, high=ODOMETER_MAX) or None,
            amount=read(row, "amount", parse_money) or Decimal("0.00"),
            margin=read(row, "margin", parse_money),
            kind=kind,
            kind_label=None if recognised else " ".join(kind_text.split()),
            department=read(row, "department", parse_text, max_length=128),
        )

    async def apply(
        self,
        session: AsyncSession,
        batch: list[tuple[Row, VisitRow]],
        report: ImportReport,
        ctx: ImportContext,
    ) -> Rejects:
        parsed_rows = [parsed for _, parsed in batch]
        clients = await ClientRefs.load(session, {p.client for p in parsed_rows})
        cars = await car_refs(session, {p.car for p in parsed_rows if p.car})
        existing = await _load_visits(session, {p.external_id for p in parsed_rows})
        branches = await BranchResolver.load(session)
        now = ctx.clock()
        rejects: Rejects = []
        new: dict[str, dict[str, Any]] = {}
        changed: dict[str, dict[str, Any]] = {}
        for row, parsed in batch:
            try:
                values = await _resolve(session, parsed, clients, cars, branches, now)
            except RowError as error:
                rejects.append((row, error))
                continue
            if parsed.kind_label is not None:
                report.unknown_kinds[parsed.kind_label] += 1
            before = existing.get(parsed.external_id) or new.get(parsed.external_id)
            if before is None:
                new[parsed.external_id] = values
                report.imported += 1
            elif all(before.get(k) == v for k, v in values.items()):
                report.unchanged += 1
            else:
                before.update(values)
                if "id" in before:
                    changed[parsed.external_id] = before
                report.updated += 1
        report.new_branches += branches.created
        await _save(session, new, changed, now)
        return rejects


async def _resolve(
    session: AsyncSession,
    parsed: VisitRow,
    clients: ClientRefs,
    cars: dict[str, int],
    branches: BranchResolver,
    now: datetime,
) -> dict[str, Any]:
    client_id = clients.get(parsed.client)
    if client_id is None:
        raise RowError("client_id", f"no client {parsed.client!r}")
    car_id = None
    if parsed.car is not None:
        car_id = cars.get(parsed.car)
        if car_id is None:
            raise RowError("car_id", f"no car {parsed.car!r}")
    return {
        "client_id": client_id,
        "car_id": car_id,
        "branch_id": await branches.resolve(session, parsed.department, now),
        "department": parsed.department,
        "visited_on": parsed.visited_on,
        "odometer": parsed.odometer,
        "amount": parsed.amount,
        "margin": parsed.margin,
        "kind": parsed.kind,
    }


async def _load_visits(session: AsyncSession, external_ids: set[str]) -> dict[str, dict[str, Any]]:
    found = await session.execute(
        select(Visit.id, Visit.external_id, *(getattr(Visit, name) for name in FIELDS)).where(
            Visit.external_id.in_(external_ids)
        )
    )
    return {
        external_id: {"id": visit_id, **dict(zip(FIELDS, values, strict=True))}
        for visit_id, external_id, *values in found
    }


async def _save(
    session: AsyncSession,
    new: dict[str, dict[str, Any]],
    changed: dict[str, dict[str, Any]],
    now: datetime,
) -> None:
    if new:
        rows = [
            {**values, "external_id": external_id, "created_at": now, "updated_at": now}
            for external_id, values in new.items()
        ]
        ids = await insert_returning_ids(session, Visit, rows, key=("external_id",))
        for external_id, values in new.items():
            values["id"] = ids[(external_id,)]
        await _insert_readings(session, list(new.values()), now)
    if changed:
        await session.execute(
            update(Visit), [{**values, "updated_at": now} for values in changed.values()]
        )
        # A corrected work order corrects its odometer reading too: replace them.
        changed_ids = [values["id"] for values in changed.values()]
        await session.execute(
            delete(OdometerReading).where(OdometerReading.visit_id.in_(changed_ids))
        )
        await _insert_readings(session, list(changed.values()), now)


async def _insert_readings(
    session: AsyncSession, visits: list[dict[str, Any]], now: datetime
) -> None:
    readings = [
        {
            "car_id": visit["car_id"],
            "read_on": visit["visited_on"],
            "km": visit["odometer"],
            "source": VISIT_SOURCE,
            "visit_id": visit["id"],
            "created_at": now,
        }
        for visit in visits
        if visit["car_id"] is not None and visit["odometer"]
    ]
    await insert_rows(session, OdometerReading, readings)

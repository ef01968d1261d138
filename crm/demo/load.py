"""Put a generated demo dealer into the database, or into 1C-style CSV files."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import date, datetime
from itertools import islice
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm.branches import BranchResolver
from crm.clock import Clock, local_today
from crm.consent import ADVERTISING, ALL_CHANNELS
from crm.demo.generator import DemoHousehold, generate_households
from crm.demo.onec import write_onec_export
from storage.bulk import insert_returning_ids, insert_rows
from storage.models import Base, Car, Client, ClientConsent, OdometerReading, Visit

HOUSEHOLDS_PER_BATCH = 500
SOURCE = "demo"


class DemoError(Exception):
    """Demo data cannot go where it was asked to."""


async def load_demo(
    sessions: async_sessionmaker[AsyncSession],
    clock: Clock,
    tz: ZoneInfo,
    *,
    seed: int,
    clients: int,
    progress: Callable[[int], None] | None = None,
) -> dict[str, int]:
    """Generate `clients` households and insert them; refuse a database that has clients.

    Deterministic: the same seed and day give the same dealer. Returns row counts.
    """
    async with sessions() as session:
        existing = await session.scalar(select(func.count()).select_from(Client))
        if existing:
            raise DemoError(
                f"the database already holds {existing} clients: demo data goes into an empty "
                "database (point [database] url at a new file)"
            )
        branches = await BranchResolver.load(session)
    today = local_today(clock, tz)
    counts = {"clients": 0, "cars": 0, "visits": 0}
    households = generate_households(seed=seed, today=today, clients=clients)
    for batch in _chunks(households, HOUSEHOLDS_PER_BATCH):
        async with sessions() as session, session.begin():
            await _insert_batch(session, batch, branches, clock(), counts)
        if progress is not None:
            progress(len(batch))
    return counts


def export_demo(folder: Path, today: date, *, seed: int, clients: int) -> dict[str, int]:
    """Write the demo dealer as the 1C export files clients.csv, cars.csv and visits.csv."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DemoError(f"{folder}: cannot create the folder: {exc.strerror}") from None
    households = generate_households(seed=seed, today=today, clients=clients)
    return write_onec_export(households, folder)


async def _insert_batch(
    session: AsyncSession,
    batch: list[DemoHousehold],
    branches: BranchResolver,
    now: datetime,
    counts: dict[str, int],
) -> None:
    stamps = {"created_at": now, "updated_at": now}
    client_ids = await _insert_keyed(
        session,
        Client,
        [
            {
                "external_id": c.external_id, "last_name": c.last_name,
                "first_name": c.first_name, "middle_name": c.middle_name, "gender": c.gender,
                "birthday": c.birthday, "phone": c.phone, "email": c.email,
                "telegram_id": c.telegram_id, **stamps,
            }
            for c in (household.client for household in batch)
        ],
    )  # fmt: skip
    consents = [
        {"client_id": client_id, "channel": ALL_CHANNELS, "purpose": ADVERTISING,
         "granted": True, "changed_at": now, "source": SOURCE}
        for household, client_id in zip(batch, client_ids, strict=True)
        if household.client.consent_ads
    ]  # fmt: skip
    await insert_rows(session, ClientConsent, consents)
    owner = {h.client.external_id: cid for h, cid in zip(batch, client_ids, strict=True)}
    cars = [car for household in batch for car in household.cars]
    car_ids = await _insert_keyed(
        session,
        Car,
        [
            {
                "external_id": car.external_id, "client_id": owner[car.client_external_id],
                "vin": car.vin, "plate": car.plate, "make": car.make, "model": car.model,
                "year": car.year, "service_interval_km": car.service_interval_km,
                "service_interval_months": car.service_interval_months, **stamps,
            }
            for car in cars
        ],
    )  # fmt: skip
    car_id = {car.external_id: cid for car, cid in zip(cars, car_ids, strict=True)}
    visits = [visit for household in batch for visit in household.visits]
    visit_rows = [
        {
            "external_id": v.external_id, "client_id": owner[v.client_external_id],
            "car_id": car_id[v.car_external_id],
            "branch_id": await branches.resolve(session, v.department, now),
            "department": v.department, "visited_on": v.visited_on, "odometer": v.odometer,
            "amount": v.amount, "margin": v.margin, "kind": v.kind, **stamps,
        }
        for v in visits
    ]  # fmt: skip
    visit_ids = await _insert_keyed(session, Visit, visit_rows)
    readings = [
        {"car_id": row["car_id"], "read_on": row["visited_on"], "km": row["odometer"],
         "source": "visit", "visit_id": visit_id, "created_at": now}
        for row, visit_id in zip(visit_rows, visit_ids, strict=True)
        if row["odometer"]
    ]  # fmt: skip
    await insert_rows(session, OdometerReading, readings)
    counts["clients"] += len(client_ids)
    counts["cars"] += len(car_ids)
    counts["visits"] += len(visit_ids)


async def _insert_keyed(
    session: AsyncSession, model: type[Base], rows: list[dict[str, Any]]
) -> list[int]:
    """Insert rows that all have an external id; return their new ids in the rows' order."""
    ids = await insert_returning_ids(session, model, rows, key=("external_id",))
    return [ids[(row["external_id"],)] for row in rows]


def _chunks(households: Iterator[DemoHousehold], size: int) -> Iterator[list[DemoHousehold]]:
    while chunk := list(islice(households, size)):
        yield chunk

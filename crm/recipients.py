"""The clients a message goes to, read in pages with what their messages need to know."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date
from typing import Any, cast

from sqlalchemy import exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.context import CarFacts, ClientFacts
from crm.segments import SegmentQuery
from storage.models import Car, Client, OdometerReading, Visit

FACT_COLUMNS = (  # in the order of ClientFacts' fields
    Client.id,
    Client.first_name,
    Client.middle_name,
    Client.last_name,
    Client.gender,
    Client.birthday,
    Client.timezone,
    Client.telegram_id,
    Client.phone,
    Client.email,
)


async def client_facts(
    session: AsyncSession, client_id: int
) -> tuple[ClientFacts, CarFacts | None] | None:
    """One client with their latest car, or None when there is no such client."""
    row = (await session.execute(select(*FACT_COLUMNS).where(Client.id == client_id))).first()
    if row is None:
        return None
    cars = await latest_cars(session, [client_id])
    return ClientFacts(*cast(tuple[Any, ...], row)), cars.get(client_id)


async def client_pages(
    session: AsyncSession, segment: SegmentQuery, size: int
) -> AsyncIterator[list[tuple[ClientFacts, CarFacts | None]]]:
    """The segment's clients in pages by id, each with the car they came with last.

    Pages are read by key (`id > last`), not with a cursor held open, so the caller may
    write between pages in the same transaction on SQLite and PostgreSQL alike.
    """
    members = segment.subquery()
    last_id = 0
    while True:
        connection = await session.connection()  # plain rows: no ORM loading per row
        clients = [
            ClientFacts(*cast(tuple[Any, ...], row))
            for row in await connection.execute(
                select(*FACT_COLUMNS)
                .where(Client.id > last_id, exists().where(members.c[0] == Client.id))
                .order_by(Client.id)
                .limit(size)
            )
        ]
        if not clients:
            return
        cars = await latest_cars(session, [client.id for client in clients])
        yield [(client, cars.get(client.id)) for client in clients]
        last_id = clients[-1].id


async def latest_cars(session: AsyncSession, client_ids: list[int]) -> dict[int, CarFacts]:
    """Per client, the car of their latest visit (else their newest car), with its odometer.

    Per-car subqueries ride the (car_id, ...) indexes; a grouped subquery over all visits
    or readings would be planned as a scan of the whole table for every page.
    """
    last_visit = select(func.max(Visit.visited_on)).where(Visit.car_id == Car.id).scalar_subquery()
    odometer = (  # the last reading, not the highest: a mistyped 999 999 should not stick
        select(OdometerReading.km)
        .where(OdometerReading.car_id == Car.id)
        .order_by(OdometerReading.read_on.desc(), OdometerReading.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    connection = await session.connection()  # plain rows: no ORM loading per row
    rows = await connection.execute(
        select(
            Car.client_id,
            Car.id,
            Car.make,
            Car.model,
            Car.year,
            Car.plate,
            Car.vin,
            odometer,
            last_visit,
        ).where(Car.client_id.in_(client_ids))
    )
    best: dict[int, tuple[Any, CarFacts]] = {}
    for client_id, car_id, make, model, year, plate, vin, km, visited in rows:
        rank = (visited or date.min, car_id)
        if client_id not in best or rank > best[client_id][0]:
            best[client_id] = (rank, CarFacts(make, model, year, plate, vin, km))
    return {client_id: car for client_id, (_, car) in best.items()}

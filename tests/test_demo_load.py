"""The demo dealer in the database: exactly what the generator made, into an empty database only."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from crm.demo.generator import generate_households
from crm.demo.load import DemoError, load_demo
from storage.models import Branch, Car, Client, ClientConsent, OdometerReading, Visit
from tests.support.clock import FakeClock
from tests.support.databases import Database

MOSCOW = ZoneInfo("Europe/Moscow")


async def count(db: Database, model: type) -> int:
    async with db.sessions() as session:
        return await session.scalar(select(func.count()).select_from(model)) or 0


async def test_the_demo_dealer_lands_whole_with_consents_readings_and_branches(
    db: Database, clock: FakeClock
) -> None:
    households = list(generate_households(seed=9, today=clock().date(), clients=60))
    visits = [v for h in households for v in h.visits]
    progress: list[int] = []

    counts = await load_demo(
        db.sessions, clock, MOSCOW, seed=9, clients=60, progress=progress.append
    )

    assert counts == {
        "clients": 60,
        "cars": sum(len(h.cars) for h in households),
        "visits": len(visits),
    }
    assert sum(progress) == 60
    assert await count(db, Client) == 60
    assert await count(db, Car) == counts["cars"]
    assert await count(db, OdometerReading) == len(visits)
    assert await count(db, ClientConsent) == sum(h.client.consent_ads for h in households)
    async with db.sessions() as session:
        stored = dict((await session.execute(select(Visit.external_id, Visit.amount))).all())
        branches = set(await session.scalars(select(Branch.name)))
    assert stored == {v.external_id: v.amount for v in visits}
    assert {"Сервис Север", "Сервис Юг"} <= branches


async def test_the_demo_refuses_a_database_that_has_clients(db: Database, clock: FakeClock) -> None:
    await load_demo(db.sessions, clock, MOSCOW, seed=1, clients=3)

    with pytest.raises(DemoError, match="already holds 3 clients"):
        await load_demo(db.sessions, clock, MOSCOW, seed=1, clients=3)

    assert await count(db, Client) == 3

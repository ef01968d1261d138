"""Closed work orders and odometer readings pushed by the dealer's system.

Posting a work order records the visit and its odometer reading, accrues the bonuses it
earns and rewards a referral on the client's first paid visit, all in the caller's
transaction: either everything is recorded or nothing. The survey invitation is not
rendered here: the answer says when it will be due, and the scheduler's `surveys` job
queues it for that time.
Posting the same work order again changes nothing and answers as the first time; posting
it again with other figures is a Conflict (a closed work order is not edited over HTTP).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import bindparam, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from crm.bonuses import BonusRules, Moved, VisitFacts, balance
from crm.bonuses.visits import reward_new_visit
from crm.booking import BookingRules, complete_by_visit
from crm.branches import BranchResolver
from crm.cards import Standing, standing
from crm.clock import Moment
from crm.context import ClientFacts
from crm.errors import Conflict, DomainError, NotFound
from crm.intake import require_car, require_client
from crm.recipients import FACT_COLUMNS
from crm.surveys import Invitation, SurveyInvites, plan_invitation
from crm.visits import visit_kind
from storage.bonuses import BonusLot, BonusMovement
from storage.bulk import table_of
from storage.models import Car, Client, OdometerReading, Visit

ODOMETER_MAX = 3_000_000

# Built once: a work order runs these hundreds of times a second, and building a statement
# costs more than SQLite takes to run it.
_CLIENT_BY_EXTERNAL_ID = select(*FACT_COLUMNS).where(Client.external_id == bindparam("external_id"))
_CAR_BY_EXTERNAL_ID = select(Car.id).where(Car.external_id == bindparam("external_id"))
_INSERT_VISIT = {  # a work order posted before inserts nothing, and answers as before
    name: dialect.insert(table_of(Visit))
    .on_conflict_do_nothing(index_elements=["external_id"])
    .returning(table_of(Visit).c.id)
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
}
_INSERT_READING = insert(table_of(OdometerReading))
API_SOURCE = "api"
VISIT_SOURCE = "visit"


@dataclass(frozen=True, slots=True)
class VisitInput:
    external_id: str
    client: str  # the client's external id
    visited_on: date
    amount: Decimal
    car: str | None = None  # the car's external id
    odometer: int | None = None
    margin: Decimal | None = None
    kind: str | None = None  # as the dealer's system names it ("ТО-2", "Кузовной ремонт")
    department: str | None = None


@dataclass(frozen=True, slots=True)
class VisitOutcome:
    visit_id: int
    client_id: int
    created: bool
    kind: str
    accrued: Moved | None
    referral: tuple[Moved, ...]
    survey: Invitation | None
    balance: Decimal
    standing: Standing
    booking_id: int | None = None
    """The booking this work order completed."""


async def post_visit(
    session: AsyncSession,
    rules: BonusRules,
    invites: SurveyInvites | None,
    data: VisitInput,
    moment: Moment,
    *,
    branches: BranchResolver | None = None,
    bookings: BookingRules | None = None,
) -> VisitOutcome:
    """Record a closed work order with everything that follows from it (see the module).

    `branches`: a resolver loaded earlier, used while it knows the visit's department (the
    dealer's departments rarely change); else the branches are read again. `bookings`: the
    client's booking of the visit's day, if any, is completed by it.
    """
    if data.visited_on > moment.today:
        raise DomainError(f"{data.visited_on} is in the future", field="visited_on")
    if data.amount < 0:
        raise DomainError("the amount cannot be negative", field="amount")
    if data.odometer is not None and not 0 <= data.odometer <= ODOMETER_MAX:
        raise DomainError(f"{data.odometer} km is not an odometer reading", field="odometer")
    client = await _client(session, data.client)
    car_id = None if data.car is None else await _car(session, data.car)
    kind = visit_kind(data.kind or "")[0]
    if branches is None or not branches.knows(data.department):
        branches = await BranchResolver.load(session)
    branch_id = await branches.resolve(session, data.department, moment.now)
    visit_id = await session.scalar(
        _INSERT_VISIT[session.get_bind().dialect.name],
        dict(
            external_id=data.external_id,
            client_id=client.id,
            car_id=car_id,
            branch_id=branch_id,
            department=data.department,
            visited_on=data.visited_on,
            odometer=data.odometer,
            amount=data.amount,
            margin=data.margin,
            kind=kind,
            created_at=moment.now,
            updated_at=moment.now,
        ),
    )
    if visit_id is None:  # the work order was posted before
        existing = await session.scalar(select(Visit).where(Visit.external_id == data.external_id))
        assert existing is not None
        return await _repeated(session, rules, existing, data, client.id, car_id, kind, moment)
    if car_id is not None and data.odometer:
        await session.execute(
            _INSERT_READING,
            dict(
                car_id=car_id,
                read_on=data.visited_on,
                km=data.odometer,
                source=VISIT_SOURCE,
                visit_id=visit_id,
                created_at=moment.now,
            ),
        )
    facts = VisitFacts(visit_id, client.id, data.external_id, kind, data.amount, branch_id)
    reward = await reward_new_visit(session, rules, facts, data.visited_on, moment)
    booked = None
    if bookings is not None:
        done = await complete_by_visit(
            session, bookings, client.id, visit_id, data.visited_on, moment
        )
        booked = None if done is None else done.id
    survey = None
    if invites is not None:
        survey = plan_invitation(invites, client, visited_on=data.visited_on, posted_at=moment.now)
    return VisitOutcome(
        visit_id,
        client.id,
        True,
        kind,
        reward.accrued,
        reward.referral,
        survey,
        reward.balance,
        reward.standing,
        booked,
    )


async def _client(session: AsyncSession, external_id: str) -> ClientFacts:
    """The work order's client, with what its messages need, in one read."""
    row = (await session.execute(_CLIENT_BY_EXTERNAL_ID, {"external_id": external_id})).first()
    if row is None:  # an id merged into another client
        client_id = await require_client(session, external_id)
        row = (await session.execute(select(*FACT_COLUMNS).where(Client.id == client_id))).one()
    return ClientFacts(*cast(tuple[Any, ...], row))


async def _car(session: AsyncSession, external_id: str) -> int:
    car_id = await session.scalar(_CAR_BY_EXTERNAL_ID, {"external_id": external_id})
    if car_id is None:
        raise NotFound(f"no car with external id {external_id!r}", field="car")
    return int(car_id)


async def _repeated(
    session: AsyncSession,
    rules: BonusRules,
    visit: Visit,
    data: VisitInput,
    client_id: int,
    car_id: int | None,
    kind: str,
    moment: Moment,
) -> VisitOutcome:
    recorded = (visit.client_id, visit.car_id, visit.visited_on, Decimal(visit.amount), visit.kind)
    posted = (client_id, car_id, data.visited_on, data.amount, kind)
    if recorded != posted:
        names = ("client", "car", "visited_on", "amount", "kind")
        differ = [n for n, a, b in zip(names, recorded, posted, strict=True) if a != b]
        raise Conflict(
            f"work order {data.external_id!r} was posted before with another {', '.join(differ)}",
            field=differ[0],
            code="visit_exists",
        )
    row = (
        await session.execute(
            select(BonusMovement, BonusLot.expires_on)
            .join(BonusLot, BonusLot.movement_id == BonusMovement.id)
            .where(BonusMovement.external_ref == f"visit:{visit.id}")
        )
    ).first()
    accrued = None
    if row is not None:
        movement, expires_on = row
        accrued = Moved(
            movement.id, client_id, movement.kind, movement.amount, expires_on, repeated=True
        )
    return VisitOutcome(
        visit.id,
        client_id,
        False,
        visit.kind,
        accrued,
        (),
        None,
        await balance(session, client_id, moment.today),
        await standing(session, rules.ladder, client_id, moment.today),
    )


async def record_odometer(
    session: AsyncSession, car_external_id: str, km: int, read_on: date, moment: Moment
) -> tuple[int, bool]:
    """Note what a car's odometer showed on a day; the same reading twice is noted once.
    Return (reading id, created)."""
    if read_on > moment.today:
        raise DomainError(f"{read_on} is in the future", field="read_on")
    if not 0 <= km <= ODOMETER_MAX:
        raise DomainError(f"{km} km is not an odometer reading", field="km")
    car_id = await require_car(session, car_external_id)
    same = await session.scalar(
        select(OdometerReading.id).where(
            OdometerReading.car_id == car_id,
            OdometerReading.read_on == read_on,
            OdometerReading.km == km,
        )
    )
    if same is not None:
        return same, False
    reading = OdometerReading(
        car_id=car_id, read_on=read_on, km=km, source=API_SOURCE, created_at=moment.now
    )
    session.add(reading)
    await session.flush()
    return reading.id, True

"""Bonus notices: the warning before bonuses expire, and what a work order earned.

Both are service messages queued by scheduled jobs a page at a time, each page in the
caller's transaction, under keys that make a rerun queue nothing twice:

- `bonus:expiring:<client>:<expires_on>`: once per client and expiry date. A client with
  lots expiring on several days within the warning window is warned about the nearest
  day only; the next day's warning comes once that day has passed.
- `bonus:accrued:<movement id>`: once per accrual of a work order.

A job may run in the night (expiry at 03:30): a notice waits for the morning in the
client's time zone, as a survey invitation does. A client with no address on the plan is
left out; they are found again on the next run, so a contact added later still hears.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import String, exists, func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.bonuses.ledger import ACCRUAL, live, lots_left, money
from crm.clock import Moment
from crm.context import CarFacts, ClientFacts, CompanyInfo, context_maker, reachable_channels
from crm.recipients import FACT_COLUMNS, latest_cars
from crm.templates import TemplateLibrary
from gateway.consent import ADVERTISING, SERVICE
from gateway.optout import OptOut
from gateway.outbox import EnqueueResult, Recipient, enqueue
from gateway.quiet import Night, morning_after
from gateway.render import MessageTemplate
from storage.bonuses import BonusLot, BonusMovement, BonusPosting
from storage.models import Client
from storage.outbox import Message

EXPIRING_TEMPLATE = "bonus_expiring"
ACCRUED_TEMPLATE = "bonus_accrued"
ACCRUED_KEY = "bonus:accrued:"
NEWS_DAYS = 3
"""An accrual older than this is history, not news: no notice (a job switched on after a
year of work orders does not tell everybody about every visit)."""


@dataclass(frozen=True, slots=True)
class Notices:
    """How bonus notices go out (config `[bonuses]`, `[company]`)."""

    library: TemplateLibrary
    company: CompanyInfo
    plan: tuple[str, ...]
    night: Night | None


@dataclass(slots=True)
class Page:
    """What one page queued; `after` is where the next page starts, None when done."""

    after: int | None
    queued: int = 0
    duplicates: int = 0
    unreachable: int = 0

    def count(self, result: EnqueueResult) -> None:
        self.queued += result.queued
        self.duplicates += result.duplicates


@dataclass(frozen=True, slots=True)
class Expiry:
    """What would be written off on a day: for a dry run, which must not write it."""

    clients: int
    amount: Decimal


async def expiry_preview(session: AsyncSession, today: date) -> Expiry:
    """Clients and the sum that `expire_due` would write off on `today` (reads only)."""
    due = lots_left(BonusLot.expires_on <= today).subquery()
    clients, amount = (
        await session.execute(
            select(func.count(func.distinct(due.c.client_id)), func.sum(due.c.left))
        )
    ).one()
    return Expiry(int(clients or 0), money(amount or 0))


async def warn_expiring(
    session: AsyncSession,
    notices: Notices,
    moment: Moment,
    *,
    within_days: int,
    after: int = 0,
    size: int = 500,
) -> Page:
    """Warn the next `size` clients (by id, after `after`) whose bonuses expire within
    `within_days` days: the amount expiring on the nearest such day, and the balance.

    Lots expiring today are already gone (a lot is usable until its day, exclusive), so
    the earliest day warned about is tomorrow.
    """
    today = moment.today
    window = (live(today), BonusLot.expires_on <= today + timedelta(days=within_days))
    due = lots_left(*window, BonusLot.client_id > after).subquery()
    ids = list(
        await session.scalars(
            select(due.c.client_id).distinct().order_by(due.c.client_id).limit(size)
        )
    )
    if not ids:
        return Page(None)
    nearest: dict[int, tuple[date, Decimal]] = {}
    by_day = lots_left(*window, BonusLot.client_id.in_(ids)).subquery()
    for client_id, day, amount in await session.execute(
        select(by_day.c.client_id, by_day.c.expires_on, func.sum(by_day.c.left))
        .group_by(by_day.c.client_id, by_day.c.expires_on)
        .order_by(by_day.c.client_id, by_day.c.expires_on)
    ):
        nearest.setdefault(client_id, (day, money(amount)))
    balances = await _balances(session, ids, today)
    template = await notices.library.get(session, EXPIRING_TEMPLATE)
    recipients = []
    for client, car in await facts_of(session, ids):
        day, amount = nearest[client.id]
        bonus = {"amount": amount, "balance": balances.get(client.id, amount), "expires_on": day}
        key = f"bonus:expiring:{client.id}:{day.isoformat()}"
        recipients.append((client, car, key, bonus, None))
    page = Page(ids[-1])
    await _queue(session, notices, template, moment, recipients, page)
    return page


async def notify_accruals(
    session: AsyncSession,
    notices: Notices,
    moment: Moment,
    *,
    news_days: int = NEWS_DAYS,
    after: int = 0,
    size: int = 500,
) -> Page:
    """Tell the clients of the next `size` accruals of work orders (by movement id, after
    `after`) that have no notice yet what they earned, the balance and until when.

    Only accruals written in the last `news_days` days up to `moment`; the balance is the
    client's as of today, which counts everything since the accrual too.
    """
    since = moment.now - timedelta(days=news_days)
    # Work orders write accruals as they arrive, so ids follow time: the last accrual a day
    # before the window bounds the scan to the window's rows (a backward walk of the key;
    # there is no index on created_at). The day absorbs clocks of processes a little apart.
    floor = await session.scalar(
        select(BonusMovement.id)
        .where(BonusMovement.kind == ACCRUAL, BonusMovement.created_at < since - timedelta(days=1))
        .order_by(BonusMovement.id.desc())
        .limit(1)
    )
    key = literal(ACCRUED_KEY) + BonusMovement.id.cast(String)
    rows = (
        await session.execute(
            select(
                BonusMovement.id,
                BonusMovement.client_id,
                BonusMovement.amount,
                BonusMovement.branch_id,
                BonusLot.expires_on,
            )
            .outerjoin(BonusLot, BonusLot.movement_id == BonusMovement.id)
            .where(
                BonusMovement.id > max(after, floor or 0),
                BonusMovement.kind == ACCRUAL,
                BonusMovement.visit_id.is_not(None),
                BonusMovement.created_at >= since,
                BonusMovement.created_at <= moment.now,
                ~exists().where(Message.idempotency_key == key),
            )
            .order_by(BonusMovement.id)
            .limit(size)
        )
    ).all()
    if not rows:
        return Page(None)
    ids = sorted({row.client_id for row in rows})
    balances = await _balances(session, ids, moment.today)
    facts = {client.id: (client, car) for client, car in await facts_of(session, ids)}
    template = await notices.library.get(session, ACCRUED_TEMPLATE)
    recipients = []
    for movement_id, client_id, amount, branch_id, expires_on in rows:
        client, car = facts[client_id]
        earned = money(amount)
        bonus = {
            "amount": earned,
            "balance": balances.get(client_id, earned),
            "expires_on": expires_on,
        }
        recipients.append((client, car, f"{ACCRUED_KEY}{movement_id}", bonus, branch_id))
    page = Page(rows[-1].id)
    await _queue(session, notices, template, moment, recipients, page)
    return page


async def facts_of(
    session: AsyncSession, ids: Sequence[int]
) -> list[tuple[ClientFacts, CarFacts | None]]:
    """The clients with these ids, by id, each with the car they came with last."""
    connection = await session.connection()  # plain rows: no ORM loading per row
    clients = [
        ClientFacts(*cast(tuple[Any, ...], row))
        for row in await connection.execute(
            select(*FACT_COLUMNS).where(Client.id.in_(ids)).order_by(Client.id)
        )
    ]
    cars = await latest_cars(session, [client.id for client in clients])
    return [(client, cars.get(client.id)) for client in clients]


async def enqueue_for_day(
    session: AsyncSession,
    template: MessageTemplate,
    recipients: Sequence[tuple[Recipient, str]],
    *,
    plan: Sequence[str],
    kind: str,
    now: datetime,
    night: Night | None,
    opt_out: OptOut | None = None,
) -> EnqueueResult:
    """Queue messages of a job that may run at night: each (recipient, their time zone)
    waits for the morning where the client is. Advertising needs no help: the outbox holds
    it through the night itself."""
    by_start: defaultdict[datetime | None, list[Recipient]] = defaultdict(list)
    for recipient, zone in recipients:
        start = None if kind == ADVERTISING else morning_after(now, ZoneInfo(zone), night)
        by_start[start].append(recipient)
    result = EnqueueResult()
    for start, batch in by_start.items():
        result.add(
            await enqueue(
                session,
                template,
                batch,
                plan=plan,
                kind=kind,
                now=now,
                not_before=start,
                opt_out=opt_out,
            )
        )
    return result


async def _queue(
    session: AsyncSession,
    notices: Notices,
    template: MessageTemplate,
    moment: Moment,
    recipients: Sequence[tuple[ClientFacts, CarFacts | None, str, dict[str, Any], int | None]],
    page: Page,
) -> None:
    """(client, car, key, the `bonus` section, branch) -> messages, unreachable counted."""
    context_for = context_maker(notices.company, moment.today)
    ready = []
    for client, car, key, bonus, branch_id in recipients:
        channels = reachable_channels(client, notices.plan)
        if not channels:
            page.unreachable += 1
            continue
        context = {**context_for(client, car), "bonus": bonus}
        zone = client.timezone or notices.company.timezone
        recipient = Recipient(client.id, key, context, branch_id, channels)
        ready.append((recipient, zone))
    page.count(
        await enqueue_for_day(
            session,
            template,
            ready,
            plan=notices.plan,
            kind=SERVICE,
            now=moment.now,
            night=notices.night,
        )
    )


async def _balances(session: AsyncSession, ids: Sequence[int], today: date) -> dict[int, Decimal]:
    rows = await session.execute(
        select(BonusPosting.client_id, func.sum(BonusPosting.amount))
        .join(BonusLot, BonusLot.id == BonusPosting.lot_id)
        .where(BonusPosting.client_id.in_(ids), live(today))
        .group_by(BonusPosting.client_id)
    )
    return {client_id: money(total or 0) for client_id, total in rows}

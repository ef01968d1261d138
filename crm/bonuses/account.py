"""A client's bonus account as people read it: balance, tier, card, movements, expiring lots."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Date, Integer, Select, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.bonuses.ledger import balance_query, live, lots_left, money
from crm.bonuses.program import BonusRules
from crm.cards import CardInfo, Standing, active_card
from crm.cards.tiers import read_standing, standing_columns, year_window
from storage.bonuses import BonusLot, BonusMovement


@dataclass(frozen=True, slots=True)
class Movement:
    id: int
    kind: str
    amount: Decimal
    created_at: datetime
    ref: str | None
    work_order: str | None
    bill: Decimal | None
    reason: str | None
    actor: str | None
    expires_on: date | None


@dataclass(frozen=True, slots=True)
class Expiring:
    amount: Decimal
    expires_on: date


@dataclass(frozen=True, slots=True)
class Account:
    client_id: int
    balance: Decimal
    standing: Standing
    card: CardInfo | None
    movements: tuple[Movement, ...]
    expiring: tuple[Expiring, ...]


async def account(
    session: AsyncSession,
    rules: BonusRules,
    client_id: int,
    today: date,
    *,
    movements: int = 20,
    expiring_within_days: int = 60,
    with_card: bool = True,
) -> Account:
    """Everything the client, the bot and the dealer's system want to see at once;
    `with_card=False` leaves the card out (None) for a screen that does not show it."""
    start, end = year_window(today)
    params = {"client": client_id, "today": today, "year_start": start, "year_end": end}
    total, spend, pinned = (await session.execute(_SUMMARY, params)).one()
    return Account(
        client_id=client_id,
        balance=money(total or 0),
        standing=read_standing(rules.ladder, spend, pinned),
        card=await active_card(session, client_id) if with_card else None,
        movements=tuple(await history(session, client_id, limit=movements)),
        expiring=tuple(await expiring(session, client_id, today, expiring_within_days)),
    )


def _summary() -> Select[Any]:
    """The balance and the tier in one query, built once: the bot asks for it on every
    /balance, and building it cost more than running it."""
    client = bindparam("client", type_=Integer)
    today = bindparam("today", type_=Date)
    start, end = bindparam("year_start", type_=Date), bindparam("year_end", type_=Date)
    spend, pinned = standing_columns(client, start, end)
    return select(balance_query(client, today).scalar_subquery(), spend, pinned)


_SUMMARY = _summary()


def _history(paged: bool) -> Select[Any]:
    """The movements query with the client, the limit and the page as bound parameters,
    built once per shape (built anew it cost more than running it)."""
    m = BonusMovement
    columns: tuple[Any, ...] = (m.id, m.kind, m.amount, m.created_at, m.external_ref)
    columns += (m.work_order, m.bill, m.reason, m.actor, BonusLot.expires_on)
    query = (
        select(*columns)
        .outerjoin(BonusLot, BonusLot.movement_id == m.id)
        .where(m.client_id == bindparam("client", type_=Integer))
        .order_by(m.id.desc())
        .limit(bindparam("limit", type_=Integer))
    )
    if paged:
        query = query.where(m.id < bindparam("before", type_=Integer))
    return query


_HISTORY = {paged: _history(paged) for paged in (False, True)}


async def history(
    session: AsyncSession, client_id: int, *, limit: int = 50, before_id: int | None = None
) -> list[Movement]:
    """The client's movements, newest first; `before_id` pages back from a movement."""
    params = {"client": client_id, "limit": limit, "before": before_id}
    rows = await session.execute(_HISTORY[before_id is not None], params)
    return [
        Movement(
            id=id_,
            kind=kind,
            amount=money(amount),
            created_at=created_at,
            ref=ref,
            work_order=work_order,
            bill=None if bill is None else money(bill),
            reason=reason,
            actor=actor,
            expires_on=expires_on,
        )
        for id_, kind, amount, created_at, ref, work_order, bill, reason, actor, expires_on in rows
    ]


def _expiring() -> Select[Any]:
    today, until = bindparam("today", type_=Date), bindparam("until", type_=Date)
    lots = lots_left(
        BonusLot.client_id == bindparam("client", type_=Integer),
        live(today),
        BonusLot.expires_on <= until,
    ).subquery()
    return (
        select(lots.c.expires_on, func.sum(lots.c.left))
        .group_by(lots.c.expires_on)
        .order_by(lots.c.expires_on)
    )


_EXPIRING = _expiring()


async def expiring(
    session: AsyncSession, client_id: int, today: date, within_days: int
) -> list[Expiring]:
    """What is left on lots that expire in the next `within_days` days, by day."""
    until = today + timedelta(days=within_days)
    rows = await session.execute(_EXPIRING, {"client": client_id, "today": today, "until": until})
    return [Expiring(money(amount), day) for day, amount in rows]

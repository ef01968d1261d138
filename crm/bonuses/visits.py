"""What a newly posted work order earns, with the account as it then stands, in few queries.

The dealer's system posts work orders hundreds of times a second, so this reads what the
rules need (the year's spend, a pinned tier, the balance, bonuses spent on the work order,
a pending referral) in one statement, writes the accrual, and works out the balance and
tier after it instead of reading them again. The rules are those of `crm.bonuses.program`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import Integer, Select, bindparam, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.bonuses.ledger import SPENT_ON_BILLS, ZERO, Moved, credit, lock_account, money
from crm.bonuses.program import BonusRules, VisitFacts, accrual, reward_referral
from crm.cards.tiers import ISSUED, Standing, year_window
from crm.clock import Moment
from storage.bonuses import BonusLot, BonusMovement, BonusPosting, DiscountCard, Referral
from storage.models import Visit


def _before() -> Select[Any]:
    """The account as a visit finds it, in one statement: the year's spend of the client's
    other visits, a pinned tier, the balance, bonuses spent on the work order, and whether
    a referral waits for this client's first paid visit."""
    client, visit = bindparam("client", type_=Integer), bindparam("visit", type_=Integer)
    other_visits = (Visit.client_id == client, Visit.id != visit)
    spend = select(func.coalesce(func.sum(Visit.amount), 0)).where(
        *other_visits, Visit.visited_on > bindparam("start"), Visit.visited_on <= bindparam("end")
    )
    pinned = select(DiscountCard.tier).where(
        DiscountCard.client_id == client, DiscountCard.state == ISSUED
    )
    held = (
        select(func.coalesce(func.sum(BonusPosting.amount), 0))
        .join(BonusLot, BonusLot.id == BonusPosting.lot_id)
        .where(
            BonusPosting.client_id == client,
            BonusLot.expires_on.is_(None) | (BonusLot.expires_on > bindparam("today")),
        )
    )
    spent_on_order = select(func.coalesce(func.sum(BonusMovement.amount), 0)).where(
        BonusMovement.work_order == bindparam("work_order"),
        BonusMovement.kind.in_(SPENT_ON_BILLS),
    )
    referral_due = exists().where(Referral.referred_id == client) & ~exists().where(
        *other_visits, Visit.amount > 0
    )
    return select(
        spend.scalar_subquery(),
        pinned.limit(1).scalar_subquery(),
        held.scalar_subquery(),
        spent_on_order.scalar_subquery(),
        referral_due,
    )


_BEFORE = _before()  # built once: it runs for every work order


@dataclass(frozen=True, slots=True)
class VisitReward:
    accrued: Moved | None
    referral: tuple[Moved, ...]
    balance: Decimal  # after the visit
    standing: Standing  # after the visit


async def reward_new_visit(
    session: AsyncSession, rules: BonusRules, visit: VisitFacts, visited_on: date, moment: Moment
) -> VisitReward:
    """Accrue what a visit recorded in this transaction earns (and a referral it completes);
    the caller has read the client in this transaction."""
    await lock_account(session, visit.client_id, known=True)
    start, end = year_window(moment.today)
    client = visit.client_id
    values = {
        "client": client,
        "visit": visit.id,
        "start": start,
        "end": end,
        "today": moment.today,
        "work_order": visit.external_id,
    }
    row = (await session.execute(_BEFORE, values)).one()
    year_spend, pinned_name, balance = money(row[0]), row[1], money(row[2])
    redeemed = -money(row[3]) if visit.external_id is not None else ZERO
    ladder = rules.ladder
    entry = accrual(rules, visit, ladder.standing(year_spend, pinned_name).tier, redeemed)
    accrued = None
    if entry is not None:
        days = rules.expire_after_days
        accrued = await credit(session, client, entry, moment, valid_days=days, locked=True)
        balance += accrued.amount
    referral: tuple[Moved, ...] = ()
    if row[4] and visit.amount > 0:
        referral = tuple(await reward_referral(session, rules, visit, moment))
        balance += sum((m.amount for m in referral if m.client_id == client), ZERO)
    spend_after = year_spend + (visit.amount if start < visited_on <= end else ZERO)
    return VisitReward(accrued, referral, balance, ladder.standing(spend_after, pinned_name))

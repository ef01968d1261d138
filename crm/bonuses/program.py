"""The bonus program's rules: what earns bonuses, how many, and how they are spent.

- A paid visit earns the accrual percent of the client's tier (the tier they had when they
  came) on what they paid in money: the bill less the bonuses redeemed against its work
  order. Accruals are whole bonuses, rounded down. Visits of `no_accrual_kinds` (car sales,
  by default) earn nothing.
- Linking Telegram earns the welcome bonus once per client; a birthday earns the birthday
  bonus once a year; a referral earns both sides a bonus on the referred client's first
  paid visit.
- A redemption takes at most `max_redeem_percent` of the bill (all redemptions against one
  work order together), and never more than the balance.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.bonuses.ledger import (
    ACCRUAL,
    ADJUSTMENT,
    CENT,
    REDEMPTION,
    REFERRAL,
    REVERSAL,
    SPENT_ON_BILLS,
    WELCOME,
    ZERO,
    Entry,
    InsufficientBonuses,
    Moved,
    balance,
    credit,
    debit,
    expire_client,
    give_back,
    live,
    lock_account,
    money,
    repeated,
)
from crm.cards.tiers import Tier, TierLadder, standing
from crm.clock import Moment
from crm.errors import Conflict, DomainError, NotFound
from storage.bonuses import BonusLot, BonusMovement, BonusPosting, Referral
from storage.models import Visit

ONE = Decimal(1)


@dataclass(frozen=True, slots=True)
class BonusRules:
    """The program as the company configured it (`[bonuses]` and `[[tier]]`)."""

    ladder: TierLadder
    expire_after_days: int = 365
    max_redeem_percent: Decimal = Decimal(30)
    welcome: Decimal = ZERO
    birthday: Decimal = ZERO
    birthday_valid_days: int = 30
    referral_referrer: Decimal = ZERO
    referral_referred: Decimal = ZERO
    no_accrual_kinds: frozenset[str] = field(default_factory=lambda: frozenset({"sale"}))


@dataclass(frozen=True, slots=True)
class VisitFacts:
    """What accrual needs to know of a visit (a work order)."""

    id: int
    client_id: int
    external_id: str | None
    kind: str
    amount: Decimal
    branch_id: int | None = None


@dataclass(frozen=True, slots=True)
class Redemption:
    accepted: Decimal
    balance: Decimal
    movement_id: int | None
    repeated: bool = False


async def accrue_for_visit(
    session: AsyncSession, rules: BonusRules, visit: VisitFacts, moment: Moment
) -> Moved | None:
    """Credit what the visit earns (see the module's rules), once per visit; None if nothing."""
    if visit.kind in rules.no_accrual_kinds or visit.amount <= 0:
        return None
    tier = (
        await standing(
            session, rules.ladder, visit.client_id, moment.today, excluding_visit=visit.id
        )
    ).tier
    entry = accrual(rules, visit, tier, await redeemed_for(session, visit.external_id))
    if entry is None:
        return None
    return await credit(session, visit.client_id, entry, moment, valid_days=rules.expire_after_days)


def accrual(rules: BonusRules, visit: VisitFacts, tier: Tier, redeemed: Decimal) -> Entry | None:
    """The accrual a visit earns at `tier` when `redeemed` bonuses paid part of its bill:
    the tier's percent of what was paid in money, whole bonuses rounded down."""
    if visit.kind in rules.no_accrual_kinds or visit.amount <= 0:
        return None
    paid = max(visit.amount - redeemed, ZERO)
    earned = (paid * tier.accrual_percent / 100).quantize(ONE, rounding=ROUND_DOWN)
    if earned <= 0:
        return None
    return Entry(
        ACCRUAL,
        earned,
        ref=f"visit:{visit.id}",
        visit_id=visit.id,
        work_order=visit.external_id,
        branch_id=visit.branch_id,
        reason=f"{tier.name}: {tier.accrual_percent.normalize():f} %",
    )


async def redeemed_for(session: AsyncSession, work_order: str | None) -> Decimal:
    """Bonuses spent on a work order's bill (less what reversals gave back)."""
    if work_order is None:
        return ZERO
    spent = await session.scalar(
        select(func.coalesce(func.sum(BonusMovement.amount), 0)).where(
            BonusMovement.work_order == work_order, BonusMovement.kind.in_(SPENT_ON_BILLS)
        )
    )
    return -money(spent or 0)


async def redeem(
    session: AsyncSession,
    rules: BonusRules,
    client_id: int,
    *,
    amount: Decimal,
    bill: Decimal,
    ref: str,
    moment: Moment,
    work_order: str | None = None,
    allow_partial: bool = True,
    branch_id: int | None = None,
) -> Redemption:
    """Pay part of a bill with bonuses; return what was accepted.

    Accepts the least of: the amount asked, the balance, and what the percent cap leaves of
    the bill. With `allow_partial` false, anything short of the amount asked is refused.
    Nothing accepted is InsufficientBonuses (409), with the reason.
    """
    amount, bill = money(amount), money(bill)
    if amount <= 0:
        raise DomainError("the amount to redeem must be positive", field="amount")
    if bill <= 0:
        raise DomainError("the bill must be positive", field="bill")
    await lock_account(session, client_id)
    found = await repeated(session, ref, client_id, (REDEMPTION,))
    if found is not None:
        left = await balance(session, client_id, moment.today)
        return Redemption(-found.amount, left, found.id, repeated=True)
    await expire_client(session, client_id, moment)
    available = await balance(session, client_id, moment.today)
    cap = (bill * rules.max_redeem_percent / 100).quantize(CENT, rounding=ROUND_DOWN)
    cap_left = max(cap - await redeemed_for(session, work_order), ZERO)
    accepted = min(amount, available, cap_left)
    if accepted <= 0 or (accepted < amount and not allow_partial):
        raise InsufficientBonuses(
            _shortfall(amount, available, cap, cap_left, rules.max_redeem_percent),
            field="amount",
        )
    entry = Entry(
        REDEMPTION, accepted, ref=ref, work_order=work_order, bill=bill, branch_id=branch_id
    )
    moved = await debit(session, client_id, entry, moment)
    return Redemption(accepted, available - accepted, moved.id)


@dataclass(frozen=True, slots=True)
class Reversal:
    returned: Decimal
    balance: Decimal
    repeated: bool = False


async def reverse_redemption(
    session: AsyncSession, client_id: int, ref: str, moment: Moment
) -> Reversal:
    """Give back what the redemption `ref` took, because its bill was cancelled; once.

    The bonuses go back onto the lots they came from, so they keep their expiry. What came
    from a lot that has expired since is not given back: it would have expired anyway.
    NotFound when the client has no redemption under `ref`.
    """
    await lock_account(session, client_id)
    redemption = await session.scalar(
        select(BonusMovement).where(
            BonusMovement.external_ref == ref,
            BonusMovement.client_id == client_id,
            BonusMovement.kind == REDEMPTION,
        )
    )
    if redemption is None:
        raise NotFound(f"the client has no redemption {ref!r}", field="ref")
    own_ref = f"reversal:{redemption.id}"
    done = await repeated(session, own_ref, client_id, (REVERSAL,))
    if done is not None:
        return Reversal(done.amount, await balance(session, client_id, moment.today), True)
    taken = await session.execute(
        select(BonusPosting.lot_id, BonusPosting.amount)
        .join(BonusLot, BonusLot.id == BonusPosting.lot_id)
        .where(BonusPosting.movement_id == redemption.id, live(moment.today))
        .order_by(BonusPosting.id)
    )
    back = [(lot_id, -money(amount)) for lot_id, amount in taken]
    returned = sum((amount for _, amount in back), ZERO)
    if returned <= 0:
        raise Conflict(
            f"the bonuses of redemption {ref!r} have expired since: nothing to give back",
            field="ref",
        )
    entry = Entry(
        REVERSAL,
        returned,
        ref=own_ref,
        work_order=redemption.work_order,
        bill=redemption.bill,
        reason=f"{ref} cancelled",
    )
    await give_back(session, client_id, entry, back, moment)
    return Reversal(returned, await balance(session, client_id, moment.today))


def _shortfall(
    amount: Decimal, available: Decimal, cap: Decimal, cap_left: Decimal, percent: Decimal
) -> str:
    if available <= 0:
        return "the client has no bonuses to spend"
    if cap_left < min(amount, available):
        spent = f" ({cap - cap_left} already spent on this work order)" if cap_left < cap else ""
        return (
            f"bonuses may pay at most {percent.normalize():f} % of the bill: {cap}{spent}; "
            f"asked {amount}"
        )
    return f"the balance is {available}, less than the {amount} asked"


async def adjust(
    session: AsyncSession,
    rules: BonusRules,
    client_id: int,
    *,
    amount: Decimal,
    reason: str,
    actor: str,
    moment: Moment,
    ref: str | None = None,
) -> Moved:
    """A manual correction by staff: + adds a lot (with the usual expiry), - takes from the
    oldest lots. The reason and who made it are required and kept."""
    amount = money(amount)
    reason, actor = " ".join(reason.split()), actor.strip()
    if amount == 0:
        raise DomainError("an adjustment of 0 changes nothing", field="amount")
    if not reason:
        raise DomainError("give the reason for the adjustment", field="reason")
    if not actor:
        raise DomainError("say who makes the adjustment", field="actor")
    entry = Entry(ADJUSTMENT, abs(amount), ref=ref, reason=reason, actor=actor)
    if amount > 0:
        return await credit(session, client_id, entry, moment, valid_days=rules.expire_after_days)
    await lock_account(session, client_id)
    if (found := await repeated(session, ref, client_id, (ADJUSTMENT,))) is not None:
        return found
    await expire_client(session, client_id, moment)
    try:
        return await debit(session, client_id, entry, moment)
    except InsufficientBonuses as short:
        raise InsufficientBonuses(
            f"cannot take {abs(amount)}: {short}; the balance never goes below zero",
            field="amount",
        ) from None


async def grant_welcome(
    session: AsyncSession, rules: BonusRules, client_id: int, moment: Moment
) -> Moved | None:
    """The welcome bonus for linking Telegram: once per client, whenever they link."""
    if rules.welcome <= 0:
        return None
    entry = Entry(WELCOME, rules.welcome, ref=f"welcome:{client_id}")
    return await credit(session, client_id, entry, moment, valid_days=rules.expire_after_days)


async def record_referral(
    session: AsyncSession, referred_id: int, referrer_id: int, moment: Moment
) -> bool:
    """Note that `referred_id` came on `referrer_id`'s word; False if it was already noted.

    Only a new client can be referred: one who has paid for a visit already is a Conflict,
    and so is a second referrer for the same client.
    """
    if referred_id == referrer_id:
        raise DomainError("a client cannot refer themselves", field="referred_by")
    existing = await session.get(Referral, referred_id)
    if existing is not None:
        if existing.referrer_id == referrer_id:
            return False
        raise Conflict("the client was already referred by another client", field="referred_by")
    paid = await session.scalar(
        select(Visit.id).where(Visit.client_id == referred_id, Visit.amount > 0).limit(1)
    )
    if paid is not None:
        raise Conflict(
            "the client has paid visits already: referral bonuses are for new clients",
            field="referred_by",
        )
    session.add(Referral(referred_id=referred_id, referrer_id=referrer_id, created_at=moment.now))
    await session.flush()
    return True


async def reward_referral(
    session: AsyncSession, rules: BonusRules, visit: VisitFacts, moment: Moment
) -> list[Moved]:
    """On a referred client's first paid visit, credit both sides; later visits add nothing."""
    if visit.amount <= 0:
        return []
    referral = await session.get(Referral, visit.client_id)
    if referral is None:
        return []
    earlier = await session.scalar(
        select(Visit.id)
        .where(Visit.client_id == visit.client_id, Visit.amount > 0, Visit.id != visit.id)
        .limit(1)
    )
    if earlier is not None:
        return []
    moved = []
    for client_id, amount, side in (
        (referral.referrer_id, rules.referral_referrer, "referrer"),
        (referral.referred_id, rules.referral_referred, "referred"),
    ):
        if amount > 0:
            entry = Entry(
                REFERRAL,
                amount,
                ref=f"referral:{referral.referred_id}:{side}",
                visit_id=visit.id,
                reason=side,
            )
            result = await credit(
                session, client_id, entry, moment, valid_days=rules.expire_after_days
            )
            if not result.repeated:
                moved.append(result)
    return moved

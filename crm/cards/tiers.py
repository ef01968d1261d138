"""Loyalty tiers: what a client's spend over the last year earns them.

A tier is reached by spend over a rolling year: the visits of the 365 (or 366) days up to
and including the day asked about. A card may pin a tier (a gold card handed to a VIP);
the client then has the higher of the pinned tier and the one their spend reaches.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import ScalarSelect, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.clock import years_before
from crm.errors import DomainError
from storage.bonuses import DiscountCard
from storage.models import Visit

ISSUED = "issued"  # the card state in which a card's pinned tier counts (see crm.cards.cards)


@dataclass(frozen=True, slots=True)
class Tier:
    name: str
    spend_from: Decimal
    accrual_percent: Decimal
    discount_percent: Decimal = Decimal(0)


@dataclass(frozen=True, slots=True)
class TierLadder:
    """Tiers from the lowest spend up; the first starts at 0 (config `[[tier]]`)."""

    tiers: tuple[Tier, ...]

    def __post_init__(self) -> None:
        if not self.tiers or self.tiers[0].spend_from != 0:
            raise ValueError("the first tier must start at a spend of 0")

    def for_spend(self, spend: Decimal) -> Tier:
        """The highest tier whose threshold the spend reaches (a threshold counts as reached)."""
        reached = self.tiers[0]
        for tier in self.tiers:
            if spend >= tier.spend_from:
                reached = tier
        return reached

    def find(self, name: str | None) -> Tier | None:
        """The tier of this name in any case, or None (a card may pin a tier the config
        no longer has: it counts as none, and the spend decides)."""
        if name is None:
            return None
        return next((t for t in self.tiers if t.name.casefold() == name.strip().casefold()), None)

    def named(self, name: str) -> Tier:
        found = self.find(name)
        if found is None:
            names = ", ".join(tier.name for tier in self.tiers)
            raise DomainError(f"no tier named {name!r}: the tiers are {names}", field="tier")
        return found

    def standing(self, spend: Decimal, pinned: str | None) -> Standing:
        """Where a year's `spend` and a card's pinned tier (by name) put the client."""
        pinned_tier = self.find(pinned)
        tier = self.higher(self.for_spend(spend), pinned_tier)
        return Standing(tier, spend, pinned_tier, self.above(tier))

    def above(self, tier: Tier) -> Tier | None:
        index = self.tiers.index(tier)
        return self.tiers[index + 1] if index + 1 < len(self.tiers) else None

    def higher(self, one: Tier, other: Tier | None) -> Tier:
        if other is None:
            return one
        return max(one, other, key=self.tiers.index)


@dataclass(frozen=True, slots=True)
class Standing:
    """Where a client stands on the ladder on a day, and what the next tier needs."""

    tier: Tier
    spend: Decimal
    pinned: Tier | None
    next: Tier | None

    @property
    def to_next(self) -> Decimal | None:
        return None if self.next is None else max(self.next.spend_from - self.spend, Decimal(0))


def year_window(today: date) -> tuple[date, date]:
    """The rolling year ending `today`: (first day excluded, last day included)."""
    return years_before(today, 1), today


async def standing(
    session: AsyncSession,
    ladder: TierLadder,
    client_id: int,
    today: date,
    *,
    excluding_visit: int | None = None,
) -> Standing:
    """The client's tier on `today`; `excluding_visit` leaves out the visit being rewarded,
    so a visit earns at the tier the client had when they came."""
    start, end = year_window(today)
    spend, pinned = standing_columns(client_id, start, end, excluding_visit=excluding_visit)
    row = (await session.execute(select(spend, pinned))).one()
    return read_standing(ladder, row[0], row[1])


def standing_columns(
    client: Any, start: Any, end: Any, *, excluding_visit: int | None = None
) -> tuple[ScalarSelect[Any], ScalarSelect[Any]]:
    """The year's spend and the pinned tier as columns of one query (see `year_window`);
    `client`, `start` and `end` are values or bound parameters."""
    conditions = [Visit.client_id == client, Visit.visited_on > start, Visit.visited_on <= end]
    if excluding_visit is not None:
        conditions.append(Visit.id != excluding_visit)
    spend = select(func.coalesce(func.sum(Visit.amount), 0)).where(*conditions).scalar_subquery()
    pinned = (
        select(DiscountCard.tier)
        .where(DiscountCard.client_id == client, DiscountCard.state == ISSUED)
        .limit(1)
        .scalar_subquery()
    )
    return spend, pinned


def read_standing(ladder: TierLadder, spend: Any, pinned: str | None) -> Standing:
    """The standing from what `standing_columns` read."""
    return ladder.standing(Decimal(spend).quantize(Decimal("0.01")), pinned)

"""Discount cards: numbers, a lifecycle with the reason and date of every change, holders.

    produced --issue--> issued --lose--> lost --replace--> replaced
                          |  \\--replace--> replaced        |
                          |                         lost --found--> issued
                          \\--withdraw--> withdrawn  <--withdraw-- lost / produced

A client holds at most one issued card. Replacing a card issues the new one to the same
holder with the same pinned tier and points the old one at it; the old card keeps its
history, and a look-up by its number still finds the client.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.cards.tiers import ISSUED
from crm.errors import Conflict, DomainError, NotFound
from storage.bonuses import CardEvent, DiscountCard
from storage.models import Client

PRODUCED = "produced"
LOST = "lost"
WITHDRAWN = "withdrawn"
REPLACED = "replaced"
STATES = (PRODUCED, ISSUED, LOST, WITHDRAWN, REPLACED)

_MOVES = {
    PRODUCED: (ISSUED, WITHDRAWN),
    ISSUED: (LOST, WITHDRAWN, REPLACED),
    LOST: (ISSUED, WITHDRAWN, REPLACED),
    WITHDRAWN: (),
    REPLACED: (),
}
_NUMBER = re.compile(r"[0-9A-Z]{4,32}")


@dataclass(frozen=True, slots=True)
class CardEventInfo:
    state: str
    happened_at: datetime
    reason: str
    actor: str
    client_id: int | None


@dataclass(frozen=True, slots=True)
class CardInfo:
    number: str
    state: str
    client_id: int | None
    tier: str | None
    replaced_by: str | None
    events: tuple[CardEventInfo, ...] = ()


def card_number(text: str) -> str:
    """A card number as printed ("2000 0012-34") in one canonical form ("2000001234").

    Spaces and dashes go; letters are upper-cased; 4 to 32 latin letters and digits remain.
    """
    number = re.sub(r"[\s\-]", "", text).upper()
    if not _NUMBER.fullmatch(number):
        raise DomainError(
            f"not a card number {text.strip()!r}: 4 to 32 latin letters and digits",
            field="card",
        )
    return number


async def produce(
    session: AsyncSession, numbers: Iterable[str], *, actor: str, now: datetime
) -> int:
    """Register a batch of printed cards; numbers already known are left as they are."""
    wanted = list(dict.fromkeys(card_number(n) for n in numbers))
    known = set(
        await session.scalars(select(DiscountCard.number).where(DiscountCard.number.in_(wanted)))
    )
    created = 0
    for number in wanted:
        if number not in known:
            card = _new_card(session, number, now)
            await session.flush()
            _record(session, card, PRODUCED, "", actor, now)
            created += 1
    await session.flush()
    return created


async def issue(
    session: AsyncSession,
    number: str,
    client_id: int,
    *,
    actor: str,
    now: datetime,
    reason: str = "",
    tier: str | None = None,
) -> CardInfo:
    """Hand a card to a client: a produced card, one never registered (it is registered now),
    or a lost card found again by its holder. Issuing a card its holder already has is a no-op.
    """
    number = card_number(number)
    if await session.get(Client, client_id) is None:
        raise NotFound(f"no client #{client_id}", field="client")
    card = await _find(session, number)
    if card is not None and card.state == ISSUED and card.client_id == client_id:
        return await describe(session, card)
    held = await _active(session, client_id)
    if held is not None and (card is None or held.id != card.id):
        raise Conflict(
            f"the client already holds card {held.number}: replace it instead", field="card"
        )
    if card is None:
        card = _new_card(session, number, now)
        await session.flush()
    elif card.state == LOST and card.client_id != client_id:
        raise Conflict(f"card {number} was lost by another client", field="card")
    _move(card, ISSUED)
    card.client_id = client_id
    if tier is not None:
        card.tier = tier
    card.updated_at = now
    _record(session, card, ISSUED, reason, actor, now)
    await session.flush()
    return await describe(session, card)


async def change_state(
    session: AsyncSession, number: str, state: str, *, reason: str, actor: str, now: datetime
) -> CardInfo:
    """Mark a card lost or withdrawn; the reason is required and kept with the date."""
    if state not in (LOST, WITHDRAWN):
        raise DomainError(f"a card can be marked {LOST} or {WITHDRAWN}, not {state!r}")
    reason = _required(reason)
    card = await _get(session, number)
    _move(card, state)
    card.updated_at = now
    _record(session, card, state, reason, actor, now)
    await session.flush()
    return await describe(session, card)


async def replace(
    session: AsyncSession, number: str, new_number: str, *, reason: str, actor: str, now: datetime
) -> CardInfo:
    """Put a new card in the place of an issued or lost one: same holder, same pinned tier.

    The new card may be a produced one or a number never registered; the old card becomes
    `replaced` and points at the new one. A lost card whose holder has since been issued
    another one cannot be replaced: they would hold two.
    """
    reason = _required(reason)
    old = await _get(session, number)
    _check_move(old, REPLACED)
    new_number = card_number(new_number)
    new = await _find(session, new_number)
    if new is not None and new.state != PRODUCED:
        raise Conflict(
            f"card {new_number} is {new.state}: only a new card can replace another", field="card"
        )
    if old.client_id is not None:
        held = await _active(session, old.client_id)
        if held is not None and held.id != old.id:
            raise Conflict(
                f"the holder of card {old.number} already holds card {held.number}", field="card"
            )
    if new is None:
        new = _new_card(session, new_number, now)
        await session.flush()
    _move(old, REPLACED)
    old.replaced_by_id = new.id
    old.updated_at = now
    _record(session, old, REPLACED, reason, actor, now)
    new.state, new.client_id, new.tier, new.updated_at = ISSUED, old.client_id, old.tier, now
    _record(session, new, ISSUED, f"replaces {old.number}", actor, now)
    await session.flush()
    return await describe(session, new)


async def find_card(session: AsyncSession, number: str) -> CardInfo:
    """A card with its whole history; NotFound when the number is unknown."""
    return await describe(session, await _get(session, number))


async def active_card(session: AsyncSession, client_id: int) -> CardInfo | None:
    card = await _active(session, client_id)
    return None if card is None else await describe(session, card, with_events=False)


async def describe(
    session: AsyncSession, card: DiscountCard, *, with_events: bool = True
) -> CardInfo:
    replaced_by = None
    if card.replaced_by_id is not None:
        replaced_by = await session.scalar(
            select(DiscountCard.number).where(DiscountCard.id == card.replaced_by_id)
        )
    events: tuple[CardEventInfo, ...] = ()
    if with_events:
        rows = await session.scalars(
            select(CardEvent).where(CardEvent.card_id == card.id).order_by(CardEvent.id)
        )
        events = tuple(
            CardEventInfo(e.state, e.happened_at, e.reason, e.actor, e.client_id) for e in rows
        )
    return CardInfo(card.number, card.state, card.client_id, card.tier, replaced_by, events)


def _new_card(session: AsyncSession, number: str, now: datetime) -> DiscountCard:
    card = DiscountCard(number=number, state=PRODUCED, created_at=now, updated_at=now)
    session.add(card)
    return card


def _move(card: DiscountCard, state: str) -> None:
    _check_move(card, state)
    card.state = state


def _check_move(card: DiscountCard, state: str) -> None:
    """Refuse a change the lifecycle does not allow; checked before anything is changed."""
    if state not in _MOVES[card.state]:
        allowed = ", ".join(_MOVES[card.state]) or "nothing: its life is over"
        raise Conflict(
            f"card {card.number} is {card.state}: it cannot become {state} "
            f"(it can become {allowed})",
            field="card",
        )


def _record(
    session: AsyncSession, card: DiscountCard, state: str, reason: str, actor: str, now: datetime
) -> None:
    session.add(
        CardEvent(
            card_id=card.id,
            state=state,
            client_id=card.client_id,
            reason=reason,
            actor=actor,
            happened_at=now,
        )
    )


def _required(reason: str) -> str:
    reason = " ".join(reason.split())
    if not reason:
        raise DomainError("give the reason for the change", field="reason")
    return reason


async def _find(session: AsyncSession, number: str) -> DiscountCard | None:
    found: DiscountCard | None = await session.scalar(
        select(DiscountCard).where(DiscountCard.number == number)
    )
    return found


async def _get(session: AsyncSession, number: str) -> DiscountCard:
    number = card_number(number)
    card = await _find(session, number)
    if card is None:
        raise NotFound(f"no card {number}", field="card")
    return card


async def _active(session: AsyncSession, client_id: int) -> DiscountCard | None:
    found: DiscountCard | None = await session.scalar(
        select(DiscountCard).where(
            DiscountCard.client_id == client_id, DiscountCard.state == ISSUED
        )
    )
    return found

"""The bonus ledger: credits open lots, debits take from the oldest lots first.

Every write to one client's account runs under `lock_account`, so two redemptions that
race are applied one after the other and the second sees what the first took: a balance
never goes below zero. An `external_ref` is checked under the same lock and is unique in
the table, so the same reference never moves bonuses twice.

A lot is usable until its `expires_on` (exclusive, the company's date). The balance counts
live lots only, so it is right on the day a lot expires even before the expiry is written;
`expire` writes the expiry movements that make the history say so.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Select, func, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.clock import Moment
from crm.errors import Conflict, DomainError, NotFound
from storage.bonuses import BonusLot, BonusMovement, BonusPosting
from storage.bulk import insert_rows, table_of
from storage.models import Client

ACCRUAL = "accrual"
WELCOME = "welcome"
BIRTHDAY = "birthday"
REFERRAL = "referral"
OPENING = "opening"  # a balance carried over from the dealer's old system
ADJUSTMENT = "adjustment"
REDEMPTION = "redemption"
REVERSAL = "reversal"  # a redemption given back: its bill was cancelled
EXPIRY = "expiry"
GIFT = "gift"  # given with a greeting of the occasion calendar (crm/occasions.py)
KINDS = (
    ACCRUAL, WELCOME, BIRTHDAY, REFERRAL, OPENING, ADJUSTMENT, REDEMPTION, REVERSAL, EXPIRY, GIFT,
)  # fmt: skip
SPENT_ON_BILLS = (REDEMPTION, REVERSAL)  # together: what bonuses paid of a work order

ZERO = Decimal("0.00")

# Built once (Core tables, not the ORM): every work order writes a movement, a lot, a posting.
_INSERT_MOVEMENT = insert(table_of(BonusMovement)).returning(table_of(BonusMovement).c.id)
_INSERT_LOT = insert(table_of(BonusLot)).returning(table_of(BonusLot).c.id)
_INSERT_POSTING = insert(table_of(BonusPosting))
CENT = Decimal("0.01")


class InsufficientBonuses(Conflict):
    code = "insufficient_balance"


@dataclass(frozen=True, slots=True)
class Entry:
    """A movement to write: its kind, a positive amount, and what it is about."""

    kind: str
    amount: Decimal
    ref: str | None = None
    visit_id: int | None = None
    work_order: str | None = None
    bill: Decimal | None = None
    branch_id: int | None = None
    reason: str | None = None
    actor: str | None = None


@dataclass(frozen=True, slots=True)
class Moved:
    """A movement as written (or found, when its reference was used before: `repeated`)."""

    id: int
    client_id: int
    kind: str
    amount: Decimal  # signed: + credit, - debit
    expires_on: date | None
    repeated: bool = False


def money(value: Decimal | int | str) -> Decimal:
    """An amount of bonuses to the kopeck; refuses what is not a finite positive-or-zero sum."""
    amount = Decimal(value)
    if not amount.is_finite():
        raise DomainError(f"{value!r} is not an amount", field="amount")
    return amount.quantize(CENT)


def live(today: Any) -> ColumnElement[bool]:
    """Lots still usable on `today`."""
    return or_(BonusLot.expires_on.is_(None), BonusLot.expires_on > today)


def lots_left(
    *where: ColumnElement[bool],
) -> Select[int, int, date, date | None, Decimal]:
    """Lots matching `where` that have something left on them: `id`, `client_id`,
    `earned_on`, `expires_on` and `left` (the sum of their postings)."""
    left = func.sum(BonusPosting.amount)
    lot = (BonusLot.id, BonusLot.client_id, BonusLot.earned_on, BonusLot.expires_on)
    return (
        select(*lot, left.label("left"))
        .join(BonusPosting, BonusPosting.lot_id == BonusLot.id)
        .where(*where)
        .group_by(*lot)
        .having(left > 0)
    )


async def lock_account(session: AsyncSession, client_id: int, *, known: bool = False) -> None:
    """Take the client's account for this transaction; NotFound when there is no client.

    PostgreSQL: the client row is locked FOR NO KEY UPDATE until commit; a second writer waits
    here. SQLite: write transactions begin IMMEDIATE and so already run one at a time; with
    `known` (the caller has just read the client) there is nothing left to do.
    """
    if known and session.get_bind().dialect.name == "sqlite":
        return
    query = select(Client.id).where(Client.id == client_id)
    if session.get_bind().dialect.name != "sqlite":
        # NO KEY UPDATE: inserting a visit or a card of this client takes a KEY SHARE lock on
        # the row (the foreign key check), which a plain FOR UPDATE would wait for: two
        # work orders of one client in flight at once deadlocked.
        query = query.with_for_update(key_share=True)
    if await session.scalar(query) is None:
        raise NotFound(f"no client #{client_id}", field="client")


async def balance(session: AsyncSession, client_id: int, today: date) -> Decimal:
    """The bonuses the client can spend on `today`: the postings on their live lots."""
    return money(await session.scalar(balance_query(client_id, today)) or 0)


def balance_query(client: Any, today: Any) -> Select[Any]:
    """The balance as a query; `client` and `today` are values or bound parameters."""
    return (
        select(func.coalesce(func.sum(BonusPosting.amount), 0))
        .join(BonusLot, BonusLot.id == BonusPosting.lot_id)
        .where(BonusPosting.client_id == client, live(today))
    )


async def repeated(
    session: AsyncSession, ref: str | None, client_id: int, kinds: tuple[str, ...]
) -> Moved | None:
    """The movement already written under `ref`, if any. A reference used for another client
    or another kind of movement is a Conflict: the caller reused one by mistake."""
    if ref is None:
        return None
    found = await session.scalar(select(BonusMovement).where(BonusMovement.external_ref == ref))
    if found is None:
        return None
    if found.client_id != client_id or found.kind not in kinds:
        raise Conflict(
            f"reference {ref!r} was already used for a {found.kind} of another "
            f"{'client' if found.client_id != client_id else 'kind'}",
            field="ref",
            code="ref_conflict",
        )
    expires_on = await session.scalar(
        select(BonusLot.expires_on).where(BonusLot.movement_id == found.id)
    )
    return Moved(found.id, found.client_id, found.kind, money(found.amount), expires_on, True)


async def credit(
    session: AsyncSession,
    client_id: int,
    entry: Entry,
    moment: Moment,
    *,
    valid_days: int | None,
    locked: bool = False,
) -> Moved:
    """Add bonuses as a new lot, usable for `valid_days` days from today (None or 0: forever).

    `locked`: the caller holds the account lock and knows `entry.ref` is new (it names a
    record made in this transaction); the unique reference still guards it.
    """
    amount = money(entry.amount)
    if amount <= 0:
        raise DomainError(f"a credit must be positive, not {amount}", field="amount")
    if not locked:
        await lock_account(session, client_id)
        if (found := await repeated(session, entry.ref, client_id, (entry.kind,))) is not None:
            return found
    movement_id = await _write_movement(session, client_id, entry, amount, moment)
    expires_on = moment.today + timedelta(days=valid_days) if valid_days else None
    lot_id = await session.scalar(
        _INSERT_LOT,
        {
            "client_id": client_id,
            "movement_id": movement_id,
            "amount": amount,
            "earned_on": moment.today,
            "expires_on": expires_on,
        },
    )
    await session.execute(
        _INSERT_POSTING,
        {"movement_id": movement_id, "lot_id": lot_id, "client_id": client_id, "amount": amount},
    )
    return Moved(movement_id, client_id, entry.kind, amount, expires_on)


async def debit(session: AsyncSession, client_id: int, entry: Entry, moment: Moment) -> Moved:
    """Take bonuses from the oldest live lots first; InsufficientBonuses when they do not
    cover the amount. The caller holds the account lock (see `lock_account`)."""
    amount = money(entry.amount)
    if amount <= 0:
        raise DomainError(f"a debit must be positive, not {amount}", field="amount")
    lots = await _remaining(session, client_id, live(moment.today))
    available = sum((left for _, left in lots), ZERO)
    if available < amount:
        raise InsufficientBonuses(f"the balance is {available}, less than {amount}", field="amount")
    movement_id = await _write_movement(session, client_id, entry, -amount, moment)
    postings, rest = [], amount
    for lot_id, left in lots:
        take = min(left, rest)
        postings.append(
            {"movement_id": movement_id, "lot_id": lot_id, "client_id": client_id, "amount": -take}
        )
        rest -= take
        if rest == 0:
            break
    await insert_rows(session, BonusPosting, postings)
    return Moved(movement_id, client_id, entry.kind, -amount, None)


async def give_back(
    session: AsyncSession,
    client_id: int,
    entry: Entry,
    lots: list[tuple[int, Decimal]],
    moment: Moment,
) -> Moved:
    """Put bonuses back onto the lots they were taken from, as one movement of `entry`'s
    kind. The caller holds the account lock and has checked that the lots are alive."""
    total = sum((amount for _, amount in lots), ZERO)
    movement_id = await _write_movement(session, client_id, entry, total, moment)
    await insert_rows(
        session,
        BonusPosting,
        [
            {"movement_id": movement_id, "lot_id": lot_id, "client_id": client_id, "amount": amount}
            for lot_id, amount in lots
        ],
    )
    return Moved(movement_id, client_id, entry.kind, total, None)


async def expire_client(session: AsyncSession, client_id: int, moment: Moment) -> Decimal:
    """Write off what is left of the client's lots whose day has come; return the total.

    Each lot's write-off carries the reference `expiry:<lot id>`, so running it again, or
    from two processes, writes nothing twice. The caller holds the account lock.
    """
    due = await _remaining(
        session, client_id, BonusLot.expires_on.is_not(None) & (BonusLot.expires_on <= moment.today)
    )
    total = ZERO
    for lot_id, left in due:
        entry = Entry(EXPIRY, left, ref=f"expiry:{lot_id}", reason="срок действия истёк")
        movement_id = await _write_movement(session, client_id, entry, -left, moment)
        await session.execute(
            _INSERT_POSTING,
            {"movement_id": movement_id, "lot_id": lot_id, "client_id": client_id, "amount": -left},
        )
        total += left
    return total


async def clients_with_expired_lots(
    session: AsyncSession, today: date, *, after: int = 0, limit: int = 500
) -> list[int]:
    """Clients (by id, from `after` on) with a lot that expired with something left on it."""
    due = lots_left(BonusLot.expires_on <= today, BonusLot.client_id > after).subquery()
    rows = await session.scalars(
        select(due.c.client_id).distinct().order_by(due.c.client_id).limit(limit)
    )
    return list(rows)


async def _remaining(
    session: AsyncSession, client_id: int, which: ColumnElement[bool]
) -> list[tuple[int, Decimal]]:
    """(lot id, what is left) of the client's lots matching `which` with something left,
    oldest first."""
    lots = lots_left(BonusLot.client_id == client_id, which)
    rows = await session.execute(lots.order_by(BonusLot.earned_on, BonusLot.id))
    return [(row.id, money(row.left)) for row in rows]


async def _write_movement(
    session: AsyncSession, client_id: int, entry: Entry, amount: Decimal, moment: Moment
) -> int:
    """Insert the movement (Core, not the ORM: a work order writes one per request)."""
    movement_id: int | None = await session.scalar(
        _INSERT_MOVEMENT,
        {
            "client_id": client_id,
            "kind": entry.kind,
            "amount": amount,
            "external_ref": entry.ref,
            "visit_id": entry.visit_id,
            "work_order": entry.work_order,
            "bill": entry.bill,
            "branch_id": entry.branch_id,
            "reason": entry.reason,
            "actor": entry.actor,
            "created_at": moment.now,
        },
    )
    assert movement_id is not None
    return movement_id

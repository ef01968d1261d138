"""A cancelled bill gives back what its redemption took: onto the same lots, once."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from crm.bonuses import (
    REVERSAL,
    InsufficientBonuses,
    Reversal,
    redeemed_for,
    reverse_redemption,
)
from crm.errors import Conflict, NotFound
from storage.bonuses import BonusMovement
from tests.support.databases import Database
from tests.support.messaging import add_client
from tests.test_bonus_ledger import TODAY, balance_on, give, ledger, lot_of, on, postings, spend


async def reverse(db: Database, client_id: int, ref: str, day: date = TODAY) -> Reversal:
    async with db.sessions() as s, s.begin():
        return await reverse_redemption(s, client_id, ref, on(day))


async def test_a_reversal_puts_the_bonuses_back_on_the_lots_they_came_from(db: Database) -> None:
    client = await add_client(db)
    older = await give(db, client, "100", day=TODAY - timedelta(days=10))
    newer = await give(db, client, "500")
    await spend(db, client, "300", ref="POS-1", work_order="WO-1")  # 100 from older, 200 newer

    done = await reverse(db, client, "POS-1")

    assert (done.returned, done.balance, done.repeated) == (
        Decimal("300.00"),
        Decimal("600.00"),
        False,
    )
    redemption = await _movement(db, "POS-1")
    assert (await ledger(db, client))[-1] == (
        REVERSAL, Decimal("300.00"), f"reversal:{redemption}",
    )  # fmt: skip
    reversal_postings = await postings(db, await _movement(db, f"reversal:{redemption}"))
    assert reversal_postings == [
        (await lot_of(db, older.id), Decimal("100.00")),
        (await lot_of(db, newer.id), Decimal("200.00")),
    ]
    async with db.sessions() as s:
        assert await redeemed_for(s, "WO-1") == Decimal("0.00")  # the work order's cap is free


async def test_a_reversal_twice_gives_back_once(db: Database) -> None:
    client = await add_client(db)
    await give(db, client, "500")
    await spend(db, client, "200", ref="POS-1")
    await reverse(db, client, "POS-1")

    again = await reverse(db, client, "POS-1")

    assert (again.returned, again.repeated) == (Decimal("200.00"), True)
    assert await balance_on(db, client) == Decimal("500.00")


async def test_what_came_from_a_lot_that_expired_since_is_not_given_back(db: Database) -> None:
    client = await add_client(db)
    await give(db, client, "100", days=5)  # usable until TODAY + 5
    await give(db, client, "400")
    await spend(db, client, "300", ref="POS-1")  # 100 from the short lot, 200 from the long

    later = TODAY + timedelta(days=5)
    done = await reverse(db, client, "POS-1", day=later)

    assert done.returned == Decimal("200.00")
    assert await balance_on(db, client, later) == Decimal("400.00")


async def test_only_a_redemption_of_this_client_can_be_reversed(db: Database) -> None:
    client, other = await add_client(db), await add_client(db)
    await give(db, client, "500")
    await spend(db, client, "100", ref="POS-1")

    with pytest.raises(NotFound):
        await reverse(db, other, "POS-1")
    with pytest.raises(NotFound):
        await reverse(db, client, "POS-404")


async def test_a_redemption_whose_lots_all_expired_gives_nothing_back(db: Database) -> None:
    client = await add_client(db)
    await give(db, client, "100", days=2)
    await spend(db, client, "100", ref="POS-1")

    with pytest.raises(Conflict, match="expired since"):
        await reverse(db, client, "POS-1", day=TODAY + timedelta(days=2))
    with pytest.raises(InsufficientBonuses):
        await spend(db, client, "1", day=TODAY + timedelta(days=2))


async def _movement(db: Database, ref: str) -> int:
    async with db.sessions() as s:
        found = await s.scalar(select(BonusMovement.id).where(BonusMovement.external_ref == ref))
    assert found is not None
    return found

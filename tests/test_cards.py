"""Discount cards and tiers on SQLite and PostgreSQL: numbers, the lifecycle, standing."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest

from crm.cards import (
    ISSUED,
    LOST,
    PRODUCED,
    REPLACED,
    WITHDRAWN,
    CardInfo,
    Tier,
    TierLadder,
    active_card,
    card_number,
    change_state,
    find_card,
    issue,
    produce,
    replace,
    standing,
)
from crm.errors import Conflict, DomainError
from crm.intake import ClientKey, find_client
from tests.support.clock import FakeClock
from tests.support.databases import Database
from tests.support.messaging import add_client, add_visit

TODAY = date(2026, 11, 24)
ACTOR = "ресепшен"
LADDER = TierLadder(
    (
        Tier("Base", Decimal(0), Decimal(3)),
        Tier("Silver", Decimal(50000), Decimal(5)),
        Tier("Gold", Decimal(150000), Decimal(7)),
    )
)


async def run(db: Database, action: Callable[..., Awaitable[Any]], *args: Any, **kw: Any) -> Any:
    """One action in its own transaction, as a request would run it."""
    async with db.sessions() as s, s.begin():
        return await action(s, *args, **kw)


async def card(db: Database, number: str) -> CardInfo:
    async with db.sessions() as s:
        return await find_card(s, number)


async def holder(db: Database, number: str) -> int:
    async with db.sessions() as s:
        return await find_client(s, ClientKey(card=number))


async def given(db: Database, clock: FakeClock, number: str, client_id: int, **kw: Any) -> None:
    await run(db, issue, number, client_id, actor=ACTOR, now=clock(), **kw)


async def marked(db: Database, clock: FakeClock, number: str, state: str, reason: str) -> None:
    await run(db, change_state, number, state, reason=reason, actor=ACTOR, now=clock())


# ----------------------------------------------------------------------------- numbers


@pytest.mark.parametrize(
    ("printed", "number"),
    [("2000 0012-34", "2000001234"), ("ab-12 cd", "AB12CD"), (" 2000\t0001 ", "20000001")],
)
def test_a_card_number_is_read_as_printed(printed: str, number: str) -> None:
    assert card_number(printed) == number


@pytest.mark.parametrize("printed", ["12", "карта", "", " - ", "1" * 33, "2000_0012"])
def test_what_is_not_a_card_number_is_refused(printed: str) -> None:
    with pytest.raises(DomainError, match="4 to 32 latin letters and digits") as refused:
        card_number(printed)
    assert refused.value.field == "card"


# --------------------------------------------------------------------------- lifecycle


async def test_a_lost_card_is_replaced_by_a_new_one_for_the_same_holder(
    db: Database, clock: FakeClock
) -> None:
    client = await add_client(db)
    produced_at = clock()
    assert await run(db, produce, ["2000 0012-34", "2000001234"], actor="склад", now=clock()) == 1
    issued_at = clock.advance(days=1)
    await given(db, clock, "2000-0012-34", client, tier="Gold", reason="VIP")
    lost_at = clock.advance(days=30)
    await marked(db, clock, "2000001234", LOST, "  потеряна   на мойке ")
    replaced_at = clock.advance(days=2)
    new = await run(
        db, replace, "2000001234", "2000 0099 99", reason="перевыпуск", actor=ACTOR, now=clock()
    )
    assert (new.number, new.state, new.client_id, new.tier, new.replaced_by) == (
        "2000009999", ISSUED, client, "Gold", None,
    )  # fmt: skip
    old = await card(db, "2000001234")
    assert (old.state, old.client_id, old.tier, old.replaced_by) == (
        REPLACED, client, "Gold", "2000009999",
    )  # fmt: skip
    assert [(e.state, e.happened_at, e.reason, e.actor, e.client_id) for e in old.events] == [
        (PRODUCED, produced_at, "", "склад", None),
        (ISSUED, issued_at, "VIP", ACTOR, client),
        (LOST, lost_at, "потеряна на мойке", ACTOR, client),
        (REPLACED, replaced_at, "перевыпуск", ACTOR, client),
    ]
    assert [(e.state, e.happened_at, e.reason) for e in (await card(db, "2000009999")).events] == [
        (ISSUED, replaced_at, "replaces 2000001234"),
    ]
    assert await holder(db, "2000 0012 34") == client  # the old number still finds the client
    async with db.sessions() as s:
        held = await active_card(s, client)
    assert held is not None
    assert held.number == "2000009999"


async def test_a_lost_card_found_again_goes_back_to_its_holder(
    db: Database, clock: FakeClock
) -> None:
    client = await add_client(db)
    await given(db, clock, "20000001", client, tier="Silver")
    clock.advance(hours=5)
    await marked(db, clock, "20000001", LOST, "забыл в машине")
    found_at = clock.advance(days=1)
    await given(db, clock, "20000001", client, reason="нашлась")
    back = await card(db, "20000001")
    assert (back.state, back.client_id, back.tier) == (ISSUED, client, "Silver")
    assert [(e.state, e.reason) for e in back.events] == [
        (ISSUED, ""), (LOST, "забыл в машине"), (ISSUED, "нашлась"),
    ]  # fmt: skip
    assert back.events[-1].happened_at == found_at


async def test_issuing_a_card_its_holder_already_has_changes_nothing(
    db: Database, clock: FakeClock
) -> None:
    client = await add_client(db)
    await given(db, clock, "20000001", client)
    clock.advance(days=1)
    await given(db, clock, "20000001", client, tier="Gold")
    again = await card(db, "20000001")
    assert (again.tier, len(again.events)) == (None, 1)


# ---------------------------------------------------------------------- forbidden moves


async def test_a_withdrawn_card_cannot_be_issued_again(db: Database, clock: FakeClock) -> None:
    client = await add_client(db)
    await given(db, clock, "20000001", client)
    await marked(db, clock, "20000001", WITHDRAWN, "сломана")
    with pytest.raises(Conflict, match="card 20000001 is withdrawn: it cannot become issued"):
        await given(db, clock, "20000001", client)
    with pytest.raises(Conflict, match="is withdrawn: it cannot become lost") as refused:
        await marked(db, clock, "20000001", LOST, "потеряна")
    assert refused.value.field == "card"
    assert (await card(db, "20000001")).state == WITHDRAWN


async def test_a_replaced_card_cannot_be_lost(db: Database, clock: FakeClock) -> None:
    client = await add_client(db)
    await given(db, clock, "20000001", client)
    await run(db, replace, "20000001", "20000002", reason="износ", actor=ACTOR, now=clock())
    with pytest.raises(Conflict, match="card 20000001 is replaced: it cannot become lost"):
        await marked(db, clock, "20000001", LOST, "потеряна")
    with pytest.raises(Conflict, match="is replaced: it cannot become replaced"):
        await run(db, replace, "20000001", "20000003", reason="ещё", actor=ACTOR, now=clock())


async def test_a_client_holds_one_card_at_a_time(db: Database, clock: FakeClock) -> None:
    client = await add_client(db)
    await given(db, clock, "20000001", client)
    with pytest.raises(Conflict, match="the client already holds card 20000001") as refused:
        await given(db, clock, "20000002", client)
    assert refused.value.field == "card"
    with pytest.raises(Conflict, match="card 20000001 is issued: it cannot become issued"):
        await given(db, clock, "20000001", await add_client(db))
    assert await holder(db, "20000001") == client


async def test_a_card_another_client_lost_cannot_be_issued(db: Database, clock: FakeClock) -> None:
    owner, other = await add_client(db), await add_client(db)
    await given(db, clock, "20000001", owner)
    await marked(db, clock, "20000001", LOST, "потеряна")
    with pytest.raises(Conflict, match="card 20000001 was lost by another client"):
        await given(db, clock, "20000001", other)
    assert (await card(db, "20000001")).client_id == owner


@pytest.mark.parametrize("state", [LOST, WITHDRAWN])
async def test_losing_or_withdrawing_a_card_needs_a_reason(
    db: Database, clock: FakeClock, state: str
) -> None:
    client = await add_client(db)
    await given(db, clock, "20000001", client)
    with pytest.raises(DomainError, match="give the reason") as refused:
        await marked(db, clock, "20000001", state, " \n ")
    assert refused.value.field == "reason"
    assert [e.state for e in (await card(db, "20000001")).events] == [ISSUED]


async def test_a_refused_change_leaves_the_card_as_it_was(db: Database, clock: FakeClock) -> None:
    # A caller that answers the refusal and commits what else it did (a batch, an import)
    # must not commit the card moved, and with no event saying so.
    for number in ("20000001", "20000002", "20000003"):
        await given(db, clock, number, await add_client(db))
    async with db.sessions() as s, s.begin():
        with pytest.raises(DomainError, match="give the reason"):
            await change_state(s, "20000001", LOST, reason="", actor=ACTOR, now=clock())
    async with db.sessions() as s, s.begin():
        with pytest.raises(Conflict, match="card 20000003 is issued: only a new card"):
            await replace(s, "20000002", "20000003", reason="износ", actor=ACTOR, now=clock())
    seen = [await card(db, number) for number in ("20000001", "20000002")]
    assert [(c.state, [e.state for e in c.events]) for c in seen] == [(ISSUED, [ISSUED])] * 2


async def test_a_replacement_never_gives_a_client_a_second_card(
    db: Database, clock: FakeClock
) -> None:
    # The lost card leaves the client with no issued card, so a new one may be issued; the
    # lost card may no longer be replaced then: the holder would have two.
    client = await add_client(db)
    await given(db, clock, "20000001", client)
    await marked(db, clock, "20000001", LOST, "потеряна")
    await given(db, clock, "20000002", client)
    with pytest.raises(Conflict):
        await run(
            db, replace, "20000001", "20000003", reason="перевыпуск", actor=ACTOR, now=clock()
        )


# ------------------------------------------------------------------------------- tiers


async def standing_of(db: Database, client_id: int, today: date = TODAY) -> tuple[Any, ...]:
    async with db.sessions() as s:
        seen = await standing(s, LADDER, client_id, today)
    pinned = seen.pinned.name if seen.pinned else None
    following = seen.next.name if seen.next else None
    return (seen.tier.name, seen.spend, pinned, following, seen.to_next)


async def test_the_tier_follows_spend_over_the_rolling_year(db: Database) -> None:
    client = await add_client(db)
    await add_visit(db, client, date(2025, 11, 24), "100000")  # a year to the day: outside
    await add_visit(db, client, date(2025, 11, 25), "20000")
    await add_visit(db, client, TODAY, "29999.99")
    await add_visit(db, client, TODAY + timedelta(days=1), "99999")  # tomorrow: not yet
    assert await standing_of(db, client) == (
        "Base", Decimal("49999.99"), None, "Silver", Decimal("0.01"),
    )  # fmt: skip
    await add_visit(db, client, date(2026, 6, 1), "0.01")  # 50000 exactly: the threshold counts
    assert await standing_of(db, client) == (
        "Silver", Decimal("50000.00"), None, "Gold", Decimal("100000.00"),
    )  # fmt: skip
    # A day later the 25 November 2025 visit drops out and tomorrow's comes in.
    assert await standing_of(db, client, TODAY + timedelta(days=1)) == (
        "Silver", Decimal("129999.00"), None, "Gold", Decimal("20001.00"),
    )  # fmt: skip


async def test_a_pinned_tier_counts_when_it_is_higher_than_spend(
    db: Database, clock: FakeClock
) -> None:
    vip, spender = await add_client(db), await add_client(db)
    await add_visit(db, spender, date(2026, 6, 1), "60000")
    await given(db, clock, "20000001", vip, tier="gold")
    await given(db, clock, "20000002", spender, tier="Base")
    assert await standing_of(db, vip) == ("Gold", Decimal("0.00"), "Gold", None, None)
    assert await standing_of(db, spender) == (
        "Silver", Decimal("60000.00"), "Base", "Gold", Decimal("90000.00"),
    )  # fmt: skip
    await marked(db, clock, "20000001", LOST, "потеряна")  # only an issued card pins a tier
    assert await standing_of(db, vip) == (
        "Base",
        Decimal("0.00"),
        None,
        "Silver",
        Decimal("50000.00"),
    )


async def test_a_pinned_tier_the_ladder_no_longer_has_is_ignored(
    db: Database, clock: FakeClock
) -> None:
    client = await add_client(db)
    await add_visit(db, client, date(2026, 6, 1), "50000")
    await given(db, clock, "20000001", client, tier="Platinum")
    assert (await card(db, "20000001")).tier == "Platinum"
    assert await standing_of(db, client) == (
        "Silver", Decimal("50000.00"), None, "Gold", Decimal("100000.00"),
    )  # fmt: skip

"""The bonus ledger and program on SQLite and PostgreSQL: lots, expiry, FIFO, caps, races."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import replace
from datetime import UTC, date, datetime, time
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, text

from crm.bonuses import (
    ACCRUAL,
    ADJUSTMENT,
    BIRTHDAY,
    EXPIRY,
    OPENING,
    REDEMPTION,
    REFERRAL,
    WELCOME,
    BonusRules,
    Entry,
    InsufficientBonuses,
    Moved,
    Redemption,
    VisitFacts,
    account,
    accrue_for_visit,
    adjust,
    balance,
    credit,
    expire_client,
    grant_welcome,
    record_referral,
    redeem,
    reward_referral,
)
from crm.bonuses.birthdays import grant_birthday_bonuses
from crm.cards import Tier, TierLadder, issue
from crm.clock import Moment
from crm.errors import Conflict, DomainError
from storage import create_engine, make_session_factory
from storage.bonuses import BonusMovement, BonusPosting
from storage.models import Branch, Client, Visit
from tests.support.clock import FakeClock
from tests.support.databases import Database
from tests.support.messaging import add_client, add_visit

MSK = ZoneInfo("Europe/Moscow")
TODAY = date(2026, 11, 24)  # the clock fixture's day in Moscow
STAMP = datetime(2026, 1, 1, tzinfo=UTC)
LADDER = TierLadder(
    (Tier("Base", Decimal(0), Decimal(3)), Tier("Silver", Decimal(50000), Decimal(5)))
)
RULES = BonusRules(ladder=LADDER)  # 30 % of a bill at most, lots live 365 days
WHOLE_BILL = BonusRules(ladder=LADDER, max_redeem_percent=Decimal(100))
_refs = itertools.count(1)


def on(day: date) -> Moment:
    """09:00 in Moscow on `day`."""
    return Moment(datetime.combine(day, time(6), UTC), day)


async def give(
    db: Database, client_id: int, amount: str, *, day: date = TODAY, days: int | None = 365,
    ref: str | None = None,
) -> Moved:  # fmt: skip
    async with db.sessions() as s, s.begin():
        entry = Entry(OPENING, Decimal(amount), ref=ref)
        return await credit(s, client_id, entry, on(day), valid_days=days)


async def spend(
    db: Database, client_id: int, amount: str, *, bill: str = "10000", ref: str | None = None,
    rules: BonusRules = WHOLE_BILL, day: date = TODAY, **extra: object,
) -> Redemption:  # fmt: skip
    async with db.sessions() as s, s.begin():
        return await redeem(
            s, rules, client_id, amount=Decimal(amount), bill=Decimal(bill),
            ref=ref or f"pos:{next(_refs)}", moment=on(day), **extra,
        )  # fmt: skip


async def balance_on(db: Database, client_id: int, day: date = TODAY) -> Decimal:
    async with db.sessions() as s:
        return await balance(s, client_id, day)


async def ledger(db: Database, client_id: int) -> list[tuple[str, Decimal, str | None]]:
    """(kind, signed amount, ref) of the client's movements, oldest first."""
    m = BonusMovement
    query = select(m.kind, m.amount, m.external_ref).where(m.client_id == client_id).order_by(m.id)
    async with db.sessions() as s:
        return [tuple(row) for row in await s.execute(query)]


async def postings(db: Database, movement_id: int) -> list[tuple[int, Decimal]]:
    """(lot id, amount) of one movement's postings."""
    p = BonusPosting
    query = select(p.lot_id, p.amount).where(p.movement_id == movement_id).order_by(p.lot_id)
    async with db.sessions() as s:
        return [tuple(row) for row in await s.execute(query)]


async def lot_of(db: Database, movement_id: int) -> int:
    """The lot a credit opened."""
    [(lot_id, _)] = await postings(db, movement_id)
    return lot_id


async def visit(
    db: Database, client_id: int, amount: str, *, kind: str = "repair",
    work_order: str | None = None,
) -> VisitFacts:  # fmt: skip
    """A visit today, as the work order being rewarded."""
    async with db.sessions() as s, s.begin():
        branch = await s.scalar(select(Branch.id))
        row = Visit(
            external_id=work_order, client_id=client_id, branch_id=branch, visited_on=TODAY,
            amount=Decimal(amount), kind=kind, created_at=STAMP, updated_at=STAMP,
        )  # fmt: skip
        s.add(row)
        await s.flush()
        return VisitFacts(row.id, client_id, work_order, kind, Decimal(amount), branch)


async def accrue(db: Database, facts: VisitFacts, rules: BonusRules = RULES) -> Moved | None:
    async with db.sessions() as s, s.begin():
        return await accrue_for_visit(s, rules, facts, on(TODAY))


async def earned(db: Database, facts: VisitFacts, rules: BonusRules = RULES) -> Decimal | None:
    moved = await accrue(db, facts, rules)
    return None if moved is None else moved.amount


async def born(db: Database, birthday: date) -> int:
    client_id = await add_client(db)
    async with db.sessions() as s, s.begin():
        (await s.get_one(Client, client_id)).birthday = birthday
    return client_id


# ---------------------------------------------------------------------------- lots, expiry


async def test_a_lot_is_spendable_until_the_day_before_it_expires(db: Database) -> None:
    client = await add_client(db)
    moved = await give(db, client, "100", days=30)  # 24 Nov + 30 days = 24 Dec
    await give(db, client, "7", days=None)
    await give(db, client, "3", days=0)
    assert moved.expires_on == date(2026, 12, 24)
    assert await balance_on(db, client, date(2026, 12, 23)) == Decimal("110.00")
    # On the day itself the lot is gone from the balance, though no expiry is written yet.
    assert await balance_on(db, client, date(2026, 12, 24)) == Decimal("10.00")
    assert [kind for kind, _, _ in await ledger(db, client)] == [OPENING] * 3
    assert await balance_on(db, client, date(2099, 1, 1)) == Decimal("10.00")


async def test_expiry_writes_off_what_is_left_on_each_lot_once(db: Database) -> None:
    client = await add_client(db)
    first = await give(db, client, "100", day=date(2026, 11, 1), days=30)  # expires 1 Dec
    second = await give(db, client, "200", day=date(2026, 11, 10), days=30)  # expires 10 Dec
    await give(db, client, "50", days=None)
    await spend(db, client, "30")  # from the oldest lot: 70 left on it
    async with db.sessions() as s, s.begin():
        assert await expire_client(s, client, on(date(2026, 12, 10))) == Decimal("270.00")
    async with db.sessions() as s, s.begin():
        assert await expire_client(s, client, on(date(2026, 12, 11))) == Decimal("0.00")
    first_lot, second_lot = await lot_of(db, first.id), await lot_of(db, second.id)
    rows = await ledger(db, client)
    assert rows[4:] == [
        (EXPIRY, Decimal("-70.00"), f"expiry:{first_lot}"),
        (EXPIRY, Decimal("-200.00"), f"expiry:{second_lot}"),
    ]
    # 100 + 200 + 50 - 30 - 70 - 200 = 50: the ledger and the balance say the same.
    assert sum(amount for _, amount, _ in rows) == Decimal("50.00")
    assert await balance_on(db, client, date(2026, 12, 11)) == Decimal("50.00")


async def test_a_debit_takes_the_oldest_lot_first(db: Database) -> None:
    client = await add_client(db)
    newer = await give(db, client, "200", day=date(2026, 11, 10))  # written first, earned later
    older = await give(db, client, "100", day=date(2026, 11, 1))
    taken = await spend(db, client, "150")
    assert (taken.accepted, taken.balance) == (Decimal("150.00"), Decimal("150.00"))
    older_lot, newer_lot = await lot_of(db, older.id), await lot_of(db, newer.id)
    assert sorted(await postings(db, taken.movement_id or 0)) == sorted(
        [(older_lot, Decimal("-100.00")), (newer_lot, Decimal("-50.00"))]
    )


# --------------------------------------------------------------------------- redemptions


async def test_bonuses_pay_at_most_the_percent_cap_of_the_bill(db: Database) -> None:
    client = await add_client(db)
    await give(db, client, "1000")
    taken = await spend(db, client, "500", bill="1000", rules=RULES)  # 30 % of 1000 = 300
    assert (taken.accepted, taken.balance, taken.repeated) == (
        Decimal("300.00"), Decimal("700.00"), False,
    )  # fmt: skip
    assert (await ledger(db, client))[-1][:2] == (REDEMPTION, Decimal("-300.00"))


async def test_without_partial_payment_a_capped_redemption_is_refused(db: Database) -> None:
    client = await add_client(db)
    await give(db, client, "1000")
    with pytest.raises(InsufficientBonuses, match=r"at most 30 % of the bill: 300\.00") as refused:
        await spend(db, client, "500", bill="1000", rules=RULES, allow_partial=False)
    assert isinstance(refused.value, Conflict)
    assert (refused.value.code, refused.value.field) == ("insufficient_balance", "amount")
    assert [kind for kind, _, _ in await ledger(db, client)] == [OPENING]


async def test_redemptions_on_one_work_order_share_the_cap(db: Database) -> None:
    client = await add_client(db)
    await give(db, client, "1000")
    first = await spend(db, client, "200", bill="1000", rules=RULES, work_order="WO-1")
    second = await spend(db, client, "200", bill="1000", rules=RULES, work_order="WO-1")
    assert (first.accepted, second.accepted) == (Decimal("200.00"), Decimal("100.00"))
    with pytest.raises(InsufficientBonuses, match=r"\(300\.00 already spent on this work order"):
        await spend(db, client, "50", bill="1000", rules=RULES, work_order="WO-1")
    other = await spend(db, client, "50", bill="1000", rules=RULES, work_order="WO-2")
    assert other.accepted == Decimal("50.00")
    assert await balance_on(db, client) == Decimal("650.00")


async def test_a_redemption_never_takes_more_than_the_balance(db: Database) -> None:
    client = await add_client(db)
    await give(db, client, "100")
    taken = await spend(db, client, "250", bill="10000", rules=RULES)  # the cap would be 3000
    assert (taken.accepted, taken.balance) == (Decimal("100.00"), Decimal("0.00"))
    with pytest.raises(InsufficientBonuses, match="the client has no bonuses to spend"):
        await spend(db, client, "1", rules=RULES)
    assert len(await ledger(db, client)) == 2


async def test_nothing_to_accept_is_refused_and_writes_nothing(db: Database) -> None:
    client = await add_client(db)
    await give(db, client, "100", day=date(2026, 10, 1), days=30)  # expired on 31 October
    with pytest.raises(InsufficientBonuses, match="no bonuses to spend") as refused:
        await spend(db, client, "10")
    assert refused.value.code == "insufficient_balance"
    # Not even the expiry the redemption wrote first survives the refusal.
    assert [kind for kind, _, _ in await ledger(db, client)] == [OPENING]


# --------------------------------------------------------------------------- idempotency


async def test_a_redemption_repeated_under_its_ref_moves_nothing_again(db: Database) -> None:
    client = await add_client(db)
    await give(db, client, "1000")
    first = await spend(db, client, "100", ref="pos:42")
    again = await spend(db, client, "60", ref="pos:42")  # the same ref answers as the first time
    assert (again.accepted, again.balance, again.movement_id, again.repeated) == (
        Decimal("100.00"), Decimal("900.00"), first.movement_id, True,
    )  # fmt: skip
    assert [(k, a) for k, a, _ in await ledger(db, client)] == [
        (OPENING, Decimal("1000.00")), (REDEMPTION, Decimal("-100.00")),
    ]  # fmt: skip


async def test_a_ref_used_for_another_client_is_a_conflict(db: Database) -> None:
    first, second = await add_client(db), await add_client(db)
    await give(db, first, "1000")
    await give(db, second, "1000")
    await spend(db, first, "100", ref="pos:7")
    with pytest.raises(Conflict, match="another client") as refused:
        await spend(db, second, "100", ref="pos:7")
    assert (refused.value.code, refused.value.field) == ("ref_conflict", "ref")
    assert await balance_on(db, second) == Decimal("1000.00")


async def test_a_credit_repeated_under_its_ref_opens_one_lot(db: Database) -> None:
    client = await add_client(db)
    first = await give(db, client, "500", ref="import:1")
    again = await give(db, client, "900", ref="import:1", days=10)  # answered as the first
    assert again == replace(first, repeated=True)
    assert len(await ledger(db, client)) == 1
    assert await balance_on(db, client) == Decimal("500.00")


# ---------------------------------------------------------------------------- adjustments


async def _adjust(db: Database, client_id: int, amount: str, reason: str = "жалоба",
                  actor: str = "manager") -> Moved:  # fmt: skip
    async with db.sessions() as s, s.begin():
        return await adjust(
            s, RULES, client_id, amount=Decimal(amount), reason=reason, actor=actor,
            moment=on(TODAY),
        )  # fmt: skip


async def test_a_positive_adjustment_opens_a_lot_with_the_usual_expiry(db: Database) -> None:
    client = await add_client(db)
    moved = await _adjust(db, client, "250", reason="  бонус   за отзыв ", actor=" Анна ")
    assert (moved.kind, moved.amount, moved.expires_on) == (
        ADJUSTMENT, Decimal("250.00"), date(2027, 11, 24),
    )  # fmt: skip
    async with db.sessions() as s:
        row = await s.get_one(BonusMovement, moved.id)
        assert (row.reason, row.actor) == ("бонус за отзыв", "Анна")


async def test_a_negative_adjustment_takes_from_the_oldest_lot(db: Database) -> None:
    client = await add_client(db)
    newer = await give(db, client, "100", day=date(2026, 11, 20))
    older = await give(db, client, "100", day=date(2026, 11, 2))
    moved = await _adjust(db, client, "-120")
    assert (moved.kind, moved.amount) == (ADJUSTMENT, Decimal("-120.00"))
    assert sorted(await postings(db, moved.id)) == sorted(
        [(await lot_of(db, older.id), Decimal("-100.00")),
         (await lot_of(db, newer.id), Decimal("-20.00"))]
    )  # fmt: skip
    assert await balance_on(db, client) == Decimal("80.00")


async def test_an_adjustment_below_zero_is_refused_and_writes_nothing(db: Database) -> None:
    client = await add_client(db)
    await give(db, client, "100")
    with pytest.raises(InsufficientBonuses, match="the balance never goes below zero"):
        await _adjust(db, client, "-100.01")
    assert len(await ledger(db, client)) == 1
    assert await balance_on(db, client) == Decimal("100.00")


@pytest.mark.parametrize(
    ("amount", "reason", "actor", "field"),
    [("0", "жалоба", "manager", "amount"), ("10", " \t ", "manager", "reason"),
     ("-10", "", "manager", "reason"), ("10", "жалоба", "  ", "actor")],
)  # fmt: skip
async def test_an_adjustment_needs_an_amount_a_reason_and_who_made_it(
    db: Database, amount: str, reason: str, actor: str, field: str
) -> None:
    client = await add_client(db)
    await give(db, client, "100")
    with pytest.raises(DomainError) as refused:
        await _adjust(db, client, amount, reason, actor)
    assert type(refused.value) is DomainError
    assert refused.value.field == field
    assert len(await ledger(db, client)) == 1


# ------------------------------------------------------------------------------- accruals


async def test_a_visit_earns_at_the_tier_the_client_had_when_they_came(db: Database) -> None:
    silver, base = await add_client(db), await add_client(db)
    await add_visit(db, silver, date(2026, 1, 10), "30000")
    await add_visit(db, silver, date(2026, 6, 1), "20000")  # 50000 in the year: Silver
    await add_visit(db, base, date(2026, 6, 1), "45000")
    rewarded = await visit(db, silver, "1999", work_order="WO-1")
    moved = await accrue(db, rewarded)  # 1999 * 5 % = 99.95: whole bonuses, rounded down
    assert moved is not None
    assert (moved.kind, moved.amount, moved.expires_on) == (
        ACCRUAL, Decimal("99.00"), date(2027, 11, 24),
    )  # fmt: skip
    assert await ledger(db, silver) == [(ACCRUAL, Decimal("99.00"), f"visit:{rewarded.id}")]
    # 45000 + this 10000 would reach Silver, but a visit does not lift its own tier: 3 %.
    assert await earned(db, await visit(db, base, "10000")) == Decimal("300.00")


async def test_visits_before_the_rolling_year_do_not_count_toward_the_tier(db: Database) -> None:
    out, inside = await add_client(db), await add_client(db)
    await add_visit(db, out, date(2025, 11, 24), "50000")  # a year to the day: outside
    await add_visit(db, inside, date(2025, 11, 25), "50000")  # the window's first day
    assert [await earned(db, await visit(db, client, "1000")) for client in (out, inside)] == [
        Decimal("30.00"), Decimal("50.00"),
    ]  # fmt: skip


async def test_a_car_sale_earns_nothing_by_default(db: Database) -> None:
    client = await add_client(db)
    sale = await visit(db, client, "1500000", kind="sale")
    assert await earned(db, sale) is None
    assert await ledger(db, client) == []
    everything = BonusRules(ladder=LADDER, no_accrual_kinds=frozenset())
    assert await earned(db, sale, everything) == Decimal("45000.00")  # 1 500 000 * 3 %


async def test_bonuses_redeemed_on_the_work_order_are_not_rewarded(db: Database) -> None:
    client = await add_client(db)
    await give(db, client, "1000")
    await spend(db, client, "300", bill="1000", rules=RULES, work_order="WO-7")
    rewarded = await visit(db, client, "1000", work_order="WO-7")
    assert await earned(db, rewarded) == Decimal("21.00")  # (1000 - 300 paid in bonuses) * 3 %


async def test_a_visit_is_rewarded_once(db: Database) -> None:
    client = await add_client(db)
    rewarded = await visit(db, client, "1000")
    first, again = await accrue(db, rewarded), await accrue(db, rewarded)
    assert again == replace(first, repeated=True)  # the first credit, found under its ref
    assert len(await ledger(db, client)) == 1
    assert await balance_on(db, client) == Decimal("30.00")


# ------------------------------------------------------------ welcome, birthday, referral


async def test_the_welcome_bonus_is_granted_once_per_client(db: Database, clock: FakeClock) -> None:
    client = await add_client(db)
    rules = BonusRules(ladder=LADDER, welcome=Decimal(200))
    async with db.sessions() as s, s.begin():
        first = await grant_welcome(s, rules, client, Moment.of(clock, MSK))
        clock.advance(days=3)
        again = await grant_welcome(s, rules, client, Moment.of(clock, MSK))
    assert first == Moved(first.id, client, WELCOME, Decimal("200.00"), date(2027, 11, 24))
    assert again == replace(first, repeated=True)
    assert await ledger(db, client) == [(WELCOME, Decimal("200.00"), f"welcome:{client}")]


async def _birthdays(db: Database, clock: FakeClock) -> list[tuple[int, str, Decimal, date | None]]:
    rules = BonusRules(ladder=LADDER, birthday=Decimal(500), birthday_valid_days=14)
    async with db.sessions() as s, s.begin():
        granted = await grant_birthday_bonuses(s, rules, Moment.of(clock, MSK))
    return [(m.client_id, m.kind, m.amount, m.expires_on) for m in granted]


async def test_birthday_bonuses_go_to_todays_birthdays_once_a_year(
    db: Database, clock: FakeClock
) -> None:
    today = await born(db, date(1980, 11, 24))
    tomorrow = await born(db, date(1990, 11, 25))
    await born(db, date(1985, 11, 23))
    await add_client(db)  # no birthday on file
    assert await _birthdays(db, clock) == [(today, BIRTHDAY, Decimal("500.00"), date(2026, 12, 8))]
    clock.advance(hours=12)  # the same day in Moscow: 21:00
    assert await _birthdays(db, clock) == []
    assert await ledger(db, today) == [(BIRTHDAY, Decimal("500.00"), f"birthday:{today}:2026")]
    clock.advance(hours=3)  # 00:00 on 25 November in Moscow
    assert await _birthdays(db, clock) == [
        (tomorrow, BIRTHDAY, Decimal("500.00"), date(2026, 12, 9))
    ]


async def test_a_29_february_birthday_comes_on_28_february_in_a_common_year(
    db: Database, clock: FakeClock
) -> None:
    leap = await born(db, date(2000, 2, 29))
    clock.set(datetime(2027, 2, 27, 21, 30, tzinfo=UTC))  # 00:30 on 28 February in Moscow
    assert await _birthdays(db, clock) == [(leap, BIRTHDAY, Decimal("500.00"), date(2027, 3, 14))]
    assert await ledger(db, leap) == [(BIRTHDAY, Decimal("500.00"), f"birthday:{leap}:2027")]
    clock.set(datetime(2027, 3, 1, 6, tzinfo=UTC))
    assert await _birthdays(db, clock) == []


async def test_a_referral_rewards_both_sides_on_the_first_paid_visit(
    db: Database, clock: FakeClock
) -> None:
    referrer, referred = await add_client(db), await add_client(db)
    rules = BonusRules(
        ladder=LADDER, referral_referrer=Decimal(300), referral_referred=Decimal(200)
    )
    moment = Moment.of(clock, MSK)
    async with db.sessions() as s, s.begin():
        assert await record_referral(s, referred, referrer, moment) is True
        assert await record_referral(s, referred, referrer, moment) is False
    first = await visit(db, referred, "5000")
    async with db.sessions() as s, s.begin():
        rewarded = await reward_referral(s, rules, first, moment)
    assert [(m.client_id, m.kind, m.amount) for m in rewarded] == [
        (referrer, REFERRAL, Decimal("300.00")), (referred, REFERRAL, Decimal("200.00")),
    ]  # fmt: skip
    second = await visit(db, referred, "7000")
    async with db.sessions() as s, s.begin():
        assert await reward_referral(s, rules, second, moment) == []
    assert await ledger(db, referrer) == [
        (REFERRAL, Decimal("300.00"), f"referral:{referred}:referrer")
    ]
    assert await ledger(db, referred) == [
        (REFERRAL, Decimal("200.00"), f"referral:{referred}:referred")
    ]


async def test_only_a_new_client_can_be_referred(db: Database, clock: FakeClock) -> None:
    referrer, regular, warranty = [await add_client(db) for _ in range(3)]
    await add_visit(db, regular, date(2026, 3, 1), "1500")
    await add_visit(db, warranty, date(2026, 3, 1), "0")  # nothing paid: still new
    moment = Moment.of(clock, MSK)
    async with db.sessions() as s, s.begin():
        with pytest.raises(Conflict, match="has paid visits already") as refused:
            await record_referral(s, regular, referrer, moment)
        assert refused.value.field == "referred_by"
        assert await record_referral(s, warranty, referrer, moment) is True
        with pytest.raises(Conflict, match="already referred by another client"):
            await record_referral(s, warranty, regular, moment)
        with pytest.raises(DomainError, match="cannot refer themselves") as itself:
            await record_referral(s, referrer, referrer, moment)
        assert type(itself.value) is DomainError
        assert itself.value.field == "referred_by"


# -------------------------------------------------------------------------------- account


async def test_the_account_shows_balance_standing_card_movements_and_expiry(
    db: Database, clock: FakeClock
) -> None:
    client = await add_client(db)
    await add_visit(db, client, date(2026, 5, 1), "30000")
    dead = await give(db, client, "70", day=date(2026, 10, 1), days=30)  # dead since 31 October
    await give(db, client, "100", days=10)  # 4 December
    await give(db, client, "50", days=10)  # 4 December
    await give(db, client, "200", days=30)  # 24 December
    await give(db, client, "400", days=365)  # beyond 60 days
    await spend(db, client, "90", ref="pos:acc")  # 70 written off, then 90 of the 100 taken
    async with db.sessions() as s, s.begin():
        await issue(s, "2000 0000 77", client, actor="test", now=clock())
    async with db.sessions() as s:
        seen = await account(s, RULES, client, TODAY, movements=3)
    assert seen.balance == Decimal("660.00")  # 100 + 50 + 200 + 400 - 90
    assert (seen.standing.tier.name, seen.standing.spend, seen.standing.to_next) == (
        "Base", Decimal("30000.00"), Decimal("20000.00"),
    )  # fmt: skip
    assert seen.standing.next == LADDER.tiers[1]
    assert seen.card is not None
    assert (seen.card.number, seen.card.state) == ("2000000077", "issued")
    assert [(m.kind, m.amount, m.ref, m.expires_on) for m in seen.movements] == [
        (REDEMPTION, Decimal("-90.00"), "pos:acc", None),
        (EXPIRY, Decimal("-70.00"), f"expiry:{await lot_of(db, dead.id)}", None),
        (OPENING, Decimal("400.00"), None, date(2027, 11, 24)),
    ]
    assert [(e.expires_on, e.amount) for e in seen.expiring] == [
        (date(2026, 12, 4), Decimal("60.00")), (date(2026, 12, 24), Decimal("200.00")),
    ]  # fmt: skip


# ---------------------------------------------------------------------------------- races


async def _race(db: Database, client: int, refs: list[str]) -> list[object]:
    """Redemptions of 100 under `refs`, all at once, each in its own session and transaction."""
    engine = create_engine(db.url, pool_size=len(refs) + 5)
    sessions = make_session_factory(engine)
    start = asyncio.Barrier(len(refs))  # every call holds its connection before any goes on

    async def one(ref: str) -> Redemption:
        async with sessions() as s, s.begin():
            await s.execute(text("SELECT 1"))  # a connection and an open transaction each
            await start.wait()
            return await redeem(
                s, WHOLE_BILL, client, amount=Decimal(100), bill=Decimal(10000), ref=ref,
                moment=on(TODAY), allow_partial=False,
            )  # fmt: skip

    try:
        async with asyncio.timeout(60):
            return await asyncio.gather(*(one(ref) for ref in refs), return_exceptions=True)
    finally:
        await engine.dispose()


async def test_concurrent_redemptions_never_overdraw_the_account(db: Database) -> None:
    if db.dialect == "sqlite":
        pytest.skip("SQLite runs write transactions one at a time: there is no race to lose")
    client = await add_client(db)
    lot = await lot_of(db, (await give(db, client, "500")).id)
    results = await _race(db, client, [f"race:{n}" for n in range(20)])
    accepted = [r for r in results if isinstance(r, Redemption)]
    refused = [r for r in results if isinstance(r, InsufficientBonuses)]
    assert (len(accepted), len(refused)) == (5, 15), results
    assert sorted(r.balance for r in accepted) == [Decimal(n) for n in (0, 100, 200, 300, 400)]
    assert await balance_on(db, client) == Decimal("0.00")
    async with db.sessions() as s:
        amounts = list(
            await s.scalars(
                select(BonusPosting.amount)
                .where(BonusPosting.lot_id == lot)
                .order_by(BonusPosting.id)
            )
        )
    assert amounts == [Decimal("500.00")] + [Decimal("-100.00")] * 5
    assert min(itertools.accumulate(amounts)) >= 0


async def test_concurrent_calls_with_one_ref_redeem_once(db: Database) -> None:
    if db.dialect == "sqlite":
        pytest.skip("SQLite runs write transactions one at a time: there is no race to lose")
    client = await add_client(db)
    await give(db, client, "500")
    results = await _race(db, client, ["pos:same"] * 10)
    assert all(isinstance(r, Redemption) for r in results), results
    redemptions = [r for r in results if isinstance(r, Redemption)]
    assert {r.accepted for r in redemptions} == {Decimal("100.00")}
    assert sorted(r.repeated for r in redemptions) == [False] + [True] * 9
    assert [(k, a) for k, a, _ in await ledger(db, client)] == [
        (OPENING, Decimal("500.00")), (REDEMPTION, Decimal("-100.00")),
    ]  # fmt: skip
    assert await balance_on(db, client) == Decimal("400.00")

"""What runs around the ledger: linking Telegram (welcome bonus), the daily expiry job."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from crm.bonuses import BonusRules, Entry, balance, credit, lock_account
from crm.bonuses.expiry import expire_due
from crm.cards import Tier, TierLadder
from crm.clock import Moment
from crm.errors import Conflict
from crm.linking import link_telegram
from storage.bonuses import BonusMovement
from storage.models import Client
from storage.outbox import ChannelUnreachable
from tests.support.clock import FakeClock
from tests.support.databases import Database
from tests.support.messaging import add_client

MOSCOW = ZoneInfo("Europe/Moscow")
RULES = BonusRules(ladder=TierLadder((Tier("Base", Decimal(0), Decimal(3)),)), welcome=Decimal(300))


def moment(clock: FakeClock) -> Moment:
    return Moment.of(clock, MOSCOW)


async def test_linking_telegram_gives_the_welcome_bonus_once(
    db: Database, clock: FakeClock
) -> None:
    client = await add_client(db)
    async with db.sessions() as session, session.begin():
        session.add(
            ChannelUnreachable(
                client_id=client, channel="telegram", address="1", reason="bot blocked",
                marked_at=clock(),
            )
        )  # fmt: skip
    async with db.sessions() as session, session.begin():
        first = await link_telegram(session, RULES, client, 555_001, moment(clock))
    async with db.sessions() as session, session.begin():
        again = await link_telegram(session, RULES, client, 555_001, moment(clock))
        assert await balance(session, client, moment(clock).today) == Decimal("300.00")
        assert (await session.get_one(Client, client)).telegram_id == 555_001
        assert await session.get(ChannelUnreachable, (client, "telegram")) is None
    assert first is not None
    assert first.amount == Decimal("300.00")
    assert first.expires_on == date(2027, 11, 24)  # a year from 24.11.2026
    assert again is None


async def test_a_telegram_account_of_another_client_is_refused(
    db: Database, clock: FakeClock
) -> None:
    owner, other = await add_client(db, telegram_id=555_002), await add_client(db)
    async with db.sessions() as session, session.begin():
        with pytest.raises(Conflict, match="linked to another client"):
            await link_telegram(session, RULES, other, 555_002, moment(clock))
    assert owner != other


async def test_the_expiry_job_writes_off_every_client_in_batches_and_twice_changes_nothing(
    db: Database, clock: FakeClock
) -> None:
    clients = [await add_client(db) for _ in range(5)]
    async with db.sessions() as session, session.begin():
        for index, client in enumerate(clients):
            await credit(session, client, Entry("welcome", Decimal(100 + index)), moment(clock),
                         valid_days=10)  # fmt: skip
        await credit(session, clients[0], Entry("adjustment", Decimal(7)), moment(clock),
                     valid_days=None)  # fmt: skip
    clock.advance(timedelta(days=10))
    report = await expire_due(db.sessions, moment(clock), batch_size=2)
    again = await expire_due(db.sessions, moment(clock), batch_size=2)
    assert (report.clients, report.amount) == (5, Decimal("510.00"))  # 100+101+102+103+104
    assert (again.clients, again.amount) == (0, Decimal(0))
    async with db.sessions() as session, session.begin():
        await lock_account(session, clients[0])
        assert await balance(session, clients[0], moment(clock).today) == Decimal("7.00")
        expiries = await session.scalar(select(func.count()).where(BonusMovement.kind == "expiry"))
        total = await session.scalar(select(func.sum(BonusMovement.amount)))
    assert expiries == 5
    assert Decimal(total) == Decimal("7.00")  # the ledger sums to what is left


async def test_a_one_day_lot_is_spendable_on_its_day_and_gone_the_next(db: Database) -> None:
    clock = FakeClock(datetime(2026, 11, 24, 20, 59, tzinfo=UTC))  # 23:59 in Moscow
    client = await add_client(db)
    async with db.sessions() as session, session.begin():
        await credit(session, client, Entry("welcome", Decimal(50)), moment(clock), valid_days=1)
        assert await balance(session, client, date(2026, 11, 24)) == Decimal("50.00")
        assert await balance(session, client, date(2026, 11, 25)) == Decimal("0.00")

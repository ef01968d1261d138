"""Linking a messenger account by phone, referral codes, and the staff roles table."""

from __future__ import annotations

from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from crm.bonuses import BonusRules
from crm.cards import Tier, TierLadder
from crm.clock import Moment
from crm.errors import DomainError
from crm.onboarding import LinkedElsewhere, Person, follow_referral, link_by_phone
from crm.referrals import ALPHABET, LENGTH, clean_code, client_by_referral_code, referral_code
from crm.staff import PERMISSIONS, Permission, Role, StaffDirectory, StaffMember
from storage.bonuses import BonusMovement, Referral
from storage.models import Client, ClientConsent
from tests.support.clock import FakeClock
from tests.support.databases import Database
from tests.support.messaging import add_client, add_visit

RULES = BonusRules(ladder=TierLadder((Tier("Base", Decimal(0), Decimal(3)),)), welcome=Decimal(300))
IVAN = Person(telegram_id=555, first_name="Иван", last_name="Смирнов")


def moment(clock: FakeClock) -> Moment:
    return Moment.of(clock, ZoneInfo("Europe/Moscow"))


async def link(db: Database, clock: FakeClock, person: Person, phone: str, **kw: object):  # type: ignore[no-untyped-def]
    async with db.sessions() as session, session.begin():
        return await link_by_phone(session, RULES, person, phone, moment(clock), **kw)  # type: ignore[arg-type]


async def test_a_known_number_links_the_client_and_gives_the_welcome_bonus_once(
    db: Database, clock: FakeClock
) -> None:
    client = await add_client(db, phone="+79035254560")
    linked = await link(db, clock, IVAN, "8 (903) 525-45-60")
    assert (linked.client_id, linked.created, linked.already_linked) == (client, False, False)
    assert linked.welcome is not None
    assert linked.welcome.amount == Decimal(300)
    again = await link(db, clock, IVAN, "+79035254560")
    assert again.already_linked
    assert again.welcome is None
    async with db.sessions() as session:
        assert await session.scalar(select(Client.telegram_id).where(Client.id == client)) == 555
        credits = await session.scalar(select(func.count()).select_from(BonusMovement))
    assert credits == 1


async def test_an_unknown_number_becomes_a_potential_client_from_the_bot_with_no_consent(
    db: Database, clock: FakeClock
) -> None:
    linked = await link(db, clock, IVAN, "+79161234567")
    assert linked.created
    async with db.sessions() as session:
        client = await session.get(Client, linked.client_id)
        assert client is not None
        assert (client.first_name, client.last_name, client.phone, client.source) == (
            "Иван",
            "Смирнов",
            "+79161234567",
            "bot",
        )
        consents = await session.scalar(select(func.count()).select_from(ClientConsent))
    assert consents == 0  # no advertising consent assumed: the bot asks


async def test_an_account_linked_to_another_client_is_refused(
    db: Database, clock: FakeClock
) -> None:
    await add_client(db, phone="+79035254560", telegram_id=555)
    await add_client(db, phone="+79161234567")
    with pytest.raises(LinkedElsewhere):
        await link(db, clock, IVAN, "+79161234567")


async def test_a_client_linked_to_another_account_is_refused(
    db: Database, clock: FakeClock
) -> None:
    await add_client(db, phone="+79035254560", telegram_id=777)
    with pytest.raises(LinkedElsewhere):
        await link(db, clock, IVAN, "+79035254560")


async def test_a_number_that_is_not_one_is_refused_naming_the_phone(
    db: Database, clock: FakeClock
) -> None:
    with pytest.raises(DomainError) as refused:
        await link(db, clock, IVAN, "12")
    assert refused.value.field == "phone"


async def test_a_friends_code_is_recorded_for_a_new_client(db: Database, clock: FakeClock) -> None:
    friend = await add_client(db, phone="+79035254560")
    async with db.sessions() as session, session.begin():
        code = await referral_code(session, friend)
    linked = await link(db, clock, IVAN, "+79161234567", referral_code=code.lower())
    assert linked.referred_by == friend
    async with db.sessions() as session:
        referral = await session.get(Referral, linked.client_id)
    assert referral is not None
    assert referral.referrer_id == friend


async def test_a_code_that_cannot_count_is_ignored_and_linking_goes_on(
    db: Database, clock: FakeClock
) -> None:
    friend = await add_client(db, phone="+79035254560")
    regular = await add_client(db, phone="+79161234567")
    await add_visit(db, regular, clock().date(), "5000")  # paid already: not a new client
    async with db.sessions() as session, session.begin():
        code = await referral_code(session, friend)
    linked = await link(db, clock, IVAN, "+79161234567", referral_code=code)
    assert linked.client_id == regular
    assert linked.referred_by is None
    async with db.sessions() as session, session.begin():
        assert await follow_referral(session, regular, "NOPE00", moment(clock)) is None
        own = await referral_code(session, regular)
        assert await follow_referral(session, regular, own, moment(clock)) is None


async def test_a_referral_code_is_made_once_short_and_unambiguous(db: Database) -> None:
    first = await add_client(db, phone="+79035254560")
    second = await add_client(db, phone="+79161234567")
    async with db.sessions() as session, session.begin():
        code = await referral_code(session, first)
        assert await referral_code(session, first) == code
        other = await referral_code(session, second)
    assert code != other
    assert len(code) == LENGTH
    assert set(code) <= set(ALPHABET)
    assert not set(code) & set("01OIL")
    async with db.sessions() as session:
        assert await client_by_referral_code(session, f" {code.lower()} ") == first
        assert await client_by_referral_code(session, "x" * 40) is None
    assert clean_code("ab-cd") is None


def test_each_role_may_do_what_its_row_says() -> None:
    operator = StaffMember(1, "Олег", Role.OPERATOR)
    manager = StaffMember(2, "Мария", Role.MANAGER)
    assert operator.may(Permission.TAKE_COMPLAINT)
    assert not operator.may(Permission.ADJUST_BONUSES)
    assert not operator.may(Permission.RUN_CAMPAIGNS)
    assert manager.may(Permission.RUN_CAMPAIGNS)
    assert not manager.may(Permission.MANAGE_STAFF)
    assert PERMISSIONS[Role.ADMIN] == frozenset(Permission)
    directory = StaffDirectory([operator, manager])
    assert directory.find(1) is operator
    assert directory.find(3) is None
    assert directory.find(None) is None
    assert [m.name for m in directory.who_may(Permission.RUN_CAMPAIGNS)] == ["Мария"]

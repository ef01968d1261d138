"""A person shares their phone with a client bot: find them in the base, or welcome them.

The number decides. A client with that number is linked to the messenger account (welcome
bonus once, a "blocked" mark cleared); a number nobody has becomes a new potential client
from the bot, with no advertising consent assumed (the bot asks). An account or a client
already linked elsewhere is refused: only the service centre can untangle that.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.bonuses import BonusRules, Moved, record_referral
from crm.clock import Moment
from crm.contacts import ContactError, normalize_phone
from crm.errors import Conflict, DomainError
from crm.linking import link_telegram
from crm.names import given_name
from crm.referrals import client_by_referral_code
from storage.models import Client

SOURCE = "bot"
_NAME_MAX = 128


class LinkedElsewhere(Conflict):
    """The account, or the client with this number, is linked to someone else."""


@dataclass(frozen=True, slots=True)
class Person:
    """Who wrote to the bot, as their messenger knows them."""

    telegram_id: int
    first_name: str | None
    last_name: str | None


@dataclass(frozen=True, slots=True)
class Onboarded:
    client_id: int
    created: bool
    """A new potential client: nobody in the base had this number."""
    already_linked: bool
    """The account was linked to this client before: nothing changed."""
    welcome: Moved | None
    referred_by: int | None
    """The client whose referral code was followed, when the referral was recorded."""
    name: str = ""
    """How to greet them, as the base knows them: "Иван Петрович"; "" when unknown."""


async def link_by_phone(
    session: AsyncSession,
    rules: BonusRules,
    person: Person,
    phone: str,
    moment: Moment,
    *,
    region: str = "RU",
    referral_code: str | None = None,
) -> Onboarded:
    """Link `person` to the client with this phone, or create one; raises LinkedElsewhere.

    A referral code is honoured only for a client it can still count for (new, not referred
    by someone else, not their own code); one that cannot be honoured is ignored, since the
    person came to link their account, not to argue about a friend's code.
    """
    try:
        number = normalize_phone(phone, region)
    except ContactError as exc:
        raise DomainError(str(exc), field="phone") from None
    linked = await session.scalar(select(Client).where(Client.telegram_id == person.telegram_id))
    if linked is not None:
        if linked.phone == number:
            return Onboarded(linked.id, False, True, None, None, _greeting(linked))
        raise LinkedElsewhere("this account is linked to another client", field="telegram_id")
    client = await session.scalar(select(Client).where(Client.phone == number))
    created = client is None
    if client is None:
        client = _new_client(person, number, moment)
        session.add(client)
        await session.flush()
    elif client.telegram_id is not None:
        raise LinkedElsewhere("the client is linked to another account", field="phone")
    welcome = await link_telegram(session, rules, client.id, person.telegram_id, moment)
    referrer = await _refer(session, client.id, referral_code, moment)
    return Onboarded(client.id, created, False, welcome, referrer, _greeting(client))


async def follow_referral(
    session: AsyncSession, client_id: int, code: str, moment: Moment
) -> int | None:
    """A linked client opened a friend's referral link: record it when it can still count.
    Returns the referrer's id when recorded (or recorded before)."""
    return await _refer(session, client_id, code, moment)


async def _refer(
    session: AsyncSession, client_id: int, code: str | None, moment: Moment
) -> int | None:
    if not code:
        return None
    referrer = await client_by_referral_code(session, code)
    if referrer is None or referrer == client_id:
        return None
    try:
        await record_referral(session, client_id, referrer, moment)
    except DomainError:  # paid visits already, or referred by someone else: checked, unwritten
        return None
    return referrer


def _new_client(person: Person, phone: str, moment: Moment) -> Client:
    return Client(
        first_name=_name(person.first_name),
        last_name=_name(person.last_name),
        phone=phone,
        source=SOURCE,
        created_at=moment.now,
        updated_at=moment.now,
    )


def _greeting(client: Client) -> str:
    return given_name(client.first_name, client.middle_name)


def _name(text: str | None) -> str | None:
    cleaned = " ".join((text or "").split())[:_NAME_MAX]
    return cleaned or None

"""Birthday bonuses: a gift to everyone whose birthday is today, once a year.

Kept apart from the rest of the program: it finds today's birthdays with the `birthdays`
segment, and the segments package reads CSV values with the importer's parsers, which in
turn carry opening balances into the ledger.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from crm.bonuses.ledger import BIRTHDAY, Entry, Moved, credit
from crm.bonuses.program import BonusRules
from crm.clock import Moment
from crm.segments.base import SegmentContext
from crm.segments.people import BIRTHDAYS
from storage.models import Client


async def grant_birthday_bonuses(
    session: AsyncSession, rules: BonusRules, moment: Moment
) -> list[Moved]:
    """The birthday bonus to everyone whose birthday is today (29 February: on the 28th in
    other years), once per client and year, valid `birthday_valid_days` days."""
    if rules.birthday <= 0:
        return []
    members = BIRTHDAYS.build({"within": 0}, SegmentContext(moment.today)).members
    granted = []
    for client_id in list(await session.scalars(members.order_by(Client.id))):
        entry = Entry(BIRTHDAY, rules.birthday, ref=birthday_ref(client_id, moment.today.year))
        moved = await credit(
            session, client_id, entry, moment, valid_days=rules.birthday_valid_days
        )
        if not moved.repeated:
            granted.append(moved)
    return granted


def birthday_ref(client_id: int, year: int) -> str:
    """The birthday bonus's reference: one a client and year, whoever grants it (the
    `bonus birthday` command or the greetings job)."""
    return f"birthday:{client_id}:{year}"

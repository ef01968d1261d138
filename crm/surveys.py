"""The invitation to rate a visit, queued when the work order is closed.

It goes out `delay` after the visit was posted, not in the client's night, once per visit
(its idempotency key is the visit's). The survey itself is answered in the client bot,
which the link opens; without a bot to link to, no invitation is queued.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from crm.context import CarFacts, ClientFacts, CompanyInfo, message_context, reachable_channels
from crm.recipients import client_facts
from crm.templates import TemplateLibrary
from gateway.consent import SERVICE
from gateway.outbox import Recipient, enqueue
from gateway.quiet import Night, morning_after

TEMPLATE = "survey_invitation"


@dataclass(frozen=True, slots=True)
class SurveyInvites:
    """How invitations are sent (config `[surveys]`); `link` has a `{visit}` placeholder."""

    library: TemplateLibrary
    company: CompanyInfo
    plan: tuple[str, ...]
    delay: timedelta
    max_visit_age_days: int
    night: Night | None
    link: str | None
    buttons: Callable[[int], Mapping[str, Mapping[str, str]]] | None = None
    """The visit's id -> per-channel extras carrying the survey's first question as buttons
    (the client bot's inline keyboard), so the client answers with one tap."""


@dataclass(frozen=True, slots=True)
class Invitation:
    scheduled_at: datetime | None
    reason: str | None = None  # why none was queued


async def invite_to_survey(
    session: AsyncSession,
    invites: SurveyInvites,
    *,
    visit_id: int,
    client_id: int,
    visited_on: date,
    branch_id: int | None,
    now: datetime,
    today: date,
    client: ClientFacts | None = None,
    car: CarFacts | None = None,
) -> Invitation:
    """Queue the invitation to rate this visit, in the caller's transaction; `client` and
    `car` save reading them again when the caller has them."""
    if invites.link is None:
        return Invitation(None, "no client bot to answer in: set [telegram] bot_username")
    if (today - visited_on).days > invites.max_visit_age_days:
        return Invitation(None, f"the visit is older than {invites.max_visit_age_days} days")
    if client is None:
        found = await client_facts(session, client_id)
        assert found is not None, "the visit's client exists in the same transaction"
        client, car = found
    channels = reachable_channels(client, invites.plan)
    if not channels:
        return Invitation(None, "the client has no address on " + ", ".join(invites.plan))
    zone = ZoneInfo(client.timezone or invites.company.timezone)
    at = now + invites.delay
    at = morning_after(at, zone, invites.night) or at
    survey = {"link": invites.link.format(visit=visit_id), "visit_on": visited_on}
    template = await invites.library.get(session, TEMPLATE)
    recipient = Recipient(
        client_id,
        key=f"survey:visit:{visit_id}",
        context=message_context(invites.company, client, car, today, survey=survey),
        branch_id=branch_id,
        channels=channels,
        extras=invites.buttons(visit_id) if invites.buttons else None,
    )
    await enqueue(
        session,
        template,
        [recipient],
        plan=invites.plan,
        kind=SERVICE,
        now=now,
        not_before=at,
        new_keys=True,
    )
    return Invitation(at)

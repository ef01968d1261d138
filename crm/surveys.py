"""The invitation to rate a visit: when it is due, and queueing it.

It goes out `delay` after the work order was posted, not in the client's night, once per
visit (its idempotency key is the visit's). The survey itself is answered in the client
bot, which the link opens; without a bot to link to, no invitation is queued.

Posting a work order only works out when the invitation will be due (`plan_invitation`,
no rendering in the dealer's request); the scheduler's `surveys` job queues the
invitations of posted visits that have none (`invite_posted_visits`), each with the time
the work order's answer gave.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import String, exists, literal, select
from sqlalchemy import cast as sql_cast
from sqlalchemy.ext.asyncio import AsyncSession

from crm.clock import Moment
from crm.context import CarFacts, ClientFacts, CompanyInfo, message_context, reachable_channels
from crm.recipients import FACT_COLUMNS, client_facts
from crm.templates import TemplateLibrary
from gateway.consent import SERVICE
from gateway.outbox import Recipient, enqueue
from gateway.quiet import Night, morning_after
from gateway.render import MessageTemplate
from storage.models import Car, Client, Visit
from storage.outbox import Message

TEMPLATE = "survey_invitation"
PAGE = 500
"""Visits read and invited per transaction by the `surveys` job."""

# Why no invitation is queued, as the job counts it.
NO_BOT, TOO_OLD, NO_ADDRESS = "no client bot", "visit too old", "no address"


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
    reason: str | None = None  # why none is due, for people
    why: str | None = None  # the same in a word or two, for counts (NO_BOT, TOO_OLD, ...)


def survey_key(visit_id: int) -> str:
    return f"survey:visit:{visit_id}"


def plan_invitation(
    invites: SurveyInvites, client: ClientFacts, *, visited_on: date, posted_at: datetime
) -> Invitation:
    """When the invitation to rate a visit posted at `posted_at` is due, or why there is none.

    The visit's age is counted on the day it was posted (in the company's zone), not the day
    the invitation is queued: a work order posted at 23:55 is not refused at 00:05.
    """
    if invites.link is None:
        return Invitation(None, "no client bot to answer in: set [telegram] bot_username", NO_BOT)
    posted_on = posted_at.astimezone(ZoneInfo(invites.company.timezone)).date()
    if (posted_on - visited_on).days > invites.max_visit_age_days:
        return Invitation(
            None, f"the visit is older than {invites.max_visit_age_days} days", TOO_OLD
        )
    if not reachable_channels(client, invites.plan):
        return Invitation(
            None, "the client has no address on " + ", ".join(invites.plan), NO_ADDRESS
        )
    return Invitation(_after_night(invites, client, posted_at + invites.delay))


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
    posted_at: datetime | None = None,
) -> Invitation:
    """Queue the invitation to rate this visit, in the caller's transaction; `client` and
    `car` save reading them again when the caller has them. `posted_at`: when the work
    order was posted (None: now)."""
    if client is None:
        found = await client_facts(session, client_id)
        assert found is not None, "the visit's client exists in the same transaction"
        client, car = found
    template = await invites.library.get(session, TEMPLATE)
    visit = _PostedVisit(visit_id, client_id, branch_id, visited_on, posted_at or now)
    invitation, _ = await _invite(session, invites, template, visit, client, car, now, today)
    return invitation


async def invite_posted_visits(
    session: AsyncSession, invites: SurveyInvites, moment: Moment, *, after: int = 0
) -> tuple[int | None, Counter[str]]:
    """Queue the invitations of up to `PAGE` visits (ids above `after`) posted by
    `moment.now` that have none; returns the last visit id read (None: none left) and the
    counts (queued, duplicates, skipped by why).

    A visit is read while it may still be invited (see `plan_invitation`); one skipped for
    want of an address is looked at again by the next run, and invited if the client has
    given one meanwhile.
    """
    counts: Counter[str] = Counter()
    oldest = moment.today - timedelta(days=invites.max_visit_age_days)
    today_starts = datetime.combine(moment.today, time(0), ZoneInfo(invites.company.timezone))
    # A visit a day older still counts when posted before today (see `plan_invitation`).
    young_enough = (Visit.visited_on >= oldest) | (
        (Visit.visited_on == oldest - timedelta(days=1)) & (Visit.created_at < today_starts)
    )
    key = literal("survey:visit:", String) + sql_cast(Visit.id, String)
    rows = (
        await session.execute(
            select(
                Visit.id,
                Visit.client_id,
                Visit.branch_id,
                Visit.visited_on,
                Visit.created_at,
                Visit.odometer,
                Visit.car_id,
                Car.make,
                Car.model,
                Car.year,
                Car.plate,
                Car.vin,
            )
            .outerjoin(Car, Car.id == Visit.car_id)
            .where(
                young_enough,
                Visit.visited_on <= moment.today,
                Visit.created_at <= moment.now,
                Visit.id > after,
                ~exists().where(Message.idempotency_key == key),
            )
            .order_by(Visit.id)
            .limit(PAGE)
        )
    ).all()
    if not rows:
        return None, counts
    clients = await _clients(session, {row.client_id for row in rows})
    template = await invites.library.get(session, TEMPLATE)
    for row in rows:
        car = None
        if row.car_id is not None:
            car = CarFacts(row.make, row.model, row.year, row.plate, row.vin, row.odometer)
        visit = _PostedVisit(row.id, row.client_id, row.branch_id, row.visited_on, row.created_at)
        client = clients.get(row.client_id)
        if client is None:  # merged into another client since the page was read
            counts["skipped (no client)"] += 1
            continue
        invitation, queued = await _invite(
            session, invites, template, visit, client, car, moment.now, moment.today
        )
        if invitation.why is not None:
            counts[f"skipped ({invitation.why})"] += 1
        else:
            counts["queued" if queued else "duplicates"] += 1
    return rows[-1].id, counts


@dataclass(frozen=True, slots=True)
class _PostedVisit:
    id: int
    client_id: int
    branch_id: int | None
    visited_on: date
    posted_at: datetime


async def _invite(
    session: AsyncSession,
    invites: SurveyInvites,
    template: MessageTemplate,
    visit: _PostedVisit,
    client: ClientFacts,
    car: CarFacts | None,
    now: datetime,
    today: date,
) -> tuple[Invitation, bool]:
    """Queue one invitation; (the invitation, whether it was queued and not a duplicate)."""
    invitation = plan_invitation(
        invites, client, visited_on=visit.visited_on, posted_at=visit.posted_at
    )
    if invitation.scheduled_at is None:
        return invitation, False
    at = invitation.scheduled_at
    if at < now:  # queued late (the scheduler was down): at once, but not in the night
        at = _after_night(invites, client, now)
    survey = {"link": cast(str, invites.link).format(visit=visit.id), "visit_on": visit.visited_on}
    recipient = Recipient(
        visit.client_id,
        key=survey_key(visit.id),
        context=message_context(invites.company, client, car, today, survey=survey),
        branch_id=visit.branch_id,
        channels=reachable_channels(client, invites.plan),
        extras=invites.buttons(visit.id) if invites.buttons else None,
    )
    done = await enqueue(
        session, template, [recipient], plan=invites.plan, kind=SERVICE, now=now, not_before=at
    )
    return Invitation(at), done.queued == 1


def _after_night(invites: SurveyInvites, client: ClientFacts, at: datetime) -> datetime:
    zone = ZoneInfo(client.timezone or invites.company.timezone)
    return morning_after(at, zone, invites.night) or at


async def _clients(session: AsyncSession, client_ids: set[int]) -> dict[int, ClientFacts]:
    rows = await session.execute(select(*FACT_COLUMNS).where(Client.id.in_(client_ids)))
    facts = (ClientFacts(*cast(tuple[Any, ...], row)) for row in rows)
    return {client.id: client for client in facts}

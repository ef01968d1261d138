"""Campaigns: a segment of clients, a template, a channel plan, a kind and a start time.

Creating a campaign renders a message per client and queues them all in one transaction:
either the whole campaign is in the outbox or none of it is. Each message's idempotency
key is `campaign:{id}:{client}`, so no client gets one campaign twice.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import case, distinct, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.context import OCCASION_SECTIONS, CompanyInfo, context_maker, reachable_channels
from crm.preferences import LinkSigner
from crm.recipients import client_pages
from crm.segments import SegmentContext, SegmentQuery, resolve
from crm.templates import TemplateLibrary
from gateway.channels import CONTACTS
from gateway.consent import ADVERTISING
from gateway.lifecycle import cancel
from gateway.optout import OptOut
from gateway.outbox import (
    CANCELLED,
    FAILED,
    QUEUED,
    QUIET_HOURS,
    SENDING,
    SKIPPED,
    STATES,
    UNKNOWN,
    EnqueueResult,
    Recipient,
    check_plan,
    enqueue,
    parse_plan,
)
from gateway.quiet import QuietHours
from gateway.render import MessageTemplate
from storage.models import Client, ConsentEvent
from storage.outbox import Campaign, Message

ACTIVE = "active"


class CampaignError(ValueError):
    """A campaign that cannot be created or changed as asked."""


@dataclass(frozen=True, slots=True)
class CampaignPlan:
    """What staff asked for, checked: the template compiled, the plan parsed."""

    segment: str
    params: dict[str, str]
    members: SegmentQuery  # the segment resolved when the campaign was prepared
    template: MessageTemplate
    plan: tuple[str, ...]
    kind: str
    starts_at: datetime
    email_account: str | None = None


@dataclass(frozen=True, slots=True)
class Waiting:
    """`count` queued messages wait for `why` (gateway.outbox.WAITS; None: not said), the
    first of them due at `next_at`."""

    why: str | None
    count: int
    next_at: datetime


@dataclass(frozen=True, slots=True)
class NightWait:
    """`count` clients whose night (in `zone`) holds advertising at the start, until `until`."""

    zone: str
    count: int
    until: datetime


@dataclass(slots=True)
class CampaignReport:
    """Where every message of a campaign stands: `by_state` adds up to all of them."""

    campaign: Campaign
    status: str
    by_state: dict[str, int]
    by_channel: dict[str, dict[str, int]]
    reasons: list[tuple[str, int]] = field(default_factory=list)
    by_sender: dict[str, dict[str, int]] = field(default_factory=dict)
    """{account it went out through: {state: count}} for messages that went out."""
    cost: Decimal | None = None
    """What the providers charged, where they said (None: nothing priced)."""
    opt_outs: int = 0
    """Clients who turned advertising off through this campaign's messages."""
    waiting: list[Waiting] = field(default_factory=list)
    """Queued messages not yet due, by what they wait for."""

    @property
    def total(self) -> int:
        return sum(self.by_state.values())


async def prepare_campaign(
    session: AsyncSession,
    library: TemplateLibrary,
    *,
    segment: str,
    params: Mapping[str, str],
    template: str,
    channels: str | Sequence[str],
    kind: str,
    starts_at: datetime,
    context: SegmentContext,
    email_account: str | None = None,
) -> CampaignPlan:
    """Check everything a campaign needs before a single message is rendered."""
    compiled = await library.get(session, template)
    plan = parse_plan(channels)
    check_plan(compiled, plan, kind)
    occasion = sorted(compiled.needs & OCCASION_SECTIONS)
    if occasion:
        raise CampaignError(
            f"template {template} needs {', '.join(occasion)}, which only its own occasion "
            "provides: it is sent by that feature, not to a segment"
        )
    members = (await resolve(session, segment, params, context)).members
    return CampaignPlan(
        segment, dict(params), members, compiled, plan, kind, starts_at, email_account
    )


async def count_recipients(session: AsyncSession, plan: CampaignPlan) -> dict[str, int]:
    """The segment's size, how many of its clients have each channel's address, and how
    many would get the message through each channel (the first of the plan they have an
    address for: `first:<channel>`), before consent and quiet hours are counted."""
    members = plan.members.subquery()
    first = case(
        *((getattr(Client, CONTACTS[channel]).is_not(None), channel) for channel in plan.plan),
        else_=None,
    ).label("first")
    in_segment = Client.id.in_(select(members.c[0]))
    row = (
        await session.execute(
            select(
                func.count(),
                func.count(Client.telegram_id),
                func.count(Client.phone),
                func.count(Client.email),
            ).where(in_segment)
        )
    ).one()
    counts = {"clients": row[0], "telegram": row[1], "sms": row[2], "email": row[3]}
    for channel, count in await session.execute(
        select(first, func.count()).where(in_segment).group_by(first)
    ):
        if channel is not None:
            counts[f"first:{channel}"] = count
    return counts


async def night_waits(
    session: AsyncSession, plan: CampaignPlan, quiet: QuietHours | None
) -> list[NightWait]:
    """Who of the segment will wait out quiet hours when the campaign starts, per time zone
    (the client's own, else the company's); none for service messages or without a night."""
    if plan.kind != ADVERTISING or quiet is None:
        return []
    members = plan.members.subquery()
    rows = await session.execute(
        select(Client.timezone, func.count())
        .where(Client.id.in_(select(members.c[0])))
        .group_by(Client.timezone)
    )
    by_zone: Counter[str] = Counter()
    for zone, count in rows:
        by_zone[zone or quiet.default_zone] += count
    waits = []
    for zone, count in sorted(by_zone.items()):
        until = quiet.morning(plan.starts_at, zone)
        if until is not None:
            waits.append(NightWait(zone, count, until))
    return waits


async def create_campaign(
    session: AsyncSession,
    plan: CampaignPlan,
    company: CompanyInfo,
    *,
    now: datetime,
    today: date,
    name: str = "",
    created_by: str = "",
    batch_size: int = 1000,
    links: LinkSigner | None = None,
    opt_out: OptOut | None = None,
) -> tuple[Campaign, EnqueueResult]:
    """Create the campaign and queue a message for every client of its segment.

    With `links`, every message carries the client's unsubscribe link (naming this
    campaign); `opt_out` adds each channel's way out to advertising.
    """
    campaign = Campaign(
        name=name or f"{plan.template.name} → {plan.segment}",
        segment=plan.segment,
        segment_params=plan.params,
        template=plan.template.name,
        plan=",".join(plan.plan),
        kind=plan.kind,
        state=ACTIVE,
        starts_at=plan.starts_at,
        email_account=plan.email_account,
        created_by=created_by,
        created_at=now,
    )
    session.add(campaign)
    await session.flush()
    result = EnqueueResult()
    members = plan.members
    campaign_id = campaign.id
    unsubscribe = None if links is None else (lambda client: links.url(client, campaign_id))
    context_for = context_maker(company, today, unsubscribe)
    async for page in client_pages(session, members, batch_size):
        recipients = [
            Recipient(
                client_id=client.id,
                key=f"campaign:{campaign.id}:{client.id}",
                context=context_for(client, car),
                channels=reachable_channels(client, plan.plan),
            )
            for client, car in page
        ]
        result.add(
            await enqueue(
                session,
                plan.template,
                recipients,
                plan=plan.plan,
                kind=plan.kind,
                now=now,
                not_before=plan.starts_at,
                campaign_id=campaign.id,
                new_keys=True,
                opt_out=opt_out,
                account=plan.email_account,
            )
        )
    return campaign, result


async def cancel_campaign(session: AsyncSession, campaign_id: int, now: datetime) -> int:
    """Stop a campaign: messages not yet on their way are cancelled; returns how many."""
    campaign = await _get(session, campaign_id)
    if campaign.state == CANCELLED:
        raise CampaignError(f"campaign {campaign_id} is already cancelled")
    campaign.state = CANCELLED
    campaign.cancelled_at = now
    return await cancel(session, campaign_id, now)


async def campaign_report(
    session: AsyncSession, campaign_id: int, now: datetime, quiet: QuietHours | None = None
) -> CampaignReport:
    """Counts per state and per channel, the commonest reasons for skips and failures, and
    what the queued messages wait for (with `quiet`, quiet hours as configured now)."""
    campaign = await _get(session, campaign_id)
    rows = await session.execute(
        select(Message.state, Message.channel, func.count())
        .where(Message.campaign_id == campaign_id)
        .group_by(Message.state, Message.channel)
    )
    by_state: Counter[str] = Counter()
    by_channel: defaultdict[str, Counter[str]] = defaultdict(Counter)
    for state, channel, count in rows:
        by_state[state] += count
        by_channel[channel or "-"][state] += count
    reasons = await session.execute(
        select(Message.reason, func.count())
        .where(
            Message.campaign_id == campaign_id,
            Message.state.in_((SKIPPED, FAILED, UNKNOWN)),
            Message.reason.is_not(None),
        )
        .group_by(Message.reason)
        .order_by(func.count().desc())
        .limit(10)
    )
    by_sender: defaultdict[str, Counter[str]] = defaultdict(Counter)
    cost = None
    for sender, state, count, priced in await session.execute(
        select(Message.sender, Message.state, func.count(), func.sum(Message.cost))
        .where(Message.campaign_id == campaign_id, Message.sender.is_not(None))
        .group_by(Message.sender, Message.state)
    ):
        by_sender[sender or "-"][state] += count
        if priced is not None:
            cost = (cost or Decimal(0)) + Decimal(priced)
    opt_outs = await session.scalar(
        select(func.count(distinct(ConsentEvent.client_id))).where(
            ConsentEvent.campaign_id == campaign_id, ConsentEvent.granted.is_(False)
        )
    )
    return CampaignReport(
        campaign=campaign,
        status=_status(campaign, by_state, now),
        by_state={state: by_state[state] for state in STATES if by_state[state]},
        by_channel={channel: dict(states) for channel, states in sorted(by_channel.items())},
        reasons=[(str(reason), count) for reason, count in reasons],
        by_sender={sender: dict(states) for sender, states in sorted(by_sender.items())},
        cost=cost,
        opt_outs=int(opt_outs or 0),
        waiting=await _waiting(session, campaign_id, now, quiet),
    )


async def list_campaigns(session: AsyncSession, now: datetime) -> list[CampaignReport]:
    campaigns = (await session.scalars(select(Campaign).order_by(Campaign.id.desc()))).all()
    counts: defaultdict[int, dict[str, int]] = defaultdict(dict)
    for campaign_id, state, count in await session.execute(
        select(Message.campaign_id, Message.state, func.count())
        .where(Message.campaign_id.is_not(None))
        .group_by(Message.campaign_id, Message.state)
    ):
        if campaign_id is not None:
            counts[campaign_id][state] = count
    return [CampaignReport(c, _status(c, counts[c.id], now), counts[c.id], {}) for c in campaigns]


async def _waiting(
    session: AsyncSession, campaign_id: int, now: datetime, quiet: QuietHours | None
) -> list[Waiting]:
    """Queued messages not yet due, by what they wait for; with `quiet`, advertising that is
    due but would wait for the morning if sent now counts as waiting for quiet hours too
    (a dispatcher marks it so only when it reaches it)."""
    queued = (Message.campaign_id == campaign_id, Message.state == QUEUED)
    waits: dict[str | None, Waiting] = {
        why: Waiting(why, count, next_at)
        for why, count, next_at in await session.execute(
            select(Message.waiting, func.count(), func.min(Message.next_attempt_at))
            .where(*queued, Message.next_attempt_at > now)
            .group_by(Message.waiting)
        )
    }
    if quiet is not None:
        due_by_zone = await session.execute(
            select(Client.timezone, func.count())
            .join(Message, Message.client_id == Client.id)
            .where(*queued, Message.kind == ADVERTISING, Message.next_attempt_at <= now)
            .group_by(Client.timezone)
        )
        for zone, count in due_by_zone:
            if (morning := quiet.morning(now, zone)) is not None:
                held = waits.get(QUIET_HOURS)
                if held is not None:
                    count, morning = held.count + count, min(held.next_at, morning)
                waits[QUIET_HOURS] = Waiting(QUIET_HOURS, count, morning)
    return sorted(waits.values(), key=lambda wait: wait.next_at)


def _status(campaign: Campaign, by_state: Mapping[str, int], now: datetime) -> str:
    if campaign.state == CANCELLED:
        return "cancelled"
    if not by_state.get(QUEUED) and not by_state.get(SENDING):
        return "finished"
    return "scheduled" if campaign.starts_at > now else "running"


async def _get(session: AsyncSession, campaign_id: int) -> Campaign:
    campaign = await session.get(Campaign, campaign_id)
    if campaign is None:
        raise CampaignError(f"no campaign {campaign_id}: see `autoloyal campaign list`")
    return campaign

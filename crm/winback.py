"""Win-back: an invitation to clients who have just become lost, once per lapse.

Lost is the `lost` segment's word: visits, but none in the last `[segments]
lost_after_days` days. A client's lapse begins the day they become lost and lasts until
their next visit; its key is `winback:<client>:<last visit>`, so a new visit followed by a
new lapse invites them again, and a rerun queues nothing twice.

Only lapses that began within the last `RECENT_DAYS` days count: "since the last run",
with a month's slack for a scheduler that was down. Clients lost for years are not all
messaged when the job is first switched on: they are history, and a campaign to the
`lost` segment reaches them on purpose if the dealer wants to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.clock import Moment
from crm.context import (
    OCCASION_SECTIONS,
    CarFacts,
    ClientFacts,
    CompanyInfo,
    context_maker,
    reachable_channels,
)
from crm.notices import Page, enqueue_for_day, facts_of
from crm.preferences import LinkSigner
from crm.segments import SegmentContext, SegmentQuery, resolve
from crm.templates import TemplateLibrary
from gateway.optout import OptOut
from gateway.outbox import Recipient, check_plan
from gateway.quiet import Night
from storage.models import Visit

RECENT_DAYS = 30
"""How far back a lapse may have begun and still be news: a month covers any downtime of
a daily job (`[scheduler] catch_up_days` is at most 31)."""
MAX_LOST_DAYS = 36_500  # the `lost` segment's bound on `days`


class WinbackError(ValueError):
    """The configured template cannot be sent as a win-back."""


@dataclass(frozen=True, slots=True)
class Winback:
    """How win-back messages go out (config `[winback]`). `links` signs each client's
    unsubscribe link; `opt_out` adds each channel's way out to advertising."""

    library: TemplateLibrary
    company: CompanyInfo
    template: str
    plan: tuple[str, ...]
    kind: str
    night: Night | None
    links: LinkSigner | None = None
    opt_out: OptOut | None = None


async def recently_lost(
    session: AsyncSession, context: SegmentContext, within_days: int = RECENT_DAYS
) -> SegmentQuery:
    """Clients lost as of `context.today` whose lapse began within the last `within_days`
    days (today included): lost, and not lost `within_days` days earlier."""
    lost_after = context.lifecycle.lost_after_days
    earlier = min(lost_after + within_days, MAX_LOST_DAYS)
    sql = await resolve(session, f"lost and not lost(days={earlier})", {}, context)
    return sql.members


async def invite_lost(
    session: AsyncSession,
    winback: Winback,
    members: SegmentQuery,
    moment: Moment,
    *,
    after: int = 0,
    size: int = 500,
) -> Page:
    """Queue the win-back for the next `size` clients of `members` (by id, after `after`)."""
    template = await winback.library.get(session, winback.template)
    check_plan(template, winback.plan, winback.kind)
    occasion = sorted(template.needs & OCCASION_SECTIONS)
    if occasion:
        raise WinbackError(
            f"[winback] template {winback.template} needs {', '.join(occasion)}, "
            "which only its own occasion provides"
        )
    page_of = await _first_page(session, members, after, size)
    if not page_of:
        return Page(None)
    last_visits = await _last_visits(session, [client.id for client, _ in page_of], moment.today)
    links = winback.links
    context_for = context_maker(winback.company, moment.today, None if links is None else links.url)
    page = Page(page_of[-1][0].id)
    ready = []
    for client, car in page_of:
        channels = reachable_channels(client, winback.plan)
        if not channels:
            page.unreachable += 1
            continue
        key = f"winback:{client.id}:{last_visits[client.id].isoformat()}"
        recipient = Recipient(client.id, key, context_for(client, car), channels=channels)
        ready.append((recipient, client.timezone or winback.company.timezone))
    page.count(
        await enqueue_for_day(
            session,
            template,
            ready,
            plan=winback.plan,
            kind=winback.kind,
            now=moment.now,
            night=winback.night,
            opt_out=winback.opt_out,
        )
    )
    return page


async def _first_page(
    session: AsyncSession, members: SegmentQuery, after: int, size: int
) -> list[tuple[ClientFacts, CarFacts | None]]:
    """The next `size` members after `after`, with what their messages need."""
    client_id = members.selected_columns[0]
    ids = await session.scalars(members.where(client_id > after).order_by(client_id).limit(size))
    return await facts_of(session, list(ids))


async def _last_visits(session: AsyncSession, ids: Sequence[int], today: date) -> dict[int, date]:
    rows = await session.execute(
        select(Visit.client_id, func.max(Visit.visited_on))
        .where(Visit.client_id.in_(ids), Visit.visited_on <= today)
        .group_by(Visit.client_id)
    )
    return {client_id: day for client_id, day in rows}

"""`surveys`, every few minutes: invitations to rate a visit for the work orders posted
without one, each due when the work order's answer said (crm.surveys)."""

from __future__ import annotations

from autoloyal.messaging import template_library
from autoloyal.rules import survey_invites
from crm.surveys import invite_posted_visits
from scheduler.base import JobContext, JobResult


async def run(ctx: JobContext, result: JobResult) -> None:
    invites = survey_invites(ctx.settings, template_library(ctx.settings))
    if invites is None:  # [surveys] invite = false
        return
    after: int | None = 0
    while after is not None:
        async with ctx.session() as session:
            after, counts = await invite_posted_visits(session, invites, ctx.moment, after=after)
        result.add_all(counts)

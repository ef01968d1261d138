"""`winback`, daily: invite clients who became lost since the last run, once per lapse.

Who counts and for how long is crm.winback's; `[winback]` says whether it runs, with which
template, channels and kind. Advertising (the default) carries the unsubscribe link and
each channel's way out, as a campaign does.
"""

from __future__ import annotations

from autoloyal.messaging import company_info, link_signer, opt_out, template_library
from autoloyal.rules import segment_context
from crm.winback import Winback, invite_lost, recently_lost
from scheduler.base import JobContext, JobResult


async def run(ctx: JobContext, result: JobResult) -> None:
    settings = ctx.settings
    if not settings.winback.enabled:
        result.add("off")
        return
    section = settings.winback
    async with ctx.session() as session:
        links = await link_signer(session, settings, ctx.now)
    winback = Winback(
        library=template_library(settings),
        company=company_info(settings),
        template=section.template,
        plan=section.channels,
        kind=section.kind,
        night=settings.company.quiet,
        links=links,
        opt_out=opt_out(settings),
    )
    context = segment_context(settings, ctx.day)
    after: int | None = 0
    while after is not None:
        async with ctx.session() as session:
            members = await recently_lost(session, context)
            page = await invite_lost(
                session, winback, members, ctx.moment, after=after,
                size=settings.outbox.batch_size,
            )  # fmt: skip
        result.add("queued", page.queued)
        result.add("duplicates", page.duplicates)
        result.add("unreachable", page.unreachable)
        after = page.after

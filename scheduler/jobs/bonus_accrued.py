"""`bonus_accrued`, every few minutes: tell clients what their work orders earned.

Each accrual of a work order gets one notice (`bonus_accrued`), if it is news: written
in the last days (crm.notices.NEWS_DAYS). Off with `[bonuses] accrued_notice = false`.
"""

from __future__ import annotations

from autoloyal.rules import bonus_notices
from crm.notices import notify_accruals
from scheduler.base import JobContext, JobResult


async def run(ctx: JobContext, result: JobResult) -> None:
    if not ctx.settings.bonuses.accrued_notice:
        result.add("off")
        return
    notices = bonus_notices(ctx.settings)
    after: int | None = 0
    while after is not None:
        async with ctx.session() as session:
            page = await notify_accruals(
                session, notices, ctx.moment, after=after, size=ctx.settings.outbox.batch_size
            )
        result.add("queued", page.queued)
        result.add("duplicates", page.duplicates)
        result.add("unreachable", page.unreachable)
        after = page.after

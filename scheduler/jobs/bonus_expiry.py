"""`bonus_expiry`, daily (missed days caught up): write off expired bonuses, warn before.

The write-off is `autoloyal bonus expire`'s (crm.bonuses.expiry: one reference per lot, so
a rerun writes nothing twice). Then every client whose bonuses expire within `[bonuses]
expiring_warn_days` days gets `bonus_expiring`, once per client and expiry date.
"""

from __future__ import annotations

from autoloyal.rules import bonus_notices
from crm.bonuses.expiry import expire_due
from crm.clock import Moment
from crm.notices import Expiry, expiry_preview, warn_expiring
from scheduler.base import JobContext, JobResult


async def run(ctx: JobContext, result: JobResult) -> None:
    size = ctx.settings.outbox.batch_size
    if ctx.dry_run:  # expire_due commits its own batches: say what it would write off
        async with ctx.session() as session:
            due = await expiry_preview(session, ctx.day)
    else:
        report = await expire_due(ctx.sessions, ctx.moment, batch_size=min(size, 200))
        due = Expiry(report.clients, report.amount)
    result.add("expired_clients", due.clients)
    result.add("expired_bonuses", int(due.amount))
    within = ctx.settings.bonuses.expiring_warn_days
    if within == 0:
        return
    notices = bonus_notices(ctx.settings)
    # A day caught up after downtime warns as of the real today: never about a date gone.
    today = max(ctx.day, ctx.now.astimezone(ctx.zone).date())
    moment = Moment(ctx.now, today)
    after: int | None = 0
    while after is not None:
        async with ctx.session() as session:
            page = await warn_expiring(
                session, notices, moment, within_days=within, after=after, size=size
            )
        result.add("queued", page.queued)
        result.add("duplicates", page.duplicates)
        result.add("unreachable", page.unreachable)
        after = page.after

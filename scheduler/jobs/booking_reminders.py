"""`booking_reminders`, every few minutes: confirmed bookings the day before and hours before
their start (crm.reminders says which is due; the keys say once)."""

from __future__ import annotations

from autoloyal.rules import booking_reminders, booking_rules
from crm.reminders import bookings_due, pages, remind_bookings
from scheduler.base import JobContext, JobResult


async def run(ctx: JobContext, result: JobResult) -> None:
    reminders = booking_reminders(ctx.settings)
    async with ctx.session() as session:
        due, skipped = await bookings_due(session, reminders, booking_rules(ctx.settings), ctx.now)
    result.add_all(skipped)
    for page in pages(due):
        async with ctx.session() as session:
            counts = await remind_bookings(session, reminders, page, ctx.moment)
        result.add_all(counts)

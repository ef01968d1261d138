"""`booking_reminders`, every few minutes: confirmed bookings the day before and hours before
their start (crm.reminders says which is due; the keys say once)."""

from __future__ import annotations

from datetime import time, timedelta

from autoloyal.config import Settings
from autoloyal.messaging import company_info, template_library
from autoloyal.rules import booking_rules
from crm.reminders import BookingReminders, bookings_due, pages, remind_bookings
from scheduler.base import JobContext, JobResult


def booking_reminders(settings: Settings) -> BookingReminders:
    section = settings.reminders
    at = None
    if section.booking_day_before_at:
        hours, minutes = section.booking_day_before_at.split(":")
        at = time(int(hours), int(minutes))
    return BookingReminders(
        library=template_library(settings),
        company=company_info(settings),
        plan=section.booking_channels,
        day_before_at=at,
        hours_before=timedelta(hours=section.booking_hours_before),
        night=settings.company.quiet,
    )


async def run(ctx: JobContext, result: JobResult) -> None:
    reminders = booking_reminders(ctx.settings)
    async with ctx.session() as session:
        due, skipped = await bookings_due(session, reminders, booking_rules(ctx.settings), ctx.now)
    for what, n in skipped.items():
        result.add(what, n)
    for page in pages(due):
        async with ctx.session() as session:
            counts = await remind_bookings(session, reminders, page, ctx.moment)
        for what, n in counts.items():
            result.add(what, n)

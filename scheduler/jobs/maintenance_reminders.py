"""`maintenance_reminders`, daily: cars coming due for maintenance, and once more after the
date passes (crm.reminders says who and when; the keys say once)."""

from __future__ import annotations

from datetime import UTC, datetime, time

from autoloyal.config import Settings
from autoloyal.messaging import company_info, template_library
from autoloyal.rules import maintenance_policy
from crm.reminders import MaintenanceReminders, maintenance_due, pages, remind_maintenance
from scheduler.base import JobContext, JobResult


def maintenance_reminders(settings: Settings) -> MaintenanceReminders:
    section = settings.reminders
    return MaintenanceReminders(
        library=template_library(settings),
        company=company_info(settings),
        plan=section.maintenance_channels,
        days_before=section.maintenance_days_before,
        again_after_days=section.maintenance_again_after_days,
        night=settings.company.quiet,
    )


async def run(ctx: JobContext, result: JobResult) -> None:
    reminders = maintenance_reminders(ctx.settings)
    day_starts = datetime.combine(ctx.day, time(0), ctx.zone).astimezone(UTC)
    async with ctx.session() as session:
        due = await maintenance_due(
            session, maintenance_policy(ctx.settings), reminders, ctx.day, day_starts
        )
    for page in pages(due):
        async with ctx.session() as session:
            counts = await remind_maintenance(session, reminders, page, ctx.moment)
        for what, n in counts.items():
            result.add(what, n)

"""`maintenance_reminders`, daily: cars coming due for maintenance, and once more after the
date passes (crm.reminders says who and when; the keys say once)."""

from __future__ import annotations

from datetime import UTC, datetime, time

from autoloyal.rules import maintenance_policy, maintenance_reminders
from crm.reminders import maintenance_due, pages, remind_maintenance
from scheduler.base import JobContext, JobResult


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
        result.add_all(counts)

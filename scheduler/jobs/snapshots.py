"""`snapshots`, nightly: each client's ABC and XYZ class as of the day (crm.snapshots)."""

from __future__ import annotations

from autoloyal.rules import segment_context
from crm.snapshots import take_snapshot
from scheduler.base import JobContext, JobResult


async def run(ctx: JobContext, result: JobResult) -> None:
    async with ctx.session() as session:
        result.add("clients", await take_snapshot(session, segment_context(ctx.settings, ctx.day)))

"""Running a job once per slot, and the record of every run (`job_run`).

A slot is what "once" counts in: a daily job's local day ("2026-11-24"), an interval job's
start of interval in UTC ("2026-11-24T06:15Z"). Before a job runs, its slot is claimed by
inserting the row (unique on job and slot): a slot done is not run again; a slot another
process is running is left to it while its heartbeat is fresh; a slot whose run failed, or
whose process died (its heartbeat older than `LEASE`), is taken over and run again. What
the run queues carries idempotency keys, so a run taken over queues only what is missing.

A forced run (`autoloyal job run`) runs whatever the row says and records itself in it. A
dry run claims nothing and writes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from autoloyal.config import Settings
from crm.clock import Moment
from scheduler.base import Daily, Every, Job, JobContext, JobResult
from storage.bulk import table_of
from storage.scheduling import JobRun

log = logging.getLogger("autoloyal.scheduler")

RUNNING, DONE, FAILED = "running", "done", "failed"
LEASE = timedelta(minutes=10)
"""A run whose heartbeat is older than this is taken to be dead."""
HEARTBEAT_SECONDS = 60.0
ERROR_MAX = 2000


@dataclass(frozen=True, slots=True)
class Outcome:
    job: str
    slot: str
    ran: bool
    result: JobResult
    why_not: str | None = None
    """Why it did not run: done already, or running elsewhere."""
    error: str | None = None


def slot_of(job: Job, day: date, now: datetime) -> str:
    """The slot a run of `job` at `now` (for `day`) counts in."""
    if isinstance(job.schedule, Daily):
        return day.isoformat()
    assert isinstance(job.schedule, Every)
    minutes = job.schedule.minutes
    start = now.astimezone(UTC)
    since_midnight = start.hour * 60 + start.minute
    floor = since_midnight - since_midnight % minutes
    slot = start.replace(hour=floor // 60, minute=floor % 60, second=0, microsecond=0)
    return slot.strftime("%Y-%m-%dT%H:%MZ")


def host_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:64]


async def run_job(
    job: Job,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    clock: Callable[[], datetime],
    zone: ZoneInfo,
    *,
    day: date | None = None,
    dry_run: bool = False,
    force: bool = False,
) -> Outcome:
    """Run `job` for `day` (default: today in `zone`) unless its slot is done or in hand.

    A failure is recorded in the slot's row and returned, not raised: the scheduler goes on
    with the other jobs, and the next run of the slot (a restart, the next interval) tries
    again.
    """
    now = clock()
    day = day or now.astimezone(zone).date()
    slot = slot_of(job, day, now)
    result = JobResult()
    ctx = JobContext(settings, sessions, Moment(now, day), zone, dry_run=dry_run)
    if dry_run:
        await job.run(ctx, result)
        result.lines.extend(ctx.would_send)
        return Outcome(job.name, slot, True, result)
    why_not = await _claim(sessions, job.name, slot, now, force=force)
    if why_not is not None:
        return Outcome(job.name, slot, False, result, why_not=why_not)
    beat = asyncio.create_task(_heartbeat(sessions, job.name, slot, clock))
    try:
        await job.run(ctx, result)
    except Exception as exc:
        error = "".join(traceback.format_exception_only(exc)).strip()[:ERROR_MAX]
        log.exception("job %s (%s) failed", job.name, slot)
        await _finish(sessions, job.name, slot, FAILED, clock(), result, error)
        return Outcome(job.name, slot, True, result, error=error)
    finally:
        beat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beat
    await _finish(sessions, job.name, slot, DONE, clock(), result, None)
    log.info("job %s (%s): %s", job.name, slot, result.summary())
    return Outcome(job.name, slot, True, result)


async def done_slots(
    sessions: async_sessionmaker[AsyncSession], job: str, slots: list[str]
) -> set[str]:
    async with sessions() as session:
        found = await session.scalars(
            select(JobRun.slot).where(
                JobRun.job == job, JobRun.slot.in_(slots), JobRun.state == DONE
            )
        )
        return set(found)


async def last_runs(sessions: async_sessionmaker[AsyncSession]) -> dict[str, JobRun]:
    """Each job's latest run (by start)."""
    async with sessions() as session:
        rows = await session.scalars(select(JobRun).order_by(JobRun.started_at, JobRun.id))
        return {row.job: row for row in rows}


async def _claim(
    sessions: async_sessionmaker[AsyncSession], job: str, slot: str, now: datetime, *, force: bool
) -> str | None:
    async with sessions() as session, session.begin():
        dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
        values = {
            "job": job,
            "slot": slot,
            "state": RUNNING,
            "attempts": 1,
            "started_at": now,
            "heartbeat_at": now,
            "host": host_name(),
            "counts": {},
        }
        inserted = await session.scalar(
            dialect.insert(table_of(JobRun))
            .values(values)
            .on_conflict_do_nothing(index_elements=["job", "slot"])
            .returning(table_of(JobRun).c.id)
        )
        if inserted is not None:
            return None
        query = select(JobRun).where(JobRun.job == job, JobRun.slot == slot)
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update()
        row = await session.scalar(query)
        assert row is not None
        if not force:
            if row.state == DONE:
                return "done already"
            if row.state == RUNNING and row.heartbeat_at > now - LEASE:
                return f"running in {row.host}"
        row.state, row.attempts = RUNNING, row.attempts + 1
        row.started_at = row.heartbeat_at = now
        row.host, row.error, row.finished_at = host_name(), None, None
        return None


async def _heartbeat(
    sessions: async_sessionmaker[AsyncSession],
    job: str,
    slot: str,
    clock: Callable[[], datetime],
) -> None:
    while True:
        await asyncio.sleep(HEARTBEAT_SECONDS)
        async with sessions() as session, session.begin():
            await session.execute(
                update(JobRun)
                .where(JobRun.job == job, JobRun.slot == slot, JobRun.state == RUNNING)
                .values(heartbeat_at=clock())
            )


async def _finish(
    sessions: async_sessionmaker[AsyncSession],
    job: str,
    slot: str,
    state: str,
    now: datetime,
    result: JobResult,
    error: str | None,
) -> None:
    async with sessions() as session, session.begin():
        await session.execute(
            update(JobRun)
            .where(JobRun.job == job, JobRun.slot == slot)
            .values(
                state=state,
                finished_at=now,
                heartbeat_at=now,
                counts=dict(result.counts),
                error=error,
            )
        )

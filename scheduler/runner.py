"""The `scheduler` role: one process runs the jobs, at their times, in the company's zone.

APScheduler 3 (`AsyncIOScheduler`) fires the jobs: a cron trigger per daily job, an
interval trigger per job that runs every N minutes, built from the config at start. It
keeps nothing: its SQLAlchemy job store wants a sync driver and pickles jobs, and what
makes a job run once is the `job_run` table (scheduler/runs.py), which the store could not
replace anyway.

One scheduler: on PostgreSQL the process that holds a session advisory lock runs the jobs;
others started with the role wait, trying for the lock every `ELECTION_SECONDS`. The lock
lives with the leader's connection, so when the leader dies PostgreSQL frees it and a
waiting process takes over within seconds. On SQLite (one machine, usually one process)
the role runs where it is started: start it in one process only.

On becoming the leader it catches up: a daily job whose time has passed today and did not
run today runs now; a job that replays (reminders, bonus expiry) also runs for each day it
missed within `[scheduler] catch_up_days`, oldest first; greetings never run for a day
gone. Interval jobs run once at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from autoloyal.config import Settings
from scheduler import registry
from scheduler.base import Daily, Every, Job, Replay
from scheduler.runs import done_slots, run_job

log = logging.getLogger("autoloyal.scheduler")

LOCK_KEY = 0x6175746F73636864  # "autoschd": the advisory lock the leader holds (not the
# migrations' "autoloy")
ELECTION_SECONDS = 5.0
"""How often a waiting process tries for the lock, and the leader checks it still has it."""


class SchedulerRole:
    def __init__(
        self,
        settings: Settings,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        clock: Callable[[], datetime],
        *,
        election_seconds: float = ELECTION_SECONDS,
        jobs: Mapping[str, Job] | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.sessions = sessions
        self.clock = clock
        self.zone = ZoneInfo(settings.company.timezone)
        self.election_seconds = election_seconds
        self.jobs: Mapping[str, Job] = (
            jobs
            if jobs is not None
            else {name: registry.job(settings, name) for name in registry.enabled(settings)}
        )
        self.leading = asyncio.Event()
        """Set while this process runs the jobs."""
        self.caught_up = asyncio.Event()
        """Set once the leader has caught up and its triggers are running."""
        self._stopping = asyncio.Event()
        self._main: asyncio.Task[None] | None = None
        self._scheduler: AsyncIOScheduler | None = None
        self._running: set[asyncio.Task[Any]] = set()
        self._lock_connection: AsyncConnection | None = None

    async def start(self) -> None:
        self._main = asyncio.create_task(self._serve(), name="scheduler")

    async def stop(self) -> None:
        """No new run starts; the runs in hand finish (each is its own transactions)."""
        self._stopping.set()
        if self._main is not None:
            await self._main
        await self._release()

    # ------------------------------------------------------------------ leadership

    async def _serve(self) -> None:
        waiting_logged = False
        while not self._stopping.is_set():
            if not await self._elect():
                if not waiting_logged:
                    log.info("role scheduler: another process runs the jobs; waiting to take over")
                    waiting_logged = True
                await self._sleep(self.election_seconds)
                continue
            waiting_logged = False
            self.leading.set()
            log.info(
                "role scheduler: leading; %s",
                ", ".join(
                    f"{name} {registry.describe(job.schedule)}" for name, job in self.jobs.items()
                ),
            )
            try:
                await self._catch_up()
                self._start_triggers()
                self.caught_up.set()
                while not self._stopping.is_set() and await self._still_leading():
                    await self._sleep(self.election_seconds)
            finally:
                self.leading.clear()
                self.caught_up.clear()
                await self._stop_triggers()
                await self._release()

    async def _elect(self) -> bool:
        if self.engine.dialect.name != "postgresql":
            return True
        try:
            if self._lock_connection is None:
                self._lock_connection = await self.engine.connect()
            connection = self._lock_connection
            got = await connection.scalar(
                text("SELECT pg_try_advisory_lock(:key)"), {"key": LOCK_KEY}
            )
            await connection.commit()  # end the transaction; the session lock stays
            if got:
                return True
        except Exception:  # the database went away: try again later
            log.warning("role scheduler: cannot reach the database to take the lock", exc_info=True)
            await self._release()
            return False
        await self._release()
        return False

    async def _still_leading(self) -> bool:
        if self._lock_connection is None:
            return self.engine.dialect.name != "postgresql"
        try:
            await self._lock_connection.scalar(text("SELECT 1"))
            await self._lock_connection.commit()
        except Exception:
            log.warning("role scheduler: lost the database connection and with it the lead")
            return False
        return True

    async def _release(self) -> None:
        connection, self._lock_connection = self._lock_connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()  # closing the session frees its advisory lock

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    # ------------------------------------------------------------------ running jobs

    async def _catch_up(self) -> None:
        now = self.clock()
        today = now.astimezone(self.zone).date()
        local = now.astimezone(self.zone).time()
        for job in self.jobs.values():
            if isinstance(job.schedule, Every):
                await self._run(job, today)
                continue
            days = [today] if local >= job.schedule.at else []
            if job.replay is Replay.CATCH_UP:
                back = self.settings.scheduler.catch_up_days
                days = [today - timedelta(days=n) for n in range(back, 0, -1)] + days
            if not days:
                continue
            done = await done_slots(self.sessions, job.name, [day.isoformat() for day in days])
            for day in days:
                if day.isoformat() not in done and not self._stopping.is_set():
                    await self._run(job, day)

    async def _run(self, job: Job, day: date | None = None) -> None:
        if self._stopping.is_set():
            return
        task = asyncio.current_task()
        if task is not None:
            self._running.add(task)
        try:
            outcome = await run_job(
                job, self.settings, self.sessions, self.clock, self.zone, day=day
            )
            if not outcome.ran:
                log.info("job %s (%s) skipped: %s", job.name, outcome.slot, outcome.why_not)
        finally:
            if task is not None:
                self._running.discard(task)

    def _start_triggers(self) -> None:
        # APScheduler says at INFO every job it adds and every run it starts; our own line
        # per run (scheduler/runs.py) says what the run did.
        logging.getLogger("apscheduler").setLevel(logging.WARNING)
        scheduler = AsyncIOScheduler(timezone=self.zone)
        for job in self.jobs.values():
            trigger: CronTrigger | IntervalTrigger
            if isinstance(job.schedule, Daily):
                at = job.schedule.at
                trigger = CronTrigger(hour=at.hour, minute=at.minute, timezone=self.zone)
            else:
                trigger = IntervalTrigger(minutes=job.schedule.minutes, timezone=self.zone)
            scheduler.add_job(
                self._run,
                trigger,
                args=(job,),
                id=job.name,
                name=job.name,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=15 * 60,
            )
        scheduler.start()
        self._scheduler = scheduler

    async def _stop_triggers(self) -> None:
        scheduler, self._scheduler = self._scheduler, None
        if scheduler is not None:
            scheduler.shutdown(wait=False)
        running = [task for task in self._running if task is not asyncio.current_task()]
        if running:
            await asyncio.gather(*running, return_exceptions=True)

"""What a job is: a name, when it runs, and a function of the day it runs for.

A job is thin: it finds its clients through crm/ and queues their messages through the
outbox, each under an idempotency key, in transactions of its own. What makes a job run
once is the database, twice over: a `job_run` row per job and slot (a local day for a
daily job, the start of its interval for one that runs every N minutes), and the keys of
the messages it queues. A job that crashed half-way runs again and queues only what is
missing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, time
from enum import StrEnum
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from autoloyal.config import Settings
from crm.clock import Moment
from storage.outbox import Message


class Replay(StrEnum):
    """What a daily job does about days it missed while nothing ran."""

    NEVER = "never"
    """Only today, if its time has passed (greetings: a late one is worse than none)."""
    CATCH_UP = "catch_up"
    """Every missed day within `[scheduler] catch_up_days`, oldest first (reminders)."""


@dataclass(frozen=True, slots=True)
class Daily:
    at: time


@dataclass(frozen=True, slots=True)
class Every:
    minutes: int


Schedule = Daily | Every


@dataclass
class JobResult:
    """What one run did: counts by what happened (queued, duplicates, skipped, expired ...),
    and in a dry run one line per message it would queue."""

    counts: Counter[str] = field(default_factory=Counter)
    lines: list[str] = field(default_factory=list)

    def add(self, what: str, n: int = 1) -> None:
        if n:
            self.counts[what] += n

    def add_all(self, counts: Mapping[str, int]) -> None:
        for what, n in counts.items():
            self.add(what, n)

    def summary(self) -> str:
        return ", ".join(f"{what} {n}" for what, n in sorted(self.counts.items())) or "nothing"


@dataclass(frozen=True)
class JobContext:
    """What a job function is given.

    `moment` is the instant the job runs as: for `job run NAME --date D` and for a missed
    day caught up, the job's time on that day; `day` is its local date. Jobs open their own
    transactions with `session()` (a dry run's are rolled back, see scheduler/runs.py).
    """

    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    moment: Moment
    zone: ZoneInfo
    dry_run: bool = False
    would_send: list[str] = field(default_factory=list)
    """In a dry run: a line per message a transaction queued before it was rolled back."""

    @property
    def day(self) -> date:
        return self.moment.today

    @property
    def now(self) -> datetime:
        return self.moment.now

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """One transaction: committed when the block ends, or rolled back in a dry run."""
        async with self.sessions() as session:
            transaction = await session.begin()
            try:
                last = await session.scalar(select(func.max(Message.id))) if self.dry_run else 0
                yield session
                if self.dry_run:
                    self.would_send.extend(await _queued_since(session, last or 0))
            except BaseException:
                await transaction.rollback()
                raise
            if self.dry_run:
                await transaction.rollback()
            else:
                await transaction.commit()


async def _queued_since(session: AsyncSession, last_id: int) -> list[str]:
    rows = await session.execute(
        select(Message.client_id, Message.template, Message.plan, Message.idempotency_key)
        .where(Message.id > last_id)
        .order_by(Message.id)
    )
    return [f"client #{c}: {t} by {p} ({key})" for c, t, p, key in rows]


JobFunction = Callable[[JobContext, JobResult], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Job:
    name: str
    run: JobFunction
    schedule: Schedule
    replay: Replay = Replay.NEVER
    description: str = ""

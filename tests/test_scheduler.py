"""The scheduler's machinery: a job runs once per slot, a failed or dead run is taken over,
missed days are caught up or not as the job says, a dry run writes nothing, the CLI, and one
leader among scheduler processes on PostgreSQL.

The jobs here are the test's own: what the real jobs do is in their own test files.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, update

from autoloyal.config import Settings, parse_settings
from crm.context import ClientFacts
from crm.templates import TemplateLibrary
from gateway.outbox import Recipient, enqueue
from scheduler.base import Daily, Every, Job, JobContext, JobResult, Replay
from scheduler.runner import SchedulerRole
from scheduler.runs import DONE, FAILED, LEASE, RUNNING, run_job, slot_of
from storage.outbox import Message
from storage.scheduling import JobRun
from tests.support.clock import FakeClock
from tests.support.databases import Database
from tests.support.messaging import COMPANY, add_client

MOSCOW = ZoneInfo("Europe/Moscow")


class Greeter:
    """A job that queues one message per client under a key per day, and can be told to fail
    after its first client (a crash half-way)."""

    def __init__(self, clients: list[int]) -> None:
        self.clients = clients
        self.days: list[date] = []
        self.fail_after_first = False

    async def __call__(self, ctx: JobContext, result: JobResult) -> None:
        self.days.append(ctx.day)
        template = None
        for n, client in enumerate(self.clients):
            if n == 1 and self.fail_after_first:
                raise RuntimeError("the SMS gateway's template server fell over")
            async with ctx.session() as session:
                template = template or await TemplateLibrary().get(session, "birthday")
                facts = ClientFacts(client, "Иван", "Петрович", "Смирнов", "male", None)
                from crm.context import message_context

                queued = await enqueue(
                    session,
                    template,
                    [Recipient(client, f"test:{ctx.day}:{client}", message_context(
                        COMPANY, facts, None, ctx.day))],
                    plan=("telegram",),
                    kind="service",
                    now=ctx.now,
                )  # fmt: skip
            result.add("queued", queued.queued)
            result.add("duplicates", queued.duplicates)


def daily(run: Greeter, *, at: time = time(9), replay: Replay = Replay.NEVER) -> Job:
    return Job("greet", run, Daily(at), replay)


async def messages(db: Database) -> int:
    async with db.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(Message)) or 0)


async def runs(db: Database) -> list[tuple[str, str, str, int]]:
    async with db.sessions() as session:
        rows = await session.scalars(select(JobRun).order_by(JobRun.slot))
        return [(r.job, r.slot, r.state, r.attempts) for r in rows]


def settings_for(db: Database, **more: object) -> Settings:
    return parse_settings({"database": {"url": db.url}, **more})


async def test_a_job_runs_once_per_day_and_a_failed_run_is_taken_again(
    db: Database, clock: FakeClock
) -> None:
    clients = [await add_client(db) for _ in range(3)]
    greeter = Greeter(clients)
    job, settings = daily(greeter), settings_for(db)
    greeter.fail_after_first = True
    failed = await run_job(job, settings, db.sessions, clock, MOSCOW)
    assert failed.error is not None
    assert "fell over" in failed.error
    assert await runs(db) == [("greet", "2026-11-24", FAILED, 1)]
    assert await messages(db) == 1
    greeter.fail_after_first = False
    again = await run_job(job, settings, db.sessions, clock, MOSCOW)
    assert (again.ran, again.result.counts["queued"], again.result.counts["duplicates"]) == (
        True,
        2,
        1,
    )
    third = await run_job(job, settings, db.sessions, clock, MOSCOW)
    assert (third.ran, third.why_not) == (False, "done already")
    assert await runs(db) == [("greet", "2026-11-24", DONE, 2)]
    assert await messages(db) == 3
    # By hand (`autoloyal job run`) it runs again, and queues nothing twice.
    forced = await run_job(job, settings, db.sessions, clock, MOSCOW, force=True)
    assert (forced.result.counts["queued"], forced.result.counts["duplicates"]) == (0, 3)
    assert await messages(db) == 3


async def test_a_run_whose_process_died_is_taken_over_after_its_lease(
    db: Database, clock: FakeClock
) -> None:
    greeter = Greeter([await add_client(db)])
    job, settings = daily(greeter), settings_for(db)
    await run_job(job, settings, db.sessions, clock, MOSCOW)
    async with db.sessions() as session, session.begin():  # as if it were still running
        await session.execute(update(JobRun).values(state=RUNNING, host="other:1"))
    busy = await run_job(job, settings, db.sessions, clock, MOSCOW)
    assert (busy.ran, busy.why_not) == (False, "running in other:1")
    clock.advance(LEASE + timedelta(seconds=1))
    taken = await run_job(job, settings, db.sessions, clock, MOSCOW)
    assert taken.ran
    assert taken.result.counts["duplicates"] == 1
    assert await runs(db) == [("greet", "2026-11-24", DONE, 2)]


async def test_interval_jobs_count_in_slots_of_their_interval(db: Database) -> None:
    job = Job("every", Greeter([]), Every(15))
    at = datetime(2026, 11, 24, 6, 29, 59, tzinfo=UTC)
    assert slot_of(job, date(2026, 11, 24), at) == "2026-11-24T06:15Z"
    assert slot_of(job, date(2026, 11, 24), at + timedelta(seconds=1)) == "2026-11-24T06:30Z"


async def test_a_dry_run_lists_who_would_get_what_and_writes_nothing(
    db: Database, clock: FakeClock
) -> None:
    clients = [await add_client(db) for _ in range(2)]
    outcome = await run_job(
        daily(Greeter(clients)), settings_for(db), db.sessions, clock, MOSCOW, dry_run=True
    )
    assert outcome.result.lines == [
        f"client #{c}: birthday by telegram (test:2026-11-24:{c})" for c in clients
    ]
    assert (await messages(db), await runs(db)) == (0, [])


# ---------------------------------------------------------------- catching up


@pytest.fixture
async def role_of(db: Database, clock: FakeClock) -> AsyncIterator[object]:
    made: list[SchedulerRole] = []

    def make(jobs: dict[str, Job], **settings: object) -> SchedulerRole:
        role = SchedulerRole(settings_for(db, **settings), db.engine, db.sessions, clock,
                             election_seconds=0.05, jobs=jobs)  # fmt: skip
        made.append(role)
        return role

    yield make
    for role in made:
        await role.stop()


async def started(role: SchedulerRole) -> None:
    await role.start()
    await asyncio.wait_for(role.caught_up.wait(), 120)


async def test_after_downtime_greetings_run_today_only_and_reminders_catch_up(
    db: Database, clock: FakeClock, role_of: object
) -> None:
    """10:00 in Moscow: the 09:00 jobs' time has passed today. Reminders replay the three
    days before ([scheduler] catch_up_days); greetings never run late for a day gone."""
    clock.set(datetime(2026, 11, 24, 7, tzinfo=UTC))
    greetings, reminders, later = Greeter([]), Greeter([]), Greeter([])
    jobs = {
        "greetings": Job("greetings", greetings, Daily(time(9))),
        "reminders": Job("reminders", reminders, Daily(time(9)), Replay.CATCH_UP),
        "later": Job("later", later, Daily(time(18)), Replay.CATCH_UP),
    }
    role = role_of(jobs)  # type: ignore[operator]
    await started(role)
    await role.stop()
    assert greetings.days == [date(2026, 11, 24)]
    assert reminders.days == [date(2026, 11, 21), date(2026, 11, 22), date(2026, 11, 23),
                              date(2026, 11, 24)]  # fmt: skip
    assert later.days == [date(2026, 11, 21), date(2026, 11, 22), date(2026, 11, 23)]
    # Started again the same day: nothing runs twice.
    again = role_of(jobs)  # type: ignore[operator]
    await started(again)
    await again.stop()
    assert greetings.days == [date(2026, 11, 24)]
    assert len(reminders.days) == 4


async def test_a_job_turned_off_or_before_its_time_does_not_run(
    db: Database, clock: FakeClock, role_of: object
) -> None:
    early = Greeter([])
    clock.set(datetime(2026, 11, 24, 5, tzinfo=UTC))  # 08:00 in Moscow
    role = role_of({"greetings": Job("greetings", early, Daily(time(9)))})  # type: ignore[operator]
    await started(role)
    await role.stop()
    assert early.days == []
    settings = settings_for(
        db, scheduler={"jobs": {"greetings": {"at": "09:00", "enabled": False}}}
    )
    real = SchedulerRole(settings, db.engine, db.sessions, clock)
    assert "greetings" not in real.jobs
    assert "booking_reminders" in real.jobs


# ---------------------------------------------------------------- one leader on PostgreSQL


async def test_one_leader_among_schedulers_and_another_takes_over(
    db: Database, clock: FakeClock, role_of: object
) -> None:
    """Two schedulers: one leads, the other waits; the leader goes and its connection dies,
    PostgreSQL frees the lock, and the other takes over. Never both at once. (A leader that
    lost its connection but lives stands again, and may win again: the real-process test
    below kills one.)"""
    if db.dialect != "postgresql":
        pytest.skip("SQLite: the scheduler runs in the one process it is started in")
    first_days, second_days = Greeter([]), Greeter([])
    first = role_of({"greetings": daily(first_days)})  # type: ignore[operator]
    await started(first)
    second = role_of({"greetings": daily(second_days)})  # type: ignore[operator]
    await second.start()
    both = False

    async def watch() -> None:
        nonlocal both
        while True:
            both = both or (first.leading.is_set() and second.leading.is_set())
            await asyncio.sleep(0.01)

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0.5)  # ten elections, all lost
    assert (first.leading.is_set(), second.leading.is_set()) == (True, False)
    assert first._lock_connection is not None
    raw = await first._lock_connection.get_raw_connection()
    backend = await raw.driver_connection.fetchval("SELECT pg_backend_pid()")  # type: ignore[union-attr]
    first._stopping.set()  # as good as dead: it will not stand again (kill -9: see below)
    async with db.engine.connect() as admin:
        await admin.execute(select(func.pg_terminate_backend(backend)))
    await asyncio.wait_for(second.caught_up.wait(), 120)
    watcher.cancel()
    assert not both
    assert first_days.days == [date(2026, 11, 24)]  # 09:00 has passed: ran on taking the lead
    assert second_days.days == []  # today's run was done: the new leader does not repeat it


def _scheduler_process(folder: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "AUTOLOYAL_CONFIG"}
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "autoloyal"), "run", "--roles", "scheduler"],
        cwd=folder,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(process: subprocess.Popen[str], words: str, seen: list[str]) -> None:
    """Read the process's log until a line has `words`."""
    assert process.stderr is not None
    while True:
        line = process.stderr.readline()
        assert line, "the process ended:\n" + "".join(seen)
        seen.append(line)
        if words in line:
            return


async def _read_until(process: subprocess.Popen[str], words: str, seen: list[str]) -> None:
    """A line with `words` within two minutes (killing the processes on the way out ends a
    read still waiting)."""
    try:
        await asyncio.wait_for(asyncio.to_thread(_wait_for, process, words, seen), 120)
    except TimeoutError:
        pytest.fail(f"no {words!r} in two minutes:\n" + "".join(seen))


async def test_two_scheduler_processes_one_leads_and_the_other_takes_over_a_kill(
    db: Database, tmp_path: Path
) -> None:
    """Real processes: `autoloyal run --roles scheduler` twice on one PostgreSQL database;
    the first leads, the second waits; kill -9 the first and the second leads."""
    if db.dialect != "postgresql":
        pytest.skip("SQLite: the scheduler runs in the one process it is started in")
    off = {name: "{ every_minutes = 60, enabled = false }" for name in (
        "greetings", "maintenance_reminders", "booking_reminders", "surveys", "bonus_expiry",
        "bonus_accrued", "winback", "snapshots")}  # fmt: skip
    jobs = "\n".join(f"{name} = {timing}" for name, timing in off.items())
    config = f'[database]\nurl = "{db.url}"\n\n[scheduler.jobs]\n{jobs}\n'
    (tmp_path / "config.toml").write_text(config, encoding="utf-8")
    first = _scheduler_process(tmp_path)
    second = None
    seen: list[str] = []
    try:
        await _read_until(first, "role scheduler: leading", seen)
        second = _scheduler_process(tmp_path)
        await _read_until(second, "another process runs the jobs", seen)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=60)
        await _read_until(second, "role scheduler: leading", seen)
    finally:
        for process in (first, second):
            if process is not None:
                process.kill()
                process.wait(timeout=60)

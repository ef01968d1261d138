"""The jobs by name: what each does, when it runs (from `[scheduler.jobs]`), what it does
about days missed. Each job's module is imported when the job is asked for, so `autoloyal
job list` does not load every job's dependencies."""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from autoloyal.config import DEFAULT_JOB_TIMES, Settings, clock_time
from scheduler.base import Daily, Every, Job, JobFunction, Replay, Schedule


@dataclass(frozen=True, slots=True)
class About:
    description: str
    replay: Replay = Replay.NEVER


ABOUT: dict[str, About] = {
    "greetings": About("birthday and holiday greetings of the [[occasion]] calendar"),
    "maintenance_reminders": About(
        "maintenance due: before the planned date, and once more after it", Replay.CATCH_UP
    ),
    "booking_reminders": About("bookings: the day before and a few hours before the start"),
    "surveys": About("invitations to rate a visit, for posted work orders"),
    "bonus_expiry": About("expired bonuses written off; clients warned before", Replay.CATCH_UP),
    "bonus_accrued": About("what a work order earned, told to the client"),
    "winback": About("clients who became lost since the last run, once per lapse"),
    "snapshots": About("each client's ABC and XYZ class as of the night"),
}
assert set(ABOUT) == set(DEFAULT_JOB_TIMES), "every job has a default time and a description"

NAMES = tuple(ABOUT)


class UnknownJob(LookupError):
    pass


def schedule_of(settings: Settings, name: str) -> Schedule:
    timing = settings.scheduler.timing(name)
    if timing.at is not None:
        return Daily(clock_time(timing.at))
    assert timing.every_minutes is not None
    return Every(timing.every_minutes)


def enabled(settings: Settings) -> list[str]:
    """The jobs the scheduler runs, in the registry's order."""
    return [name for name in NAMES if settings.scheduler.timing(name).enabled]


def job(settings: Settings, name: str) -> Job:
    """The job called `name`, with its module loaded."""
    about = ABOUT.get(name)
    if about is None:
        raise UnknownJob(f"no job {name!r}: the jobs are {', '.join(NAMES)}")
    module = importlib.import_module(f"scheduler.jobs.{name}")
    run: JobFunction = module.run
    return Job(name, run, schedule_of(settings, name), about.replay, about.description)


def describe(schedule: Schedule) -> str:
    if isinstance(schedule, Daily):
        return f"daily at {schedule.at:%H:%M}"
    return f"every {schedule.minutes} min"


__all__ = ["ABOUT", "NAMES", "Daily", "Every", "UnknownJob", "describe", "enabled", "job"]

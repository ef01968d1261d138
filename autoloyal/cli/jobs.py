"""`autoloyal job list|run`: the scheduler's jobs, when they run next and what they did last;
one job run by hand, as of a day, or as a dry run that writes nothing."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Annotated

import typer

from autoloyal.cli.console import err, fail, out, run_async, settings_of

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

    from scheduler.base import Schedule

job_app = typer.Typer(
    help="The scheduler's jobs: greetings, reminders, survey invitations, bonuses, snapshots.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


@job_app.command("list")
def list_command(ctx: typer.Context) -> None:
    """Each job: when it runs, its next run, and its last run with what it did."""
    from rich.table import Table

    from autoloyal.app import open_app
    from scheduler import registry
    from scheduler.runs import last_runs

    settings = settings_of(ctx)

    async def main() -> tuple[datetime, dict[str, object]]:
        async with open_app(settings) as app:
            return app.clock(), dict(await last_runs(app.sessions))

    now, runs = run_async(main())
    zone = settings.company.tz
    table = Table("job", "runs", "next run", "last run", "result", box=None)
    for name in registry.NAMES:
        timing = settings.scheduler.timing(name)
        schedule = registry.schedule_of(settings, name)
        next_run = _next_run(schedule, now, zone) if timing.enabled else "off"
        last = runs.get(name)
        if last is None:
            table.add_row(name, registry.describe(schedule), next_run, "never", "")
            continue
        from storage.scheduling import JobRun

        assert isinstance(last, JobRun)
        when = (last.finished_at or last.started_at).astimezone(zone)
        done = ", ".join(f"{what} {n}" for what, n in sorted(last.counts.items())) or "nothing"
        result = f"{last.state}: {last.error}" if last.error else f"{last.state}: {done}"
        table.add_row(
            name, registry.describe(schedule), next_run, f"{last.slot} ({when:%d.%m %H:%M})", result
        )
    out.print(table)


@job_app.command("run")
def run_command(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The job's name (see `autoloyal job list`).")],
    day: Annotated[
        str | None,
        typer.Option(
            "--date", help="Run as of this day, YYYY-MM-DD (default: today).", show_default=False
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show who would get what; write nothing.")
    ] = False,
) -> None:
    """Run one job now, as of --date. Running it twice queues nothing twice: every message
    has its key. With --dry-run every transaction is rolled back."""
    from autoloyal.app import open_app
    from scheduler import registry
    from scheduler.runs import run_job

    settings = settings_of(ctx)
    if name not in registry.NAMES:
        fail(f"no job {name!r}: the jobs are {', '.join(registry.NAMES)}")
    as_of = _parse_day(day)
    job = registry.job(settings, name)

    async def main() -> object:
        async with open_app(settings) as app:
            return await run_job(
                job,
                settings,
                app.sessions,
                app.clock,
                settings.company.tz,
                day=as_of,
                dry_run=dry_run,
                force=True,
            )

    from scheduler.runs import Outcome

    outcome = run_async(main())
    assert isinstance(outcome, Outcome)
    for line in outcome.result.lines:
        out.print(line, markup=False, highlight=False)
    what = "would do" if dry_run else "did"
    out.print(f"{name} ({outcome.slot}) {what}: {outcome.result.summary()}", markup=False)
    if outcome.error is not None:
        err.print(f"autoloyal: {name} failed: {outcome.error}", markup=False)
        raise typer.Exit(1)


def _parse_day(text: str | None) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        fail(f"--date {text!r}: give a day as YYYY-MM-DD")


def _next_run(schedule: Schedule, now: datetime, zone: ZoneInfo) -> str:
    from scheduler.base import Daily

    local = now.astimezone(zone)
    if isinstance(schedule, Daily):
        at = datetime.combine(local.date(), schedule.at, zone)
        if at <= local:
            at = datetime.combine(local.date() + timedelta(days=1), schedule.at, zone)
        return f"{at:%d.%m %H:%M}"
    return f"within {schedule.minutes} min"

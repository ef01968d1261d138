"""`autoloyal db ...`, `import`, `demo` and `run`: the schema, the data coming in, the service.

Like every command module, this one imports only typer at import time; each command imports
what it needs when it runs (see autoloyal/cli/__init__.py).
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from autoloyal.cli.console import err, guarded, out, run_async, settings_of

if TYPE_CHECKING:
    from rich.progress import Progress

    from crm.importing import Importer, ImportReport

PROGRESS_THRESHOLD = 3000  # rows; smaller files finish before a bar is worth drawing

db_app = typer.Typer(help="Database schema.", no_args_is_help=True, rich_markup_mode=None)


class Kind(enum.StrEnum):
    clients = "clients"
    cars = "cars"
    visits = "visits"
    bonuses = "bonuses"


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Create or update the schema to the latest version (safe to run again)."""
    from autoloyal.app import masked_url, open_app
    from storage import current_revision

    settings = settings_of(ctx)

    async def upgrade() -> str | None:
        async with open_app(settings) as opened:
            return await current_revision(opened.engine)

    revision = run_async(upgrade())
    out.print(f"database {masked_url(settings)} is at revision {revision} (head)")


@db_app.command("status")
def db_status(ctx: typer.Context) -> None:
    """Show the schema revision of the database and of this version of autoloyal."""
    from autoloyal.app import masked_url, open_app
    from storage import current_revision
    from storage.migrate import head_revision

    settings = settings_of(ctx)

    async def status() -> str | None:
        async with open_app(settings, migrate=False) as opened:
            return await current_revision(opened.engine)

    revision = run_async(status())
    head = head_revision()
    state = "up to date" if revision == head else "needs `autoloyal db upgrade`"
    out.print(
        f"database {masked_url(settings)}: revision {revision or 'none'}, head {head}: {state}"
    )


def import_command(
    ctx: typer.Context,
    kind: Annotated[Kind, typer.Argument(help="What the file holds.")],
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check every row and write the rejects, keep nothing.")
    ] = False,
) -> None:
    """Import clients, cars, visits or opening bonus balances from a CSV (canonical headers
    or a 1C export).

    Bad rows go to FILE.rejects.csv beside it with line and reason; good rows land. Running
    the same file again changes nothing. Bonuses: one opening balance per client, ever; a
    row without an expiry date gets the program's usual term ([bonuses] expire_after_days).
    """
    from autoloyal.app import open_app
    from crm.importing import IMPORTERS, run_import
    from crm.importing.bonuses import BonusImporter

    settings = settings_of(ctx)
    importer: Importer[Any] = (
        BonusImporter(valid_days=settings.bonuses.expire_after_days or None)
        if kind is Kind.bonuses
        else IMPORTERS[kind.value]
    )

    async def do_import() -> ImportReport:
        async with open_app(settings) as opened:
            with _progress_bar(f"importing {kind.value}") as bar:
                return await run_import(
                    importer,
                    file,
                    opened.sessions,
                    opened.import_context(),
                    on_start=bar.start,
                    progress=bar.advance,
                    dry_run=dry_run,
                )

    report = run_async(do_import())
    for note in report.notes():
        err.print(f"  {note}")
    out.print(report.summary())


def demo_command(
    ctx: typer.Context,
    clients: Annotated[int, typer.Option(min=1, max=1_000_000, help="How many clients.")] = 2000,
    seed: Annotated[int, typer.Option(help="Same seed, same dealer.")] = 1,
    export: Annotated[
        Path | None,
        typer.Option(
            file_okay=False, help="Write 1C-style CSV files here instead of the database."
        ),
    ] = None,
) -> None:
    """Fill an empty database with a realistic synthetic dealer (Russian names, cars, visits)."""
    from autoloyal.app import masked_url, open_app
    from crm.clock import local_today, system_clock
    from crm.demo.load import export_demo, load_demo
    from crm.importing.report import thousands

    settings = settings_of(ctx)

    async def fill() -> dict[str, int]:
        async with open_app(settings) as opened:
            with _progress_bar("generating demo clients") as bar:
                bar.start(clients)
                return await load_demo(
                    opened.sessions, opened.clock, settings.company.tz,
                    seed=seed, clients=clients, progress=bar.advance,
                )  # fmt: skip

    if export is not None:
        today = local_today(system_clock, settings.company.tz)
        files = guarded(lambda: export_demo(export, today, seed=seed, clients=clients))
        summary = ", ".join(f"{name}: {thousands(rows)} rows" for name, rows in files.items())
        out.print(f"demo dealer (seed {seed}) -> {export}/ {summary}")
        return
    counts = run_async(fill())
    summary = ", ".join(f"{thousands(rows)} {table}" for table, rows in counts.items())
    out.print(f"demo dealer (seed {seed}) -> {masked_url(settings)}: {summary}")


def run_command(
    ctx: typer.Context,
    roles: Annotated[
        str | None,
        typer.Option(help="Comma-separated roles to run in this process (default: all)."),
    ] = None,
) -> None:
    """Migrate the database, then run the service roles until stopped (Ctrl+C or SIGTERM)."""
    from autoloyal.run import parse_roles, run

    settings = settings_of(ctx)
    selected = guarded(lambda: parse_roles(roles, settings))
    run_async(run(settings, selected))


class _Bar:
    """A rich progress bar that appears only for files big enough to need one."""

    def __init__(self, progress: Progress | None, description: str) -> None:
        self._progress = progress
        self._description = description
        self._task: Any = None

    def start(self, total: int) -> None:
        if self._progress is not None and total >= PROGRESS_THRESHOLD:
            self._progress.start()
            self._task = self._progress.add_task(self._description, total=total)

    def advance(self, done: int) -> None:
        if self._task is not None and self._progress is not None:
            self._progress.advance(self._task, done)

    def __enter__(self) -> _Bar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None and self._progress is not None:
            self._progress.stop()


def _progress_bar(description: str) -> _Bar:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )
    return _Bar(progress if err.is_terminal else None, description)

"""The import loop shared by every kind of file: parse rows, apply them in batches, report.

Each batch is one transaction: a failure mid-file leaves no half-written batch, and since
every row is an upsert by its key, running the same file again finishes the job.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import date
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Generic, Protocol, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm.clock import Clock, local_today
from crm.importing.reader import Columns, CsvTable, Row, open_table
from crm.importing.report import ImportReport, RejectsFile, RowError

Parsed = TypeVar("Parsed")
ParsedIn = TypeVar("ParsedIn", contravariant=True)
Rejects = list[tuple[Row, RowError]]
Progress = Callable[[int], None]


@dataclass(frozen=True)
class ImportContext:
    clock: Clock
    tz: ZoneInfo
    region: str = "RU"  # phone numbers without a country code are read as this country's
    batch_size: int = 2000

    @property
    def today(self) -> date:
        return local_today(self.clock, self.tz)


class Importer(Protocol, Generic[Parsed]):
    kind: str
    columns: Columns

    def parse(self, row: Row, ctx: ImportContext) -> Parsed:
        """Read one row; raise RowError naming the column when a cell is bad."""
        ...

    async def apply(
        self,
        session: AsyncSession,
        batch: list[tuple[Row, Parsed]],
        report: ImportReport,
        ctx: ImportContext,
    ) -> Rejects:
        """Write a batch of parsed rows; return the rows refused on what the database holds."""
        ...


async def run_import(
    importer: Importer[Parsed],
    path: Path,
    sessions: async_sessionmaker[AsyncSession],
    ctx: ImportContext,
    *,
    on_start: Callable[[int], None] | None = None,
    progress: Progress | None = None,
    dry_run: bool = False,
) -> ImportReport:
    """Import one file; bad rows go to `<name>.rejects.csv` beside it, good rows land.

    A dry run checks every row against the database and writes the rejects file, in one
    transaction that is rolled back: its counts are those of the real run, nothing is kept.
    """
    table = open_table(path, importer.columns)
    report = ImportReport(kind=importer.kind, ignored_columns=table.ignored, dry_run=dry_run)
    rejects_file = RejectsFile(table)
    if on_start is not None:
        on_start(table.approx_rows)
    if not dry_run:
        committing = partial(_committing, sessions)
        await _import_rows(importer, table, ctx, report, rejects_file, progress, committing)
        return report
    async with sessions() as session:
        transaction = await session.begin()
        try:
            await _import_rows(
                importer, table, ctx, report, rejects_file, progress, partial(_within, session)
            )
        finally:
            await transaction.rollback()
    return report


BatchSession = Callable[[], AbstractAsyncContextManager[AsyncSession]]


@asynccontextmanager
async def _committing(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    async with sessions() as session, session.begin():
        yield session


@asynccontextmanager
async def _within(session: AsyncSession) -> AsyncIterator[AsyncSession]:
    yield session


async def _import_rows(
    importer: Importer[Parsed],
    table: CsvTable,
    ctx: ImportContext,
    report: ImportReport,
    rejects_file: RejectsFile,
    progress: Progress | None,
    batch_session: BatchSession,
) -> None:
    """Parse and apply the rows batch by batch, each batch in a session from `batch_session`
    (its own committed transaction, or one outer transaction in a dry run)."""
    for chunk in _batches(table.rows(), ctx.batch_size):
        parsed: list[tuple[Row, Parsed]] = []
        rejects: Rejects = []
        for row in chunk:
            try:
                if row.problem is not None:
                    raise RowError(*row.problem)
                parsed.append((row, importer.parse(row, ctx)))
            except RowError as error:
                rejects.append((row, error))
        async with batch_session() as session:
            rejects += await importer.apply(session, parsed, report, ctx)
        # Written once the batch is applied: a real run never lists rows of a batch that failed.
        rejects.sort(key=lambda item: item[0].line)
        rejects_file.write(rejects)
        report.rejected += len(rejects)
        if progress is not None:
            progress(len(chunk))
    if rejects_file.count:
        report.rejects_path = rejects_file.path


def _batches(rows: Iterable[Row], size: int) -> Iterator[list[Row]]:
    iterator = iter(rows)
    while chunk := list(islice(iterator, size)):
        yield chunk


T = TypeVar("T")


def read(row: Row, column: str, parser: Callable[..., T], **options: object) -> T:
    """Parse one cell; a ValueError from the parser becomes a RowError naming the column."""
    try:
        return parser(row.cells.get(column, ""), **options)
    except ValueError as error:
        raise RowError(column, str(error)) from None

"""The import loop shared by every kind of file: parse rows, apply them in batches, report.

Each batch is one transaction: a failure mid-file leaves no half-written batch, and since
every row is an upsert by its key, running the same file again finishes the job.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from itertools import islice
from pathlib import Path
from typing import Generic, Protocol, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm.clock import Clock, local_today
from crm.importing.reader import Columns, Row, open_table
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
) -> ImportReport:
    """Import one file; bad rows go to `<name>.rejects.csv` beside it, good rows land."""
    table = open_table(path, importer.columns)
    report = ImportReport(kind=importer.kind, ignored_columns=table.ignored)
    rejects_file = RejectsFile(table)
    if on_start is not None:
        on_start(table.approx_rows)
    for chunk in _batches(table.rows(), ctx.batch_size):
        parsed: list[tuple[Row, Parsed]] = []
        rejects: Rejects = []
        for row in chunk:
            try:
                parsed.append((row, importer.parse(row, ctx)))
            except RowError as error:
                rejects.append((row, error))
        async with sessions() as session, session.begin():
            rejects += await importer.apply(session, parsed, report, ctx)
        # Written after the commit, so the rejects file never lists rows of a rolled-back batch.
        rejects.sort(key=lambda item: item[0].line)
        rejects_file.write(rejects)
        report.rejected += len(rejects)
        if progress is not None:
            progress(len(chunk))
    if rejects_file.count:
        report.rejects_path = rejects_file.path
    return report


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

"""`autoloyal segment NAME [k=v ...]`: who is in a segment, why, and how many."""

from __future__ import annotations

import enum
import json
import sys
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any

import typer

from autoloyal.cli.console import guarded, out, parse_params, run_async, settings_of
from autoloyal.cli.spreadsheet import CsvWriter

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from crm.segments import Column, SavedSegmentInfo
    from crm.segments.base import Param, SegmentContext

TABLE_ROWS = 20  # rows a terminal shows unless --limit says otherwise


class Format(enum.StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


def segment_command(
    ctx: typer.Context,
    name: Annotated[
        str | None,
        typer.Argument(
            help="A segment (abc, lost, ...), a saved one, or an expression such as "
            "'abc(group=A) and not lost'. Without it: the list of segments.",
            show_default=False,
        ),
    ] = None,
    params: Annotated[
        list[str] | None, typer.Argument(help="Parameters as k=v.", show_default=False)
    ] = None,
    output: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.table,
    only_count: Annotated[
        bool, typer.Option("--count", help="Print the number of clients only.")
    ] = False,
    limit: Annotated[
        int | None,
        typer.Option(min=0, help=f"Rows to print (table: {TABLE_ROWS}; csv/json: all)."),
    ] = None,
    as_of: Annotated[
        str | None, typer.Option("--date", help="Evaluate as of this day (default: today).")
    ] = None,
    save: Annotated[
        str | None, typer.Option(help="Save the segment with its parameters under this name.")
    ] = None,
    description: Annotated[str, typer.Option(help="What a saved segment is for.")] = "",
    delete: Annotated[
        bool, typer.Option("--delete", help="Forget the saved segment NAME.")
    ] = False,
) -> None:
    """Show a segment: its size, a summary by group, and each client with the reasons."""
    from sqlalchemy.ext.asyncio import AsyncSession

    from autoloyal.app import open_app
    from autoloyal.rules import segment_context
    from crm.clock import local_today
    from crm.importing.report import thousands
    from crm.segments import count, delete_saved, list_saved, resolve, save_segment
    from storage import read_only

    settings = settings_of(ctx)
    given = parse_params(params or [])
    day = guarded(lambda: _day(as_of))

    async def main() -> None:
        async with open_app(settings) as app:
            today = day or local_today(app.clock, settings.company.tz)
            context = segment_context(settings, today)
            if name is not None and (delete or save is not None):
                async with app.sessions() as session, session.begin():
                    if delete:
                        await delete_saved(session, name)
                        out.print(f"saved segment {name} deleted")
                        return
                    assert save is not None
                    saved = await save_segment(
                        session, save, name, given, context, now=app.clock(),
                        description=description, created_by="cli",
                    )  # fmt: skip
                    size = await count(session, await resolve(session, save, {}, context))
                out.print(
                    f"saved segment {saved.name} = {saved.text}: {thousands(size)} clients "
                    f"as of {today.isoformat()}"
                )
                return
            # Reading only: on SQLite this never waits behind, or holds up, a writer.
            async with AsyncSession(read_only(app.engine)) as session:
                if name is None:
                    _print_catalogue(await list_saved(session))
                else:
                    await _show(session, name, given, context, output, only_count, limit)

    run_async(main())


async def _show(
    session: AsyncSession,
    name: str,
    given: dict[str, str],
    context: SegmentContext,
    output: Format,
    only_count: bool,
    limit: int | None,
) -> None:
    from crm.segments import count, fetch_rows, fetch_summary, resolve, row_columns, stream_rows

    today = context.today
    sql = await resolve(session, name, given, context)
    total = await count(session, sql)
    if only_count:
        out.print(str(total))
        return
    if output is Format.table:
        summary = await fetch_summary(session, sql)
        rows = await fetch_rows(session, sql, limit=TABLE_ROWS if limit is None else limit)
        _print_table(name, given, today, total, sql.summary_columns, summary, rows, sql)
    elif output is Format.csv:
        writer = CsvWriter(sys.stdout)
        columns = row_columns(sql)
        writer.writerow([column.key for column in columns])
        async for batch in stream_rows(session, sql, limit=limit):
            writer.writerows([row[column.key] for column in columns] for row in batch)
    else:
        document = {
            "segment": name,
            "params": given,
            "date": today.isoformat(),
            "count": total,
            "summary": await fetch_summary(session, sql),
            "rows": await fetch_rows(session, sql, limit=limit),
        }
        json.dump(document, sys.stdout, ensure_ascii=False, indent=1, default=_json)
        sys.stdout.write("\n")


def _day(text: str | None) -> date | None:
    from crm.segments import SegmentError
    from crm.segments.base import a_date

    if text is None:
        return None
    try:
        return a_date(text)
    except ValueError as error:
        raise SegmentError(f"--date {text!r}: {error}") from None


def _describe(param: Param) -> str:
    example = f" (e.g. {param.name}={param.example})" if param.example else ""
    return f"{param.name}: {param.help}{example}"


def _print_catalogue(saved: list[SavedSegmentInfo]) -> None:
    from rich.table import Table

    from crm.segments import SEGMENTS

    table = Table("Segment", "What", "Parameters", box=None, show_edge=False)
    for spec in SEGMENTS.values():
        params = "\n".join(_describe(param) for param in spec.params) or "-"
        table.add_row(spec.name, spec.help, params)
    out.print(table)
    if saved:
        table = Table("Saved segment", "Definition", "Description", box=None, show_edge=False)
        for info in saved:
            table.add_row(info.name, info.text, info.description)
        out.print()
        out.print(table)
    out.print(
        "\nExamples: autoloyal segment abc group=A; autoloyal segment lost days=180 "
        "--format csv; autoloyal segment 'abc(group=A) and not lost'"
    )


def _print_table(
    name: str,
    given: dict[str, str],
    today: date,
    total: int,
    summary_columns: tuple[Column, ...],
    summary: list[dict[str, Any]],
    rows: list[dict[str, Any]],
    sql: Any,
) -> None:
    from rich.table import Table

    from crm.importing.report import thousands
    from crm.segments import row_columns

    words = " ".join(f"{key}={value}" for key, value in given.items())
    out.print(f"{name} {words}".strip() + f" as of {today.isoformat()}: {thousands(total)} clients")
    if summary:
        table = Table(*(column.title for column in summary_columns), box=None, show_edge=False)
        for row in summary:
            table.add_row(*(_cell(row[column.key], column) for column in summary_columns))
        out.print(table)
    if rows:
        columns = row_columns(sql)
        table = Table(*(column.title for column in columns), box=None, show_edge=False)
        for row in rows:
            table.add_row(*(_cell(row[column.key], column) for column in columns))
        out.print()
        out.print(table)
        if len(rows) < total and sql.columns:
            out.print(f"... first {len(rows)} rows; --limit N for more, --format csv for all")


def _cell(value: Any, column: Column) -> str:
    from crm.importing.report import sum_text, thousands

    if value is None:
        return "-"
    if column.kind == "money":
        return sum_text(value)
    if column.kind in ("percent", "float"):
        return f"{value:.2f}"
    if column.kind == "bool":
        return "yes" if value else "no"
    if column.kind == "int" and column.key not in ("client_id", "car_id"):
        return thousands(value)
    return str(value)


def _json(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")

"""`autoloyal report ...`: the dealer's reports. `report funnel`: the service funnel from
service contacts to revenue, with the booking and attendance rates."""

from __future__ import annotations

import enum
import json
import sys
from datetime import date, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any

import typer

from autoloyal.cli.console import guarded, out, run_async, settings_of
from autoloyal.cli.spreadsheet import CsvWriter

if TYPE_CHECKING:
    from rich.table import Table

    from crm.booking.funnel import Funnel, FunnelReport

report_app = typer.Typer(
    help="Reports: the service funnel.", no_args_is_help=True, rich_markup_mode=None
)

DEFAULT_DAYS = 30
RATIO_PLACES = 4


class Format(enum.StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


@report_app.command("funnel")
def funnel_command(
    ctx: typer.Context,
    first: Annotated[
        str | None,
        typer.Option(
            "--from",
            help=f"First day, YYYY-MM-DD or DD.MM.YYYY (default: {DEFAULT_DAYS} days to --to).",
            show_default=False,
        ),
    ] = None,
    last: Annotated[
        str | None,
        typer.Option("--to", help="Last day (default: today).", show_default=False),
    ] = None,
    branch: Annotated[
        str | None,
        typer.Option(help="A branch's code (default: every branch).", show_default=False),
    ] = None,
    output: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.table,
) -> None:
    """The service funnel of a period: service contacts -> booking requests -> confirmed ->
    arrived -> work orders -> revenue; booking rate, attendance rate and calls per visit, in
    total, by branch, by booking source and by "how did you hear about us"."""
    from sqlalchemy.ext.asyncio import AsyncSession

    from autoloyal.app import open_app
    from autoloyal.cli.console import today_of
    from crm.booking.funnel import service_funnel
    from crm.errors import NotFound
    from storage import read_only

    settings = settings_of(ctx)
    given_first = guarded(lambda: _day("--from", first))
    given_last = guarded(lambda: _day("--to", last))

    async def main() -> FunnelReport:
        async with open_app(settings) as app:
            period_last = given_last or today_of(app)
            period_first = given_first or period_last - timedelta(days=DEFAULT_DAYS - 1)
            if period_first > period_last:
                raise _option_error(f"--from {period_first} is after --to {period_last}")
            # Reading only: on SQLite this never waits behind, or holds up, a writer.
            async with AsyncSession(read_only(app.engine)) as session:
                try:
                    return await service_funnel(
                        session,
                        period_first,
                        period_last,
                        settings.company.tz,
                        app.clock(),
                        branch=branch,
                    )
                except NotFound as error:
                    if error.field != "branch":
                        raise
                    raise NotFound(f"--branch {branch!r}: no such branch") from None

    report = run_async(main())
    if output is Format.json:
        json.dump(_document(report), sys.stdout, ensure_ascii=False, indent=1)
        sys.stdout.write("\n")
    elif output is Format.csv:
        _write_csv(report)
    else:
        _print_tables(report)


def _day(option: str, text: str | None) -> date | None:
    from crm.importing.values import parse_date

    if text is None:
        return None
    try:
        found = parse_date(text)
    except ValueError as error:
        raise _option_error(f"{option} {text!r}: {error}") from None
    if found is None:
        raise _option_error(f"{option}: give a date as YYYY-MM-DD or DD.MM.YYYY")
    return found


def _option_error(message: str) -> Exception:
    from crm.errors import DomainError

    return DomainError(message)


# --- json and csv ----------------------------------------------------------------------------

FUNNEL_COLUMNS = (
    "service_contacts", "calls", "requests", "confirmed", "arrived", "no_show", "cancelled",
    "declined", "expected", "attended", "work_orders", "booked_work_orders", "revenue",
    "booked_revenue", "booking_rate", "attendance_rate", "calls_per_visit",
)  # fmt: skip
SOURCE_COLUMNS = (
    "requests", "confirmed", "arrived", "no_show", "cancelled", "declined", "expected",
    "attended", "attendance_rate",
)  # fmt: skip
CONTACT_SOURCE_COLUMNS = ("service_contacts", "booked", "calls", "booking_rate")
CSV_COLUMNS = ("group", "name", *FUNNEL_COLUMNS, "booked")


def _figures(row: Any, columns: tuple[str, ...]) -> dict[str, Any]:
    """The row's figures by name: counts as numbers, money as exact decimal text, ratios as
    numbers rounded to 4 places (None: no denominator)."""
    found: dict[str, Any] = {}
    for name in columns:
        value = getattr(row, name)
        if isinstance(value, Decimal):
            value = str(value)
        elif isinstance(value, float):
            value = round(value, RATIO_PLACES)
        found[name] = value
    return found


def _document(report: FunnelReport) -> dict[str, Any]:
    return {
        "from": report.first.isoformat(),
        "to": report.last.isoformat(),
        "branch": report.branch,
        "total": _figures(report.total, FUNNEL_COLUMNS),
        "by_branch": [
            {"branch": row.code, "name": row.name, **_figures(row.funnel, FUNNEL_COLUMNS)}
            for row in report.by_branch
        ],
        "by_source": [
            {"source": row.source, **_figures(row, SOURCE_COLUMNS)} for row in report.by_source
        ],
        "by_contact_source": [
            {"source": row.source, **_figures(row, CONTACT_SOURCE_COLUMNS)}
            for row in report.by_contact_source
        ],
    }


def _write_csv(report: FunnelReport) -> None:
    """One sheet: a row for the total, each branch, each booking source and each contact
    source (`group` says which); a figure that does not apply to the group is empty."""
    writer = CsvWriter(sys.stdout)
    writer.writerow(CSV_COLUMNS)
    rows: list[tuple[str, str | None, dict[str, Any]]] = [
        ("total", report.branch or "", _figures(report.total, FUNNEL_COLUMNS))
    ]
    rows += [("branch", b.code, _figures(b.funnel, FUNNEL_COLUMNS)) for b in report.by_branch]
    rows += [("source", s.source, _figures(s, SOURCE_COLUMNS)) for s in report.by_source]
    rows += [
        ("contact_source", c.source, _figures(c, CONTACT_SOURCE_COLUMNS))
        for c in report.by_contact_source
    ]
    for group, name, figures in rows:
        writer.writerow([group, name, *(figures.get(column) for column in CSV_COLUMNS[2:])])


# --- the table -------------------------------------------------------------------------------


def _print_tables(report: FunnelReport) -> None:
    from crm.importing.report import sum_text, thousands

    where = f"branch {report.branch}" if report.branch else "all branches"
    out.print(f"service funnel {report.first.isoformat()} .. {report.last.isoformat()}, {where}")
    total = report.total
    steps = _table(None, "step", "count", "")
    steps.columns[2].justify = "left"
    for label, count, note in _steps(total):
        steps.add_row(label, count, note)
    out.print(steps)

    branches = _table(
        "by branch", "branch", "service contacts", "requests", "booking rate", "confirmed",
        "arrived", "expected", "attended", "attendance", "work orders", "booked", "revenue",
        "calls per visit",
    )  # fmt: skip
    for row in report.by_branch:
        f = row.funnel
        branches.add_row(
            row.code or "(no branch)", thousands(f.service_contacts), thousands(f.requests),
            _percent(f.booking_rate), thousands(f.confirmed), thousands(f.arrived),
            thousands(f.expected), thousands(f.attended), _percent(f.attendance_rate),
            thousands(f.work_orders), thousands(f.booked_work_orders), sum_text(f.revenue),
            _times(f.calls_per_visit),
        )  # fmt: skip
    out.print()
    out.print(branches)

    if report.by_source:
        sources = _table(
            "by booking source", "booked through", "requests", "confirmed", "arrived",
            "no-show", "cancelled", "declined", "expected", "attended", "attendance",
        )  # fmt: skip
        for s in report.by_source:
            sources.add_row(
                s.source, *(thousands(n) for n in (s.requests, s.confirmed, s.arrived,
                s.no_show, s.cancelled, s.declined, s.expected, s.attended)),
                _percent(s.attendance_rate),
            )  # fmt: skip
        out.print()
        out.print(sources)

    if report.by_contact_source:
        heard = _table(
            "by contact source", "heard of us", "service contacts", "booked", "booking rate",
            "calls",
        )  # fmt: skip
        for c in report.by_contact_source:
            heard.add_row(
                c.source or "(not asked)", thousands(c.service_contacts), thousands(c.booked),
                _percent(c.booking_rate), thousands(c.calls),
            )  # fmt: skip
        out.print()
        out.print(heard)


def _table(title: str | None, name: str, *figures: str) -> Table:
    """A table of a name column and figure columns, the figures right-aligned."""
    from rich.table import Table

    table = Table(name, box=None, show_edge=False, title=title, title_justify="left")
    for figure in figures:
        table.add_column(figure, justify="right")
    return table


def _steps(f: Funnel) -> list[tuple[str, str, str]]:
    from crm.importing.report import sum_text, thousands

    return [
        ("service contacts", thousands(f.service_contacts), ""),
        ("booking requests", thousands(f.requests), f"booking rate {_percent(f.booking_rate)}"),
        ("confirmed", thousands(f.confirmed), ""),
        ("arrived", thousands(f.arrived), ""),
        ("no-show", thousands(f.no_show), ""),
        ("cancelled", thousands(f.cancelled), ""),
        ("declined", thousands(f.declined), ""),
        ("expected when due", thousands(f.expected), ""),
        ("attended", thousands(f.attended), f"attendance rate {_percent(f.attendance_rate)}"),
        ("work orders", thousands(f.work_orders), f"{thousands(f.booked_work_orders)} booked"),
        ("revenue", sum_text(f.revenue), f"{sum_text(f.booked_revenue)} booked"),
        ("calls", thousands(f.calls), f"calls per visit {_times(f.calls_per_visit)}"),
    ]


def _percent(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio * 100:.1f}%"


def _times(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.2f}"

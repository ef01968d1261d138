"""Date arithmetic that SQLite and PostgreSQL spell differently, as SQL expressions.

SQLite keeps dates as ISO text and has `julianday()`/`date(..., modifier)`; PostgreSQL has a
date type with `-` and `+ interval`. Each construct here compiles to the right spelling and
gives the same answer on both, so a segment's query is written once. A spelling is a format
string over the construct's arguments: `{0}`, `{1}`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Date, Float, Integer, String, case
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeEngine

SQLITE_SQRT = "autoloyal_sqrt"  # registered on every SQLite connection by storage.engine


def _function(
    name: str, result: TypeEngine[Any], doc: str, *, sqlite: str, postgresql: str
) -> type[FunctionElement[Any]]:
    """A SQL function `name(...)` of type `result`, spelled per dialect."""
    element = type(name, (FunctionElement,), {
        "type": result, "inherit_cache": True, "name": name, "__doc__": doc,
    })  # fmt: skip

    def spell(template: str) -> Any:
        def compile_(element: FunctionElement[Any], compiler: SQLCompiler, **kw: Any) -> str:
            args = [compiler.process(clause, **kw) for clause in element.clauses]
            return template.format(*args)

        return compile_

    compiles(element, "sqlite")(spell(sqlite))
    compiles(element)(spell(postgresql))
    return element


days_between = _function(
    "days_between", Integer(), "`later - earlier` in whole days (negative when later is first).",
    sqlite="CAST(julianday({0}) - julianday({1}) AS INTEGER)",
    postgresql="(CAST({0} AS DATE) - CAST({1} AS DATE))",
)  # fmt: skip

day_number = _function(
    "day_number", Integer(),
    "A date as a whole day number: days apart subtract, `+ n` adds days. The epoch differs "
    "between databases, so compare numbers only with numbers made the same way.",
    sqlite="CAST(julianday({0}) AS INTEGER)",  # the Julian day that began at the noon before
    postgresql="(CAST({0} AS DATE) - DATE '1970-01-01')",
)  # fmt: skip

from_day_number = _function(
    "from_day_number", Date(), "The date of a `day_number` (NULL stays NULL).",
    sqlite="date(({0}) + 0.5)",
    postgresql="(DATE '1970-01-01' + CAST({0} AS INTEGER))",
)  # fmt: skip

# SQLite's '+N months' rolls 31 January over into March: go to the target month's first day,
# add the day of the month, and take the month's last day when that runs past it.
add_months = _function(
    "add_months", Date(),
    "A date plus whole months, clamped to the end of a shorter month (31 Jan + 1 = 28 Feb).",
    sqlite="min(date({0}, 'start of month', CAST({1} AS TEXT) || ' months', "
    "CAST(CAST(strftime('%d', {0}) AS INTEGER) - 1 AS TEXT) || ' days'), "
    "date({0}, 'start of month', CAST(({1}) + 1 AS TEXT) || ' months', '-1 days'))",
    postgresql="CAST(CAST({0} AS DATE) + make_interval(months => CAST({1} AS INTEGER)) AS DATE)",
)  # fmt: skip

month_day = _function(
    "month_day", String(), "A date's month and day as 'MM-DD': birthdays compare across years.",
    sqlite="strftime('%m-%d', {0})",
    postgresql="to_char({0}, 'MM-DD')",
)  # fmt: skip

year_of = _function(
    "year_of", Integer(), "The year of a date.",
    sqlite="CAST(strftime('%Y', {0}) AS INTEGER)",
    postgresql="CAST(EXTRACT(YEAR FROM {0}) AS INTEGER)",
)  # fmt: skip

month_of = _function(
    "month_of", Integer(), "The month of a date, 1 to 12.",
    sqlite="CAST(strftime('%m', {0}) AS INTEGER)",
    postgresql="CAST(EXTRACT(MONTH FROM {0}) AS INTEGER)",
)  # fmt: skip

square_root = _function(
    "square_root", Float(), "The square root of a non-negative number (NULL for a negative one).",
    sqlite=SQLITE_SQRT + "({0})",  # SQLite builds differ in whether they have sqrt()
    postgresql="sqrt(CAST({0} AS DOUBLE PRECISION))",
)  # fmt: skip


def ceil_div(numerator: ColumnElement[int], denominator: ColumnElement[int]) -> ColumnElement[int]:
    """Integer division rounded up, for a positive denominator, the same on both databases.

    Both truncate integer division toward zero, which is the ceiling for a negative
    numerator; a positive one with a remainder needs one more.
    """
    return (numerator // denominator) + case(
        ((numerator > 0) & (numerator % denominator != 0), 1), else_=0
    )

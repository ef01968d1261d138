"""Date arithmetic that SQLite and PostgreSQL spell differently, as SQL expressions.

SQLite keeps dates as ISO text and has `julianday()`/`date(..., modifier)`; PostgreSQL has a
date type with `-` and `+ interval`. Each construct here compiles to the right spelling and
gives the same answer on both, so a segment's query is written once.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Date, Float, Integer, String, case
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement

SQLITE_SQRT = "autoloyal_sqrt"  # registered on every SQLite connection by storage.engine


class days_between(FunctionElement[int]):
    """`later - earlier` in whole days (negative when `later` comes first)."""

    type = Integer()
    inherit_cache = True
    name = "days_between"


class add_days(FunctionElement[Any]):
    """A date plus a whole number of days (which may be negative)."""

    type = Date()
    inherit_cache = True
    name = "add_days"


class add_months(FunctionElement[Any]):
    """A date plus whole months, clamped to the end of a shorter month (31 Jan + 1 = 28 Feb)."""

    type = Date()
    inherit_cache = True
    name = "add_months"


class day_number(FunctionElement[int]):
    """A date as a whole day number: days apart subtract, `+ n` adds days. The epoch differs
    between databases, so compare numbers only with numbers made the same way."""

    type = Integer()
    inherit_cache = True
    name = "day_number"


class from_day_number(FunctionElement[Any]):
    """The date of a `day_number` (NULL stays NULL)."""

    type = Date()
    inherit_cache = True
    name = "from_day_number"


class month_day(FunctionElement[str]):
    """A date's month and day as 'MM-DD' text: birthdays compare across years."""

    type = String()
    inherit_cache = True
    name = "month_day"


class year_of(FunctionElement[int]):
    type = Integer()
    inherit_cache = True
    name = "year_of"


class month_of(FunctionElement[int]):
    type = Integer()
    inherit_cache = True
    name = "month_of"


class square_root(FunctionElement[float]):
    """The square root of a non-negative number (NULL for a negative one on SQLite)."""

    type = Float()
    inherit_cache = True
    name = "square_root"


def _args(element: FunctionElement[Any], compiler: SQLCompiler, **kw: Any) -> list[str]:
    return [compiler.process(clause, **kw) for clause in element.clauses]


@compiles(days_between, "sqlite")
def _days_between_sqlite(element: days_between, compiler: SQLCompiler, **kw: Any) -> str:
    later, earlier = _args(element, compiler, **kw)
    return f"CAST(julianday({later}) - julianday({earlier}) AS INTEGER)"


@compiles(days_between)
def _days_between(element: days_between, compiler: SQLCompiler, **kw: Any) -> str:
    later, earlier = _args(element, compiler, **kw)
    return f"(CAST({later} AS DATE) - CAST({earlier} AS DATE))"


@compiles(add_days, "sqlite")
def _add_days_sqlite(element: add_days, compiler: SQLCompiler, **kw: Any) -> str:
    day, days = _args(element, compiler, **kw)
    return f"date({day}, CAST({days} AS TEXT) || ' days')"


@compiles(add_days)
def _add_days(element: add_days, compiler: SQLCompiler, **kw: Any) -> str:
    day, days = _args(element, compiler, **kw)
    return f"(CAST({day} AS DATE) + CAST({days} AS INTEGER))"


@compiles(add_months, "sqlite")
def _add_months_sqlite(element: add_months, compiler: SQLCompiler, **kw: Any) -> str:
    # SQLite's '+N months' rolls 31 Jan over into March; take the day into the target
    # month instead, and the month's last day when it is shorter.
    day, months = _args(element, compiler, **kw)
    into = (
        f"date({day}, 'start of month', CAST({months} AS TEXT) || ' months', "
        f"CAST(CAST(strftime('%d', {day}) AS INTEGER) - 1 AS TEXT) || ' days')"
    )
    month_end = (
        f"date({day}, 'start of month', CAST(({months}) + 1 AS TEXT) || ' months', '-1 days')"
    )
    return f"min({into}, {month_end})"


@compiles(add_months)
def _add_months(element: add_months, compiler: SQLCompiler, **kw: Any) -> str:
    day, months = _args(element, compiler, **kw)
    return f"CAST(CAST({day} AS DATE) + make_interval(months => CAST({months} AS INTEGER)) AS DATE)"


@compiles(day_number, "sqlite")
def _day_number_sqlite(element: day_number, compiler: SQLCompiler, **kw: Any) -> str:
    (day,) = _args(element, compiler, **kw)
    return f"CAST(julianday({day}) AS INTEGER)"  # the Julian day starting at the noon before


@compiles(day_number)
def _day_number(element: day_number, compiler: SQLCompiler, **kw: Any) -> str:
    (day,) = _args(element, compiler, **kw)
    return f"(CAST({day} AS DATE) - DATE '1970-01-01')"


@compiles(from_day_number, "sqlite")
def _from_day_number_sqlite(element: from_day_number, compiler: SQLCompiler, **kw: Any) -> str:
    (number,) = _args(element, compiler, **kw)
    return f"date(({number}) + 0.5)"


@compiles(from_day_number)
def _from_day_number(element: from_day_number, compiler: SQLCompiler, **kw: Any) -> str:
    (number,) = _args(element, compiler, **kw)
    return f"(DATE '1970-01-01' + CAST({number} AS INTEGER))"


@compiles(month_day, "sqlite")
def _month_day_sqlite(element: month_day, compiler: SQLCompiler, **kw: Any) -> str:
    (day,) = _args(element, compiler, **kw)
    return f"strftime('%m-%d', {day})"


@compiles(month_day)
def _month_day(element: month_day, compiler: SQLCompiler, **kw: Any) -> str:
    (day,) = _args(element, compiler, **kw)
    return f"to_char({day}, 'MM-DD')"


@compiles(year_of, "sqlite")
def _year_of_sqlite(element: year_of, compiler: SQLCompiler, **kw: Any) -> str:
    (day,) = _args(element, compiler, **kw)
    return f"CAST(strftime('%Y', {day}) AS INTEGER)"


@compiles(year_of)
def _year_of(element: year_of, compiler: SQLCompiler, **kw: Any) -> str:
    (day,) = _args(element, compiler, **kw)
    return f"CAST(EXTRACT(YEAR FROM {day}) AS INTEGER)"


@compiles(month_of, "sqlite")
def _month_of_sqlite(element: month_of, compiler: SQLCompiler, **kw: Any) -> str:
    (day,) = _args(element, compiler, **kw)
    return f"CAST(strftime('%m', {day}) AS INTEGER)"


@compiles(month_of)
def _month_of(element: month_of, compiler: SQLCompiler, **kw: Any) -> str:
    (day,) = _args(element, compiler, **kw)
    return f"CAST(EXTRACT(MONTH FROM {day}) AS INTEGER)"


@compiles(square_root, "sqlite")
def _square_root_sqlite(element: square_root, compiler: SQLCompiler, **kw: Any) -> str:
    (value,) = _args(element, compiler, **kw)
    return f"{SQLITE_SQRT}({value})"


@compiles(square_root)
def _square_root(element: square_root, compiler: SQLCompiler, **kw: Any) -> str:
    (value,) = _args(element, compiler, **kw)
    return f"sqrt(CAST({value} AS DOUBLE PRECISION))"


def ceil_div(numerator: ColumnElement[int], denominator: ColumnElement[int]) -> ColumnElement[int]:
    """Integer division rounded up, for a positive denominator, the same on both databases.

    Both truncate integer division toward zero, which is the ceiling for a negative
    numerator; a positive one with a remainder needs one more.
    """
    return (numerator // denominator) + case(
        ((numerator > 0) & (numerator % denominator != 0), 1), else_=0
    )

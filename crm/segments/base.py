"""What every segment is made of: typed parameters, explanation columns, and its SQL.

A segment is a `SegmentSpec`: a name, a line of help, the parameters it takes, and a
`build` function that turns checked parameters into `SegmentSQL`: the members (a SELECT of
client ids), the rows that explain why each client is in it, and an optional summary by
group. Nothing here runs a query; `crm.segments` does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select

from crm.importing.values import parse_bool, parse_date, parse_int, parse_money
from crm.maintenance import MaintenancePolicy
from storage.models import Client

T = TypeVar("T")


class SegmentError(ValueError):
    """An unknown segment, a parameter it cannot take, or a saved segment that cannot be used."""


SegmentQuery = Select[Any]  # one column: client ids


@dataclass(frozen=True, slots=True)
class LifecycleRules:
    """When a client counts as lost, and how many visits make a regular one."""

    lost_after_days: int = 365
    regular_min_visits: int = 2


@dataclass(frozen=True, slots=True)
class AnalysisDefaults:
    """Defaults of the ABC and XYZ analyses (each can be overridden per call)."""

    abc_thresholds: tuple[Decimal, Decimal, Decimal] = (Decimal(75), Decimal(20), Decimal(5))
    xyz_period: str = "quarter"
    xyz_periods: int = 8
    xyz_x: Decimal = Decimal("0.75")
    xyz_y: Decimal = Decimal("1.25")


# ----------------------------------------------------------------------------- parameters


@dataclass(frozen=True, slots=True)
class Param:
    """One `k=v` a segment takes: its name, what it means, and how its text is read."""

    name: str
    help: str
    parse: Callable[[str], Any]
    default: Any = None
    example: str = ""


def words(value: str) -> tuple[str, ...]:
    """A comma-separated list: "Kia, Hyundai" -> ("Kia", "Hyundai")."""
    items = tuple(item.strip() for item in value.split(",") if item.strip())
    if not items:
        raise ValueError("empty list")
    return items


# The import's cell parsers read parameters too (they raise ValueError); a parameter given
# as k= with nothing after it is an error rather than "not said".


def _given(value: T | None, what: str) -> T:
    if value is None:
        raise ValueError(f"empty: give {what}")
    return value


def a_date(value: str) -> date:
    return _given(parse_date(value), "a date as YYYY-MM-DD or DD.MM.YYYY")


def whole(low: int, high: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        return _given(parse_int(value, low=low, high=high), f"a whole number {low}..{high}")

    return parse


def roubles(value: str) -> Decimal:
    return _given(parse_money(value), "a sum in roubles")


def a_decimal(value: str) -> Decimal:
    cleaned = value.strip().replace(" ", "").replace("\u00a0", "").replace(",", ".")
    try:
        number = Decimal(cleaned)
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a number") from None
    if not number.is_finite():
        raise ValueError(f"{value!r} is not a number")
    return number


def choice(*options: str, many: bool = False) -> Callable[[str], Any]:
    """One of `options` (case-insensitive); with `many`, a comma-separated list of them."""

    def one(item: str) -> str:
        folded = item.strip().casefold()
        for option in options:
            if option.casefold() == folded:
                return option
        raise ValueError(f"{item.strip()!r} is not one of {', '.join(options)}")

    def parse(value: str) -> Any:
        if many:
            return tuple(dict.fromkeys(one(item) for item in words(value)))
        return one(value)

    return parse


@dataclass(frozen=True, slots=True)
class Range:
    """A closed range with either end open: "30-45", "30-", "-45"."""

    low: Any = None
    high: Any = None


def span(of: Callable[[str], Any]) -> Callable[[str], Range]:
    def parse(value: str) -> Range:
        match = re.fullmatch(r"\s*([^-]*?)\s*-\s*([^-]*?)\s*", value)
        if match is None:
            single = of(value)
            return Range(single, single)
        low_text, high_text = match.groups()
        if not low_text and not high_text:
            raise ValueError("give at least one end, e.g. 30-45, 30- or -45")
        low = of(low_text) if low_text else None
        high = of(high_text) if high_text else None
        if low is not None and high is not None and low > high:
            raise ValueError(f"the range {value.strip()!r} runs backwards")
        return Range(low, high)

    return parse


def yes_no(value: str) -> bool:
    return _given(parse_bool(value), "yes or no")


def check_params(segment: str, specs: Sequence[Param], given: Mapping[str, str]) -> dict[str, Any]:
    """The parameters read and checked, with defaults filled in; an error names what is wrong."""
    known = {param.name: param for param in specs}
    for name in given:
        if name not in known:
            if not known:
                raise SegmentError(f"segment {segment} takes no parameters, got {name}")
            raise SegmentError(
                f"segment {segment} has no parameter {name!r}: it takes {', '.join(known)}"
            )
    values: dict[str, Any] = {}
    for param in specs:
        if param.name not in given:
            values[param.name] = param.default
            continue
        raw = given[param.name]
        try:
            values[param.name] = param.parse(raw)
        except ValueError as error:
            raise SegmentError(f"segment {segment}: {param.name}={raw!r}: {error}") from None
    return values


# -------------------------------------------------------------------------------- output


@dataclass(frozen=True, slots=True)
class Column:
    """A column of a segment's rows: its key in the SELECT and CSV/JSON, a title, a kind.

    Kinds: "text", "int", "date", "money" (stored in kopecks, shown in roubles),
    "percent" and "float" (rounded for display), "bool".
    """

    key: str
    title: str
    kind: str = "text"


CLIENT_COLUMNS = (
    Column("client_id", "Id", "int"),
    Column("client", "Client"),
    Column("phone", "Phone"),
)


def client_columns() -> list[ColumnElement[Any]]:
    """What every row starts with: who the client is and how to reach them by phone."""
    return [
        Client.id.label("client_id"),
        Client.last_name.label("last_name"),
        Client.first_name.label("first_name"),
        Client.middle_name.label("middle_name"),
        Client.phone.label("phone"),
    ]


@dataclass(frozen=True, slots=True)
class SegmentSQL:
    """A segment with its parameters applied, as queries not yet run.

    `members` selects each client id once. `rows` selects `client_columns()` and the
    `columns`, in the order they are shown (a segment of cars has a row per car).
    `summary` groups them: by `summary_columns`, one row per group.
    """

    members: SegmentQuery
    rows: Select[Any]
    columns: tuple[Column, ...]
    summary: Select[Any] | None = None
    summary_columns: tuple[Column, ...] = ()


@dataclass(frozen=True, slots=True)
class SegmentContext:
    """What a segment is evaluated against: the date, and the company's rules from config."""

    today: date
    maintenance: MaintenancePolicy = field(default_factory=MaintenancePolicy)
    lifecycle: LifecycleRules = field(default_factory=LifecycleRules)
    analysis: AnalysisDefaults = field(default_factory=AnalysisDefaults)


@dataclass(frozen=True, slots=True)
class SegmentSpec:
    """A built-in segment: what `autoloyal segment` lists and campaigns can use."""

    name: str
    help: str
    params: tuple[Param, ...]
    build: Callable[[dict[str, Any], SegmentContext], SegmentSQL]

    def sql(self, given: Mapping[str, str], context: SegmentContext) -> SegmentSQL:
        return self.build(check_params(self.name, self.params, given), context)

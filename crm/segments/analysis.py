"""ABC, XYZ and the BCG matrix: who brings the money, and how steadily.

- ABC ranks clients by a measure over a period (revenue by default) and splits them where
  the running share of the total crosses the thresholds (75/20/5 by default). Money is
  summed in kopecks, as integers, so a client exactly at 75 % is in A on both databases.
- XYZ is the coefficient of variation of a client's revenue per period (quarter by default)
  over a window of whole periods, periods without a visit counting as zero.
- BCG crosses the two over the same window, names the cells (stars AZ, cows AX, dogs CZ,
  the rest questions) and compares each client with the window before.

Why the XYZ defaults (X up to 0.75, Y up to 1.25, over the last 8 whole quarters): car
service is lumpy. With equal sums per visit, a client who comes in 3 quarters of every 4
has a CV of 0.58, one who changes tyres twice a year 1.0, once a year sqrt(3) = 1.73, once
in two years sqrt(7) = 2.65. So X is "comes nearly every quarter", Y "comes with the
seasons", Z "once a year or less, or erratic"; the thresholds sit between those points with
room for uneven bills. Retail's 0.1/0.25 would put almost everybody in Z. On the demo dealer
(100 000 clients) they give 12 % X, 42 % Y and 46 % Z of the clients with revenue; 0.5/1.0
gave 2/30/68.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Float,
    Integer,
    Select,
    String,
    Subquery,
    case,
    cast,
    func,
    literal,
    select,
    union_all,
)

from crm.clock import years_before
from crm.segments.base import (
    Column,
    Param,
    SegmentContext,
    SegmentError,
    SegmentSpec,
    SegmentSQL,
    a_date,
    a_decimal,
    choice,
    client_columns,
    whole,
)
from storage.models import Client, Visit
from storage.sqlfunc import month_of, square_root, year_of

MEASURES = ("revenue", "margin", "visits")
PERIODS = ("month", "quarter", "year")
GROUPS_ABC = ("A", "B", "C")
GROUPS_XYZ = ("X", "Y", "Z")
STARS, COWS, DOGS, QUESTIONS = "stars", "cows", "dogs", "questions"
QUADRANTS = (STARS, COWS, DOGS, QUESTIONS)
NEW = "new"  # no revenue in the window before


def cents(money: Any) -> ColumnElement[int]:
    """Money as whole kopecks: sums and shares of them are exact on SQLite too."""
    return cast(func.round(money * 100), BigInteger)


# ----------------------------------------------------------------------------------- ABC


@dataclass(frozen=True, slots=True)
class AbcWindow:
    start: date
    end: date
    measure: str
    thresholds: tuple[Decimal, Decimal, Decimal]


def abc_ranked(window: AbcWindow) -> Subquery:
    """Per client with a positive measure: measure, running total, total, group."""
    if window.measure == "visits":
        amount: ColumnElement[Any] = func.count()
    elif window.measure == "margin":
        amount = func.sum(cents(func.coalesce(Visit.margin, 0)))
    else:
        amount = func.sum(cents(Visit.amount))
    measured = (
        select(Visit.client_id.label("client_id"), amount.label("measure"))
        .where(Visit.visited_on >= window.start, Visit.visited_on <= window.end)
        .group_by(Visit.client_id)
        .having(amount > 0)
        .subquery("measured")
    )
    running = func.sum(measured.c.measure).over(
        order_by=(measured.c.measure.desc(), measured.c.client_id), rows=(None, 0)
    )
    ranked = select(
        measured.c.client_id,
        measured.c.measure,
        running.label("running"),
        func.sum(measured.c.measure).over().label("total"),
    ).subquery("ranked")
    a, b, _ = (int(share * 100) for share in window.thresholds)  # hundredths of a percent
    group = case(
        (ranked.c.running * 10_000 <= a * ranked.c.total, "A"),
        (ranked.c.running * 10_000 <= (a + b) * ranked.c.total, "B"),
        else_="C",
    )
    return select(ranked, group.label("abc")).subquery("abc")


def _thresholds(values: dict[str, Any], context: SegmentContext) -> tuple[Decimal, ...]:
    defaults = context.analysis.abc_thresholds
    given = tuple(
        values[name] if values[name] is not None else default
        for name, default in zip(("a", "b", "c"), defaults, strict=True)
    )
    if values["c"] is None and (values["a"] is not None or values["b"] is not None):
        given = (given[0], given[1], Decimal(100) - given[0] - given[1])
    for name, share in zip(("a", "b", "c"), given, strict=True):
        if share < 0 or share != share.quantize(Decimal("0.01")):
            raise SegmentError(f"segment abc: {name}={share}: a share in percent, 0 to 100")
    if sum(given) != 100:
        shares = "+".join(str(share) for share in given)
        raise SegmentError(f"segment abc: thresholds a+b+c must make 100, got {shares}")
    return given


def _abc_window(values: dict[str, Any], context: SegmentContext) -> AbcWindow:
    end = values["to"] or context.today
    start = values["from"] or _year_before(end)
    if start > end:
        raise SegmentError(f"segment abc: from={start} is after to={end}")
    a, b, c = _thresholds(values, context)
    return AbcWindow(start, end, values["measure"], (a, b, c))


def _year_before(end: date) -> date:
    """The first day of the year that ends on `end` (a leap day ends a year from 1 March)."""
    return years_before(end, 1) + timedelta(days=1)


def build_abc(values: dict[str, Any], context: SegmentContext) -> SegmentSQL:
    window = _abc_window(values, context)
    ranked = abc_ranked(window)
    where = [ranked.c.abc.in_(values["group"])] if values["group"] else []
    money = "int" if window.measure == "visits" else "money"
    share = cast(ranked.c.measure, Float) * 100 / cast(ranked.c.total, Float)
    running_share = cast(ranked.c.running, Float) * 100 / cast(ranked.c.total, Float)
    rows = (
        select(
            *client_columns(),
            ranked.c.abc.label("group"),
            ranked.c.measure.label("measure"),
            share.label("share"),
            running_share.label("running_share"),
        )
        .join(Client, Client.id == ranked.c.client_id)
        .where(*where)
        .order_by(ranked.c.measure.desc(), ranked.c.client_id)
    )
    summary = (
        select(
            ranked.c.abc.label("group"),
            func.count().label("clients"),
            func.sum(ranked.c.measure).label("measure"),
            (
                cast(func.sum(ranked.c.measure), Float)
                * 100
                / cast(func.max(ranked.c.total), Float)
            ).label("share"),
        )
        .where(*where)
        .group_by(ranked.c.abc)
        .order_by(ranked.c.abc)
    )
    return SegmentSQL(
        members=select(ranked.c.client_id).where(*where),
        rows=rows,
        columns=(
            Column("group", "Group"),
            Column("measure", window.measure.capitalize(), money),
            Column("share", "Share %", "percent"),
            Column("running_share", "Running %", "percent"),
        ),
        summary=summary,
        summary_columns=(
            Column("group", "Group"),
            Column("clients", "Clients", "int"),
            Column("measure", window.measure.capitalize(), money),
            Column("share", "Share %", "percent"),
        ),
    )


_ABC_PARAMS = (
    Param("from", "first day of the period (default: a year before `to`)", a_date),
    Param("to", "last day of the period (default: today)", a_date),
    Param("measure", "revenue, margin or visits", choice(*MEASURES), "revenue"),
    Param("a", "share of the total for group A, % (default 75)", a_decimal),
    Param("b", "share for group B, % (default 20)", a_decimal),
    Param("c", "share for group C, % (default: the rest)", a_decimal),
    Param("group", "keep these groups", choice(*GROUPS_ABC, many=True), (), "A,B"),
)

ABC = SegmentSpec(
    "abc", "key clients: ABC analysis by revenue, margin or visits", _ABC_PARAMS, build_abc
)


# ----------------------------------------------------------------------------------- XYZ


def period_index(day: date, period: str) -> int:
    if period == "month":
        return day.year * 12 + day.month - 1
    if period == "quarter":
        return day.year * 4 + (day.month - 1) // 3
    return day.year


def period_start(index: int, period: str) -> date:
    if period == "month":
        return date(index // 12, index % 12 + 1, 1)
    if period == "quarter":
        return date(index // 4, index % 4 * 3 + 1, 1)
    return date(index, 1, 1)


def period_end(index: int, period: str) -> date:
    return period_start(index + 1, period) - timedelta(days=1)


def period_label(index: int, period: str) -> str:
    if period == "month":
        return f"{index // 12}-{index % 12 + 1:02d}"
    if period == "quarter":
        return f"{index // 4}-Q{index % 4 + 1}"
    return str(index)


def _sql_period(day: Any, period: str) -> ColumnElement[int]:
    if period == "month":
        return year_of(day) * 12 + month_of(day) - 1
    if period == "quarter":
        return year_of(day) * 4 + (month_of(day) - 1) // 3
    return year_of(day)


@dataclass(frozen=True, slots=True)
class XyzWindow:
    period: str
    first: int  # period indexes, both included
    last: int
    x: Decimal
    y: Decimal

    @property
    def count(self) -> int:
        return self.last - self.first + 1

    @property
    def start(self) -> date:
        return period_start(self.first, self.period)

    @property
    def end(self) -> date:
        return period_end(self.last, self.period)

    def before(self) -> XyzWindow:
        """The window of as many periods just before this one."""
        return XyzWindow(self.period, self.first - self.count, self.first - 1, self.x, self.y)

    def describe(self) -> str:
        first, last = period_label(self.first, self.period), period_label(self.last, self.period)
        return f"{first} .. {last}"


def xyz_stats(window: XyzWindow) -> Subquery:
    """Per client with revenue in the window: periods with revenue, mean, CV², group."""
    index = _sql_period(Visit.visited_on, window.period)
    per_period = (
        select(
            Visit.client_id.label("client_id"),
            (cast(func.sum(cents(Visit.amount)), Float) / 100).label("revenue"),
        )
        .where(Visit.visited_on >= window.start, Visit.visited_on <= window.end)
        .group_by(Visit.client_id, index)
        .subquery("per_period")
    )
    n = float(window.count)
    total = func.sum(per_period.c.revenue)
    squares = func.sum(per_period.c.revenue * per_period.c.revenue)
    stats = (
        select(
            per_period.c.client_id,
            func.count().label("active"),
            (total / n).label("mean"),
            (squares * n / (total * total) - 1).label("cv2"),  # CV² = N·Σs²/(Σs)² - 1
        )
        .group_by(per_period.c.client_id)
        .having(total > 0)
        .subquery("stats")
    )
    x2, y2 = float(window.x) ** 2, float(window.y) ** 2
    # A client active in every period with equal sums has CV² = 0 up to rounding: 1e-9 absorbs it.
    group = case((stats.c.cv2 <= x2 + 1e-9, "X"), (stats.c.cv2 <= y2 + 1e-9, "Y"), else_="Z")
    return select(stats, group.label("xyz")).subquery("xyz")


def _xyz_window(values: dict[str, Any], context: SegmentContext, segment: str) -> XyzWindow:
    defaults = context.analysis
    period = values["period"] or defaults.xyz_period
    x = values["x"] if values["x"] is not None else defaults.xyz_x
    y = values["y"] if values["y"] is not None else defaults.xyz_y
    if not 0 < x <= y:
        raise SegmentError(f"segment {segment}: thresholds must satisfy 0 < x <= y, got {x}, {y}")
    if values["to"] is not None:
        last = period_index(values["to"], period)
    else:  # the last whole period before today
        last = period_index(context.today, period) - 1
    if values["from"] is not None:
        first = period_index(values["from"], period)
        if first > last:
            raise SegmentError(f"segment {segment}: from={values['from']} is after to")
    else:
        first = last - (values["periods"] or defaults.xyz_periods) + 1
    if last - first + 1 < 2:
        raise SegmentError(f"segment {segment}: the window needs at least 2 periods")
    return XyzWindow(period, first, last, x, y)


def build_xyz(values: dict[str, Any], context: SegmentContext) -> SegmentSQL:
    window = _xyz_window(values, context, "xyz")
    stats = xyz_stats(window)
    where = [stats.c.xyz.in_(values["group"])] if values["group"] else []
    cv = square_root(case((stats.c.cv2 > 0, stats.c.cv2), else_=0.0))
    rows = (
        select(
            *client_columns(),
            stats.c.xyz.label("group"),
            cv.label("cv"),
            stats.c.active.label("active_periods"),
            literal(window.count, Integer).label("periods"),
            stats.c.mean.label("mean"),
        )
        .join(Client, Client.id == stats.c.client_id)
        .where(*where)
        .order_by(stats.c.cv2, stats.c.client_id)
    )
    summary = (
        select(
            stats.c.xyz.label("group"),
            func.count().label("clients"),
            (func.sum(stats.c.mean) * window.count).label("revenue"),
        )
        .where(*where)
        .group_by(stats.c.xyz)
        .order_by(stats.c.xyz)
    )
    return SegmentSQL(
        members=select(stats.c.client_id).where(*where),
        rows=rows,
        columns=(
            Column("group", "Group"),
            Column("cv", "CV", "float"),
            Column("active_periods", "Active", "int"),
            Column("periods", "Periods", "int"),
            Column("mean", "Mean per period", "float"),
        ),
        summary=summary,
        summary_columns=(
            Column("group", "Group"),
            Column("clients", "Clients", "int"),
            Column("revenue", "Revenue", "float"),
        ),
    )


_WINDOW_PARAMS = (
    Param("period", "month, quarter or year (default quarter)", choice(*PERIODS)),
    Param("periods", "how many whole periods before today (default 8)", whole(2, 120)),
    Param("from", "a day in the first period (instead of `periods`)", a_date),
    Param("to", "a day in the last period (default: the last whole one)", a_date),
    Param("x", "CV up to this is X (default 0.75)", a_decimal),
    Param("y", "CV up to this is Y, above it Z (default 1.25)", a_decimal),
)

XYZ = SegmentSpec(
    "xyz",
    "stability: coefficient of variation of revenue per period",
    (
        *_WINDOW_PARAMS,
        Param("group", "keep these groups", choice(*GROUPS_XYZ, many=True), (), "X"),
    ),
    build_xyz,
)


# ----------------------------------------------------------------------------------- BCG


def quadrant(abc: ColumnElement[str], xyz: ColumnElement[str]) -> ColumnElement[str]:
    return case(
        ((abc == "A") & (xyz == "Z"), STARS),
        ((abc == "A") & (xyz == "X"), COWS),
        ((abc == "C") & (xyz == "Z"), DOGS),
        else_=QUESTIONS,
    )


def _matrix(window: XyzWindow, thresholds: tuple[Decimal, Decimal, Decimal]) -> Subquery:
    """Per client with revenue in the window: revenue, ABC and XYZ groups, and those of the
    window before (NULL when the client had no revenue then).

    Gathered by a UNION ALL grouped by client rather than by joins: joins of four derived
    tables without indexes are planned as nested loops on SQLite.
    """
    abc = abc_ranked(AbcWindow(window.start, window.end, "revenue", thresholds))
    xyz = xyz_stats(window)
    earlier = window.before()
    abc_before = abc_ranked(AbcWindow(earlier.start, earlier.end, "revenue", thresholds))
    xyz_before = xyz_stats(earlier)

    def part(client_id: Any, **given: Any) -> Select[Any]:
        """One source's rows, NULL in the other sources' columns (labelled: SQLAlchemy would
        fold repeated NULL literals into one column)."""
        columns = {"measure": literal(None, BigInteger)}
        columns |= {key: literal(None, String) for key in ("now_a", "now_x", "then_a", "then_x")}
        columns |= given
        return select(client_id, *(value.label(key) for key, value in columns.items()))

    parts = union_all(
        part(abc.c.client_id, measure=abc.c.measure, now_a=abc.c.abc),
        part(xyz.c.client_id, now_x=xyz.c.xyz),
        part(abc_before.c.client_id, then_a=abc_before.c.abc),
        part(xyz_before.c.client_id, then_x=xyz_before.c.xyz),
    ).subquery("parts")
    client_id, measure, abc_now, xyz_now, abc_then, xyz_then = parts.c
    cells = (
        select(
            client_id.label("client_id"),
            func.max(measure).label("measure"),
            func.max(abc_now).label("abc"),
            func.max(xyz_now).label("xyz"),
            func.max(abc_then).label("abc_before"),
            func.max(xyz_then).label("xyz_before"),
        )
        .group_by(client_id)
        .subquery("cells")
    )
    c = cells.c
    return (
        select(
            c.client_id,
            c.measure,
            (c.abc + c.xyz).label("cell"),
            quadrant(c.abc, c.xyz).label("quadrant"),
            func.coalesce(c.abc_before + c.xyz_before, "").label("previous_cell"),
            case(
                (c.abc_before.is_(None) | c.xyz_before.is_(None), NEW),
                else_=quadrant(c.abc_before, c.xyz_before),
            ).label("previous"),
        )
        .where(c.abc.is_not(None), c.xyz.is_not(None))
        .subquery("matrix")
    )


def build_bcg(values: dict[str, Any], context: SegmentContext) -> SegmentSQL:
    window = _xyz_window(values, context, "bcg")
    now = _matrix(window, context.analysis.abc_thresholds)
    where = []
    if values["quadrant"]:
        where.append(now.c.quadrant.in_(values["quadrant"]))
    if values["previous"]:
        where.append(now.c.previous.in_(values["previous"]))
    rows = (
        select(
            *client_columns(),
            now.c.quadrant,
            now.c.cell,
            now.c.previous,
            now.c.previous_cell,
            now.c.measure.label("revenue"),
        )
        .join(Client, Client.id == now.c.client_id)
        .where(*where)
        .order_by(now.c.measure.desc(), now.c.client_id)
    )
    summary = (
        select(
            now.c.previous,
            now.c.quadrant,
            func.count().label("clients"),
            func.sum(now.c.measure).label("revenue"),
        )
        .where(*where)
        .group_by(now.c.previous, now.c.quadrant)
        .order_by(now.c.quadrant, now.c.previous)
    )
    return SegmentSQL(
        members=select(now.c.client_id).where(*where),
        rows=rows,
        columns=(
            Column("quadrant", "Quadrant"),
            Column("cell", "Cell"),
            Column("previous", "Before"),
            Column("previous_cell", "Cell before"),
            Column("revenue", "Revenue", "money"),
        ),
        summary=summary,
        summary_columns=(
            Column("previous", "Before"),
            Column("quadrant", "Now"),
            Column("clients", "Clients", "int"),
            Column("revenue", "Revenue", "money"),
        ),
    )


BCG = SegmentSpec(
    "bcg",
    "ABC x XYZ matrix (stars AZ, cows AX, dogs CZ, questions) with moves from the window before",
    (
        *_WINDOW_PARAMS,
        Param("quadrant", "keep these quadrants", choice(*QUADRANTS, many=True), (), STARS),
        Param(
            "previous",
            "keep clients who were in these quadrants before (or new)",
            choice(*QUADRANTS, NEW, many=True),
            (),
            NEW,
        ),
    ),
    build_bcg,
)

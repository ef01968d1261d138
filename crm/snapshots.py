"""Class snapshots: each client's ABC and XYZ class as of a day, kept to be read later.

A snapshot is one INSERT ... SELECT from the `abc` and `xyz` segments' own queries with
their default windows (ABC by revenue over the year that ends on the day, XYZ over the
last whole periods before it), so a snapshot says exactly what the segments said that day.
Only clients with a class in either are stored: no row on a day a snapshot was taken
means no revenue in either window. Taking a day's snapshot again replaces the classes of
that day's rows (INSERT ... ON CONFLICT DO UPDATE); nothing is ever stored twice.

Class history and moves between two days are then read, not recomputed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, Float, String, case, func, literal, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from crm.segments import SegmentContext
from crm.segments.analysis import ABC, XYZ
from storage.bulk import conflict_insert
from storage.scheduling import ClassSnapshot


@dataclass(frozen=True, slots=True)
class ClassMark:
    """A client's classes on one snapshot day; None: no class (no revenue in the window)."""

    taken_on: date
    abc: str | None
    xyz: str | None
    revenue: Decimal | None

    @property
    def cell(self) -> str:
        return cell(self.abc, self.xyz)


@dataclass(frozen=True, slots=True)
class ClassMove:
    """A client whose class differs between two snapshot days (None: absent that day)."""

    client_id: int
    abc_before: str | None
    xyz_before: str | None
    abc_after: str | None
    xyz_after: str | None

    @property
    def before(self) -> str:
        return cell(self.abc_before, self.xyz_before)

    @property
    def after(self) -> str:
        return cell(self.abc_after, self.xyz_after)


def cell(abc: str | None, xyz: str | None) -> str:
    """ "AX"; a class missing is "-" ("A-": revenue this year, too little history for XYZ)."""
    return f"{abc or '-'}{xyz or '-'}"


async def take_snapshot(session: AsyncSession, context: SegmentContext) -> int:
    """Store every classified client's ABC and XYZ class as of `context.today`; returns
    the rows written (inserted or replaced)."""
    abc = ABC.sql({}, context).rows.subquery("abc_rows")
    xyz = XYZ.sql({}, context).rows.subquery("xyz_rows")
    no_class, no_measure = literal(None, String), literal(None, BigInteger)
    parts = union_all(
        select(
            abc.c.client_id.label("client_id"),
            abc.c.group.label("abc"),
            no_class.label("xyz"),
            abc.c.measure.label("measure"),
        ),
        select(xyz.c.client_id, no_class.label("abc"), xyz.c.group, no_measure.label("measure")),
    ).subquery("parts")
    kopecks = func.max(parts.c.measure)
    classes = (
        select(
            literal(context.today, ClassSnapshot.taken_on.type).label("taken_on"),
            parts.c.client_id,
            func.max(parts.c.abc),
            func.max(parts.c.xyz),
            (kopecks / literal(100.0, Float)).label("revenue"),
        )
        # SQLite reads an upsert's SELECT unambiguously only with a WHERE clause.
        .where(parts.c.client_id.is_not(None))
        .group_by(parts.c.client_id)
    )
    insert = conflict_insert(session, ClassSnapshot).from_select(
        ["taken_on", "client_id", "abc", "xyz", "revenue"], classes
    )
    statement = insert.on_conflict_do_update(
        index_elements=["taken_on", "client_id"],
        set_={
            "abc": insert.excluded.abc,
            "xyz": insert.excluded.xyz,
            "revenue": insert.excluded.revenue,
        },
    )
    result: Any = await session.execute(statement)
    return int(result.rowcount)


async def class_history(
    session: AsyncSession,
    client_id: int,
    *,
    since: date | None = None,
    until: date | None = None,
) -> list[ClassMark]:
    """The client's classes on each snapshot day they had one, oldest first.

    A day missing between two marks is either a day without a snapshot or a day the
    client had no class; `snapshot_days` tells which.
    """
    s = ClassSnapshot
    query = select(s.taken_on, s.abc, s.xyz, s.revenue).where(s.client_id == client_id)
    if since is not None:
        query = query.where(s.taken_on >= since)
    if until is not None:
        query = query.where(s.taken_on <= until)
    rows = await session.execute(query.order_by(s.taken_on))
    return [ClassMark(day, abc, xyz, revenue) for day, abc, xyz, revenue in rows]


async def snapshot_days(
    session: AsyncSession, *, since: date | None = None, until: date | None = None
) -> list[date]:
    """The days a snapshot was taken, oldest first."""
    query = select(ClassSnapshot.taken_on).distinct()
    if since is not None:
        query = query.where(ClassSnapshot.taken_on >= since)
    if until is not None:
        query = query.where(ClassSnapshot.taken_on <= until)
    return list(await session.scalars(query.order_by(ClassSnapshot.taken_on)))


def _pairs(before: date, after: date) -> Any:
    """Per client in either day's snapshot: the classes of both days (NULL when absent).

    Grouped from one scan of both days rather than a full outer join, which SQLite before
    3.39 lacks."""
    s = ClassSnapshot

    def on(day: date, column: Any) -> Any:
        return func.max(case((s.taken_on == day, column)))

    return (
        select(
            s.client_id.label("client_id"),
            on(before, s.abc).label("abc_before"),
            on(before, s.xyz).label("xyz_before"),
            on(after, s.abc).label("abc_after"),
            on(after, s.xyz).label("xyz_after"),
        )
        .where(s.taken_on.in_((before, after)))
        .group_by(s.client_id)
        .subquery("pairs")
    )


def _changed(pairs: Any) -> Any:
    c = pairs.c
    return func.coalesce(c.abc_before, "-") + func.coalesce(c.xyz_before, "-") != func.coalesce(
        c.abc_after, "-"
    ) + func.coalesce(c.xyz_after, "-")


async def class_moves(
    session: AsyncSession, before: date, after: date, *, after_client: int = 0, limit: int = 1000
) -> list[ClassMove]:
    """Clients whose class changed between two snapshot days, by id from `after_client` on
    (a page of `limit`); a client absent on one day moved from or to "--"."""
    pairs = _pairs(before, after)
    rows = await session.execute(
        select(pairs)
        .where(_changed(pairs), pairs.c.client_id > after_client)
        .order_by(pairs.c.client_id)
        .limit(limit)
    )
    return [ClassMove(*row) for row in rows]


async def move_counts(session: AsyncSession, before: date, after: date) -> Counter[tuple[str, str]]:
    """How many clients went from each cell to each cell between two snapshot days,
    counted in the database: {("AX", "BX"): 12, ("--", "CZ"): 3, ...}; unchanged cells too."""
    pairs = _pairs(before, after)
    c = pairs.c
    columns = (c.abc_before, c.xyz_before, c.abc_after, c.xyz_after)
    rows = await session.execute(select(*columns, func.count()).group_by(*columns))
    counts: Counter[tuple[str, str]] = Counter()
    for abc_before, xyz_before, abc_after, xyz_after, n in rows:
        counts[(cell(abc_before, xyz_before), cell(abc_after, xyz_after))] += n
    return counts

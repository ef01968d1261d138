"""Segments: named, parameterised queries that say which clients to talk to, and why.

A segment is SQL evaluated in the database, never a Python loop over all clients. It is
named by a built-in (`abc`, `lost`, `maintenance_due`, ...), a segment staff saved, or an
expression of them (`abc(group=A) and not lost`). Parameters arrive as text (`k=v` from the
command line or the staff chat) and are checked before anything runs.

    sql = await resolve(session, "abc", {"group": "A"}, context)
    await count(session, sql)          # without loading the members
    await fetch_rows(session, sql, limit=50)
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Row, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.names import full_name
from crm.segments.activity import LIFECYCLE, LOST_SEGMENT, NO_SERVICE_HISTORY
from crm.segments.analysis import ABC, BCG, XYZ
from crm.segments.base import (
    CLIENT_COLUMNS,
    AnalysisDefaults,
    Column,
    LifecycleRules,
    SegmentContext,
    SegmentError,
    SegmentQuery,
    SegmentSpec,
    SegmentSQL,
    client_columns,
)
from crm.segments.due import MAINTENANCE_DUE
from crm.segments.expression import And, Name, Node, Not, names_in, parse_expression
from crm.segments.people import ALL, BIRTHDAYS, CONTACT_COLUMNS, FILTER, contact_columns
from storage.models import Client, SavedSegment

__all__ = [
    "SEGMENTS",
    "AnalysisDefaults",
    "Column",
    "LifecycleRules",
    "SavedSegmentInfo",
    "SegmentContext",
    "SegmentError",
    "SegmentQuery",
    "SegmentSQL",
    "SegmentSpec",
    "count",
    "delete_saved",
    "fetch_rows",
    "fetch_summary",
    "list_saved",
    "resolve",
    "row_columns",
    "save_segment",
    "stream_rows",
]

SEGMENTS: Mapping[str, SegmentSpec] = {
    spec.name: spec
    for spec in (
        ALL, ABC, XYZ, BCG, LOST_SEGMENT, LIFECYCLE, NO_SERVICE_HISTORY, MAINTENANCE_DUE,
        BIRTHDAYS, FILTER,
    )
}  # fmt: skip

_SAVED_NAME = re.compile(r"[^\W\d][\w-]{0,63}")


async def resolve(
    session: AsyncSession,
    expression: str,
    params: Mapping[str, str],
    context: SegmentContext,
) -> SegmentSQL:
    """The segment's SQL: a built-in, a saved segment or an expression, parameters checked.

    `params` (from `k=v` words) go with a single name; in an expression each name takes its
    own in parentheses.
    """
    node = parse_expression(expression)
    if params:
        if not isinstance(node, Name) or node.params:
            raise SegmentError(
                "k=v parameters go with a single segment name; in an expression write "
                "name(k=v, ...) for each segment"
            )
        node = Name(node.name, tuple(params.items()))
    return await _build(session, node, context, ())


async def _build(
    session: AsyncSession, node: Node, context: SegmentContext, saved_path: tuple[str, ...]
) -> SegmentSQL:
    if isinstance(node, Name):
        spec = SEGMENTS.get(node.name)
        if spec is not None:
            return spec.sql(dict(node.params), context)
        saved = await session.get(SavedSegment, node.name)
        if saved is None:
            raise SegmentError(_unknown(node.name))
        if node.params:
            raise SegmentError(
                f"segment {node.name} is saved with its parameters: it takes no others"
            )
        if node.name in saved_path:
            chain = " -> ".join((*saved_path, node.name))
            raise SegmentError(f"saved segment {node.name} refers to itself: {chain}")
        inner = parse_expression(saved.definition)
        if saved.params:
            if not isinstance(inner, Name):
                raise SegmentError(f"saved segment {node.name} is broken: params on an expression")
            inner = Name(inner.name, tuple(saved.params.items()))
        return await _build(session, inner, context, (*saved_path, node.name))
    if isinstance(node, Not):
        inner_sql = await _build(session, node.operand, context, saved_path)
        return _clients(Client.id.not_in(inner_sql.members))
    parts = [await _build(session, operand, context, saved_path) for operand in node.operands]
    conditions = [Client.id.in_(part.members) for part in parts]
    if isinstance(node, And):
        return _clients(*conditions)
    combined: ColumnElement[bool] = conditions[0]
    for condition in conditions[1:]:
        combined = combined | condition
    return _clients(combined)


def _clients(*where: Any) -> SegmentSQL:
    """Clients matching conditions on `Client`, shown with their contacts."""
    return SegmentSQL(
        members=select(Client.id).where(*where),
        rows=select(*client_columns(), *contact_columns()).where(*where).order_by(Client.id),
        columns=CONTACT_COLUMNS,
    )


def _unknown(name: str) -> str:
    known = ", ".join(SEGMENTS)
    return f"unknown segment {name!r}: built-in segments are {known} (or a saved one)"


# ---------------------------------------------------------------------------- running them


async def count(session: AsyncSession, sql: SegmentSQL) -> int:
    """How many clients are in it, counted in the database."""
    members = sql.members.subquery()
    return int(await session.scalar(select(func.count()).select_from(members)) or 0)


def row_columns(sql: SegmentSQL) -> tuple[Column, ...]:
    """The columns of `fetch_rows`: who the client is, then why they are in the segment."""
    return (*CLIENT_COLUMNS, *sql.columns)


async def fetch_rows(
    session: AsyncSession, sql: SegmentSQL, *, limit: int | None = None
) -> list[dict[str, Any]]:
    query = sql.rows if limit is None else sql.rows.limit(limit)
    connection = await session.connection()  # plain rows: no ORM loading per row
    result = await connection.execute(query)
    return _presenter(sql.columns, client=True)(result.all())


async def stream_rows(
    session: AsyncSession, sql: SegmentSQL, *, limit: int | None = None, batch: int = 2000
) -> AsyncIterator[list[dict[str, Any]]]:
    """Every row (or the first `limit`), in batches, for CSV output of big segments."""
    query = sql.rows if limit is None else sql.rows.limit(limit)
    connection = await session.connection()
    result = await connection.stream(query.execution_options(yield_per=batch))
    convert = _presenter(sql.columns, client=True)
    async for rows in result.partitions(batch):
        yield convert(rows)


async def fetch_summary(session: AsyncSession, sql: SegmentSQL) -> list[dict[str, Any]]:
    if sql.summary is None:
        return []
    result = await (await session.connection()).execute(sql.summary)
    return _presenter(sql.summary_columns, client=False)(result.all())


def _roubles(kopecks: Any) -> Decimal:
    return (Decimal(kopecks) / 100).quantize(_CENT)


def _rounded(value: Any) -> float:
    return round(float(value), 2)


_CENT = Decimal("0.01")
_CONVERT: dict[str, Callable[[Any], Any]] = {
    "money": _roubles,
    "percent": _rounded,
    "float": _rounded,
    "int": int,
    "bool": bool,
    "text": lambda value: value,
    "date": lambda value: value,
}


def _presenter(
    columns: tuple[Column, ...], *, client: bool
) -> Callable[[Sequence[Row[Any]]], list[dict[str, Any]]]:
    """Turns rows into dicts of presented values; the per-column work is decided once."""
    keys = [column.key for column in columns]
    converters = [_CONVERT[column.kind] for column in columns]
    plain = {_CONVERT["text"], _CONVERT["date"]}

    def convert(rows: Sequence[Row[Any]]) -> list[dict[str, Any]]:
        if not rows:
            return []
        fields = list(rows[0]._fields)
        at = [fields.index(key) for key in keys]
        steps = [(key, index, None if fn in plain else fn)
                 for key, index, fn in zip(keys, at, converters, strict=True)]  # fmt: skip
        if client:
            ident, last, first, middle, phone = (
                fields.index(name)
                for name in ("client_id", "last_name", "first_name", "middle_name", "phone")
            )
        presented = []
        for row in rows:
            values: dict[str, Any] = {}
            if client:
                values["client_id"] = row[ident]
                values["client"] = full_name(row[last], row[first], row[middle])
                values["phone"] = row[phone]
            for key, index, fn in steps:
                value = row[index]
                values[key] = value if fn is None or value is None else fn(value)
            presented.append(values)
        return presented

    return convert


# --------------------------------------------------------------------------- saved segments


@dataclass(frozen=True, slots=True)
class SavedSegmentInfo:
    name: str
    definition: str
    params: dict[str, str]
    description: str
    created_by: str
    updated_at: datetime

    @property
    def text(self) -> str:
        """How to write it out in full: `abc group=A`, or the expression."""
        words = " ".join(f"{key}={value}" for key, value in self.params.items())
        return f"{self.definition} {words}".strip()


async def save_segment(
    session: AsyncSession,
    name: str,
    expression: str,
    params: Mapping[str, str],
    context: SegmentContext,
    *,
    now: datetime,
    description: str = "",
    created_by: str = "",
) -> SavedSegmentInfo:
    """Save (or replace) a named segment after checking it builds; refuses a built-in name."""
    if not _SAVED_NAME.fullmatch(name):
        raise SegmentError(
            f"{name!r} cannot name a segment: start with a letter, then letters, digits, "
            "'_' or '-', up to 64 characters"
        )
    if name in SEGMENTS:
        raise SegmentError(f"{name} is a built-in segment: choose another name")
    node = parse_expression(expression)
    if name in names_in(node):
        raise SegmentError(f"segment {name} cannot be defined by itself")
    saved = await session.get(SavedSegment, name)
    if saved is None:
        saved = SavedSegment(name=name, created_at=now)
        session.add(saved)
    saved.definition = expression.strip()
    saved.params = dict(params)
    saved.description = description
    saved.created_by = created_by
    saved.updated_at = now
    await session.flush()
    # It must build: nothing unknown, parameters right, no cycle through the new definition.
    # On an error the caller's transaction rolls the row back.
    await resolve(session, name, {}, context)
    return _info(saved)


async def delete_saved(session: AsyncSession, name: str) -> None:
    """Forget a saved segment; refuses while another saved segment refers to it."""
    saved = await session.get(SavedSegment, name)
    if saved is None:
        raise SegmentError(f"no saved segment {name!r}")
    users = [
        other.name
        for other in (await session.scalars(select(SavedSegment))).all()
        if other.name != name and name in names_in(parse_expression(other.definition))
    ]
    if users:
        raise SegmentError(
            f"segment {name} is used by {', '.join(sorted(users))}: change them first"
        )
    await session.delete(saved)
    await session.flush()


async def list_saved(session: AsyncSession) -> list[SavedSegmentInfo]:
    rows = await session.scalars(select(SavedSegment).order_by(SavedSegment.name))
    return [_info(saved) for saved in rows]


def _info(saved: SavedSegment) -> SavedSegmentInfo:
    return SavedSegmentInfo(
        saved.name,
        saved.definition,
        dict(saved.params),
        saved.description,
        saved.created_by,
        saved.updated_at,
    )

"""The service funnel: service contacts -> booking requests -> confirmed -> arrived -> work
orders -> revenue, with the dealer's two ratios ("К-т записи = записавшиеся / позвонившие
на сервис", "К-т посещаемости = приехавшие по записи / записанные") and calls per visit,
in total, by branch, by booking source and by "how did you hear about us".

A period is whole days of the company's calendar, [first, last]: contacts by when they
happened, requests by when they were made, attendance by when the booking was due, work
orders by their day. Each figure is a handful of grouped SQL queries (SQLite and
PostgreSQL alike); Python only adds up the groups.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, RowMapping, Select, and_, case, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from crm.booking.bookings import SOURCES
from crm.booking.slots import ARRIVED, CANCELLED, COMPLETED, CONFIRMED, DECLINED, NO_SHOW
from crm.errors import DomainError, NotFound
from storage.booking import Booking, InboundContact
from storage.models import Branch, Visit
from storage.types import MONEY

SERVICE = "service"
"""The purpose of a contact the funnel starts from (crm.booking.inbound.SERVICE)."""
CALL = "call"
BOOKED = "booked"
EXPECTED = (CONFIRMED, ARRIVED, COMPLETED, NO_SHOW)
"""States of a booking the branch was expecting the client for when its time came."""
ZERO = Decimal("0.00")

_Query = Select[*tuple[Any, ...]]
"""A grouped query of any columns."""


def _ratio(part: int, whole: int) -> float | None:
    return None if whole == 0 else part / whole


@dataclass(frozen=True, slots=True)
class Funnel:
    """One funnel's figures. Requests count a rescheduled chain once (the first booking is
    the request; moving it makes no new one), and a request reached a step if any booking
    of its chain did."""

    service_contacts: int = 0
    """Inbound contacts with purpose "service"."""
    calls: int = 0
    """Inbound contacts by phone, whatever their purpose."""
    requests: int = 0
    """Bookings made in the period, not counting those made by moving another."""
    confirmed: int = 0
    """Requests confirmed at some point (or arrived or completed without a confirmation)."""
    arrived: int = 0
    """Requests whose client came (arrived, or completed by a work order)."""
    no_show: int = 0
    cancelled: int = 0
    """Requests whose last booking was cancelled (a move cancels the old one: not counted)."""
    declined: int = 0
    expected: int = 0
    """Bookings due in the period, up to now, in a state the branch expected the client
    in: confirmed, arrived, completed or no_show. Not cancelled, declined, or requested and
    never confirmed. A booking still confirmed after its start counts as not attended."""
    attended: int = 0
    """Of `expected`: arrived or completed."""
    work_orders: int = 0
    booked_work_orders: int = 0
    """Work orders that completed a booking."""
    revenue: Decimal = ZERO
    booked_revenue: Decimal = ZERO
    """Revenue of the work orders that completed a booking."""

    @property
    def booking_rate(self) -> float | None:
        """Requests / service contacts (К-т записи); None without service contacts."""
        return _ratio(self.requests, self.service_contacts)

    @property
    def attendance_rate(self) -> float | None:
        """Attended / expected (К-т посещаемости); None when nobody was expected."""
        return _ratio(self.attended, self.expected)

    @property
    def calls_per_visit(self) -> float | None:
        """Calls / work orders; None without work orders."""
        return _ratio(self.calls, self.work_orders)

    def __add__(self, other: Funnel) -> Funnel:
        return Funnel(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))


@dataclass(frozen=True, slots=True)
class BranchFunnel:
    code: str | None
    """None: contacts recorded without a branch."""
    name: str
    funnel: Funnel


@dataclass(frozen=True, slots=True)
class SourceFunnel:
    """Requests by the door they came through (the first booking's `source`: bot, staff,
    api, mini_app, max); attendance by the source of the request the due booking moved
    from."""

    source: str
    requests: int = 0
    confirmed: int = 0
    arrived: int = 0
    no_show: int = 0
    cancelled: int = 0
    declined: int = 0
    expected: int = 0
    attended: int = 0

    @property
    def attendance_rate(self) -> float | None:
        return _ratio(self.attended, self.expected)


@dataclass(frozen=True, slots=True)
class ContactSourceFunnel:
    """Service contacts by "how did you hear about us" (None: not asked)."""

    source: str | None
    service_contacts: int = 0
    booked: int = 0
    """Service contacts whose outcome was "booked"."""
    calls: int = 0

    @property
    def booking_rate(self) -> float | None:
        """Booked / service contacts of this source."""
        return _ratio(self.booked, self.service_contacts)


@dataclass(frozen=True, slots=True)
class FunnelReport:
    first: date
    last: date
    branch: str | None
    """The branch asked for; None: every branch."""
    total: Funnel
    by_branch: tuple[BranchFunnel, ...]
    by_source: tuple[SourceFunnel, ...]
    by_contact_source: tuple[ContactSourceFunnel, ...]


async def service_funnel(
    session: AsyncSession,
    first: date,
    last: date,
    zone: ZoneInfo,
    now: datetime,
    *,
    branch: str | None = None,
) -> FunnelReport:
    """The funnel of [first, last] (the company's days in `zone`), of one branch or all.

    A request belongs to the branch and source of its first booking; an expected booking
    to the branch it is due at; a contact recorded without a branch only to the total of
    every branch (a row with code None). Attendance only counts bookings whose start is before
    `now`: a booking still ahead is not yet attended or missed.
    """
    if first > last:
        raise DomainError(f"the period starts {first} after it ends {last}", field="from")
    branches = await _branches(session, branch)
    only = next(iter(branches)) if branch is not None else None
    since = datetime.combine(first, time(0), zone).astimezone(UTC)
    until = datetime.combine(last + timedelta(days=1), time(0), zone).astimezone(UTC)
    window = _Window(since, until, min(until, now), first, last, only)

    per_branch: dict[int | None, Funnel] = defaultdict(Funnel)
    per_source: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    per_contact_source: dict[str | None, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in await _rows(session, _contacts(window)):
        figures = _pick(row, ("service_contacts", "calls"))
        per_branch[row["branch_id"]] += Funnel(**figures)
        _add(per_contact_source[row["source"]], {**figures, "booked": row["booked"]})
    request_steps = ("requests", "confirmed", "arrived", "no_show", "cancelled", "declined")
    for row in await _rows(session, _requests(window)):
        figures = _pick(row, request_steps)
        per_branch[row["branch_id"]] += Funnel(**figures)
        _add(per_source[row["source"]], figures)
    for row in await _rows(session, _expected(window)):
        figures = _pick(row, ("expected", "attended"))
        per_branch[row["branch_id"]] += Funnel(**figures)
        _add(per_source[row["source"]], figures)
    for row in await _rows(session, _work_orders(window)):
        per_branch[row["branch_id"]] += Funnel(
            work_orders=row["work_orders"],
            booked_work_orders=row["booked_work_orders"],
            revenue=row["revenue"] or ZERO,
            booked_revenue=row["booked_revenue"] or ZERO,
        )

    by_branch = [
        BranchFunnel(code, name, per_branch[id_]) for id_, (code, name) in branches.items()
    ]
    if None in per_branch:
        by_branch.append(BranchFunnel(None, "", per_branch[None]))
    return FunnelReport(
        first=first,
        last=last,
        branch=branch,
        total=sum(per_branch.values(), Funnel()),
        by_branch=tuple(by_branch),
        by_source=tuple(
            SourceFunnel(source, **per_source[source])
            for source in sorted(per_source, key=_source_order)
        ),
        by_contact_source=tuple(
            ContactSourceFunnel(source, **figures)
            for source, figures in sorted(
                per_contact_source.items(),
                key=lambda item: (item[0] is None, -item[1]["service_contacts"], item[0] or ""),
            )
        ),
    )


@dataclass(frozen=True, slots=True)
class _Window:
    since: datetime
    until: datetime
    due_until: datetime
    """The end of the period or now, whichever is first: bookings due before it count."""
    first: date
    last: date
    branch_id: int | None


async def _branches(session: AsyncSession, code: str | None) -> dict[int, tuple[str, str]]:
    query = select(Branch.id, Branch.code, Branch.name).order_by(Branch.id)
    if code is not None:
        query = query.where(Branch.code == code)
    found = {id_: (code_, name) for id_, code_, name in await session.execute(query)}
    if code is not None and not found:
        raise NotFound(f"no branch {code!r}", field="branch")
    return found


async def _rows(session: AsyncSession, query: _Query) -> Sequence[RowMapping]:
    return (await session.execute(query)).mappings().all()


def _count_if(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def _flag(condition: ColumnElement[bool]) -> ColumnElement[int]:
    """1 when any row of the group meets the condition."""
    return func.max(case((condition, 1), else_=0))


def _contacts(window: _Window) -> _Query:
    contact = InboundContact
    query = (
        select(
            contact.branch_id,
            contact.source,
            _count_if(contact.purpose == SERVICE).label("service_contacts"),
            _count_if(contact.channel == CALL).label("calls"),
            _count_if(and_(contact.purpose == SERVICE, contact.outcome == BOOKED)).label("booked"),
        )
        .where(contact.happened_at >= window.since, contact.happened_at < window.until)
        .group_by(contact.branch_id, contact.source)
    )
    if window.branch_id is not None:
        query = query.where(contact.branch_id == window.branch_id)
    return query


def _requests(window: _Window) -> _Query:
    """Requests made in the period, a row per (branch, source) of their first booking, each
    step counted once per chain of moves."""
    made = [
        Booking.rescheduled_from_id.is_(None),
        Booking.requested_at >= window.since,
        Booking.requested_at < window.until,
    ]
    if window.branch_id is not None:
        made.append(Booking.branch_id == window.branch_id)
    first_booking = (
        select(Booking.id.label("request_id"), Booking.id.label("booking_id"))
        .where(*made)
        .cte("request_chain", recursive=True)
    )
    moved = aliased(Booking)
    chain = first_booking.union_all(
        select(first_booking.c.request_id, moved.id).join(
            moved, moved.rescheduled_from_id == first_booking.c.booking_id
        )
    )
    member, later = aliased(Booking), aliased(Booking)
    steps = (
        select(
            chain.c.request_id,
            _flag(
                or_(
                    member.confirmed_at.is_not(None),
                    member.state.in_((ARRIVED, COMPLETED)),
                )
            ).label("confirmed"),
            _flag(
                or_(member.arrived_at.is_not(None), member.state == COMPLETED),
            ).label("arrived"),
            _flag(member.state == NO_SHOW).label("no_show"),
            # A cancelled booking another was moved to is not the request's end.
            _flag(and_(member.state == CANCELLED, later.id.is_(None))).label("cancelled"),
            _flag(member.state == DECLINED).label("declined"),
        )
        .join(member, member.id == chain.c.booking_id)
        .outerjoin(later, later.rescheduled_from_id == member.id)
        .group_by(chain.c.request_id)
        .subquery()
    )
    request = aliased(Booking)
    return (
        select(
            request.branch_id,
            request.source,
            func.count().label("requests"),
            func.sum(steps.c.confirmed).label("confirmed"),
            func.sum(steps.c.arrived).label("arrived"),
            func.sum(steps.c.no_show).label("no_show"),
            func.sum(steps.c.cancelled).label("cancelled"),
            func.sum(steps.c.declined).label("declined"),
        )
        .join(request, request.id == steps.c.request_id)
        .group_by(request.branch_id, request.source)
    )


def _expected(window: _Window) -> _Query:
    """Bookings due in the period (before now) that the branch expected, a row per (their
    branch, the source of the request they moved from)."""
    due = [
        Booking.state.in_(EXPECTED),
        Booking.starts_at >= window.since,
        Booking.starts_at < window.due_until,
    ]
    if window.branch_id is not None:
        due.append(Booking.branch_id == window.branch_id)
    # Walk each due booking back along its moves to the first booking (the request).
    back = (
        select(
            Booking.id.label("due_id"),
            Booking.id.label("booking_id"),
            Booking.rescheduled_from_id.label("from_id"),
        )
        .where(*due)
        .cte("moved_from", recursive=True)
    )
    earlier = aliased(Booking)
    back = back.union_all(
        select(back.c.due_id, earlier.id, earlier.rescheduled_from_id).join(
            earlier, earlier.id == back.c.from_id
        )
    )
    booking, request = aliased(Booking), aliased(Booking)
    return (
        select(
            booking.branch_id,
            request.source,
            func.count().label("expected"),
            _count_if(booking.state.in_((ARRIVED, COMPLETED))).label("attended"),
        )
        .select_from(back)
        .join(booking, booking.id == back.c.due_id)
        .join(request, request.id == back.c.booking_id)
        .where(back.c.from_id.is_(None))
        .group_by(booking.branch_id, request.source)
    )


def _work_orders(window: _Window) -> _Query:
    completing = select(Booking.visit_id).where(Booking.visit_id.is_not(None)).distinct().subquery()
    booked = completing.c.visit_id.is_not(None)
    query = (
        select(
            Visit.branch_id,
            func.count().label("work_orders"),
            _count_if(booked).label("booked_work_orders"),
            func.sum(Visit.amount, type_=MONEY).label("revenue"),
            func.sum(case((booked, Visit.amount), else_=literal(0)), type_=MONEY).label(
                "booked_revenue"
            ),
        )
        .outerjoin(completing, completing.c.visit_id == Visit.id)
        .where(Visit.visited_on >= window.first, Visit.visited_on <= window.last)
        .group_by(Visit.branch_id)
    )
    if window.branch_id is not None:
        query = query.where(Visit.branch_id == window.branch_id)
    return query


def _pick(row: RowMapping, names: Iterable[str]) -> dict[str, Any]:
    """The named counts of a grouped row (a sum over no rows is NULL: 0)."""
    return {name: int(row[name] or 0) for name in names}


def _add(into: dict[str, int], figures: Mapping[str, int]) -> None:
    for name, value in figures.items():
        into[name] += value


def _source_order(source: str) -> tuple[int, str]:
    return (SOURCES.index(source) if source in SOURCES else len(SOURCES), source)

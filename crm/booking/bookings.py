"""Bookings: made, confirmed, moved, cancelled, attended; the rules every door shares.

The client bot, the staff chat, the Mini App and the HTTP API are doors onto these
functions; each runs in the caller's transaction and leaves nothing half-written.

Two requests for the last free bay of a slot: exactly one wins. On PostgreSQL the
branch row is locked for the rest of the transaction before the bookings are counted,
so bookings of one branch are made one after another; on SQLite every write transaction
already runs alone (BEGIN IMMEDIATE). The loser gets `SlotTaken` with the nearest free
starts to offer instead.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.booking.calendar import BookingRules, BranchHours, Service
from crm.booking.notify import BookingNotices, send_confirmation
from crm.booking.slots import (
    ARRIVED,
    CANCELLED,
    COMPLETED,
    CONFIRMED,
    DECLINED,
    HOLDING,
    NO_SHOW,
    REQUESTED,
    held_times,
    is_free,
    nearest_free,
    on_grid,
)
from crm.clock import Moment
from crm.errors import Conflict, DomainError, NotFound
from storage.booking import Booking
from storage.models import Branch, Car, Client

SOURCES = ("bot", "staff", "api", "mini_app", "max")
COMMENT_MAX = 500
REF_MAX = 64
CLIENT = "client"
"""The actor of what a client does themselves."""


class SlotTaken(Conflict):
    """The start is no longer free: someone else was quicker. `alternatives` are the
    nearest free starts (UTC), to offer instead."""

    code = "slot_taken"

    def __init__(self, message: str, alternatives: Sequence[datetime]) -> None:
        super().__init__(message, field="starts_at")
        self.alternatives = tuple(alternatives)


@dataclass(frozen=True, slots=True)
class BookingRequest:
    client_id: int
    service: str
    starts_at: datetime
    source: str
    branch: str | None = None
    """Branch code; None: the only bookable branch."""
    car_id: int | None = None
    comment: str | None = None
    external_ref: str | None = None
    actor: str | None = None


@dataclass(frozen=True, slots=True)
class BookingView:
    id: int
    client_id: int
    car_id: int | None
    branch_id: int
    branch: str
    branch_name: str
    service: str
    service_name: str
    starts_at: datetime
    ends_at: datetime
    local_start: datetime
    """The start on the branch's wall clock."""
    state: str
    source: str
    comment: str | None
    requested_at: datetime
    confirmed_at: datetime | None
    arrived_at: datetime | None
    completed_at: datetime | None
    cancelled_at: datetime | None
    declined_at: datetime | None
    no_show_at: datetime | None
    rescheduled_from: int | None
    visit_id: int | None
    external_ref: str | None
    actor: str | None
    created: bool = True
    """False: the request repeated an `external_ref` and this is the booking it made."""
    confirmation_queued: bool = False
    """This call queued the client's confirmation (False: not confirmed by it, or the
    client has no address on `[booking] channels`)."""

    @property
    def holds_time(self) -> bool:
        return self.state in HOLDING


# action -> (states it applies to, state it leads to, the step's timestamp column)
ACTIONS: dict[str, tuple[tuple[str, ...], str, str]] = {
    "confirm": ((REQUESTED,), CONFIRMED, "confirmed_at"),
    "decline": ((REQUESTED,), DECLINED, "declined_at"),
    "cancel": ((REQUESTED, CONFIRMED), CANCELLED, "cancelled_at"),
    "arrive": ((REQUESTED, CONFIRMED), ARRIVED, "arrived_at"),
    "no_show": ((REQUESTED, CONFIRMED), NO_SHOW, "no_show_at"),
    "complete": ((REQUESTED, CONFIRMED, ARRIVED), COMPLETED, "completed_at"),
}


async def book(
    session: AsyncSession,
    rules: BookingRules,
    request: BookingRequest,
    moment: Moment,
    *,
    notices: BookingNotices | None = None,
    rescheduled_from: int | None = None,
    confirmed: bool | None = None,
) -> BookingView:
    """Book a start for the client; `SlotTaken` when it is not free any more.

    The booking is `requested`, or `confirmed` with `[booking] auto_confirm` (or when
    `confirmed` says so: staff booking for a client). A confirmed booking's confirmation
    goes to the client through the outbox.
    """
    if request.source not in SOURCES:
        raise DomainError(f"unknown source {request.source!r}", field="source")
    ref = _ref(request.external_ref)
    if ref is not None:
        found = await _by_ref(session, rules, ref)
        if found is not None:
            _same_request(found, request)
            return found
    service = rules.service(request.service)
    branch = rules.branch(request.branch)
    if not service.offered_at(branch.code):
        raise DomainError(
            f"{branch.name} does not offer {service.name}", field="service", code="not_offered"
        )
    start = _instant(request.starts_at)
    comment = _comment(request.comment)
    client = await session.get(Client, request.client_id)
    if client is None:
        raise NotFound("no such client", field="client")
    if request.car_id is not None:
        owner = await session.scalar(select(Car.client_id).where(Car.id == request.car_id))
        if owner != request.client_id:
            raise NotFound("the client has no such car", field="car")
    await _check_start(session, rules, branch, service, start, moment)
    branch_id = await _lock_branch(session, branch.code)
    if ref is not None:  # the same reference, sent twice at once, may have won meanwhile
        found = await _by_ref(session, rules, ref)
        if found is not None:
            _same_request(found, request)
            return found
    end = start + service.duration
    await _check_own_overlap(session, request.client_id, start, end)
    held = await held_times(session, branch.code, start, end)
    if not is_free(held, start, end, branch.bays):
        alternatives = await nearest_free(session, rules, branch, service, start, moment.now)
        raise SlotTaken(f"{_local_text(branch, start)} is already taken", alternatives)
    state = CONFIRMED if (rules.auto_confirm if confirmed is None else confirmed) else REQUESTED
    row = Booking(
        client_id=request.client_id,
        car_id=request.car_id,
        branch_id=branch_id,
        service=service.code,
        service_name=service.name,
        starts_at=start,
        ends_at=end,
        comment=comment,
        source=request.source,
        state=state,
        requested_at=moment.now,
        confirmed_at=moment.now if state == CONFIRMED else None,
        rescheduled_from_id=rescheduled_from,
        external_ref=ref,
        actor=request.actor,
        created_at=moment.now,
        updated_at=moment.now,
    )
    session.add(row)
    await session.flush()
    view = _view(row, branch)
    if state == CONFIRMED and notices is not None:
        queued = await send_confirmation(session, notices, view, branch, moment)
        view = replace(view, confirmation_queued=queued)
    return view


async def act(
    session: AsyncSession,
    rules: BookingRules,
    booking_id: int,
    action: str,
    moment: Moment,
    *,
    actor: str,
    client_id: int | None = None,
    notices: BookingNotices | None = None,
    visit_id: int | None = None,
) -> BookingView:
    """Take a step: confirm, decline, cancel, arrive, no_show, complete.

    `client_id`: the client acts on their own booking (only cancel, and no later than
    `[booking] cancel_hours_before` the start); another client's booking is NotFound.
    Taking a step the booking has already taken answers it as it is (a second tap on an
    old button); a step that does not follow from its state is a Conflict.
    """
    if action not in ACTIONS:
        raise DomainError(f"unknown action {action!r}", field="action")
    row = await _row(session, booking_id, client_id, lock=True)
    branch = _branch_of(rules, await _branch_code(session, row.branch_id))
    sources, target, stamp = ACTIONS[action]
    if row.state == target:
        return _view(row, branch)
    if row.state not in sources:
        raise Conflict(
            f"booking {row.id} is {row.state}: it cannot be {_done(action)}",
            field="state",
            code="wrong_state",
        )
    if client_id is not None:
        if action != "cancel":
            raise DomainError(f"a client may not {action} a booking", field="action")
        _check_cancel_window(rules, row, moment)
    if action in ("arrive", "no_show") and moment.now < branch.instant(
        branch.local(row.starts_at).date(), time(0)
    ):
        raise Conflict(
            f"booking {row.id} is on {branch.local(row.starts_at):%Y-%m-%d}: it cannot be"
            f" {_done(action)} before that day",
            field="action",
            code="too_early",
        )
    row.state = target
    setattr(row, stamp, moment.now)
    row.actor = actor
    row.updated_at = moment.now
    if visit_id is not None:
        row.visit_id = visit_id
    await session.flush()
    view = _view(row, branch)
    if target == CONFIRMED and notices is not None:
        queued = await send_confirmation(session, notices, view, branch, moment)
        view = replace(view, confirmation_queued=queued)
    return view


async def reschedule(
    session: AsyncSession,
    rules: BookingRules,
    booking_id: int,
    starts_at: datetime,
    moment: Moment,
    *,
    actor: str,
    source: str,
    client_id: int | None = None,
    branch: str | None = None,
    notices: BookingNotices | None = None,
) -> BookingView:
    """Move a booking: the old one is cancelled and a new one, linked to it, holds the new
    start (in the same branch unless `branch` says otherwise). A client moves their own
    booking within the cancellation window; staff moving it confirm the new time.
    `SlotTaken` leaves the old booking as it was (the caller's transaction rolls back)."""
    row = await _row(session, booking_id, client_id, lock=True)
    if row.state not in (REQUESTED, CONFIRMED):
        raise Conflict(
            f"booking {row.id} is {row.state}: it cannot be moved",
            field="state",
            code="wrong_state",
        )
    if client_id is not None:
        _check_cancel_window(rules, row, moment)
    code = branch or await _branch_code(session, row.branch_id)
    row.state, row.cancelled_at = CANCELLED, moment.now
    row.actor, row.updated_at = actor, moment.now
    await session.flush()
    by_staff = client_id is None and source == "staff"
    request = BookingRequest(
        client_id=row.client_id,
        service=row.service if row.service in rules.services else "",
        starts_at=starts_at,
        source=source,
        branch=code,
        car_id=row.car_id,
        comment=row.comment,
        actor=actor,
    )
    return await book(
        session,
        rules,
        request,
        moment,
        notices=notices,
        rescheduled_from=row.id,
        confirmed=True if by_staff else None,
    )


async def complete_by_visit(
    session: AsyncSession,
    rules: BookingRules,
    client_id: int,
    visit_id: int,
    visited_on: date,
    moment: Moment,
) -> BookingView | None:
    """A work order of the client on `visited_on` completes their booking of that day
    (the earliest one still holding time), if they had one."""
    since = datetime.combine(visited_on - timedelta(days=1), time(0), UTC)
    until = datetime.combine(visited_on + timedelta(days=2), time(0), UTC)
    rows = await session.scalars(
        select(Booking)
        .where(
            Booking.client_id == client_id,
            Booking.state.in_(HOLDING),
            Booking.starts_at >= since,
            Booking.starts_at < until,
        )
        .order_by(Booking.starts_at, Booking.id)
    )
    codes = await _branch_codes(session)
    for row in rows:
        branch = _branch_of(rules, codes.get(row.branch_id, ""))
        if branch.local(row.starts_at).date() == visited_on:
            return await act(
                session, rules, row.id, "complete", moment, actor="work order", visit_id=visit_id
            )
    return None


async def booking(
    session: AsyncSession, rules: BookingRules, booking_id: int, *, client_id: int | None = None
) -> BookingView:
    """One booking; with `client_id`, only that client's (another's is NotFound)."""
    row = await _row(session, booking_id, client_id)
    return _view(row, _branch_of(rules, await _branch_code(session, row.branch_id)))


async def upcoming(
    session: AsyncSession, rules: BookingRules, client_id: int, now: datetime
) -> list[BookingView]:
    """The client's bookings that still hold time and have not ended, soonest first."""
    query = _listing().where(
        Booking.client_id == client_id, Booking.state.in_(HOLDING), Booking.ends_at > now
    )
    return await _views(session, rules, query)


async def on_day(
    session: AsyncSession,
    rules: BookingRules,
    day: date,
    *,
    branch: str | None = None,
    states: Sequence[str] | None = None,
) -> list[BookingView]:
    """Bookings starting on `day` (each branch's own calendar day), by branch and start."""
    codes = [branch] if branch is not None else list(rules.branches)
    found: list[BookingView] = []
    for code in codes:
        hours = rules.branch(code)
        since = hours.instant(day, time(0))
        until = hours.instant(day + timedelta(days=1), time(0))
        query = _listing().where(
            Branch.code == code, Booking.starts_at >= since, Booking.starts_at < until
        )
        if states is not None:
            query = query.where(Booking.state.in_(tuple(states)))
        found += await _views(session, rules, query)
    return found


def _listing() -> Select[Booking, str]:
    return (
        select(Booking, Branch.code)
        .join(Branch, Branch.id == Booking.branch_id)
        .order_by(Booking.starts_at, Booking.id)
    )


async def _views(
    session: AsyncSession, rules: BookingRules, query: Select[Booking, str]
) -> list[BookingView]:
    rows = (await session.execute(query)).all()
    return [_view(row, _branch_of(rules, code)) for row, code in rows]


async def _row(
    session: AsyncSession, booking_id: int, client_id: int | None, *, lock: bool = False
) -> Booking:
    query = select(Booking).where(Booking.id == booking_id)
    if lock and session.get_bind().dialect.name != "sqlite":
        query = query.with_for_update()
    row = await session.scalar(query)
    if row is None or (client_id is not None and row.client_id != client_id):
        raise NotFound(f"no booking {booking_id}", field="booking")
    return row


async def _by_ref(session: AsyncSession, rules: BookingRules, ref: str) -> BookingView | None:
    found = (await session.execute(_listing().where(Booking.external_ref == ref))).first()
    if found is None:
        return None
    row, code = found
    return replace(_view(row, _branch_of(rules, code)), created=False)


def _same_request(found: BookingView, request: BookingRequest) -> None:
    same = (
        found.client_id == request.client_id
        and found.service == request.service
        and found.starts_at == _instant(request.starts_at)
        and (request.branch is None or found.branch == request.branch)
    )
    if not same:
        raise Conflict(
            f"external_ref {found.external_ref!r} was used for another booking ({found.id})",
            field="external_ref",
            code="ref_conflict",
        )


async def _check_start(
    session: AsyncSession,
    rules: BookingRules,
    branch: BranchHours,
    service: Service,
    start: datetime,
    moment: Moment,
) -> None:
    local = branch.local(start)
    if start < moment.now + rules.min_lead:
        hours = rules.min_lead.total_seconds() / 3600
        raise DomainError(
            f"{local:%Y-%m-%d %H:%M} is too soon: book at least {hours:g} h ahead",
            field="starts_at",
            code="too_soon",
        )
    if local.date() > rules.last_day(branch, moment.now):
        raise DomainError(
            f"{local:%Y-%m-%d} is beyond the {rules.horizon_days} days open for booking",
            field="starts_at",
            code="too_far",
        )
    if not on_grid(rules, branch, service, start):
        if branch.hours_on(local.date()) is None:
            why = f"{branch.name} does not work on {local:%Y-%m-%d}"
        else:
            why = (
                f"{local:%H:%M} on {local:%Y-%m-%d} is not a start {branch.name} offers for"
                f" {service.name} ({_minutes(service.duration)} min): outside the hours, across"
                " lunch, or off the slot grid"
            )
        raise DomainError(why, field="starts_at", code="not_a_slot")


async def _lock_branch(session: AsyncSession, code: str) -> int:
    query = select(Branch.id).where(Branch.code == code)
    if session.get_bind().dialect.name != "sqlite":
        query = query.with_for_update()
    found = await session.scalar(query)
    if found is None:
        raise NotFound(f"no branch {code!r}", field="branch")
    return found


async def _check_own_overlap(
    session: AsyncSession, client_id: int, start: datetime, end: datetime
) -> None:
    clash = await session.scalar(
        select(Booking.id).where(
            Booking.client_id == client_id,
            Booking.state.in_(HOLDING),
            Booking.starts_at < end,
            Booking.ends_at > start,
        )
    )
    if clash is not None:
        raise Conflict(
            f"the client already has booking {clash} at that time",
            field="starts_at",
            code="already_booked",
        )


def _check_cancel_window(rules: BookingRules, row: Booking, moment: Moment) -> None:
    if not rules.client_may_change(row.starts_at, moment.now):
        hours = rules.cancel_before.total_seconds() / 3600
        raise Conflict(
            f"booking {row.id} starts in less than {hours:g} h: please call the service centre",
            field="booking",
            code="too_late",
        )


async def _branch_code(session: AsyncSession, branch_id: int) -> str:
    code = await session.scalar(select(Branch.code).where(Branch.id == branch_id))
    assert code is not None, "a booking's branch exists (foreign key)"
    return code


async def _branch_codes(session: AsyncSession) -> dict[int, str]:
    return {id_: code for id_, code in await session.execute(select(Branch.id, Branch.code))}


def _branch_of(rules: BookingRules, code: str) -> BranchHours:
    """The branch's hours; a branch no longer configured still shows its bookings."""
    found = rules.branches.get(code)
    if found is not None:
        return found
    zone = next(iter(rules.branches.values())).zone
    return BranchHours(code=code, name=code, zone=zone)


def _view(row: Booking, branch: BranchHours) -> BookingView:
    return BookingView(
        id=row.id,
        client_id=row.client_id,
        car_id=row.car_id,
        branch_id=row.branch_id,
        branch=branch.code,
        branch_name=branch.name,
        service=row.service,
        service_name=row.service_name,
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        local_start=branch.local(row.starts_at),
        state=row.state,
        source=row.source,
        comment=row.comment,
        requested_at=row.requested_at,
        confirmed_at=row.confirmed_at,
        arrived_at=row.arrived_at,
        completed_at=row.completed_at,
        cancelled_at=row.cancelled_at,
        declined_at=row.declined_at,
        no_show_at=row.no_show_at,
        rescheduled_from=row.rescheduled_from_id,
        visit_id=row.visit_id,
        external_ref=row.external_ref,
        actor=row.actor,
    )


def _instant(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise DomainError(
            "the start needs its UTC offset, like 2026-12-03T10:00:00+03:00", field="starts_at"
        )
    return value.astimezone(UTC)


def _comment(text: str | None) -> str | None:
    if text is None:
        return None
    cleaned = "".join(
        " " if unicodedata.category(ch) in ("Cc", "Cs") and ch not in "\n" else ch for ch in text
    ).strip()
    if len(cleaned) > COMMENT_MAX:
        raise DomainError(f"the comment is longer than {COMMENT_MAX} characters", field="comment")
    return cleaned or None


def _ref(text: str | None) -> str | None:
    if text is None:
        return None
    ref = text.strip()
    if not ref or len(ref) > REF_MAX or not ref.isprintable():
        raise DomainError(
            f"external_ref must be 1 to {REF_MAX} printable characters", field="external_ref"
        )
    return ref


def _done(action: str) -> str:
    return {
        "confirm": "confirmed",
        "decline": "declined",
        "cancel": "cancelled",
        "arrive": "marked arrived",
        "no_show": "marked a no-show",
        "complete": "completed",
    }[action]


def _minutes(duration: timedelta) -> int:
    return int(duration.total_seconds() // 60)


def _local_text(branch: BranchHours, start: datetime) -> str:
    return f"{branch.local(start):%Y-%m-%d %H:%M}"

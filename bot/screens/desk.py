"""The staff chat's booking desk: a day's bookings with arrived / no-show buttons, booking a
client by phone step by step, and recording a call. Messenger-neutral: texts and buttons."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from bot.desk_callbacks import DeskAttend, DeskBook, DeskCall, DeskDay
from bot.screens.ui import Button, Screen, esc, grid
from bot.texts import Texts
from crm.booking import ACTIONS, BookingView, BranchHours, Day, Service
from crm.booking.inbound import BOOKED, INFORMATION, NOT_BOOKED, PURPOSES

DAYS_SHOWN = 10
"""Free days offered when booking by phone."""


@dataclass(frozen=True, slots=True)
class Person:
    """Who a booking or a call is for, as staff need to see them."""

    name: str
    """ "Смирнов Иван Петрович"; "" for a number with no name on file."""
    phone: str | None


@dataclass(frozen=True, slots=True)
class DeskLine:
    booking: BookingView
    person: Person
    car: str | None


@dataclass(frozen=True, slots=True)
class BranchDay:
    name: str
    lines: Sequence[DeskLine]


@dataclass(frozen=True, slots=True)
class Draft:
    """A booking being put together by phone: what is chosen so far."""

    person: Person
    service: Service | None = None
    branch: BranchHours | None = None
    day: date | None = None
    start: datetime | None = None


def _states(t: Texts) -> dict[str, str]:
    return {
        "requested": t._("awaiting confirmation"),
        "confirmed": t._("confirmed"),
        "arrived": t._("arrived"),
        "completed": t._("completed"),
        "cancelled": t._("cancelled"),
        "declined": t._("declined"),
        "no_show": t._("no-show"),
    }


def _purposes(t: Texts) -> dict[str, str]:
    return {
        "service": t._("Service"),
        "repair_question": t._("Repair question"),
        "sales": t._("Sales"),
        "complaint": t._("Complaint"),
        "other": t._("Other"),
    }


def _outcomes(t: Texts) -> dict[str, str]:
    return {
        BOOKED: t._("Booked"),
        NOT_BOOKED: t._("Not booked"),
        INFORMATION: t._("Information"),
    }


# ---------------------------------------------------------------- the day's bookings


def day_sheet(t: Texts, day: date, branches: Sequence[BranchDay]) -> Screen:
    """The day per branch; buttons to mark those who may still arrive or not."""
    lines = [t._("📅 <b>Bookings: {day}</b>").format(day=t.date(day, "EEEE, d MMMM yyyy"))]
    buttons: list[list[Button]] = []
    markable = ACTIONS["arrive"][0]
    for branch in branches:
        if len(branches) > 1:
            lines += ["", f"<b>{esc(branch.name)}</b>"]
        if not branch.lines:
            lines.append(t._("No bookings."))
        for line in branch.lines:
            lines.append(_line(t, line))
            if line.booking.state in markable:
                buttons.append(_attend_buttons(t, line, day))
    previous, following = day - timedelta(days=1), day + timedelta(days=1)
    buttons.append(
        [
            Button("◀ " + t.date(previous, "d MMM"), DeskDay(day=previous.isoformat()).pack()),
            Button(t.date(following, "d MMM") + " ▶", DeskDay(day=following.isoformat()).pack()),
        ]
    )
    return Screen("\n".join(lines), buttons=buttons)


def _line(t: Texts, line: DeskLine) -> str:
    view, person = line.booking, line.person
    parts = [
        f"<b>{view.local_start:%H:%M}</b>",
        esc(person.name) or t._("no name"),
        esc(person.phone) or "—",
    ]
    if line.car:
        parts.append(esc(line.car))
    parts.append(esc(view.service_name))
    state = _states(t).get(view.state, view.state)
    return f"{' · '.join(parts)} — <i>{state}</i>"


def _attend_buttons(t: Texts, line: DeskLine, day: date) -> list[Button]:
    who = f"{line.booking.local_start:%H:%M} {_short(line.person)}".strip()
    booking, iso = line.booking.id, day.isoformat()
    return [
        Button(
            t._("✅ Arrived: {who}").format(who=who),
            DeskAttend(booking=booking, action="arrive", day=iso).pack(),
        ),
        Button(
            t._("❌ No-show: {who}").format(who=who),
            DeskAttend(booking=booking, action="no_show", day=iso).pack(),
        ),
    ]


def _short(person: Person) -> str:
    return person.name.split(" ")[0] if person.name else ""


def bad_day(t: Texts) -> Screen:
    return Screen(
        t._("Write the date like /bookings 25.11, /bookings 25.11.2026 or /bookings 2026-11-25.")
    )


def attend_refused(t: Texts, code: str) -> str:
    """Why a booking cannot be marked, as an alert."""
    if code == "too_early":
        return t._("Arrival is marked on the booking's day, not before.")
    if code == "wrong_state":
        return t._("This booking can no longer be marked: it is cancelled, declined or marked.")
    return t._("This booking is not found, or not of your branch.")


# ---------------------------------------------------------------- booking by phone


def bad_phone(t: Texts, command: str) -> Screen:
    return Screen(
        t._("Write the phone like /{command} +7 903 525-45-60 or /{command} 89035254560.").format(
            command=command
        )
    )


def ask_new_client(t: Texts, phone: str) -> Screen:
    text = t._("No client has the phone {phone}. Create a new (potential) client?").format(
        phone=esc(phone)
    )
    return Screen(
        text,
        buttons=[
            [
                Button(t._("Yes, create"), DeskBook(step="new", value="yes").pack()),
                _cancel_book(t),
            ]
        ],
    )


def _header(t: Texts, draft: Draft) -> list[str]:
    person = draft.person
    who = esc(person.name) or t._("new client")
    lines = [t._("📝 <b>Booking for {who}</b>, {phone}").format(who=who, phone=esc(person.phone))]
    if draft.service is not None:
        lines.append(t._("Service: {service}").format(service=esc(draft.service.name)))
    if draft.branch is not None:
        lines.append(t._("Branch: {branch}").format(branch=esc(draft.branch.name)))
    if draft.start is not None and draft.branch is not None:
        local = draft.branch.local(draft.start)
        lines.append(
            t._("Time: {day}, {time}").format(
                day=t.date(local.date(), "EEEE, d MMMM"), time=f"{local:%H:%M}"
            )
        )
    elif draft.day is not None:
        lines.append(t._("Day: {day}").format(day=t.date(draft.day, "EEEE, d MMMM")))
    return lines


def _cancel_book(t: Texts) -> Button:
    return Button(t._("Cancel"), DeskBook(step="cancel").pack())


def pick_service(t: Texts, draft: Draft, services: Sequence[Service]) -> Screen:
    lines = [*_header(t, draft), "", t._("Choose the service:")]
    buttons = [[Button(s.name, DeskBook(step="service", value=s.code).pack())] for s in services]
    return Screen("\n".join(lines), buttons=[*buttons, [_cancel_book(t)]])


def pick_branch(t: Texts, draft: Draft, branches: Sequence[BranchHours]) -> Screen:
    lines = [*_header(t, draft), "", t._("Choose the branch:")]
    buttons = [[Button(b.name, DeskBook(step="branch", value=b.code).pack())] for b in branches]
    return Screen("\n".join(lines), buttons=[*buttons, [_cancel_book(t)]])


def pick_day(t: Texts, draft: Draft, days: Sequence[Day]) -> Screen:
    """The first free days; an empty list says there are none in the horizon."""
    lines = _header(t, draft)
    if not days:
        lines += ["", t._("No free time for this service in the days open for booking.")]
        return Screen("\n".join(lines), buttons=[[_cancel_book(t)]])
    lines += ["", t._("Choose the day:")]
    labels = [
        Button(t.date(d.day, "EEE d MMM"), DeskBook(step="day", value=d.day.isoformat()).pack())
        for d in days
    ]
    return Screen("\n".join(lines), buttons=[*grid(labels, 2), [_cancel_book(t)]])


def pick_time(t: Texts, draft: Draft, starts: Sequence[datetime]) -> Screen:
    assert draft.branch is not None
    lines = [*_header(t, draft), "", t._("Choose the time:")]
    times = [_start_button(draft.branch, start, "%H:%M") for start in starts]
    back = Button(t._("◀ Other day"), DeskBook(step="day").pack())
    return Screen("\n".join(lines), buttons=[*grid(times, 4), [back, _cancel_book(t)]])


def _start_button(branch: BranchHours, start: datetime, pattern: str) -> Button:
    label = f"{branch.local(start):{pattern}}"
    return Button(label, DeskBook(step="at", value=str(int(start.timestamp()))).pack())


def confirm(t: Texts, draft: Draft) -> Screen:
    lines = [*_header(t, draft), "", t._("Book it? The client gets the confirmation.")]
    ok = Button(t._("✅ Book the client"), DeskBook(step="ok").pack())
    return Screen("\n".join(lines), buttons=[[ok, _cancel_book(t)]])


def slot_taken(t: Texts, draft: Draft, alternatives: Sequence[datetime]) -> Screen:
    """Someone was quicker: the nearest free starts instead."""
    assert draft.branch is not None
    lines = [*_header(t, draft), "", t._("⚠️ That time has just been taken.")]
    if not alternatives:
        lines.append(t._("No free time nearby: choose another day."))
        back = Button(t._("◀ Other day"), DeskBook(step="day").pack())
        return Screen("\n".join(lines), buttons=[[back, _cancel_book(t)]])
    lines.append(t._("The nearest free times:"))
    times = [_start_button(draft.branch, start, "%d.%m %H:%M") for start in alternatives]
    return Screen("\n".join(lines), buttons=[*grid(times, 3), [_cancel_book(t)]])


def refused(t: Texts, draft: Draft, why: str) -> Screen:
    """A booking crm/ refused for a reason other than a lost slot (its own words)."""
    lines = [*_header(t, draft), "", t._("⚠️ Not booked: {why}").format(why=esc(why))]
    back = Button(t._("◀ Other day"), DeskBook(step="day").pack())
    return Screen("\n".join(lines), buttons=[[back, _cancel_book(t)]])


def booked(t: Texts, draft: Draft, view: BookingView, confirmation_sent: bool) -> Screen:
    lines = [
        t._("✅ <b>Booked</b>, booking #{id}").format(id=view.id),
        *_header(t, draft)[1:],
    ]
    if confirmation_sent:
        lines.append(t._("The client will get the confirmation."))
    return Screen("\n".join(lines))


def cancelled(t: Texts, call_recorded: bool = False) -> Screen:
    if call_recorded:
        return Screen(t._("Booking cancelled. The call is recorded as not booked."))
    return Screen(t._("Booking cancelled."))


def not_yours(t: Texts) -> str:
    return t._("This conversation is no longer going on, or it is someone else's.")


# ---------------------------------------------------------------- calls


def _call_header(t: Texts, person: Person) -> str:
    if person.name:
        return t._("📞 <b>Call from {name}</b>, {phone}").format(
            name=esc(person.name), phone=esc(person.phone)
        )
    return t._("📞 <b>Call from {phone}</b> (no client with this number)").format(
        phone=esc(person.phone)
    )


def call_purpose(t: Texts, person: Person) -> Screen:
    text = "\n".join([_call_header(t, person), "", t._("What is the call about?")])
    names = _purposes(t)
    buttons = [Button(names[p], DeskCall(step="purpose", value=p).pack()) for p in PURPOSES]
    return Screen(text, buttons=[*grid(buttons, 2), [_cancel_call(t)]])


def call_source(t: Texts, person: Person, purpose: str, sources: Sequence[str]) -> Screen:
    lines = [_call_header(t, person), _call_purpose_line(t, purpose), ""]
    lines.append(t._("How did they hear about us?"))
    buttons = [
        Button(source, DeskCall(step="source", value=str(index)).pack())
        for index, source in enumerate(sources)
    ]
    skip = Button(t._("Skip"), DeskCall(step="source", value="-1").pack())
    return Screen("\n".join(lines), buttons=[*grid(buttons, 2), [skip, _cancel_call(t)]])


def call_outcome(t: Texts, person: Person, purpose: str, source: str | None) -> Screen:
    lines = [_call_header(t, person), _call_purpose_line(t, purpose)]
    if source:
        lines.append(t._("Heard of us: {source}").format(source=esc(source)))
    lines += ["", t._("What came of it?")]
    names = _outcomes(t)
    buttons = [
        Button(names[o], DeskCall(step="outcome", value=o).pack())
        for o in (BOOKED, NOT_BOOKED, INFORMATION)
    ]
    return Screen("\n".join(lines), buttons=[buttons, [_cancel_call(t)]])


def call_book_now(t: Texts, person: Person, purpose: str) -> Screen:
    lines = [_call_header(t, person), _call_purpose_line(t, purpose), ""]
    lines.append(t._("Booked: book the client now? The call is recorded with the booking."))
    return Screen(
        "\n".join(lines),
        buttons=[
            [Button(t._("📝 Book now"), DeskCall(step="book").pack())],
            [Button(t._("Booked elsewhere: just save"), DeskCall(step="save").pack())],
        ],
    )


def call_saved(t: Texts, person: Person, purpose: str, source: str | None, outcome: str) -> Screen:
    lines = [t._("✅ Call recorded"), _call_header(t, person), _call_purpose_line(t, purpose)]
    if source:
        lines.append(t._("Heard of us: {source}").format(source=esc(source)))
    lines.append(t._("Outcome: {outcome}").format(outcome=_outcomes(t)[outcome]))
    return Screen("\n".join(lines))


def call_cancelled(t: Texts) -> Screen:
    return Screen(t._("Call not recorded."))


def _call_purpose_line(t: Texts, purpose: str) -> str:
    return t._("About: {purpose}").format(purpose=_purposes(t).get(purpose, purpose))


def _cancel_call(t: Texts) -> Button:
    return Button(t._("Cancel"), DeskCall(step="cancel").pack())

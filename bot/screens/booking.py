"""Booking a service: the steps (car, service, branch, a calendar of the horizon, a time, a
comment, the summary), the client's bookings, and the card staff confirm in the staff chat.

Times are shown on the branch's wall clock; calendar labels come from Babel in the
client's language."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta

from babel.dates import get_day_names, get_month_names

from bot.callbacks import (
    BookBranch,
    BookCar,
    BookDay,
    BookIdle,
    BookMonth,
    BookService,
    BookStep,
    BookTime,
    MyBooking,
    StaffBooking,
)
from bot.screens.menu import contact_centre
from bot.screens.ui import Button, Screen, esc, grid
from bot.texts import Texts
from crm.booking import CONFIRMED, REQUESTED, BookingView, BranchHours, Day, DayState, Service
from crm.booking.bookings import COMMENT_MAX
from crm.context import CompanyInfo
from crm.garage import GarageCar

TIMES_PER_ROW = 4
STRIKE = "\u0336"


@dataclass(frozen=True, slots=True)
class Draft:
    """What the client chose so far, for the summary above each step."""

    car: str | None = None
    service: Service | None = None
    branch: BranchHours | None = None
    starts_at: datetime | None = None
    """UTC; shown on the branch's clock."""
    comment: str | None = None
    moving: BookingView | None = None
    """The booking being moved."""


def day_code(day: date) -> int:
    return day.year * 10000 + day.month * 100 + day.day


def from_day_code(code: int) -> date | None:
    try:
        return date(code // 10000, code // 100 % 100, code % 100)
    except ValueError:
        return None


def month_code(day: date) -> int:
    return day.year * 100 + day.month


def duration_text(t: Texts, duration: timedelta) -> str:
    minutes = int(duration.total_seconds() // 60)
    hours, rest = divmod(minutes, 60)
    if hours and rest:
        return t._("{h} h {m} min").format(h=hours, m=rest)
    if hours:
        return t._("{h} h").format(h=hours)
    return t._("{m} min").format(m=rest)


def when_text(t: Texts, branch: BranchHours, moment: datetime) -> str:
    local = branch.local(moment)
    return t._("{day} at {time}").format(
        day=t.date(local.date(), "EEEE, d MMMM"), time=f"{local:%H:%M}"
    )


def short_when(t: Texts, branch: BranchHours, moment: datetime) -> str:
    local = branch.local(moment)
    return f"{t.date(local.date(), 'EEE dd.MM')} {local:%H:%M}"


def summary(t: Texts, draft: Draft) -> list[str]:
    lines = []
    if draft.moving is not None:
        lines.append(
            t._("Moving your booking of {when}").format(when=esc(_view_when(t, draft.moving)))
        )
    if draft.car:
        lines.append(t._("🚗 Car: {car}").format(car=esc(draft.car)))
    if draft.service is not None:
        lines.append(
            t._("🔧 Service: {service} ({duration})").format(
                service=esc(draft.service.name), duration=duration_text(t, draft.service.duration)
            )
        )
    if draft.branch is not None:
        lines.append(t._("📍 Branch: {branch}").format(branch=esc(_branch_line(draft.branch))))
        if draft.starts_at is not None:
            lines.append(
                t._("📅 When: {when}").format(when=when_text(t, draft.branch, draft.starts_at))
            )
    if draft.comment:
        lines.append(t._("💬 Comment: {comment}").format(comment=esc(draft.comment)))
    return lines


def _branch_line(branch: BranchHours) -> str:
    return f"{branch.name}, {branch.address}" if branch.address else branch.name


def _with_summary(t: Texts, draft: Draft, question: str) -> str:
    lines = summary(t, draft)
    return "\n".join([*lines, "", question]) if lines else question


def cancel_row(t: Texts) -> list[Button]:
    return [Button(t._("✖️ Cancel"), BookStep(action="cancel").pack())]


def choose_car(t: Texts, cars: Sequence[GarageCar], *, has_bookings: bool) -> Screen:
    from bot.screens.cars import car_title

    rows = [[Button(f"🚗 {car_title(car)}", BookCar(car=car.car_id).pack())] for car in cars]
    rows.append([Button(t._("Another car"), BookCar(car=0).pack())])
    if has_bookings:
        rows.append([my_bookings_button(t)])
    rows.append(cancel_row(t))
    return Screen(t._("📅 Booking a service. Which car is it for?"), buttons=rows)


def choose_service(
    t: Texts, services: Sequence[Service], draft: Draft, *, has_bookings: bool = False
) -> Screen:
    rows = [[Button(_service_label(t, s), BookService(service=s.code).pack())] for s in services]
    if has_bookings:
        rows.append([my_bookings_button(t)])
    rows.append(cancel_row(t))
    question = t._("Which service do you need?")
    if draft.car is None:
        question = t._("📅 Booking a service.") + " " + question
    return Screen(_with_summary(t, draft, question), buttons=rows)


def _service_label(t: Texts, service: Service) -> str:
    label = f"{service.name} · {duration_text(t, service.duration)}"
    if service.price_from is not None:
        label += " · " + t._("from {price}").format(price=t.money(service.price_from))
    return label


def choose_branch(t: Texts, branches: Sequence[BranchHours], draft: Draft) -> Screen:
    rows = [[Button(_branch_line(b), BookBranch(branch=b.code).pack())] for b in branches]
    rows.append(cancel_row(t))
    return Screen(_with_summary(t, draft, t._("Which branch suits you?")), buttons=rows)


def month_title(t: Texts, month: date) -> str:
    names = get_month_names("wide", context="stand-alone", locale=t.locale)
    return f"{names[month.month].capitalize()} {month.year}"


def months_of(days: Sequence[Day]) -> list[date]:
    """The first day of each month the days fall in, in order."""
    return sorted({d.day.replace(day=1) for d in days})


def calendar(t: Texts, days: Sequence[Day], month: date, draft: Draft) -> Screen:
    """The month's grid: free days to tap, full days struck through, days the branch does
    not work or that are out of the horizon as "·"; weeks wholly outside the days left out."""
    by_day = {d.day: d for d in days}
    first, last = min(by_day), max(by_day)
    week_names = get_day_names("abbreviated", locale=t.locale)
    rows: list[list[Button]] = [
        [Button(week_names[n].capitalize(), _idle("blank")) for n in range(7)]
    ]
    start = month - timedelta(days=month.weekday())
    while start.month == month.month or start < month:
        week = [start + timedelta(days=n) for n in range(7)]
        start += timedelta(days=7)
        if week[-1] < first or week[0] > last:
            continue
        rows.append([_cell(day, month, by_day.get(day)) for day in week])
    months = months_of(days)
    turn = []
    at = months.index(month)
    if at > 0:
        turn.append(Button("‹ " + month_title(t, months[at - 1]), _turn(months[at - 1])))
    if at + 1 < len(months):
        turn.append(Button(month_title(t, months[at + 1]) + " ›", _turn(months[at + 1])))
    if turn:
        rows.append(turn)
    rows.append(cancel_row(t))
    question = t._("Choose a day ({month}):").format(month=month_title(t, month))
    if not any(d.state is DayState.FREE for d in days):
        question = t._("Sorry, there is no free time for this service in the coming weeks.")
    return Screen(_with_summary(t, draft, question), buttons=rows)


def _cell(day: date, month: date, found: Day | None) -> Button:
    if day.month != month.month:
        return Button(" ", _idle("blank"))
    if found is None or found.state in (DayState.CLOSED, DayState.OUT):
        return Button("·", _idle("closed"))
    if found.state is DayState.FULL:
        return Button("".join(ch + STRIKE for ch in str(day.day)), _idle("full"))
    return Button(str(day.day), BookDay(day=day_code(day)).pack())


def _idle(why: str) -> str:
    return BookIdle(why=why).pack()


def _turn(month: date) -> str:
    return BookMonth(month=month_code(month)).pack()


def idle_answer(t: Texts, why: str) -> str:
    """The toast of a calendar cell that books nothing."""
    if why == "full":
        return t._("This day is fully booked. Please choose another.")
    if why == "closed":
        return t._("We do not take bookings for this day.")
    return ""


def choose_time(t: Texts, day: Day, branch: BranchHours, draft: Draft) -> Screen:
    buttons = [
        Button(f"{branch.local(at):%H:%M}", BookTime(at=int(at.timestamp())).pack())
        for at in day.starts
    ]
    rows = grid(buttons, TIMES_PER_ROW)
    rows.append([Button(t._("‹ Another day"), BookStep(action="days").pack())])
    rows.append(cancel_row(t))
    question = t._("{day}: choose a time.").format(day=t.date(day.day, "EEEE, d MMMM"))
    if not day.starts:
        question = t._("This day has just been booked up. Please choose another.")
    return Screen(_with_summary(t, draft, question), buttons=rows)


def comment_too_long(t: Texts) -> Screen:
    return Screen(
        t._("The comment is too long: please keep it under {n} characters.").format(n=COMMENT_MAX)
    )


def ask_comment(t: Texts, draft: Draft) -> Screen:
    question = t._(
        "Anything the service adviser should know? Write it in one message, or tap «No comment»."
    )
    rows = [[Button(t._("No comment"), BookStep(action="nocomment").pack())], cancel_row(t)]
    return Screen(_with_summary(t, draft, question), buttons=rows)


def confirm(t: Texts, draft: Draft) -> Screen:
    if draft.moving is not None:
        question, label = t._("Move the booking to this time?"), t._("✅ Move")
    else:
        question, label = t._("Please check and confirm."), t._("✅ Book")
    rows = [[Button(label, BookStep(action="confirm").pack())], cancel_row(t)]
    return Screen(_with_summary(t, draft, question), buttons=rows)


def requested(t: Texts, draft: Draft) -> Screen:
    head = t._("📨 Request sent: we will confirm your booking shortly.")
    return Screen("\n".join([head, "", *summary(t, draft)]))


def booked(t: Texts, draft: Draft) -> Screen:
    head = t._("✅ You are booked. See you!")
    return Screen("\n".join([head, "", *summary(t, draft)]))


def taken(t: Texts, alternatives: Sequence[datetime], branch: BranchHours) -> Screen:
    buttons = [
        [Button(short_when(t, branch, at), BookTime(at=int(at.timestamp())).pack())]
        for at in alternatives
    ]
    if alternatives:
        text = t._("Sorry, this time has just been taken. The nearest free times:")
    else:
        text = t._("Sorry, this time has just been taken, and nothing is free nearby.")
    rows = [*buttons, [Button(t._("📅 Another day"), BookStep(action="days").pack())]]
    return Screen(text, buttons=[*rows, cancel_row(t)])


def unavailable(t: Texts) -> Screen:
    return Screen(t._("This time can no longer be booked. Please choose another."))


def already_booked(t: Texts) -> Screen:
    return Screen(t._("You already have a booking at this time. /bookings shows your bookings."))


def stopped(t: Texts) -> Screen:
    return Screen(t._("Booking cancelled. /book starts again."), menu=True)


def no_services(t: Texts, company: CompanyInfo) -> Screen:
    lines = [t._("Online booking is not available yet. Please call us."), ""]
    return Screen("\n".join([*lines, *contact_centre(t, company)]), menu=True)


def not_yours(t: Texts) -> str:
    """The alert of a button that is not the client's own, or no longer works."""
    return t._("This button is not for you or no longer works.")


# The client's bookings


def my_bookings_button(t: Texts) -> Button:
    return Button(t._("📋 My bookings"), BookStep(action="list").pack())


def state_text(t: Texts, state: str) -> str:
    if state == REQUESTED:
        return t._("request, awaiting confirmation")
    if state == CONFIRMED:
        return t._("confirmed")
    return state


def _view_when(t: Texts, view: BookingView) -> str:
    local = view.local_start
    return t._("{day} at {time}").format(
        day=t.date(local.date(), "EEEE, d MMMM"), time=f"{local:%H:%M}"
    )


def my_bookings(t: Texts, views: Sequence[BookingView]) -> Screen:
    if not views:
        return Screen(t._("You have no upcoming bookings. /book books a service."))
    blocks, rows = [t._("<b>Your bookings</b>")], []
    for view in views:
        blocks.append(
            "\n".join(
                [
                    f"📅 <b>{esc(_view_when(t, view))}</b>",
                    f"{esc(view.service_name)}, {esc(view.branch_name)}",
                    t._("Status: {state}").format(state=state_text(t, view.state)),
                ]
            )
        )
        short = f"{view.local_start:%d.%m %H:%M}"
        rows.append(
            [
                Button(
                    t._("Move {when}").format(when=short),
                    MyBooking(action="move", booking=view.id).pack(),
                ),
                Button(
                    t._("Cancel {when}").format(when=short),
                    MyBooking(action="cancel", booking=view.id).pack(),
                ),
            ]
        )
    return Screen("\n\n".join(blocks), buttons=rows)


def ask_cancel(t: Texts, view: BookingView) -> Screen:
    text = t._("Cancel your booking for {service} on {when}?").format(
        service=esc(view.service_name), when=esc(_view_when(t, view))
    )
    rows = [
        [
            Button(t._("Yes, cancel it"), MyBooking(action="cancel_yes", booking=view.id).pack()),
            Button(t._("No, keep it"), BookStep(action="list").pack()),
        ]
    ]
    return Screen(text, buttons=rows)


def booking_cancelled(t: Texts, view: BookingView) -> Screen:
    text = t._("Your booking on {when} is cancelled. /book books another time.").format(
        when=esc(_view_when(t, view))
    )
    return Screen(text)


def too_late(t: Texts, company: CompanyInfo, branch_phone: str = "") -> Screen:
    lines = [t._("It is too late to change this booking here. Please call us."), ""]
    if branch_phone and branch_phone != company.phone:
        lines.append(t._("📞 Phone: {phone}").format(phone=esc(branch_phone)))
    lines += contact_centre(t, company)
    return Screen("\n".join(lines))


def moved(t: Texts, draft: Draft, *, confirmed: bool) -> Screen:
    if confirmed:
        head = t._("✅ Your booking is moved.")
    else:
        head = t._("📨 Your booking is moved: we will confirm the new time shortly.")
    return Screen("\n".join([head, "", *summary(t, replace(draft, moving=None))]))


def declined(t: Texts, view: BookingView) -> Screen:
    """To the client, when staff could not confirm the time they asked for."""
    text = t._(
        "Sorry, we cannot confirm your booking for {service} on {when}. Please choose "
        "another time: /book"
    ).format(service=esc(view.service_name), when=esc(_view_when(t, view)))
    return Screen(text)


# The staff chat's card


@dataclass(frozen=True, slots=True)
class CardFacts:
    """Who booked: the client and the car as staff read them."""

    client: str
    phone: str | None
    car: str | None


def card(
    t: Texts, view: BookingView, facts: CardFacts, *, moved_from: BookingView | None = None
) -> Screen:
    """A booking as the staff chat sees it; the buttons follow its state."""
    if moved_from is not None or view.rescheduled_from is not None:
        head = t._("🔁 <b>Booking #{id}</b> (moved)").format(id=view.id)
    else:
        head = t._("📅 <b>Booking #{id}</b>").format(id=view.id)
    lines = [
        head,
        t._("Client: {name}").format(name=esc(facts.client)),
        t._("Phone: {phone}").format(phone=esc(facts.phone or "—")),
        t._("Car: {car}").format(car=esc(facts.car or "—")),
        t._("Service: {service}").format(service=esc(view.service_name)),
        t._("Branch: {branch}").format(branch=esc(view.branch_name)),
        t._("When: {when}").format(when=f"{view.local_start:%d.%m.%Y %H:%M}"),
    ]
    if moved_from is not None:
        lines.append(t._("Was: {when}").format(when=f"{moved_from.local_start:%d.%m.%Y %H:%M}"))
    if view.comment:
        lines.append(t._("Comment: {comment}").format(comment=esc(view.comment)))
    lines.append(card_state(t, view))
    return Screen("\n".join(lines), buttons=card_buttons(t, view))


def card_state(t: Texts, view: BookingView) -> str:
    who = esc(view.actor or "")
    if view.state == REQUESTED:
        return t._("🆕 Awaiting confirmation")
    if view.state == CONFIRMED:
        return t._("✅ Confirmed: {who}").format(who=who) if who else t._("✅ Confirmed")
    if view.state == "declined":
        return t._("❌ Declined: {who}").format(who=who)
    if view.state == "cancelled":
        return t._("✖️ Cancelled or moved: {who}").format(who=who)
    return t._("State: {state}").format(state=view.state)


def card_buttons(t: Texts, view: BookingView) -> list[list[Button]]:
    def tap(label: str, action: str) -> Button:
        return Button(label, StaffBooking(action=action, booking=view.id).pack())

    if view.state == REQUESTED:
        return [
            [tap(t._("✅ Confirm"), "confirm"), tap(t._("🔁 Move"), "move")],
            [tap(t._("❌ Decline"), "decline")],
        ]
    if view.state == CONFIRMED:
        return [[tap(t._("🔁 Move"), "move")]]
    return []


def move_options(
    t: Texts, view: BookingView, facts: CardFacts, starts: Sequence[datetime], branch: BranchHours
) -> Screen:
    shown = card(t, view, facts)
    rows = [
        [
            Button(
                short_when(t, branch, at),
                StaffBooking(action="to", booking=view.id, at=int(at.timestamp())).pack(),
            )
        ]
        for at in starts
    ]
    rows.append([Button(t._("‹ Back"), StaffBooking(action="card", booking=view.id).pack())])
    question = t._("Move to:") if starts else t._("No free time nearby.")
    return Screen(shown.text + "\n\n" + question, buttons=rows)


def card_outcome(t: Texts, view: BookingView) -> str:
    """The alert of a tap on a card whose booking already moved on."""
    return t._("Booking #{id}: {state}").format(id=view.id, state=card_state(t, view))


def not_your_branch(t: Texts) -> str:
    return t._("This booking is at another branch: it is not yours to handle.")


def client_cancelled(t: Texts, view: BookingView) -> Screen:
    """To the staff chat: a client cancelled their booking in the bot."""
    return Screen(
        t._("✖️ The client cancelled booking #{id} ({service}, {when}).").format(
            id=view.id, service=esc(view.service_name), when=f"{view.local_start:%d.%m.%Y %H:%M}"
        )
    )

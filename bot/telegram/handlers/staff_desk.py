"""The staff chat's booking desk: `/bookings [DATE]` (a day per branch, arrived / no-show
buttons), `/book PHONE` (booking a client by phone, step by step) and `/call PHONE` (the
inbound calls register). Only staff whose role has `Permission.MANAGE_BOOKINGS` (the
middleware checks the flag); a member with a branch sees and books that branch only.

Each conversation lives in its member's FSM state, keyed by member and chat, with the id
of the message it edits: a tap on someone else's flow, or on an older message, is refused.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Any

from aiogram import F, Router
from aiogram.filters import Command, CommandObject, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, Message
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.desk_callbacks import DeskAttend, DeskBook, DeskCall, DeskDay
from bot.screens import desk as screens
from bot.screens.desk import BranchDay, DeskLine, Draft, Person
from bot.screens.ui import Screen
from bot.telegram import render
from bot.telegram.middlewares import FLAG_PERMISSION, Who
from bot.telegram.services import BotServices
from crm.booking import (
    BookingRequest,
    BookingRules,
    BookingView,
    BranchHours,
    SlotTaken,
    act,
    book,
    booking,
    free_days,
    on_day,
)
from crm.booking.inbound import (
    BOOKED,
    CALL,
    NOT_BOOKED,
    OUTCOMES,
    PURPOSES,
    SERVICE,
    ContactInput,
    client_for_phone,
    record_contact,
)
from crm.contacts import ContactError, normalize_phone
from crm.errors import Conflict, DomainError, NotFound
from crm.names import full_name
from crm.recipients import latest_cars
from crm.staff import Permission, StaffMember
from storage.models import Car, Client

_MAY = {FLAG_PERMISSION: Permission.MANAGE_BOOKINGS}
_DOTTED = re.compile(r"(\d{1,2})\.(\d{1,2})(?:\.(\d{4}))?")
_ISO = re.compile(r"\d{4}-\d{2}-\d{2}")


class DeskBooking(StatesGroup):
    """Booking a client by phone; the data holds phone, client, name and the choices."""

    new_client = State()
    service = State()
    branch = State()
    day = State()
    time = State()
    confirm = State()


class CallRecord(StatesGroup):
    """Recording a call; the data holds phone, client, name, purpose and source."""

    purpose = State()
    source = State()
    outcome = State()
    book = State()
    """Booked: book the client here now, or only record the call."""


def read_day(text: str | None, today: date) -> date | None:
    """ "25.11" (this year), "25.11.2026", "2026-11-25"; nothing: today. None: not a date."""
    raw = (text or "").strip()
    if not raw:
        return today
    try:
        if _ISO.fullmatch(raw):
            return date.fromisoformat(raw)
        found = _DOTTED.fullmatch(raw)
        if found:
            year = int(found[3]) if found[3] else today.year
            return date(year, int(found[2]), int(found[1]))
    except ValueError:
        return None
    return None


def make_router(services: BotServices) -> Router:
    router = Router(name="staff_desk")
    router.message.filter(F.chat.id == services.staff_chat_id)
    router.callback_query.filter(F.message.chat.id == services.staff_chat_id)
    _day_sheet(router, services)
    _booking_by_phone(router, services)
    _calls(router, services)

    @router.callback_query(DeskBook.filter(), flags=_MAY)
    @router.callback_query(DeskCall.filter(), flags=_MAY)
    async def stale(query: CallbackQuery) -> None:
        """A step of a conversation that is over, or someone else's."""
        await query.answer(screens.not_yours(services.staff_texts), show_alert=True)

    return router


# ---------------------------------------------------------------- /bookings


def _day_sheet(router: Router, services: BotServices) -> None:
    @router.message(Command("bookings"), flags=_MAY)
    async def bookings(message: Message, command: CommandObject, who: Who) -> None:
        assert who.staff is not None
        t = services.staff_texts
        day = read_day(command.args, services.moment().today)
        if day is None:
            await render.answer(message, screens.bad_day(t), t)
            return
        await render.answer(message, await _sheet(services, who.staff, day), t)

    @router.callback_query(DeskDay.filter(), flags=_MAY)
    async def other_day(query: CallbackQuery, callback_data: DeskDay, who: Who) -> None:
        assert who.staff is not None
        day = read_day(callback_data.day, services.moment().today)
        await query.answer()
        if day is not None and isinstance(query.message, Message):
            t = services.staff_texts
            await render.edit(query.message, await _sheet(services, who.staff, day), t)

    @router.callback_query(DeskAttend.filter(F.action.in_({"arrive", "no_show"})), flags=_MAY)
    async def attend(query: CallbackQuery, callback_data: DeskAttend, who: Who) -> None:
        assert who.staff is not None
        t = services.staff_texts
        try:
            async with services.write() as session:
                await _mark(session, services, who.staff, callback_data)
        except DomainError as exc:
            code = exc.code if isinstance(exc, Conflict) else ""
            await query.answer(screens.attend_refused(t, code), show_alert=True)
        else:
            await query.answer()
        day = read_day(callback_data.day, services.moment().today)
        if day is not None and isinstance(query.message, Message):
            await render.edit(query.message, await _sheet(services, who.staff, day), t)


async def _mark(
    session: AsyncSession, services: BotServices, member: StaffMember, tap: DeskAttend
) -> BookingView:
    found = await booking(session, services.bookings, tap.booking)
    if member.branch is not None and found.branch != member.branch:
        raise NotFound(f"no booking {tap.booking} at {member.branch}", field="booking")
    return await act(
        session, services.bookings, tap.booking, tap.action, services.moment(), actor=member.name
    )


async def _sheet(services: BotServices, member: StaffMember, day: date) -> Screen:
    rules = services.bookings
    async with services.read() as session:
        branches = []
        for branch in _branches_of(rules, member):
            views = await on_day(session, rules, day, branch=branch.code)
            branches.append(BranchDay(branch.name, await _lines(session, views)))
    return screens.day_sheet(services.staff_texts, day, branches)


def _branches_of(rules: BookingRules, member: StaffMember) -> list[BranchHours]:
    """The branches a member of staff works with: their own, or every bookable one."""
    if member.branch is None:
        return list(rules.branches.values())
    return [b for code, b in rules.branches.items() if code == member.branch]


async def _lines(session: AsyncSession, views: list[BookingView]) -> list[DeskLine]:
    if not views:
        return []
    client_ids = sorted({v.client_id for v in views})
    people = {
        row.id: Person(full_name(row.last_name, row.first_name, row.middle_name), row.phone)
        for row in await session.execute(
            select(Client.id, Client.last_name, Client.first_name, Client.middle_name)
            .add_columns(Client.phone)
            .where(Client.id.in_(client_ids))
        )
    }
    car_ids = sorted({v.car_id for v in views if v.car_id is not None})
    cars = {
        row.id: _car_text(row.make, row.model, row.plate)
        for row in await session.execute(
            select(Car.id, Car.make, Car.model, Car.plate).where(Car.id.in_(car_ids))
        )
    }
    latest = await latest_cars(session, client_ids)
    lines = []
    for view in views:
        if view.car_id is not None:
            car = cars.get(view.car_id)
        else:
            facts = latest.get(view.client_id)
            car = _car_text(facts.make, facts.model, facts.plate) if facts else None
        person = people.get(view.client_id, Person("", None))
        lines.append(DeskLine(view, person, car))
    return lines


def _car_text(make: str | None, model: str | None, plate: str | None) -> str | None:
    text = " ".join(part for part in (make, model) if part)
    if plate:
        text = f"{text} ({plate})" if text else plate
    return text or None


# ---------------------------------------------------------------- /book PHONE


def _booking_by_phone(router: Router, services: BotServices) -> None:
    @router.message(Command("book"), flags=_MAY)
    async def start(message: Message, command: CommandObject, state: FSMContext, who: Who) -> None:
        t = services.staff_texts
        phone = _phone(services, command.args)
        if phone is None:
            await render.answer(message, screens.bad_phone(t, "book"), t)
            return
        await state.clear()
        await _begin_booking(services, message, state, who, phone, edit=False)

    @router.callback_query(DeskBook.filter(F.step == "new"), DeskBooking.new_client, flags=_MAY)
    async def create_client(query: CallbackQuery, state: FSMContext, who: Who) -> None:
        data = await _flow(query, state, services)
        if data is None:
            return
        async with services.write() as session:
            client, _ = await client_for_phone(session, data["phone"], services.moment())
        await state.update_data(client=client)
        await query.answer()
        await _ask_service(services, query, state, who)

    @router.callback_query(DeskBook.filter(F.step == "service"), DeskBooking.service, flags=_MAY)
    async def chose_service(
        query: CallbackQuery, callback_data: DeskBook, state: FSMContext, who: Who
    ) -> None:
        assert who.staff is not None
        if await _flow(query, state, services) is None:
            return
        rules = services.bookings
        service = rules.services.get(callback_data.value)
        branches = [] if service is None else _branches_for(rules, who.staff, service.code)
        await query.answer()
        if not branches:
            await _ask_service(services, query, state, who)
            return
        await state.update_data(service=callback_data.value)
        if len(branches) == 1:
            await state.update_data(branch=branches[0].code)
            await _ask_day(services, query, state)
            return
        await state.set_state(DeskBooking.branch)
        draft = await _draft(services, state)
        await _show(query, screens.pick_branch(services.staff_texts, draft, branches), services)

    @router.callback_query(DeskBook.filter(F.step == "branch"), DeskBooking.branch, flags=_MAY)
    async def chose_branch(
        query: CallbackQuery, callback_data: DeskBook, state: FSMContext, who: Who
    ) -> None:
        assert who.staff is not None
        data = await _flow(query, state, services)
        if data is None:
            return
        await query.answer()
        allowed = _branches_for(services.bookings, who.staff, data["service"])
        if callback_data.value not in {b.code for b in allowed}:
            return
        await state.update_data(branch=callback_data.value)
        await _ask_day(services, query, state)

    @router.callback_query(
        DeskBook.filter((F.step == "day") & (F.value == "")),
        DeskBooking.time,
        flags=_MAY,
    )
    @router.callback_query(
        DeskBook.filter((F.step == "day") & (F.value == "")),
        DeskBooking.confirm,
        flags=_MAY,
    )
    async def other_day(query: CallbackQuery, state: FSMContext) -> None:
        if await _flow(query, state, services) is None:
            return
        await query.answer()
        await state.update_data(day=None, start=None)
        await _ask_day(services, query, state)

    @router.callback_query(DeskBook.filter(F.step == "day"), DeskBooking.day, flags=_MAY)
    async def chose_day(query: CallbackQuery, callback_data: DeskBook, state: FSMContext) -> None:
        if await _flow(query, state, services) is None:
            return
        await query.answer()
        day = read_day(callback_data.value, services.moment().today)
        if day is None:
            return
        await state.update_data(day=day.isoformat())
        draft = await _draft(services, state)
        assert draft.branch is not None
        assert draft.service is not None
        async with services.read() as session:
            found = await free_days(
                session,
                services.bookings,
                draft.branch,
                draft.service,
                services.clock(),
                first=day,
                days=1,
            )
        starts = found[0].starts if found else ()
        if not starts:
            await _ask_day(services, query, state)
            return
        await state.set_state(DeskBooking.time)
        await _show(query, screens.pick_time(services.staff_texts, draft, starts), services)

    @router.callback_query(DeskBook.filter(F.step == "at"), DeskBooking.time, flags=_MAY)
    async def chose_time(query: CallbackQuery, callback_data: DeskBook, state: FSMContext) -> None:
        if await _flow(query, state, services) is None:
            return
        await query.answer()
        if not callback_data.value.isdigit():
            return
        await state.update_data(start=int(callback_data.value))
        await state.set_state(DeskBooking.confirm)
        draft = await _draft(services, state)
        await _show(query, screens.confirm(services.staff_texts, draft), services)

    @router.callback_query(DeskBook.filter(F.step == "ok"), DeskBooking.confirm, flags=_MAY)
    async def confirmed(query: CallbackQuery, state: FSMContext, who: Who) -> None:
        assert who.staff is not None
        data = await _flow(query, state, services)
        if data is None:
            return
        await query.answer()
        await _book(services, query, state, who.staff, data)

    @router.callback_query(
        DeskBook.filter(F.step == "cancel"), StateFilter(DeskBooking), flags=_MAY
    )
    async def cancel(query: CallbackQuery, state: FSMContext, who: Who) -> None:
        assert who.staff is not None
        data = await _flow(query, state, services)
        if data is None:
            return
        await state.clear()
        await query.answer()
        call = data.get("call")
        if isinstance(call, dict):  # the call came first: it is on record, unbooked
            await _record_call(services, who.staff, data, call, NOT_BOOKED)
        await _show(query, screens.cancelled(services.staff_texts, bool(call)), services)


async def _begin_booking(
    services: BotServices,
    event: Message | CallbackQuery,
    state: FSMContext,
    who: Who,
    phone: str,
    *,
    edit: bool,
    call: dict[str, Any] | None = None,
) -> None:
    """Start booking `phone`: ask to create the client when the number is new."""
    t = services.staff_texts
    async with services.read() as session:
        client, person = await _person(session, phone)
    await state.update_data(phone=phone, client=client, name=person.name, call=call)
    if client is not None:
        await _ask_service(services, event, state, who)
        return
    await state.set_state(DeskBooking.new_client)
    await _send_or_edit(services, event, state, screens.ask_new_client(t, phone), edit=edit)


async def _ask_service(
    services: BotServices, event: Message | CallbackQuery, state: FSMContext, who: Who
) -> None:
    assert who.staff is not None
    rules = services.bookings
    offered = [s for s in rules.services.values() if _branches_for(rules, who.staff, s.code)]
    await state.set_state(DeskBooking.service)
    draft = await _draft(services, state)
    screen = screens.pick_service(services.staff_texts, draft, offered)
    await _send_or_edit(services, event, state, screen, edit=isinstance(event, CallbackQuery))


async def _ask_day(services: BotServices, query: CallbackQuery, state: FSMContext) -> None:
    draft = await _draft(services, state)
    assert draft.branch is not None
    assert draft.service is not None
    async with services.read() as session:
        days = await free_days(
            session, services.bookings, draft.branch, draft.service, services.clock()
        )
    free = [d for d in days if d.starts][: screens.DAYS_SHOWN]
    await state.set_state(DeskBooking.day)
    await _show(query, screens.pick_day(services.staff_texts, draft, free), services)


async def _book(
    services: BotServices,
    query: CallbackQuery,
    state: FSMContext,
    member: StaffMember,
    data: dict[str, Any],
) -> None:
    t = services.staff_texts
    draft = await _draft(services, state)
    assert draft.start is not None
    assert draft.branch is not None
    assert draft.service is not None
    call = data.get("call") if isinstance(data.get("call"), dict) else None
    moment = services.moment()
    request = BookingRequest(
        client_id=int(data["client"]),
        service=draft.service.code,
        starts_at=draft.start,
        source="staff",
        branch=draft.branch.code,
        actor=member.name,
    )
    try:
        async with services.write() as session:
            view = await book(
                session,
                services.bookings,
                request,
                moment,
                notices=services.notices,
                confirmed=True,
            )
            contact = ContactInput(
                channel=CALL,
                purpose=call["purpose"] if call else SERVICE,
                outcome=BOOKED,
                client_id=view.client_id,
                source=call.get("source") if call else None,
                staff=member.name,
                branch=view.branch,
                booking_id=view.id,
            )
            await record_contact(
                session, contact, moment, sources=services.contact_sources, region=services.region
            )
    except SlotTaken as taken:
        await state.set_state(DeskBooking.time)
        await _show(query, screens.slot_taken(t, draft, taken.alternatives), services)
        return
    except DomainError as refused:  # too soon, or the client is booked at that time already
        await state.set_state(DeskBooking.time)
        await _show(query, screens.refused(t, draft, str(refused)), services)
        return
    await state.clear()
    await _show(query, screens.booked(t, draft, view, view.confirmation_queued), services)


async def _draft(services: BotServices, state: FSMContext) -> Draft:
    """What is chosen so far, from the conversation's data."""
    data = await state.get_data()
    rules = services.bookings
    start = data.get("start")
    day = data.get("day")
    return Draft(
        person=Person(str(data.get("name") or ""), data.get("phone")),
        service=rules.services.get(str(data.get("service"))),
        branch=rules.branches.get(str(data.get("branch"))),
        day=date.fromisoformat(day) if isinstance(day, str) else None,
        start=datetime.fromtimestamp(start, UTC) if isinstance(start, int) else None,
    )


def _branches_for(rules: BookingRules, member: StaffMember, service: str) -> list[BranchHours]:
    found = rules.services.get(service)
    if found is None:
        return []
    return [b for b in _branches_of(rules, member) if found.offered_at(b.code)]


# ---------------------------------------------------------------- /call PHONE


def _calls(router: Router, services: BotServices) -> None:
    @router.message(Command("call"), flags=_MAY)
    async def start(message: Message, command: CommandObject, state: FSMContext) -> None:
        t = services.staff_texts
        phone = _phone(services, command.args)
        if phone is None:
            await render.answer(message, screens.bad_phone(t, "call"), t)
            return
        async with services.read() as session:
            client, person = await _person(session, phone)
        await state.clear()
        await state.set_state(CallRecord.purpose)
        await state.update_data(phone=phone, client=client, name=person.name)
        sent = await render.answer(message, screens.call_purpose(t, person), t)
        await state.update_data(message=sent.message_id)

    @router.callback_query(DeskCall.filter(F.step == "purpose"), CallRecord.purpose, flags=_MAY)
    async def purpose(query: CallbackQuery, callback_data: DeskCall, state: FSMContext) -> None:
        data = await _flow(query, state, services)
        if data is None:
            return
        await query.answer()
        if callback_data.value not in PURPOSES:
            return
        await state.update_data(purpose=callback_data.value, source=None)
        t, person = services.staff_texts, _caller(data)
        if services.contact_sources:
            await state.set_state(CallRecord.source)
            screen = screens.call_source(t, person, callback_data.value, services.contact_sources)
        else:
            await state.set_state(CallRecord.outcome)
            screen = screens.call_outcome(t, person, callback_data.value, None)
        await _show(query, screen, services)

    @router.callback_query(DeskCall.filter(F.step == "source"), CallRecord.source, flags=_MAY)
    async def source(query: CallbackQuery, callback_data: DeskCall, state: FSMContext) -> None:
        data = await _flow(query, state, services)
        if data is None:
            return
        await query.answer()
        sources = services.contact_sources
        index = int(callback_data.value) if re.fullmatch(r"-?\d+", callback_data.value) else -2
        if not -1 <= index < len(sources):
            return
        chosen = sources[index] if index >= 0 else None
        await state.update_data(source=chosen)
        await state.set_state(CallRecord.outcome)
        screen = screens.call_outcome(services.staff_texts, _caller(data), data["purpose"], chosen)
        await _show(query, screen, services)

    @router.callback_query(DeskCall.filter(F.step == "outcome"), CallRecord.outcome, flags=_MAY)
    async def outcome(
        query: CallbackQuery, callback_data: DeskCall, state: FSMContext, who: Who
    ) -> None:
        assert who.staff is not None
        data = await _flow(query, state, services)
        if data is None:
            return
        await query.answer()
        if callback_data.value not in OUTCOMES:
            return
        if callback_data.value == BOOKED:
            await state.set_state(CallRecord.book)
            screen = screens.call_book_now(services.staff_texts, _caller(data), data["purpose"])
            await _show(query, screen, services)
            return
        await _save_call(services, query, state, who.staff, data, callback_data.value)

    @router.callback_query(DeskCall.filter(F.step == "save"), CallRecord.book, flags=_MAY)
    async def save_booked(query: CallbackQuery, state: FSMContext, who: Who) -> None:
        assert who.staff is not None
        data = await _flow(query, state, services)
        if data is None:
            return
        await query.answer()
        await _save_call(services, query, state, who.staff, data, BOOKED)

    @router.callback_query(DeskCall.filter(F.step == "book"), CallRecord.book, flags=_MAY)
    async def book_now(query: CallbackQuery, state: FSMContext, who: Who) -> None:
        data = await _flow(query, state, services)
        if data is None:
            return
        await query.answer()
        call = {"purpose": data["purpose"], "source": data.get("source")}
        await _begin_booking(services, query, state, who, data["phone"], edit=True, call=call)

    @router.callback_query(DeskCall.filter(F.step == "cancel"), StateFilter(CallRecord), flags=_MAY)
    async def cancel(query: CallbackQuery, state: FSMContext) -> None:
        if await _flow(query, state, services) is None:
            return
        await state.clear()
        await query.answer()
        await _show(query, screens.call_cancelled(services.staff_texts), services)


async def _save_call(
    services: BotServices,
    query: CallbackQuery,
    state: FSMContext,
    member: StaffMember,
    data: dict[str, Any],
    outcome: str,
) -> None:
    call = {"purpose": data["purpose"], "source": data.get("source")}
    await _record_call(services, member, data, call, outcome)
    await state.clear()
    screen = screens.call_saved(
        services.staff_texts, _caller(data), call["purpose"], call["source"], outcome
    )
    await _show(query, screen, services)


async def _record_call(
    services: BotServices,
    member: StaffMember,
    data: dict[str, Any],
    call: dict[str, Any],
    outcome: str,
) -> None:
    contact = ContactInput(
        channel=CALL,
        purpose=call["purpose"],
        outcome=outcome,
        phone=data["phone"],
        client_id=data.get("client"),
        source=call.get("source"),
        staff=member.name,
        branch=member.branch,
    )
    async with services.write() as session:
        await record_contact(
            session,
            contact,
            services.moment(),
            sources=services.contact_sources,
            region=services.region,
        )


def _caller(data: dict[str, Any]) -> Person:
    return Person(str(data.get("name") or ""), data.get("phone"))


# ---------------------------------------------------------------- shared


def _phone(services: BotServices, text: str | None) -> str | None:
    try:
        return normalize_phone(text or "", services.region)
    except ContactError:
        return None


async def _person(session: AsyncSession, phone: str) -> tuple[int | None, Person]:
    """The client with this phone (E.164) and how staff see them; (None, no name) if none."""
    row = (
        await session.execute(
            select(Client.id, Client.last_name, Client.first_name, Client.middle_name).where(
                Client.phone == phone
            )
        )
    ).first()
    if row is None:
        return None, Person("", phone)
    return row.id, Person(full_name(row.last_name, row.first_name, row.middle_name), phone)


async def _flow(
    query: CallbackQuery, state: FSMContext, services: BotServices
) -> dict[str, Any] | None:
    """The conversation's data, when the tap is on its own message; else an alert."""
    data = await state.get_data()
    message = query.message
    if message is None or data.get("message") != message.message_id:
        await query.answer(screens.not_yours(services.staff_texts), show_alert=True)
        return None
    return data


async def _show(query: CallbackQuery, screen: Screen, services: BotServices) -> None:
    if isinstance(query.message, Message):
        await render.edit(query.message, screen, services.staff_texts)


async def _send_or_edit(
    services: BotServices,
    event: Message | CallbackQuery,
    state: FSMContext,
    screen: Screen,
    *,
    edit: bool,
) -> None:
    """Edit the conversation's message under a tap, or answer a command with a new one
    that the conversation then edits."""
    t = services.staff_texts
    if isinstance(event, CallbackQuery):
        if edit:
            await _show(event, screen, services)
        return
    sent = await render.answer(event, screen, t)
    await state.update_data(message=sent.message_id)

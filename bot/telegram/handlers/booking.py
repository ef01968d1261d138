"""Booking a service in the client bot: /book step by step in one message, /bookings to
cancel or move one. Every id a button carries is checked against the client's own records
and the free time read anew; crm.booking decides, the handlers only move between steps."""

from __future__ import annotations

import contextlib
import logging
from datetime import UTC, date, datetime
from typing import Any

from aiogram import Bot, F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, Message
from sqlalchemy.ext.asyncio import AsyncSession

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
)
from bot.screens import booking as screens
from bot.screens.booking import Draft
from bot.screens.cars import car_title
from bot.screens.ui import Screen
from bot.telegram import render
from bot.telegram.handlers.booking_staff import post_card, tell_staff
from bot.telegram.middlewares import Who, require_client
from bot.telegram.services import BotServices
from bot.texts import Texts
from crm.booking import (
    CLIENT,
    BookingRequest,
    BookingView,
    BranchHours,
    Day,
    Service,
    SlotTaken,
    act,
    book,
    booking,
    free_days,
    reschedule,
    upcoming,
)
from crm.booking.bookings import COMMENT_MAX
from crm.booking.inbound import BOOKED, BOT, NOT_BOOKED, SERVICE, ContactInput, record_contact
from crm.errors import Conflict, DomainError, NotFound
from crm.garage import GarageCar, client_cars

log = logging.getLogger("autoloyal.bot")


class BookingSteps(StatesGroup):
    """The steps of /book; what was chosen is in the state data (car, service, branch,
    day, start, comment; `booking` when an existing booking is being moved)."""

    car = State()
    service = State()
    branch = State()
    day = State()
    time = State()
    comment = State()
    confirm = State()
    taken = State()
    """The chosen time was taken meanwhile: the alternatives offered are in `alternatives`."""


async def open_booking(
    services: BotServices, message: Message, state: FSMContext, client_id: int, t: Texts
) -> None:
    """The first step of /book: the car, or the service when the client has no car."""
    await state.clear()
    offered = services.bookings.services_at(None)
    if not offered:
        await render.answer(message, screens.no_services(t, services.company), t)
        return
    moment = services.moment()
    async with services.read() as session:
        cars = await client_cars(session, services.maintenance, client_id, moment.today)
        has_bookings = bool(await upcoming(session, services.bookings, client_id, moment.now))
    if cars:
        await state.set_state(BookingSteps.car)
        screen = screens.choose_car(t, cars, has_bookings=has_bookings)
    else:
        await state.set_state(BookingSteps.service)
        screen = screens.choose_service(t, offered, Draft(), has_bookings=has_bookings)
    shown = await render.answer(message, screen, t)
    await state.update_data(message=shown.message_id)


async def show_bookings(
    services: BotServices, message: Message, client_id: int, t: Texts, *, edit: bool = False
) -> None:
    async with services.read() as session:
        views = await upcoming(session, services.bookings, client_id, services.clock())
    screen = screens.my_bookings(t, views)
    if edit:
        await render.edit(message, screen, t)
    else:
        await render.answer(message, screen, t)


def make_router(services: BotServices) -> Router:
    router = require_client(Router(name="booking"), services)
    router.message.filter(F.chat.type == "private")
    rules = services.bookings

    @router.message(Command("bookings"))
    async def bookings_command(message: Message, state: FSMContext, who: Who, t: Texts) -> None:
        assert who.client_id is not None
        await state.clear()
        await show_bookings(services, message, who.client_id, t)

    @router.callback_query(BookStep.filter(F.action == "list"))
    async def bookings_button(query: CallbackQuery, state: FSMContext, who: Who, t: Texts) -> None:
        assert who.client_id is not None
        await state.clear()
        await query.answer()
        if isinstance(query.message, Message):
            await show_bookings(services, query.message, who.client_id, t, edit=True)

    @router.callback_query(BookingSteps.car, BookCar.filter())
    async def pick_car(
        query: CallbackQuery, callback_data: BookCar, state: FSMContext, who: Who, t: Texts
    ) -> None:
        assert who.client_id is not None
        car: GarageCar | None = None
        if callback_data.car:
            async with services.read() as session:
                cars = await client_cars(
                    session, services.maintenance, who.client_id, services.moment().today
                )
            car = next((c for c in cars if c.car_id == callback_data.car), None)
            if car is None:  # not theirs: say nothing of it
                await query.answer(screens.not_yours(t), show_alert=True)
                return
        await query.answer()
        title = car_title(car) if car is not None else None
        await state.update_data(car=car.car_id if car else None, car_title=title)
        await state.set_state(BookingSteps.service)
        draft = await _draft(services, state, who.client_id)
        await _show(query, screens.choose_service(t, rules.services_at(None), draft), t)

    @router.callback_query(BookingSteps.service, BookService.filter())
    async def pick_service(
        query: CallbackQuery, callback_data: BookService, state: FSMContext, who: Who, t: Texts
    ) -> None:
        assert who.client_id is not None
        service = rules.services.get(callback_data.service)
        branches = rules.branches_for(service) if service is not None else []
        if service is None or not branches:
            await query.answer(screens.not_yours(t), show_alert=True)
            return
        await query.answer()
        await state.update_data(service=service.code)
        if len(branches) > 1:
            await state.set_state(BookingSteps.branch)
            draft = await _draft(services, state, who.client_id)
            await _show(query, screens.choose_branch(t, branches, draft), t)
            return
        await state.update_data(branch=branches[0].code)
        await _show_days(query, state, who.client_id, t)

    @router.callback_query(BookingSteps.branch, BookBranch.filter())
    async def pick_branch(
        query: CallbackQuery, callback_data: BookBranch, state: FSMContext, who: Who, t: Texts
    ) -> None:
        assert who.client_id is not None
        service = rules.services.get(str((await state.get_data()).get("service") or ""))
        offering = {b.code for b in rules.branches_for(service)} if service else set()
        if callback_data.branch not in offering:
            await query.answer(screens.not_yours(t), show_alert=True)
            return
        await query.answer()
        await state.update_data(branch=callback_data.branch)
        await _show_days(query, state, who.client_id, t)

    @router.callback_query(BookingSteps.day, BookMonth.filter())
    async def turn_month(
        query: CallbackQuery, callback_data: BookMonth, state: FSMContext, who: Who, t: Texts
    ) -> None:
        assert who.client_id is not None
        code = callback_data.month
        month = screens.from_day_code(code * 100 + 1)
        await query.answer()
        await _show_days(query, state, who.client_id, t, month=month)

    @router.callback_query(BookIdle.filter())
    async def idle_cell(query: CallbackQuery, callback_data: BookIdle, t: Texts) -> None:
        await query.answer(screens.idle_answer(t, callback_data.why) or None)

    @router.callback_query(BookingSteps.day, BookDay.filter())
    async def pick_day(
        query: CallbackQuery, callback_data: BookDay, state: FSMContext, who: Who, t: Texts
    ) -> None:
        assert who.client_id is not None
        chosen = await _chosen(state)
        day = screens.from_day_code(callback_data.day)
        if chosen is None or day is None:
            await query.answer(screens.not_yours(t), show_alert=True)
            return
        found = await _day(services, chosen, day, await _moving(state))
        if found is None or not found.starts:
            await query.answer(screens.idle_answer(t, "full"), show_alert=True)
            await _show_days(query, state, who.client_id, t, month=day.replace(day=1))
            return
        await query.answer()
        await state.update_data(day=callback_data.day)
        await state.set_state(BookingSteps.time)
        draft = await _draft(services, state, who.client_id)
        await _show(query, screens.choose_time(t, found, chosen[1], draft), t)

    @router.callback_query(BookingSteps.time, BookTime.filter())
    async def pick_time(
        query: CallbackQuery, callback_data: BookTime, state: FSMContext, who: Who, t: Texts
    ) -> None:
        assert who.client_id is not None
        chosen = await _chosen(state)
        at = _instant(callback_data.at)
        found = None
        if chosen is not None and at is not None:
            found = await _day(services, chosen, chosen[1].local(at).date(), await _moving(state))
        if chosen is None or at is None or found is None or at not in found.starts:
            await query.answer(screens.unavailable(t).text, show_alert=True)
            if chosen is not None:
                await _show_days(query, state, who.client_id, t)
            return
        await query.answer()
        await state.update_data(start=callback_data.at)
        data = await state.get_data()
        if data.get("booking"):  # a booking being moved keeps its comment
            await state.set_state(BookingSteps.confirm)
            draft = await _draft(services, state, who.client_id)
            await _show(query, screens.confirm(t, draft), t)
            return
        await state.set_state(BookingSteps.comment)
        draft = await _draft(services, state, who.client_id)
        await _show(query, screens.ask_comment(t, draft), t)

    @router.callback_query(BookingSteps.time, BookStep.filter(F.action == "days"))
    @router.callback_query(BookingSteps.taken, BookStep.filter(F.action == "days"))
    async def back_to_days(query: CallbackQuery, state: FSMContext, who: Who, t: Texts) -> None:
        assert who.client_id is not None
        await query.answer()
        await _show_days(query, state, who.client_id, t)

    @router.message(BookingSteps.comment, F.text)
    async def comment(message: Message, state: FSMContext, who: Who, t: Texts, bot: Bot) -> None:
        assert who.client_id is not None
        text = (message.text or "").strip()
        if len(text) > COMMENT_MAX:
            await render.answer(message, screens.comment_too_long(t), t)
            return
        data = await state.get_data()
        asked = data.get("message")
        if isinstance(asked, int):  # the question's buttons are moot now
            with contextlib.suppress(TelegramBadRequest):
                await bot.edit_message_reply_markup(
                    chat_id=message.chat.id, message_id=asked, reply_markup=None
                )
        await state.update_data(comment=text or None)
        await state.set_state(BookingSteps.confirm)
        draft = await _draft(services, state, who.client_id)
        shown = await render.answer(message, screens.confirm(t, draft), t)
        await state.update_data(message=shown.message_id)

    @router.callback_query(BookingSteps.comment, BookStep.filter(F.action == "nocomment"))
    async def no_comment(query: CallbackQuery, state: FSMContext, who: Who, t: Texts) -> None:
        assert who.client_id is not None
        await query.answer()
        await state.update_data(comment=None)
        await state.set_state(BookingSteps.confirm)
        draft = await _draft(services, state, who.client_id)
        await _show(query, screens.confirm(t, draft), t)

    @router.callback_query(BookingSteps.confirm, BookStep.filter(F.action == "confirm"))
    async def confirm(
        query: CallbackQuery, state: FSMContext, who: Who, t: Texts, bot: Bot
    ) -> None:
        assert who.client_id is not None
        await query.answer()
        await _finish(query, state, who.client_id, t, bot)

    @router.callback_query(BookingSteps.taken, BookTime.filter())
    async def pick_alternative(
        query: CallbackQuery,
        callback_data: BookTime,
        state: FSMContext,
        who: Who,
        t: Texts,
        bot: Bot,
    ) -> None:
        assert who.client_id is not None
        offered = (await state.get_data()).get("alternatives") or []
        if callback_data.at not in offered:
            await query.answer(screens.not_yours(t), show_alert=True)
            return
        await query.answer()
        await state.update_data(start=callback_data.at)
        await _finish(query, state, who.client_id, t, bot)

    @router.callback_query(BookStep.filter(F.action == "cancel"))
    async def stop(query: CallbackQuery, state: FSMContext, who: Who, t: Texts) -> None:
        assert who.client_id is not None
        step, data = await state.get_state(), await state.get_data()
        await state.clear()
        await query.answer()
        reached = step in (BookingSteps.confirm.state, BookingSteps.taken.state)
        if reached and not data.get("booking"):
            async with services.write() as session:
                await _record(session, services, who.client_id, data, NOT_BOOKED, None)
        if isinstance(query.message, Message):
            await render.edit(query.message, screens.stopped(t), t)

    @router.callback_query(MyBooking.filter(F.action == "cancel"))
    async def ask_cancel(
        query: CallbackQuery, callback_data: MyBooking, state: FSMContext, who: Who, t: Texts
    ) -> None:
        view = await _own(services, callback_data.booking, who)
        if view is None or not view.holds_time:
            await query.answer(screens.not_yours(t), show_alert=True)
            return
        await state.clear()
        await query.answer()
        await _show(query, screens.ask_cancel(t, view), t)

    @router.callback_query(MyBooking.filter(F.action == "cancel_yes"))
    async def cancel_booking(
        query: CallbackQuery, callback_data: MyBooking, who: Who, t: Texts, bot: Bot
    ) -> None:
        assert who.client_id is not None
        try:
            async with services.write() as session:
                view = await act(
                    session,
                    rules,
                    callback_data.booking,
                    "cancel",
                    services.moment(),
                    actor=CLIENT,
                    client_id=who.client_id,
                )
        except NotFound:
            await query.answer(screens.not_yours(t), show_alert=True)
            return
        except Conflict as exc:
            await query.answer()
            await _refused(query, exc, callback_data.booking, who.client_id, t)
            return
        await query.answer()
        await _show(query, screens.booking_cancelled(t, view), t)
        await tell_staff(services, bot, screens.client_cancelled(services.staff_texts, view))

    @router.callback_query(MyBooking.filter(F.action == "move"))
    async def move(
        query: CallbackQuery, callback_data: MyBooking, state: FSMContext, who: Who, t: Texts
    ) -> None:
        assert who.client_id is not None
        view = await _own(services, callback_data.booking, who)
        if view is None or not view.holds_time or view.service not in rules.services:
            await query.answer(screens.not_yours(t), show_alert=True)
            return
        await query.answer()
        if not rules.client_may_change(view.starts_at, services.clock()):
            await _show(query, screens.too_late(t, services.company, _phone(view, services)), t)
            return
        await state.clear()
        await state.update_data(
            booking=view.id, service=view.service, branch=view.branch, car=view.car_id
        )
        await _show_days(query, state, who.client_id, t)

    async def _show_days(
        query: CallbackQuery,
        state: FSMContext,
        client_id: int,
        t: Texts,
        *,
        month: date | None = None,
    ) -> None:
        chosen = await _chosen(state)
        if chosen is None:
            await _show(query, screens.stopped(t), t)
            await state.clear()
            return
        service, branch = chosen
        async with services.read() as session:
            days = await free_days(
                session, rules, branch, service, services.clock(), leaving_out=await _moving(state)
            )
        months = screens.months_of(days)
        if month not in months:
            free = [d.day for d in days if d.starts]
            month = (free[0] if free else days[0].day).replace(day=1)
        await state.set_state(BookingSteps.day)
        draft = await _draft(services, state, client_id)
        await _show(query, screens.calendar(t, days, month, draft), t)

    async def _chosen(state: FSMContext) -> tuple[Service, BranchHours] | None:
        data = await state.get_data()
        service = rules.services.get(str(data.get("service") or ""))
        branch = rules.branches.get(str(data.get("branch") or ""))
        if service is None or branch is None:
            return None
        return service, branch

    async def _finish(
        query: CallbackQuery, state: FSMContext, client_id: int, t: Texts, bot: Bot
    ) -> None:
        data = await state.get_data()
        chosen = await _chosen(state)
        start = _instant(int(data.get("start") or 0))
        if chosen is None or start is None:
            await state.clear()
            await _show(query, screens.stopped(t), t)
            return
        moving = data.get("booking")
        moment = services.moment()
        try:
            async with services.write() as session:
                if moving:
                    was = await booking(session, rules, int(moving), client_id=client_id)
                    view = await reschedule(
                        session,
                        rules,
                        int(moving),
                        start,
                        moment,
                        actor=CLIENT,
                        source="bot",
                        client_id=client_id,
                        notices=services.notices,
                    )
                else:
                    was = None
                    request = BookingRequest(
                        client_id=client_id,
                        service=chosen[0].code,
                        starts_at=start,
                        source="bot",
                        branch=chosen[1].code,
                        car_id=data.get("car"),
                        comment=data.get("comment"),
                        actor=CLIENT,
                    )
                    view = await book(session, rules, request, moment, notices=services.notices)
                    await _record(session, services, client_id, data, BOOKED, view.id)
        except SlotTaken as exc:
            await state.set_state(BookingSteps.taken)
            await state.update_data(alternatives=[int(a.timestamp()) for a in exc.alternatives])
            await _show(query, screens.taken(t, exc.alternatives, chosen[1]), t)
            return
        except Conflict as exc:
            await _refused(query, exc, int(moving or 0), client_id, t)
            if exc.code != "too_late":
                await _show_days(query, state, client_id, t)
            return
        except DomainError:  # the time passed meanwhile, or the config changed
            await query.answer(screens.unavailable(t).text, show_alert=True)
            await _show_days(query, state, client_id, t)
            return
        await state.clear()
        draft = await _draft_of(services, data, client_id, view)
        if moving:
            screen = screens.moved(t, draft, confirmed=view.state == "confirmed")
        elif view.state == "confirmed":
            screen = screens.booked(t, draft)
        else:
            screen = screens.requested(t, draft)
        await _show(query, screen, t)
        await post_card(services, bot, view, moved_from=was)

    async def _refused(
        query: CallbackQuery, exc: Conflict, booking_id: int, client_id: int, t: Texts
    ) -> None:
        """A booking the client may not change any more, or a time they already hold."""
        if exc.code == "too_late":
            async with services.read() as session:
                view = await booking(session, rules, booking_id, client_id=client_id)
            await _show(query, screens.too_late(t, services.company, _phone(view, services)), t)
        elif exc.code == "already_booked":
            if isinstance(query.message, Message):
                await render.answer(query.message, screens.already_booked(t), t)
        else:  # cancelled or moved meanwhile
            if isinstance(query.message, Message):
                await show_bookings(services, query.message, client_id, t, edit=True)

    return router


async def _show(query: CallbackQuery, screen: Screen, t: Texts) -> None:
    if isinstance(query.message, Message):
        await render.edit(query.message, screen, t)


async def _day(
    services: BotServices, chosen: tuple[Service, BranchHours], day: date, moving: int | None
) -> Day | None:
    """The day as it is now (someone may have booked since the calendar was drawn); the
    booking being moved (`moving`) does not hold its own time."""
    service, branch = chosen
    async with services.read() as session:
        found = await free_days(
            session,
            services.bookings,
            branch,
            service,
            services.clock(),
            first=day,
            days=1,
            leaving_out=moving,
        )
    return found[0] if found else None


async def _moving(state: FSMContext) -> int | None:
    """The booking the client is moving, if they are moving one."""
    moving = (await state.get_data()).get("booking")
    return int(moving) if moving else None


async def _own(services: BotServices, booking_id: int, who: Who) -> BookingView | None:
    if who.client_id is None:
        return None
    try:
        async with services.read() as session:
            return await booking(session, services.bookings, booking_id, client_id=who.client_id)
    except NotFound:
        return None


async def _draft(services: BotServices, state: FSMContext, client_id: int) -> Draft:
    return await _draft_of(services, await state.get_data(), client_id, None)


async def _draft_of(
    services: BotServices, data: dict[str, Any], client_id: int, made: BookingView | None
) -> Draft:
    rules = services.bookings
    moving = None
    if data.get("booking") and made is None:
        async with services.read() as session:
            moving = await booking(session, rules, int(data["booking"]), client_id=client_id)
    start = _instant(int(data.get("start") or 0))
    return Draft(
        car=data.get("car_title"),
        service=rules.services.get(str(data.get("service") or "")),
        branch=rules.branches.get(str(data.get("branch") or "")),
        starts_at=made.starts_at if made is not None else start,
        comment=made.comment if made is not None else data.get("comment"),
        moving=moving,
    )


async def _record(
    session: AsyncSession,
    services: BotServices,
    client_id: int,
    data: dict[str, Any],
    outcome: str,
    booking_id: int | None,
) -> None:
    """The conversation in the inbound contacts register: one per booking conversation."""
    contact = ContactInput(
        channel=BOT,
        purpose=SERVICE,
        outcome=outcome,
        client_id=client_id,
        branch=data.get("branch"),
        booking_id=booking_id,
    )
    await record_contact(
        session,
        contact,
        services.moment(),
        sources=services.contact_sources,
        region=services.region,
    )


def _instant(seconds: int) -> datetime | None:
    if seconds <= 0:
        return None
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _phone(view: BookingView, services: BotServices) -> str:
    branch = services.bookings.branches.get(view.branch)
    return branch.phone if branch is not None else ""

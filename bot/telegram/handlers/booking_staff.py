"""The booking card in the staff chat: confirm, decline or move a client's booking.

Only staff whose role may manage bookings (the middleware checks the flag), and of those
with a branch, only for bookings of their branch. A tap is checked against the booking as
it is now: a second tap on an old card shows what became of it and never acts twice."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from aiogram import Bot, F, Router
from aiogram.types import CallbackQuery, Message
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.callbacks import StaffBooking
from bot.i18n import pick_locale
from bot.screens import booking as screens
from bot.screens.booking import CardFacts
from bot.screens.ui import Screen
from bot.telegram import render
from bot.telegram.middlewares import FLAG_PERMISSION, Who
from bot.telegram.services import BotServices
from crm.booking import (
    CONFIRMED,
    REQUESTED,
    BookingView,
    SlotTaken,
    act,
    booking,
    nearest_free,
    reschedule,
)
from crm.errors import Conflict, DomainError, NotFound
from crm.names import full_name
from crm.recipients import client_facts
from crm.staff import Permission
from storage.models import Car, Client

log = logging.getLogger("autoloyal.bot")

_MAY = {FLAG_PERMISSION: Permission.MANAGE_BOOKINGS}
MOVE_CHOICES = 6
_DECIDE = {"confirm", "decline"}


async def card_facts(session: AsyncSession, view: BookingView) -> CardFacts:
    """The client's name and phone and the car, as the card shows them."""
    found = await client_facts(session, view.client_id)
    name, phone = "—", None
    if found is not None:
        client, _ = found
        name = full_name(client.last_name, client.first_name, client.middle_name) or "—"
        phone = client.phone
    car = None
    if view.car_id is not None:
        row = (
            await session.execute(
                select(Car.make, Car.model, Car.plate).where(Car.id == view.car_id)
            )
        ).first()
        if row is not None:
            car = " ".join(part for part in (row.make, row.model, row.plate) if part) or None
    return CardFacts(name, phone, car)


async def post_card(
    services: BotServices, bot: Bot, view: BookingView, *, moved_from: BookingView | None = None
) -> None:
    """Post a booking's card to the staff chat; without one the log has it. A failed post is
    logged, never raised: the booking is made either way."""
    async with services.read() as session:
        facts = await card_facts(session, view)
    await tell_staff(
        services, bot, screens.card(services.staff_texts, view, facts, moved_from=moved_from)
    )


async def tell_staff(services: BotServices, bot: Bot, screen: Screen) -> None:
    if services.staff_chat_id is None:
        log.warning("booking: no [telegram] staff_chat_id to tell staff")
        return
    try:
        await bot.send_message(
            services.staff_chat_id, screen.text, reply_markup=render.inline(screen.buttons)
        )
    except Exception:
        log.exception("booking: the staff chat did not take the card")


def make_router(services: BotServices) -> Router:
    router = Router(name="booking-staff")
    router.callback_query.filter(F.message.chat.id == services.staff_chat_id)
    rules = services.bookings
    t = services.staff_texts

    @router.callback_query(StaffBooking.filter(F.action.in_(_DECIDE)), flags=_MAY)
    async def decide(query: CallbackQuery, callback_data: StaffBooking, who: Who, bot: Bot) -> None:
        assert who.staff is not None
        view = await _allowed(query, callback_data, who)
        if view is None:
            return
        if view.state != REQUESTED:  # decided already: say how, act on nothing
            await _stale(query, view)
            return
        try:
            async with services.write() as session:
                done = await act(
                    session,
                    rules,
                    view.id,
                    callback_data.action,
                    services.moment(),
                    actor=who.staff.name,
                    notices=services.notices,
                )
                facts = await card_facts(session, done)
        except Conflict:  # someone else decided between the read and the write
            current = await _current(view.id)
            if current is not None:
                await _stale(query, current)
            return
        await query.answer()
        await _show(query, screens.card(t, done, facts))
        if callback_data.action == "decline":
            await _tell_declined(bot, done)

    @router.callback_query(StaffBooking.filter(F.action == "move"), flags=_MAY)
    async def move_options(query: CallbackQuery, callback_data: StaffBooking, who: Who) -> None:
        view = await _allowed(query, callback_data, who)
        if view is None:
            return
        if view.state not in (REQUESTED, CONFIRMED) or view.service not in rules.services:
            await _stale(query, view)
            return
        await query.answer()
        await _offer(query, view, await _nearest(view))

    @router.callback_query(StaffBooking.filter(F.action == "to"), flags=_MAY)
    async def move_to(query: CallbackQuery, callback_data: StaffBooking, who: Who) -> None:
        assert who.staff is not None
        view = await _allowed(query, callback_data, who)
        if view is None:
            return
        if view.state not in (REQUESTED, CONFIRMED):
            await _stale(query, view)
            return
        try:
            start = datetime.fromtimestamp(callback_data.at, UTC)
        except (OverflowError, OSError, ValueError):
            await query.answer(screens.not_yours(t), show_alert=True)
            return
        try:
            async with services.write() as session:
                moved = await reschedule(
                    session,
                    rules,
                    view.id,
                    start,
                    services.moment(),
                    actor=who.staff.name,
                    source="staff",
                    notices=services.notices,
                )
                facts = await card_facts(session, moved)
        except SlotTaken as exc:
            await query.answer(screens.unavailable(t).text, show_alert=True)
            await _offer(query, view, list(exc.alternatives))
            return
        except Conflict:
            current = await _current(view.id)
            if current is not None:
                await _stale(query, current)
            return
        except DomainError:  # the time passed meanwhile, or a forged one
            await query.answer(screens.unavailable(t).text, show_alert=True)
            await _offer(query, view, await _nearest(view))
            return
        await query.answer()
        await _show(query, screens.card(t, moved, facts, moved_from=view))

    @router.callback_query(StaffBooking.filter(F.action == "card"), flags=_MAY)
    async def back_to_card(query: CallbackQuery, callback_data: StaffBooking, who: Who) -> None:
        view = await _allowed(query, callback_data, who)
        if view is None:
            return
        await query.answer()
        async with services.read() as session:
            facts = await card_facts(session, view)
        await _show(query, screens.card(t, view, facts))

    async def _allowed(
        query: CallbackQuery, callback_data: StaffBooking, who: Who
    ) -> BookingView | None:
        """The booking as it is now, when this member of staff may handle it."""
        view = await _current(callback_data.booking)
        if view is None:
            await query.answer(screens.not_yours(t), show_alert=True)
            return None
        branch = who.staff.branch if who.staff is not None else None
        if branch is not None and branch != view.branch:
            await query.answer(screens.not_your_branch(t), show_alert=True)
            return None
        return view

    async def _current(booking_id: int) -> BookingView | None:
        try:
            async with services.read() as session:
                return await booking(session, rules, booking_id)
        except NotFound:
            return None

    async def _stale(query: CallbackQuery, view: BookingView) -> None:
        await query.answer(screens.card_outcome(t, view), show_alert=True)
        async with services.read() as session:
            facts = await card_facts(session, view)
        await _show(query, screens.card(t, view, facts))

    async def _nearest(view: BookingView) -> list[datetime]:
        service, branch = rules.services[view.service], rules.branch(view.branch)
        async with services.read() as session:
            found = await nearest_free(
                session,
                rules,
                branch,
                service,
                view.starts_at,
                services.clock(),
                count=MOVE_CHOICES + 1,
                leaving_out=view.id,
            )
        return [at for at in found if at != view.starts_at][:MOVE_CHOICES]

    async def _offer(query: CallbackQuery, view: BookingView, starts: list[datetime]) -> None:
        async with services.read() as session:
            facts = await card_facts(session, view)
        branch = rules.branch(view.branch)
        await _show(query, screens.move_options(t, view, facts, starts, branch))

    async def _tell_declined(bot: Bot, view: BookingView) -> None:
        """The client learns at once that the time was not confirmed, in their language."""
        async with services.read() as session:
            row = (
                await session.execute(
                    select(Client.telegram_id, Client.language).where(Client.id == view.client_id)
                )
            ).first()
        if row is None or row.telegram_id is None:
            return
        locale = pick_locale(row.language, None, services.company.locale)
        client_texts = services.texts(locale)
        try:
            await render.send(
                bot, row.telegram_id, screens.declined(client_texts, view), client_texts
            )
        except Exception:
            log.warning("booking %d: could not tell the client it was declined", view.id)

    async def _show(query: CallbackQuery, screen: Screen) -> None:
        if isinstance(query.message, Message):
            await render.edit(query.message, screen, t)

    return router

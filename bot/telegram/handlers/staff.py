"""Complaints in the staff chat: take one, then say how it was resolved. Only staff whose
role allows it (`Permission.TAKE_COMPLAINT`); the middleware checks the flag."""

from __future__ import annotations

import contextlib

from aiogram import Bot, F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message

from bot.callbacks import ComplaintTap
from bot.screens import complaints as screens
from bot.telegram import render
from bot.telegram.middlewares import FLAG_PERMISSION, Who
from bot.telegram.services import BotServices
from bot.telegram.states import Resolution
from crm.errors import DomainError, NotFound
from crm.feedback import RESOLVED, complaint_facts, resolve_complaint, take_complaint
from crm.staff import Permission

_MAY = {FLAG_PERMISSION: Permission.TAKE_COMPLAINT}


def make_router(services: BotServices) -> Router:
    router = Router(name="staff")
    staff_chat = F.chat.id == services.staff_chat_id
    router.message.filter(staff_chat)
    router.callback_query.filter(F.message.chat.id == services.staff_chat_id)

    @router.callback_query(ComplaintTap.filter(F.action == "take"), flags=_MAY)
    async def take(query: CallbackQuery, callback_data: ComplaintTap, who: Who) -> None:
        assert who.staff is not None
        t = services.staff_texts
        try:
            async with services.write() as session:
                facts = await take_complaint(
                    session, callback_data.complaint, by=who.staff.name, now=services.clock()
                )
        except DomainError:  # taken by someone else, resolved, or no such complaint
            await query.answer(await _why_not(services, callback_data.complaint), show_alert=True)
            return
        await query.answer()
        if isinstance(query.message, Message):
            await render.edit(query.message, screens.alert(t, facts), t)

    @router.callback_query(ComplaintTap.filter(F.action == "resolve"), flags=_MAY)
    async def ask_note(
        query: CallbackQuery, callback_data: ComplaintTap, state: FSMContext
    ) -> None:
        t = services.staff_texts
        try:
            async with services.read() as session:
                facts = await complaint_facts(session, callback_data.complaint)
        except NotFound:
            facts = None
        if facts is None or facts.state == RESOLVED:  # a stale button: show how it ended
            await query.answer(await _why_not(services, callback_data.complaint), show_alert=True)
            if facts is not None and isinstance(query.message, Message):
                await render.edit(query.message, screens.alert(t, facts), t)
            return
        await state.set_state(Resolution.note)
        await state.update_data(
            complaint=callback_data.complaint,
            alert=query.message.message_id if query.message else None,
        )
        await query.answer()
        if isinstance(query.message, Message):
            text = t._("{who}, how was complaint #{id} resolved? Reply with one message.").format(
                who=query.from_user.first_name, id=callback_data.complaint
            )
            await query.message.answer(text)

    @router.message(Resolution.note, F.text, flags=_MAY)
    async def note(message: Message, state: FSMContext, who: Who, bot: Bot) -> None:
        assert who.staff is not None
        data = await state.get_data()
        await state.clear()
        t = services.staff_texts
        try:
            async with services.write() as session:
                facts = await resolve_complaint(
                    session,
                    int(data.get("complaint") or 0),
                    by=who.staff.name,
                    note=message.text or "",
                    now=services.clock(),
                )
        except DomainError:
            await message.answer(await _why_not(services, int(data.get("complaint") or 0)))
            return
        resolved = screens.alert(t, facts)
        alert = data.get("alert")
        if isinstance(alert, int):  # the alert itself says how it ended, with no more buttons
            with contextlib.suppress(TelegramBadRequest):
                await bot.edit_message_text(
                    resolved.text, chat_id=message.chat.id, message_id=alert, reply_markup=None
                )
        await render.answer(message, resolved, t)

    return router


async def _why_not(services: BotServices, complaint_id: int) -> str:
    """Why a complaint cannot be taken or resolved, in the staff chat's language."""
    t = services.staff_texts
    try:
        async with services.read() as session:
            facts = await complaint_facts(session, complaint_id)
    except NotFound:
        return t._("This button no longer works. Please use the menu.")
    if facts.state == RESOLVED:
        return t._("Complaint #{id} is already resolved.").format(id=facts.id)
    return t._("Complaint #{id} is already taken by {who}.").format(id=facts.id, who=facts.taken_by)

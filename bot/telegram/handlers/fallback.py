"""Anything no other handler took, in a private chat: a short help and the menu. Never
silence, never a dead end."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.types import CallbackQuery, Message

from bot.screens import menu
from bot.telegram import render
from bot.telegram.services import BotServices
from bot.texts import Texts


def make_router(services: BotServices) -> Router:
    router = Router(name="fallback")

    @router.message(F.chat.type == "private")
    async def anything(message: Message, t: Texts) -> None:
        await render.answer(message, menu.unknown_input(t), t)

    @router.callback_query()
    async def stale_button(query: CallbackQuery, t: Texts) -> None:
        """A button from an old message, or forged data: say so instead of spinning."""
        await query.answer(
            t._("This button no longer works. Please use the menu."), show_alert=True
        )

    return router

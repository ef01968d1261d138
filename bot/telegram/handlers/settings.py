"""/settings: offers and service messages per channel, and the language, written as the
client's own word (`consent_event` rows with source "bot")."""

from __future__ import annotations

from aiogram import Router
from aiogram.types import CallbackQuery, Message

from bot.callbacks import SettingTap
from bot.i18n import LOCALES
from bot.screens import settings as screens
from bot.telegram import render
from bot.telegram.middlewares import Who, require_client
from bot.telegram.services import BotServices
from bot.texts import Texts
from crm.preferences import BOT, preferences, set_consent, set_language
from gateway.consent import ADVERTISING, SERVICE
from gateway.outbox import CHANNELS

_PURPOSES = {"ads": ADVERTISING, "service": SERVICE}


async def show_settings(services: BotServices, message: Message, client_id: int, t: Texts) -> None:
    async with services.read() as session:
        prefs = await preferences(session, client_id)
    if prefs is not None:
        await render.answer(message, screens.settings(t, prefs, t.locale), t)


def make_router(services: BotServices) -> Router:
    router = require_client(Router(name="settings"), services)

    @router.callback_query(SettingTap.filter())
    async def tap(query: CallbackQuery, callback_data: SettingTap, who: Who, t: Texts) -> None:
        assert who.client_id is not None
        what, channel = callback_data.what, callback_data.channel
        now = services.clock()
        async with services.write() as session:
            if what == "lang" and channel in LOCALES:
                await set_language(session, who.client_id, channel, now)
                t = services.texts(channel)
            elif what in _PURPOSES and channel in CHANNELS:
                await set_consent(
                    session,
                    who.client_id,
                    {channel: callback_data.on},
                    purpose=_PURPOSES[what],
                    source=BOT,
                    now=now,
                )
            prefs = await preferences(session, who.client_id)
        warn = what == "service" and not callback_data.on
        await query.answer(screens.service_off_warning(t) if warn else None, show_alert=warn)
        if prefs is not None and isinstance(query.message, Message):
            await render.edit(query.message, screens.settings(t, prefs, t.locale), t)
            if what == "lang":  # the menu keyboard is drawn in the new language
                await render.answer(query.message, screens.language_changed(t), t)

    return router

"""The menu: /balance, /card, /cars, /book, /settings, /help, and the same from the reply
keyboard in either language. A menu tap leaves any step in hand."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Filter
from aiogram.fsm.context import FSMContext
from aiogram.types import BufferedInputFile, Message

from bot.screens import balance as balance_screens
from bot.screens import card as card_screens
from bot.screens import menu as screens
from bot.screens.menu import menu_lookup
from bot.screens.ui import MenuKey
from bot.telegram import render
from bot.telegram.handlers import booking, cars, settings
from bot.telegram.middlewares import Who, require_client
from bot.telegram.services import BotServices
from bot.texts import Texts
from crm.bonuses.account import account
from crm.referrals import referral_code
from storage.feedback import TelegramFile


class MenuTap(Filter):
    """A command or a menu button for `key`; either language's label counts."""

    def __init__(self, key: MenuKey, labels: dict[str, MenuKey]) -> None:
        self.key, self.labels = key, labels

    async def __call__(self, message: Message) -> bool:
        text = (message.text or "").strip()
        if text.startswith("/"):
            command = text[1:].split(maxsplit=1)[0].split("@")[0].lower()
            return command == self.key.value
        return self.labels.get(text) is self.key


def make_router(services: BotServices) -> Router:
    router = Router(name="menu")
    router.message.filter(F.chat.type == "private")
    labels = menu_lookup(services.all_texts().values())
    needs_client = require_client(Router(name="menu-client"), services)
    router.include_router(needs_client)

    @router.message(MenuTap(MenuKey.HELP, labels))
    async def help_(message: Message, state: FSMContext, t: Texts) -> None:
        await state.set_state(None)
        await render.answer(message, screens.help_screen(t, services.company), t)

    @needs_client.message(MenuTap(MenuKey.BOOK, labels))
    async def book(message: Message, state: FSMContext, who: Who, t: Texts) -> None:
        assert who.client_id is not None
        await booking.open_booking(services, message, state, who.client_id, t)

    @needs_client.message(MenuTap(MenuKey.BALANCE, labels))
    async def balance(message: Message, state: FSMContext, who: Who, t: Texts) -> None:
        assert who.client_id is not None
        await state.set_state(None)
        moment = services.moment()
        async with services.read() as session:
            found = await account(
                session,
                services.bonuses,
                who.client_id,
                moment.today,
                movements=balance_screens.LAST_MOVEMENTS,
                expiring_within_days=balance_screens.EXPIRING_WITHIN_DAYS,
                with_card=False,
            )
        invite = await _invitation(services, who.client_id, who.referral_code)
        screen = balance_screens.balance(t, found, moment.today, invite)
        await render.answer(message, screen, t)

    @needs_client.message(MenuTap(MenuKey.CARD, labels))
    async def card(message: Message, state: FSMContext, who: Who, t: Texts) -> None:
        assert who.client_id is not None
        await state.set_state(None)
        async with services.read() as session:
            found = await account(
                session, services.bonuses, who.client_id, services.moment().today, movements=0
            )
            key = f"card-qr:{found.card.number}" if found.card else ""
            known = await session.get(TelegramFile, key) if found.card else None
        if found.card is None:
            await render.answer(message, card_screens.no_card(t, services.company), t)
            return
        caption = card_screens.card_caption(t, found.card, found.standing.tier.name)
        if known is not None:
            try:
                await message.answer_photo(known.file_id, caption=caption)
                return
            except TelegramBadRequest:  # Telegram forgot the file: upload it again
                pass
        png = card_screens.card_qr_png(found.card.number)
        sent = await message.answer_photo(
            BufferedInputFile(png, filename=f"card-{found.card.number}.png"), caption=caption
        )
        if sent.photo:
            async with services.write() as session:
                stored = await session.get(TelegramFile, key)
                if stored is None:
                    session.add(
                        TelegramFile(
                            key=key, file_id=sent.photo[-1].file_id, created_at=services.clock()
                        )
                    )
                else:
                    stored.file_id = sent.photo[-1].file_id

    @needs_client.message(MenuTap(MenuKey.CARS, labels))
    async def my_cars(message: Message, state: FSMContext, who: Who, t: Texts) -> None:
        assert who.client_id is not None
        await state.set_state(None)
        await cars.show_cars(services, message, who.client_id, t)

    @needs_client.message(MenuTap(MenuKey.SETTINGS, labels))
    async def my_settings(message: Message, state: FSMContext, who: Who, t: Texts) -> None:
        assert who.client_id is not None
        await state.set_state(None)
        await settings.show_settings(services, message, who.client_id, t)

    return router


async def _invitation(
    services: BotServices, client_id: int, code: str | None
) -> balance_screens.Invitation:
    """The client's referral code and link; the code is made the first time it is shown."""
    if code is None:
        async with services.write() as session:
            code = await referral_code(session, client_id)
    link = f"https://t.me/{services.bot_username}?start=ref_{code}"
    return balance_screens.Invitation(
        code,
        link if services.bot_username else None,
        services.bonuses.referral_referrer,
        services.bonuses.referral_referred,
    )


__all__ = ["MenuTap", "make_router"]

"""/start with its deep links, and linking by the shared contact."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import CommandObject, CommandStart
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message

from bot.callbacks import AdsAnswer
from bot.screens import menu, onboarding
from bot.telegram import render
from bot.telegram.handlers import booking, survey
from bot.telegram.middlewares import Who
from bot.telegram.services import BotServices
from bot.telegram.states import Onboarding
from bot.texts import Texts
from crm.errors import DomainError
from crm.onboarding import LinkedElsewhere, Person, follow_referral, link_by_phone
from crm.preferences import BOT, preferences, set_advertising

REFERRAL, SURVEY, BOOK = "ref_", "survey_", "book"


def make_router(services: BotServices) -> Router:
    router = Router(name="start")
    router.message.filter(F.chat.type == "private")

    @router.message(CommandStart())
    async def start(
        message: Message, command: CommandObject, state: FSMContext, who: Who, t: Texts
    ) -> None:
        payload = (command.args or "").strip()
        await state.clear()
        if who.client_id is None:
            await state.set_state(Onboarding.contact)
            await state.update_data(start=payload)
            name = message.from_user.first_name if message.from_user else None
            await render.answer(message, onboarding.ask_contact(t, services.company, name), t)
            return
        await _follow(message, payload, who.client_id, who.name, state, t)

    @router.message(F.contact)
    async def contact(message: Message, state: FSMContext, who: Who, t: Texts) -> None:
        shared = message.contact
        sender = message.from_user
        if shared is None or sender is None or shared.user_id != sender.id:
            await render.answer(message, onboarding.not_own_contact(t), t)
            return
        payload = str((await state.get_data()).get("start") or "")
        code = payload.removeprefix(REFERRAL) if payload.startswith(REFERRAL) else None
        person = Person(sender.id, sender.first_name, sender.last_name)
        try:
            async with services.write() as session:
                linked = await link_by_phone(
                    session,
                    services.bonuses,
                    person,
                    shared.phone_number,
                    services.moment(),
                    region=services.region,
                    referral_code=code,
                )
                prefs = await preferences(session, linked.client_id)
        except LinkedElsewhere:
            await state.clear()
            await render.answer(message, onboarding.linked_elsewhere(t, services.company), t)
            return
        except DomainError:
            await render.answer(message, onboarding.bad_phone(t), t)
            return
        await state.clear()
        if linked.already_linked:
            await render.answer(message, onboarding.already_linked(t), t)
        else:
            bonus = linked.welcome.amount if linked.welcome else None
            name = linked.name or sender.first_name
            screen = onboarding.welcome(
                t,
                name,
                created=linked.created,
                bonus=bonus,
                referred=linked.referred_by is not None,
            )
            await render.answer(message, screen, t)
        if prefs is not None and "telegram" not in prefs.decided:
            await render.answer(message, onboarding.ask_advertising(t), t)
        if payload and not payload.startswith(REFERRAL):
            await _follow(message, payload, linked.client_id, None, state, t, greet=False)

    @router.callback_query(AdsAnswer.filter())
    async def advertising(
        query: CallbackQuery, callback_data: AdsAnswer, who: Who, t: Texts
    ) -> None:
        if who.client_id is None:
            await query.answer()
            return
        async with services.write() as session:
            await set_advertising(
                session,
                who.client_id,
                {"telegram": callback_data.yes},
                source=BOT,
                now=services.clock(),
            )
        await query.answer()
        if query.message is not None and isinstance(query.message, Message):
            await render.edit(
                query.message, onboarding.advertising_answered(t, callback_data.yes), t
            )

    async def _follow(
        message: Message,
        payload: str,
        client_id: int,
        name: str | None,
        state: FSMContext,
        t: Texts,
        *,
        greet: bool = True,
    ) -> None:
        """Where a deep link leads a linked client."""
        if payload.startswith(SURVEY) and payload.removeprefix(SURVEY).isdigit():
            visit = int(payload.removeprefix(SURVEY))
            await survey.open_survey(services, message, state, client_id, visit, t)
            return
        if payload == BOOK:
            await booking.open_booking(services, message, state, client_id, t)
            return
        if payload.startswith(REFERRAL):
            async with services.write() as session:
                referrer = await follow_referral(
                    session, client_id, payload.removeprefix(REFERRAL), services.moment()
                )
            done = onboarding.referral_noted(t) if referrer else onboarding.referral_ignored(t)
            await render.answer(message, done, t)
            return
        if greet:
            await render.answer(message, menu.main_menu(t, services.company, name), t)

    return router


def make_reminder_router(services: BotServices) -> Router:
    """Someone asked for their phone who writes anything else gets asked again; it comes
    after the menu, so /help and booking work before linking."""
    router = Router(name="start-reminder")
    router.message.filter(F.chat.type == "private")

    @router.message(Onboarding.contact)
    async def no_contact_yet(message: Message, t: Texts) -> None:
        name = message.from_user.first_name if message.from_user else None
        await render.answer(message, onboarding.ask_contact(t, services.company, name), t)

    return router

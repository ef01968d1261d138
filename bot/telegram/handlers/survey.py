"""The visit survey: the deep link, the invitation's own buttons, the comment; and the staff
alert a low answer raises, sent after the answer is committed."""

from __future__ import annotations

import contextlib
import logging

from aiogram import Bot, F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message

from bot.callbacks import SurveyTap
from bot.screens import complaints
from bot.screens import survey as screens
from bot.screens.ui import Screen
from bot.telegram import render
from bot.telegram.middlewares import Who, require_client
from bot.telegram.services import BotServices
from bot.telegram.states import SurveyComment
from bot.texts import Texts
from crm.errors import DomainError
from crm.feedback import COMMENT, DONE, Answered, ComplaintFacts, SurveyVisit, answer, survey_visit

log = logging.getLogger("autoloyal.bot")

CHANNEL = "telegram"


async def open_survey(
    services: BotServices,
    message: Message,
    state: FSMContext,
    client_id: int,
    visit_id: int,
    t: Texts,
) -> None:
    """The survey of one visit where the client stands (the `survey_<visit>` deep link);
    at the comment question, the next message is taken as the comment."""
    try:
        async with services.read() as session:
            visit = await survey_visit(session, visit_id, client_id)
    except DomainError:
        await render.answer(message, screens.not_yours(t), t)
        return
    shown = await render.answer(message, screens.current(t, visit, visit.state), t)
    step = visit.state.step if visit.state else None
    await _await_comment(state, visit.visit_id, step, shown.message_id)


async def _await_comment(
    state: FSMContext, visit_id: int, step: str | None, question_id: int | None
) -> None:
    """At the comment question the next message is the comment; the question's message id
    is kept so its skip button can go once the comment is in."""
    if step == COMMENT:
        await state.set_state(SurveyComment.text)
        await state.update_data(visit=visit_id, question=question_id)
    elif step == DONE:
        await state.clear()


def make_router(services: BotServices) -> Router:
    router = require_client(Router(name="survey"), services)

    @router.callback_query(SurveyTap.filter())
    async def tap(
        query: CallbackQuery,
        callback_data: SurveyTap,
        state: FSMContext,
        who: Who,
        t: Texts,
        bot: Bot,
    ) -> None:
        assert who.client_id is not None
        skip = callback_data.question == COMMENT
        try:
            async with services.write() as session:
                answered = await answer(
                    session,
                    services.complaints,
                    callback_data.visit,
                    who.client_id,
                    question=callback_data.question,
                    score=None if skip else callback_data.score,
                    comment=None,
                    channel=CHANNEL,
                    now=services.clock(),
                )
                visit = await survey_visit(session, callback_data.visit, who.client_id)
        except DomainError:  # someone else's visit, a forged question or score
            await query.answer(screens.not_yours(t).text, show_alert=True)
            return
        await query.answer()
        question = query.message.message_id if query.message else None
        await _await_comment(state, visit.visit_id, answered.state.step, question)
        if isinstance(query.message, Message):
            await render.edit(query.message, _screen(services, t, visit, answered), t)
        await _tell_staff(services, bot, answered)

    @router.message(SurveyComment.text, F.text)
    async def comment(message: Message, state: FSMContext, who: Who, t: Texts, bot: Bot) -> None:
        assert who.client_id is not None
        data = await state.get_data()
        visit_id, question = int(data.get("visit") or 0), data.get("question")
        await state.clear()
        try:
            async with services.write() as session:
                answered = await answer(
                    session,
                    services.complaints,
                    visit_id,
                    who.client_id,
                    question=COMMENT,
                    comment=message.text,
                    channel=CHANNEL,
                    now=services.clock(),
                )
                visit = await survey_visit(session, visit_id, who.client_id)
        except DomainError:
            await render.answer(message, screens.not_yours(t), t)
            return
        if isinstance(question, int) and answered.counted:  # the skip button is moot now
            with contextlib.suppress(TelegramBadRequest):
                await bot.edit_message_reply_markup(
                    chat_id=message.chat.id, message_id=question, reply_markup=None
                )
        await render.answer(message, _screen(services, t, visit, answered), t)
        await _tell_staff(services, bot, answered)

    return router


def _screen(services: BotServices, t: Texts, visit: SurveyVisit, answered: Answered) -> Screen:
    state = answered.state
    if state.step == DONE:
        low = services.complaints.is_low(state.csat, state.nps)
        return screens.thanks(t, visit, state, complaint=low)
    return screens.current(t, visit, state)


async def _tell_staff(services: BotServices, bot: Bot, answered: Answered) -> None:
    if answered.complaint is not None:
        await alert_staff(
            services,
            bot,
            complaints.alert(services.staff_texts, answered.complaint),
            answered.complaint,
        )
    if answered.complaint_comment is not None:
        facts = answered.complaint_comment
        await alert_staff(
            services, bot, complaints.comment_added(services.staff_texts, facts), facts
        )


async def alert_staff(
    services: BotServices, bot: Bot, screen: Screen, facts: ComplaintFacts
) -> None:
    """Post to the staff chat; without one the log has it. A failed post is logged, never
    raised: the client's answer is recorded either way."""
    if services.staff_chat_id is None:
        log.warning("complaint #%d: no [telegram] staff_chat_id to tell staff", facts.id)
        return
    try:
        await bot.send_message(
            services.staff_chat_id, screen.text, reply_markup=render.inline(screen.buttons)
        )
    except Exception:
        log.exception("complaint #%d: the staff chat did not take the alert", facts.id)

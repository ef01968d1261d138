"""The visit survey in the client bot: a client rates a visit with taps, a low rating reaches
the staff chat at once, and staff take the complaint and say how it was resolved."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from autoloyal.messaging import build_channels, dispatch_policy, template_library
from autoloyal.rules import survey_invites
from bot.callbacks import SurveyTap
from crm.surveys import invite_to_survey
from gateway.dispatch import Dispatcher
from storage.feedback import Complaint, SurveyAnswer
from storage.models import Branch, Visit
from storage.outbox import Message
from tests.support.botapi import SentMessage
from tests.support.botchat import ADMIN, OPERATOR, STAFF_CHAT, STRANGER, BotChat, bot_chat
from tests.support.clock import FakeClock
from tests.support.databases import Database
from tests.support.messaging import add_client, add_visit
from tests.support.telegram_updates import TelegramUser, callback, command, text

IVAN = TelegramUser(555, "Иван", language_code="ru")
PETR = TelegramUser(556, "Пётр", language_code="ru")
ANNA = TelegramUser(ADMIN, "Анна", "Петрова")
OLEG = TelegramUser(OPERATOR, "Олег", "Сидоров")
NOBODY = TelegramUser(STRANGER, "Вася")
IVAN_PHONE = "+79035254560"
VISIT_DAY = date(2026, 11, 23)

HOW_SATISFIED = "Насколько вы довольны обслуживанием? 1 — очень плохо, 5 — отлично."
RECOMMEND = "Насколько вероятно, что вы порекомендуете нас другу?"
ANYTHING_TO_ADD = "Хотите что-то добавить? Напишите одним сообщением или пропустите."
THANKS = "Спасибо! Ваш ответ записан."
MANAGER_WILL_CALL = "Жаль, что не всё было идеально: менеджер скоро свяжется с вами."
NOT_YOURS = "Этот опрос не для вас или уже закрыт."


async def ivan_with_visit(db: Database) -> tuple[int, int]:
    """Иван, linked to the bot, who was serviced yesterday for 4 500 ₽: (client, visit)."""
    client = await add_client(db, phone=IVAN_PHONE, telegram_id=IVAN.id)
    return client, await visit_of(db, client, "4500")


async def visit_of(db: Database, client_id: int, amount: str) -> int:
    await add_visit(db, client_id, VISIT_DAY, amount)
    async with db.sessions() as session:
        found = await session.scalar(select(Visit.id).where(Visit.client_id == client_id))
    assert found is not None
    return found


def labels(screen: dict[str, Any] | SentMessage) -> list[str]:
    """The inline buttons under a message, as the client reads them."""
    markup = screen.reply_markup if isinstance(screen, SentMessage) else screen.get("reply_markup")
    return [button["text"] for row in (markup or {}).get("inline_keyboard", []) for button in row]


def button(screen: dict[str, Any] | SentMessage, label: str) -> str:
    """The callback data of the button `label` under a message."""
    markup = screen.reply_markup if isinstance(screen, SentMessage) else screen.get("reply_markup")
    for row in (markup or {}).get("inline_keyboard", []):
        for found in row:
            if found["text"] == label:
                return str(found["callback_data"])
    raise AssertionError(f"no button {label!r} in {labels(screen)}")


def shown(chat: BotChat, chat_id: int, message_id: int) -> dict[str, Any]:
    """A message as its chat shows it now, after any edits."""
    message = chat.fake.chat_message(chat_id, message_id)
    assert message is not None, f"message {message_id} is gone from chat {chat_id}"
    return message


async def tap(
    chat: BotChat, user: TelegramUser, message_id: int, label: str, chat_id: int | None = None
) -> list[SentMessage]:
    """`user` taps the button `label` under a message as the chat shows it now."""
    screen = shown(chat, chat_id or user.id, message_id)
    data = button(screen, label)
    return await chat.send(callback(user, data, message_id=message_id, chat_id=chat_id))


def last_answer(chat: BotChat) -> dict[str, Any]:
    """The last answer to a button tap (the toast or alert the user sees)."""
    return chat.fake.callback_answers[-1]


async def survey_rows(db: Database) -> list[tuple[Any, ...]]:
    async with db.sessions() as session:
        rows = await session.execute(
            select(SurveyAnswer.visit_id, SurveyAnswer.csat, SurveyAnswer.nps)
            .add_columns(SurveyAnswer.comment, SurveyAnswer.step)
        )  # fmt: skip
        return [tuple(row) for row in rows]


async def complaints(db: Database) -> list[Complaint]:
    async with db.sessions() as session:
        return list(await session.scalars(select(Complaint).order_by(Complaint.id)))


async def open_survey(chat: BotChat, user: TelegramUser, visit: int) -> SentMessage:
    """The client follows the invitation's link: /start survey_<visit>."""
    [question] = await chat.send(command(user, "start", f"survey_{visit}"))
    return question


async def low_rating(chat: BotChat, visit: int) -> SentMessage:
    """Иван rates the visit 2 of 5: answers the staff alert the rating raised."""
    question = await open_survey(chat, IVAN, visit)
    [alert] = await tap(chat, IVAN, question.message_id, "2⭐")
    assert alert.chat_id == STAFF_CHAT
    return alert


# The client answers


async def test_a_low_rating_alerts_staff_at_once_and_the_comment_follows_the_alert(
    db: Database, clock: FakeClock
) -> None:
    client, visit = await ivan_with_visit(db)
    async with bot_chat(db, clock) as chat:
        question = await open_survey(chat, IVAN, visit)
        assert question.text == f"Ваш визит 23 ноября 2026 (Автосервис)\n\n{HOW_SATISFIED}"
        assert labels(question) == ["1⭐", "2⭐", "3⭐", "4⭐", "5⭐"]

        at_csat = await tap(chat, IVAN, question.message_id, "2⭐")
        nps = shown(chat, IVAN.id, question.message_id)
        assert "Ваша оценка: 2 из 5." in nps["text"]
        assert RECOMMEND in nps["text"]
        assert labels(nps) == [str(score) for score in range(11)]

        at_nps = await tap(chat, IVAN, question.message_id, "3")
        comment = shown(chat, IVAN.id, question.message_id)
        assert "Ваша оценка: 2 из 5. Рекомендация: 3 из 10." in comment["text"]
        assert ANYTHING_TO_ADD in comment["text"]
        assert labels(comment) == ["Пропустить"]

        at_comment = await chat.send(text(IVAN, "Машину отдали на два часа позже"))
        answered = shown(chat, IVAN.id, question.message_id)
        assert labels(answered) == []  # the skip button went with the comment

    [complaint] = await complaints(db)
    [alert] = at_csat
    assert alert.chat_id == STAFF_CHAT
    assert alert.text.splitlines() == [
        f"⚠️ <b>Жалоба №{complaint.id}</b>: низкая оценка визита",
        "Клиент: Смирнов Иван Петрович",
        f"Телефон: {IVAN_PHONE}",
        "Визит: 23.11.2026, Автосервис, 4\xa0500\xa0₽",
        "Оценки: удовлетворённость 2/5",
        "🆕 Новая",
    ]
    assert labels(alert) == ["Взять в работу"]
    assert at_nps == []  # the NPS is copied onto the complaint, staff are not told twice

    [thanks, follow_up] = at_comment
    assert thanks.chat_id == IVAN.id
    assert "Ваш комментарий: Машину отдали на два часа позже" in thanks.text
    assert THANKS in thanks.text
    assert MANAGER_WILL_CALL in thanks.text
    assert follow_up.chat_id == STAFF_CHAT
    assert follow_up.text == (
        f"💬 Жалоба №{complaint.id}, клиент добавляет: Машину отдали на два часа позже"
    )
    assert len(chat.to(STAFF_CHAT)) == 2

    assert await survey_rows(db) == [(visit, 2, 3, "Машину отдали на два часа позже", "done")]
    assert (complaint.client_id, complaint.visit_id, complaint.state) == (client, visit, "open")
    assert (complaint.csat, complaint.nps) == (2, 3)
    assert complaint.comment == "Машину отдали на два часа позже"


async def test_a_second_tap_on_the_old_keyboard_changes_nothing_and_shows_the_recorded_answer(
    db: Database, clock: FakeClock
) -> None:
    _, visit = await ivan_with_visit(db)
    async with bot_chat(db, clock) as chat:
        question = await open_survey(chat, IVAN, visit)
        first_keyboard = shown(chat, IVAN.id, question.message_id)
        await tap(chat, IVAN, question.message_id, "2⭐")
        await tap(chat, IVAN, question.message_id, "3")
        await tap(chat, IVAN, question.message_id, "Пропустить")

        # The client's Telegram still had the 1-5 keyboard drawn (a slow phone, a replay).
        late = SurveyTap(visit=visit, question="csat", score=5).pack()
        assert button(first_keyboard, "5⭐") == late
        sent = await chat.send(callback(IVAN, late, message_id=question.message_id))

        now = shown(chat, IVAN.id, question.message_id)
        answer = last_answer(chat)

    assert sent == []  # nothing to the client, nothing to the staff chat
    assert "Ваша оценка: 2 из 5. Рекомендация: 3 из 10." in now["text"]
    assert "5 из 5" not in now["text"]
    assert THANKS in now["text"]
    assert labels(now) == []  # no buttons left to tap
    assert answer.get("show_alert") in (None, "false")
    assert await survey_rows(db) == [(visit, 2, 3, None, "done")]
    assert len(await complaints(db)) == 1
    assert len(chat.to(STAFF_CHAT)) == 1


async def test_a_high_rating_finished_with_skip_opens_no_complaint_and_tells_staff_nothing(
    db: Database, clock: FakeClock
) -> None:
    _, visit = await ivan_with_visit(db)
    async with bot_chat(db, clock) as chat:
        question = await open_survey(chat, IVAN, visit)
        await tap(chat, IVAN, question.message_id, "5⭐")
        await tap(chat, IVAN, question.message_id, "10")
        await tap(chat, IVAN, question.message_id, "Пропустить")
        thanks = shown(chat, IVAN.id, question.message_id)

    assert "Ваша оценка: 5 из 5. Рекомендация: 10 из 10." in thanks["text"]
    assert THANKS in thanks["text"]
    assert "менеджер" not in thanks["text"]
    assert chat.to(STAFF_CHAT) == []
    assert await complaints(db) == []
    assert await survey_rows(db) == [(visit, 5, 10, None, "done")]


async def test_someone_elses_visit_by_the_link_is_refused_and_shows_nothing_of_it(
    db: Database, clock: FakeClock
) -> None:
    await ivan_with_visit(db)
    petr = await add_client(db, phone="+79161234567", telegram_id=PETR.id, first_name="Пётр")
    petrs_visit = await visit_of(db, petr, "12000")
    async with bot_chat(db, clock) as chat:
        refusal = await open_survey(chat, IVAN, petrs_visit)

    assert refusal.text == NOT_YOURS
    assert labels(refusal) == []
    assert await survey_rows(db) == []
    assert chat.to(STAFF_CHAT) == []


async def test_a_forged_tap_on_someone_elses_visit_is_refused_and_writes_nothing(
    db: Database, clock: FakeClock
) -> None:
    _, ivans_visit = await ivan_with_visit(db)
    petr = await add_client(db, phone="+79161234567", telegram_id=PETR.id, first_name="Пётр")
    petrs_visit = await visit_of(db, petr, "12000")
    async with bot_chat(db, clock) as chat:
        question = await open_survey(chat, IVAN, ivans_visit)
        forged = SurveyTap(visit=petrs_visit, question="csat", score=1).pack()
        sent = await chat.send(callback(IVAN, forged, message_id=question.message_id))
        answer = last_answer(chat)
        still = shown(chat, IVAN.id, question.message_id)

    assert sent == []
    assert (answer.get("text"), answer.get("show_alert")) == (NOT_YOURS, "true")
    assert HOW_SATISFIED in still["text"]  # Иван's own survey is untouched
    assert await survey_rows(db) == []
    assert await complaints(db) == []
    assert chat.to(STAFF_CHAT) == []


# The invitation


async def test_the_invitation_arrives_with_the_1_to_5_buttons_and_a_tap_on_it_counts(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    client, visit = await ivan_with_visit(db)
    async with bot_chat(
        db, clock, surveys={"channels": ["telegram"]}, outbox={"dir": str(tmp_path)}
    ) as chat:
        settings = chat.app.settings
        invites = survey_invites(settings, template_library(settings))
        assert invites is not None
        async with db.sessions() as session, session.begin():
            branch = await session.scalar(select(Branch.id))
            queued = await invite_to_survey(
                session,
                invites,
                visit_id=visit,
                client_id=client,
                visited_on=VISIT_DAY,
                branch_id=branch,
                now=clock(),
                today=clock().date(),
            )
        assert queued.scheduled_at is not None
        clock.set(queued.scheduled_at + timedelta(minutes=1))
        dispatcher = Dispatcher(
            db.sessions, build_channels(settings), dispatch_policy(settings), clock
        )
        try:
            assert await dispatcher.drain() == 1
        finally:
            await dispatcher.close()

        [invitation] = chat.to(IVAN.id)
        assert "Пройти опрос" in invitation.text
        assert f"start=survey_{visit}" in invitation.text
        assert labels(invitation) == ["1⭐", "2⭐", "3⭐", "4⭐", "5⭐"]

        await chat.send(callback(IVAN, button(invitation, "4⭐"), message_id=invitation.message_id))
        now = shown(chat, IVAN.id, invitation.message_id)

    async with db.sessions() as session:
        state = await session.scalar(select(Message.state))
    assert state == "sent"
    assert "Ваша оценка: 4 из 5." in now["text"]
    assert RECOMMEND in now["text"]
    assert await survey_rows(db) == [(visit, 4, None, None, "nps")]


# Staff and the complaint


async def test_an_operator_takes_the_complaint_and_the_alert_says_who_has_it(
    db: Database, clock: FakeClock
) -> None:
    _, visit = await ivan_with_visit(db)
    async with bot_chat(db, clock) as chat:
        alert = await low_rating(chat, visit)
        sent = await tap(chat, OLEG, alert.message_id, "Взять в работу", chat_id=STAFF_CHAT)
        now = shown(chat, STAFF_CHAT, alert.message_id)

    assert sent == []  # the alert itself changes; nothing new is posted
    assert now["text"].splitlines()[-1] == "🛠 В работе у: Олег Сидоров"
    assert labels(now) == ["Решено"]
    [complaint] = await complaints(db)
    assert (complaint.state, complaint.taken_by, complaint.taken_at) == (
        "taken",
        "Олег Сидоров",
        clock(),
    )


async def test_someone_not_on_staff_cannot_take_a_complaint(db: Database, clock: FakeClock) -> None:
    _, visit = await ivan_with_visit(db)
    async with bot_chat(db, clock) as chat:
        alert = await low_rating(chat, visit)
        before = shown(chat, STAFF_CHAT, alert.message_id)
        sent = await tap(chat, NOBODY, alert.message_id, "Взять в работу", chat_id=STAFF_CHAT)
        answer = last_answer(chat)
        after = shown(chat, STAFF_CHAT, alert.message_id)

    assert sent == []
    assert (answer.get("text"), answer.get("show_alert")) == (
        "Ваша роль этого не позволяет.",
        "true",
    )
    assert after == before
    assert labels(after) == ["Взять в работу"]
    [complaint] = await complaints(db)
    assert (complaint.state, complaint.taken_by) == ("open", None)


async def test_a_complaint_already_taken_tells_the_next_taker_who_has_it(
    db: Database, clock: FakeClock
) -> None:
    _, visit = await ivan_with_visit(db)
    async with bot_chat(db, clock) as chat:
        alert = await low_rating(chat, visit)
        take = button(alert, "Взять в работу")  # Анна's Telegram still shows the open alert
        await tap(chat, OLEG, alert.message_id, "Взять в работу", chat_id=STAFF_CHAT)
        sent = await chat.send(
            callback(ANNA, take, message_id=alert.message_id, chat_id=STAFF_CHAT)
        )
        answer = last_answer(chat)
        now = shown(chat, STAFF_CHAT, alert.message_id)

    [complaint] = await complaints(db)
    assert sent == []
    assert (answer.get("text"), answer.get("show_alert")) == (
        f"Жалобу №{complaint.id} уже взял(а) в работу Олег Сидоров.",
        "true",
    )
    assert now["text"].splitlines()[-1] == "🛠 В работе у: Олег Сидоров"
    assert (complaint.state, complaint.taken_by) == ("taken", "Олег Сидоров")


async def test_the_operator_resolves_the_complaint_with_a_note_and_the_chat_sees_how(
    db: Database, clock: FakeClock
) -> None:
    _, visit = await ivan_with_visit(db)
    note = "Позвонили, извинились, скидка 10% на следующий визит"
    async with bot_chat(db, clock) as chat:
        alert = await low_rating(chat, visit)
        await tap(chat, OLEG, alert.message_id, "Взять в работу", chat_id=STAFF_CHAT)
        clock.advance(hours=2)
        [question] = await tap(chat, OLEG, alert.message_id, "Решено", chat_id=STAFF_CHAT)
        [resolved] = await chat.send(text(OLEG, note, chat_id=STAFF_CHAT))

    [complaint] = await complaints(db)
    assert question.chat_id == STAFF_CHAT
    assert question.text == f"Олег, как решена жалоба №{complaint.id}? Ответьте одним сообщением."
    assert resolved.chat_id == STAFF_CHAT
    assert resolved.text.splitlines()[-1] == f"✅ Решено (Олег Сидоров): {note}"
    assert labels(resolved) == []
    assert (complaint.state, complaint.resolved_by, complaint.resolution) == (
        "resolved",
        "Олег Сидоров",
        note,
    )
    assert complaint.resolved_at == clock()


async def test_back_by_the_link_at_the_comment_question_the_comment_written_counts(
    db: Database, clock: FakeClock
) -> None:
    _, visit = await ivan_with_visit(db)
    async with bot_chat(db, clock) as chat:
        question = await open_survey(chat, IVAN, visit)
        await tap(chat, IVAN, question.message_id, "5⭐")
        await tap(chat, IVAN, question.message_id, "9")
        # Later Иван opens the invitation's link again: the bot asks for the comment.
        again = await open_survey(chat, IVAN, visit)
        assert ANYTHING_TO_ADD in again.text
        [reply] = await chat.send(text(IVAN, "Всё отлично, спасибо мастеру Сергею"))

    assert THANKS in reply.text
    assert "Ваш комментарий: Всё отлично, спасибо мастеру Сергею" in reply.text
    assert await survey_rows(db) == [(visit, 5, 9, "Всё отлично, спасибо мастеру Сергею", "done")]


async def test_once_resolved_the_alert_itself_says_so_and_offers_no_more_buttons(
    db: Database, clock: FakeClock
) -> None:
    _, visit = await ivan_with_visit(db)
    note = "Позвонили, извинились, скидка 10% на следующий визит"
    async with bot_chat(db, clock) as chat:
        alert = await low_rating(chat, visit)
        await tap(chat, OLEG, alert.message_id, "Взять в работу", chat_id=STAFF_CHAT)
        await tap(chat, OLEG, alert.message_id, "Решено", chat_id=STAFF_CHAT)
        await chat.send(text(OLEG, note, chat_id=STAFF_CHAT))
        now = shown(chat, STAFF_CHAT, alert.message_id)

    # Otherwise Анна, seeing "В работе у" and "Решено", is asked for a note again and only
    # after writing it is told the complaint is already resolved.
    assert now["text"].splitlines()[-1] == f"✅ Решено (Олег Сидоров): {note}"
    assert labels(now) == []

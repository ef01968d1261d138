"""The staff chat's booking desk through the real Dispatcher and the local Bot API server:
a day's bookings with arrived / no-show buttons, booking a client by phone, and the calls
register. The clock's NOW is 2026-11-24 06:00 UTC: 09:00 on a Tuesday in Moscow."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from autoloyal.rules import booking_rules
from bot.desk_callbacks import DeskAttend
from crm.booking import BookingRequest, book
from crm.branches import sync_branches
from crm.clock import Moment
from storage.booking import Booking, InboundContact
from storage.models import Client
from storage.outbox import Message
from tests.support.botapi import SentMessage, html_visible_text
from tests.support.botchat import ADMIN, OPERATOR, STAFF_CHAT, STRANGER, BotChat, bot_chat
from tests.support.clock import FakeClock
from tests.support.databases import Database
from tests.support.messaging import add_client
from tests.support.telegram_updates import TelegramUser, callback, command

MOSCOW = ZoneInfo("Europe/Moscow")
ANNA = TelegramUser(ADMIN, "Анна", "Петрова")
OLEG = TelegramUser(OPERATOR, "Олег", "Сидоров")
NOBODY = TelegramUser(STRANGER, "Вася")
IVAN_PHONE = "+79035254560"
PETR_PHONE = "+79035254561"
WEDNESDAY = date(2026, 11, 25)
TWO_BRANCHES: dict[str, Any] = {
    "branch": [{"code": "north", "name": "Север"}, {"code": "south", "name": "Юг"}],
    "staff": [
        {"telegram_id": ADMIN, "name": "Анна Петрова", "role": "admin"},
        {"telegram_id": OPERATOR, "name": "Олег Сидоров", "role": "operator", "branch": "south"},
    ],
}


def at(day: date, hh: int, mm: int = 0) -> datetime:
    return datetime.combine(day, time(hh, mm), MOSCOW).astimezone(UTC)


def keyboard(screen: Mapping[str, Any] | SentMessage) -> list[tuple[str, str]]:
    markup = screen.reply_markup if isinstance(screen, SentMessage) else screen.get("reply_markup")
    rows = (markup or {}).get("inline_keyboard", [])
    return [(b["text"], b.get("callback_data", "")) for row in rows for b in row]


def labels(screen: Mapping[str, Any] | SentMessage) -> list[str]:
    return [label for label, _ in keyboard(screen)]


def lines(screen: Mapping[str, Any] | SentMessage) -> list[str]:
    """The text's lines as the reader sees them (no HTML tags)."""
    raw = screen.text if isinstance(screen, SentMessage) else screen.get("text", "")
    return html_visible_text(raw or "").splitlines()


def shown(chat: BotChat, message_id: int) -> dict[str, Any]:
    message = chat.fake.chat_message(STAFF_CHAT, message_id)
    assert message is not None
    return message


async def tap(chat: BotChat, user: TelegramUser, message_id: int, label: str) -> dict[str, Any]:
    """`user` taps `label` under the staff chat's message; answers the message as it is now."""
    data = dict(keyboard(shown(chat, message_id))).get(label)
    assert data is not None, f"no button {label!r} in {labels(shown(chat, message_id))}"
    await chat.send(callback(user, data, message_id=message_id, chat_id=STAFF_CHAT))
    return shown(chat, message_id)


async def say(chat: BotChat, user: TelegramUser, name: str, args: str = "") -> list[SentMessage]:
    return await chat.send(command(user, name, args, chat_id=STAFF_CHAT))


def last_answer(chat: BotChat) -> dict[str, Any]:
    return chat.fake.callback_answers[-1]


async def seed_booking(
    db: Database,
    chat: BotChat,
    clock: FakeClock,
    client: int,
    start: datetime,
    service: str = "diagnostics",
    branch: str | None = None,
) -> int:
    rules = booking_rules(chat.app.settings)
    request = BookingRequest(client, service, start, "bot", branch=branch)
    async with db.sessions() as session, session.begin():
        made = await book(session, rules, request, Moment.of(clock, MOSCOW), confirmed=True)
    return made.id


async def states(db: Database) -> dict[int, tuple[str, str | None]]:
    async with db.sessions() as session:
        rows = await session.execute(select(Booking.id, Booking.state, Booking.actor))
        return {id_: (state, actor) for id_, state, actor in rows}


async def contacts(db: Database) -> list[InboundContact]:
    async with db.sessions() as session:
        return list(await session.scalars(select(InboundContact).order_by(InboundContact.id)))


async def two_bookings(db: Database, chat: BotChat, clock: FakeClock) -> tuple[int, int]:
    ivan = await add_client(db, phone=IVAN_PHONE)
    petr = await add_client(db, phone=PETR_PHONE, first_name="Пётр", middle_name="Ильич")
    first = await seed_booking(db, chat, clock, ivan, at(WEDNESDAY, 10))
    second = await seed_booking(db, chat, clock, petr, at(WEDNESDAY, 12), "maintenance")
    return first, second


# ---------------------------------------------------------------- /bookings


async def test_a_days_bookings_are_listed_and_marked_arrived_and_no_show(
    db: Database, clock: FakeClock
) -> None:
    async with bot_chat(db, clock) as chat:
        first, second = await two_bookings(db, chat, clock)
        [sheet] = await say(chat, OLEG, "bookings", "25.11")
        assert lines(sheet) == [
            "📅 Записи: среда, 25 ноября 2026",
            "10:00 · Смирнов Иван Петрович · +79035254560 · Диагностика — подтверждена",
            "12:00 · Смирнов Пётр Ильич · +79035254561 · Техническое обслуживание — подтверждена",
        ]
        assert labels(sheet) == [
            "✅ Приехал: 10:00 Смирнов",
            "❌ Не приехал: 10:00 Смирнов",
            "✅ Приехал: 12:00 Смирнов",
            "❌ Не приехал: 12:00 Смирнов",
            "◀ 24 нояб.",
            "26 нояб. ▶",
        ]
        # The day before: nobody can be marked a no-show yet.
        await tap(chat, OLEG, sheet.message_id, "❌ Не приехал: 12:00 Смирнов")
        early = last_answer(chat)
        assert (early.get("text"), early.get("show_alert")) == (
            "Приезд отмечают в день записи, не раньше.",
            "true",
        )
        assert await states(db) == {first: ("confirmed", None), second: ("confirmed", None)}

        clock.set(at(WEDNESDAY, 10, 5))
        await tap(chat, OLEG, sheet.message_id, "✅ Приехал: 10:00 Смирнов")
        clock.set(at(WEDNESDAY, 13))
        now = await tap(chat, OLEG, sheet.message_id, "❌ Не приехал: 12:00 Смирнов")

    assert await states(db) == {
        first: ("arrived", "Олег Сидоров"),
        second: ("no_show", "Олег Сидоров"),
    }
    assert lines(now)[1:] == [
        "10:00 · Смирнов Иван Петрович · +79035254560 · Диагностика — приехал",
        "12:00 · Смирнов Пётр Ильич · +79035254561 · Техническое обслуживание — не приехал",
    ]
    assert labels(now) == ["◀ 24 нояб.", "26 нояб. ▶"]


async def test_the_next_day_button_shows_that_day(db: Database, clock: FakeClock) -> None:
    async with bot_chat(db, clock) as chat:
        await two_bookings(db, chat, clock)
        [sheet] = await say(chat, ANNA, "bookings")
        assert lines(sheet) == ["📅 Записи: вторник, 24 ноября 2026", "Нет записей."]
        now = await tap(chat, ANNA, sheet.message_id, "25 нояб. ▶")
    assert len(lines(now)) == 3


async def test_a_bad_date_gets_one_line_saying_how_to_write_it(
    db: Database, clock: FakeClock
) -> None:
    async with bot_chat(db, clock) as chat:
        [answer] = await say(chat, OLEG, "bookings", "32.13")
    assert lines(answer) == [
        "Напишите дату так: /bookings 25.11, /bookings 25.11.2026 или /bookings 2026-11-25."
    ]


async def test_someone_not_on_staff_gets_nothing_and_marks_nothing(
    db: Database, clock: FakeClock
) -> None:
    async with bot_chat(db, clock) as chat:
        first, _ = await two_bookings(db, chat, clock)
        assert await say(chat, NOBODY, "bookings", "25.11") == []
        assert await say(chat, NOBODY, "book", IVAN_PHONE) == []
        assert await say(chat, NOBODY, "call", IVAN_PHONE) == []
        clock.set(at(WEDNESDAY, 10, 5))
        forged = DeskAttend(booking=first, action="arrive", day=WEDNESDAY.isoformat()).pack()
        await chat.send(callback(NOBODY, forged, message_id=1, chat_id=STAFF_CHAT))
        answer = last_answer(chat)
    assert answer.get("text") == "Ваша роль этого не позволяет."
    assert (await states(db))[first] == ("confirmed", None)


async def test_an_operator_of_another_branch_neither_sees_nor_marks_its_bookings(
    db: Database, clock: FakeClock
) -> None:
    async with bot_chat(db, clock, **TWO_BRANCHES) as chat:
        async with db.sessions() as session, session.begin():
            settings = chat.app.settings
            await sync_branches(session, settings.branch, company_name="Север", now=clock())
        ivan = await add_client(db, phone=IVAN_PHONE)
        north = await seed_booking(db, chat, clock, ivan, at(WEDNESDAY, 10), branch="north")
        [own] = await say(chat, OLEG, "bookings", "2026-11-25")
        [every] = await say(chat, ANNA, "bookings", "2026-11-25")
        clock.set(at(WEDNESDAY, 10, 5))
        forged = DeskAttend(booking=north, action="arrive", day=WEDNESDAY.isoformat()).pack()
        await chat.send(callback(OLEG, forged, message_id=own.message_id, chat_id=STAFF_CHAT))
        answer = last_answer(chat)

    assert lines(own)[1:] == ["Нет записей."]
    assert lines(every)[1:] == [
        "",
        "Север",
        "10:00 · Смирнов Иван Петрович · +79035254560 · Диагностика — подтверждена",
        "",
        "Юг",
        "Нет записей.",
    ]
    assert answer.get("text") == "Запись не найдена или она не вашего филиала."
    assert (await states(db))[north] == ("confirmed", None)


# ---------------------------------------------------------------- /book PHONE


async def book_wednesday_ten(
    chat: BotChat, message_id: int, user: TelegramUser = OLEG
) -> dict[str, Any]:
    """Diagnostics on Wednesday at 10:00, up to the confirmation."""
    days = await tap(chat, user, message_id, "Диагностика")
    assert labels(days)[:3] == ["вт 24 нояб.", "ср 25 нояб.", "чт 26 нояб."]
    assert len(labels(days)) == 11  # ten free days and "Отмена"
    times = await tap(chat, user, message_id, "ср 25 нояб.")
    assert labels(times)[:3] == ["09:00", "09:30", "10:00"]
    return await tap(chat, user, message_id, "10:00")


async def test_staff_book_a_known_client_by_phone_and_the_confirmation_is_queued(
    db: Database, clock: FakeClock
) -> None:
    ivan = await add_client(db, phone=IVAN_PHONE)
    async with bot_chat(db, clock) as chat:
        [services] = await say(chat, OLEG, "book", "8 (903) 525-45-60")
        assert lines(services)[0] == "📝 Запись: Смирнов Иван Петрович, +79035254560"
        confirm = await book_wednesday_ten(chat, services.message_id)
        assert lines(confirm)[1:4] == [
            "Услуга: Диагностика",
            "Филиал: Автоцентр Север",
            "Время: среда, 25 ноября, 10:00",
        ]
        done = await tap(chat, OLEG, services.message_id, "✅ Записать")

    assert lines(done)[0].startswith("✅ Записан, запись №")
    async with db.sessions() as session:
        [made] = (await session.scalars(select(Booking))).all()
        queued = (await session.scalars(select(Message))).all()
    assert (made.client_id, made.starts_at, made.state, made.source, made.actor) == (
        ivan,
        at(WEDNESDAY, 10),
        "confirmed",
        "staff",
        "Олег Сидоров",
    )
    assert [(m.template, m.idempotency_key) for m in queued] == [
        ("booking_confirmation", f"booking:{made.id}:confirmed")
    ]
    [contact] = await contacts(db)
    assert (
        contact.channel,
        contact.purpose,
        contact.outcome,
        contact.staff,
        contact.booking_id,
        contact.client_id,
    ) == ("call", "service", "booked", "Олег Сидоров", made.id, ivan)


async def test_a_new_number_becomes_a_potential_client_once_staff_say_so(
    db: Database, clock: FakeClock
) -> None:
    async with bot_chat(db, clock) as chat:
        [ask] = await say(chat, OLEG, "book", "+7 916 000-11-22")
        assert lines(ask) == [
            "Клиента с телефоном +79160001122 нет. Создать нового (потенциального)?"
        ]
        await tap(chat, OLEG, ask.message_id, "Да, создать")
        await book_wednesday_ten(chat, ask.message_id)
        await tap(chat, OLEG, ask.message_id, "✅ Записать")

    async with db.sessions() as session:
        [client] = (await session.scalars(select(Client))).all()
        [made] = (await session.scalars(select(Booking))).all()
        [queued] = (await session.scalars(select(Message))).all()
    assert (client.phone, client.source) == ("+79160001122", "contact")
    assert (made.client_id, made.state) == (client.id, "confirmed")
    assert (queued.template, queued.idempotency_key, queued.client_id) == (
        "booking_confirmation",
        f"booking:{made.id}:confirmed",
        client.id,
    )


async def test_a_lost_race_offers_the_nearest_free_times(db: Database, clock: FakeClock) -> None:
    ivan = await add_client(db, phone=IVAN_PHONE)
    petr = await add_client(db, phone=PETR_PHONE, first_name="Пётр")
    async with bot_chat(db, clock) as chat:
        [services] = await say(chat, OLEG, "book", IVAN_PHONE)
        await book_wednesday_ten(chat, services.message_id)
        await seed_booking(db, chat, clock, petr, at(WEDNESDAY, 10))  # quicker, by the bot
        taken = await tap(chat, OLEG, services.message_id, "✅ Записать")
        assert "⚠️ Это время только что заняли." in lines(taken)
        assert "25.11 11:00" in labels(taken)
        assert "25.11 10:00" not in labels(taken)
        await tap(chat, OLEG, services.message_id, "25.11 11:00")
        await tap(chat, OLEG, services.message_id, "✅ Записать")

    async with db.sessions() as session:
        mine = await session.scalar(select(Booking).where(Booking.client_id == ivan))
    assert mine is not None
    assert mine.starts_at == at(WEDNESDAY, 11)


async def test_a_bad_phone_gets_one_line_saying_how_to_write_it(
    db: Database, clock: FakeClock
) -> None:
    async with bot_chat(db, clock) as chat:
        [book_answer] = await say(chat, OLEG, "book", "12345")
        [call_answer] = await say(chat, OLEG, "call")
    assert lines(book_answer) == [
        "Напишите телефон так: /book +7 903 525-45-60 или /book 89035254560."
    ]
    assert lines(call_answer) == [
        "Напишите телефон так: /call +7 903 525-45-60 или /call 89035254560."
    ]


async def test_someone_else_cannot_tap_through_an_operators_booking(
    db: Database, clock: FakeClock
) -> None:
    await add_client(db, phone=IVAN_PHONE)
    async with bot_chat(db, clock) as chat:
        [services] = await say(chat, OLEG, "book", IVAN_PHONE)
        after = await tap(chat, ANNA, services.message_id, "Диагностика")
        answer = last_answer(chat)
    assert answer.get("text") == "Этот разговор уже закончен или он не ваш."
    assert lines(after) == lines(services)


# ---------------------------------------------------------------- /call PHONE


async def test_a_call_is_recorded_step_by_step(db: Database, clock: FakeClock) -> None:
    ivan = await add_client(db, phone=IVAN_PHONE)
    async with bot_chat(db, clock) as chat:
        [call] = await say(chat, OLEG, "call", "89035254560")
        assert lines(call)[0] == "📞 Звонок: Смирнов Иван Петрович, +79035254560"
        assert labels(call) == [
            "Сервис", "Вопрос по ремонту", "Продажи", "Жалоба", "Другое", "Отмена",
        ]  # fmt: skip
        sources = await tap(chat, OLEG, call.message_id, "Сервис")
        assert labels(sources)[-2:] == ["Пропустить", "Отмена"]
        outcomes = await tap(chat, OLEG, call.message_id, "Интернет-поиск")
        assert labels(outcomes) == ["Записан", "Не записан", "Консультация", "Отмена"]
        saved = await tap(chat, OLEG, call.message_id, "Консультация")

    assert lines(saved)[0] == "✅ Звонок записан"
    [contact] = await contacts(db)
    assert (
        contact.channel,
        contact.purpose,
        contact.source,
        contact.outcome,
        contact.staff,
        contact.client_id,
        contact.phone,
    ) == ("call", "service", "Интернет-поиск", "information", "Олег Сидоров", ivan, IVAN_PHONE)


async def test_a_call_from_a_new_number_with_no_source_is_recorded(
    db: Database, clock: FakeClock
) -> None:
    async with bot_chat(db, clock) as chat:
        [call] = await say(chat, ANNA, "call", "+7 916 000-11-22")
        assert lines(call)[0] == "📞 Звонок: +79160001122 (клиента с этим номером нет)"
        await tap(chat, ANNA, call.message_id, "Продажи")
        await tap(chat, ANNA, call.message_id, "Пропустить")
        await tap(chat, ANNA, call.message_id, "Не записан")

    [contact] = await contacts(db)
    assert (contact.purpose, contact.source, contact.outcome, contact.staff) == (
        "sales",
        None,
        "not_booked",
        "Анна Петрова",
    )
    assert contact.client_id is not None  # a potential client, made from the number


async def test_a_booked_call_goes_on_to_book_and_is_recorded_once_with_the_booking(
    db: Database, clock: FakeClock
) -> None:
    ivan = await add_client(db, phone=IVAN_PHONE)
    async with bot_chat(db, clock) as chat:
        [call] = await say(chat, OLEG, "call", IVAN_PHONE)
        await tap(chat, OLEG, call.message_id, "Сервис")
        await tap(chat, OLEG, call.message_id, "Рекомендация знакомых")
        offer = await tap(chat, OLEG, call.message_id, "Записан")
        assert labels(offer) == ["📝 Записать сейчас", "Записан в другом месте: сохранить"]
        await tap(chat, OLEG, call.message_id, "📝 Записать сейчас")
        await book_wednesday_ten(chat, call.message_id)
        await tap(chat, OLEG, call.message_id, "✅ Записать")

    async with db.sessions() as session:
        [made] = (await session.scalars(select(Booking))).all()
    [contact] = await contacts(db)
    assert (contact.source, contact.outcome, contact.booking_id, contact.client_id) == (
        "Рекомендация знакомых",
        "booked",
        made.id,
        ivan,
    )

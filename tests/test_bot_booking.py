"""Booking a service in the client bot, and the booking card in the staff chat: a client books
step by step in one message, staff confirm, decline or move it from the card, and a client
moves or cancels their own booking."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from autoloyal.rules import booking_rules
from bot.callbacks import BookCar, MyBooking, StaffBooking
from crm.booking import BookingRequest, BookingView, book
from crm.branches import sync_branches
from crm.clock import Moment
from storage.booking import Booking, InboundContact
from storage.models import Car
from storage.outbox import Message
from tests.support.botapi import SentMessage
from tests.support.botchat import ADMIN, OPERATOR, STAFF_CHAT, STRANGER, BotChat, bot_chat
from tests.support.clock import FakeClock
from tests.support.databases import Database
from tests.support.messaging import add_client
from tests.support.telegram_updates import TelegramUser, callback, command, text

IVAN = TelegramUser(555, "Иван")
PETR = TelegramUser(556, "Пётр")
ANNA = TelegramUser(ADMIN, "Анна", "Петрова")
OLEG = TelegramUser(OPERATOR, "Олег", "Сидоров")
SOUTH_OPERATOR = TelegramUser(9004, "Семён")
NOBODY = TelegramUser(STRANGER, "Вася")
IVAN_PHONE = "+79035254560"
PETR_PHONE = "+79035254561"

REQUESTED = "📨 Заявка отправлена, мы подтвердим запись."
BOOKED = "✅ Вы записаны. Ждём вас!"
NOT_YOURS = "Эта кнопка не для вас или уже не работает."
CARD_BUTTONS = ["✅ Подтвердить", "🔁 Перенести", "❌ Отклонить"]
TWO_BRANCHES: dict[str, Any] = {
    "branch": [
        {"code": "north", "name": "Север", "address": "ул. Ленина, 1"},
        {"code": "south", "name": "Юг", "address": "ул. Мира, 5"},
    ],
    "staff": [
        {"telegram_id": ADMIN, "name": "Анна Петрова", "role": "admin"},
        {"telegram_id": OPERATOR, "name": "Олег Сидоров", "role": "operator", "branch": "north"},
        {"telegram_id": 9004, "name": "Семён Юдин", "role": "operator", "branch": "south"},
    ],
}


# The world


async def ivan(db: Database, clock: FakeClock, *, car: bool = True) -> tuple[int, int | None]:
    """Иван, linked to the bot, with his Kia (or no car): (client, car)."""
    client = await add_client(db, phone=IVAN_PHONE, telegram_id=IVAN.id)
    if not car:
        return client, None
    return client, await add_car(db, client, clock)


async def add_car(db: Database, client: int, clock: FakeClock, plate: str = "А123ВС77") -> int:
    async with db.sessions() as session, session.begin():
        row = Car(
            client_id=client,
            make="Kia",
            model="Rio",
            plate=plate,
            created_at=clock(),
            updated_at=clock(),
        )
        session.add(row)
        await session.flush()
        return row.id


async def booked_through_crm(
    chat: BotChat,
    client: int,
    local: str,
    *,
    branch: str | None = None,
    service: str = "maintenance",
) -> BookingView:
    """A booking made through crm/ directly, as the API or another door would: `local` is
    the branch's wall clock, "2026-11-25 10:00"."""
    settings = chat.app.settings
    rules = booking_rules(settings)
    hours = rules.branch(branch)
    start = datetime.fromisoformat(local).replace(tzinfo=hours.zone).astimezone(UTC)
    request = BookingRequest(client, service, start, "api", branch=hours.code)
    async with chat.app.sessions() as session, session.begin():
        return await book(session, rules, request, Moment.of(chat.app.clock, settings.company.tz))


async def sync(chat: BotChat) -> None:
    """The configured branches exist (the bot role does not migrate)."""
    async with chat.app.sessions() as session, session.begin():
        await sync_branches(
            session, chat.app.settings.branch, company_name="Автоцентр Север", now=chat.app.clock()
        )


async def bookings(db: Database) -> list[Booking]:
    async with db.sessions() as session:
        return list(await session.scalars(select(Booking).order_by(Booking.id)))


async def contacts(db: Database) -> list[InboundContact]:
    async with db.sessions() as session:
        return list(await session.scalars(select(InboundContact).order_by(InboundContact.id)))


async def outbox(db: Database) -> list[tuple[str, str]]:
    async with db.sessions() as session:
        rows = await session.execute(select(Message.template, Message.idempotency_key))
        return [(template, key) for template, key in rows]


# The chat


def labels(screen: dict[str, Any] | SentMessage) -> list[str]:
    markup = screen.reply_markup if isinstance(screen, SentMessage) else screen.get("reply_markup")
    return [button["text"] for row in (markup or {}).get("inline_keyboard", []) for button in row]


def button(screen: dict[str, Any] | SentMessage, label: str) -> str:
    markup = screen.reply_markup if isinstance(screen, SentMessage) else screen.get("reply_markup")
    for row in (markup or {}).get("inline_keyboard", []):
        for found in row:
            if found["text"] == label:
                data = str(found["callback_data"])
                assert len(data.encode()) <= 64
                return data
    raise AssertionError(f"no button {label!r} in {labels(screen)}")


def shown(chat: BotChat, chat_id: int, message_id: int) -> dict[str, Any]:
    message = chat.fake.chat_message(chat_id, message_id)
    assert message is not None, f"message {message_id} is gone from chat {chat_id}"
    return message


async def tap(
    chat: BotChat, user: TelegramUser, message_id: int, label: str, chat_id: int | None = None
) -> list[SentMessage]:
    screen = shown(chat, chat_id or user.id, message_id)
    data = button(screen, label)
    return await chat.send(callback(user, data, message_id=message_id, chat_id=chat_id))


def last_answer(chat: BotChat) -> dict[str, Any]:
    return chat.fake.callback_answers[-1]


async def to_confirm_screen(
    chat: BotChat, *, day: str = "25", time: str = "10:00", comment: str | None = None
) -> int:
    """Иван (with his Kia) goes from /book to the confirm screen: answers its message id."""
    [entry] = await chat.send(command(IVAN, "book"))
    await tap(chat, IVAN, entry.message_id, "🚗 Kia Rio А123ВС77")
    await tap(chat, IVAN, entry.message_id, "Техническое обслуживание · 2 ч")
    await tap(chat, IVAN, entry.message_id, day)
    await tap(chat, IVAN, entry.message_id, time)
    if comment is None:
        await tap(chat, IVAN, entry.message_id, "Без комментария")
        return entry.message_id
    [confirm] = await chat.send(text(IVAN, comment))
    return confirm.message_id


# The client books


async def test_a_client_books_step_by_step_and_staff_confirm_the_request_from_the_card(
    db: Database, clock: FakeClock
) -> None:
    client, car = await ivan(db, clock)
    async with bot_chat(db, clock) as chat:
        [entry] = await chat.send(command(IVAN, "book"))
        assert entry.text == "📅 Запись на сервис. Для какого автомобиля?"
        assert labels(entry) == ["🚗 Kia Rio А123ВС77", "Другой автомобиль", "✖️ Отмена"]

        await tap(chat, IVAN, entry.message_id, "🚗 Kia Rio А123ВС77")
        services = shown(chat, IVAN.id, entry.message_id)
        assert "Какая услуга нужна?" in services["text"]
        assert labels(services)[:2] == ["Техническое обслуживание · 2 ч", "Диагностика · 1 ч"]

        await tap(chat, IVAN, entry.message_id, "Техническое обслуживание · 2 ч")
        calendar = shown(chat, IVAN.id, entry.message_id)
        assert "Выберите день (Ноябрь 2026):" in calendar["text"]
        cells = labels(calendar)
        assert cells[:7] == ["Пн", "Вт", "Ср", "Чт", "Пт", "Сб", "Вс"]
        # The week of the 23rd: Monday is past, Tuesday 24 to Saturday 28 free, Sunday shut.
        assert cells[7:14] == ["·", "24", "25", "26", "27", "28", "·"]
        assert "Декабрь 2026 ›" in cells

        await tap(chat, IVAN, entry.message_id, "25")
        times = shown(chat, IVAN.id, entry.message_id)
        assert "среда, 25 ноября: выберите время." in times["text"]
        assert labels(times)[:3] == ["09:00", "09:30", "10:00"]
        assert "16:00" in labels(times)
        assert "16:30" not in labels(times)  # two hours do not fit before 18:00

        await tap(chat, IVAN, entry.message_id, "10:00")
        [confirm] = await chat.send(text(IVAN, "Стучит подвеска"))
        assert labels(shown(chat, IVAN.id, entry.message_id)) == []  # the question's buttons went
        assert confirm.text.splitlines() == [
            "🚗 Автомобиль: Kia Rio А123ВС77",
            "🔧 Услуга: Техническое обслуживание (2 ч)",
            "📍 Филиал: Автоцентр Север, Москва, ул. Ленина, 1",
            "📅 Когда: среда, 25 ноября в 10:00",
            "💬 Комментарий: Стучит подвеска",
            "",
            "Проверьте и подтвердите.",
        ]
        [card] = await tap(chat, IVAN, confirm.message_id, "✅ Записаться")
        done = shown(chat, IVAN.id, confirm.message_id)
        assert done["text"].startswith(REQUESTED)
        assert labels(done) == []

        [made] = await bookings(db)
        assert card.chat_id == STAFF_CHAT
        assert card.text.splitlines() == [
            f"📅 <b>Запись №{made.id}</b>",
            "Клиент: Смирнов Иван Петрович",
            f"Телефон: {IVAN_PHONE}",
            "Автомобиль: Kia Rio А123ВС77",
            "Услуга: Техническое обслуживание",
            "Филиал: Автоцентр Север",
            "Когда: 25.11.2026 10:00",
            "Комментарий: Стучит подвеска",
            "🆕 Ждёт подтверждения",
        ]
        assert labels(card) == CARD_BUTTONS
        assert await outbox(db) == []  # a request is confirmed by staff first

        await tap(chat, ANNA, card.message_id, "✅ Подтвердить", chat_id=STAFF_CHAT)
        confirmed = shown(chat, STAFF_CHAT, card.message_id)
        assert confirmed["text"].endswith("✅ Подтверждена: Анна Петрова")
        assert labels(confirmed) == ["🔁 Перенести"]

        # Another member of staff still had the old card drawn: nothing happens twice.
        late = StaffBooking(action="confirm", booking=made.id).pack()
        await chat.send(callback(OLEG, late, message_id=card.message_id, chat_id=STAFF_CHAT))
        assert "Подтверждена: Анна Петрова" in last_answer(chat)["text"]

    [made] = await bookings(db)
    assert (made.client_id, made.car_id, made.state, made.source) == (
        client,
        car,
        "confirmed",
        "bot",
    )
    assert made.comment == "Стучит подвеска"
    assert made.starts_at == datetime(2026, 11, 25, 7, 0, tzinfo=UTC)
    assert made.actor == "Анна Петрова"
    assert await outbox(db) == [("booking_confirmation", f"booking:{made.id}:confirmed")]
    [contact] = await contacts(db)
    assert (contact.channel, contact.purpose, contact.outcome) == ("bot", "service", "booked")
    assert (contact.client_id, contact.booking_id) == (client, made.id)


async def test_with_auto_confirm_the_client_is_booked_at_once_and_the_confirmation_queued(
    db: Database, clock: FakeClock
) -> None:
    await ivan(db, clock, car=False)
    async with bot_chat(db, clock, booking={"auto_confirm": True}) as chat:
        [entry] = await chat.send(command(IVAN, "book"))
        assert "📅 Запись на сервис. Какая услуга нужна?" in entry.text  # no car: no car step
        await tap(chat, IVAN, entry.message_id, "Диагностика · 1 ч")
        await tap(chat, IVAN, entry.message_id, "Декабрь 2026 ›")
        december = shown(chat, IVAN.id, entry.message_id)
        assert "Выберите день (Декабрь 2026):" in december["text"]
        assert "‹ Ноябрь 2026" in labels(december)
        await tap(chat, IVAN, entry.message_id, "1")
        await tap(chat, IVAN, entry.message_id, "15:00")
        await tap(chat, IVAN, entry.message_id, "Без комментария")
        [card] = await tap(chat, IVAN, entry.message_id, "✅ Записаться")
        done = shown(chat, IVAN.id, entry.message_id)

    assert done["text"].startswith(BOOKED)
    assert "📅 Когда: вторник, 1 декабря в 15:00" in done["text"]
    assert card.text.endswith("✅ Подтверждена: client")
    assert labels(card) == ["🔁 Перенести"]
    [made] = await bookings(db)
    assert made.state == "confirmed"
    assert await outbox(db) == [("booking_confirmation", f"booking:{made.id}:confirmed")]


async def test_a_time_taken_meanwhile_offers_the_nearest_free_times_and_one_tap_books_it(
    db: Database, clock: FakeClock
) -> None:
    client, _ = await ivan(db, clock)
    other = await add_client(db, phone=PETR_PHONE, telegram_id=PETR.id)
    async with bot_chat(db, clock) as chat:
        confirm = await to_confirm_screen(chat)
        await booked_through_crm(chat, other, "2026-11-25 10:00")  # Пётр was quicker

        assert await tap(chat, IVAN, confirm, "✅ Записаться") == []
        taken = shown(chat, IVAN.id, confirm)
        assert taken["text"] == "Извините, это время только что заняли. Ближайшее свободное:"
        # The nearest starts whose two hours do not run into Пётр's 10:00-12:00.
        assert labels(taken) == [
            *(f"ср 25.11 {at}" for at in ("12:00", "12:30", "13:00", "13:30", "14:00")),
            "📅 Другой день",
            "✖️ Отмена",
        ]

        [card] = await tap(chat, IVAN, confirm, "ср 25.11 12:00")
        done = shown(chat, IVAN.id, confirm)

    assert done["text"].startswith(REQUESTED)
    assert "📅 Когда: среда, 25 ноября в 12:00" in done["text"]
    assert "Когда: 25.11.2026 12:00" in card.text
    petr, mine = await bookings(db)
    assert (petr.client_id, petr.starts_at) == (other, datetime(2026, 11, 25, 7, 0, tzinfo=UTC))
    assert (mine.client_id, mine.state) == (client, "requested")
    assert mine.starts_at == datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
    assert [c.outcome for c in await contacts(db)] == ["booked"]


async def test_leaving_at_the_confirm_screen_is_recorded_as_a_contact_that_did_not_book(
    db: Database, clock: FakeClock
) -> None:
    client, _ = await ivan(db, clock)
    async with bot_chat(db, clock) as chat:
        confirm = await to_confirm_screen(chat, comment="Позже перезвоню")
        await tap(chat, IVAN, confirm, "✖️ Отмена")
        left = shown(chat, IVAN.id, confirm)

    assert left["text"] == "Запись не оформлена. Начать заново: /book"
    assert await bookings(db) == []
    [contact] = await contacts(db)
    assert (contact.client_id, contact.outcome, contact.booking_id) == (client, "not_booked", None)


async def test_someone_not_linked_is_asked_for_the_phone_first(
    db: Database, clock: FakeClock
) -> None:
    async with bot_chat(db, clock) as chat:
        [answer] = await chat.send(command(IVAN, "book"))
    assert "Поделитесь номером телефона" in answer.text


# The client's bookings


async def test_a_client_moves_a_booking_from_the_list_and_staff_see_the_move(
    db: Database, clock: FakeClock
) -> None:
    client, _ = await ivan(db, clock)
    async with bot_chat(db, clock) as chat:
        first = await booked_through_crm(chat, client, "2026-11-25 10:00")
        [listing] = await chat.send(command(IVAN, "bookings"))
        assert "среда, 25 ноября в 10:00" in listing.text
        assert "Статус: заявка, ждёт подтверждения" in listing.text
        assert labels(listing) == ["Перенести 25.11 10:00", "Отменить 25.11 10:00"]

        await tap(chat, IVAN, listing.message_id, "Перенести 25.11 10:00")
        calendar = shown(chat, IVAN.id, listing.message_id)
        assert "Переносим вашу запись: среда, 25 ноября в 10:00" in calendar["text"]
        await tap(chat, IVAN, listing.message_id, "26")
        await tap(chat, IVAN, listing.message_id, "11:00")
        confirm = shown(chat, IVAN.id, listing.message_id)
        assert "Перенести запись на это время?" in confirm["text"]
        [card] = await tap(chat, IVAN, listing.message_id, "✅ Перенести")
        done = shown(chat, IVAN.id, listing.message_id)

    assert done["text"].startswith("📨 Запись перенесена, мы подтвердим новое время.")
    old, new = await bookings(db)
    assert (old.id, old.state) == (first.id, "cancelled")
    assert (new.state, new.rescheduled_from_id, new.source) == ("requested", first.id, "bot")
    assert new.starts_at == datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
    assert card.text.startswith(f"🔁 <b>Запись №{new.id}</b> (перенос)")
    assert "Было: 25.11.2026 10:00" in card.text
    assert await contacts(db) == []  # a move is the same request, not another contact


async def test_a_client_cancels_in_time_but_is_asked_to_call_when_it_is_too_late(
    db: Database, clock: FakeClock
) -> None:
    client, _ = await ivan(db, clock)
    async with bot_chat(db, clock) as chat:
        soon = await booked_through_crm(chat, client, "2026-11-24 11:00", service="diagnostics")
        later = await booked_through_crm(chat, client, "2026-11-27 10:00")
        clock.advance(minutes=30)  # 09:30: less than two hours before the 11:00 booking

        [listing] = await chat.send(command(IVAN, "bookings"))
        await tap(chat, IVAN, listing.message_id, "Отменить 24.11 11:00")
        await tap(chat, IVAN, listing.message_id, "Да, отменить")
        refused = shown(chat, IVAN.id, listing.message_id)

        [listing] = await chat.send(command(IVAN, "bookings"))
        await tap(chat, IVAN, listing.message_id, "Отменить 27.11 10:00")
        ask = shown(chat, IVAN.id, listing.message_id)
        assert (
            ask["text"] == "Отменить запись «Техническое обслуживание», пятница, 27 ноября в 10:00?"
        )
        [note] = await tap(chat, IVAN, listing.message_id, "Да, отменить")
        cancelled = shown(chat, IVAN.id, listing.message_id)

    assert "изменить её здесь уже нельзя" in refused["text"]
    assert "+7 495 123-45-67" in refused["text"]
    assert cancelled["text"].startswith("Запись на пятница, 27 ноября в 10:00 отменена.")
    assert note.chat_id == STAFF_CHAT
    assert note.text.startswith(f"✖️ Клиент отменил запись №{later.id}")
    states = {b.id: b.state for b in await bookings(db)}
    assert states == {soon.id: "requested", later.id: "cancelled"}


async def test_a_forged_car_or_booking_is_refused_politely(db: Database, clock: FakeClock) -> None:
    await ivan(db, clock)
    petr = await add_client(db, phone=PETR_PHONE, telegram_id=PETR.id)
    petr_car = await add_car(db, petr, clock, plate="В456ОР99")
    async with bot_chat(db, clock) as chat:
        petrs = await booked_through_crm(chat, petr, "2026-11-26 10:00")
        [entry] = await chat.send(command(IVAN, "book"))
        forged = BookCar(car=petr_car).pack()
        await chat.send(callback(IVAN, forged, message_id=entry.message_id))
        car_refused = last_answer(chat)
        still = shown(chat, IVAN.id, entry.message_id)

        forged = MyBooking(action="cancel_yes", booking=petrs.id).pack()
        sent = await chat.send(callback(IVAN, forged, message_id=entry.message_id))
        booking_refused = last_answer(chat)

    assert (car_refused["text"], car_refused["show_alert"]) == (NOT_YOURS, "true")
    assert still["text"] == "📅 Запись на сервис. Для какого автомобиля?"  # still the car step
    assert booking_refused["text"] == NOT_YOURS
    assert sent == []
    [only] = await bookings(db)
    assert only.state == "requested"


# The staff chat's card


async def card_in_staff_chat(chat: BotChat, client: int, branch: str) -> tuple[BookingView, int]:
    """A request at `branch` and its card in the staff chat: (booking, card message id)."""
    from bot.telegram.handlers.booking_staff import post_card

    await sync(chat)
    view = await booked_through_crm(chat, client, "2026-11-25 10:00", branch=branch)
    before = len(chat.to(STAFF_CHAT))
    await post_card(chat.role.services, chat.role.bot, view)
    [card] = chat.to(STAFF_CHAT)[before:]
    assert labels(card) == CARD_BUTTONS
    return view, card.message_id


async def test_only_staff_who_may_and_of_the_bookings_branch_confirm_it(
    db: Database, clock: FakeClock
) -> None:
    client, _ = await ivan(db, clock)
    async with bot_chat(db, clock, **TWO_BRANCHES) as chat:
        view, card = await card_in_staff_chat(chat, client, "north")

        await tap(chat, NOBODY, card, "✅ Подтвердить", chat_id=STAFF_CHAT)
        stranger = last_answer(chat)
        await tap(chat, SOUTH_OPERATOR, card, "✅ Подтвердить", chat_id=STAFF_CHAT)
        other_branch = last_answer(chat)
        assert [b.state for b in await bookings(db)] == ["requested"]

        await tap(chat, OLEG, card, "✅ Подтвердить", chat_id=STAFF_CHAT)
        confirmed = shown(chat, STAFF_CHAT, card)

    assert stranger["show_alert"] == "true"
    assert "не позволяет" in stranger["text"]
    assert other_branch["text"] == "Эта запись другого филиала: её обрабатывают там."
    assert confirmed["text"].endswith("✅ Подтверждена: Олег Сидоров")
    [made] = await bookings(db)
    assert (made.state, made.actor) == ("confirmed", "Олег Сидоров")
    assert await outbox(db) == [("booking_confirmation", f"booking:{view.id}:confirmed")]


async def test_a_declined_request_tells_the_client_to_choose_another_time(
    db: Database, clock: FakeClock
) -> None:
    client, _ = await ivan(db, clock)
    async with bot_chat(db, clock, **TWO_BRANCHES) as chat:
        view, card = await card_in_staff_chat(chat, client, "south")
        await tap(chat, OLEG, card, "❌ Отклонить", chat_id=STAFF_CHAT)  # north's operator
        assert last_answer(chat)["text"] == "Эта запись другого филиала: её обрабатывают там."

        [told] = await tap(chat, SOUTH_OPERATOR, card, "❌ Отклонить", chat_id=STAFF_CHAT)
        declined = shown(chat, STAFF_CHAT, card)

        late = StaffBooking(action="confirm", booking=view.id).pack()
        sent = await chat.send(callback(ANNA, late, message_id=card, chat_id=STAFF_CHAT))
        second = last_answer(chat)

    assert told.chat_id == IVAN.id
    assert "не можем подтвердить запись «Техническое обслуживание»" in told.text
    assert "/book" in told.text
    assert declined["text"].endswith("❌ Отклонена: Семён Юдин")
    assert labels(declined) == []
    assert sent == []
    assert second["text"] == f"Запись №{view.id}: ❌ Отклонена: Семён Юдин"
    [made] = await bookings(db)
    assert made.state == "declined"
    assert await outbox(db) == []


async def test_staff_move_a_request_to_a_nearby_time_which_confirms_it(
    db: Database, clock: FakeClock
) -> None:
    client, _ = await ivan(db, clock)
    async with bot_chat(db, clock) as chat:
        view, card = await card_in_staff_chat(chat, client, "main")
        await tap(chat, ANNA, card, "🔁 Перенести", chat_id=STAFF_CHAT)
        options = shown(chat, STAFF_CHAT, card)
        assert "Перенести на:" in options["text"]
        assert "ср 25.11 12:00" in labels(options)
        await tap(chat, ANNA, card, "ср 25.11 12:00", chat_id=STAFF_CHAT)
        moved = shown(chat, STAFF_CHAT, card)

    old, new = await bookings(db)
    assert (old.id, old.state) == (view.id, "cancelled")
    assert (new.state, new.source, new.rescheduled_from_id) == ("confirmed", "staff", view.id)
    assert "Когда: 25.11.2026 12:00" in moved["text"]
    assert "Было: 25.11.2026 10:00" in moved["text"]
    assert moved["text"].endswith("✅ Подтверждена: Анна Петрова")
    assert await outbox(db) == [("booking_confirmation", f"booking:{new.id}:confirmed")]

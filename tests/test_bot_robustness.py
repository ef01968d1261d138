"""Garbage at every step of a conversation with the client bot: never a traceback, never
silence, never a spinning button, and nothing written that the person had no right to."""

from __future__ import annotations

import gc
import logging
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import date, timedelta
from typing import Any, TypeVar

import pytest
from sqlalchemy import inspect, select, text

from autoloyal.app import App, open_app
from autoloyal.config import Settings
from autoloyal.telegram_bot import bot_role, make_bot
from bot.callbacks import CarAction, ComplaintTap, SettingTap, SurveyTap
from bot.i18n import Catalogs
from bot.screens import cars as car_screens
from bot.screens import menu, onboarding, survey
from bot.texts import Texts
from storage.feedback import Complaint
from storage.models import Car, Client, OdometerReading, Visit
from tests.support import telegram_updates as tg
from tests.support.botapi import FakeBotAPI, SentMessage
from tests.support.botchat import ADMIN, STAFF_CHAT, BotChat, bot_chat, bot_settings
from tests.support.clock import FakeClock
from tests.support.databases import Database
from tests.support.messaging import add_client, add_visit

T = TypeVar("T")

RU = Texts("ru", Catalogs("ru").locales["ru"])
IVAN = tg.TelegramUser(555, "Евлампий", "Громов")
PETR = tg.TelegramUser(556, "Пётр")
OLGA = tg.TelegramUser(557, "Ольга")
IVAN_PHONE, PETR_PHONE = "+79035254560", "+79161234567"
FOREIGN_GROUP = -1009876543210
REDIS_URL = "redis://127.0.0.1:6379/15"


def labels(markup: dict[str, Any] | None) -> list[str]:
    """The labels of a reply or inline keyboard, row after row."""
    rows = (markup or {}).get("keyboard") or (markup or {}).get("inline_keyboard") or []
    return [button["text"] for row in rows for button in row]


def has_menu(message: SentMessage) -> bool:
    return "keyboard" in (message.reply_markup or {}) and "💰 Баланс" in labels(
        message.reply_markup
    )


def has_contact_button(message: SentMessage) -> bool:
    rows = (message.reply_markup or {}).get("keyboard") or []
    return [[button.get("request_contact") for button in row] for row in rows] == [[True]]


def has_cancel(message: SentMessage) -> bool:
    return "✖️ Отмена" in labels(message.reply_markup)


async def snapshot(db: Database) -> dict[str, list[str]]:
    """Every row of every table, to show that nothing was written."""
    async with db.engine.connect() as conn:
        tables = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
        rows = {}
        for table in sorted(tables):
            found = await conn.execute(text(f'SELECT * FROM "{table}"'))
            rows[table] = sorted(repr(tuple(row)) for row in found)
    return rows


async def linked(db: Database, user: tg.TelegramUser, phone: str) -> int:
    return await add_client(
        db,
        telegram_id=user.id,
        phone=phone,
        first_name=user.first_name,
        middle_name="Кузьмич",
    )


async def add_car(db: Database, client_id: int, clock: FakeClock, *, km: int, days_ago: int) -> int:
    """A Kia Rio whose odometer showed `km` at a visit `days_ago` days ago."""
    async with db.sessions() as session, session.begin():
        car = Car(
            client_id=client_id,
            make="Kia",
            model="Rio",
            plate=f"А{client_id % 1000:03d}ВС77",
            created_at=clock(),
            updated_at=clock(),
        )
        session.add(car)
        await session.flush()
        read_on = clock().date() - timedelta(days=days_ago)
        session.add(
            OdometerReading(car_id=car.id, read_on=read_on, km=km, source="api", created_at=clock())
        )
        return car.id


async def readings(db: Database, car_id: int) -> list[tuple[int, str]]:
    async with db.sessions() as session:
        found = await session.execute(
            select(OdometerReading.km, OdometerReading.source)
            .where(OdometerReading.car_id == car_id)
            .order_by(OdometerReading.id)
        )
        return [(km, source) for km, source in found]


@asynccontextmanager
async def broken_table(db: Database, table: str) -> AsyncIterator[None]:
    """The table is gone (renamed away) for the block, then back: a database failure for
    real, which the shared PostgreSQL scratch database survives for the next tests."""
    async with db.engine.begin() as conn:
        await conn.execute(text(f'ALTER TABLE "{table}" RENAME TO "{table}_gone"'))
    try:
        yield
    finally:
        async with db.engine.begin() as conn:
            await conn.execute(text(f'ALTER TABLE "{table}_gone" RENAME TO "{table}"'))


async def in_one_minute(attempt: Callable[[int], Awaitable[T]]) -> T:
    """Flood control counts per wall-clock minute: should a minute turn while `attempt`
    runs, run it again (with attempt number 1, for a fresh user), now a whole minute ahead."""
    for number in range(2):
        minute = int(time.time() // 60)
        result = await attempt(number)
        if int(time.time() // 60) == minute:
            return result
    raise AssertionError("a minute turned during each of two short attempts")


# 1. Messages the bot cannot read


async def test_a_sticker_a_photo_and_a_huge_text_get_the_short_help_and_the_menu(
    db: Database, clock: FakeClock
) -> None:
    await linked(db, IVAN, IVAN_PHONE)
    garbage = [
        tg.sticker(IVAN),
        tg.photo(IVAN),
        tg.photo(IVAN, caption="а это что?"),
        tg.text(IVAN, "я" * 4096),
    ]
    async with bot_chat(db, clock) as chat:
        for update in garbage:
            [answer] = await chat.send(update)
            assert answer.text == menu.unknown_input(RU).text
            assert "Не понял вас" in answer.text
            assert has_menu(answer)


async def test_a_stranger_s_garbage_gets_the_help_then_every_button_asks_for_the_phone(
    db: Database, clock: FakeClock
) -> None:
    """Someone not linked, who has not pressed Start (or whose step was forgotten): the
    short help and the menu, never silence; any menu button then asks for the phone."""
    async with bot_chat(db, clock) as chat:
        for update in (tg.sticker(OLGA), tg.photo(OLGA), tg.text(OLGA, "ж" * 4096)):
            [answer] = await chat.send(update)
            assert answer.text == menu.unknown_input(RU).text
            assert has_menu(answer)
        [asked] = await chat.send(tg.text(OLGA, "💰 Баланс"))
    assert "Здравствуйте, Ольга!" in asked.text
    assert has_contact_button(asked)


async def test_after_start_a_stranger_s_garbage_gets_the_request_for_the_phone_again(
    db: Database, clock: FakeClock
) -> None:
    async with bot_chat(db, clock) as chat:
        [first] = await chat.send(tg.command(OLGA, "start"))
        for update in (tg.sticker(OLGA), tg.photo(OLGA), tg.text(OLGA, "ж" * 4096)):
            [answer] = await chat.send(update)
            assert answer.text == first.text
            assert "Поделитесь номером телефона" in answer.text
            assert has_contact_button(answer)


# 2. Contacts that are not the sender's own


async def test_a_contact_without_a_user_id_or_someone_else_s_is_refused_and_links_nothing(
    db: Database, clock: FakeClock
) -> None:
    ivan = await add_client(db, phone=IVAN_PHONE)  # known, not linked yet
    async with bot_chat(db, clock) as chat:
        await chat.send(tg.command(OLGA, "start"))
        before = await snapshot(db)
        refused = [
            await chat.send(tg.contact(OLGA, IVAN_PHONE, user_id=None)),
            await chat.send(tg.contact(OLGA, IVAN_PHONE, user_id=IVAN.id, first_name="Иван")),
        ]
        after = await snapshot(db)
    for [answer] in refused:
        assert answer.text == onboarding.not_own_contact(RU).text
        assert "поделитесь своим номером" in answer.text
        assert has_contact_button(answer)
    assert after == before
    async with db.sessions() as session:
        client = await session.get_one(Client, ivan)
        assert client.telegram_id is None
        assert await session.scalar(select(Client).where(Client.telegram_id == OLGA.id)) is None


# 3. Forged buttons


async def test_forged_buttons_are_answered_reveal_nothing_and_write_nothing(
    db: Database, clock: FakeClock
) -> None:
    await linked(db, IVAN, IVAN_PHONE)
    petr = await linked(db, PETR, PETR_PHONE)
    petr_car = await add_car(db, petr, clock, km=50_000, days_ago=10)
    await add_visit(db, petr, date(2026, 11, 23), "4500", car_id=petr_car)
    async with db.sessions() as session:
        petr_visit = await session.scalar(select(Visit.id).where(Visit.client_id == petr))
    assert petr_visit is not None
    async with bot_chat(db, clock) as chat:
        # Petr rates his visit low: a complaint the staff chat may take.
        [invitation] = await chat.send(tg.command(PETR, "start", f"survey_{petr_visit}"))
        for question, score in (("csat", 1), ("nps", 0), ("comment", -1)):
            tap = SurveyTap(visit=petr_visit, question=question, score=score).pack()
            await chat.send(tg.callback(PETR, tap, message_id=invitation.message_id))
        async with db.sessions() as session:
            complaint = await session.scalar(select(Complaint.id))
        assert complaint is not None

        forged = {
            "zzz": "stale",
            "sv:abc": "stale",
            "car:km:abc": "stale",
            SurveyTap(visit=999_999, question="csat", score=5).pack(): "not yours",
            SurveyTap(visit=petr_visit, question="csat", score=5).pack(): "not yours",
            CarAction(action="km", car=petr_car).pack(): "silent",
            CarAction(action="skip", car=0).pack(): "stale",
            ComplaintTap(action="take", complaint=complaint).pack(): "stale",
            ComplaintTap(action="resolve", complaint=complaint).pack(): "stale",
        }
        before = await snapshot(db)
        for presser in (IVAN, tg.TelegramUser(ADMIN, "Анна")):
            for data, expected in forged.items():
                update = tg.callback(presser, data, message_id=987_654)
                query_id = update["callback_query"]["id"]
                sent = await chat.send(update)
                answers = [
                    a for a in chat.fake.callback_answers if a["callback_query_id"] == query_id
                ]
                assert len(answers) == 1, (presser.id, data)
                said = str(answers[0].get("text") or "")
                if presser.id == ADMIN and expected != "stale":
                    expected = "phone"  # not a client: the button asks for the phone first
                if expected == "stale":
                    assert said == "Эта кнопка больше не работает. Воспользуйтесь меню.", data
                    assert sent == [], data
                elif expected == "not yours":
                    assert said == survey.not_yours(RU).text, data
                    assert sent == [], data
                elif expected == "silent":
                    assert said == "", data
                    assert sent == [], data
                else:
                    assert said == "", data
                    [ask] = sent
                    assert has_contact_button(ask), data
                for text_shown in [said, *(m.text for m in sent)]:
                    for secret in ("Kia", "Rio", "ВС77", RU.number(50_000), "Пётр"):
                        assert secret not in text_shown, (presser.id, data, text_shown)
        # The car Ivan forged a button for is not his: his next number is no odometer.
        [after_km] = await chat.send(tg.text(IVAN, "51000"))
        after = await snapshot(db)
    assert after_km.text == menu.unknown_input(RU).text
    assert await readings(db, petr_car) == [(50_000, "api")]
    assert len(chat.to(STAFF_CHAT)) == 1  # Petr's complaint alert, nothing since
    # The ADMIN's presses left only the onboarding step in the FSM, nothing in the database.
    assert after == before


async def test_a_settings_button_for_an_unknown_channel_or_language_writes_nothing(
    db: Database, clock: FakeClock
) -> None:
    await linked(db, IVAN, IVAN_PHONE)
    async with bot_chat(db, clock) as chat:
        before = await snapshot(db)
        for data in (
            SettingTap(what="ads", channel="pigeon", on=True).pack(),
            SettingTap(what="lang", channel="xx", on=True).pack(),
            SettingTap(what="nothing", channel="telegram", on=False).pack(),
            "set:ads:telegram:maybe",
        ):
            update = tg.callback(IVAN, data, message_id=987_654)
            query_id = update["callback_query"]["id"]
            await chat.send(update)
            assert [a["callback_query_id"] for a in chat.fake.callback_answers].count(query_id) == 1
        after = await snapshot(db)
    assert after == before


# 4. The odometer step


async def test_the_odometer_step_keeps_asking_through_garbage_and_refuses_going_back(
    db: Database, clock: FakeClock
) -> None:
    ivan = await linked(db, IVAN, IVAN_PHONE)
    car = await add_car(db, ivan, clock, km=50_000, days_ago=10)
    last_day = RU.date(clock().date() - timedelta(days=10), "dd.MM.yyyy")
    async with bot_chat(db, clock) as chat:
        [cars] = await chat.send(tg.command(IVAN, "cars"))
        km_button = CarAction(action="km", car=car).pack()
        buttons = [b["callback_data"] for row in cars.reply_markup["inline_keyboard"] for b in row]
        assert km_button in buttons
        [asked] = await chat.send(tg.callback(IVAN, km_button, message_id=cars.message_id))
        assert "Какой сейчас пробег у Kia Rio" in asked.text
        assert has_cancel(asked)
        for garbage in ("abc", "-5", "99999999999", "45 км 000", "1e6", "0x10"):
            [answer] = await chat.send(tg.text(IVAN, garbage))
            assert answer.text == car_screens.not_a_number(RU).text, garbage
            assert "например 45000" in answer.text
            assert has_cancel(answer), garbage
        [sticker] = await chat.send(tg.sticker(IVAN))
        assert sticker.text == car_screens.not_a_number(RU).text
        assert has_cancel(sticker)
        assert await readings(db, car) == [(50_000, "api")]

        [lower] = await chat.send(tg.text(IVAN, "45000"))
        assert lower.text == car_screens.km_too_low(RU, 50_000, last_day)
        assert f"{RU.number(50_000)} км на {last_day}" in lower.text
        assert has_cancel(lower)
        assert await readings(db, car) == [(50_000, "api")]

        [saved] = await chat.send(tg.text(IVAN, "52 000"))  # the step is still in hand
    assert "Спасибо, сохранили." in saved.text
    assert await readings(db, car) == [(50_000, "api"), (52_000, "client")]


# 5. Flood control


async def test_a_flood_gets_five_answers_one_notice_and_silence_but_staff_are_not_throttled(
    db: Database, clock: FakeClock
) -> None:
    async with bot_chat(db, clock, telegram={"user_messages_per_minute": 5}) as chat:

        async def flood(number: int) -> list[list[SentMessage]]:
            user = tg.TelegramUser(7_100 + number, "Флудер")
            return [await chat.send(tg.text(user, f"сообщение {i}")) for i in range(8)]

        answers = await in_one_minute(flood)
        staff = [
            await chat.send(tg.text(tg.TelegramUser(ADMIN, "Анна"), "как дела?")) for _ in range(8)
        ]

    assert [len(sent) for sent in answers] == [1, 1, 1, 1, 1, 1, 0, 0]
    assert [sent[0].text for sent in answers[:5]] == [menu.unknown_input(RU).text] * 5
    assert answers[5][0].text.startswith("Слишком много сообщений")
    assert answers[5][0].text == menu.slow_down(RU).text
    assert [len(sent) for sent in staff] == [1] * 8
    assert all(sent[0].text == menu.unknown_input(RU).text for sent in staff)


# 6. Groups


async def test_the_bot_leaves_a_foreign_group_and_is_silent_there_but_stays_in_the_staff_chat(
    db: Database, clock: FakeClock
) -> None:
    await linked(db, IVAN, IVAN_PHONE)
    async with bot_chat(db, clock) as chat:
        assert await chat.send(tg.bot_added_to_group(IVAN, FOREIGN_GROUP, title="Флудилка")) == []
        assert chat.fake.left_chats == [FOREIGN_GROUP]

        for update in (
            tg.text(IVAN, "привет", chat_id=FOREIGN_GROUP),
            tg.command(IVAN, "start", chat_id=FOREIGN_GROUP),
            tg.command(IVAN, "balance", chat_id=FOREIGN_GROUP),
            tg.callback(IVAN, "zzz", message_id=5, chat_id=FOREIGN_GROUP),
        ):
            assert await chat.send(update) == []

        assert (
            await chat.send(tg.bot_added_to_group(tg.TelegramUser(ADMIN, "Анна"), STAFF_CHAT)) == []
        )
        assert chat.fake.left_chats == [FOREIGN_GROUP]
    assert [m for m in chat.fake.sent if m.chat_id in (FOREIGN_GROUP, STAFF_CHAT)] == []


# 7. A failure inside a handler


async def test_a_database_failure_apologises_and_logs_the_update_id_but_no_personal_data(
    db: Database, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    await linked(db, IVAN, IVAN_PHONE)
    caplog.set_level(logging.INFO, logger="autoloyal.bot")
    async with bot_chat(db, clock) as chat:
        update_id = 424_242  # any id above those pushed so far
        async with broken_table(db, "bonus_lot"):
            [apology] = await chat.send({**tg.command(IVAN, "balance"), "update_id": update_id})
        [balance] = await chat.send(tg.command(IVAN, "balance"))  # and it goes on
    assert apology.text.startswith("Извините, у нас что-то пошло не так")
    assert apology.text == menu.apology(RU).text
    assert "Ваш баланс" in balance.text

    failures = [
        r for r in caplog.records if r.name == "autoloyal.bot" and r.levelno >= logging.ERROR
    ]
    assert len(failures) == 1
    assert str(update_id) in failures[0].getMessage()
    everything = caplog.text  # messages and tracebacks of every logger
    for personal in ("9035254560", "903 525", "Евлампий", "Кузьмич", "Громов", "Смирнов"):
        assert personal not in everything, personal


@asynccontextmanager
async def refusing_client(db: Database, phone: str) -> AsyncIterator[None]:
    """The database refuses to store a client with this phone, for the block: PostgreSQL's
    refusal repeats the whole row (phone and name) in its message."""
    if db.dialect == "postgresql":
        make = f"ALTER TABLE client ADD CONSTRAINT refuse_one CHECK (phone <> '{phone}')"
        drop = "ALTER TABLE client DROP CONSTRAINT refuse_one"
    else:
        make = (
            "CREATE TRIGGER refuse_one BEFORE INSERT ON client "
            f"WHEN NEW.phone = '{phone}' BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
        drop = "DROP TRIGGER refuse_one"
    async with db.engine.begin() as conn:
        await conn.execute(text(make))
    try:
        yield
    finally:
        async with db.engine.begin() as conn:
            await conn.execute(text(drop))


async def test_a_refused_write_holding_a_phone_and_a_name_logs_neither(
    db: Database, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with bot_chat(db, clock) as chat:
        await chat.send(tg.command(IVAN, "start"))
        async with refusing_client(db, PETR_PHONE):
            [apology] = await chat.send(tg.contact(IVAN, PETR_PHONE))
    assert apology.text == menu.apology(RU).text
    failures = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(failures) == 1
    assert "IntegrityError" in failures[0].getMessage()  # what failed, and where, is kept
    everything = caplog.text
    for personal in ("9161234567", "916 123", "Евлампий", "Громов"):
        assert personal not in everything, personal


async def test_a_database_failure_under_a_button_apologises_and_answers_the_button(
    db: Database, clock: FakeClock
) -> None:
    await linked(db, IVAN, IVAN_PHONE)
    async with bot_chat(db, clock) as chat:
        update = tg.callback(
            IVAN, SettingTap(what="ads", channel="telegram", on=False).pack(), message_id=987_654
        )
        query_id = update["callback_query"]["id"]
        async with broken_table(db, "consent_event"):
            sent = await chat.send(update)
    assert [m.text for m in sent] == [menu.apology(RU).text]
    answered = [a for a in chat.fake.callback_answers if a["callback_query_id"] == query_id]
    assert len(answered) == 1, "the button keeps spinning: answerCallbackQuery never came"


# 8. Conversation state and flood counts in Redis


@pytest.fixture
async def redis() -> AsyncIterator[Any]:
    """Redis database 15 on 127.0.0.1:6379, flushed before and after."""
    from redis.asyncio import Redis
    from redis.exceptions import RedisError

    client = Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        await client.aclose()
        pytest.skip(
            f"Redis does not answer on 127.0.0.1:6379 ({exc}): the FSM-in-Redis tests need one"
        )
    await client.flushdb()
    try:
        yield client
    finally:
        await client.flushdb()
        await client.aclose()


@asynccontextmanager
async def bot_running(app: App, settings: Settings, fake: FakeBotAPI) -> AsyncIterator[BotChat]:
    """A bot role of its own (a process of its own, as far as state goes) on `fake`."""
    role = bot_role(app, make_bot(settings))
    await role.start()
    try:
        yield BotChat(fake, app, role)
    finally:
        await role.stop()


async def test_the_odometer_step_survives_a_restart_of_the_bot_with_redis(
    db: Database, clock: FakeClock, redis: Any
) -> None:
    ivan = await linked(db, IVAN, IVAN_PHONE)
    car = await add_car(db, ivan, clock, km=50_000, days_ago=10)
    async with FakeBotAPI() as fake:
        settings = bot_settings(db, fake, redis={"url": REDIS_URL})
        async with open_app(settings, clock=clock, migrate=False) as app:
            async with bot_running(app, settings, fake) as chat:
                [cars] = await chat.send(tg.command(IVAN, "cars"))
                km_button = CarAction(action="km", car=car).pack()
                [asked] = await chat.send(tg.callback(IVAN, km_button, message_id=cars.message_id))
                assert "Какой сейчас пробег" in asked.text
            assert await redis.keys("fsm:*"), "the step should be kept in Redis"

            async with bot_running(app, settings, fake) as chat:
                [saved] = await chat.send(tg.text(IVAN, "52000"))
                assert chat.role.in_flight.handled == 1  # nothing handled twice
    assert "Спасибо, сохранили." in saved.text
    assert await readings(db, car) == [(50_000, "api"), (52_000, "client")]


async def test_the_flood_count_in_redis_is_shared_by_two_bot_roles(
    db: Database, clock: FakeClock, redis: Any
) -> None:
    async with FakeBotAPI() as fake:
        settings = bot_settings(
            db, fake, redis={"url": REDIS_URL}, telegram={"user_messages_per_minute": 3}
        )
        async with open_app(settings, clock=clock, migrate=False) as app:

            async def two_and_two(number: int) -> list[list[SentMessage]]:
                user = tg.TelegramUser(7_200 + number, "Флудер")
                answers = []
                for _ in range(2):
                    async with bot_running(app, settings, fake) as chat:
                        answers += [await chat.send(tg.text(user, "эй")) for _ in range(2)]
                return answers

            answers = await in_one_minute(two_and_two)
    assert [len(sent) for sent in answers] == [1, 1, 1, 1]
    assert [sent[0].text for sent in answers[:3]] == [menu.unknown_input(RU).text] * 3
    assert answers[3][0].text == menu.slow_down(RU).text


async def test_a_stopped_bot_role_leaves_no_redis_connection_open(
    db: Database, clock: FakeClock, redis: Any
) -> None:
    async def one_role() -> None:
        async with FakeBotAPI() as fake:
            settings = bot_settings(db, fake, redis={"url": REDIS_URL})
            async with (
                open_app(settings, clock=clock, migrate=False) as app,
                bot_running(app, settings, fake) as chat,
            ):
                # The conversation state and the flood counter both ask Redis.
                [answer] = await chat.send(tg.text(IVAN, "привет"))
                assert answer.text == menu.unknown_input(RU).text

    gc.collect()  # what earlier tests left for the collector is not this role's
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        await one_role()
        gc.collect()  # the role is gone: whatever it left open says so now
    unclosed = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert unclosed == []

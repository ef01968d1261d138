"""The menu a linked client uses: balance, card, cars, help; buttons and commands alike."""

from __future__ import annotations

import io
from datetime import timedelta
from decimal import Decimal

import segno
from sqlalchemy import select

from bot.callbacks import CarAction
from storage.models import Car, OdometerReading
from tests.support import telegram_updates as tg
from tests.support.api import serve_api
from tests.support.botapi import UploadedFile
from tests.support.botchat import bot_chat
from tests.support.clock import FakeClock
from tests.support.databases import Database
from tests.support.messaging import add_client

IVAN = tg.TelegramUser(555, "Иван")
PHONE = "+79035254560"


async def linked_client(db: Database) -> int:
    return await add_client(db, phone=PHONE, telegram_id=IVAN.id, ads=True)


async def add_car(db: Database, client_id: int, clock: FakeClock, km: int, days_ago: int) -> int:
    async with db.sessions() as session, session.begin():
        car = Car(
            client_id=client_id,
            make="Kia",
            model="Rio",
            plate="А123ВС77",
            created_at=clock(),
            updated_at=clock(),
        )
        session.add(car)
        await session.flush()
        session.add(
            OdometerReading(
                car_id=car.id,
                read_on=clock().date() - timedelta(days=days_ago),
                km=km,
                source="api",
                created_at=clock(),
            )
        )
        return car.id


async def test_the_balance_after_a_work_order_posted_over_the_api_shows_the_accrual(
    db: Database, clock: FakeClock
) -> None:
    await linked_client(db)
    async with db.sessions() as session, session.begin():
        from storage.models import Client

        client = await session.scalar(select(Client).where(Client.phone == PHONE))
        assert client is not None
        client.external_id = "C1"
    async with serve_api(db, clock) as api:
        posted = await api.post(
            "/visits",
            {"external_id": "WO-1", "client": "C1", "visited_on": "2026-11-20", "amount": "12300"},
        )
        assert posted.status == 201, posted.body
    async with bot_chat(db, clock) as chat:
        [answer] = await chat.send(tg.text(IVAN, "💰 Баланс"))
    assert "Ваш баланс: 369\u00a0₽" in answer.text  # 3 % of 12 300
    assert "+369\u00a0₽, за визит" in answer.text
    assert "до уровня «Серебряный»" in answer.text
    assert "Ещё 37\u00a0700\u00a0₽" in answer.text  # 50 000 - 12 300


async def test_bonuses_expiring_within_30_days_are_listed_with_their_dates(
    db: Database, clock: FakeClock
) -> None:
    from crm.bonuses import Entry, credit
    from crm.clock import Moment

    client_id = await linked_client(db)
    moment = Moment(clock(), clock().date())
    async with db.sessions() as session, session.begin():
        await credit(
            session, client_id, Entry("adjustment", Decimal(200), ref="a"), moment, valid_days=10
        )
        await credit(
            session, client_id, Entry("adjustment", Decimal(500), ref="b"), moment, valid_days=90
        )
    async with bot_chat(db, clock) as chat:
        [answer] = await chat.send(tg.command(IVAN, "balance"))
    assert "Скоро сгорят" in answer.text
    assert "200\u00a0₽ — 4 декабря (через 10 дней)" in answer.text
    assert "500\u00a0₽ —" not in answer.text  # expires in 90 days: not soon


async def test_the_card_is_its_number_and_a_qr_code_of_it_sent_once_then_by_file_id(
    db: Database, clock: FakeClock
) -> None:
    from crm.cards import issue

    client_id = await linked_client(db)
    async with db.sessions() as session, session.begin():
        await issue(session, "2000123456789", client_id, actor="test", now=clock())
    async with bot_chat(db, clock) as chat:
        [first] = await chat.send(tg.text(IVAN, "💳 Карта"))
        [second] = await chat.send(tg.command(IVAN, "card"))
    assert first.method == "sendPhoto"
    assert "Карта 2000123456789" in first.text
    assert isinstance(first.file, UploadedFile)
    assert first.file.data.startswith(b"\x89PNG\r\n\x1a\n")
    expected = io.BytesIO()
    segno.make_qr("2000123456789", error="m").save(expected, kind="png", scale=10, border=4)
    assert first.file.data == expected.getvalue()  # exactly the QR code of the number
    assert second.method == "sendPhoto"
    assert isinstance(second.file, str)  # the file_id Telegram gave the first time


async def test_no_card_says_how_to_get_one(db: Database, clock: FakeClock) -> None:
    await linked_client(db)
    async with bot_chat(db, clock) as chat:
        [answer] = await chat.send(tg.command(IVAN, "card"))
    assert "нет дисконтной карты" in answer.text


async def test_an_odometer_report_moves_the_forecast_at_once(
    db: Database, clock: FakeClock
) -> None:
    client_id = await linked_client(db)
    car = await add_car(db, client_id, clock, km=30_000, days_ago=200)
    async with bot_chat(db, clock) as chat:
        [cars] = await chat.send(tg.text(IVAN, "🚗 Мои автомобили"))
        assert "Kia Rio А123ВС77" in cars.text
        assert "30\u00a0000 км" in cars.text
        assert "на 45\u00a0000 км" in cars.text
        [question] = await chat.send(
            tg.callback(IVAN, CarAction(action="km", car=car).pack(), message_id=cars.message_id)
        )
        assert "Последнее значение — 30\u00a0000 км" in question.text
        [saved] = await chat.send(tg.text(IVAN, "44 500"))
    assert "Спасибо, сохранили" in saved.text
    assert "44\u00a0500 км" in saved.text
    before = _due_line(cars.text)
    after = _due_line(saved.text)
    assert before != after  # 14 500 km in 200 days: maintenance comes much sooner


def _due_line(text: str) -> str:
    return next(line for line in text.splitlines() if "ТО" in line)


async def test_an_odometer_below_the_last_reading_is_refused(
    db: Database, clock: FakeClock
) -> None:
    client_id = await linked_client(db)
    car = await add_car(db, client_id, clock, km=30_000, days_ago=10)
    async with bot_chat(db, clock) as chat:
        [cars] = await chat.send(tg.command(IVAN, "cars"))
        await chat.send(
            tg.callback(IVAN, CarAction(action="km", car=car).pack(), message_id=cars.message_id)
        )
        [refused] = await chat.send(tg.text(IVAN, "29000"))
        [too_far] = await chat.send(tg.text(IVAN, "900000"))
    assert "одометр не может показывать меньше" in refused.text
    assert "не больше 45\u00a0000 км" in too_far.text  # 30 000 + 1 500 km x 10 days
    async with db.sessions() as session:
        readings = (await session.scalars(select(OdometerReading.km))).all()
    assert readings == [30_000]


async def test_a_client_without_a_car_adds_one_and_sees_its_forecast(
    db: Database, clock: FakeClock
) -> None:
    await linked_client(db)
    async with bot_chat(db, clock) as chat:
        [empty] = await chat.send(tg.command(IVAN, "cars"))
        assert "пока нет ваших автомобилей" in empty.text
        add = CarAction(action="add", car=0).pack()
        await chat.send(tg.callback(IVAN, add, message_id=empty.message_id))
        for answer in ("Skoda", "Octavia", "2019", "а123вс 777"):
            await chat.send(tg.text(IVAN, answer))
        added, listing = await chat.send(tg.text(IVAN, "61000"))
    assert "Автомобиль добавлен" in added.text
    assert "<b>Skoda Octavia А123ВС777</b> (2019)" in listing.text
    assert "61\u00a0000 км" in listing.text
    assert "Следующее ТО" in listing.text


async def test_help_and_unknown_text_show_the_menu(db: Database, clock: FakeClock) -> None:
    await linked_client(db)
    async with bot_chat(db, clock) as chat:
        [help_] = await chat.send(tg.text(IVAN, "❓ Помощь"))
        [unknown] = await chat.send(tg.text(IVAN, "когда откроетесь?"))
    assert "/balance" in help_.text
    assert "+7 495 123-45-67" in help_.text
    for answer in (help_, unknown):
        assert answer.reply_markup is not None
        assert answer.reply_markup["keyboard"][0][0]["text"] == "💰 Баланс"


async def test_a_menu_tap_leaves_the_step_in_hand(db: Database, clock: FakeClock) -> None:
    client_id = await linked_client(db)
    car = await add_car(db, client_id, clock, km=30_000, days_ago=10)
    async with bot_chat(db, clock) as chat:
        [cars] = await chat.send(tg.command(IVAN, "cars"))
        await chat.send(
            tg.callback(IVAN, CarAction(action="km", car=car).pack(), message_id=cars.message_id)
        )
        [balance] = await chat.send(tg.text(IVAN, "💰 Баланс"))
        [unknown] = await chat.send(tg.text(IVAN, "31000"))
    assert "Ваш баланс" in balance.text
    assert "Не понял вас" in unknown.text  # no longer in the odometer step


async def test_the_balance_offers_the_clients_own_invitation_link_which_a_friend_can_follow(
    db: Database, clock: FakeClock
) -> None:
    from storage.bonuses import Referral
    from storage.models import Client

    ivan = await linked_client(db)
    async with bot_chat(db, clock) as chat:
        [first] = await chat.send(tg.command(IVAN, "balance"))
        [again] = await chat.send(tg.command(IVAN, "balance"))
        async with db.sessions() as session:
            code = await session.scalar(select(Client.referral_code).where(Client.id == ivan))
        assert code is not None
        link = f"https://t.me/autoloyal_test_bot?start=ref_{code}"
        assert f"Пригласите друга: {link}" in first.text
        assert "вы получите 500\u00a0₽, а друг — 500\u00a0₽" in first.text
        assert link in again.text  # the same code every time
        friend = tg.TelegramUser(777, "Ольга")
        await chat.send(tg.command(friend, "start", f"ref_{code}"))
        await chat.send(tg.contact(friend, "+79161234567"))
    async with db.sessions() as session:
        referral = await session.scalar(select(Referral))
    assert referral is not None
    assert referral.referrer_id == ivan

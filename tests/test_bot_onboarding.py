"""Meeting the bot: /start, sharing the phone, and where deep links lead."""

from __future__ import annotations

from sqlalchemy import func, select

from bot.callbacks import AdsAnswer
from storage.bonuses import Referral
from storage.models import Client, ConsentEvent, Visit
from tests.support import telegram_updates as tg
from tests.support.botchat import bot_chat
from tests.support.clock import FakeClock
from tests.support.databases import Database
from tests.support.messaging import add_client, add_visit

IVAN = tg.TelegramUser(555, "Иван", "Смирнов")
OLGA = tg.TelegramUser(556, "Ольга")


def keyboard(markup: dict | None) -> list[str]:  # type: ignore[type-arg]
    """The labels of a reply or inline keyboard, row by row flattened."""
    rows = (markup or {}).get("keyboard") or (markup or {}).get("inline_keyboard") or []
    return [button["text"] for row in rows for button in row]


async def client_of(db: Database, telegram_id: int) -> Client | None:
    async with db.sessions() as session:
        return await session.scalar(select(Client).where(Client.telegram_id == telegram_id))


async def test_start_greets_by_name_and_asks_for_the_phone_with_a_contact_button(
    db: Database, clock: FakeClock
) -> None:
    async with bot_chat(db, clock) as chat:
        [answer] = await chat.send(tg.command(IVAN, "start"))
    assert "Здравствуйте, Иван!" in answer.text
    assert answer.reply_markup is not None
    [[button]] = answer.reply_markup["keyboard"]
    assert button["request_contact"] is True


async def test_a_known_number_links_the_client_with_the_welcome_bonus_and_the_menu(
    db: Database, clock: FakeClock
) -> None:
    client_id = await add_client(db, phone="+79035254560", first_name="Иван", ads=True)
    async with bot_chat(db, clock) as chat:
        await chat.send(tg.command(IVAN, "start"))
        [welcome] = await chat.send(tg.contact(IVAN, "79035254560"))
        [balance] = await chat.send(tg.command(IVAN, "balance"))
    assert "Добро пожаловать, Иван Петрович!" in welcome.text
    assert "300\u00a0₽ приветственных бонусов" in welcome.text
    assert "💰 Баланс" in keyboard(welcome.reply_markup)
    assert "300\u00a0₽" in balance.text
    client = await client_of(db, IVAN.id)
    assert client is not None
    assert client.id == client_id


async def test_an_unknown_number_makes_a_potential_client_and_the_bot_asks_about_offers(
    db: Database, clock: FakeClock
) -> None:
    async with bot_chat(db, clock) as chat:
        await chat.send(tg.command(IVAN, "start"))
        welcome, question = await chat.send(tg.contact(IVAN, "+7 916 123-45-67"))
        assert "Мы создали ваш профиль" in welcome.text
        assert "акции" in question.text
        assert keyboard(question.reply_markup) == ["✅ Да, присылайте", "Нет, спасибо"]
        [] = await chat.send(
            tg.callback(IVAN, AdsAnswer(yes=True).pack(), message_id=question.message_id)
        )
        edits = [r for r in chat.fake.requests if r.method == "editMessageText"]
    assert "будем присылать предложения" in edits[-1].params["text"]
    client = await client_of(db, IVAN.id)
    assert client is not None
    assert (client.phone, client.first_name, client.last_name, client.source) == (
        "+79161234567",
        "Иван",
        "Смирнов",
        "bot",
    )
    async with db.sessions() as session:
        event = await session.scalar(select(ConsentEvent))
    assert event is not None
    assert (event.channel, event.purpose, event.granted, event.source) == (
        "telegram",
        "advertising",
        True,
        "bot",
    )


async def test_someone_elses_contact_is_refused_politely(db: Database, clock: FakeClock) -> None:
    await add_client(db, phone="+79035254560")
    async with bot_chat(db, clock) as chat:
        await chat.send(tg.command(IVAN, "start"))
        [refusal] = await chat.send(tg.contact(IVAN, "+79035254560", user_id=OLGA.id))
        [no_id] = await chat.send(tg.contact(IVAN, "+79035254560", user_id=None))
    for answer in (refusal, no_id):
        assert "своим номером" in answer.text
        assert answer.reply_markup is not None
        assert answer.reply_markup["keyboard"][0][0]["request_contact"] is True
    assert await client_of(db, IVAN.id) is None


async def test_an_account_or_a_client_linked_elsewhere_is_sent_to_the_service_centre(
    db: Database, clock: FakeClock
) -> None:
    await add_client(db, phone="+79035254560", telegram_id=777)  # linked to another account
    async with bot_chat(db, clock) as chat:
        await chat.send(tg.command(IVAN, "start"))
        [answer] = await chat.send(tg.contact(IVAN, "+79035254560"))
    assert "уже привязан к другому профилю" in answer.text
    assert "+7 495 123-45-67" in answer.text  # the centre's phone
    assert await client_of(db, IVAN.id) is None


async def test_a_referral_link_is_recorded_for_the_friend_who_joins(
    db: Database, clock: FakeClock
) -> None:
    from crm.referrals import referral_code

    friend = await add_client(db, phone="+79035254560")
    async with db.sessions() as session, session.begin():
        code = await referral_code(session, friend)
    async with bot_chat(db, clock) as chat:
        await chat.send(tg.command(OLGA, "start", f"ref_{code}"))
        welcome, _ = await chat.send(tg.contact(OLGA, "+79161234567"))
    assert "Приглашение друга учтено" in welcome.text
    newcomer = await client_of(db, OLGA.id)
    assert newcomer is not None
    async with db.sessions() as session:
        referral = await session.get(Referral, newcomer.id)
    assert referral is not None
    assert referral.referrer_id == friend


async def test_a_survey_link_opened_before_linking_leads_to_the_survey_after_it(
    db: Database, clock: FakeClock
) -> None:
    client_id = await add_client(db, phone="+79035254560", ads=True)
    await add_visit(db, client_id, clock().date(), "4500")
    async with db.sessions() as session:
        visit = await session.scalar(select(Visit.id))
    async with bot_chat(db, clock) as chat:
        await chat.send(tg.command(IVAN, "start", f"survey_{visit}"))
        answers = await chat.send(tg.contact(IVAN, "+79035254560"))
    assert "Добро пожаловать" in answers[0].text
    assert "Насколько вы довольны обслуживанием?" in answers[-1].text
    assert keyboard(answers[-1].reply_markup) == ["1⭐", "2⭐", "3⭐", "4⭐", "5⭐"]


async def test_the_booking_link_opens_the_booking(db: Database, clock: FakeClock) -> None:
    """A client with no car starts at the service (tests/test_bot_booking.py books)."""
    await add_client(db, phone="+79035254560", telegram_id=IVAN.id)
    async with bot_chat(db, clock) as chat:
        [answer] = await chat.send(tg.command(IVAN, "start", "book"))
    assert "Какая услуга нужна?" in answer.text
    assert answer.reply_markup is not None
    rows = answer.reply_markup["inline_keyboard"]
    labels = [button["text"] for row in rows for button in row]
    assert any(label.startswith("Техническое обслуживание") for label in labels)


async def test_linking_twice_changes_nothing(db: Database, clock: FakeClock) -> None:
    await add_client(db, phone="+79035254560", ads=True)
    async with bot_chat(db, clock) as chat:
        await chat.send(tg.command(IVAN, "start"))
        await chat.send(tg.contact(IVAN, "+79035254560"))
        [again] = await chat.send(tg.contact(IVAN, "+79035254560"))
    assert "уже привязан" in again.text
    async with db.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Client)) == 1

"""/settings in the client bot: what a client switches there decides what the dispatcher
sends next, the language is theirs, and blocking the bot sends messages another way."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from autoloyal.messaging import build_channels, dispatch_policy
from gateway.consent import SERVICE
from gateway.dispatch import Dispatcher
from storage.models import Client, ConsentEvent
from storage.outbox import ChannelUnreachable
from tests.support.botapi import SentMessage
from tests.support.botchat import BotChat, bot_chat
from tests.support.clock import FakeClock
from tests.support.databases import Database
from tests.support.messaging import add_client, message, queue_message
from tests.support.telegram_updates import TelegramUser, callback, command, my_chat_member, text

IVAN = TelegramUser(555, "Иван", language_code="ru")
PHONE = "+79035254560"
SETTINGS_RU = "⚙️ <b>Настройки</b>"
SERVICE_OFF_WARNING = (
    "Сервисные сообщения в этом канале выключены: напоминания сюда приходить не будут."
)
ASK_PHONE = "Поделитесь номером телефона кнопкой ниже"


@asynccontextmanager
async def chat_with_bot(db: Database, clock: FakeClock, tmp_path: Path) -> AsyncIterator[BotChat]:
    """The bot running, with channels that write SMS to files under `tmp_path`."""
    async with bot_chat(db, clock, outbox={"dir": str(tmp_path / "outbox")}) as chat:
        yield chat


async def dispatch(db: Database, chat: BotChat, clock: FakeClock) -> None:
    """What `autoloyal run` does with the outbox now: send everything due."""
    settings = chat.app.settings
    dispatcher = Dispatcher(db.sessions, build_channels(settings), dispatch_policy(settings), clock)
    try:
        await dispatcher.drain()
    finally:
        await dispatcher.close()


def labels(screen: dict[str, Any] | SentMessage) -> list[str]:
    markup = screen.reply_markup if isinstance(screen, SentMessage) else screen.get("reply_markup")
    return [button["text"] for row in (markup or {}).get("inline_keyboard", []) for button in row]


def menu_buttons(sent: SentMessage) -> list[str]:
    """The reply keyboard (the menu) under a message."""
    return [
        button["text"] for row in (sent.reply_markup or {}).get("keyboard", []) for button in row
    ]


def shown(chat: BotChat, chat_id: int, message_id: int) -> dict[str, Any]:
    found = chat.fake.chat_message(chat_id, message_id)
    assert found is not None
    return found


async def open_settings(chat: BotChat, user: TelegramUser = IVAN) -> SentMessage:
    [screen] = await chat.send(command(user, "settings"))
    return screen


async def tap(chat: BotChat, user: TelegramUser, message_id: int, label: str) -> list[SentMessage]:
    """`user` taps the button `label` under the message as the chat shows it now."""
    screen = shown(chat, user.id, message_id)
    for row in (screen.get("reply_markup") or {}).get("inline_keyboard", []):
        for button in row:
            if button["text"] == label:
                data = button["callback_data"]
                return await chat.send(callback(user, data, message_id=message_id))
    raise AssertionError(f"no button {label!r} in {labels(screen)}")


def to_client(chat: BotChat, user: TelegramUser = IVAN) -> list[str]:
    """Every sendMessage to the client, including refused ones."""
    return [
        str(r.params.get("text"))
        for r in chat.fake.requests
        if r.method == "sendMessage" and str(r.params.get("chat_id")) == str(user.id)
    ]


async def events(db: Database, client_id: int) -> list[tuple[Any, ...]]:
    async with db.sessions() as session:
        rows = await session.execute(
            select(ConsentEvent.channel, ConsentEvent.purpose, ConsentEvent.granted)
            .add_columns(ConsentEvent.source)
            .where(ConsentEvent.client_id == client_id)
            .order_by(ConsentEvent.id)
        )  # fmt: skip
        return [tuple(row) for row in rows]


async def unreachable(db: Database, client_id: int) -> list[tuple[Any, ...]]:
    async with db.sessions() as session:
        rows = await session.execute(
            select(ChannelUnreachable.channel, ChannelUnreachable.address)
            .where(ChannelUnreachable.client_id == client_id)
        )  # fmt: skip
        return [tuple(row) for row in rows]


# Offers and service messages


async def test_offers_off_in_telegram_skip_the_next_advertising_message_with_the_reason(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    client = await add_client(db, phone=PHONE, telegram_id=IVAN.id, ads=True)
    async with chat_with_bot(db, clock, tmp_path) as chat:
        screen = await open_settings(chat)
        assert screen.text.startswith(SETTINGS_RU)
        assert "📣 Предложения в Telegram: вкл" in labels(screen)

        await tap(chat, IVAN, screen.message_id, "📣 Предложения в Telegram: вкл")
        assert "📣 Предложения в Telegram: выкл" in labels(shown(chat, IVAN.id, screen.message_id))

        sent_before = len(to_client(chat))
        offer = await queue_message(db, clock, client, plan=("telegram",))
        await dispatch(db, chat, clock)

    assert await events(db, client) == [("telegram", "advertising", False, "bot")]
    skipped = await message(db, offer)
    assert (skipped.state, skipped.reason) == (
        "skipped",
        "telegram: the client unsubscribed from advertising",
    )
    assert len(to_client(chat)) == sent_before


async def test_service_messages_off_in_telegram_warn_the_client_in_the_tap_answer(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    client = await add_client(db, phone=PHONE, telegram_id=IVAN.id)
    async with chat_with_bot(db, clock, tmp_path) as chat:
        screen = await open_settings(chat)
        await tap(chat, IVAN, screen.message_id, "🔔 Сервисные в Telegram: вкл")
        answer = chat.fake.callback_answers[-1]
        now = shown(chat, IVAN.id, screen.message_id)

    assert (answer.get("text"), answer.get("show_alert")) == (SERVICE_OFF_WARNING, "true")
    assert "🔔 Сервисные в Telegram: выкл" in labels(now)
    assert "🔔 Сервисные в SMS: вкл" in labels(now)  # the other channel is left as it was
    assert await events(db, client) == [("telegram", "service", False, "bot")]


async def test_service_messages_off_in_telegram_skip_the_next_service_message(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    client = await add_client(db, phone=PHONE, telegram_id=IVAN.id)
    async with chat_with_bot(db, clock, tmp_path) as chat:
        screen = await open_settings(chat)
        await tap(chat, IVAN, screen.message_id, "🔔 Сервисные в Telegram: вкл")
        sent_before = len(to_client(chat))
        reminder = await queue_message(db, clock, client, plan=("telegram",), kind=SERVICE)
        await dispatch(db, chat, clock)

    skipped = await message(db, reminder)
    assert (skipped.state, skipped.reason) == (
        "skipped",
        "telegram: the client opted out of service messages",
    )
    assert len(to_client(chat)) == sent_before


async def test_switching_offers_back_on_lets_advertising_through_again(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    client = await add_client(db, phone=PHONE, telegram_id=IVAN.id, ads=True)
    async with chat_with_bot(db, clock, tmp_path) as chat:
        screen = await open_settings(chat)
        await tap(chat, IVAN, screen.message_id, "📣 Предложения в Telegram: вкл")
        await tap(chat, IVAN, screen.message_id, "📣 Предложения в Telegram: выкл")
        offer = await queue_message(db, clock, client, plan=("telegram",))
        await dispatch(db, chat, clock)

    assert await events(db, client) == [
        ("telegram", "advertising", False, "bot"),
        ("telegram", "advertising", True, "bot"),
    ]
    assert (await message(db, offer)).state == "sent"


# The language


async def test_choosing_english_redraws_settings_and_the_menu_in_english_and_it_stays(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    client = await add_client(db, phone=PHONE, telegram_id=IVAN.id)
    async with chat_with_bot(db, clock, tmp_path) as chat:
        screen = await open_settings(chat)
        assert labels(screen)[-2:] == ["✅ Русский", "English"]

        [changed] = await tap(chat, IVAN, screen.message_id, "English")
        redrawn = shown(chat, IVAN.id, screen.message_id)
        [balance] = await chat.send(command(IVAN, "balance"))

    assert redrawn["text"].startswith("⚙️ <b>Settings</b>")
    assert "📣 Offers by Telegram: on" in labels(redrawn)
    assert labels(redrawn)[-2:] == ["Русский", "✅ English"]
    assert changed.text == "Language changed."
    assert menu_buttons(changed)[0] == "💰 Balance"
    assert balance.text.startswith("💰 <b>Your balance:")
    async with db.sessions() as session:
        assert await session.scalar(select(Client.language).where(Client.id == client)) == "en"


@pytest.mark.parametrize(
    ("language_code", "balance_title"),
    [
        pytest.param("en", "💰 <b>Your balance:", id="english-telegram"),
        pytest.param("de", "💰 <b>Ваш баланс:", id="german-telegram-gets-russian"),
    ],
)
async def test_a_client_who_never_chose_reads_their_telegram_language_when_the_bot_has_it(
    db: Database, clock: FakeClock, tmp_path: Path, language_code: str, balance_title: str
) -> None:
    user = TelegramUser(IVAN.id, "Ivan", language_code=language_code)
    await add_client(db, phone=PHONE, telegram_id=user.id)
    async with chat_with_bot(db, clock, tmp_path) as chat:
        [balance] = await chat.send(command(user, "balance"))

    assert balance.text.startswith(balance_title)


# Blocked and back


async def test_blocking_the_bot_marks_telegram_unreachable_and_service_messages_go_by_sms(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    client = await add_client(db, phone=PHONE, telegram_id=IVAN.id)
    async with chat_with_bot(db, clock, tmp_path) as chat:
        await chat.send(my_chat_member(IVAN, old="member", new="kicked"))
        marks = await unreachable(db, client)
        reminder = await queue_message(db, clock, client, plan=("telegram", "sms"), kind=SERVICE)
        await dispatch(db, chat, clock)

    assert marks == [("telegram", str(IVAN.id))]
    sent = await message(db, reminder)
    assert (sent.state, sent.channel, sent.address) == ("sent", "sms", PHONE)
    assert sent.reason == "telegram: unreachable (the client blocked the bot)"
    assert to_client(chat) == []  # Telegram was not even tried


async def test_unblocking_the_bot_clears_the_mark_and_telegram_is_used_again(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    client = await add_client(db, phone=PHONE, telegram_id=IVAN.id)
    async with chat_with_bot(db, clock, tmp_path) as chat:
        await chat.send(my_chat_member(IVAN, old="member", new="kicked"))
        await chat.send(my_chat_member(IVAN, old="kicked", new="member"))
        marks = await unreachable(db, client)
        reminder = await queue_message(db, clock, client, plan=("telegram", "sms"), kind=SERVICE)
        await dispatch(db, chat, clock)

    assert marks == []
    sent = await message(db, reminder)
    assert (sent.state, sent.channel) == ("sent", "telegram")
    assert len(to_client(chat)) == 1


# Someone not linked yet


@pytest.mark.parametrize(
    "update",
    [
        pytest.param(command(IVAN, "settings"), id="/settings"),
        pytest.param(command(IVAN, "balance"), id="/balance"),
        pytest.param(text(IVAN, "⚙️ Настройки"), id="settings-button"),
    ],
)
async def test_someone_not_linked_is_asked_for_the_phone_instead_of_their_data(
    db: Database, clock: FakeClock, tmp_path: Path, update: dict[str, Any]
) -> None:
    async with chat_with_bot(db, clock, tmp_path) as chat:
        [ask] = await chat.send(update)

    assert ASK_PHONE in ask.text
    assert (ask.reply_markup or {}).get("keyboard") == [
        [{"text": "📱 Поделиться номером", "request_contact": True}]
    ]

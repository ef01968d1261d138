"""Conversations with the client bot: the real bot role (aiogram Dispatcher, long polling)
against the local Bot API server, on a test database."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from autoloyal.app import App, open_app
from autoloyal.config import parse_settings
from autoloyal.telegram_bot import bot_role, make_bot
from bot.telegram.runner import BotRole
from tests.support.botapi import FakeBotAPI, SentMessage
from tests.support.clock import FakeClock
from tests.support.databases import Database

STAFF_CHAT = -1001234567890
ADMIN, OPERATOR, STRANGER = 9001, 9002, 9003
WAIT = 60.0  # seconds: generous, for a loaded machine; a test never waits this long when it passes


@dataclass
class BotChat:
    fake: FakeBotAPI
    app: App
    role: BotRole
    pushed: int = 0

    async def send(self, update: Mapping[str, Any]) -> list[SentMessage]:
        """Push one update, wait until the bot handled it, return what it sent meanwhile."""
        before = len(self.fake.sent)
        self.fake.push_update(dict(update))
        self.pushed += 1
        await asyncio.wait_for(self.role.in_flight.wait_handled(self.pushed), WAIT)
        return self.fake.sent[before:]

    def to(self, chat_id: int) -> list[SentMessage]:
        return [m for m in self.fake.sent if m.chat_id == chat_id]

    def last(self, chat_id: int) -> SentMessage:
        return self.to(chat_id)[-1]


def bot_settings(db: Database, fake: FakeBotAPI, **sections: Mapping[str, Any]) -> Any:
    telegram = {
        "token": fake.token,
        "api_server": fake.base_url,
        "bot_username": fake.username,
        "staff_chat_id": STAFF_CHAT,
        "user_messages_per_minute": 1000,
        **sections.pop("telegram", {}),
    }
    raw: dict[str, Any] = {
        "database": {"url": db.url},
        "company": {
            "name": "Автоцентр Север",
            "phone": "+7 495 123-45-67",
            "address": "Москва, ул. Ленина, 1",
        },
        "telegram": telegram,
        "staff": [
            {"telegram_id": ADMIN, "name": "Анна Петрова", "role": "admin"},
            {"telegram_id": OPERATOR, "name": "Олег Сидоров", "role": "operator"},
        ],
        **sections,
    }
    return parse_settings(raw)


@contextlib.asynccontextmanager
async def bot_chat(
    db: Database, clock: FakeClock, **sections: Mapping[str, Any]
) -> AsyncIterator[BotChat]:
    """The bot role running against a fresh local Bot API server."""
    async with FakeBotAPI() as fake:
        settings = bot_settings(db, fake, **sections)
        async with open_app(settings, clock=clock, migrate=False) as app:
            role = bot_role(app, make_bot(settings))
            await role.start()
            try:
                yield BotChat(fake, app, role)
            finally:
                await role.stop()

"""Telegram: messages through the Bot API with aiogram, in HTML parse mode.

`api_server` points the bot at any Bot API server: Telegram's, a local telegram-bot-api,
or the test double in tests/. Telegram's answers map onto our outcomes: 429 is transient
and its retry_after binds the whole bot; 403 (blocked, deactivated) and "chat not found"
mean the chat is gone; a text Telegram cannot parse is this message's fault alone.
"""

from __future__ import annotations

from collections.abc import Mapping

from aiogram import Bot
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramNetworkError,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.types import InlineKeyboardMarkup

from gateway.channels import Halted, Outgoing, Permanent, Sender, SendResult, Sent, Transient

UNAUTHORIZED_PAUSE = 300.0
"""Seconds the channel rests after the server refuses the token: staff must fix the config."""

_BOT = Sender("telegram")

# Bad requests that are about the chat, not the text: the address is dead.
_DEAD_CHAT = ("chat not found", "user not found", "peer_id_invalid", "bot can't initiate")


class TelegramChannel:
    """Sends `content["text"]` to the chat id in `address`."""

    name = "telegram"

    def __init__(
        self,
        token: str,
        *,
        api_server: str = "https://api.telegram.org",
        rate_per_second: float = 30.0,
        chat_rate_per_second: float = 1.0,
        request_timeout: float = 10.0,
    ) -> None:
        session = AiohttpSession(
            api=TelegramAPIServer.from_base(api_server), timeout=request_timeout
        )
        self.bot = Bot(
            token,
            session=session,
            default=DefaultBotProperties(parse_mode=ParseMode.HTML, link_preview_is_disabled=True),
        )
        self.destination = api_server
        self.rate_per_second: float | None = rate_per_second
        self.address_rate_per_second: float | None = chat_rate_per_second
        self.request_timeout = request_timeout

    def sender(self, account: str | None) -> Sender:
        """One bot: `account` (an e-mail account's name) means nothing here."""
        return _BOT

    async def notify(self, chat_id: int, text: str) -> None:
        """A plain-text note to a staff chat (alerts): not a mailing, no outbox."""
        await self.bot.send_message(chat_id, text, parse_mode=None)

    async def send(self, message: Outgoing) -> SendResult:
        try:
            chat_id = int(message.address)
        except ValueError:
            return Permanent(f"not a Telegram chat id: {message.address!r}")
        try:
            sent = await self.bot.send_message(
                chat_id, message.content["text"], reply_markup=_markup(message.content)
            )
        except TelegramRetryAfter as exc:
            return Transient(f"Telegram: too many requests ({exc.message})", exc.retry_after)
        except TelegramForbiddenError as exc:
            return Permanent(f"Telegram: {exc.message}")
        except TelegramMigrateToChat as exc:
            return Permanent(f"Telegram: the chat moved to {exc.migrate_to_chat_id}")
        except TelegramUnauthorizedError as exc:
            return Halted(
                f"Telegram refused the bot token ({exc.message}): check [telegram] token",
                UNAUTHORIZED_PAUSE,
            )
        except (TelegramBadRequest, TelegramNotFound) as exc:
            dead = any(marker in exc.message.lower() for marker in _DEAD_CHAT)
            return Permanent(f"Telegram: {exc.message}", unreachable=dead)
        except (TelegramServerError, TelegramNetworkError) as exc:
            return Transient(f"Telegram: {exc.message}")
        except TimeoutError:
            return Transient(f"Telegram: no answer in {self.request_timeout:g} s")
        return Sent(str(sent.message_id))

    async def close(self) -> None:
        await self.bot.session.close()


def _markup(content: Mapping[str, str]) -> InlineKeyboardMarkup | None:
    """The inline keyboard stored with the message (buttons that answer in the bot)."""
    stored = content.get("reply_markup")
    return None if not stored else InlineKeyboardMarkup.model_validate_json(stored)

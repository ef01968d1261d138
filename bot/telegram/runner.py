"""The bot role: long polling or a webhook, the command list, and a clean stop.

On stop the bot takes no new update and finishes the ones in hand before its session
closes: polling stops asking, a webhook answers 503 (Telegram delivers it again later).
"""

from __future__ import annotations

import asyncio
import hmac
import logging

from aiogram import Bot, Dispatcher, methods
from aiogram.methods.base import Response
from aiogram.types import BotCommand, BotCommandScopeAllPrivateChats, Update
from aiohttp import web
from pydantic import ValidationError

from bot.i18n import LOCALES
from bot.screens.menu import commands
from bot.telegram.middlewares import FloodCounter, InFlight
from bot.telegram.services import BotServices

log = logging.getLogger("autoloyal.bot")

WEBHOOK_PATH = "/webhooks/telegram"
CONCURRENT_UPDATES = 32
"""Updates handled at once; the rest of a burst waits its turn. Without a bound, a burst of
reads (every /balance is a few short statements on the loop) keeps a write (a survey
answer) waiting for its turn on the loop over and over: seconds each at a few hundred at
once (bench/client_bot.py --outstanding 500). Telegram's webhooks have their own bound,
max_connections (40 by default)."""
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


_ANSWERS = (
    methods.AnswerCallbackQuery,
    methods.DeleteWebhook,
    methods.EditMessageReplyMarkup,
    methods.EditMessageText,
    methods.GetMe,
    methods.GetUpdates,
    methods.LeaveChat,
    methods.SendMessage,
    methods.SendPhoto,
    methods.SetMyCommands,
    methods.SetWebhook,
)
KEPT_RESPONSE_TYPES = tuple(Response[method.__returning__] for method in _ANSWERS)  # type: ignore[name-defined]
"""aiogram reads every answer through `Response[<the method's type>]`, a pydantic generic
class that pydantic caches only weakly: without a strong reference, garbage collection
drops it and the next request builds it again (milliseconds each, on every API call)."""


class BotRole:
    def __init__(
        self,
        bot: Bot,
        dp: Dispatcher,
        services: BotServices,
        *,
        webhook_url: str | None = None,
        secret: str = "",
    ) -> None:
        self.bot, self.dp, self.services = bot, dp, services
        self.webhook_url, self.secret = webhook_url, secret
        self._polling: asyncio.Task[None] | None = None
        self._polling_started = asyncio.Event()
        self._stopping = False

    @property
    def in_flight(self) -> InFlight:
        found: InFlight = self.dp["in_flight"]
        return found

    async def start(self) -> None:
        me = await self.bot.get_me()
        await self.set_commands()
        allowed = self.dp.resolve_used_update_types()
        if self.webhook_url is not None:
            await self.bot.set_webhook(
                self.webhook_url, secret_token=self.secret, allowed_updates=allowed
            )
            log.info("role bot: @%s, updates by webhook at %s", me.username, self.webhook_url)
            return
        await self.bot.delete_webhook(drop_pending_updates=False)
        self.dp.startup.register(self._polling_started.set)
        self._polling = asyncio.create_task(
            self.dp.start_polling(
                self.bot,
                handle_signals=False,
                close_bot_session=False,
                allowed_updates=allowed,
                tasks_concurrency_limit=CONCURRENT_UPDATES,
            )
        )
        log.info("role bot: @%s, long polling", me.username)

    async def set_commands(self) -> None:
        """The command list in each language, and in the company's for everyone else."""
        scope = BotCommandScopeAllPrivateChats()
        for language in (None, *LOCALES):
            t = self.services.texts(language or self.services.company.locale)
            listed = [BotCommand(command=name, description=text) for name, text in commands(t)]
            await self.bot.set_my_commands(listed, scope=scope, language_code=language)

    async def stop(self) -> None:
        """Take no new update, finish the ones in hand, close the session."""
        self._stopping = True
        if self._polling is not None:
            # Polling can be stopped once it started: a stop right after start waits for it.
            started = asyncio.ensure_future(self._polling_started.wait())
            await asyncio.wait({started, self._polling}, return_when=asyncio.FIRST_COMPLETED)
            started.cancel()
            if not self._polling.done():
                await self.dp.stop_polling()
            await self._polling
        await self.in_flight.idle()
        flood: FloodCounter = self.dp["flood"]
        await flood.close()
        await self.dp.storage.close()
        await self.services.close()
        await self.bot.session.close()

    async def handle_webhook(self, request: web.Request) -> web.Response:
        """Telegram's POST of one update; the secret header is checked in constant time."""
        given = request.headers.get(SECRET_HEADER, "")
        if not self.secret or not hmac.compare_digest(given.encode(), self.secret.encode()):
            return web.Response(status=403, text="forbidden")
        if self._stopping:
            return web.Response(status=503, text="stopping")
        try:
            update = Update.model_validate(await request.json(), context={"bot": self.bot})
        except (ValueError, ValidationError):
            return web.Response(status=400, text="not an update")
        await self.dp.feed_update(self.bot, update)
        return web.Response(text="ok")

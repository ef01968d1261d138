"""The bot's middlewares, all registered in `register` so their order is visible in one place.

Outer, on every update, in this order: the error guard (log with the update id, apologise),
the chat gate (private chats and the staff chat only; leave any other group), flood control,
and who is writing (client and staff record). Then, per event, the client's language; and
inner, per handler: the permission a handler's flag asks for, and a linked client for the
routers that need one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aiogram import BaseMiddleware, Bot, Dispatcher, Router
from aiogram.dispatcher.flags import get_flag
from aiogram.enums import ChatMemberStatus, ChatType
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Chat, Message, TelegramObject, Update, User
from aiogram.utils.i18n import I18nMiddleware
from sqlalchemy import bindparam, select
from sqlalchemy.exc import StatementError

from bot.i18n import pick_locale
from bot.screens import menu, onboarding
from bot.telegram import render
from bot.telegram.services import BotServices
from bot.telegram.states import Onboarding
from crm.names import given_name
from crm.staff import Permission, StaffMember
from storage.models import Client

log = logging.getLogger("autoloyal.bot")

Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]

FLAG_PERMISSION = "permission"


@dataclass(frozen=True, slots=True)
class Who:
    """The person behind an update: their client record and staff entry, when they have one."""

    telegram_id: int | None
    client_id: int | None = None
    name: str | None = None
    """How to greet them: "Иван Петрович"."""
    language: str | None = None
    staff: StaffMember | None = None
    referral_code: str | None = None
    """Their code for friends, once made (read here, so /balance needs no query of its own)."""


class InFlight(BaseMiddleware):
    """Counts the updates being handled, so a stopping bot finishes the ones in hand."""

    def __init__(self) -> None:
        self.count = 0
        self.handled = 0
        """Updates finished since the start, whatever their outcome."""
        self._idle = asyncio.Event()
        self._idle.set()
        self._done = asyncio.Condition()

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        self.count += 1
        self._idle.clear()
        try:
            return await handler(event, data)
        finally:
            self.count -= 1
            if self.count == 0:
                self._idle.set()
            async with self._done:
                self.handled += 1
                self._done.notify_all()

    async def idle(self) -> None:
        await self._idle.wait()

    async def wait_handled(self, count: int) -> None:
        """Until `count` updates were handled in all (tests and the benchmark feed updates
        and wait for their answers this way)."""
        async with self._done:
            await self._done.wait_for(lambda: self.handled >= count)


class ErrorGuard(BaseMiddleware):
    """An exception is logged with the update id (never a phone or a name) and the user is
    apologised to: never a traceback, never silence."""

    def __init__(self, services: BotServices) -> None:
        self.services = services

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        try:
            return await handler(event, data)
        except Exception as exc:
            update = event if isinstance(event, Update) else None
            log.error(
                "update %s (%s) failed: %s\n%s",
                update.update_id if update else "?",
                update.event_type if update else type(event).__name__,
                _what_failed(exc),
                "".join(traceback.format_tb(exc.__traceback__)).rstrip(),
            )
            await self._apologise(update, data)
            return None

    async def _apologise(self, update: Update | None, data: dict[str, Any]) -> None:
        chat: Chat | None = data.get("event_chat")
        bot: Bot | None = data.get("bot")
        if bot is not None and update is not None and update.callback_query is not None:
            with contextlib.suppress(Exception):  # the button stops spinning, whatever else
                await bot.answer_callback_query(update.callback_query.id)
        if chat is None or bot is None or chat.type != ChatType.PRIVATE:
            return
        who: Who | None = data.get("who")
        user: User | None = data.get("event_from_user")
        locale = pick_locale(
            who.language if who else None,
            user.language_code if user else None,
            self.services.company.locale,
        )
        try:
            await bot.send_message(chat.id, menu.apology(self.services.texts(locale)).text)
        except Exception:  # the apology is a courtesy: its own failure is only logged
            log.warning("could not apologise in chat %s", chat.id, exc_info=True)


def _what_failed(exc: BaseException) -> str:
    """The exception's type and, for a database error, its statement: never its message or
    values, which may hold a client's phone or name (a PostgreSQL error repeats the key it
    refused)."""
    if isinstance(exc, StatementError) and exc.statement:
        statement = " ".join(exc.statement.split())[:300]
        cause = type(exc.orig).__name__ if exc.orig is not None else ""
        return f"{type(exc).__name__} ({cause}) in: {statement}"
    return type(exc).__name__


class ChatGate(BaseMiddleware):
    """Private chats, and the staff chat; the bot leaves any other group it is added to."""

    def __init__(self, staff_chat_id: int | None) -> None:
        self.staff_chat_id = staff_chat_id

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        chat: Chat | None = data.get("event_chat")
        if chat is None or chat.type == ChatType.PRIVATE or chat.id == self.staff_chat_id:
            return await handler(event, data)
        update = event if isinstance(event, Update) else None
        member = update.my_chat_member if update else None
        joined = member is not None and member.new_chat_member.status in (
            ChatMemberStatus.MEMBER,
            ChatMemberStatus.ADMINISTRATOR,
        )
        if joined and chat.type in (ChatType.GROUP, ChatType.SUPERGROUP):
            log.info("added to chat %s, which is not the staff chat: leaving it", chat.id)
            bot: Bot = data["bot"]
            await bot.leave_chat(chat.id)
        return None


class FloodCounter(Protocol):
    async def hit(self, user_id: int, window: int) -> int:
        """Count one update of `user_id` in minute `window`; return the count so far."""
        ...

    async def close(self) -> None: ...


class MemoryFloodCounter:
    def __init__(self) -> None:
        self._counts: dict[tuple[int, int], int] = {}

    async def hit(self, user_id: int, window: int) -> int:
        if len(self._counts) > 10_000:  # forget finished minutes
            self._counts = {k: v for k, v in self._counts.items() if k[1] >= window}
        key = (user_id, window)
        self._counts[key] = self._counts.get(key, 0) + 1
        return self._counts[key]

    async def close(self) -> None:
        self._counts.clear()


class RedisFloodCounter:
    """The same count in Redis, so several bot processes throttle one user together."""

    def __init__(self, redis: Any, prefix: str = "autoloyal:bot:flood") -> None:
        self.redis, self.prefix = redis, prefix

    async def hit(self, user_id: int, window: int) -> int:
        key = f"{self.prefix}:{user_id}:{window}"
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, 120)
            count, _ = await pipe.execute()
        return int(count)

    async def close(self) -> None:
        await self.redis.aclose()


class Throttle(BaseMiddleware):
    """At most `per_minute` updates a user a minute; the first one over gets one notice,
    the rest are dropped (a button only stops spinning). Staff are not throttled."""

    def __init__(self, counter: FloodCounter, per_minute: int, services: BotServices) -> None:
        self.counter, self.per_minute, self.services = counter, per_minute, services

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        user: User | None = data.get("event_from_user")
        if user is None or self.services.staff.find(user.id) is not None:
            return await handler(event, data)
        count = await self.counter.hit(user.id, int(time.time() // 60))
        if count <= self.per_minute:
            return await handler(event, data)
        chat: Chat | None = data.get("event_chat")
        bot: Bot = data["bot"]
        if isinstance(event, Update) and event.callback_query is not None:
            await bot.answer_callback_query(event.callback_query.id)  # no spinning button
        if count == self.per_minute + 1 and chat is not None and chat.type == ChatType.PRIVATE:
            locale = pick_locale(None, user.language_code, self.services.company.locale)
            await bot.send_message(chat.id, menu.slow_down(self.services.texts(locale)).text)
        log.info("user %s over %d updates a minute: dropped", user.id, self.per_minute)
        return None


# Built once: building it anew for every update cost as much as running it.
_WHO = select(
    Client.id, Client.first_name, Client.middle_name, Client.language, Client.referral_code
).where(Client.telegram_id == bindparam("telegram_id"))


class WhoIsWriting(BaseMiddleware):
    """Looks up the sender's client record (one read) and staff entry for every update."""

    def __init__(self, services: BotServices) -> None:
        self.services = services

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        user: User | None = data.get("event_from_user")
        if user is None:
            data["who"] = Who(None)
            return await handler(event, data)
        async with self.services.look_up() as connection:
            row = (await connection.execute(_WHO, {"telegram_id": user.id})).first()
        staff = self.services.staff.find(user.id)
        if row is None:
            data["who"] = Who(user.id, staff=staff)
        else:
            name = given_name(row.first_name, row.middle_name) or None
            data["who"] = Who(user.id, row.id, name, row.language, staff, row.referral_code)
        return await handler(event, data)


class ClientLanguage(I18nMiddleware):
    """aiogram's i18n, choosing the client's language (see `pick_locale`), and `t`, the
    client's texts, for the handler."""

    def __init__(self, services: BotServices) -> None:
        super().__init__(services.catalogs)
        self.services = services

    async def get_locale(self, event: TelegramObject, data: dict[str, Any]) -> str:
        who: Who | None = data.get("who")
        user: User | None = data.get("event_from_user")
        return pick_locale(
            who.language if who else None,
            user.language_code if user else None,
            self.services.company.locale,
            self.i18n.available_locales,
        )

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        data["t"] = self.services.texts(await self.get_locale(event, data))
        return await super().__call__(handler, event, data)


class RequirePermission(BaseMiddleware):
    """The one check of the role table: a handler flagged with a permission runs only for
    staff whose role has it."""

    def __init__(self, services: BotServices) -> None:
        self.services = services

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        permission: Permission | None = get_flag(data, FLAG_PERMISSION)
        if permission is None:
            return await handler(event, data)
        who: Who = data["who"]
        if who.staff is not None and who.staff.may(permission):
            return await handler(event, data)
        log.info("user %s may not %s", who.telegram_id, permission)
        if isinstance(event, CallbackQuery):
            text = self.services.staff_texts._("Your role does not allow this.")
            await event.answer(text, show_alert=True)
        return None


class RequireClient(BaseMiddleware):
    """For the routers that show a client's own data: someone not linked yet is asked for
    their phone instead."""

    def __init__(self, services: BotServices) -> None:
        self.services = services

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        who: Who = data["who"]
        if who.client_id is not None:
            return await handler(event, data)
        t = data["t"]
        state: FSMContext = data["state"]
        await state.set_state(Onboarding.contact)
        user: User | None = data.get("event_from_user")
        screen = onboarding.ask_contact(t, self.services.company, user.first_name if user else None)
        if isinstance(event, CallbackQuery):
            await event.answer()
            if event.message is not None:
                await event.message.answer(screen.text, reply_markup=render.markup(screen, t))
        elif isinstance(event, Message):
            await event.answer(screen.text, reply_markup=render.markup(screen, t))
        return None


def register(
    dp: Dispatcher, services: BotServices, counter: FloodCounter, per_minute: int
) -> InFlight:
    """Every middleware of the bot, in order (see the module docstring); returns the
    counter of updates in hand."""
    in_flight = InFlight()
    dp.update.outer_middleware(in_flight)
    dp.update.outer_middleware(ErrorGuard(services))
    dp.update.outer_middleware(ChatGate(services.staff_chat_id))
    dp.update.outer_middleware(Throttle(counter, per_minute, services))
    dp.update.outer_middleware(WhoIsWriting(services))
    ClientLanguage(services).setup(dp)
    dp.message.middleware(RequirePermission(services))
    dp.callback_query.middleware(RequirePermission(services))
    return in_flight


def require_client(router: Router, services: BotServices) -> Router:
    """Make every handler of `router` need a linked client."""
    router.message.middleware(RequireClient(services))
    router.callback_query.middleware(RequireClient(services))
    return router

"""Wiring of the client bot from config: its services, Bot, Dispatcher and role."""

from __future__ import annotations

from aiogram import Bot
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode
from aiogram.fsm.storage.base import BaseStorage
from aiogram.fsm.storage.memory import MemoryStorage

from autoloyal.app import App
from autoloyal.config import Settings
from autoloyal.messaging import company_info, template_library
from autoloyal.rules import bonus_rules, booking_notices, booking_rules, maintenance_policy
from bot.i18n import Catalogs
from bot.telegram.app import build_dispatcher
from bot.telegram.middlewares import FloodCounter, MemoryFloodCounter, RedisFloodCounter
from bot.telegram.runner import WEBHOOK_PATH, BotRole
from bot.telegram.services import BotServices
from crm.feedback import ComplaintRules
from crm.staff import Role, StaffDirectory, StaffMember
from storage import ShortTransactions, make_session_factory, read_only


def staff_directory(settings: Settings) -> StaffDirectory:
    return StaffDirectory(
        StaffMember(member.telegram_id, member.name, Role(member.role), member.branch)
        for member in settings.staff
    )


def bot_services(app: App) -> BotServices:
    """What the handlers are given. The bot reads and writes through `ShortTransactions`:
    its transactions are a few statements on one client's rows, and on SQLite aiosqlite's
    hand-off to its thread and back would cost more than running them (the bot's handler
    time halves; bench/client_bot.py)."""
    settings = app.settings
    writes = ShortTransactions(app.engine)
    reading = read_only(writes.engine)
    return BotServices(
        writes=writes,
        reading=make_session_factory(reading),
        read_engine=reading,
        clock=app.clock,
        zone=settings.company.tz,
        company=company_info(settings),
        region=settings.company.country,
        bonuses=bonus_rules(settings),
        maintenance=maintenance_policy(settings),
        max_daily_km=settings.maintenance.max_daily_km,
        complaints=ComplaintRules(settings.surveys.complaint_csat, settings.surveys.complaint_nps),
        staff=staff_directory(settings),
        staff_chat_id=settings.telegram.staff_chat_id,
        catalogs=Catalogs(settings.company.locale),
        bookings=booking_rules(settings),
        notices=booking_notices(settings, template_library(settings)),
        contact_sources=settings.contacts.sources,
        bot_username=settings.telegram.bot_username,
    )


def make_bot(settings: Settings) -> Bot:
    telegram = settings.telegram
    session = AiohttpSession(
        api=TelegramAPIServer.from_base(telegram.api_server), timeout=telegram.request_timeout
    )
    return Bot(
        telegram.token,
        session=session,
        default=DefaultBotProperties(parse_mode=ParseMode.HTML, link_preview_is_disabled=True),
    )


def fsm_storage(settings: Settings) -> BaseStorage:
    """Conversation state: in memory, or in Redis when `[redis] url` is set."""
    if not settings.redis.url:
        return MemoryStorage()
    from aiogram.fsm.storage.redis import RedisStorage

    return RedisStorage.from_url(settings.redis.url)


def flood_counter(settings: Settings) -> FloodCounter:
    if not settings.redis.url:
        return MemoryFloodCounter()
    from redis.asyncio import Redis

    return RedisFloodCounter(Redis.from_url(settings.redis.url))


def bot_role(app: App, bot: Bot | None = None) -> BotRole:
    """The bot role as configured; `bot` replaces the one `[telegram]` describes (tests)."""
    settings = app.settings
    services = bot_services(app)
    dp = build_dispatcher(
        services,
        storage=fsm_storage(settings),
        flood=flood_counter(settings),
        per_minute=settings.telegram.user_messages_per_minute,
    )
    webhook = settings.telegram.mode == "webhook"
    return BotRole(
        bot or make_bot(settings),
        dp,
        services,
        webhook_url=settings.http.base_url + WEBHOOK_PATH if webhook else None,
        secret=settings.telegram.webhook_secret,
    )

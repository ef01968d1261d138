"""The bot's Dispatcher: routers in the order they take an update, and its middlewares.

Built by a function, never at import time, so every test and every process gets a fresh
one (a router can have only one parent).
"""

from __future__ import annotations

from aiogram import Dispatcher
from aiogram.fsm.storage.base import BaseStorage
from aiogram.fsm.storage.memory import MemoryStorage

from bot.telegram import middlewares
from bot.telegram.handlers import (
    booking,
    booking_staff,
    cars,
    fallback,
    membership,
    menu,
    settings,
    staff,
    staff_desk,
    start,
    survey,
)
from bot.telegram.middlewares import FloodCounter, MemoryFloodCounter
from bot.telegram.services import BotServices


def build_dispatcher(
    services: BotServices,
    *,
    storage: BaseStorage | None = None,
    flood: FloodCounter | None = None,
    per_minute: int = 30,
) -> Dispatcher:
    """Routers, first match wins: membership changes; the staff chat (complaints, booking
    cards); /start and the contact; the menu (a menu tap leaves any step in hand); the
    reminder to share the phone; the steps and buttons of booking, the survey, cars and
    settings; and last the help for anything else."""
    dp = Dispatcher(storage=storage or MemoryStorage())
    dp["services"] = services
    dp.include_routers(
        membership.make_router(services),
        staff.make_router(services),
        staff_desk.make_router(services),
        booking_staff.make_router(services),
        start.make_router(services),
        menu.make_router(services),
        start.make_reminder_router(services),
        booking.make_router(services),
        survey.make_router(services),
        cars.make_router(services),
        settings.make_router(services),
        fallback.make_router(services),
    )
    dp["flood"] = counter = flood or MemoryFloodCounter()
    dp["in_flight"] = middlewares.register(dp, services, counter, per_minute)
    return dp

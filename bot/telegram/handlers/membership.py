"""A client blocks the bot or comes back: the Telegram channel is marked unreachable, or
worth trying again, as the dispatcher would mark it after a refused send."""

from __future__ import annotations

import logging

from aiogram import F, Router
from aiogram.filters import KICKED, MEMBER, ChatMemberUpdatedFilter
from aiogram.types import ChatMemberUpdated

from bot.telegram.services import BotServices
from crm.linking import telegram_blocked, telegram_unblocked

log = logging.getLogger("autoloyal.bot")


def make_router(services: BotServices) -> Router:
    router = Router(name="membership")
    router.my_chat_member.filter(F.chat.type == "private")

    @router.my_chat_member(ChatMemberUpdatedFilter(member_status_changed=KICKED))
    async def blocked(event: ChatMemberUpdated) -> None:
        async with services.write() as session:
            client_id = await telegram_blocked(session, event.from_user.id, services.clock())
        if client_id is not None:
            log.info("client #%d blocked the bot: Telegram marked unreachable", client_id)

    @router.my_chat_member(ChatMemberUpdatedFilter(member_status_changed=MEMBER))
    async def back(event: ChatMemberUpdated) -> None:
        async with services.write() as session:
            client_id = await telegram_unblocked(session, event.from_user.id)
        if client_id is not None:
            log.info("client #%d unblocked the bot: Telegram worth trying again", client_id)

    return router

"""A client links their Telegram account (the client bot's /start with a shared contact)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.bonuses import BonusRules, Moved, grant_welcome
from crm.clock import Moment
from crm.errors import Conflict, NotFound
from gateway.lifecycle import mark_unreachable
from storage.models import Client
from storage.outbox import ChannelUnreachable

TELEGRAM = "telegram"


async def link_telegram(
    session: AsyncSession, rules: BonusRules, client_id: int, telegram_id: int, moment: Moment
) -> Moved | None:
    """Tie a Telegram account to the client and give the welcome bonus (once per client).

    A Telegram account already tied to another client is a Conflict. A former "bot blocked"
    mark is cleared: the client talks to the bot again, so the channel is worth trying.
    Returns the welcome bonus credited now, or None (already given, or the program has none).
    """
    client = await session.get(Client, client_id)
    if client is None:
        raise NotFound(f"no client #{client_id}", field="client")
    other = await session.scalar(
        select(Client.id).where(Client.telegram_id == telegram_id, Client.id != client_id)
    )
    if other is not None:
        raise Conflict("this Telegram account is linked to another client", field="telegram_id")
    client.telegram_id = telegram_id
    client.updated_at = moment.now
    await session.execute(
        delete(ChannelUnreachable).where(
            ChannelUnreachable.client_id == client_id, ChannelUnreachable.channel == TELEGRAM
        )
    )
    await session.flush()
    welcome = await grant_welcome(session, rules, client_id, moment)
    return None if welcome is None or welcome.repeated else welcome


BLOCKED_REASON = "the client blocked the bot"


async def telegram_blocked(session: AsyncSession, telegram_id: int, now: datetime) -> int | None:
    """The client blocked the bot: mark their Telegram unreachable, as a refused send does,
    so messages fall through to their next channel at once. Returns the client's id."""
    client_id = await session.scalar(select(Client.id).where(Client.telegram_id == telegram_id))
    if client_id is not None:
        await mark_unreachable(session, client_id, TELEGRAM, str(telegram_id), BLOCKED_REASON, now)
    return client_id


async def telegram_unblocked(session: AsyncSession, telegram_id: int) -> int | None:
    """The client let the bot write again: the channel is worth trying. Returns the client."""
    client_id = await session.scalar(select(Client.id).where(Client.telegram_id == telegram_id))
    if client_id is not None:
        await session.execute(
            delete(ChannelUnreachable).where(
                ChannelUnreachable.client_id == client_id, ChannelUnreachable.channel == TELEGRAM
            )
        )
    return client_id

"""The outbox's state changes, each a few statements in the caller's transaction.

queued -> sending (claimed, with a lease) -> sent | queued again (retry, next channel,
morning) | skipped | failed. A message leaves `sending` only through its holder, or through
`reap` once the lease has run out: then it is queued again when no request went out (no
attempt is open), and `unknown` when one may have: never resent blindly.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.consent import ADVERTISING, SERVICE, ConsentRows
from gateway.outbox import CANCELLED, DELIVERED, QUEUED, QUIET_HOURS, SENDING, SENT, UNKNOWN
from gateway.quiet import QuietHours
from storage.bulk import conflict_insert
from storage.models import Client, ClientConsent
from storage.outbox import ChannelUnreachable, Message, MessageAttempt

ATTEMPT_SENT = "sent"
ATTEMPT_TRANSIENT = "transient"
ATTEMPT_PERMANENT = "permanent"
ATTEMPT_UNKNOWN = "unknown"
ATTEMPT_HALTED = "halted"
"""The provider refused for the whole account (no money, credentials): the message waits."""

_SENDER_LOCKS = 0x6175
"""The PostgreSQL advisory-lock namespace of daily limits ("au")."""

CAPPED_STATES = (SENDING, SENT, DELIVERED, UNKNOWN)
"""States in which an advertising message holds a slot of the client's frequency cap."""


@dataclass(frozen=True, slots=True)
class Claimed:
    """A message in hand, with what deciding its channel needs to know of the client."""

    message: Message
    contacts: dict[str, Any]
    timezone: str | None
    consents: ConsentRows
    unreachable: dict[str, ChannelUnreachable]

    @property
    def plan(self) -> list[str]:
        return self.message.plan.split(",")


async def claim(
    session: AsyncSession, worker: str, now: datetime, lease: timedelta, limit: int
) -> list[int]:
    """Take up to `limit` due messages, service ones first; other workers skip locked rows."""
    ids: list[int] = []
    for kind in (SERVICE, ADVERTISING):
        if len(ids) >= limit:
            break
        due = (
            select(Message.id)
            .where(Message.state == QUEUED, Message.kind == kind, Message.next_attempt_at <= now)
            .order_by(Message.next_attempt_at, Message.id)
            .limit(limit - len(ids))
            .with_for_update(skip_locked=True)
        )
        ids += list((await session.scalars(due)).all())
    if ids:
        await session.execute(
            update(Message)
            .where(Message.id.in_(ids))
            .values(state=SENDING, claimed_by=worker, lease_until=now + lease, updated_at=now)
        )
    return ids


async def hold(
    session: AsyncSession, message_id: int, worker: str, now: datetime, lease: timedelta
) -> bool:
    """Renew the lease if the message is still ours; False when it was reaped meanwhile."""
    result = await session.execute(
        update(Message)
        .where(
            Message.id == message_id,
            Message.state == SENDING,
            Message.claimed_by == worker,
            Message.lease_until >= now,
        )
        .values(lease_until=now + lease, updated_at=now)
    )
    return bool(getattr(result, "rowcount", 0))


async def load(session: AsyncSession, message_id: int) -> Claimed:
    message = await session.get_one(Message, message_id, populate_existing=True)
    client = (
        await session.execute(
            select(Client.telegram_id, Client.phone, Client.email, Client.timezone).where(
                Client.id == message.client_id
            )
        )
    ).one()
    consents = {
        (row.channel, row.purpose): row.granted
        for row in (
            await session.execute(
                select(ClientConsent.channel, ClientConsent.purpose, ClientConsent.granted).where(
                    ClientConsent.client_id == message.client_id
                )
            )
        )
    }
    marks = await session.scalars(
        select(ChannelUnreachable).where(ChannelUnreachable.client_id == message.client_id)
    )
    return Claimed(
        message=message,
        contacts={
            "telegram_id": None if client.telegram_id is None else str(client.telegram_id),
            "phone": client.phone,
            "email": client.email,
        },
        timezone=client.timezone,
        consents=consents,
        unreachable={mark.channel: mark for mark in marks},
    )


async def take_cap_slot(
    session: AsyncSession, message: Message, now: datetime, limit: int, window: timedelta
) -> bool:
    """Count this advertising message against the client's cap, if a slot is free.

    The client's row is locked first (PostgreSQL), so two dispatchers holding two messages
    for one client count one after the other; on SQLite the write transaction already
    serialises them.
    """
    await session.execute(select(Client.id).where(Client.id == message.client_id).with_for_update())
    taken = await session.scalar(
        select(func.count())
        .select_from(Message)
        .where(
            Message.client_id == message.client_id,
            Message.kind == ADVERTISING,
            Message.capped_at >= now - window,
            Message.state.in_(CAPPED_STATES),
            Message.id != message.id,
        )
    )
    if (taken or 0) >= limit:
        return False
    message.capped_at = now
    return True


async def begin_attempt(
    session: AsyncSession,
    message: Message,
    channel_index: int,
    address: str,
    now: datetime,
    sender: str | None = None,
) -> MessageAttempt:
    """Record that a request is about to go out: from here on a crash means `unknown`."""
    channel = message.plan.split(",")[channel_index]
    if channel_index != message.channel_index:
        message.channel_index = channel_index
        message.channel_attempts = 0
    message.channel = channel
    message.address = address
    message.updated_at = now
    attempt = MessageAttempt(
        message_id=message.id, channel=channel, address=address, started_at=now, sender=sender
    )
    session.add(attempt)
    await session.flush()
    return attempt


async def sends_since(session: AsyncSession, sender: str, since: datetime) -> int:
    """Requests that went out through `sender` since `since` and may have been taken: what a
    daily limit counts (refused ones do not use it up).

    The count and the attempt the caller then records must not interleave with another
    dispatcher's, or both would take the last slot: on PostgreSQL a transaction-scoped
    advisory lock per sender orders them; on SQLite the write transaction already does.
    """
    if session.get_bind().dialect.name == "postgresql":
        key = zlib.crc32(sender.encode()) - 2**31
        await session.execute(select(func.pg_advisory_xact_lock(_SENDER_LOCKS, key)))
    counted = await session.scalar(
        select(func.count())
        .select_from(MessageAttempt)
        .where(
            MessageAttempt.sender == sender,
            MessageAttempt.started_at >= since,
            or_(
                MessageAttempt.outcome.is_(None),
                MessageAttempt.outcome.in_((ATTEMPT_SENT, ATTEMPT_UNKNOWN)),
            ),
        )
    )
    return int(counted or 0)


async def open_attempt(session: AsyncSession, message_id: int) -> MessageAttempt:
    """The attempt begun for this message and not yet finished."""
    return (
        await session.scalars(
            select(MessageAttempt)
            .where(MessageAttempt.message_id == message_id, MessageAttempt.outcome.is_(None))
            .order_by(MessageAttempt.id.desc())
            .limit(1)
        )
    ).one()


def close_attempt(
    attempt: MessageAttempt,
    outcome: str,
    now: datetime,
    provider_id: str | None = None,
    error: str | None = None,
) -> None:
    attempt.outcome = outcome
    attempt.finished_at = now
    attempt.provider_message_id = provider_id
    attempt.error = error


async def withdraw_attempt(session: AsyncSession, message_id: int, now: datetime) -> None:
    """Take back an attempt recorded but never sent (the dispatcher stopped while the
    channel was paused): no request left, so the message is simply queued again."""
    attempt = await open_attempt(session, message_id)
    await session.delete(attempt)
    message = await session.get_one(Message, message_id, populate_existing=True)
    await requeue(session, message, now, now)


async def requeue(
    session: AsyncSession,
    message: Message,
    due: datetime,
    now: datetime,
    waiting: str | None = None,
    **values: Any,
) -> None:
    """Back in the queue, due at `due`, no longer held by anyone; `waiting` says why it
    waits (gateway.outbox.WAITS), None when it is due at once."""
    await settle(session, message, QUEUED, now, next_attempt_at=due, waiting=waiting, **values)


async def settle(
    session: AsyncSession, message: Message, state: str, now: datetime, **values: Any
) -> None:
    """Out of the holder's hands in `state`: sent, skipped or failed (final), or queued."""
    message.state = state
    message.claimed_by = None
    message.lease_until = None
    message.updated_at = now
    message.waiting = None
    for name, value in values.items():
        setattr(message, name, value)


async def mark_unreachable(
    session: AsyncSession, client_id: int, channel: str, address: str, reason: str, now: datetime
) -> None:
    values = {"address": address, "reason": reason, "marked_at": now}
    statement = conflict_insert(session, ChannelUnreachable).values(
        client_id=client_id, channel=channel, **values
    )
    await session.execute(
        statement.on_conflict_do_update(index_elements=["client_id", "channel"], set_=values)
    )


async def reap(session: AsyncSession, now: datetime) -> tuple[int, int]:
    """End the leases that ran out: (messages now unknown, messages queued again)."""
    expired = and_(Message.state == SENDING, Message.lease_until < now)
    lost = list((await session.scalars(select(Message.id).where(expired, _open_attempt()))).all())
    if lost:
        await session.execute(
            update(Message)
            .where(Message.id.in_(lost))
            .values(
                state=UNKNOWN,
                claimed_by=None,
                lease_until=None,
                updated_at=now,
                reason="the dispatcher stopped while a request was out; not resent",
            )
            .execution_options(synchronize_session=False)
        )
        await session.execute(
            update(MessageAttempt)
            .where(MessageAttempt.message_id.in_(lost), MessageAttempt.outcome.is_(None))
            .values(outcome=ATTEMPT_UNKNOWN, finished_at=now)
            .execution_options(synchronize_session=False)
        )
    requeued = await session.execute(
        update(Message)
        .where(expired)
        .values(state=QUEUED, claimed_by=None, lease_until=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return len(lost), int(getattr(requeued, "rowcount", 0))


async def wake_quiet(session: AsyncSession, now: datetime, quiet: QuietHours | None) -> int:
    """Re-evaluate the messages waiting out quiet hours against `quiet` as configured now
    (None: there are none): due at once where it is not night for the client, at the end
    of their night where it is; returns how many were moved.

    One statement per time zone the waiting messages' clients are in, not one per message.
    """
    waiting = and_(
        Message.state == QUEUED, Message.waiting == QUIET_HOURS, Message.next_attempt_at > now
    )
    zones = await session.scalars(
        select(Client.timezone)
        .distinct()
        .join(Message, Message.client_id == Client.id)
        .where(waiting)
    )
    moved = 0
    for zone in list(zones):
        due = None if quiet is None else quiet.morning(now, zone)
        in_zone = select(Client.id).where(
            Client.timezone.is_(None) if zone is None else Client.timezone == zone
        )
        result = await session.execute(
            update(Message)
            .where(waiting, Message.client_id.in_(in_zone), Message.next_attempt_at != (due or now))
            .values(
                next_attempt_at=due or now,
                waiting=QUIET_HOURS if due is not None else None,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
        moved += int(getattr(result, "rowcount", 0))
    return moved


def _open_attempt() -> Any:
    return exists().where(MessageAttempt.message_id == Message.id, MessageAttempt.outcome.is_(None))


async def release(session: AsyncSession, ids: Sequence[int], worker: str, now: datetime) -> None:
    """Give back messages claimed but not started (a stopping dispatcher)."""
    if ids:
        await session.execute(
            update(Message)
            .where(Message.id.in_(ids), Message.state == SENDING, Message.claimed_by == worker)
            .values(state=QUEUED, claimed_by=None, lease_until=None, updated_at=now)
            .execution_options(synchronize_session=False)
        )


async def cancel(session: AsyncSession, campaign_id: int, now: datetime) -> int:
    """A campaign's messages not yet on their way become cancelled; sent ones stay.

    That includes messages a dispatcher holds but has not started a request for: it finds
    them gone when it comes to send. One with a request out finishes as it will.
    """
    waiting = or_(Message.state == QUEUED, and_(Message.state == SENDING, ~_open_attempt()))
    result = await session.execute(
        update(Message)
        .where(Message.campaign_id == campaign_id, waiting)
        .values(state=CANCELLED, updated_at=now, reason="the campaign was cancelled")
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0))

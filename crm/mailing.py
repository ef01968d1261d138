"""Mailing control: what was sent, to whom, through which channel and account, when, and what
happened, message by message, with every attempt and every receipt behind it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Row, Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.names import full_name
from gateway.consent import ADVERTISING
from gateway.outbox import QUEUED, QUIET_HOURS, STATES
from gateway.quiet import QuietHours
from storage.models import Client
from storage.outbox import DeliveryReceipt, Message, MessageAttempt

MAX_LIMIT = 10_000


class MailingError(ValueError):
    """A listing that cannot be made as asked; says which option is wrong."""


@dataclass(frozen=True, slots=True)
class MessageFilter:
    client_id: int | None = None
    campaign_id: int | None = None
    state: str | None = None
    channel: str | None = None
    template: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 100

    def __post_init__(self) -> None:
        if self.state is not None and self.state not in STATES:
            raise MailingError(f"--state: unknown state {self.state!r}: use {', '.join(STATES)}")
        if not 1 <= self.limit <= MAX_LIMIT:
            raise MailingError(f"--limit: expected 1 to {MAX_LIMIT}, got {self.limit}")


@dataclass(frozen=True, slots=True)
class MessageLine:
    id: int
    created_at: datetime
    client_id: int
    client: str
    campaign_id: int | None
    template: str
    kind: str
    plan: str
    state: str
    channel: str | None
    sender: str | None
    address: str | None
    attempts: int
    sent_at: datetime | None
    delivered_at: datetime | None
    cost: Decimal | None
    reason: str | None
    """Why it was skipped or failed, or the last error of a message still trying."""
    next_attempt_at: datetime | None = None
    """When a queued message is tried next (None for a message that is not queued)."""
    waiting: str | None = None
    """What a queued message waits for (gateway.outbox.WAITS), when it is not due yet."""


@dataclass(frozen=True, slots=True)
class AttemptLine:
    started_at: datetime
    finished_at: datetime | None
    channel: str
    sender: str | None
    address: str
    outcome: str | None
    provider_message_id: str | None
    cost: Decimal | None
    error: str | None


@dataclass(frozen=True, slots=True)
class ReceiptLine:
    received_at: datetime
    reported_at: datetime | None
    status: str
    reason: str | None
    via: str


@dataclass(frozen=True, slots=True)
class MessageDetail:
    line: MessageLine
    content: dict[str, dict[str, str]]
    attempts: Sequence[AttemptLine]
    receipts: Sequence[ReceiptLine]


async def list_messages(
    session: AsyncSession,
    where: MessageFilter,
    now: datetime | None = None,
    quiet: QuietHours | None = None,
) -> list[MessageLine]:
    """Messages matching every given filter, newest first, at most `limit`; with `now` and
    `quiet`, a queued advertising message that the night would hold says so (see `_line`)."""
    query = _lines()
    conditions = {
        Message.client_id: where.client_id,
        Message.campaign_id: where.campaign_id,
        Message.state: where.state,
        Message.channel: where.channel,
        Message.template: where.template,
    }
    for column, value in conditions.items():
        if value is not None:
            query = query.where(column == value)
    if where.since is not None:
        query = query.where(Message.created_at >= where.since)
    if where.until is not None:
        query = query.where(Message.created_at < where.until)
    rows = await session.execute(query.order_by(Message.id.desc()).limit(where.limit))
    return [_line(row, now, quiet) for row in rows]


async def message_detail(
    session: AsyncSession,
    message_id: int,
    now: datetime | None = None,
    quiet: QuietHours | None = None,
) -> MessageDetail | None:
    row = (await session.execute(_lines().where(Message.id == message_id))).first()
    if row is None:
        return None
    content = await session.scalar(select(Message.content).where(Message.id == message_id))
    attempts = await session.scalars(
        select(MessageAttempt)
        .where(MessageAttempt.message_id == message_id)
        .order_by(MessageAttempt.id)
    )
    receipts = await session.scalars(
        select(DeliveryReceipt)
        .where(DeliveryReceipt.message_id == message_id)
        .order_by(DeliveryReceipt.id)
    )
    return MessageDetail(
        line=_line(row, now, quiet),
        content=dict(content or {}),
        attempts=[
            AttemptLine(
                a.started_at,
                a.finished_at,
                a.channel,
                a.sender,
                a.address,
                a.outcome,
                a.provider_message_id,
                a.cost,
                a.error,
            )
            for a in attempts
        ],
        receipts=[
            ReceiptLine(r.received_at, r.reported_at, r.status, r.reason, r.via) for r in receipts
        ],
    )


def _lines() -> Select[*tuple[Any, ...]]:
    return select(
        Message.id,
        Message.created_at,
        Message.client_id,
        Client.last_name,
        Client.first_name,
        Client.middle_name,
        Message.campaign_id,
        Message.template,
        Message.kind,
        Message.plan,
        Message.state,
        Message.channel,
        Message.sender,
        Message.address,
        Message.attempts,
        Message.sent_at,
        Message.delivered_at,
        Message.cost,
        Message.reason,
        Message.last_error,
        Message.next_attempt_at,
        Message.waiting,
        Client.timezone,
    ).join(Client, Client.id == Message.client_id)


def _line(r: Row[Any], now: datetime | None, quiet: QuietHours | None) -> MessageLine:
    next_attempt_at, waiting = (r.next_attempt_at, r.waiting) if r.state == QUEUED else (None, None)
    if next_attempt_at is not None and now is not None and next_attempt_at <= now:
        # Due: advertising still waits while it is night for the client (quiet hours as
        # configured now); a dispatcher marks it so only when it reaches it.
        morning = quiet.morning(now, r.timezone) if quiet and r.kind == ADVERTISING else None
        next_attempt_at, waiting = (morning, QUIET_HOURS) if morning else (next_attempt_at, None)
    return MessageLine(
        id=r.id,
        created_at=r.created_at,
        client_id=r.client_id,
        client=full_name(r.last_name, r.first_name, r.middle_name),
        campaign_id=r.campaign_id,
        template=r.template,
        kind=r.kind,
        plan=r.plan,
        state=r.state,
        channel=r.channel,
        sender=r.sender,
        address=r.address,
        attempts=r.attempts,
        sent_at=r.sent_at,
        delivered_at=r.delivered_at,
        cost=r.cost,
        reason=r.reason or r.last_error,
        next_attempt_at=next_attempt_at,
        waiting=waiting,
    )

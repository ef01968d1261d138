"""Delivery receipts: what the operator said after the provider took a message.

A receipt moves a sent message to `delivered` or `failed` (with the operator's reason).
Receipts come pushed to the webhook or fetched by the poller; each is kept in
`delivery_receipt` as it came. One that arrives before the send is on record (a fast
callback) waits unmatched, and `apply_waiting` applies it when the send is recorded.
Applying is idempotent: a repeated receipt changes nothing, and a late "failed" does not
undo a delivery already confirmed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.channels.sms import DELIVERED as RECEIPT_DELIVERED
from gateway.channels.sms import FAILED as RECEIPT_FAILED
from gateway.channels.sms import PENDING, Receipt, SmsProvider, plain
from gateway.outbox import DELIVERED, FAILED, SENT
from storage.outbox import DeliveryReceipt, Message

log = logging.getLogger("autoloyal.receipts")

CALLBACK = "callback"
POLL = "poll"
POLL_WINDOW = timedelta(hours=24)
"""Messages sent longer ago than this are not asked about any more."""
POLL_BATCH = 100
_NOT_DELIVERED = "{}: not delivered ("


@dataclass(slots=True)
class ReceiptReport:
    applied: int = 0
    """Receipts that moved a message (to delivered or failed)."""
    waiting: int = 0
    """Receipts for an id we do not know (yet): kept, applied when the send is recorded."""
    unchanged: int = 0
    """Receipts that said nothing new (pending, repeated, or after a final state)."""


async def record_receipts(
    session: AsyncSession,
    provider: str,
    receipts: Sequence[Receipt],
    *,
    via: str,
    now: datetime,
) -> ReceiptReport:
    """Keep each receipt and apply it to its message, in the caller's transaction."""
    report = ReceiptReport()
    if not receipts:
        return report
    ids = {receipt.provider_id for receipt in receipts}
    messages = {
        message.provider_message_id: message
        for message in await session.scalars(
            select(Message).where(Message.sender == provider, Message.provider_message_id.in_(ids))
        )
    }
    for receipt in receipts:
        # The operator's words come from a callback or a poll answer: keep them storable.
        if receipt.reason is not None:
            receipt = replace(receipt, reason=plain(receipt.reason))
        message = messages.get(receipt.provider_id)
        if via == POLL and (message is None or receipt.status == PENDING):
            # A poll asks again next time: keeping every "still pending" would only repeat.
            report.unchanged += 1
            continue
        row = DeliveryReceipt(
            provider=provider,
            provider_message_id=receipt.provider_id,
            status=receipt.status,
            reason=receipt.reason,
            reported_at=receipt.at,
            received_at=now,
            via=via,
            message_id=None if message is None else message.id,
        )
        session.add(row)
        if message is None:
            report.waiting += 1
        elif _apply(message, receipt, now):
            report.applied += 1
        else:
            report.unchanged += 1
    await session.flush()
    return report


async def apply_waiting(
    session: AsyncSession, message: Message, sender: str, now: datetime
) -> None:
    """Apply receipts that came for this message's provider id before its send was recorded."""
    waiting = await session.scalars(
        select(DeliveryReceipt)
        .where(
            DeliveryReceipt.provider == sender,
            DeliveryReceipt.provider_message_id == message.provider_message_id,
            DeliveryReceipt.message_id.is_(None),
        )
        .order_by(DeliveryReceipt.id)
    )
    for row in waiting:
        row.message_id = message.id
        receipt = Receipt(row.provider_message_id, row.status, row.reason, row.reported_at)
        _apply(message, receipt, now)


def _apply(message: Message, receipt: Receipt, now: datetime) -> bool:
    """Move the message as the receipt says; False when it says nothing new."""
    if receipt.cost is not None and message.cost is None:
        message.cost = receipt.cost
    # A delivery confirmed after a receipt said "failed" (the operator tried again) wins.
    retried = message.state == FAILED and _NOT_DELIVERED.format(message.channel) in (
        message.reason or ""
    )
    if receipt.status == RECEIPT_DELIVERED and (message.state == SENT or retried):
        message.state = DELIVERED
        message.delivered_at = receipt.at or now
        message.updated_at = now
        return True
    if receipt.status == RECEIPT_FAILED and message.state == SENT:
        why = f"{_NOT_DELIVERED.format(message.channel)}{receipt.reason or 'no reason given'})"
        message.state = FAILED
        message.reason = "; ".join(part for part in (message.reason, why) if part)
        message.updated_at = now
        return True
    return False


async def poll_receipts(
    sessions: async_sessionmaker[AsyncSession],
    providers: Mapping[str, SmsProvider],
    clock: Callable[[], datetime],
) -> ReceiptReport:
    """Ask each provider that can be asked about its messages sent in the last day and not
    yet settled by a receipt; apply what it says."""
    total = ReceiptReport()
    for name, provider in providers.items():
        if not provider.can_poll:
            continue
        now = clock()
        async with sessions() as session:
            ids = list(
                (
                    await session.scalars(
                        select(Message.provider_message_id)
                        .where(
                            Message.sender == name,
                            Message.state == SENT,
                            Message.sent_at >= now - POLL_WINDOW,
                            Message.provider_message_id.is_not(None),
                        )
                        .order_by(Message.sent_at)
                    )
                ).all()
            )
        for start in range(0, len(ids), POLL_BATCH):
            chunk = [id_ for id_ in ids[start : start + POLL_BATCH] if id_]
            try:
                found = await provider.statuses(chunk)
            except Exception:
                log.exception("%s: cannot ask for delivery statuses", name)
                break
            async with sessions() as session, session.begin():
                report = await record_receipts(session, name, found, via=POLL, now=clock())
            total.applied += report.applied
            total.unchanged += report.unchanged
            total.waiting += report.waiting
    return total

"""The outbox tables: campaigns, messages, every attempt to send one, and stored templates.

A message row is one client and one occasion: the text already rendered for every channel
of its plan, a unique idempotency key, and where it stands. An attempt row is one request
to one channel. Together they answer "what did we send this person, when, through which
channel, and what happened".
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, Numeric, SmallInteger, String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base
from storage.types import UTCDateTime

JSON_DOCUMENT = JSON().with_variant(JSONB(), "postgresql")
PRICE = Numeric(12, 4, asdecimal=True)
"""A provider's price for one message: SMS prices come in fractions of a kopeck."""


class MessageTemplate(Base):
    """A template written by staff; it overrides a file template of the same name."""

    __tablename__ = "message_template"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    source: Mapped[str] = mapped_column(Text)
    updated_by: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Campaign(Base):
    """One mailing: a segment of clients, a template, a channel plan, a start time."""

    __tablename__ = "campaign"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    segment: Mapped[str] = mapped_column(String(64))
    segment_params: Mapped[dict[str, Any]] = mapped_column(JSON_DOCUMENT, default=dict)
    template: Mapped[str] = mapped_column(String(64))
    plan: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    branch_id: Mapped[int | None] = mapped_column(ForeignKey("branch.id"))
    email_account: Mapped[str | None] = mapped_column(String(64))
    """The `[[email.account]]` its e-mails go out from; None: `[email] default_account`."""
    created_by: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Message(Base):
    """One message to one client, with its text per channel and its place in the lifecycle.

    `channel_index` points into `plan` (comma-separated channels, tried in order);
    `channel_attempts` counts transient failures on that channel. `lease_until` bounds how
    long a dispatcher may hold it in `sending`. `capped_at` is when it took a slot of the
    client's advertising frequency cap. `last_error` is the latest channel error; `reason`
    says why the message was skipped or failed, and which channels it fell through.
    `account` is the sender account asked for (an e-mail account; None: the default);
    `sender` the account it went out through, `cost` what the provider charged, and
    `delivered_at` when the operator confirmed delivery. `waiting` says why a queued message
    waits for `next_attempt_at` (gateway.outbox.WAITS); None: it waits for nothing.
    """

    __tablename__ = "message"
    __table_args__ = (
        Index("ix_message_state_kind_next_attempt_at", "state", "kind", "next_attempt_at"),
        Index("ix_message_client_id_kind_capped_at", "client_id", "kind", "capped_at"),
        Index("ix_message_campaign_id_state", "campaign_id", "state"),
        Index("ix_message_provider_message_id", "provider_message_id"),
        Index("ix_message_client_id_created_at", "client_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("client.id"))
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaign.id"))
    branch_id: Mapped[int | None] = mapped_column(ForeignKey("branch.id"))
    template: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    plan: Mapped[str] = mapped_column(String(128))
    content: Mapped[dict[str, Any]] = mapped_column(JSON_DOCUMENT)
    state: Mapped[str] = mapped_column(String(16))
    channel_index: Mapped[int] = mapped_column(SmallInteger, default=0)
    channel: Mapped[str | None] = mapped_column(String(32))
    address: Mapped[str | None] = mapped_column(String(320))
    attempts: Mapped[int] = mapped_column(SmallInteger, default=0)
    channel_attempts: Mapped[int] = mapped_column(SmallInteger, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    capped_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    provider_message_id: Mapped[str | None] = mapped_column(String(128))
    account: Mapped[str | None] = mapped_column(String(64))
    sender: Mapped[str | None] = mapped_column(String(64))
    cost: Mapped[Decimal | None] = mapped_column(PRICE)
    last_error: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    waiting: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class MessageAttempt(Base):
    """One request to one channel. `outcome` is empty while the request is in flight.

    `sender` is the account it went through (`smsru`, `email:promo`); counted per day
    against that account's daily limit.
    """

    __tablename__ = "message_attempt"
    __table_args__ = (Index("ix_message_attempt_sender_started_at", "sender", "started_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("message.id"), index=True)
    channel: Mapped[str] = mapped_column(String(32))
    address: Mapped[str] = mapped_column(String(320))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    outcome: Mapped[str | None] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
    provider_message_id: Mapped[str | None] = mapped_column(String(128))
    sender: Mapped[str | None] = mapped_column(String(64))
    cost: Mapped[Decimal | None] = mapped_column(PRICE)


class DeliveryReceipt(Base):
    """What a provider said about a message after taking it: every receipt, as it came.

    Kept whether or not it matched a message (a receipt can arrive before the send is on
    record: it is applied when the send is); `message_id` is set once it was applied.
    """

    __tablename__ = "delivery_receipt"
    __table_args__ = (
        Index(
            "ix_delivery_receipt_provider_provider_message_id", "provider", "provider_message_id"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    provider: Mapped[str] = mapped_column(String(32))
    provider_message_id: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    reported_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    via: Mapped[str] = mapped_column(String(16))
    """"callback" or "poll"."""
    message_id: Mapped[int | None] = mapped_column(ForeignKey("message.id"), index=True)


class InboundSms(Base):
    """An SMS a client sent us through a provider, and what we did with it."""

    __tablename__ = "inbound_sms"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    provider: Mapped[str] = mapped_column(String(32))
    provider_message_id: Mapped[str | None] = mapped_column(String(128))
    phone: Mapped[str] = mapped_column(String(32))
    text: Mapped[str] = mapped_column(Text)
    client_id: Mapped[int | None] = mapped_column(ForeignKey("client.id", ondelete="SET NULL"))
    action: Mapped[str] = mapped_column(String(32))
    """"opt-out" (a stop word), "unknown number", or "kept" (anything else, for staff)."""
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ChannelUnreachable(Base):
    """A channel that refused a client's address for good (blocked bot, invalid number).

    Kept with the address it refused: when the client's contact changes, the channel is
    worth trying again.
    """

    __tablename__ = "channel_unreachable"

    client_id: Mapped[int] = mapped_column(ForeignKey("client.id"), primary_key=True)
    channel: Mapped[str] = mapped_column(String(32), primary_key=True)
    address: Mapped[str] = mapped_column(String(320))
    reason: Mapped[str] = mapped_column(Text)
    marked_at: Mapped[datetime] = mapped_column(UTCDateTime)

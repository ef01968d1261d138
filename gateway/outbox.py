"""Enqueue: the one door every message to many people goes through.

A message is rendered when it is enqueued and stored with an idempotency key; enqueueing
the same key again is a no-op, so a job or a campaign that is run twice sends once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.consent import ADVERTISING, SERVICE
from gateway.optout import OptOut
from gateway.render import MessageTemplate
from storage.bulk import conflict_insert, table_of
from storage.outbox import Message

KINDS = (SERVICE, ADVERTISING)

CHANNELS = ("telegram", "sms", "email")
"""Channels a plan may name, in no particular order; each has an adapter in gateway/channels."""

QUEUED = "queued"
SENDING = "sending"
SENT = "sent"
DELIVERED = "delivered"
FAILED = "failed"
SKIPPED = "skipped"
CANCELLED = "cancelled"
UNKNOWN = "unknown"
STATES = (QUEUED, SENDING, SENT, DELIVERED, FAILED, SKIPPED, CANCELLED, UNKNOWN)

# Why a queued message waits for its next attempt (`message.waiting`).
SCHEDULED = "scheduled"
QUIET_HOURS = "quiet_hours"
DAILY_LIMIT = "daily_limit"
HALTED = "halted"
RETRY = "retry"
PACED = "paced"
WAITS: dict[str, str] = {
    SCHEDULED: "the start time it was given",
    QUIET_HOURS: "the end of quiet hours in the client's time zone",
    DAILY_LIMIT: "the sender account's daily limit, until the next day",
    HALTED: "the channel to send again (halted)",
    RETRY: "a retry after a failed try",
    PACED: "the provider's pause (too many requests)",
}
"""What each wait means, for people."""


class PlanError(ValueError):
    """A channel plan or message kind that cannot be used."""


@dataclass(frozen=True, slots=True)
class Recipient:
    """One message to enqueue: who, under which idempotency key, with what context."""

    client_id: int
    key: str
    context: Mapping[str, Any]
    branch_id: int | None = None
    channels: Sequence[str] | None = None
    """The channels of the plan to render for this client (None: all of them)."""
    extras: Mapping[str, Mapping[str, str]] | None = None
    """Parts stored beside a channel's rendered text, e.g. {"telegram": {"reply_markup":
    <inline keyboard JSON>}}: buttons that answer in the bot (a survey's scores)."""


@dataclass(slots=True)
class EnqueueResult:
    queued: int = 0
    duplicates: int = 0

    def add(self, other: EnqueueResult) -> None:
        self.queued += other.queued
        self.duplicates += other.duplicates


def parse_plan(text: str | Sequence[str]) -> tuple[str, ...]:
    """ "telegram,sms" -> ("telegram", "sms"); refuses unknown and repeated channels."""
    parts = text.split(",") if isinstance(text, str) else list(text)
    plan = tuple(part.strip().lower() for part in parts if part.strip())
    if not plan:
        raise PlanError("the channel plan is empty: name at least one of " + ", ".join(CHANNELS))
    unknown = [channel for channel in plan if channel not in CHANNELS]
    if unknown:
        raise PlanError(f"unknown channel {unknown[0]!r}: use {', '.join(CHANNELS)}")
    if len(set(plan)) != len(plan):
        raise PlanError("a channel appears twice in the plan")
    return plan


def check_plan(template: MessageTemplate, plan: Sequence[str], kind: str) -> None:
    """The template must offer every channel of the plan, and the kind must be known."""
    if kind not in KINDS:
        raise PlanError(f"unknown message kind {kind!r}: use {' or '.join(KINDS)}")
    missing = [channel for channel in plan if channel not in template.channels]
    if missing:
        offered = ", ".join(template.channels) or "none"
        raise PlanError(
            f"template {template.name} has no {', '.join(missing)} block (it offers: {offered})"
        )


async def enqueue(
    session: AsyncSession,
    template: MessageTemplate,
    recipients: Iterable[Recipient],
    *,
    plan: Sequence[str],
    kind: str,
    now: datetime,
    not_before: datetime | None = None,
    campaign_id: int | None = None,
    new_keys: bool = False,
    opt_out: OptOut | None = None,
    account: str | None = None,
) -> EnqueueResult:
    """Render and insert one batch of messages in the caller's transaction.

    Keys already in the outbox are not rendered again; the rest go in one batched
    INSERT ... ON CONFLICT DO NOTHING, so a key another process queued a moment ago is a
    duplicate too. A duplicate is left as it was, whatever its state. `new_keys` says the
    caller made the keys up in this transaction (a new campaign's), so none can be known.
    `opt_out` adds each channel's way out to advertising (the link from the context's
    `links.unsubscribe`); `account` is the e-mail account the messages go out from.
    """
    check_plan(template, plan, kind)
    batch = list(recipients)
    known = set() if new_keys else await _known_keys(session, [r.key for r in batch])
    shared = {
        "campaign_id": campaign_id,
        "template": template.name,
        "kind": kind,
        "plan": ",".join(plan),
        "account": account,
        "state": QUEUED,
        "channel_index": 0,
        "attempts": 0,
        "channel_attempts": 0,
        "next_attempt_at": not_before or now,
        "waiting": SCHEDULED if not_before is not None and not_before > now else None,
        "created_at": now,
        "updated_at": now,
    }
    rows = [
        (
            recipient.key,
            recipient.client_id,
            recipient.branch_id,
            _content(template, recipient, plan, kind, opt_out),
        )
        for recipient in batch
        if recipient.key not in known
    ]
    if not rows:
        return EnqueueResult(duplicates=len(batch))
    if session.get_bind().dialect.name == "sqlite":
        queued = await _insert_sqlite(session, shared, rows)
    else:
        statement = conflict_insert(session, Message).on_conflict_do_nothing(
            index_elements=["idempotency_key"]
        )
        result = await session.execute(
            statement.returning(table_of(Message).c.id),
            [{**shared, **dict(zip(_PER_ROW, row, strict=True))} for row in rows],
        )
        queued = len(result.all())
    return EnqueueResult(queued=queued, duplicates=len(batch) - queued)


def _content(
    template: MessageTemplate,
    recipient: Recipient,
    plan: Sequence[str],
    kind: str,
    opt_out: OptOut | None,
) -> dict[str, dict[str, str]]:
    channels = plan if recipient.channels is None else recipient.channels
    content = template.render(recipient.context, channels).content
    for channel, parts in (recipient.extras or {}).items():
        if channel in content:
            content[channel] = {**content[channel], **parts}
    return content if opt_out is None else opt_out.apply(content, kind, recipient.context)


_PER_ROW = ("idempotency_key", "client_id", "branch_id", "content")
"""The columns that differ from message to message in one enqueue, in `rows` order."""


async def _insert_sqlite(
    session: AsyncSession, shared: dict[str, Any], rows: list[tuple[Any, ...]]
) -> int:
    """One prepared INSERT run for every row by the driver: half the time of a multi-row
    VALUES statement built by SQLAlchemy, which converts every value of every row.

    Values are converted by the columns' own bind processors, so they are stored exactly as
    the ORM stores them; the columns every row shares (timestamps, plan, kind) once.
    """
    table = table_of(Message)
    connection = await session.connection()

    def bind(name: str) -> Any:
        return table.c[name].type._cached_bind_processor(connection.dialect)

    constants = tuple(
        value if (processor := bind(name)) is None or value is None else processor(value)
        for name, value in shared.items()
    )
    to_json = bind("content")
    params = [
        (key, client, branch, to_json(content), *constants) for key, client, branch, content in rows
    ]
    columns = [*_PER_ROW, *shared]
    placeholders = ", ".join("?" for _ in columns)
    result = await connection.exec_driver_sql(
        f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({placeholders}) "
        "ON CONFLICT (idempotency_key) DO NOTHING",
        params,
    )
    return int(result.rowcount)


async def _known_keys(session: AsyncSession, keys: list[str]) -> set[str]:
    """Keys already in the outbox: a rerun skips rendering them (the insert would skip them)."""
    if not keys:
        return set()
    found = await session.scalars(
        select(Message.idempotency_key).where(Message.idempotency_key.in_(keys))
    )
    return set(found)

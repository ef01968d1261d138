"""Channels: one small adapter per way of reaching a client, behind one interface.

An adapter's `send` returns a typed outcome, never a bare bool: `Sent` with the provider's
message id, `Transient` (try again later, maybe after `retry_after`), or `Permanent` (this
address will never work through this channel: fall through to the next channel of the
plan). The registry is an explicit dict built by the composition root (autoloyal/), so
adding a channel (SMS providers, e-mail, MAX) touches gateway/ and config only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

CONTACTS: Mapping[str, str] = {"telegram": "telegram_id", "sms": "phone", "email": "email"}
"""Which column of the client holds each channel's address."""


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One request to one channel: the rendered parts for that channel and the address."""

    message_id: int
    client_id: int
    channel: str
    address: str
    kind: str
    content: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Sent:
    provider_id: str | None = None


@dataclass(frozen=True, slots=True)
class Transient:
    """Try again later; `retry_after` seconds is the server's own word, and binds us."""

    error: str
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class Permanent:
    """This message will never go through this channel.

    `unreachable`: the address itself is dead (blocked bot, invalid number), so later
    messages skip this channel for the client until the address changes. When False the
    fault is in this one message (e.g. text Telegram cannot parse).
    """

    error: str
    unreachable: bool = True


SendResult = Sent | Transient | Permanent


class Channel(Protocol):
    """What the dispatcher needs of a channel adapter."""

    name: str
    destination: str
    """Where messages go, for the log: a server's URL or a file; never a secret."""
    rate_per_second: float | None
    """Requests per second for the whole channel; None: no limit."""
    address_rate_per_second: float | None
    """Requests per second to one address (one chat); None: no limit."""

    async def send(self, message: Outgoing) -> SendResult: ...

    async def close(self) -> None: ...

"""Channels: one small adapter per way of reaching a client, behind one interface.

An adapter's `send` returns a typed outcome, never a bare bool: `Sent` with the provider's
message id (and the price, when the provider tells it), `Transient` (try again later, maybe
after `retry_after`), `Permanent` (this address will never work through this channel: fall
through to the next channel of the plan), or `Halted` (the channel itself cannot send: no
money on the account, credentials refused; it rests, the message waits, staff are told).
The registry is an explicit dict built by the composition root (autoloyal/), so
adding a channel (SMS providers, e-mail, MAX) touches gateway/ and config only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
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
    account: str | None = None
    """The sender account the message asked for (an e-mail account); None: the default."""


@dataclass(frozen=True, slots=True)
class Sent:
    """The provider took the message. `cost` is its price in the account's currency, when
    the provider said it; `sender` names the account it went out through (`email:promo`)."""

    provider_id: str | None = None
    cost: Decimal | None = None
    sender: str | None = None


@dataclass(frozen=True, slots=True)
class Transient:
    """Try again later.

    `retry_after` is the server pacing us (429, "too many requests") and binds the whole
    channel: nothing leaves until it has passed, then this message goes first, and the try
    is not counted against `max_attempts`, since nothing failed. Leave it None for faults.
    """

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


@dataclass(frozen=True, slots=True)
class Halted:
    """The channel cannot send anything now: the account has no money, the provider refused
    the credentials or the sender name. The message waits without losing a try, the channel
    rests for `pause` seconds, and staff are alerted with `error`."""

    error: str
    pause: float = 600.0


SendResult = Sent | Transient | Permanent | Halted


@dataclass(frozen=True, slots=True)
class Sender:
    """An account a channel sends through: its name on record, and its daily limit."""

    name: str
    daily_limit: int | None = None


class UnknownAccount(LookupError):
    """A message asked for a sender account the channel does not have."""


class Channel(Protocol):
    """What the dispatcher needs of a channel adapter."""

    name: str
    destination: str
    """Where messages go, for the log: a server's URL or a file; never a secret."""
    rate_per_second: float | None
    """Requests per second for the whole channel; None: no limit."""
    address_rate_per_second: float | None
    """Requests per second to one address (one chat); None: no limit."""

    def sender(self, account: str | None) -> Sender:
        """The account `account` names (None: the default); raises UnknownAccount."""
        ...

    async def send(self, message: Outgoing) -> SendResult: ...

    async def close(self) -> None: ...

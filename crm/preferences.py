"""A client's own word on advertising: signed unsubscribe links, opt-outs, stop words.

Every message can carry a personal link `/u/{token}`. The token names the client (and
the campaign whose message carried it, so a campaign counts the opt-outs it caused) and is
signed with the installation's secret, so nobody can change another client's settings by
guessing. An opt-out writes the consent rows the dispatcher reads before every send, so it
takes effect for every message not yet sent, and records a `consent_event`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.names import given_name
from gateway.channels import CONTACTS
from gateway.consent import ADVERTISING, ALL_CHANNELS, PURPOSES, SERVICE, allowed
from gateway.outbox import CHANNELS
from storage.bulk import conflict_insert
from storage.models import AppSecret, Client, ClientConsent, ConsentEvent
from storage.outbox import InboundSms, Message

LINK_SECRET = "unsubscribe-links"
"""The name of the secret that signs unsubscribe links, in `app_secret`."""

PAGE = "unsubscribe page"
ONE_CLICK = "one-click"
STOP_WORD = "sms stop word"
BOT = "bot"
SOURCES = (PAGE, ONE_CLICK, STOP_WORD, BOT)

STOP_WORDS = frozenset(
    {"стоп", "stop", "отписка", "отписаться", "unsubscribe", "нет", "отказ", "end", "cancel"}
)
"""A reply that is one of these words (any case, punctuation around ignored) opts out."""

_SIGNATURE_BYTES = 12
_BASE64URL = re.compile(r"[A-Za-z0-9_-]{1,64}")


class BadLink(ValueError):
    """A token that was not made by us (mistyped, cut short, or forged)."""


@dataclass(frozen=True, slots=True)
class LinkToken:
    client_id: int
    campaign_id: int | None


class LinkSigner:
    """Makes and reads the tokens of unsubscribe links; `base_url` is where `/u/` is served."""

    def __init__(self, secret: bytes, base_url: str) -> None:
        self._secret = secret
        self.base_url = base_url.rstrip("/")

    def token(self, client_id: int, campaign_id: int | None = None) -> str:
        payload = _varint(client_id) + _varint(campaign_id or 0)
        return _b64(payload) + "." + _b64(self._sign(payload))

    def url(self, client_id: int, campaign_id: int | None = None) -> str:
        return f"{self.base_url}/u/{self.token(client_id, campaign_id)}"

    def read(self, token: str) -> LinkToken:
        head, dot, tail = token.partition(".")
        try:
            payload, signature = _unb64(head), _unb64(tail)
        except ValueError:
            raise BadLink("the link is damaged") from None
        if not dot or not hmac.compare_digest(signature, self._sign(payload)):
            raise BadLink("the link is damaged")
        try:
            client_id, rest = _read_varint(payload)
            campaign_id, rest = _read_varint(rest)
        except ValueError:
            raise BadLink("the link is damaged") from None
        if rest or client_id <= 0:
            raise BadLink("the link is damaged")
        return LinkToken(client_id, campaign_id or None)

    def _sign(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, b"u1:" + payload, hashlib.sha256).digest()[:_SIGNATURE_BYTES]


async def link_secret(session: AsyncSession, now: datetime) -> bytes:
    """The installation's link-signing key, made on first use and the same for every process."""
    await session.execute(
        conflict_insert(session, AppSecret)
        .values(name=LINK_SECRET, value=secrets.token_urlsafe(32), created_at=now)
        .on_conflict_do_nothing(index_elements=["name"])
    )
    value = await existing_link_secret(session)
    assert value is not None
    return value


async def existing_link_secret(session: AsyncSession) -> bytes | None:
    """The link-signing key if one was made; None before the first link (reads only, so a
    page visit never writes)."""
    value = await session.scalar(select(AppSecret.value).where(AppSecret.name == LINK_SECRET))
    return None if value is None else value.encode()


@dataclass(frozen=True, slots=True)
class Preferences:
    """What the page shows: who, which channels they can be reached by, and what they allow."""

    client_id: int
    name: str
    """How the page greets them: "Иван Петрович"; "" when unknown."""
    reachable: tuple[str, ...]
    """Channels the client has an address for, in CHANNELS order."""
    advertising: dict[str, bool]
    """{channel: advertising allowed} for every channel in CHANNELS."""
    service: dict[str, bool] = field(default_factory=dict)
    """{channel: service messages allowed} (reminders, surveys) for every channel."""
    decided: frozenset[str] = frozenset()
    """Channels whose advertising the client (or the dealer's records) spoke about: a row
    for the channel or the blanket `all` row. A bot asks about the others."""
    language: str | None = None

    @property
    def any_advertising(self) -> bool:
        return any(self.advertising.values())


async def preferences(session: AsyncSession, client_id: int) -> Preferences | None:
    """The client's advertising settings; None when the client no longer exists."""
    client = await session.get(Client, client_id)
    if client is None:
        return None
    consents = await _consents(session, client_id)
    return Preferences(
        client_id=client_id,
        name=given_name(client.first_name, client.middle_name),
        reachable=tuple(channel for channel in CHANNELS if getattr(client, CONTACTS[channel])),
        advertising={channel: allowed(consents, channel, ADVERTISING) for channel in CHANNELS},
        service={channel: allowed(consents, channel, SERVICE) for channel in CHANNELS},
        decided=frozenset(
            channel
            for channel in CHANNELS
            if (channel, ADVERTISING) in consents or (ALL_CHANNELS, ADVERTISING) in consents
        ),
        language=client.language,
    )


async def set_advertising(
    session: AsyncSession,
    client_id: int,
    wanted: Mapping[str, bool],
    *,
    source: str,
    now: datetime,
    campaign_id: int | None = None,
) -> list[str]:
    """Set advertising per channel as the client chose; returns the channels written.

    Each channel the client spoke about gets its own row, so a blanket `all` row (a later
    import of the 1C consent flag) no longer decides for it.
    """
    return await set_consent(
        session,
        client_id,
        wanted,
        purpose=ADVERTISING,
        source=source,
        now=now,
        campaign_id=campaign_id,
    )


async def set_consent(
    session: AsyncSession,
    client_id: int,
    wanted: Mapping[str, bool],
    *,
    purpose: str,
    source: str,
    now: datetime,
    campaign_id: int | None = None,
) -> list[str]:
    """Set one purpose ("advertising" or "service") per channel as the client chose; each
    change is a `consent_event`, and the dispatcher reads the rows before every send.
    Returns the channels whose word changed."""
    unknown = [channel for channel in wanted if channel not in CHANNELS]
    if unknown:
        raise ValueError(f"unknown channel {unknown[0]!r}: use {', '.join(CHANNELS)}")
    if purpose not in PURPOSES:
        raise ValueError(f"unknown purpose {purpose!r}: use {', '.join(PURPOSES)}")
    consents = await _consents(session, client_id)
    changed = []
    for channel, granted in wanted.items():
        if consents.get((channel, purpose)) is granted:
            continue
        await _write(session, client_id, channel, purpose, granted, source, campaign_id, now)
        changed.append(channel)
    return changed


async def set_language(
    session: AsyncSession, client_id: int, language: str | None, now: datetime
) -> None:
    """The language the client reads the bots in; None: their messenger's."""
    client = await session.get(Client, client_id)
    if client is None:
        raise ValueError(f"no client #{client_id}")
    client.language = language
    client.updated_at = now


async def opt_out(
    session: AsyncSession,
    client_id: int,
    channels: Iterable[str] | None = None,
    *,
    source: str,
    now: datetime,
    campaign_id: int | None = None,
) -> list[str]:
    """No more advertising through `channels` (None: through any channel, now or later)."""
    if channels is not None:
        return await set_advertising(
            session,
            client_id,
            dict.fromkeys(channels, False),
            source=source,
            now=now,
            campaign_id=campaign_id,
        )
    changed = await set_advertising(
        session,
        client_id,
        dict.fromkeys(CHANNELS, False),
        source=source,
        now=now,
        campaign_id=campaign_id,
    )
    consents = await _consents(session, client_id)
    if consents.get((ALL_CHANNELS, ADVERTISING)) is not False:
        # Channels added later fall back to the blanket row: it says no too.
        await _write(session, client_id, ALL_CHANNELS, ADVERTISING, False, source, campaign_id, now)
    return changed


def is_stop_word(text: str) -> bool:
    """Does an SMS reply ask us to stop? "СТОП", "stop!", " Стоп. " do; a sentence does not."""
    word = text.strip().strip(".!,;:-—'\"«»()").strip().casefold()
    return word in STOP_WORDS


async def clients_by_phone(session: AsyncSession, phone: str) -> Sequence[int]:
    """Every client with this E.164 number (a family may share one)."""
    return list((await session.scalars(select(Client.id).where(Client.phone == phone))).all())


async def _consents(session: AsyncSession, client_id: int) -> dict[tuple[str, str], bool]:
    rows = await session.execute(
        select(ClientConsent.channel, ClientConsent.purpose, ClientConsent.granted).where(
            ClientConsent.client_id == client_id
        )
    )
    return {(channel, purpose): granted for channel, purpose, granted in rows}


async def _write(
    session: AsyncSession,
    client_id: int,
    channel: str,
    purpose: str,
    granted: bool,
    source: str,
    campaign_id: int | None,
    now: datetime,
) -> None:
    values = {"granted": granted, "changed_at": now, "source": source}
    await session.execute(
        conflict_insert(session, ClientConsent)
        .values(client_id=client_id, channel=channel, purpose=purpose, **values)
        .on_conflict_do_update(index_elements=["client_id", "channel", "purpose"], set_=values)
    )
    session.add(
        ConsentEvent(
            client_id=client_id,
            channel=channel,
            purpose=purpose,
            granted=granted,
            source=source,
            campaign_id=campaign_id,
            at=now,
        )
    )


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _read_varint(data: bytes) -> tuple[int, bytes]:
    value = shift = 0
    for index, byte in enumerate(data):
        if index >= 9:
            break
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, data[index + 1 :]
    raise ValueError("truncated number")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    if not _BASE64URL.fullmatch(text):
        raise ValueError("not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError):
        raise ValueError("not base64url") from None


async def take_sms_reply(
    session: AsyncSession,
    *,
    provider: str,
    phone: str,
    text: str,
    provider_message_id: str | None,
    now: datetime,
) -> str:
    """Record an SMS a client sent us; a stop word turns SMS advertising off for every
    client with that number. Returns what was done: "opt-out", "unknown number", "kept",
    or "repeated" (the provider sent the same reply twice)."""
    if provider_message_id is not None:
        seen = await session.scalar(
            select(InboundSms.id).where(
                InboundSms.provider == provider,
                InboundSms.provider_message_id == provider_message_id,
            )
        )
        if seen is not None:
            return "repeated"
    clients = await clients_by_phone(session, phone)
    if not clients:
        action = "unknown number"
    elif is_stop_word(text):
        action = "opt-out"
        for client_id in clients:
            campaign_id = await session.scalar(
                select(Message.campaign_id)
                .where(Message.client_id == client_id, Message.channel == "sms")
                .where(Message.sent_at.is_not(None))
                .order_by(Message.sent_at.desc())
                .limit(1)
            )
            await opt_out(
                session, client_id, ["sms"], source=STOP_WORD, now=now, campaign_id=campaign_id
            )
    else:
        action = "kept"
    session.add(
        InboundSms(
            provider=provider,
            provider_message_id=provider_message_id,
            phone=phone,
            text=text[:2000],
            client_id=clients[0] if clients else None,
            action=action,
            received_at=now,
        )
    )
    return action

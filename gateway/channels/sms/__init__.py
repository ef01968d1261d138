"""SMS providers: one adapter per provider's HTTP API, behind the channel interface.

Every adapter sends `content["text"]` to the E.164 number in `address`, maps the provider's
answers onto our outcomes (a bad number is `Permanent`, no money or refused credentials
`Halted`, 5xx and timeouts `Transient`), reports the price when the provider gives it, and
understands the provider's delivery receipts: pushed to `/webhooks/sms/{provider}` (parsed
by `callback`) or fetched by `statuses` for the messages sent in the last day.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

import aiohttp
import phonenumbers

from gateway.channels import Channel, Outgoing, Permanent, Sender, Transient
from gateway.logsafe import loggable

DELIVERED = "delivered"
FAILED = "failed"
PENDING = "pending"
"""Receipt statuses: delivered and failed are final; pending says the operator still tries."""


@dataclass(frozen=True, slots=True)
class SmsAccount:
    """What every provider needs: where its API is, who we are there, how fast we may go."""

    base_url: str
    sender: str = ""
    login: str = ""
    """SMSC's login; unused by SMS.ru."""
    password: str = ""
    """SMS.ru's api_id, SMSC's password or API key, the generic provider's token."""
    rate_per_second: float | None = 10.0
    timeout: float = 15.0


@dataclass(frozen=True, slots=True)
class Receipt:
    """What the operator said about one message we sent."""

    provider_id: str
    status: str
    """DELIVERED, FAILED or PENDING."""
    reason: str | None = None
    """The operator's words for a failure ("абонент недоступен"), as the provider gives them."""
    at: datetime | None = None
    cost: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Inbound:
    """An SMS a client sent us (a reply to a message): where from, and what it says."""

    phone: str
    """E.164, "+79161234567"."""
    text: str
    provider_id: str | None = None
    at: datetime | None = None


@dataclass(frozen=True, slots=True)
class CallbackRequest:
    """A provider's HTTP call to our webhook, as plain data (no aiohttp in the adapters'
    parsing): the query and form fields in the order they came, the headers, the raw body."""

    method: str
    query: Sequence[tuple[str, str]] = ()
    form: Sequence[tuple[str, str]] = ()
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class Callback:
    """What one webhook call carried, and the answer the provider expects back."""

    receipts: Sequence[Receipt] = ()
    inbound: Sequence[Inbound] = ()
    reply: str = "OK"
    content_type: str = "text/plain"
    notes: Sequence[str] = ()
    """What staff should hear about a call that is still answered with `reply`: entries the
    provider wrote in its own format but we can never apply (left out: a time out of range,
    an id too long to be ours) or statuses we do not know (kept as pending). Answering them
    with an error would only make the provider resend for ever. The caller's text in a note
    is already `loggable`."""


class CallbackError(ValueError):
    """A webhook call we cannot use; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


PROVIDER_ID_LIMIT = 128
"""The longest provider id we keep (storage's `provider_message_id` columns are this wide):
a longer one is no message of ours."""


def message_id(value: str, title: str) -> str:
    """A provider's message id from a callback. CallbackError when it cannot be one: empty,
    or holding a NUL, a control character, a lone surrogate (a JSON escape) or U+FFFD (bytes
    read in the wrong charset); no provider writes ids so. A long id is well-formed: see
    `screened`."""
    if not value or not value.isprintable() or "\ufffd" in value:
        raise CallbackError(f"{title}: not a message id: {loggable(value)}")
    return value


def screened(callback: Callback) -> Callback:
    """The callback without receipts and replies whose id is longer than PROVIDER_ID_LIMIT
    (none of ours, and no column would hold it), each left out with a note."""
    notes = list(callback.notes)
    receipts = []
    for receipt in callback.receipts:
        if len(receipt.provider_id) > PROVIDER_ID_LIMIT:
            notes.append(f"left out a receipt for {loggable(receipt.provider_id)}: too long")
        else:
            receipts.append(receipt)
    inbound = []
    for reply in callback.inbound:
        if reply.provider_id is not None and len(reply.provider_id) > PROVIDER_ID_LIMIT:
            notes.append(f"left out an SMS with the id {loggable(reply.provider_id)}: too long")
        else:
            inbound.append(reply)
    if len(notes) == len(callback.notes):
        return callback
    return replace(callback, receipts=receipts, inbound=inbound, notes=notes)


def plain(text: str) -> str:
    """Free text (a client's SMS, an operator's reason) as every database keeps it: a NUL
    (PostgreSQL refuses it) and lone surrogates (no UTF-8 for them; a JSON body can carry
    both as escapes) become U+FFFD."""
    if text.isprintable():
        return text
    return "".join(
        "\ufffd" if char == "\0" or "\ud800" <= char <= "\udfff" else char for char in text
    )


def moment(seconds: int | None) -> datetime | None:
    """A unix time as an aware UTC datetime; None when absent, 0 or less, or past what a
    datetime holds (year 9999)."""
    if seconds is None or seconds <= 0:
        return None
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return None


class SmsProvider(Channel, Protocol):
    """An SMS channel adapter: a Channel that also understands delivery receipts."""

    provider: str
    """"smsru", "smsc" or "generic": the `{provider}` in the webhook's path."""
    can_poll: bool
    """Whether `statuses` asks the provider (False: receipts come only by callback)."""

    async def statuses(self, provider_ids: Sequence[str]) -> list[Receipt]:
        """The current status of messages we sent, by the provider's ids (a poll)."""
        ...

    def callback(self, request: CallbackRequest) -> Callback:
        """Parse a delivery receipt or an inbound SMS pushed by the provider; raises
        CallbackError for a call that is not the provider's or holds a malformed value
        (never another exception, whatever the call holds). What it returns can be stored:
        ids checked by `message_id` and `screened`, free text made `plain`."""
        ...

    def signed(self, request: CallbackRequest) -> bool:
        """True when the call carries the provider's own valid signature (False when the
        provider signs nothing: then only the secret in the URL admits it). Never raises:
        a call it cannot read is not signed."""
        ...


def digits(phone: str) -> str:
    """ "+7 916 123-45-67" -> "79161234567": what most Russian providers take."""
    return "".join(char for char in phone if char.isdigit())


def e164(phone: str, region: str = "RU") -> str | None:
    """A number as a provider reports it ("79161234567", "89161234567", "+7 916 123-45-67")
    in the form clients' phones are stored in ("+79161234567"); None if it is no number."""
    number = digits(phone)
    if not number:
        return None
    for candidate, default_region in ((f"+{number}", None), (number, region)):
        try:
            parsed = phonenumbers.parse(candidate, default_region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(parsed):
            return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return None


def network_failure(provider: str, exc: BaseException, timeout: float) -> Transient:
    """A request that got no answer is worth trying again; says why in the provider's name."""
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return Transient(f"{provider}: no answer in {timeout:g} s")
    if isinstance(exc, aiohttp.ClientResponseError):
        return Transient(f"{provider}: HTTP {exc.status} {exc.message}")
    return Transient(f"{provider}: {type(exc).__name__}: {exc}")


def new_session(timeout: float) -> aiohttp.ClientSession:
    """One HTTP session per adapter, kept for its lifetime (connections are reused)."""
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=timeout),
        raise_for_status=False,
        headers={"User-Agent": "autoloyal"},
    )


class HttpProvider:
    """What every adapter shares: the account, one sender, one HTTP session made on first
    use inside the running loop and kept (its connections are reused) until `close`."""

    name = "sms"
    provider = ""
    title = ""
    """The provider's name in errors ("SMS.ru")."""
    address_rate_per_second: float | None = None

    def __init__(self, account: SmsAccount, destination: str) -> None:
        self.account = account
        self.destination = destination.rstrip("/")
        self.rate_per_second: float | None = account.rate_per_second
        self._session: aiohttp.ClientSession | None = None

    def sender(self, account: str | None) -> Sender:
        """SMS has one account: `account` (an e-mail account's name) means nothing here."""
        return Sender(self.provider)

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = new_session(self.account.timeout)
        return self._session

    def _phone(self, message: Outgoing) -> str | Permanent:
        """The number's digits, as the providers take it; Permanent when it is no number."""
        phone = digits(message.address)
        if not 10 <= len(phone) <= 15:
            return Permanent(f"{self.title}: not a phone number: {message.address!r}")
        return phone

    async def _ask(
        self, path: str, form: Mapping[str, str]
    ) -> tuple[dict[str, Any], str] | Transient:
        """POST a form to `path` under the API and read the JSON object it answers, with the
        body as text (for errors); a Transient says why there is none: no answer, 429 (with
        its Retry-After), 5xx, or anything but a JSON object with HTTP 200."""
        try:
            async with self._http().post(self.destination + path, data=dict(form)) as response:
                status, headers = response.status, response.headers
                body = (await response.read()).decode("utf-8", errors="replace")
        except (aiohttp.ClientError, TimeoutError) as exc:
            return network_failure(self.title, exc, self.account.timeout)
        if status == 429:
            return Transient(f"{self.title}: too many requests (HTTP 429)", retry_after(headers))
        if status >= 500:
            return Transient(f"{self.title}: HTTP {status}: {shorten(body)}")
        answer = json_object(body)
        if status != 200 or answer is None:
            return Transient(f"{self.title}: unexpected answer (HTTP {status}): {shorten(body)}")
        return answer, body

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


RAW_LIMIT = 200
"""Characters of an unexpected answer kept in an error."""


def shorten(text: str) -> str:
    """An unexpected answer, on one line and at most RAW_LIMIT characters, for an error."""
    text = " ".join(text.split())
    return text if len(text) <= RAW_LIMIT else text[: RAW_LIMIT - 1] + "…"


def decimal_or_none(value: object) -> Decimal | None:
    """A price as the provider wrote it (number or text); None when absent or not a number."""
    if value is None or isinstance(value, bool) or value == "":
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def json_object(body: str) -> dict[str, Any] | None:
    """A JSON object (prices kept as Decimal); None for anything else."""
    try:
        value = json.loads(body, parse_float=Decimal)
    except (ValueError, RecursionError):  # RecursionError: arrays nested thousands deep
        return None
    return value if isinstance(value, dict) else None


def whole_number(value: object) -> int | None:
    """A code as the provider wrote it (number or text); None for anything else."""
    if isinstance(value, bool) or not isinstance(value, int | str | Decimal):
        return None
    try:
        return int(str(value).strip())
    except ValueError:
        return None


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from a Retry-After header in seconds; None when absent or not a number."""
    try:
        seconds = float(headers.get("Retry-After", ""))
    except ValueError:
        return None
    return seconds if seconds >= 0 else None

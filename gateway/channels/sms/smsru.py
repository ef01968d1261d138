"""SMS.ru: https://sms.ru/sms/send and /sms/status with json=1, and its api callback.

Wire format, as SMS.ru documents it (sms.ru/api/send, /api/status, /api/callback):

- send: POST `api_id`, `to` (digits), `msg`, `from`, `json=1`. The answer has a request-wide
  `status`/`status_code` (100 when the request itself is fine) and, under `sms`, one entry per
  number with its own `status_code` and, when accepted, `sms_id` (and `cost` when SMS.ru tells
  it: we read it when present, the documented example shows only `sms_id`).
- status: `sms_id` takes a comma-separated list; each id gets `status_code` (-1: not found;
  100-102 on the way; 103 delivered; 104-108, 150 not delivered), `status_text` and `cost`.
- callback: a POST whose `data[]` fields each hold lines "sms_status\\n<id>\\n<code>\\n<unix
  time>" (other kinds, e.g. callcheck_status, are not ours); SMS.ru repeats the call until
  it gets the body "100". The field `hash` is sha256(api_id + the data[] values joined in
  order): SMS.ru's own PHP example and independent client code agree on that.

How codes map: a bad or unroutable number (202, 207, 209, 214, 215) is `Permanent` for the
address; a refused text (203, 205, 216) is `Permanent` for this message only; no money (201),
wrong api_id (200, 300, 301), unconfirmed account (302), unapproved sender name (204) and the
account's daily limit (206) halt the channel; 220, 230-232, 500 and anything unknown are
`Transient`.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

from gateway.channels import (
    Halted,
    Outgoing,
    Permanent,
    SendResult,
    Sent,
    Transient,
)
from gateway.channels.sms import (
    DELIVERED,
    FAILED,
    PENDING,
    Callback,
    CallbackError,
    CallbackRequest,
    HttpProvider,
    Receipt,
    SmsAccount,
    decimal_or_none,
    message_id,
    moment,
    screened,
    shorten,
    whole_number,
)
from gateway.logsafe import loggable

log = logging.getLogger("autoloyal.sms.smsru")

NAME = "SMS.ru"
BASE_URL = "https://sms.ru"
"""Where the API is when the account names no base_url."""
STATUS_BATCH = 100
"""Ids asked about in one /sms/status call."""

_HALT, _DEAD, _REFUSED, _RETRY = "halt", "dead", "refused", "retry"

# code -> (outcome, what it means / what staff must do, retry_after for transient ones)
_CODES: Mapping[int, tuple[str, str, float | None]] = {
    200: (_HALT, "the api_id is wrong: check the SMS.ru api_id in the settings", None),
    201: (_HALT, "not enough money on the account: top it up", None),
    202: (_DEAD, "the number is wrong or has no route", None),
    203: (_REFUSED, "the message has no text", None),
    204: (_HALT, "the sender name is not approved: approve it at SMS.ru or change it", None),
    205: (_REFUSED, "the message is too long (over 8 SMS)", None),
    206: (_HALT, "the account's daily sending limit is reached: raise it at SMS.ru", None),
    207: (_DEAD, "there is no route to this number", None),
    208: (_REFUSED, "the time parameter is wrong", None),
    209: (_DEAD, "the number is in the account's stop list", None),
    214: (_DEAD, "the number is abroad and the account sends to Russian numbers only", None),
    215: (_DEAD, "the number is in SMS.ru's stop list (its owner complained of spam)", None),
    216: (_REFUSED, "the text has a forbidden word", None),
    220: (_RETRY, "the service is temporarily unavailable", None),
    230: (_RETRY, "the daily limit of messages to this number is reached", 3600.0),
    231: (_RETRY, "the limit of identical messages to this number per minute is reached", 60.0),
    232: (_RETRY, "the limit of identical messages to this number per day is reached", 3600.0),
    300: (_HALT, "the token is wrong (expired, or the IP changed): check the settings", None),
    301: (_HALT, "the api_id or login/password is wrong: check the SMS.ru api_id", None),
    302: (_HALT, "the account is not confirmed: confirm it at SMS.ru", None),
    500: (_RETRY, "SMS.ru's server failed", None),
}

_PENDING_CODES = frozenset({100, 101, 102})
_DELIVERED_CODES = frozenset({103, 110})  # 110: read (Viber), so delivered too
_FAILED_CODES: Mapping[int, str] = {
    104: "Не может быть доставлено: время жизни истекло",
    105: "Не может быть доставлено: удалено оператором",
    106: "Не может быть доставлено: сбой в телефоне",
    107: "Не может быть доставлено: неизвестная причина",
    108: "Не может быть доставлено: отклонено",
    150: "Не может быть доставлено: не найден маршрут на данный номер",
}
_NOT_FOUND = -1
_KNOWN_CODES = _PENDING_CODES | _DELIVERED_CODES | frozenset(_FAILED_CODES)
_MAX_FIELDS = 1000
"""Fields read from a raw body, as many as aiohttp reads from a form."""


class SmsRu(HttpProvider):
    """Sends through SMS.ru with the account's api_id (`SmsAccount.password`)."""

    name = "sms"
    provider = "smsru"
    title = NAME
    can_poll = True

    def __init__(self, account: SmsAccount) -> None:
        super().__init__(account, account.base_url or BASE_URL)

    async def send(self, message: Outgoing) -> SendResult:
        phone = self._phone(message)
        if isinstance(phone, Permanent):
            return phone
        form = {"api_id": self.account.password, "to": phone, "msg": message.content["text"]}
        if self.account.sender:
            form["from"] = self.account.sender
        form["json"] = "1"
        asked = await self._ask("/sms/send", form)
        if isinstance(asked, Transient):
            return asked
        answer, body = asked
        code = whole_number(answer.get("status_code"))
        if code != 100:
            return _refusal(code, answer, body)
        numbers = answer.get("sms")
        entry: Any = None
        if isinstance(numbers, dict):
            entry = numbers.get(phone)
            if entry is None and len(numbers) == 1:
                entry = next(iter(numbers.values()))
        if not isinstance(entry, dict):
            return Transient(f"{NAME}: no entry for the number in the answer: {shorten(body)}")
        code = whole_number(entry.get("status_code"))
        if code != 100:
            return _refusal(code, entry, body)
        sms_id = entry.get("sms_id")
        if sms_id in (None, ""):
            return Transient(f"{NAME}: accepted without an sms_id: {shorten(body)}")
        return Sent(str(sms_id), decimal_or_none(entry.get("cost")), self.provider)

    async def statuses(self, provider_ids: Sequence[str]) -> list[Receipt]:
        """One /sms/status call per 100 ids; ids SMS.ru does not know are left out. Raises
        RuntimeError when SMS.ru cannot be asked (no answer, refused api_id)."""
        receipts: list[Receipt] = []
        for start in range(0, len(provider_ids), STATUS_BATCH):
            chunk = list(provider_ids[start : start + STATUS_BATCH])
            form = {"api_id": self.account.password, "sms_id": ",".join(chunk), "json": "1"}
            asked = await self._ask("/sms/status", form)
            if isinstance(asked, Transient):
                raise RuntimeError(asked.error)
            answer, body = asked
            code = whole_number(answer.get("status_code"))
            if code != 100:
                raise RuntimeError(_refusal(code, answer, body).error)
            found = answer.get("sms")
            if not isinstance(found, dict):
                continue
            for sms_id in chunk:
                entry = found.get(sms_id)
                if not isinstance(entry, dict) or entry.get("status") != "OK":
                    continue
                code = whole_number(entry.get("status_code"))
                if code is None or code == _NOT_FOUND:
                    continue
                text = entry.get("status_text")
                reason = text if isinstance(text, str) and text else None
                receipts.append(
                    _receipt(sms_id, code, None, reason, decimal_or_none(entry.get("cost")))
                )
        return receipts

    def callback(self, request: CallbackRequest) -> Callback:
        """The sms_status entries of data[]; other kinds are skipped. An entry with a time
        out of range is left out with a note, a code we do not know is kept as pending with
        one: both are SMS.ru's own format, and only "100" stops it resending."""
        entries = _data_entries(request)
        if not entries:
            raise CallbackError(f"{NAME}: the call carries no data[] entries")
        receipts: list[Receipt] = []
        notes: list[str] = []
        for entry in entries:
            lines = entry.replace("\r\n", "\n").split("\n")
            if lines[0] != "sms_status":
                continue  # callcheck_status and the like: not about our messages
            code = whole_number(lines[2]) if len(lines) >= 4 else None
            unix = whole_number(lines[3]) if len(lines) >= 4 else None
            if code is None or unix is None:
                raise CallbackError(f"{NAME}: a garbled sms_status entry: {loggable(entry)}")
            sms_id = message_id(lines[1], NAME)
            at = moment(unix)
            if at is None:
                notes.append(
                    f"left out {loggable(sms_id)}: its time {loggable(lines[3])} is out of range"
                )
                continue
            if code not in _KNOWN_CODES:
                notes.append(
                    f"{loggable(sms_id)}: status code {loggable(lines[2])} is unknown, "
                    "kept as pending"
                )
            receipts.append(_receipt(sms_id, code, at))
        return screened(Callback(receipts=receipts, reply="100", notes=notes))

    def signed(self, request: CallbackRequest) -> bool:
        given = (_field(request, "hash") or "").strip().lower()
        if not _is_sha256(given) or not self.account.password:
            return False
        joined = self.account.password + "".join(_data_entries(request))
        expected = hashlib.sha256(joined.encode("utf-8", "surrogatepass")).hexdigest()
        return hmac.compare_digest(expected, given)


def _receipt(
    sms_id: str,
    code: int,
    at: datetime | None,
    text: str | None = None,
    cost: Decimal | None = None,
) -> Receipt:
    if code in _DELIVERED_CODES:
        return Receipt(sms_id, DELIVERED, None, at, cost)
    if code in _FAILED_CODES:
        return Receipt(sms_id, FAILED, text or _FAILED_CODES[code], at, cost)
    # 100-102 and codes we do not know: the operator has not said its last word.
    return Receipt(sms_id, PENDING, None, at, cost)


def _refusal(
    code: int | None, answer: Mapping[str, Any], body: str
) -> Halted | Permanent | Transient:
    """The outcome for a request-wide or per-number code other than 100."""
    known = _CODES.get(code) if code is not None else None
    if known is None:
        said = answer.get("status_text")
        detail = said if isinstance(said, str) and said else shorten(body)
        return Transient(f"{NAME}: code {code}: {detail}")
    kind, meaning, retry_after = known
    error = f"{NAME}: {meaning} ({code})"
    if kind == _HALT:
        return Halted(error)
    if kind == _DEAD:
        return Permanent(error, unreachable=True)
    if kind == _REFUSED:
        return Permanent(error, unreachable=False)
    return Transient(error, retry_after)


def _form(request: CallbackRequest) -> list[tuple[str, str]]:
    """The form fields; parsed from the raw body when the caller left `form` empty (none
    when that body is not UTF-8 or holds more fields than a form may)."""
    if request.form or not request.body:
        return list(request.form)
    try:
        text = request.body.decode("utf-8")
        return parse_qsl(text, keep_blank_values=True, max_num_fields=_MAX_FIELDS)
    except ValueError:  # UnicodeDecodeError, or too many fields
        return []


def _is_sha256(text: str) -> bool:
    return len(text) == 64 and all(char in "0123456789abcdef" for char in text)


def _data_entries(request: CallbackRequest) -> list[str]:
    """The values of data[] (sent as `data[]`, `data[0]`, `data[1]`...), in order."""
    return [
        value
        for key, value in (*request.query, *_form(request))
        if key == "data" or key.startswith("data[")
    ]


def _field(request: CallbackRequest, name: str) -> str | None:
    for key, value in (*_form(request), *request.query):
        if key == name:
            return value
    return None

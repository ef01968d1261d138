"""SMSC.ru: /sys/send.php and /sys/status.php with fmt=3 (JSON), and its handler calls.

Wire format, as SMSC documents it (smsc.ru/api/http, its English mirror smscentre.com):

- send: `login` + `psw` (or `apikey` alone), `phones`, `mes`, `sender`, `fmt=3`,
  `charset=utf-8` (SMSC reads windows-1251 without it) and `cost=3`, which makes the answer
  carry the price: {"id": 5, "cnt": 1, "cost": "2.50", "balance": "97.50"}. A failure is
  {"error": "...", "error_code": N}: 1 bad parameters, 2 bad login/password or IP not
  allowed, 3 no money, 4 IP temporarily blocked, 5 bad date, 6 message forbidden (by its text
  or the sender name), 7 bad number format, 8 cannot be delivered to the number, 9 repeated
  or too many concurrent requests (wait a minute).
- status: status.php needs the id *and* the phone, so our provider id is "<id>:<digits>".
  The answer is {"status": S, "last_timestamp": T, "err": E, ...}; S: -3 not found, -1
  waiting, 0 handed to the operator, 1 delivered, 2 read, 4 link clicked, 3 expired, 20
  cannot deliver, 22 wrong number, 23 forbidden, 24 no money, 25 unavailable number; E is the
  operator's error code (1 no such subscriber, 6 offline, 13 blocked...). A batch form exists
  (comma lists of ids and phones) but SMSC allows only one such call a minute and documents
  its JSON less clearly, so we ask per message.
- handler calls (smsc.ru/api/http/miscellaneous/callback): a delivery status comes with
  `id`, `phone`, `status`, `time`, `ts`, `err`; an incoming SMS with `id`, `phone` (the
  sender), `mes`, `to`, `sent`, `time`. The parameters are in windows-1251 unless the handler
  URL carries `charset=utf-8` (recommended); `fmt=3` in that URL makes them a JSON body. Any
  200 answer will do. With `md5` or `sha1` in the handler URL SMSC adds that hash of the call;
  SMSC's page breaks off before the formula, so we rely on the reading integrators use:
  hash("<id>:<phone>:<status>:<password>") for a status and, by the same pattern,
  hash("<id>:<phone>:<mes>:<password>") for an incoming SMS.
"""

from __future__ import annotations

import codecs
import hashlib
import hmac
import json
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
    Inbound,
    Receipt,
    SmsAccount,
    decimal_or_none,
    digits,
    e164,
    message_id,
    moment,
    plain,
    screened,
    shorten,
    whole_number,
)
from gateway.logsafe import loggable

log = logging.getLogger("autoloyal.sms.smsc")

NAME = "SMSC"
BASE_URL = "https://smsc.ru"
"""Where the API is when the account names no base_url (www2.smsc.ru is SMSC's spare)."""
_HALT, _DEAD, _REFUSED, _RETRY = "halt", "dead", "refused", "retry"

_SEND_ERRORS: Mapping[int, tuple[str, str, float | None]] = {
    1: (_REFUSED, "the request's parameters are wrong", None),
    2: (_HALT, "login or password refused, or this IP is not allowed: check the settings", None),
    3: (_HALT, "not enough money on the account: top it up", None),
    4: (_HALT, "this IP is temporarily blocked after repeated errors: check the settings", None),
    5: (_REFUSED, "the date format is wrong", None),
    # SMSC does not tell the text from the sender name here; a bad text is by far the more
    # common cause, and refusing one message is safer than halting every message.
    6: (_REFUSED, "the message is forbidden (by its text or the sender name)", None),
    7: (_DEAD, "the phone number is malformed", None),
    8: (_DEAD, "the message cannot be delivered to this number", None),
    9: (_RETRY, "too many identical or concurrent requests", 60.0),
}
_STATUS_ERRORS = frozenset({2, 4})
"""status.php errors that concern the whole account: stop asking."""

_CHARSETS = frozenset({"cp1251", "utf-8", "koi8-r"})
"""The handler URL's charsets, as `codecs.lookup` names them."""
_NOT_FOUND = -3
_PENDING_STATUSES = frozenset({-1, 0})
_DELIVERED_STATUSES = frozenset({1, 2, 4})
_FAILED_STATUSES: Mapping[int, str] = {
    3: "Просрочено",
    20: "Невозможно доставить",
    22: "Неверный номер",
    23: "Запрещено",
    24: "Недостаточно средств",
    25: "Недоступный номер",
}
_KNOWN_STATUSES = _PENDING_STATUSES | _DELIVERED_STATUSES | frozenset(_FAILED_STATUSES)
_OPERATOR_ERRORS: Mapping[int, str] = {
    1: "Абонент не существует",
    6: "Абонент не в сети",
    11: "Нет услуги SMS",
    12: "Ошибка в телефоне абонента",
    13: "Абонент заблокирован",
    21: "Нет поддержки сервиса",
    200: "Виртуальная отправка",
    219: "Замена SIM-карты",
    220: "Переполнена очередь у оператора",
    240: "Абонент занят",
    243: "Не заключен договор",
    244: "Рассылки запрещены",
    245: "Статус не получен",
    246: "Ограничение по времени",
    247: "Превышен лимит сообщений",
    248: "Нет маршрута",
    249: "Неверный формат номера",
    250: "Номер запрещен настройками",
    251: "Превышен лимит на один номер",
    252: "Номер запрещен",
    253: "Запрещено спам-фильтром",
    254: "Незарегистрированный sender id",
    255: "Отклонено оператором",
}


class Smsc(HttpProvider):
    """Sends through SMSC.ru with `login` and `password` (or an API key as `password` and an
    empty `login`)."""

    name = "sms"
    provider = "smsc"
    title = NAME
    can_poll = True

    def __init__(self, account: SmsAccount) -> None:
        super().__init__(account, account.base_url or BASE_URL)

    def _auth(self) -> dict[str, str]:
        if self.account.login:
            return {"login": self.account.login, "psw": self.account.password}
        return {"apikey": self.account.password}

    async def send(self, message: Outgoing) -> SendResult:
        phone = self._phone(message)
        if isinstance(phone, Permanent):
            return phone
        form = self._auth() | {"phones": phone, "mes": message.content["text"]}
        if self.account.sender:
            form["sender"] = self.account.sender
        form |= {"fmt": "3", "charset": "utf-8", "cost": "3"}
        asked = await self._ask("/sys/send.php", form)
        if isinstance(asked, Transient):
            return asked
        answer, body = asked
        if "error_code" in answer or "error" in answer:
            return _refusal(answer, body)
        sms_id = answer.get("id")
        if sms_id in (None, ""):
            return Transient(f"{NAME}: accepted without an id: {shorten(body)}")
        return Sent(f"{_text(sms_id)}:{phone}", decimal_or_none(answer.get("cost")), self.provider)

    async def statuses(self, provider_ids: Sequence[str]) -> list[Receipt]:
        """Asks status.php about each message in turn; leaves out ids SMSC does not know.
        Stops at an answer about the whole account (refused login, blocked IP, too many
        requests): returns what it has, or raises RuntimeError when it has nothing."""
        receipts: list[Receipt] = []
        for provider_id in provider_ids:
            sms_id, _, phone = provider_id.rpartition(":")
            if not sms_id or not phone:
                log.warning("%s: not an SMSC message id: %r", NAME, provider_id)
                continue
            form = self._auth() | {"phone": phone, "id": sms_id, "fmt": "3", "charset": "utf-8"}
            asked = await self._ask("/sys/status.php", form)
            if isinstance(asked, Transient):
                return _partial(receipts, asked.error)
            answer, _body = asked
            if "error_code" in answer:
                code = whole_number(answer.get("error_code"))
                problem = f"{NAME}: status.php: {answer.get('error')} ({code})"
                if code in _STATUS_ERRORS or code == 9:
                    return _partial(receipts, problem)
                log.warning("%s (for %s)", problem, provider_id)
                continue
            code = whole_number(answer.get("status"))
            if code is None or code == _NOT_FOUND:
                continue
            at, err = _timestamp(answer.get("last_timestamp")), whole_number(answer.get("err"))
            receipts.append(
                _receipt(provider_id, code, err, at, decimal_or_none(answer.get("cost")))
            )
        return receipts

    def callback(self, request: CallbackRequest) -> Callback:
        """A delivery status or an incoming SMS. A status we do not know is kept as pending,
        with a note."""
        fields = _fields(request)
        phone = fields.get("phone", "")
        if "mes" in fields:
            sender = e164(phone)
            if sender is None:
                raise CallbackError(
                    f"{NAME}: an incoming SMS without a valid phone: {loggable(phone)}"
                )
            at = _timestamp(fields.get("sent")) or _timestamp(fields.get("time"))
            sms_id = message_id(fields["id"], NAME) if fields.get("id") else None
            inbound = Inbound(sender, plain(fields["mes"]), sms_id, at)
            return screened(Callback(inbound=[inbound]))
        sms_id, status = fields.get("id", ""), whole_number(fields.get("status"))
        if not sms_id or not digits(phone) or status is None:
            raise CallbackError(f"{NAME}: neither a delivery status nor an incoming SMS")
        provider_id = f"{message_id(sms_id, NAME)}:{digits(phone)}"
        at = _timestamp(fields.get("time")) or _timestamp(fields.get("ts"))
        receipt = _receipt(provider_id, status, whole_number(fields.get("err")), at)
        notes = []
        if status not in _KNOWN_STATUSES:
            notes.append(
                f"{loggable(provider_id)}: status {loggable(fields['status'])} is unknown, "
                "kept as pending"
            )
        return screened(Callback(receipts=[receipt], notes=notes))

    def signed(self, request: CallbackRequest) -> bool:
        if not self.account.password:
            return False
        try:
            fields = _fields(request)
            charset = _charset(request)
        except CallbackError:
            return False
        third = fields["mes"] if "mes" in fields else fields.get("status", "")
        signed_text = f"{fields.get('id', '')}:{fields.get('phone', '')}:{third}"
        payload = f"{signed_text}:{self.account.password}".encode(charset, "replace")
        checked = False
        for algorithm, size in (("md5", 32), ("sha1", 40)):
            given = _signature(request, fields, algorithm, size)
            if given is None:
                continue
            expected = hashlib.new(algorithm, payload).hexdigest()
            if not hmac.compare_digest(expected, given):
                return False
            checked = True
        return checked


def _receipt(
    provider_id: str,
    status: int,
    err: int | None,
    at: datetime | None,
    cost: Decimal | None = None,
) -> Receipt:
    if status in _DELIVERED_STATUSES:
        return Receipt(provider_id, DELIVERED, None, at, cost)
    if status in _FAILED_STATUSES:
        reason = _OPERATOR_ERRORS.get(err or 0) or _FAILED_STATUSES[status]
        if err and err not in _OPERATOR_ERRORS:
            reason = f"{reason} (код {err})"
        return Receipt(provider_id, FAILED, reason, at, cost)
    # -1 waiting, 0 with the operator, and anything new: not final yet.
    return Receipt(provider_id, PENDING, None, at, cost)


def _refusal(answer: Mapping[str, Any], body: str) -> Halted | Permanent | Transient:
    code = whole_number(answer.get("error_code"))
    known = _SEND_ERRORS.get(code) if code is not None else None
    if known is None:
        said = answer.get("error")
        detail = said if isinstance(said, str) and said else shorten(body)
        return Transient(f"{NAME}: error {code}: {detail}")
    kind, meaning, retry_after = known
    error = f"{NAME}: {meaning} ({code})"
    if kind == _HALT:
        return Halted(error)
    if kind == _DEAD:
        return Permanent(error, unreachable=True)
    if kind == _REFUSED:
        return Permanent(error, unreachable=False)
    return Transient(error, retry_after)


def _partial(receipts: list[Receipt], problem: str) -> list[Receipt]:
    """Stop polling: keep what came so far, or raise when nothing did."""
    if not receipts:
        raise RuntimeError(problem)
    log.warning("%s; stopped after %d statuses", problem, len(receipts))
    return receipts


def _charset(request: CallbackRequest) -> str:
    """The handler URL's charset: one of those SMSC writes in (windows-1251 by default,
    utf-8, koi8-r); CallbackError for any other (a typo in the handler URL, or a codec
    such as base64 that is no text encoding)."""
    for key, value in request.query:
        if key == "charset" and value:
            try:
                name = codecs.lookup(value).name
            except LookupError:
                name = ""
            if name not in _CHARSETS:
                raise CallbackError(f"{NAME}: a charset SMSC does not use: {loggable(value)}")
            return name
    return "cp1251"


def _header(request: CallbackRequest, name: str) -> str:
    return next((v for k, v in request.headers.items() if k.lower() == name), "")


def _fields(request: CallbackRequest) -> dict[str, str]:
    """The call's parameters: query, then the form (re-read from the raw body in the handler
    URL's charset when there is one), then a JSON body (fmt=3)."""
    fields = {key: value for key, value in request.query}
    body = request.body.strip()
    if body.startswith(b"{"):
        text = body.decode(_charset(request), errors="replace")
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:  # RecursionError: nested thousands deep
            raise CallbackError(f"{NAME}: a body that is not JSON: {loggable(exc)}") from None
        if isinstance(data, dict):
            fields |= {str(key): _text(value) for key, value in data.items()}
        return fields
    if body and ("urlencoded" in _header(request, "content-type") or not request.form):
        charset = _charset(request)
        decoded = body.decode(charset, errors="replace")
        fields |= dict(
            parse_qsl(decoded, keep_blank_values=True, encoding=charset, errors="replace")
        )
    else:
        fields |= dict(request.form)
    return fields


def _signature(
    request: CallbackRequest, fields: Mapping[str, str], algorithm: str, size: int
) -> str | None:
    """The hash SMSC sent under `algorithm`; a flag like md5=1 from the handler URL's own
    query is not one."""
    candidates = [fields.get(algorithm, "")]
    candidates += [value for key, value in request.query if key == algorithm]
    for value in candidates:
        value = value.strip().lower()
        if len(value) == size and all(char in "0123456789abcdef" for char in value):
            return value
    return None


def _text(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    return str(value)


def _timestamp(value: object) -> datetime | None:
    """SMSC's times are optional: one out of range is no time (the receipt still counts)."""
    return moment(whole_number(value))

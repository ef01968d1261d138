"""Local fakes of SMS providers that speak their real wire formats over loopback HTTP.

    async with SmsRuServer() as server:
        account = SmsAccount(base_url=server.url, password=server.api_id)
        ...

Each fake records every request it got (`requests`, with the fields parsed), keeps the
messages it accepted (`messages`, by the id it issued), answers with a scenario when told to
(`fail_next(...)` for the next sends, `fail_phone(phone, ...)` for one number), serves status
polls for its ids (`set_status` changes what it says), and builds the exact call the real
provider would make to our webhook (`status_callback`, `inbound_callback`) as a
`ProviderCall`, which gives a `CallbackRequest` or can be POSTed to a URL.

Scenarios every fake knows: "server_error" (HTTP 500), "slow" (answers after `delay`
seconds, longer than any client timeout in the tests), "garbage" (an HTML page), and
"rate_limit" (the provider's own "too many requests"). The rest are per provider; see
`SCENARIOS` on each class.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, ClassVar, Self
from urllib.parse import parse_qsl, urlencode

import aiohttp
from aiohttp import web

from gateway.channels.sms import CallbackRequest

AT = 1_795_500_000
"""The unix time the fakes stamp on callbacks and statuses: 2026-11-24 06:00 UTC (tests' NOW)."""

_COMMON = frozenset({"server_error", "slow", "garbage", "rate_limit"})
_GARBAGE = "<html><body><h1>502 Bad Gateway</h1></body></html>"


def _digits(phone: str) -> str:
    return "".join(char for char in phone if char.isdigit())


@dataclass(frozen=True)
class Seen:
    """One request a fake got: query, form or JSON fields merged into `fields`."""

    method: str
    path: str
    fields: dict[str, Any]
    headers: dict[str, str]
    body: bytes
    query_string: str
    """The raw query string, percent-encoding and all."""
    at: float


@dataclass
class Accepted:
    """A message a fake took; `status` is in the provider's own terms (a code or a word)."""

    id: str
    phone: str
    text: str
    sender: str
    status: Any
    err: Any = None
    """The operator's error (SMSC's err code, the generic fake's reason), if any."""


@dataclass(frozen=True)
class ProviderCall:
    """A call a provider makes to our webhook, as plain data: the query its URL carries, the
    form fields of its body (empty for a JSON body), its headers and its raw body."""

    method: str
    query: tuple[tuple[str, str], ...] = ()
    form: tuple[tuple[str, str], ...] = ()
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    charset: str = "utf-8"

    def request(self) -> CallbackRequest:
        """What the webhook hands to `callback()` and `signed()`."""
        return CallbackRequest(self.method, self.query, self.form, dict(self.headers), self.body)

    def with_form(self, name: str, value: str) -> ProviderCall:
        """The same call with one form field replaced (or added): to spoil a signature."""
        form = [(key, value if key == name else old) for key, old in self.form]
        if name not in dict(self.form):
            form.append((name, value))
        return replace(self, form=tuple(form), body=urlencode(form, encoding=self.charset).encode())

    async def deliver(self, url: str) -> tuple[int, str]:
        """Make this call to `url` (our webhook, with its secret): (HTTP status, body)."""
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60.0)) as session,
            session.request(
                self.method,
                url,
                params=list(self.query) or None,
                data=self.body if self.method != "GET" else None,
                headers=dict(self.headers),
            ) as response,
        ):
            return response.status, await response.text()


def _form_call(
    fields: Sequence[tuple[str, str]],
    *,
    query: Sequence[tuple[str, str]] = (),
    charset: str = "utf-8",
    method: str = "POST",
) -> ProviderCall:
    if method == "GET":
        return ProviderCall("GET", tuple(query) + tuple(fields), charset=charset)
    content_type = "application/x-www-form-urlencoded"
    if charset != "utf-8":
        content_type += f"; charset={charset}"
    body = urlencode(list(fields), encoding=charset).encode("ascii")
    return ProviderCall(
        "POST", tuple(query), tuple(fields), {"Content-Type": content_type}, body, charset
    )


def _json_call(data: Mapping[str, Any], *, query: Sequence[tuple[str, str]] = ()) -> ProviderCall:
    body = json.dumps(data, ensure_ascii=False).encode("utf-8")
    return ProviderCall("POST", tuple(query), (), {"Content-Type": "application/json"}, body)


class FakeSmsServer:
    """The shared machinery: an aiohttp app on 127.0.0.1 (a free port), the request log, the
    scenario queue. Subclasses add routes and answers."""

    SCENARIOS: ClassVar[frozenset[str]] = _COMMON

    def __init__(self, *, delay: float = 5.0) -> None:
        self.delay = delay
        self.requests: list[Seen] = []
        self.messages: dict[str, Accepted] = {}
        self.url = ""
        self._next: deque[str | None] = deque()
        self._by_phone: dict[str, str] = {}
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._closing: asyncio.Event | None = None

    async def __aenter__(self) -> Self:
        self._closing = asyncio.Event()
        app = web.Application()
        self.routes(app)
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._closing is not None:
            self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    # Scenarios.

    def fail_next(self, *scenarios: str | None) -> None:
        """The next sends (and SMSC's status calls) answer with these scenarios, one each, in
        order; None answers normally."""
        for scenario in scenarios:
            if scenario is not None:
                self._check(scenario)
        self._next.extend(scenarios)

    def fail_phone(self, phone: str, scenario: str | None) -> None:
        """Every send to `phone` answers with `scenario` (None: normally again)."""
        if scenario is None:
            self._by_phone.pop(_digits(phone), None)
            return
        self._check(scenario)
        self._by_phone[_digits(phone)] = scenario

    def _check(self, scenario: str) -> None:
        if scenario not in self.SCENARIOS:
            raise ValueError(f"{type(self).__name__} knows no scenario {scenario!r}")

    def _scenario(self, phone: str) -> str | None:
        if self._next:
            return self._next.popleft()
        return self._by_phone.get(_digits(phone))

    async def _common(self, scenario: str | None) -> web.Response | None:
        """The answer for a scenario every fake shares; None to go on (after "slow")."""
        if scenario == "server_error":
            return web.Response(status=500, text="Internal Server Error")
        if scenario == "garbage":
            return web.Response(status=200, text=_GARBAGE, content_type="text/html")
        if scenario == "slow":
            assert self._closing is not None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), self.delay)
        return None

    # Statuses and the log.

    def set_status(self, message_id: str | int, status: Any, err: Any = None) -> None:
        """What the fake says about a message it accepted, in the provider's own terms."""
        message = self.messages[str(message_id)]
        message.status, message.err = status, err

    def seen(self, path: str) -> list[Seen]:
        """The requests to `path`, in order."""
        return [request for request in self.requests if request.path == path]

    async def _record(self, request: web.Request) -> Seen:
        body = await request.read()
        fields: dict[str, Any] = dict(request.query)
        if body and request.content_type == "application/json":
            fields |= json.loads(body)
        elif body:
            fields |= dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        headers = dict(request.headers)
        seen = Seen(
            request.method,
            request.path,
            fields,
            headers,
            body,
            request.raw_path.partition("?")[2],
            time.time(),
        )
        self.requests.append(seen)
        return seen

    def _accept(self, phone: str, text: str, sender: str, status: Any, id_: str) -> Accepted:
        message = Accepted(id_, phone, text, sender, status)
        self.messages[id_] = message
        return message


# SMS.ru: https://sms.ru/api/send, /api/status, /api/callback.

SMSRU_STATUS_TEXT = {
    -1: "Сообщение не найдено",
    100: "Сообщение находится в нашей очереди",
    101: "Сообщение передается оператору",
    102: "Сообщение отправлено (в пути)",
    103: "Сообщение доставлено",
    104: "Не может быть доставлено: время жизни истекло",
    105: "Не может быть доставлено: удалено оператором",
    106: "Не может быть доставлено: сбой в телефоне",
    107: "Не может быть доставлено: неизвестная причина",
    108: "Не может быть доставлено: отклонено",
    150: "Не может быть доставлено: не найден маршрут на данный номер",
}

# scenario -> (request-wide code, per-number code, status_text)
_SMSRU_ERRORS: dict[str, tuple[int, int | None, str]] = {
    "bad_credentials": (200, None, "Неправильный api_id"),
    "no_money": (201, None, "Не хватает средств на лицевом счету"),
    "sender_not_approved": (204, None, "Имя отправителя не согласовано с администрацией"),
    "unavailable": (220, None, "Сервис временно недоступен, попробуйте чуть позже"),
    "bad_number": (100, 202, "Неправильно указан номер телефона получателя"),
    "no_route": (100, 207, "На этот номер нет маршрута для доставки сообщений"),
    "stop_list": (100, 209, "Вы добавили этот номер в стоп-лист"),
    "forbidden_text": (100, 216, "В тексте сообщения содержится запрещенное слово"),
    "duplicate": (100, 231, "Превышен лимит одинаковых сообщений на этот номер в минуту"),
}


class SmsRuServer(FakeSmsServer):
    """SMS.ru. `rate_limit` answers HTTP 429 with Retry-After: 7 (its nginx does so when
    flooded); the rest answer as the API does, HTTP 200 with a status_code."""

    SCENARIOS = _COMMON | frozenset(_SMSRU_ERRORS)

    def __init__(
        self,
        api_id: str = "0A1B2C3D-test-api-id",
        *,
        cost: Decimal | None = Decimal("3.49"),
        balance: Decimal = Decimal("1000.00"),
        delay: float = 5.0,
    ) -> None:
        super().__init__(delay=delay)
        self.api_id = api_id
        self.cost = cost
        self.balance = balance

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/sms/send", self._send)
        app.router.add_route("*", "/sms/status", self._status)

    async def _send(self, request: web.Request) -> web.Response:
        seen = await self._record(request)
        fields = seen.fields
        phone = str(fields.get("to", ""))
        scenario = self._scenario(phone)
        if scenario == "rate_limit":
            return web.Response(status=429, text="Too Many Requests", headers={"Retry-After": "7"})
        common = await self._common(scenario)
        if common is not None:
            return common
        if fields.get("api_id") != self.api_id:
            scenario = "bad_credentials"
        if scenario in _SMSRU_ERRORS:
            top, own, text = _SMSRU_ERRORS[scenario]
            if own is None:
                return _json({"status": "ERROR", "status_code": top, "status_text": text})
            entry = {"status": "ERROR", "status_code": own, "status_text": text}
            return _json({"status": "OK", "status_code": 100, "sms": {phone: entry}})
        if not phone or not str(fields.get("msg", "")):
            return _json({"status": "ERROR", "status_code": 203, "status_text": "Нет текста"})
        number = next(self._ids)
        sms_id = f"{200000 + number:06d}-{1000000 + number}"
        self._accept(phone, str(fields["msg"]), str(fields.get("from", "")), 100, sms_id)
        accepted: dict[str, Any] = {"status": "OK", "status_code": 100, "sms_id": sms_id}
        if self.cost is not None:
            accepted |= {"cost": float(self.cost), "sms": 1}
            self.balance -= self.cost
        return _json(
            {
                "status": "OK",
                "status_code": 100,
                "sms": {phone: accepted},
                "balance": float(self.balance),
            }
        )

    async def _status(self, request: web.Request) -> web.Response:
        seen = await self._record(request)
        if seen.fields.get("api_id") != self.api_id:
            return _json(
                {"status": "ERROR", "status_code": 200, "status_text": "Неправильный api_id"}
            )
        found: dict[str, Any] = {}
        for sms_id in str(seen.fields.get("sms_id", "")).split(","):
            message = self.messages.get(sms_id)
            if message is None:
                text = SMSRU_STATUS_TEXT[-1]
                found[sms_id] = {"status": "ERROR", "status_code": -1, "status_text": text}
                continue
            entry: dict[str, Any] = {
                "status": "OK",
                "status_code": message.status,
                "status_text": SMSRU_STATUS_TEXT.get(message.status, "Неизвестный статус"),
            }
            if self.cost is not None:
                entry["cost"] = float(self.cost)
            found[sms_id] = entry
        return _json(
            {"status": "OK", "status_code": 100, "sms": found, "balance": float(self.balance)}
        )

    def status_callback(
        self, *receipts: tuple[str, int], at: int = AT, extra: Sequence[str] = ()
    ) -> ProviderCall:
        """SMS.ru's POST to the callback URL: data[0..] lines "sms_status\\n<id>\\n<code>\\n
        <unixtime>" (plus any `extra` entries as they are, e.g. a callcheck_status) and hash =
        sha256(api_id + the entries joined)."""
        entries = [f"sms_status\n{sms_id}\n{code}\n{at}" for sms_id, code in receipts]
        entries += list(extra)
        form = [(f"data[{index}]", entry) for index, entry in enumerate(entries)]
        digest = hashlib.sha256((self.api_id + "".join(entries)).encode()).hexdigest()
        return _form_call([*form, ("hash", digest)])


# SMSC.ru: https://smsc.ru/api/http/ (send, status_messages, miscellaneous/callback).

_SMSC_ERRORS: dict[str, tuple[int, str]] = {
    "bad_params": (1, "parameters error"),
    "bad_credentials": (2, "authorise error"),
    "no_money": (3, "no money"),
    "ip_blocked": (4, "IP is blocked"),
    "forbidden": (6, "message is denied"),
    "bad_number": (7, "invalid number"),
    "undeliverable": (8, "cannot be delivered"),
    "rate_limit": (9, "duplicate request, wait a minute"),
}


class SmscServer(FakeSmsServer):
    """SMSC.ru. Every error is HTTP 200 with {"error", "error_code"} (fmt=3); "rate_limit"
    is its error 9."""

    SCENARIOS = _COMMON | frozenset(_SMSC_ERRORS)

    def __init__(
        self,
        login: str = "autoservice",
        password: str = "s3cret-пароль",
        *,
        apikey: str = "smsc-api-key",
        cost: Decimal = Decimal("2.50"),
        balance: Decimal = Decimal("500.00"),
        delay: float = 5.0,
    ) -> None:
        super().__init__(delay=delay)
        self.login = login
        self.password = password
        self.apikey = apikey
        self.cost = cost
        self.balance = balance
        self._ids = itertools.count(1001)

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/sys/send.php", self._send)
        app.router.add_route("*", "/sys/status.php", self._status)

    def _authorised(self, fields: Mapping[str, Any]) -> bool:
        if fields.get("apikey"):
            return fields.get("apikey") == self.apikey
        return fields.get("login") == self.login and fields.get("psw") == self.password

    async def _send(self, request: web.Request) -> web.Response:
        seen = await self._record(request)
        fields = seen.fields
        phone = _digits(str(fields.get("phones", "")))
        scenario = self._scenario(phone)
        common = await self._common(scenario)
        if common is not None:
            return common
        if not self._authorised(fields):
            scenario = "bad_credentials"
        if scenario in _SMSC_ERRORS:
            code, text = _SMSC_ERRORS[scenario]
            return _json({"error": text, "error_code": code})
        if not phone or not fields.get("mes"):
            return _json({"error": "parameters error", "error_code": 1})
        sms_id = next(self._ids)
        self._accept(phone, str(fields["mes"]), str(fields.get("sender", "")), -1, str(sms_id))
        answer: dict[str, Any] = {"id": sms_id, "cnt": 1}
        if fields.get("cost") in ("2", "3"):
            self.balance -= self.cost
            answer |= {"cost": str(self.cost), "balance": str(self.balance)}
        return _json(answer)

    async def _status(self, request: web.Request) -> web.Response:
        seen = await self._record(request)
        fields = seen.fields
        scenario = self._scenario("")
        if scenario == "rate_limit":
            return _json({"error": "duplicate request, wait a minute", "error_code": 9})
        common = await self._common(scenario)
        if common is not None:
            return common
        if not self._authorised(fields):
            return _json({"error": "authorise error", "error_code": 2})
        message = self.messages.get(str(fields.get("id", "")))
        if message is None or message.phone != _digits(str(fields.get("phone", ""))):
            return _json({"status": -3, "last_date": "", "last_timestamp": 0, "flag": 0, "err": 0})
        return _json(
            {
                "status": message.status,
                "last_date": time.strftime("%d.%m.%Y %H:%M:%S", time.gmtime(AT)),
                "last_timestamp": AT,
                "flag": 0,
                "err": message.err or 0,
            }
        )

    def _signature(self, sign: str | None, *parts: str, charset: str) -> list[tuple[str, str]]:
        if sign is None:
            return []
        text = ":".join([*parts, self.password]).encode(charset)
        return [(sign, hashlib.new(sign, text).hexdigest())]

    def status_callback(
        self,
        sms_id: int | str,
        phone: str,
        status: int,
        err: int = 0,
        *,
        at: int = AT,
        sign: str | None = "md5",
        charset: str = "utf-8",
        json_body: bool = False,
    ) -> ProviderCall:
        """SMSC's call to the handler URL for a delivery status: id, phone, status, time, ts,
        err, and `sign` ("md5", "sha1" or None) = hash("<id>:<phone>:<status>:<password>").
        `charset` is the handler URL's charset parameter (None there: windows-1251);
        `json_body` is fmt=3 in the handler URL."""
        phone = _digits(phone)
        fields = [
            ("id", str(sms_id)),
            ("phone", phone),
            ("status", str(status)),
            ("time", str(at)),
            ("ts", str(at + 2)),
            ("err", str(err)),
        ]
        fields += self._signature(sign, str(sms_id), phone, str(status), charset=charset)
        return self._call(fields, charset, json_body)

    def inbound_callback(
        self,
        phone: str,
        text: str,
        *,
        to: str = "79990001122",
        sms_id: int = 77001,
        at: int = AT,
        sign: str | None = "md5",
        charset: str = "utf-8",
        json_body: bool = False,
    ) -> ProviderCall:
        """SMSC's call for an SMS a subscriber sent to our number: id, phone (the sender),
        mes, to, sent, time, and `sign` = hash("<id>:<phone>:<mes>:<password>")."""
        phone = _digits(phone)
        fields = [
            ("id", str(sms_id)),
            ("phone", phone),
            ("mes", text),
            ("to", to),
            ("sent", str(at)),
            ("time", str(at + 1)),
        ]
        fields += self._signature(sign, str(sms_id), phone, text, charset=charset)
        return self._call(fields, charset, json_body)

    @staticmethod
    def _call(fields: list[tuple[str, str]], charset: str, json_body: bool) -> ProviderCall:
        query = [] if charset == "windows-1251" else [("charset", charset)]
        if json_body:
            return _json_call(dict(fields), query=[*query, ("fmt", "3")])
        return _form_call(fields, query=query, charset=charset)


# A generic provider, in two flavours: a JSON API with a bearer token, and a query-string one.

_GENERIC_JSON_ERRORS: dict[str, tuple[int, str]] = {
    "bad_number": (422, "invalid_phone"),
    "no_money": (402, "insufficient_funds"),
    "bad_credentials": (401, "unauthorized"),
    "refused": (422, "content_rejected"),
    "temporary": (200, "queue_full"),
}
_GENERIC_QUERY_ERRORS: dict[str, str] = {
    "bad_number": "BAD_NUMBER",
    "no_money": "NO_BALANCE",
    "bad_credentials": "AUTH",
    "refused": "BAD_TEXT",
    "temporary": "BUSY",
}


class GenericServer(FakeSmsServer):
    """Two made-up but typical APIs, both served at once:

    JSON: POST /v1/messages with `Authorization: Bearer <token>` and {"phone", "text",
    "sender", "ref"} -> 201 {"status": "accepted", "data": {"id", "price"}}, or an error
    {"status": "error", "error": {"code"}} with HTTP 401/402/422 (or 200 "queue_full");
    GET /v1/messages/status?ids=a,b -> {"messages": [{"id", "state", "error"}]} with states
    queued/sent/delivered/undelivered. Callbacks: a JSON POST {"id", "state", "error"}, and
    {"from", "text"} for an incoming SMS.

    Query: GET /http/send?user=&pass=&to=<digits>&msg=&from= -> {"ok": 1, "sms_id": 17,
    "cost": 1.2} or {"ok": 0, "err": "BAD_NUMBER"}, always HTTP 200; GET
    /http/status?user=&pass=&sms_id=17 -> {"sms_id", "dlr": "ENROUTE"|"DELIVRD"|"UNDELIV",
    "dlr_reason"}. Callbacks: GET ?sms_id=&dlr=&dlr_reason=, and ?sender=&msg= for an
    incoming SMS.

    "rate_limit" is HTTP 429 with Retry-After: 3 for both."""

    SCENARIOS = _COMMON | frozenset(_GENERIC_JSON_ERRORS)

    def __init__(
        self,
        *,
        token: str = "generic-token",
        user: str = "shop",
        password: str = "pass-word",
        delay: float = 5.0,
    ) -> None:
        super().__init__(delay=delay)
        self.token = token
        self.user = user
        self.password = password

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/messages", self._json_send)
        app.router.add_get("/v1/messages/status", self._json_status)
        app.router.add_get("/http/send", self._query_send)
        app.router.add_get("/http/status", self._query_status)

    async def _before(self, scenario: str | None) -> web.Response | None:
        if scenario == "rate_limit":
            return web.Response(status=429, text="slow down", headers={"Retry-After": "3"})
        return await self._common(scenario)

    async def _json_send(self, request: web.Request) -> web.Response:
        seen = await self._record(request)
        phone = str(seen.fields.get("phone", ""))
        scenario = self._scenario(phone)
        early = await self._before(scenario)
        if early is not None:
            return early
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            scenario = "bad_credentials"
        if scenario in _GENERIC_JSON_ERRORS:
            status, code = _GENERIC_JSON_ERRORS[scenario]
            return _json({"status": "error", "error": {"code": code}}, status=status)
        sms_id = f"msg-{next(self._ids)}"
        self._accept(phone, str(seen.fields.get("text", "")), "", "queued", sms_id)
        return _json({"status": "accepted", "data": {"id": sms_id, "price": "1.50"}}, status=201)

    async def _json_status(self, request: web.Request) -> web.Response:
        await self._record(request)
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return _json({"status": "error", "error": {"code": "unauthorized"}}, status=401)
        items = []
        for sms_id in request.query.get("ids", "").split(","):
            message = self.messages.get(sms_id)
            if message is not None:
                items.append({"id": sms_id, "state": message.status, "error": message.err})
        return _json({"messages": items})

    async def _query_send(self, request: web.Request) -> web.Response:
        seen = await self._record(request)
        fields = seen.fields
        phone = str(fields.get("to", ""))
        scenario = self._scenario(phone)
        early = await self._before(scenario)
        if early is not None:
            return early
        if fields.get("user") != self.user or fields.get("pass") != self.password:
            scenario = "bad_credentials"
        if scenario in _GENERIC_QUERY_ERRORS:
            return _json({"ok": 0, "err": _GENERIC_QUERY_ERRORS[scenario]})
        number = next(self._ids)
        self._accept(
            phone, str(fields.get("msg", "")), str(fields.get("from", "")), "ENROUTE", str(number)
        )
        return _json({"ok": 1, "sms_id": number, "cost": 1.2})

    async def _query_status(self, request: web.Request) -> web.Response:
        await self._record(request)
        if request.query.get("user") != self.user or request.query.get("pass") != self.password:
            return _json({"ok": 0, "err": "AUTH"})
        message = self.messages.get(request.query.get("sms_id", ""))
        if message is None:
            return _json({"ok": 0, "err": "NOT_FOUND"})
        sms_id = int(message.id)
        return _json({"sms_id": sms_id, "dlr": message.status, "dlr_reason": message.err})

    def status_callback(
        self, sms_id: str | int, state: str, reason: str | None = None, *, flavour: str = "json"
    ) -> ProviderCall:
        """The receipt push: a JSON POST {"id", "state", "error"}, or a GET with sms_id, dlr,
        dlr_reason in the query."""
        if flavour == "json":
            return _json_call({"id": str(sms_id), "state": state, "error": reason})
        fields = [("sms_id", str(sms_id)), ("dlr", state), ("dlr_reason", reason or "")]
        return _form_call(fields, method="GET")

    def inbound_callback(self, phone: str, text: str, *, flavour: str = "json") -> ProviderCall:
        """An incoming SMS: a JSON POST {"from": "+7...", "text"}, or a GET ?sender=7...&msg=."""
        if flavour == "json":
            return _json_call({"from": phone, "text": text})
        return _form_call([("sender", _digits(phone)), ("msg", text)], method="GET")


def _json(data: Any, *, status: int = 200) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(data, ensure_ascii=False).encode("utf-8"),
        content_type="application/json",
        charset="utf-8",
    )

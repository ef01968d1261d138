"""`/webhooks/sms/{provider}` against hostile calls, over real HTTP to the real app: the
secret is checked before the body is parsed, every malformed call is a 4xx (never a 5xx,
never an ERROR in the log), a receipt the provider means but we can never apply gets the
provider's "ok" and one WARNING line, and nothing a caller sends can forge or flood a log
line. The calls are written byte by byte on a socket, so the request line, the headers and
the body are exactly as hostile as the table says."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import tomllib
import traceback
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from sqlalchemy import select

from gateway.channels.sms import PROVIDER_ID_LIMIT
from storage.outbox import DeliveryReceipt, InboundSms, Message
from tests.support.api import ApiClient, serve_api
from tests.support.clock import FakeClock
from tests.support.databases import Database
from tests.support.messaging import add_client, message, queue_message
from tests.support.sms_servers import AT, GenericServer, ProviderCall, SmscServer, SmsRuServer
from tests.test_sms_email_flow import API_ID, GENERIC_TOML, SECRET, drain, smsru_settings

SMSC_LOGIN, SMSC_PASSWORD = "autoservice", "s3cret-пароль"
SMS_SECTIONS: dict[str, dict[str, Any]] = {
    "smsru": {"provider": "smsru", "password": API_ID, "callback_secret": SECRET},
    "smsc": {
        "provider": "smsc",
        "login": SMSC_LOGIN,
        "password": SMSC_PASSWORD,
        "callback_secret": SECRET,
    },
    # The generic provider of the config-file test; its API is never called here.
    "generic": tomllib.loads(
        GENERIC_TOML.format(url="http://127.0.0.1:9", token="generic-token", secret=SECRET)
    )["sms"],
}
FORM = "application/x-www-form-urlencoded"
OURS = ("autoloyal", "aiohttp.access")
"""Loggers whose lines must stay one short line whatever a caller sends."""
LINE_LIMIT = 600
"""Characters in one such line: a few escaped, shortened pieces of the caller's text."""


# -- calls on a socket -------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One HTTP request to the webhook, as bytes go: `query` is the raw query string (after
    the secret, when the call carries one), `headers` go as they are."""

    label: str
    body: bytes = b""
    content_type: str | None = FORM
    query: str = ""
    method: str = "POST"
    headers: tuple[tuple[str, str], ...] = ()
    path: str | None = None
    """The raw path after /webhooks/sms/ (default: the provider's name)."""

    @classmethod
    def of(cls, label: str, call: ProviderCall) -> Call:
        """A fake provider's call (tests/support/sms_servers.py) as bytes."""
        headers = {key.lower(): value for key, value in call.headers.items()}
        query = urlencode(list(call.query))
        if call.method == "GET":
            return cls(label, b"", None, query, "GET")
        return cls(label, call.body, headers.pop("content-type", None), query)


async def send(port: int, provider: str, call: Call, *, secret: str | None) -> tuple[int, str]:
    """Write `call` on a fresh connection and read the whole answer (the request asks the
    server to close the connection after it): (HTTP status, body)."""
    query = "&".join(
        part for part in (f"secret={quote(secret)}" if secret else "", call.query) if part
    )
    target = f"/webhooks/sms/{call.path if call.path is not None else provider}"
    if query:
        target += "?" + query
    head = [f"{call.method} {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    if call.content_type is not None:
        head.append(f"Content-Type: {call.content_type}")
    head += [f"{name}: {value}" for name, value in call.headers]
    head.append(f"Content-Length: {len(call.body)}")
    request = "\r\n".join(head).encode("latin-1") + b"\r\n\r\n" + call.body
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        answer = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    status_line, _, rest = answer.partition(b"\r\n")
    body = rest.partition(b"\r\n\r\n")[2]
    return int(status_line.split(b" ")[1]), body.decode("utf-8", errors="replace")


@asynccontextmanager
async def webhook(db: Database, clock: FakeClock, provider: str) -> AsyncIterator[int]:
    """The app serving `provider`'s webhook on a loopback port; yields the port."""
    async with serve_api(db, clock, sms=SMS_SECTIONS[provider]) as api:
        yield port_of(api)


def port_of(api: ApiClient) -> int:
    port = api.client.port
    assert port is not None
    return port


# -- what the log may hold ---------------------------------------------------------------------


def check_log(records: Sequence[logging.LogRecord], what: str) -> None:
    """No ERROR at all, and every line of ours one printable line of bounded length."""
    errors = [r for r in records if r.levelno >= logging.ERROR]
    assert not errors, (what, [(r.name, r.getMessage()[:200], _raised(r)) for r in errors])
    for record in records:
        if not record.name.startswith(OURS):
            continue
        line = record.getMessage()
        assert line.isprintable(), (what, record.name, line[:300])
        assert len(line) <= LINE_LIMIT, (what, record.name, len(line), line[:300])


def _raised(record: logging.LogRecord) -> str:
    """What the record's traceback ends in: the exception and the line that raised it."""
    if record.exc_info is None or record.exc_info[1] is None:
        return ""
    exc = record.exc_info[1]
    frames = traceback.extract_tb(exc.__traceback__)
    where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"
    return f"{type(exc).__name__}: {str(exc)[:200]} at {where}"


def warnings_of(records: Sequence[logging.LogRecord]) -> list[str]:
    return [r.getMessage() for r in records if r.levelno == logging.WARNING]


# -- the hostile table -------------------------------------------------------------------------

SMSRU = SmsRuServer(API_ID)
SMSC = SmscServer(SMSC_LOGIN, SMSC_PASSWORD)
GENERIC = GenericServer()
GOOD_ID = "000201-1000001"


def smsru_entries(*entries: str, hash_: str | None = None) -> Call:
    fields = [(f"data[{index}]", entry) for index, entry in enumerate(entries)]
    if hash_ is not None:
        fields.append(("hash", hash_))
    label = f"data[] {entries!r:.80} hash {hash_!r:.20}"
    return Call(label, urlencode(fields, errors="surrogatepass").encode())


def smsc_fields(*fields: tuple[str, str], query: str = "charset=utf-8") -> Call:
    label = f"fields {fields!r:.80} ?{query}"
    return Call(label, urlencode(list(fields), errors="surrogatepass").encode(), query=query)


def json_call(data: object, *, raw: bytes | None = None, query: str = "") -> Call:
    body = raw if raw is not None else json.dumps(data, ensure_ascii=False).encode()
    return Call(f"JSON {body!r:.80} ?{query}", body, "application/json", query)


def multipart(*parts: bytes, boundary: str = "XyZ") -> Call:
    body = b"".join(b"--" + boundary.encode() + b"\r\n" + part + b"\r\n" for part in parts)
    body += b"--" + boundary.encode() + b"--\r\n"
    return Call(f"multipart {parts!r:.80}", body, f"multipart/form-data; boundary={boundary}")


HUGE = "9" * 5000
LONG_ID = "7" * (PROVIDER_ID_LIMIT + 1)
DEEP_JSON = b'{"id": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
HOSTILE_JSON = [
    b'{"id": Infinity, "state": "delivered"}',
    b'{"id": NaN, "state": "delivered"}',
    b'{"id": "msg-7", "state": -Infinity}',
    b'{"id": 1E+5000, "state": "delivered"}',
    b'{"id": 1e400, "state": "delivered"}',
    b'{"id": ' + HUGE.encode() + b', "state": "delivered"}',
    b'{"id": "msg\\u0000-7", "state": "delivered"}',
    b'{"id": "msg\\ud800-7", "state": "delivered"}',
    b'{"id": "msg-7", "state": "undelivered", "error": "no\\u0000body\\udfff"}',
    b'{"id": {"nested": 1}, "state": "delivered"}',
    b'{"id": ["msg-7"], "state": "delivered"}',
    b'{"id": true, "state": {"a": 1}}',
    b'{"id": "' + LONG_ID.encode() + b'", "state": "delivered"}',
    b'{"from": "+79161234567", "text": "\\u0000\\ud800 stop"}',
    b'{"from": "\\u0661\\u0662\\u0663\\u0664\\u0665\\u0666\\u0667\\u0668\\u0669\\u0660", "text": "x"}',
    b'{"from": 79161234567, "text": {"a": 1}}',
    b'{"from": "' + b"+" * 5000 + b'", "text": "x"}',
    b'{"from": Infinity, "text": NaN}',
    b"[1, 2, 3]",
    b"{",
    b'{"id": "\xff\xfe", "state": "delivered"}',
    '{"id": "сообщение", "state": "delivered"}'.encode("cp1251"),
    DEEP_JSON,
    b'{"a": ' + b'{"a": ' * 100_000 + b"1" + b"}" * 100_001,
]

COMMON: list[Call] = [
    Call("raw bytes that are not UTF-8", b"data[0]=\xff\xfe&id=\xc3(&phone=\x80"),
    Call("an unknown charset", b"data[0]=x", f"{FORM}; charset=x-no-such-charset"),
    Call("a codec that is not a text encoding", b"data[0]=eA==", f"{FORM}; charset=base64"),
    Call("rot13 as a charset", b"id=1", f"{FORM}; charset=rot13"),
    Call("idna as a charset", b"id=" + b"a" * 300, f"{FORM}; charset=idna"),
    Call("utf-16 as a charset", "id=1".encode("utf-16"), f"{FORM}; charset=utf-16"),
    Call("a declared charset the bytes are not in", "id=ёж".encode(), f"{FORM}; charset=ascii"),
    Call(
        "windows-1251 bytes declared as UTF-8",
        "mes=Стоп".encode("cp1251"),
        f"{FORM}; charset=utf-8",
    ),
    Call("percent-escapes that are not UTF-8", b"data[0]=%FF%FE&phone=%C3%28&mes=%ED%A0%80"),
    Call("NUL and control characters", b"data[0]=%00&id=%00&phone=%1B%5B2J&mes=a%0D%0Ab"),
    Call("a line separator", b"id=%E2%80%A8&status=1&phone=79161234567"),
    Call("many fields", b"&".join(b"f%d=%d" % (n, n) for n in range(5000))),
    Call("an empty urlencoded body", b""),
    Call("a lone ampersand", b"&&&==&=&"),
    Call("multipart without a boundary", b"--x\r\n\r\n", "multipart/form-data"),
    Call("multipart with a broken body", b"garbage", "multipart/form-data; boundary=XyZ"),
    multipart(
        b'Content-Disposition: form-data; name="id"\r\nContent-Transfer-Encoding: x-unknown\r\n\r\n1'
    ),
    multipart(b'Content-Disposition: form-data; name="id"\r\nContent-Encoding: x-unknown\r\n\r\n1'),
    multipart(
        b'Content-Disposition: form-data; name="id"\r\nContent-Type: text/plain; charset=x-none\r\n\r\n1'
    ),
    multipart(
        b'Content-Disposition: form-data; name="id"\r\nContent-Type: text/plain; charset=base64\r\n\r\n1'
    ),
    multipart(b'Content-Disposition: form-data; name="mes"\r\n\r\n\xff\xfe'),
    multipart(b"Content-Disposition: form-data\r\n\r\nno name"),
    multipart(b'Content-Disposition: form-data; name="f"; filename="a.txt"\r\n\r\nfile'),
    multipart(
        b'Content-Disposition: form-data; name="data[0]"\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!'
    ),
    Call("gzip that is not gzip", b"not gzip", FORM, headers=(("Content-Encoding", "gzip"),)),
    Call("deflate that is not deflate", b"x", FORM, headers=(("Content-Encoding", "deflate"),)),
    Call("an unknown content encoding", b"id=1", FORM, headers=(("Content-Encoding", "x-zip"),)),
    Call("text/plain", b"data[0]=sms_status%0A1%0A103%0A1&id=1&status=1&phone=1", "text/plain"),
    Call("no content type", b"data[0]=x"),
    Call("octet-stream", bytes(range(256)), "application/octet-stream"),
    Call("a GET with a body", b"id=1", FORM, method="GET"),
    Call("query: percent-escapes that are not UTF-8", query="data[0]=%FF&id=%ED%A0%80&phone=%C0"),
    Call("query: NUL and newlines", query="data[0]=sms_status%0A%00%0A103%0A1&id=%00&status=1"),
    Call("query: a secret in Cyrillic", query="secret=%D1%81%D0%B5%D0%BA%D1%80%D0%B5%D1%82"),
    Call("query: a secret that is not UTF-8", query="secret=%FF%FE"),
    Call("query: a lone surrogate secret", query="secret=%ED%A0%80"),
    Call("query: the secret twice", query=f"secret=wrong&secret={SECRET}"),
    Call("query: charset=base64", b"id=1&phone=79161234567&status=1", query="charset=base64"),
    Call("query: charset=idna", b"id=1&phone=79161234567&mes=" + b"a" * 100, query="charset=idna"),
    Call("query: an unknown charset", b"id=1&phone=79161234567&status=1", query="charset=nope"),
    Call("query: charset=utf-16", b"id=1&phone=79161234567&status=1", query="charset=utf-16"),
    Call("query: fmt=3 and broken JSON", b"{broken", query="fmt=3"),
    Call("a newline in the provider's name", path="smsru%0AERROR%20forged%20line"),
    Call("control characters in the provider's name", path="%1B%5B31m%00%7F%C2%85x"),
    Call("a long provider name", path="p" * 8000),
    Call("a provider name that is not UTF-8", path="%FF%FE%ED%A0%80"),
    Call("a body over the limit", b"x" * (1024 * 1024 + 1)),
    *(json_call(None, raw=raw) for raw in HOSTILE_JSON),
    *(json_call(None, raw=raw, query="fmt=3&charset=utf-8") for raw in HOSTILE_JSON),
]

AIOHTTP_OWN = frozenset({"gzip that is not gzip", "deflate that is not deflate"})
"""Bodies aiohttp cannot decompress: the answer is a 400 (ours for gzip, aiohttp's own for
deflate, which fails before the handler runs), but aiohttp.server logs an ERROR of its own as
it reads them (after our answer for gzip), which nothing in the app can prevent."""

SMSRU_CALLS: list[Call] = [
    smsru_entries(f"sms_status\n{GOOD_ID}\n103\n{10**20}"),
    smsru_entries(f"sms_status\n{GOOD_ID}\n103\n-{10**20}"),
    smsru_entries(f"sms_status\n{GOOD_ID}\n103\n253402300800"),
    smsru_entries(f"sms_status\n{GOOD_ID}\n103\n-62135596801"),
    smsru_entries(f"sms_status\n{GOOD_ID}\n103\n0"),
    smsru_entries(f"sms_status\n{GOOD_ID}\n103\n{HUGE}"),
    smsru_entries(f"sms_status\n{GOOD_ID}\n{HUGE}\n{AT}"),
    smsru_entries(f"sms_status\n{GOOD_ID}\n999\n{AT}"),
    smsru_entries(f"sms_status\n{GOOD_ID}\n-1\n{AT}"),
    smsru_entries(f"sms_status\n{GOOD_ID}\ndelivered\n{AT}"),
    smsru_entries(f"sms_status\n{GOOD_ID}\n1e3\n{AT}"),
    smsru_entries(f"sms_status\n{GOOD_ID}\n103\n1.5"),
    smsru_entries(f"sms_status\n{GOOD_ID}\n103"),
    smsru_entries("sms_status"),
    smsru_entries(""),
    smsru_entries(f"sms_status\n\x00\n103\n{AT}"),
    smsru_entries(f"sms_status\nid\x00with-nul\n103\n{AT}"),
    smsru_entries(f"sms_status\n\ud800\n103\n{AT}"),
    smsru_entries(f"sms_status\n\x1b[2J\n103\n{AT}"),
    smsru_entries(f"sms_status\n{LONG_ID}\n103\n{AT}"),
    smsru_entries(f"sms_status\n{'я' * 200}\n103\n{AT}"),
    smsru_entries(f"sms_status\r\n{GOOD_ID}\r\n103\r\n{AT}"),
    smsru_entries(f"sms_status\n{GOOD_ID}\n103\n{AT}\nextra\nlines"),
    smsru_entries(f"callcheck_status\n{GOOD_ID}\n401\n{AT}"),
    smsru_entries(f"sms_status\n{GOOD_ID}\n103\n{AT}", hash_="é" * 64),
    smsru_entries(f"sms_status\n{GOOD_ID}\n103\n{AT}", hash_="\ud800" * 64),
    smsru_entries(f"sms_status\n{GOOD_ID}\n103\n{AT}", hash_="z" * 64),
    smsru_entries(f"sms_status\n{GOOD_ID}\n103\n{AT}", hash_=""),
    smsru_entries(*[f"sms_status\n{n:06d}-1\n103\n{AT}" for n in range(999)]),
    Call(
        "many entries in a body aiohttp does not parse",
        urlencode([("data[]", f"sms_status\n{n}\n103\n{AT}") for n in range(40_000)]).encode(),
        "text/plain",
    ),
    Call.of("a receipt", SMSRU.status_callback((GOOD_ID, 103))),
]

SMSC_CALLS: list[Call] = [
    smsc_fields(("id", "1001"), ("phone", "79161234567"), ("status", HUGE)),
    smsc_fields(("id", "1001"), ("phone", "79161234567"), ("status", "1"), ("time", HUGE)),
    smsc_fields(("id", "1001"), ("phone", "79161234567"), ("status", "1"), ("time", "-1")),
    smsc_fields(("id", "1001"), ("phone", "79161234567"), ("status", "1"), ("ts", str(10**20))),
    smsc_fields(("id", "1001"), ("phone", "79161234567"), ("status", "20"), ("err", HUGE)),
    smsc_fields(("id", "1001"), ("phone", "79161234567"), ("status", "20"), ("err", "-7")),
    smsc_fields(("id", "1001"), ("phone", "79161234567"), ("status", "777")),
    smsc_fields(("id", "1001"), ("phone", "79161234567"), ("status", "delivered")),
    smsc_fields(("id", "\x00"), ("phone", "79161234567"), ("status", "1")),
    smsc_fields(("id", "\ud800"), ("phone", "79161234567"), ("status", "1")),
    smsc_fields(("id", LONG_ID), ("phone", "79161234567"), ("status", "1")),
    smsc_fields(("id", "1001"), ("phone", "7" * 200), ("status", "1")),
    smsc_fields(("id", "1001"), ("phone", "²³¹⁴"), ("status", "1")),
    smsc_fields(("id", "1001"), ("phone", "\u0667\u0669\u0661\u0666"), ("status", "1")),
    smsc_fields(("id", "1001"), ("phone", "x" * 10_000), ("status", "1")),
    smsc_fields(("phone", "79161234567"), ("mes", "Стоп\x00")),
    smsc_fields(("phone", "79161234567"), ("mes", "\ud800")),
    smsc_fields(("phone", "79161234567"), ("mes", "Стоп"), ("id", LONG_ID)),
    smsc_fields(("phone", "79161234567"), ("mes", "Стоп"), ("id", "\x00")),
    smsc_fields(("phone", "79161234567"), ("mes", "x"), ("sent", HUGE), ("time", f"-{HUGE}")),
    smsc_fields(("phone", "²³¹⁴⁵⁶⁷⁸⁹⁰¹"), ("mes", "x")),
    smsc_fields(("phone", "+" * 5000), ("mes", "x")),
    smsc_fields(("phone", "7916\n1234567"), ("mes", "x\r\ny")),
    smsc_fields(("id", "1001"), ("phone", "79161234567"), ("status", "1"), ("md5", "é" * 32)),
    smsc_fields(("id", "1001"), ("phone", "79161234567"), ("status", "1"), query="charset=base64"),
    smsc_fields(("id", "1001"), ("phone", "79161234567"), ("mes", "x"), query="charset=idna"),
    smsc_fields(("id", "1001"), ("phone", "79161234567"), ("status", "1"), query="charset=none"),
    smsc_fields(("id", "1001"), ("phone", "79161234567"), ("status", "1"), query="charset="),
    Call(
        "windows-1251 bytes in a UTF-8 handler",
        "id=1&phone=79161234567&mes=Стоп".encode("cp1251"),
        query="charset=utf-8",
    ),
    Call(
        "UTF-8 percent-escapes in a windows-1251 handler",
        b"id=1&phone=79161234567&mes=%D0%A1%D1%82%D0%BE%D0%BF&md5=" + b"0" * 32,
    ),
    Call.of("a receipt", SMSC.status_callback(1001, "79161234567", 1)),
    Call.of("an SMS", SMSC.inbound_callback("79161234567", "Стоп", charset="windows-1251")),
    Call.of("a JSON receipt", SMSC.status_callback(1001, "79161234567", 20, 1, json_body=True)),
]

GENERIC_CALLS: list[Call] = [
    Call.of("a receipt", GENERIC.status_callback("msg-7", "delivered")),
    Call.of("an SMS", GENERIC.inbound_callback("+79161234567", "Стоп")),
    Call("query flavour", query="id=msg-7&state=delivered&error=%00"),
    Call("query flavour, an SMS", query="from=%00&text=x"),
    Call("query flavour, an SMS with NUL", query="from=79161234567&text=%00"),
    Call("a JSON body declared as a form", b'{"id": NaN, "state": 1}', FORM),
    Call(
        "a JSON body in another charset",
        '{"id": "ид", "state": "delivered"}'.encode("utf-16"),
        "application/json",
    ),
]

PER_PROVIDER = {"smsru": SMSRU_CALLS, "smsc": SMSC_CALLS, "generic": GENERIC_CALLS}


# -- a seeded fuzzer over valid calls ------------------------------------------------------------

SEED = 20261124
HOSTILE_BYTES = [
    b"\x00",
    b"\xff",
    b"\xc3",
    b"\xed\xa0\x80",
    b"%",
    b"&",
    b"=",
    b"\n",
    b"\r\n",
    b"{",
    b"[",
    b'"',
    b"\\",
    b"%00",
    b"%FF",
    b"%ED%A0%80",
    b"%0A",
    b"%E2%80%A8",
    b"%1B",
    b"\\u0000",
    b"\\ud800",
    b"NaN",
    b"Infinity",
    b"1e400",
    b"-",
    b"99999999999999999999999",
    b"\t",
]


def mutate(body: bytes, rng: random.Random) -> bytes:
    """`body` with one to four random edits: a byte replaced or inserted from a hostile set,
    a cut, a doubling, or a run of digits made enormous."""
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(len(body) + 1)
        edit = rng.randrange(6)
        if edit == 0:
            body = body[:at] + rng.choice(HOSTILE_BYTES) + body[at + 1 :]
        elif edit == 1:
            body = body[:at] + rng.choice(HOSTILE_BYTES) + body[at:]
        elif edit == 2:
            body = body[:at]
        elif edit == 3:
            body = body + body
        elif edit == 4:
            digits = [n for n, byte in enumerate(body) if chr(byte).isdigit()]
            if digits:
                start = rng.choice(digits)
                body = body[:start] + rng.choice([b"9" * 40, b"-" + b"9" * 25, b"0"]) + body[start:]
        else:
            body = bytes(rng.randrange(256) for _ in range(rng.randint(0, 40))) + body
    return body


def fuzzed(provider: str, count: int) -> list[Call]:
    """`count` mutations of the provider's own calls, the same ones on every run."""
    rng = random.Random(f"{SEED}:{provider}")
    seeds = [
        call
        for call in PER_PROVIDER[provider]
        if call.label in ("a receipt", "an SMS", "a JSON receipt")
    ]
    calls = []
    for n in range(count):
        seed = rng.choice(seeds)
        if seed.method == "GET" or not seed.body:
            query = mutate(seed.query.encode(), rng).decode("latin-1")
            query = "".join(ch if 0x21 <= ord(ch) < 0x7F else quote(ch) for ch in query)
            calls.append(replace(seed, label=f"fuzz {n}", query=query))
        else:
            calls.append(replace(seed, label=f"fuzz {n}", body=mutate(seed.body, rng)))
    return calls


# -- the tests ---------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["smsru", "smsc", "generic"])
async def test_no_hostile_call_gets_a_5xx_or_logs_an_error(
    db: Database, clock: FakeClock, caplog: pytest.LogCaptureFixture, provider: str
) -> None:
    caplog.set_level(logging.DEBUG)
    calls = [*COMMON, *PER_PROVIDER[provider], *fuzzed(provider, 40)]
    failures: list[str] = []
    async with webhook(db, clock, provider) as port:
        for call in calls:
            for secret in (None, SECRET):
                caplog.clear()
                status, body = await send(port, provider, call, secret=secret)
                what = f"{call.label} ({'with' if secret else 'without'} the secret)"
                records = caplog.records
                if call.label in AIOHTTP_OWN:
                    records = [r for r in records if r.name != "aiohttp.server"]
                try:
                    check_log(records, what)
                    assert status < 500, (status, body[:200])
                    assert call.label not in AIOHTTP_OWN or status == 400, status
                except AssertionError as exc:
                    failures.append(f"{what}: {exc}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize(
    ("provider", "body", "content_type"),
    [
        ("smsru", b"data[0]=sms_status\n\xff\xfe\n103\n1", FORM),
        ("smsru", b"data[0]=sms_status", f"{FORM}; charset=x-no-such-charset"),
        ("smsc", "id=1&phone=79161234567&mes=Стоп".encode("cp1251"), FORM),
        ("smsc", b"id=1&phone=79161234567&status=1", f"{FORM}; charset=x-no-such-charset"),
        ("generic", b"id=\xff&state=delivered", FORM),
        ("generic", b"id=1&state=delivered", f"{FORM}; charset=base64"),
    ],
    ids=[
        "smsru-bytes",
        "smsru-charset",
        "smsc-bytes",
        "smsc-charset",
        "generic-bytes",
        "generic-codec",
    ],
)
async def test_a_body_that_does_not_decode_is_refused_before_and_after_the_secret(
    db: Database,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
    provider: str,
    body: bytes,
    content_type: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    call = Call("undecodable", body, content_type)
    async with webhook(db, clock, provider) as port:
        refused, _ = await send(port, provider, call, secret=None)
        assert refused in (400, 403)
        assert await send(port, provider, call, secret="wrong-secret-000000000") == (
            refused,
            "malformed body" if refused == 400 else "forbidden",
        )
        assert await send(port, provider, call, secret=SECRET) == (400, "malformed body")
    check_log(caplog.records, "undecodable")
    async with db.sessions() as session:
        assert not (await session.scalars(select(DeliveryReceipt))).all()
        assert not (await session.scalars(select(InboundSms))).all()


async def test_a_signed_receipt_in_a_multipart_body_is_applied(
    db: Database, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    signed = SMSRU.status_callback((GOOD_ID, 103))
    parts = [
        f'Content-Disposition: form-data; name="{key}"\r\n\r\n{value}'.encode()
        for key, value in signed.form
    ]
    async with webhook(db, clock, "smsru") as port:
        assert await send(port, "smsru", multipart(*parts), secret=None) == (200, "100")
    check_log(caplog.records, "multipart")
    async with db.sessions() as session:
        [receipt] = (await session.scalars(select(DeliveryReceipt))).all()
    assert (receipt.provider_message_id, receipt.status) == (GOOD_ID, "delivered")


async def test_an_smsru_receipt_with_a_time_out_of_range_gets_100_and_one_warning(
    db: Database, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with SmsRuServer(API_ID) as smsru:
        settings = smsru_settings(db, smsru)
        client = await add_client(db, phone="+79161234567")
        message_id = await queue_message(db, clock, client, plan=("sms",))
        await drain(db, settings, clock)
        sent = await message(db, message_id)
        assert sent.provider_message_id is not None
        # Signed by SMS.ru's own hash, as SMS.ru sends it: a time past year 9999, and a good
        # receipt in the same call, which is applied.
        call = Call.of(
            "a bad time",
            smsru.status_callback(
                ("000999-1000999", 103),
                at=10**12,
                extra=[f"sms_status\n{sent.provider_message_id}\n103\n{AT}"],
            ),
        )
        async with serve_api(db, clock, sms=settings.sms.model_dump()) as api:
            for attempt in ("first", "again"):
                caplog.clear()
                assert await send(port_of(api), "smsru", call, secret=None) == (200, "100")
                check_log(caplog.records, attempt)
                [warning] = warnings_of(caplog.records)
                assert "000999-1000999" in warning
                assert "time" in warning

    assert (await message(db, message_id)).state == "delivered"
    async with db.sessions() as session:
        kept = (await session.scalars(select(DeliveryReceipt.provider_message_id))).all()
    assert kept == [sent.provider_message_id] * 2, "the entry out of range is never stored"


async def test_an_unknown_status_is_kept_as_pending_with_a_warning(
    db: Database, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with webhook(db, clock, "smsru") as port:
        call = Call.of("code 777", SMSRU.status_callback((GOOD_ID, 777)))
        assert await send(port, "smsru", call, secret=None) == (200, "100")
    [warning] = warnings_of(caplog.records)
    assert "777" in warning
    async with db.sessions() as session:
        [receipt] = (await session.scalars(select(DeliveryReceipt))).all()
    assert (receipt.provider_message_id, receipt.status) == (GOOD_ID, "pending")


async def test_a_hostile_provider_name_is_logged_as_one_escaped_short_line(
    db: Database, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # The request line is capped at 8190 bytes by aiohttp, so the name is as long as fits.
    name = "evil\nERROR forged line\r\x1b[31m\x00" + "p" * 8000
    async with webhook(db, clock, "smsru") as port:
        call = Call("hostile name", b"", path=quote(name, safe=""))
        status, _ = await send(port, "smsru", call, secret=SECRET)
    assert status == 404
    check_log(caplog.records, "hostile name")
    [warning] = [r for r in caplog.records if r.name == "autoloyal.webhooks"]
    line = warning.getMessage()
    assert warning.levelno == logging.WARNING
    assert "'evil\\nERROR forged line\\r\\x1b[31m\\x00ppp" in line
    assert "ppp" * 30 not in line, "shortened"
    assert f"({len(name)} chars)" in line, "with its length said"


async def test_a_long_hostile_value_in_the_body_is_logged_escaped_and_short(
    db: Database, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    phone = "\n2026-11-24 06:00:00 ERROR autoloyal: forged\x1b[0m" + "x" * 10_000
    async with webhook(db, clock, "smsc") as port:
        call = smsc_fields(("phone", phone), ("mes", "Стоп"))
        status, _ = await send(port, "smsc", call, secret=SECRET)
    assert status == 400
    check_log(caplog.records, "hostile phone")
    [warning] = warnings_of(caplog.records)
    assert "'\\n2026-11-24 06:00:00 ERROR autoloyal: forged\\x1b[0mxxx" in warning
    assert "x" * 100 not in warning
    assert len(warning) < 300


async def test_the_access_log_hides_the_secret_and_escapes_what_the_caller_chose(
    db: Database, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # aiohttp refuses control characters in a header, but not bytes past 0x7f (NEL here).
    agent = "evil\x85" + "a" * 5000
    call = Call("agent", b"", query="data%5B0%5D=x%0Ay", headers=(("User-Agent", agent),))
    async with webhook(db, clock, "smsru") as port:
        assert await send(port, "smsru", call, secret=SECRET) == (200, "100"), "no sms_status"

    assert not [r for r in caplog.records if SECRET in repr(r.__dict__)]
    [line] = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    assert "'/webhooks/sms/smsru?secret=***&data[0]=x\\ny'" in line
    assert line.isprintable()
    assert line.endswith("aaa'… (5005 chars)")
    assert len(line) < 300


def test_the_provider_id_limit_is_the_width_of_the_stored_ids() -> None:
    for column in (Message.provider_message_id, DeliveryReceipt.provider_message_id):
        assert column.type.length == PROVIDER_ID_LIMIT
    assert InboundSms.provider_message_id.type.length == PROVIDER_ID_LIMIT

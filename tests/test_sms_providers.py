"""The SMS adapters against local fakes of SMS.ru, SMSC and a generic provider, over real
HTTP on loopback: every answer maps to the right outcome, requests carry what the provider
needs, polls and callbacks map to receipts, and signatures are checked."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote, quote_plus

import pytest

from gateway.channels import Halted, Outgoing, Permanent, Sender, Sent, Transient
from gateway.channels.sms import (
    DELIVERED,
    FAILED,
    PENDING,
    CallbackError,
    CallbackRequest,
    Inbound,
    Receipt,
    SmsAccount,
)
from gateway.channels.sms.generic import GenericSms, GenericSpec
from gateway.channels.sms.smsc import Smsc
from gateway.channels.sms.smsru import SmsRu
from tests.support.sms_servers import AT, GenericServer, ProviderCall, SmscServer, SmsRuServer

PHONE = "+79161234567"
TEXT = "Здравствуйте, Анна! Ваш автомобиль готов, ждём вас в «Моторе» до 20:00."
PATIENT = 60.0
"""The client's timeout against the local fakes: their answer always comes, however loaded
the machine is, so no test may hang on a short timeout for it."""
STALLED = 0.3
"""The client's timeout where the fake is told to stall ("slow"): it answers after 5 s, on the
same event loop, so giving up first is certain, not a race."""


def timeout_for(scenario: str | None) -> float:
    return STALLED if scenario == "slow" else PATIENT


def scenario_of(request: pytest.FixtureRequest) -> str | None:
    """The `scenario` a parametrised test runs, for the fixtures that build its client."""
    callspec = getattr(request.node, "callspec", None)
    return None if callspec is None else callspec.params.get("scenario")


WHEN = datetime.fromtimestamp(AT, UTC)

# An expected outcome: its class, attributes it must have, a piece of its error text.
Expect = tuple[type, dict[str, Any], str]


def outgoing(phone: str = PHONE, text: str = TEXT) -> Outgoing:
    return Outgoing(42, 7, "sms", phone, "visit_reminder", {"text": text})


def check(result: object, expected: Expect) -> None:
    kind, attributes, error = expected
    assert isinstance(result, kind), result
    for name, value in attributes.items():
        assert getattr(result, name) == value, (name, result)
    if error:
        assert error in result.error, result  # type: ignore[attr-defined]
    if kind is not Sent:
        assert result.error.startswith(("SMS.ru: ", "SMSC: ", "SMS Gate: ", "SMS Query: "))  # type: ignore[attr-defined]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def form_request(
    *fields: tuple[str, str], query: tuple[tuple[str, str], ...] = ()
) -> CallbackRequest:
    return CallbackRequest("POST", query=query, form=fields)


# SMS.ru


@pytest.fixture
async def smsru_server() -> AsyncIterator[SmsRuServer]:
    async with SmsRuServer() as server:
        yield server


@pytest.fixture
async def smsru(request: pytest.FixtureRequest, smsru_server: SmsRuServer) -> AsyncIterator[SmsRu]:
    account = SmsAccount(
        smsru_server.url,
        sender="AutoService",
        password=smsru_server.api_id,
        timeout=timeout_for(scenario_of(request)),
    )
    channel = SmsRu(account)
    yield channel
    await channel.close()


SMSRU_SENDS: list[tuple[str | None, Expect]] = [
    (None, (Sent, {"cost": Decimal("3.49"), "sender": "smsru"}, "")),
    ("bad_number", (Permanent, {"unreachable": True}, "the number is wrong or has no route (202)")),
    ("no_route", (Permanent, {"unreachable": True}, "no route to this number (207)")),
    ("stop_list", (Permanent, {"unreachable": True}, "stop list (209)")),
    ("forbidden_text", (Permanent, {"unreachable": False}, "forbidden word (216)")),
    ("no_money", (Halted, {}, "SMS.ru: not enough money on the account: top it up (201)")),
    ("bad_credentials", (Halted, {}, "the api_id is wrong")),
    ("sender_not_approved", (Halted, {}, "the sender name is not approved")),
    ("unavailable", (Transient, {"retry_after": None}, "temporarily unavailable (220)")),
    ("duplicate", (Transient, {"retry_after": 60.0}, "per minute")),
    ("rate_limit", (Transient, {"retry_after": 7.0}, "too many requests (HTTP 429)")),
    ("server_error", (Transient, {"retry_after": None}, "HTTP 500")),
    ("slow", (Transient, {}, f"no answer in {STALLED:g} s")),
    ("garbage", (Transient, {}, "unexpected answer (HTTP 200): <html><body><h1>502 Bad Gateway")),
]


@pytest.mark.parametrize(("scenario", "expected"), SMSRU_SENDS, ids=lambda v: str(v)[:20])
async def test_smsru_maps_every_answer(
    smsru_server: SmsRuServer, smsru: SmsRu, scenario: str | None, expected: Expect
) -> None:
    smsru_server.fail_next(scenario)
    result = await smsru.send(outgoing())
    check(result, expected)
    if isinstance(result, Sent):
        assert result.provider_id in smsru_server.messages
        assert smsru_server.messages[result.provider_id].text == TEXT


async def test_smsru_request_carries_what_smsru_needs(
    smsru_server: SmsRuServer, smsru: SmsRu
) -> None:
    await smsru.send(outgoing())
    [seen] = smsru_server.seen("/sms/send")
    assert seen.method == "POST"
    assert seen.fields == {
        "api_id": smsru_server.api_id,
        "to": "79161234567",
        "msg": TEXT,
        "from": "AutoService",
        "json": "1",
    }
    assert quote_plus(TEXT, encoding="utf-8").encode() in seen.body


async def test_smsru_without_a_sender_name_sends_no_from(smsru_server: SmsRuServer) -> None:
    channel = SmsRu(SmsAccount(smsru_server.url, password=smsru_server.api_id))
    try:
        assert isinstance(await channel.send(outgoing()), Sent)
    finally:
        await channel.close()
    assert "from" not in smsru_server.seen("/sms/send")[0].fields


async def test_smsru_does_not_call_for_a_number_that_is_not_one(
    smsru_server: SmsRuServer, smsru: SmsRu
) -> None:
    result = await smsru.send(outgoing("+7 916"))
    check(result, (Permanent, {"unreachable": True}, "not a phone number"))
    assert smsru_server.requests == []


SMSRU_STATUSES = [
    (100, PENDING, None),
    (101, PENDING, None),
    (102, PENDING, None),
    (103, DELIVERED, None),
    (110, DELIVERED, None),
    (104, FAILED, "Не может быть доставлено: время жизни истекло"),
    (105, FAILED, "Не может быть доставлено: удалено оператором"),
    (106, FAILED, "Не может быть доставлено: сбой в телефоне"),
    (107, FAILED, "Не может быть доставлено: неизвестная причина"),
    (108, FAILED, "Не может быть доставлено: отклонено"),
    (150, FAILED, "Не может быть доставлено: не найден маршрут на данный номер"),
]


async def test_smsru_polls_many_statuses_in_one_call(
    smsru_server: SmsRuServer, smsru: SmsRu
) -> None:
    ids = []
    for index, (code, _status, _reason) in enumerate(SMSRU_STATUSES):
        sent = await smsru.send(outgoing(f"+7916000{index:04d}"))
        assert isinstance(sent, Sent)
        assert sent.provider_id
        smsru_server.set_status(sent.provider_id, code)
        ids.append(sent.provider_id)

    receipts = await smsru.statuses([*ids, "999999-0000001"])

    assert receipts == [
        Receipt(sms_id, status, reason, None, Decimal("3.49"))
        for sms_id, (_code, status, reason) in zip(ids, SMSRU_STATUSES, strict=True)
    ]
    [poll] = smsru_server.seen("/sms/status")
    assert poll.fields == {
        "api_id": smsru_server.api_id,
        "sms_id": ",".join([*ids, "999999-0000001"]),
        "json": "1",
    }


async def test_smsru_poll_raises_when_smsru_refuses(smsru_server: SmsRuServer) -> None:
    channel = SmsRu(SmsAccount(smsru_server.url, password="wrong"))
    try:
        with pytest.raises(RuntimeError, match=r"^SMS\.ru: the api_id is wrong"):
            await channel.statuses(["000001-1000001"])
    finally:
        await channel.close()


async def test_smsru_callback_parses_receipts_and_answers_100(
    smsru_server: SmsRuServer, smsru: SmsRu
) -> None:
    call = smsru_server.status_callback(
        ("000201-1000001", 103),
        ("000202-1000002", 105),
        ("000203-1000003", 102),
        extra=[f"callcheck_status\n201737-542\n401\n{AT}"],
    )
    callback = smsru.callback(call.request())
    assert callback.receipts == [
        Receipt("000201-1000001", DELIVERED, None, WHEN),
        Receipt("000202-1000002", FAILED, "Не может быть доставлено: удалено оператором", WHEN),
        Receipt("000203-1000003", PENDING, None, WHEN),
    ]
    assert not callback.inbound
    assert (callback.reply, callback.content_type) == ("100", "text/plain")
    assert smsru.signed(call.request())


async def test_smsru_callback_reads_the_raw_body_when_no_form_was_parsed(
    smsru_server: SmsRuServer, smsru: SmsRu
) -> None:
    call = smsru_server.status_callback(("000201-1000001", 103))
    request = replace(call.request(), form=())
    assert smsru.callback(request).receipts == [Receipt("000201-1000001", DELIVERED, None, WHEN)]
    assert smsru.signed(request)


SMSRU_GARBAGE = [
    CallbackRequest("POST"),
    form_request(("hello", "world")),
    form_request(("data[0]", "sms_status\n000201-1000001")),
    form_request(("data[0]", "sms_status\n000201-1000001\ndelivered\n1795500000")),
    form_request(("data[0]", "sms_status\n000201-1000001\n103\nyesterday")),
    form_request(("data[0]", "sms_status\n\n103\n1795500000")),
]


@pytest.mark.parametrize("request_", SMSRU_GARBAGE)
async def test_smsru_callback_refuses_garbage(smsru: SmsRu, request_: CallbackRequest) -> None:
    with pytest.raises(CallbackError, match=r"^SMS\.ru: ") as caught:
        smsru.callback(request_)
    assert caught.value.status == 400


def smsru_spoiled(call: ProviderCall) -> list[CallbackRequest]:
    no_hash = tuple((key, value) for key, value in call.form if key != "hash")
    return [
        call.with_form("hash", "0" * 64).request(),
        call.with_form("data[0]", f"sms_status\n000201-1000001\n104\n{AT}").request(),
        replace(call.request(), form=no_hash, body=b""),
    ]


async def test_smsru_signed_accepts_its_hash_and_refuses_others(
    smsru_server: SmsRuServer, smsru: SmsRu
) -> None:
    call = smsru_server.status_callback(("000201-1000001", 103))
    assert smsru.signed(call.request())
    for spoiled in smsru_spoiled(call):
        assert not smsru.signed(spoiled)
    other = SmsRu(SmsAccount(smsru_server.url, password="someone-else"))
    assert not other.signed(call.request())


# SMSC


@pytest.fixture
async def smsc_server() -> AsyncIterator[SmscServer]:
    async with SmscServer() as server:
        yield server


@pytest.fixture
async def smsc(request: pytest.FixtureRequest, smsc_server: SmscServer) -> AsyncIterator[Smsc]:
    account = SmsAccount(
        smsc_server.url,
        sender="AutoService",
        login=smsc_server.login,
        password=smsc_server.password,
        timeout=timeout_for(scenario_of(request)),
    )
    channel = Smsc(account)
    yield channel
    await channel.close()


SMSC_SENDS: list[tuple[str | None, Expect]] = [
    (
        None,
        (Sent, {"provider_id": "1001:79161234567", "cost": Decimal("2.50"), "sender": "smsc"}, ""),
    ),
    ("bad_params", (Permanent, {"unreachable": False}, "parameters are wrong (1)")),
    ("bad_credentials", (Halted, {}, "SMSC: login or password refused")),
    ("no_money", (Halted, {}, "SMSC: not enough money on the account: top it up (3)")),
    ("ip_blocked", (Halted, {}, "IP is temporarily blocked after repeated errors")),
    (
        "forbidden",
        (Permanent, {"unreachable": False}, "forbidden (by its text or the sender name) (6)"),
    ),
    ("bad_number", (Permanent, {"unreachable": True}, "malformed (7)")),
    ("undeliverable", (Permanent, {"unreachable": True}, "cannot be delivered to this number (8)")),
    (
        "rate_limit",
        (Transient, {"retry_after": 60.0}, "too many identical or concurrent requests (9)"),
    ),
    ("server_error", (Transient, {"retry_after": None}, "HTTP 500")),
    ("slow", (Transient, {}, f"no answer in {STALLED:g} s")),
    ("garbage", (Transient, {}, "unexpected answer (HTTP 200): <html>")),
]


@pytest.mark.parametrize(("scenario", "expected"), SMSC_SENDS, ids=lambda v: str(v)[:20])
async def test_smsc_maps_every_answer(
    smsc_server: SmscServer, smsc: Smsc, scenario: str | None, expected: Expect
) -> None:
    smsc_server.fail_next(scenario)
    check(await smsc.send(outgoing()), expected)


async def test_smsc_request_carries_what_smsc_needs(smsc_server: SmscServer, smsc: Smsc) -> None:
    await smsc.send(outgoing())
    [seen] = smsc_server.seen("/sys/send.php")
    assert seen.method == "POST"
    assert seen.fields == {
        "login": "autoservice",
        "psw": "s3cret-пароль",
        "phones": "79161234567",
        "mes": TEXT,
        "sender": "AutoService",
        "fmt": "3",
        "charset": "utf-8",
        "cost": "3",
    }
    assert quote_plus(TEXT, encoding="utf-8").encode() in seen.body


async def test_smsc_signs_in_with_an_api_key_when_there_is_no_login(
    smsc_server: SmscServer,
) -> None:
    channel = Smsc(SmsAccount(smsc_server.url, password=smsc_server.apikey))
    try:
        assert isinstance(await channel.send(outgoing()), Sent)
    finally:
        await channel.close()
    fields = smsc_server.seen("/sys/send.php")[0].fields
    assert fields["apikey"] == smsc_server.apikey
    assert not {"login", "psw", "sender"} & set(fields)


SMSC_STATUSES = [
    (-1, 0, PENDING, None),
    (0, 0, PENDING, None),
    (1, 0, DELIVERED, None),
    (2, 0, DELIVERED, None),
    (4, 0, DELIVERED, None),
    (3, 0, FAILED, "Просрочено"),
    (20, 6, FAILED, "Абонент не в сети"),
    (20, 13, FAILED, "Абонент заблокирован"),
    (22, 0, FAILED, "Неверный номер"),
    (25, 999, FAILED, "Недоступный номер (код 999)"),
]


async def test_smsc_polls_each_message_with_its_phone(smsc_server: SmscServer, smsc: Smsc) -> None:
    ids = []
    for index, (status, err, _mapped, _reason) in enumerate(SMSC_STATUSES):
        sent = await smsc.send(outgoing(f"+7916000{index:04d}"))
        assert isinstance(sent, Sent)
        assert sent.provider_id
        smsc_server.set_status(sent.provider_id.split(":")[0], status, err)
        ids.append(sent.provider_id)

    receipts = await smsc.statuses([*ids, "999:79160009999", "garbled"])

    assert receipts == [
        Receipt(provider_id, mapped, reason, WHEN)
        for provider_id, (_s, _e, mapped, reason) in zip(ids, SMSC_STATUSES, strict=True)
    ]
    polls = smsc_server.seen("/sys/status.php")
    assert len(polls) == len(ids) + 1
    assert polls[0].fields == {
        "login": "autoservice",
        "psw": "s3cret-пароль",
        "phone": "79160000000",
        "id": "1001",
        "fmt": "3",
        "charset": "utf-8",
    }


async def test_smsc_poll_stops_at_a_rate_limit(smsc_server: SmscServer, smsc: Smsc) -> None:
    first, second = await smsc.send(outgoing("+79160000001")), await smsc.send(outgoing())
    assert isinstance(first, Sent)
    assert isinstance(second, Sent)
    assert first.provider_id
    assert second.provider_id
    smsc_server.fail_next(None, "rate_limit")
    assert await smsc.statuses([first.provider_id, second.provider_id]) == [
        Receipt(first.provider_id, PENDING, None, WHEN)
    ]
    smsc_server.fail_next("rate_limit")
    with pytest.raises(RuntimeError, match=r"^SMSC: status\.php: duplicate request"):
        await smsc.statuses([first.provider_id])


SMSC_RECEIPTS = [
    pytest.param({}, Receipt("1001:79161234567", DELIVERED, None, WHEN), id="delivered"),
    pytest.param({"status": 0}, Receipt("1001:79161234567", PENDING, None, WHEN), id="pending"),
    pytest.param(
        {"status": 20, "err": 1},
        Receipt("1001:79161234567", FAILED, "Абонент не существует", WHEN),
        id="failed",
    ),
    pytest.param(
        {"charset": "windows-1251"},
        Receipt("1001:79161234567", DELIVERED, None, WHEN),
        id="windows-1251",
    ),
    pytest.param(
        {"json_body": True}, Receipt("1001:79161234567", DELIVERED, None, WHEN), id="json"
    ),
    pytest.param({"sign": "sha1"}, Receipt("1001:79161234567", DELIVERED, None, WHEN), id="sha1"),
]


@pytest.mark.parametrize(("options", "expected"), SMSC_RECEIPTS)
async def test_smsc_callback_parses_receipts(
    smsc_server: SmscServer, smsc: Smsc, options: dict[str, Any], expected: Receipt
) -> None:
    status, err = options.pop("status", 1), options.pop("err", 0)
    call = smsc_server.status_callback(1001, "79161234567", status, err, **options)
    callback = smsc.callback(call.request())
    assert callback.receipts == [expected]
    assert (tuple(callback.inbound), callback.reply) == ((), "OK")
    assert smsc.signed(call.request())


@pytest.mark.parametrize(
    "options", [{}, {"charset": "windows-1251"}, {"charset": "koi8-r"}, {"json_body": True}]
)
@pytest.mark.parametrize("phone", ["79161234567", "89161234567"])
async def test_smsc_callback_parses_incoming_sms(
    smsc_server: SmscServer, smsc: Smsc, options: dict[str, Any], phone: str
) -> None:
    text = "Перезвоните мне, пожалуйста: завтра после 18:00"
    call = smsc_server.inbound_callback(phone, text, **options)
    callback = smsc.callback(call.request())
    assert callback.inbound == [Inbound("+79161234567", text, "77001", WHEN)]
    assert not callback.receipts
    assert smsc.signed(call.request())


SMSC_GARBAGE = [
    CallbackRequest("POST"),
    form_request(("hello", "world")),
    form_request(("id", "1001"), ("phone", "79161234567")),
    form_request(("id", "1001"), ("phone", "79161234567"), ("status", "delivered")),
    form_request(("id", "1001"), ("status", "1")),
    form_request(("phone", "123"), ("mes", "hi")),
    CallbackRequest("POST", headers={"Content-Type": "application/json"}, body=b"{not json"),
]


@pytest.mark.parametrize("request_", SMSC_GARBAGE)
async def test_smsc_callback_refuses_garbage(smsc: Smsc, request_: CallbackRequest) -> None:
    with pytest.raises(CallbackError, match=r"^SMSC: ") as caught:
        smsc.callback(request_)
    assert caught.value.status == 400


async def test_smsc_signed_refuses_a_wrong_or_missing_hash(
    smsc_server: SmscServer, smsc: Smsc
) -> None:
    call = smsc_server.status_callback(1001, "79161234567", 20, 1)
    assert smsc.signed(call.request())
    assert not smsc.signed(call.with_form("status", "1").request())
    assert not smsc.signed(call.with_form("md5", "0" * 32).request())
    assert not smsc.signed(smsc_server.status_callback(1001, "79161234567", 1, sign=None).request())
    # A flag in the handler URL's own query is not a signature.
    unsigned = smsc_server.status_callback(1001, "79161234567", 1, sign=None)
    assert not smsc.signed(replace(unsigned, query=(*unsigned.query, ("md5", "1"))).request())
    inbound = smsc_server.inbound_callback("79161234567", "Привет")
    assert not smsc.signed(inbound.with_form("mes", "Пока").request())
    other = Smsc(SmsAccount(smsc_server.url, login="autoservice", password="other"))
    assert not other.signed(call.request())
    assert not smsc.signed(CallbackRequest("POST", body=b"{broken json"))


# The generic provider, in a JSON flavour and a query-string one.


def json_spec(**changes: Any) -> GenericSpec:
    spec: dict[str, Any] = {
        "title": "SMS Gate",
        "url": "/v1/messages",
        "send_as": "json",
        "fields": {
            "phone": "{phone}",
            "text": "{text}",
            "sender": "{sender}",
            "ref": "{message_id}",
        },
        "headers": {"Authorization": "Bearer {password}"},
        "id_path": "data.id",
        "cost_path": "data.price",
        "ok_path": "status",
        "ok_values": ["accepted"],
        "error_path": "error.code",
        "unreachable_codes": ["invalid_phone"],
        "halt_codes": ["insufficient_funds"],
        "status_url": "/v1/messages/status?ids={ids}",
        "status_items_path": "messages",
        "status_path": "state",
        "reason_path": "error",
        "delivered_values": ["delivered"],
        "failed_values": ["undelivered", "rejected"],
        "callback_status_field": "state",
        "callback_reason_field": "error",
        "inbound_phone_field": "from",
        "inbound_text_field": "text",
    }
    return GenericSpec(**(spec | changes))


def query_spec(**changes: Any) -> GenericSpec:
    spec: dict[str, Any] = {
        "title": "SMS Query",
        "url": "/http/send",
        "method": "GET",
        "send_as": "query",
        "fields": {
            "user": "{login}",
            "pass": "{password}",
            "to": "{digits}",
            "msg": "{text}",
            "from": "{sender}",
        },
        "id_path": "sms_id",
        "cost_path": "cost",
        "ok_path": "ok",
        "ok_values": [1],
        "error_path": "err",
        "unreachable_codes": ["BAD_NUMBER"],
        "halt_codes": ["NO_BALANCE", "AUTH"],
        "refused_codes": ["BAD_TEXT"],
        "status_url": "/http/status?user={login}&pass={password}&sms_id={id}",
        "status_id_path": "sms_id",
        "status_path": "dlr",
        "reason_path": "dlr_reason",
        "delivered_values": ["DELIVRD"],
        "failed_values": ["UNDELIV", "REJECTD"],
        "callback_id_field": "sms_id",
        "callback_status_field": "dlr",
        "callback_reason_field": "dlr_reason",
        "inbound_phone_field": "sender",
        "inbound_text_field": "msg",
    }
    return GenericSpec(**(spec | changes))


@pytest.fixture
async def generic_server() -> AsyncIterator[GenericServer]:
    async with GenericServer() as server:
        yield server


def generic_account(server: GenericServer, flavour: str, timeout: float = PATIENT) -> SmsAccount:
    if flavour == "json":
        return SmsAccount(server.url, sender="AutoService", password=server.token, timeout=timeout)
    return SmsAccount(
        server.url,
        sender="AutoService",
        login=server.user,
        password=server.password,
        timeout=timeout,
    )


@pytest.fixture(params=["json", "query"])
async def generic(
    request: pytest.FixtureRequest, generic_server: GenericServer
) -> AsyncIterator[GenericSms]:
    spec = json_spec() if request.param == "json" else query_spec()
    channel = GenericSms(generic_account(generic_server, request.param), spec)
    yield channel
    await channel.close()


GENERIC_SENDS: list[tuple[str, str | None, Expect]] = [
    (
        "json",
        None,
        (Sent, {"provider_id": "msg-1", "cost": Decimal("1.50"), "sender": "generic"}, ""),
    ),
    (
        "json",
        "bad_number",
        (Permanent, {"unreachable": True}, "cannot be reached (code invalid_phone)"),
    ),
    ("json", "no_money", (Halted, {}, "code insufficient_funds")),
    ("json", "bad_credentials", (Halted, {}, "credentials are refused (HTTP 401)")),
    ("json", "refused", (Permanent, {"unreachable": False}, "HTTP 422: code content_rejected")),
    ("json", "temporary", (Transient, {}, "code queue_full")),
    ("json", "rate_limit", (Transient, {"retry_after": 3.0}, "too many requests")),
    ("json", "server_error", (Transient, {}, "HTTP 500")),
    ("json", "slow", (Transient, {}, f"no answer in {STALLED:g} s")),
    ("json", "garbage", (Transient, {}, "unexpected answer (HTTP 200): <html>")),
    ("query", None, (Sent, {"provider_id": "1", "cost": Decimal("1.2"), "sender": "generic"}, "")),
    ("query", "bad_number", (Permanent, {"unreachable": True}, "code BAD_NUMBER")),
    ("query", "no_money", (Halted, {}, "account cannot send (code NO_BALANCE): check its balance")),
    ("query", "bad_credentials", (Halted, {}, "code AUTH")),
    ("query", "refused", (Permanent, {"unreachable": False}, "refused (code BAD_TEXT)")),
    ("query", "temporary", (Transient, {}, "code BUSY")),
    ("query", "rate_limit", (Transient, {"retry_after": 3.0}, "HTTP 429")),
    ("query", "server_error", (Transient, {}, "HTTP 500")),
    ("query", "slow", (Transient, {}, f"no answer in {STALLED:g} s")),
]


@pytest.mark.parametrize(
    ("flavour", "scenario", "expected"), GENERIC_SENDS, ids=lambda v: str(v)[:20]
)
async def test_generic_maps_every_answer(
    generic_server: GenericServer, flavour: str, scenario: str | None, expected: Expect
) -> None:
    spec = json_spec() if flavour == "json" else query_spec()
    channel = GenericSms(generic_account(generic_server, flavour, timeout_for(scenario)), spec)
    generic_server.fail_next(scenario)
    try:
        check(await channel.send(outgoing()), expected)
    finally:
        await channel.close()


async def test_generic_json_request_carries_the_spec(generic_server: GenericServer) -> None:
    channel = GenericSms(generic_account(generic_server, "json"), json_spec())
    try:
        await channel.send(outgoing())
    finally:
        await channel.close()
    [seen] = generic_server.seen("/v1/messages")
    assert seen.method == "POST"
    assert seen.headers["Authorization"] == "Bearer generic-token"
    assert seen.headers["Content-Type"].startswith("application/json")
    assert seen.fields == {"phone": PHONE, "text": TEXT, "sender": "AutoService", "ref": "42"}


async def test_generic_query_request_carries_the_spec(generic_server: GenericServer) -> None:
    channel = GenericSms(generic_account(generic_server, "query"), query_spec())
    try:
        await channel.send(outgoing())
    finally:
        await channel.close()
    [seen] = generic_server.seen("/http/send")
    assert (seen.method, seen.body) == ("GET", b"")
    assert seen.fields == {
        "user": "shop",
        "pass": "pass-word",
        "to": "79161234567",
        "msg": TEXT,
        "from": "AutoService",
    }
    assert "msg=" + quote("Здравствуйте", encoding="utf-8") in seen.query_string


async def test_generic_absolute_urls_and_templated_paths(generic_server: GenericServer) -> None:
    spec = json_spec(
        url=generic_server.url + "/v1/messages?account={login}",
        status_url=generic_server.url + "/v1/messages/status?ids={ids}",
    )
    account = SmsAccount("", login="shop 1", password=generic_server.token)
    channel = GenericSms(account, spec)
    try:
        assert channel.destination == generic_server.url
        assert isinstance(await channel.send(outgoing()), Sent)
    finally:
        await channel.close()
    assert generic_server.seen("/v1/messages")[0].query_string == "account=shop%201"


GENERIC_STATUSES = {
    "json": [
        ("delivered", None, DELIVERED, None),
        ("undelivered", "absent subscriber", FAILED, "absent subscriber"),
        ("rejected", None, FAILED, None),
        ("sent", None, PENDING, None),
    ],
    "query": [
        ("DELIVRD", None, DELIVERED, None),
        ("UNDELIV", "EXPIRED", FAILED, "EXPIRED"),
        ("ENROUTE", None, PENDING, None),
    ],
}


@pytest.mark.parametrize("flavour", ["json", "query"])
async def test_generic_polls_statuses(generic_server: GenericServer, flavour: str) -> None:
    spec = json_spec() if flavour == "json" else query_spec()
    channel = GenericSms(generic_account(generic_server, flavour), spec)
    table = GENERIC_STATUSES[flavour]
    try:
        ids = []
        for index, (word, reason, _status, _said) in enumerate(table):
            sent = await channel.send(outgoing(f"+7916000{index:04d}"))
            assert isinstance(sent, Sent)
            assert sent.provider_id
            generic_server.set_status(sent.provider_id, word, reason)
            ids.append(sent.provider_id)
        receipts = await channel.statuses([*ids, "404"])
    finally:
        await channel.close()
    assert receipts == [
        Receipt(provider_id, status, said)
        for provider_id, (_w, _r, status, said) in zip(ids, table, strict=True)
    ]
    path = "/v1/messages/status" if flavour == "json" else "/http/status"
    polls = generic_server.seen(path)
    if flavour == "json":
        assert [poll.fields for poll in polls] == [{"ids": ",".join([*ids, "404"])}]
        assert polls[0].headers["Authorization"] == "Bearer generic-token"
    else:
        assert len(polls) == len(ids) + 1
        assert polls[0].fields == {"user": "shop", "pass": "pass-word", "sms_id": ids[0]}


async def test_generic_poll_raises_when_refused(generic_server: GenericServer) -> None:
    channel = GenericSms(SmsAccount(generic_server.url, password="wrong"), json_spec())
    try:
        with pytest.raises(RuntimeError, match=r"^SMS Gate: status poll: HTTP 401"):
            await channel.statuses(["msg-1"])
    finally:
        await channel.close()


async def test_generic_cannot_poll_without_a_status_url(generic_server: GenericServer) -> None:
    spec = json_spec(status_url=None, status_items_path=None)
    channel = GenericSms(generic_account(generic_server, "json"), spec)
    assert channel.can_poll is False
    assert await channel.statuses(["msg-1"]) == []
    assert GenericSms(generic_account(generic_server, "json"), json_spec()).can_poll is True


GENERIC_CALLBACKS = [
    pytest.param(
        "json", ("status", "msg-7", "delivered", None), Receipt("msg-7", DELIVERED), id="json-ok"
    ),
    pytest.param(
        "json",
        ("status", "msg-7", "undelivered", "absent subscriber"),
        Receipt("msg-7", FAILED, "absent subscriber"),
        id="json-failed",
    ),
    pytest.param(
        "json", ("status", "msg-7", "sent", None), Receipt("msg-7", PENDING), id="json-pending"
    ),
    pytest.param(
        "json",
        ("inbound", "+79161234567", "Да, приеду"),
        Inbound("+79161234567", "Да, приеду"),
        id="json-sms",
    ),
    pytest.param("query", ("status", 17, "DELIVRD", None), Receipt("17", DELIVERED), id="query-ok"),
    pytest.param(
        "query",
        ("status", 17, "UNDELIV", "EXPIRED"),
        Receipt("17", FAILED, "EXPIRED"),
        id="query-failed",
    ),
    pytest.param(
        "query",
        ("inbound", "89161234567", "Нет, спасибо"),
        Inbound("+79161234567", "Нет, спасибо"),
        id="query-sms",
    ),
]


@pytest.mark.parametrize(("flavour", "what", "expected"), GENERIC_CALLBACKS)
async def test_generic_callback_parses_what_the_spec_names(
    generic_server: GenericServer, flavour: str, what: tuple[Any, ...], expected: object
) -> None:
    spec = json_spec() if flavour == "json" else query_spec()
    channel = GenericSms(generic_account(generic_server, flavour), spec)
    if what[0] == "status":
        call = generic_server.status_callback(*what[1:], flavour=flavour)
    else:
        call = generic_server.inbound_callback(*what[1:], flavour=flavour)
    callback = channel.callback(call.request())
    assert [*callback.receipts, *callback.inbound] == [expected]
    assert callback.reply == "OK"
    assert channel.signed(call.request()) is False


GENERIC_GARBAGE = [
    CallbackRequest("POST"),
    CallbackRequest("GET", query=(("hello", "world"),)),
    CallbackRequest("POST", headers={"Content-Type": "application/json"}, body=b"not json"),
    CallbackRequest("POST", body=b'{"id": "msg-7"}'),
    CallbackRequest("POST", body=b'{"from": "12", "text": "hi"}'),
]


@pytest.mark.parametrize("request_", GENERIC_GARBAGE)
async def test_generic_callback_refuses_garbage(
    generic: GenericSms, request_: CallbackRequest
) -> None:
    with pytest.raises(CallbackError) as caught:
        generic.callback(request_)
    assert caught.value.status == 400


BASE_SPEC: dict[str, Any] = {"url": "/send", "fields": {"to": "{phone}", "msg": "{text}"}}

BAD_SPECS = [
    ({"method": "PUT"}, "method: must be GET or POST"),
    ({"send_as": "xml"}, "send_as: must be query, form or json"),
    ({"method": "GET", "send_as": "json"}, "send_as: a GET request"),
    ({"url": "ftp://example.com/send"}, "url: must be an http(s) URL"),
    ({"url": "/send/{token}"}, "url: unknown placeholder {token}"),
    ({"fields": {}}, "fields: name at least"),
    ({"fields": {"to": "{phone}", "msg": "{body}"}}, "fields.msg: unknown placeholder {body}"),
    ({"fields": {"to": "{phone!r}", "msg": "{text}"}}, "fields.to: {phone} takes no format"),
    ({"fields": {"to": "{phone", "msg": "{text}"}}, "fields.to: "),
    ({"fields": {"to": "{phone}"}}, "fields: no field carries the text"),
    ({"fields": {"msg": "{text}"}}, "fields: no field carries the number"),
    ({"fields": {"to": "{phone}", "msg": 5}}, "fields.msg: must be text"),
    (
        {"headers": {"Authorization": "Bearer {token}"}},
        "headers.Authorization: unknown placeholder",
    ),
    ({"id_path": ""}, "id_path: must be a dotted path"),
    ({"cost_path": "data..price"}, "cost_path: 'data..price' has an empty step"),
    ({"ok_path": "ok"}, "ok_values: ok_path needs"),
    ({"ok_values": ["1"]}, "ok_path: ok_values need"),
    ({"halt_codes": ["NO_MONEY"]}, "error_path: error codes need"),
    (
        {"error_path": "e", "unreachable_codes": ["X"], "halt_codes": ["x"]},
        "halt_codes: 'x' is in unreachable_codes too",
    ),
    ({"halt_codes": "NO_MONEY", "error_path": "e"}, "halt_codes: must be a list"),
    ({"status_url": "/s?id={id}&ids={ids}", "delivered_values": ["ok"]}, "status_url: use either"),
    ({"status_url": "/s", "delivered_values": ["ok"]}, "status_url: use either"),
    (
        {"status_url": "/s?id={id}&to={phone}", "delivered_values": ["ok"]},
        "status_url: unknown placeholder {phone}",
    ),
    ({"status_url": "/s?id={id}"}, "delivered_values: the status poll needs"),
    (
        {"status_url": "/s?id={id}", "delivered_values": ["ok"], "status_items_path": "items"},
        "status_items_path: only a batch",
    ),
    ({"status_items_path": "items"}, "status_items_path: there is no status_url"),
    (
        {"delivered_values": ["ok"], "failed_values": ["OK"]},
        "failed_values: 'ok' is in delivered_values too",
    ),
    ({"inbound_phone_field": "from"}, "inbound_text_field: incoming SMS need both"),
    ({"callback_reply": ""}, "callback_reply: must not be empty"),
]


@pytest.mark.parametrize(("changes", "message"), BAD_SPECS, ids=lambda v: str(v)[:30])
def test_generic_spec_names_the_field_it_refuses(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=r"^[a-z_]+(\.\w+)?: ") as caught:
        GenericSpec(**(BASE_SPEC | changes))
    assert message in str(caught.value)


def test_generic_spec_keeps_lists_as_tuples_of_words() -> None:
    loose: dict[str, Any] = {"halt_codes": [401, "NO_MONEY"], "ok_values": [True]}
    spec = GenericSpec(**BASE_SPEC, method="post", error_path="error", ok_path="ok", **loose)
    assert spec.method == "POST"
    assert spec.halt_codes == ("401", "no_money")
    assert spec.ok_values == ("true",)


def test_generic_needs_a_base_url_for_paths() -> None:
    with pytest.raises(ValueError, match=r"^base_url: /send is a path"):
        GenericSms(SmsAccount(""), GenericSpec(**BASE_SPEC))


# What every adapter shares.


@pytest.mark.parametrize("kind", ["smsru", "smsc", "generic"])
async def test_adapters_describe_themselves(kind: str) -> None:
    account = SmsAccount(
        "https://api.example.ru/", login="shop", password="top-secret", rate_per_second=4.0
    )
    channel: SmsRu | Smsc | GenericSms
    if kind == "smsru":
        channel = SmsRu(account)
    elif kind == "smsc":
        channel = Smsc(account)
    else:
        channel = GenericSms(account, GenericSpec(**BASE_SPEC))
    assert (channel.name, channel.provider) == ("sms", kind)
    assert channel.destination == "https://api.example.ru"
    assert "top-secret" not in channel.destination
    assert (channel.rate_per_second, channel.address_rate_per_second) == (4.0, None)
    assert channel.sender(None) == channel.sender("promo") == Sender(kind)
    assert channel.can_poll is (kind != "generic")
    await channel.close()
    await channel.close()


@pytest.mark.parametrize("kind", ["smsru", "smsc", "generic"])
async def test_adapters_see_a_refused_connection_as_transient(kind: str) -> None:
    account = SmsAccount(f"http://127.0.0.1:{free_port()}", password="x", timeout=PATIENT)
    channel: SmsRu | Smsc | GenericSms
    if kind == "smsru":
        channel = SmsRu(account)
    elif kind == "smsc":
        channel = Smsc(account)
    else:
        channel = GenericSms(account, GenericSpec(**BASE_SPEC, title="SMS Gate"))
    try:
        result = await channel.send(outgoing())
    finally:
        await channel.close()
    assert isinstance(result, Transient)
    assert result.error.startswith(("SMS.ru: ", "SMSC: ", "SMS Gate: "))
    assert "Connect" in result.error


def test_smsru_and_smsc_know_their_own_address() -> None:
    assert SmsRu(SmsAccount("")).destination == "https://sms.ru"
    assert Smsc(SmsAccount("")).destination == "https://smsc.ru"

"""SMS and e-mail wired from the config: receipts through the webhook and the poll, stop words,
halted channels, daily limits, and a campaign that reaches each client exactly once through
the first channel that works for them, accounted for by `campaign show`."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import dkim
import pytest
from sqlalchemy import select

from autoloyal.config import ConfigError, Settings, load_settings
from autoloyal.messaging import (
    build_channels,
    dispatch_policy,
    link_signer,
    opt_out,
    sms_provider,
)
from crm.campaigns import campaign_report, create_campaign, prepare_campaign
from crm.segments import SegmentContext
from crm.templates import TemplateLibrary
from gateway.alerts import ChatAlerts
from gateway.dispatch import Dispatcher
from gateway.receipts import poll_receipts
from storage.outbox import DeliveryReceipt, InboundSms, Message
from tests.support.api import ApiClient, api_settings, serve_api
from tests.support.botapi import FakeBotAPI
from tests.support.clock import FakeClock
from tests.support.databases import Database
from tests.support.messaging import COMPANY, add_client, attempts, message, queue_message
from tests.support.sms_servers import GenericServer, SmscServer, SmsRuServer
from tests.support.smtp import SmtpServer
from tests.test_cli import autoloyal
from tests.test_email_channel import dkim_key

SECRET = "webhook-secret-0123456789"
API_ID = "0A1B2C3D-test-api-id"


def smsru_settings(db: Database, server: SmsRuServer, **more: Mapping[str, Any]) -> Settings:
    sms = {
        "provider": "smsru",
        "base_url": server.url,
        "password": API_ID,
        "sender": "AutoSever",
        "callback_secret": SECRET,
    }
    return api_settings(db.url, sms=sms, **more)


def smsc_settings(db: Database, server: SmscServer) -> Settings:
    sms = {
        "provider": "smsc",
        "base_url": server.url,
        "login": server.login,
        "password": server.password,
        "callback_secret": SECRET,
    }
    return api_settings(db.url, sms=sms)


@asynccontextmanager
async def dispatcher_for(
    db: Database, settings: Settings, clock: FakeClock, **policy: Any
) -> AsyncIterator[Dispatcher]:
    """The dispatcher `autoloyal run` would build from `settings`, closed on the way out."""
    channels = build_channels(settings)
    chosen = dataclasses.replace(dispatch_policy(settings), **{"poll_seconds": 0.05, **policy})
    dispatcher = Dispatcher(db.sessions, channels, chosen, clock)
    try:
        yield dispatcher
    finally:
        await dispatcher.close()


async def drain(db: Database, settings: Settings, clock: FakeClock) -> None:
    async with dispatcher_for(db, settings, clock) as dispatcher:
        await dispatcher.drain()


@pytest.fixture
async def smsru() -> AsyncIterator[SmsRuServer]:
    async with SmsRuServer(API_ID) as server:
        yield server


async def send_one_sms(
    db: Database, clock: FakeClock, settings: Settings, phone: str = "+79161234567"
) -> int:
    client = await add_client(db, phone=phone)
    message_id = await queue_message(db, clock, client, plan=("sms",))
    await drain(db, settings, clock)
    return message_id


async def webhook(api: ApiClient, call: Any, provider: str, secret: str = SECRET) -> int:
    url = api.client.make_url(f"/webhooks/sms/{provider}?secret={secret}")
    status, _ = await call.deliver(str(url))
    return int(status)


async def test_an_smsru_receipt_through_the_webhook_marks_the_message_delivered(
    db: Database, clock: FakeClock, smsru: SmsRuServer
) -> None:
    settings = smsru_settings(db, smsru)
    message_id = await send_one_sms(db, clock, settings)
    sent = await message(db, message_id)
    assert (sent.state, sent.sender, sent.cost) == ("sent", "smsru", smsru.cost)
    assert smsru.messages[sent.provider_message_id or ""].sender == "AutoSever"

    clock.advance(minutes=1)
    async with serve_api(db, clock, sms=settings.sms.model_dump()) as api:
        call = smsru.status_callback((sent.provider_message_id, 103))
        forged = call.with_form("hash", "0" * 64)
        assert await webhook(api, forged, "smsru", secret="wrong-secret-000000000") == 403
        assert (await message(db, message_id)).state == "sent", "a refused call changes nothing"
        assert await webhook(api, forged, "smsru") == 200, "the secret in the URL admits it"
        assert await webhook(api, call, "smsru", secret="") == 200, "so does SMS.ru's hash"
        assert await webhook(api, call, "smsru") == 200, "the provider may send it twice"
        assert await webhook(api, call, "smsc") == 404, "another provider's address"

    delivered = await message(db, message_id)
    assert delivered.state == "delivered"
    assert delivered.delivered_at is not None
    async with db.sessions() as session:
        receipts = (await session.scalars(select(DeliveryReceipt))).all()
    assert [(r.status, r.message_id, r.via) for r in receipts] == [
        ("delivered", message_id, "callback"),
        ("delivered", message_id, "callback"),
        ("delivered", message_id, "callback"),
    ]


async def test_an_undelivered_sms_fails_with_the_operators_reason(
    db: Database, clock: FakeClock, smsru: SmsRuServer
) -> None:
    settings = smsru_settings(db, smsru)
    message_id = await send_one_sms(db, clock, settings)
    sent = await message(db, message_id)

    async with serve_api(db, clock, sms=settings.sms.model_dump()) as api:
        assert await webhook(api, smsru.status_callback((sent.provider_message_id, 105)), "smsru")

    failed = await message(db, message_id)
    assert failed.state == "failed"
    assert failed.reason is not None
    assert failed.reason.startswith("sms: not delivered (")


async def test_a_receipt_that_overtakes_its_send_is_applied_when_the_send_is_recorded(
    db: Database, clock: FakeClock, smsru: SmsRuServer
) -> None:
    settings = smsru_settings(db, smsru)
    first_id = "200001-1000001"  # the id the provider will give the next message
    async with serve_api(db, clock, sms=settings.sms.model_dump()) as api:
        assert await webhook(api, smsru.status_callback((first_id, 103)), "smsru") == 200

    message_id = await send_one_sms(db, clock, settings)

    sent = await message(db, message_id)
    assert (sent.provider_message_id, sent.state) == (first_id, "delivered")


async def test_the_poll_settles_messages_of_the_last_day(db: Database, clock: FakeClock) -> None:
    async with SmscServer() as smsc:
        settings = smsc_settings(db, smsc)
        old = await send_one_sms(db, clock, settings, "+79161234501")
        clock.advance(hours=25)
        fresh = await send_one_sms(db, clock, settings, "+79161234502")
        for sent in smsc.messages.values():
            smsc.set_status(sent.id, 1)
        provider = sms_provider(settings)
        assert provider is not None
        try:
            report = await poll_receipts(db.sessions, {"smsc": provider}, clock)
        finally:
            await provider.close()

    assert report.applied == 1
    assert (await message(db, fresh)).state == "delivered"
    assert (await message(db, old)).state == "sent", "older than a day: no longer asked about"


async def test_a_stop_reply_opts_the_number_out_and_the_next_campaign_skips_it(
    db: Database, clock: FakeClock
) -> None:
    async with SmscServer() as smsc:
        settings = smsc_settings(db, smsc)
        client = await add_client(db, phone="+79161234567", ads=True)
        async with serve_api(db, clock, sms=settings.sms.model_dump()) as api:
            reply = smsc.inbound_callback("79161234567", "СТОП", to="79990001122")
            assert await webhook(api, reply, "smsc") == 200

        later = await queue_message(db, clock, client, plan=("sms",))
        await drain(db, settings, clock)

    skipped = await message(db, later)
    assert (skipped.state, skipped.reason) == (
        "skipped",
        "sms: the client unsubscribed from advertising",
    )
    assert smsc.messages == {}
    async with db.sessions() as session:
        [inbound] = (await session.scalars(select(InboundSms))).all()
    assert (inbound.client_id, inbound.action, inbound.phone) == (client, "opt-out", "+79161234567")


async def test_no_money_halts_sms_the_messages_wait_and_staff_are_told(
    db: Database, clock: FakeClock, smsru: SmsRuServer
) -> None:
    settings = smsru_settings(db, smsru)
    client = await add_client(db, phone="+79161234567")
    first = await queue_message(db, clock, client, plan=("sms",))
    heard: list[str] = []

    async def post(text: str) -> None:
        heard.append(text)

    smsru.fail_next("no_money")
    async with dispatcher_for(
        db, settings, clock, max_in_flight=1, advertising_limit=0
    ) as dispatcher:
        dispatcher.alerts = ChatAlerts(post)
        await dispatcher.drain()
        waiting = await message(db, first)
        assert (waiting.state, waiting.channel_attempts) == ("queued", 0)
        clock.advance(minutes=11)
        await dispatcher.drain()

    assert (await message(db, first)).state == "sent", "tried again once the rest is over"
    assert [a.outcome for a in await attempts(db, first)] == ["halted", "sent"]
    assert len(heard) == 2
    assert "sms stopped sending: SMS.ru: not enough money" in heard[0]
    assert heard[1] == "sms sends again."


async def test_an_accounts_daily_limit_holds_the_rest_until_the_next_day(
    db: Database, clock: FakeClock
) -> None:
    async with SmtpServer() as smtp:
        account = {
            "name": "news",
            "host": smtp.host,
            "port": smtp.port,
            "security": "none",
            "from_address": "news@example.ru",
            "daily_limit": 2,
        }
        settings = api_settings(db.url, email={"account": [account]})
        clients = [await add_client(db, email=f"c{n}@example.ru") for n in range(3)]
        queued = [await queue_message(db, clock, c, plan=("email",)) for c in clients]
        async with dispatcher_for(db, settings, clock, advertising_limit=0) as dispatcher:
            await dispatcher.drain()
            states = [(await message(db, m)).state for m in queued]
            assert sorted(states) == ["queued", "sent", "sent"]
            held = next(m for m, state in zip(queued, states, strict=True) if state == "queued")
            waiting = await message(db, held)
            assert waiting.last_error == "email:news: the daily limit of 2 is used up"
            assert waiting.next_attempt_at.hour == 21, "midnight in Moscow is 21:00 UTC"
            clock.set(waiting.next_attempt_at + timedelta(hours=10))  # 10:00 in Moscow
            await dispatcher.drain()
        assert len(smtp.messages) == 3
    assert (await message(db, held)).sender == "email:news"


async def test_a_campaign_reaches_each_client_once_through_the_first_channel_that_works(
    db: Database, clock: FakeClock, smsru: SmsRuServer, tmp_path: Path
) -> None:
    """The issue's "done when": plan telegram -> sms -> email over a demo segment."""
    async with (
        FakeBotAPI() as bot_api,
        SmtpServer(rcpt_replies={"gone@example.ru": "550 5.1.1 mailbox unavailable"}) as smtp,
    ):
        account = {
            "name": "news",
            "host": smtp.host,
            "port": smtp.port,
            "security": "none",
            "from_name": "Автоцентр Север",
            "from_address": "news@example.ru",
        }
        settings = smsru_settings(
            db,
            smsru,
            telegram={"token": bot_api.token, "api_server": bot_api.base_url},
            email={"account": [account]},
            http={"public_url": "https://loyal.example.ru", "api_token": "x" * 16},
        )
        bot_api.blocked.add(202)
        smsru.fail_phone("+79161230005", "bad_number")
        people = {
            "telegram only": await add_client(db, telegram_id=201),
            "blocked bot, phone": await add_client(db, telegram_id=202, phone="+79161230002"),
            "everything": await add_client(
                db, telegram_id=203, phone="+79161230003", email="all@example.ru"
            ),
            "phone only": await add_client(db, phone="+79161230004"),
            "bad number, e-mail": await add_client(
                db, phone="+79161230005", email="mail@example.ru"
            ),
            "e-mail only": await add_client(db, email="only@example.ru"),
            "bouncing e-mail": await add_client(db, email="gone@example.ru"),
            "no contacts": await add_client(db),
        }
        async with db.sessions() as session, session.begin():
            plan = await prepare_campaign(
                session,
                TemplateLibrary(),
                segment="all",
                params={},
                template="winback",
                channels="telegram,sms,email",
                kind="advertising",
                starts_at=clock(),
                context=SegmentContext(today=clock().date()),
            )
            campaign, queued = await create_campaign(
                session,
                plan,
                COMPANY,
                now=clock(),
                today=clock().date(),
                links=await link_signer(session, settings, clock()),
                opt_out=opt_out(settings),
            )
        assert queued.queued == len(people)
        async with dispatcher_for(db, settings, clock) as dispatcher:
            await dispatcher.drain()
            assert await dispatcher.drain() == 0, "nothing is left: each message went once"

        async with db.sessions() as session:
            rows = (
                await session.scalars(select(Message).where(Message.campaign_id == campaign.id))
            ).all()
        by_client = {row.client_id: row for row in rows}
        outcome = {
            who: (by_client[client].state, by_client[client].sender)
            for who, client in people.items()
        }
        assert outcome == {
            "telegram only": ("sent", "telegram"),
            "blocked bot, phone": ("sent", "smsru"),
            "everything": ("sent", "telegram"),
            "phone only": ("sent", "smsru"),
            "bad number, e-mail": ("sent", "email:news"),
            "e-mail only": ("sent", "email:news"),
            "bouncing e-mail": ("failed", None),
            "no contacts": ("skipped", None),
        }
        assert sorted(m.chat_id for m in bot_api.sent) == [201, 203], "exactly once each"
        assert sorted(m.phone for m in smsru.messages.values()) == ["79161230002", "79161230004"]
        arrived = sorted(to for mail in smtp.messages for to in mail.rcpt_tos)
        assert arrived == ["mail@example.ru", "only@example.ru"]
        for sms in smsru.messages.values():
            assert " Отказ: https://loyal.example.ru/u/" in sms.text
        for chat in bot_api.sent:
            assert '<a href="https://loyal.example.ru/u/' in chat.text
        for mail in smtp.messages:
            assert mail.message["List-Unsubscribe"].startswith("<https://loyal.example.ru/u/")
            assert mail.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert "sms: " in (by_client[people["bad number, e-mail"]].reason or "")

        # The operator confirms both SMS; the receipts land through the webhook.
        clock.advance(minutes=2)
        async with serve_api(db, clock, sms=settings.sms.model_dump()) as api:
            receipts = [(sms_id, 103) for sms_id in smsru.messages]
            assert await webhook(api, smsru.status_callback(*receipts), "smsru") == 200

    async with db.sessions() as session:
        report = await campaign_report(session, campaign.id, clock())
    assert report.total == len(people)
    assert report.by_state == {"delivered": 2, "sent": 4, "failed": 1, "skipped": 1}
    assert report.by_sender == {
        "email:news": {"sent": 2},
        "smsru": {"delivered": 2},
        "telegram": {"sent": 2},
    }
    assert report.cost == 2 * smsru.cost

    # Mailing control from the shell accounts for every message.
    config = f'[database]\nurl = "{db.url}"\n'
    shown = autoloyal(tmp_path, "campaign", "show", str(campaign.id), config=config)
    assert shown.returncode == 0, shown.stderr
    assert "8 message(s): sent 4, delivered 2, failed 1, skipped 1" in shown.stdout
    assert "  smsru: delivered 2" in shown.stdout
    assert "  email:news: sent 2" in shown.stdout
    assert f"cost reported by the providers: {2 * smsru.cost:.2f}" in shown.stdout
    listed = autoloyal(
        tmp_path, "messages", "--campaign", str(campaign.id), "--format", "json", config=config
    )
    assert listed.returncode == 0, listed.stderr
    lines = json.loads(listed.stdout)
    assert sorted(line["client_id"] for line in lines) == sorted(people.values())
    bounced = by_client[people["bouncing e-mail"]].id
    detail = autoloyal(tmp_path, "message", str(bounced), config=config)
    assert detail.returncode == 0, detail.stderr
    assert "550 5.1.1 mailbox unavailable" in detail.stdout
    assert "gone@example.ru" in detail.stdout


GENERIC_TOML = """
[sms]
provider = "generic"
base_url = "{url}"
sender = "AutoSever"
password = "{token}"
callback_secret = "{secret}"

[sms.generic]
title = "SMS Gate"
url = "/v1/messages"
send_as = "json"
fields = {{ phone = "{{phone}}", text = "{{text}}", sender = "{{sender}}", ref = "{{message_id}}" }}
headers = {{ Authorization = "Bearer {{password}}" }}
id_path = "data.id"
cost_path = "data.price"
ok_path = "status"
ok_values = ["accepted"]
error_path = "error.code"
unreachable_codes = ["invalid_phone"]
halt_codes = ["insufficient_funds"]
status_url = "/v1/messages/status?ids={{ids}}"
status_items_path = "messages"
status_path = "state"
reason_path = "error"
delivered_values = ["delivered"]
failed_values = ["undelivered", "rejected"]
callback_status_field = "state"
callback_reason_field = "error"
inbound_phone_field = "from"
inbound_text_field = "text"
"""


async def test_any_other_provider_plugs_in_from_the_config_file(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    async with GenericServer() as generic:
        toml = GENERIC_TOML.format(url=generic.url, token=generic.token, secret=SECRET)
        path = tmp_path / "config.toml"
        path.write_text(toml + f'\n[database]\nurl = "{db.url}"\n', encoding="utf-8")
        settings, _ = load_settings(path)
        client = await add_client(db, phone="+79161234567", ads=True)
        first = await queue_message(db, clock, client, plan=("sms",))
        await drain(db, settings, clock)
        sent = await message(db, first)
        assert (sent.state, sent.sender) == ("sent", "generic")
        assert generic.messages[sent.provider_message_id or ""].text == sent.content["sms"]["text"]

        async with serve_api(db, clock, sms=settings.sms.model_dump()) as api:
            receipt = generic.status_callback(sent.provider_message_id, "delivered")
            assert await webhook(api, receipt, "generic") == 200
            stop = generic.inbound_callback("+79161234567", "Стоп")
            assert await webhook(api, stop, "generic") == 200
            assert await webhook(api, stop, "generic", secret="") == 403, "it signs nothing"

    assert (await message(db, first)).state == "delivered"
    async with db.sessions() as session:
        [reply] = (await session.scalars(select(InboundSms))).all()
    assert (reply.provider, reply.action) == ("generic", "opt-out")


async def test_an_account_from_the_config_file_signs_with_its_dkim_key_over_starttls(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    pem, record = dkim_key()
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "dkim.pem").write_bytes(pem)

    def dns(name: bytes, timeout: float = 5) -> bytes | None:
        return record if name == b"mail2026._domainkey.sever-auto.ru." else None

    async with SmtpServer(security="starttls", login="news", password="pa55") as smtp:
        assert smtp.ca_file is not None
        await asyncio.to_thread(shutil.copyfile, smtp.ca_file, tmp_path / "ca.pem")
        path = tmp_path / "config.toml"
        path.write_text(
            f'[database]\nurl = "{db.url}"\n'
            "[[email.account]]\n"
            f'name = "news"\nhost = "{smtp.host}"\nport = {smtp.port}\nsecurity = "starttls"\n'
            'login = "news"\npassword = "pa55"\nfrom_address = "news@sever-auto.ru"\n'
            'dkim_domain = "sever-auto.ru"\ndkim_selector = "mail2026"\n'
            'dkim_key_file = "keys/dkim.pem"\nca_file = "ca.pem"\n',
            encoding="utf-8",
        )
        settings, _ = load_settings(path)
        client = await add_client(db, email="ivan@example.ru")
        queued = await queue_message(db, clock, client, plan=("email",))
        await drain(db, settings, clock)
        [mail] = await smtp.wait_for(1)

    assert (await message(db, queued)).sender == "email:news"
    assert (mail.tls, mail.login) == (True, "news")
    assert mail.message["From"].addresses[0].display_name == "Автосервис", "[company] name"
    assert dkim.verify(mail.raw, dnsfunc=dns) is True


def test_an_unreadable_dkim_key_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        '[[email.account]]\nname = "news"\nhost = "127.0.0.1"\nfrom_address = "n@x.ru"\n'
        'dkim_domain = "x.ru"\ndkim_selector = "mail"\ndkim_key_file = "missing.pem"\n',
        encoding="utf-8",
    )
    settings, _ = load_settings(path)

    with pytest.raises(ConfigError, match=r"email\.account\[0\]\.dkim_key_file: cannot read"):
        build_channels(settings)


async def test_a_message_whose_account_left_the_config_goes_by_the_next_channel(
    db: Database, clock: FakeClock, smsru: SmsRuServer
) -> None:
    async with SmtpServer() as smtp:
        account = {"name": "news", "host": smtp.host, "port": smtp.port, "security": "none",
                   "from_address": "news@example.ru"}  # fmt: skip
        settings = smsru_settings(db, smsru, email={"account": [account]})
        client = await add_client(db, phone="+79161234567", email="ivan@example.ru")
        queued = await queue_message(db, clock, client, plan=("email", "sms"))
        async with db.sessions() as session, session.begin():
            (await session.get_one(Message, queued)).account = "promo"  # since removed
        await drain(db, settings, clock)
        assert smtp.messages == []

    sent = await message(db, queued)
    assert (sent.state, sent.sender) == ("sent", "smsru")
    assert sent.reason == (
        "email: no account named 'promo' (accounts: news); see [[email.account]]"
    )

"""A client's word on advertising: signed links, opt-outs that outlive imports, stop words."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from crm.preferences import (
    STOP_WORD,
    BadLink,
    LinkSigner,
    is_stop_word,
    link_secret,
    opt_out,
    preferences,
    set_advertising,
    take_sms_reply,
)
from gateway.consent import ADVERTISING, ALL_CHANNELS, allowed
from storage.models import AppSecret, ClientConsent, ConsentEvent
from storage.outbox import InboundSms, Message
from tests.support.clock import FakeClock
from tests.support.databases import Database
from tests.support.messaging import add_client, queue_message

PHONE = "+79161234567"


def test_a_link_reads_back_to_its_client_and_campaign() -> None:
    signer = LinkSigner(b"secret", "https://loyal.example.ru/")

    token = signer.token(123_456, 42)

    assert signer.read(token).client_id == 123_456
    assert signer.read(token).campaign_id == 42
    assert signer.read(signer.token(7)).campaign_id is None
    assert signer.url(7) == f"https://loyal.example.ru/u/{signer.token(7)}"
    assert len(token) <= 24, "the link goes into SMS: it must stay short"


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda t: t[:-2], id="cut-short"),
        pytest.param(lambda t: t.split(".")[0], id="no-signature"),
        pytest.param(lambda t: "B" + t[1:] if t[0] != "B" else "C" + t[1:], id="other-client"),
        pytest.param(lambda t: t + "A", id="longer"),
        pytest.param(lambda t: "кириллица." + t.split(".")[1], id="not-base64"),
        pytest.param(lambda t: "", id="empty"),
    ],
)
def test_a_changed_or_foreign_link_is_refused(mangle: object) -> None:
    signer = LinkSigner(b"secret", "")
    token = signer.token(1000, 5)

    with pytest.raises(BadLink):
        signer.read(mangle(token))  # type: ignore[operator]
    with pytest.raises(BadLink):
        LinkSigner(b"another installation", "").read(token)


async def test_the_signing_key_is_made_once_and_shared(db: Database, clock: FakeClock) -> None:
    async with db.sessions() as session, session.begin():
        first = await link_secret(session, clock())
    async with db.sessions() as session, session.begin():
        second = await link_secret(session, clock())

    assert first == second
    assert len(first) >= 32
    async with db.sessions() as session:
        assert len((await session.scalars(select(AppSecret))).all()) == 1


async def consents(db: Database, client_id: int) -> dict[tuple[str, str], bool]:
    async with db.sessions() as session:
        rows = await session.execute(
            select(ClientConsent.channel, ClientConsent.purpose, ClientConsent.granted).where(
                ClientConsent.client_id == client_id
            )
        )
        return {(channel, purpose): granted for channel, purpose, granted in rows}


async def test_opting_out_of_one_channel_keeps_the_others(db: Database, clock: FakeClock) -> None:
    client = await add_client(db, telegram_id=1, phone=PHONE, email="a@example.ru", ads=True)

    async with db.sessions() as session, session.begin():
        changed = await opt_out(session, client, ["sms"], source="unsubscribe page", now=clock())
        shown = await preferences(session, client)

    assert changed == ["sms"]
    assert shown is not None
    assert shown.advertising == {"telegram": True, "sms": False, "email": True}
    assert shown.reachable == ("telegram", "sms", "email")


async def test_opting_out_of_everything_covers_channels_added_later(
    db: Database, clock: FakeClock
) -> None:
    client = await add_client(db, phone=PHONE, ads=True)

    async with db.sessions() as session, session.begin():
        await opt_out(session, client, None, source="unsubscribe page", now=clock(), campaign_id=9)

    rows = await consents(db, client)
    assert rows[(ALL_CHANNELS, ADVERTISING)] is False
    assert not any(allowed(rows, channel, ADVERTISING) for channel in ("telegram", "sms", "email"))
    assert not allowed(rows, "max", ADVERTISING), "a channel added later asks the blanket row"
    async with db.sessions() as session:
        events = (await session.scalars(select(ConsentEvent))).all()
    assert {(e.channel, e.granted, e.campaign_id) for e in events} == {
        ("telegram", False, 9),
        ("sms", False, 9),
        ("email", False, 9),
        (ALL_CHANNELS, False, 9),
    }


async def test_a_channel_the_client_turned_off_stays_off_when_a_blanket_yes_is_imported(
    db: Database, clock: FakeClock
) -> None:
    client = await add_client(db, phone=PHONE, ads=None)
    async with db.sessions() as session, session.begin():
        await opt_out(session, client, ["sms"], source="unsubscribe page", now=clock())
        # What a later import of the 1C flag "agrees to mailings" writes:
        session.add(
            ClientConsent(
                client_id=client,
                channel=ALL_CHANNELS,
                purpose=ADVERTISING,
                granted=True,
                changed_at=clock(),
                source="import",
            )
        )

    rows = await consents(db, client)
    assert not allowed(rows, "sms", ADVERTISING)
    assert allowed(rows, "email", ADVERTISING)


async def test_saving_the_same_choice_twice_records_one_change(
    db: Database, clock: FakeClock
) -> None:
    client = await add_client(db, phone=PHONE, ads=True)
    for _ in range(2):
        async with db.sessions() as session, session.begin():
            await set_advertising(
                session, client, {"sms": False, "email": True}, source="page", now=clock()
            )

    async with db.sessions() as session:
        events = (await session.scalars(select(ConsentEvent))).all()
    assert sorted((e.channel, e.granted) for e in events) == [("email", True), ("sms", False)]


@pytest.mark.parametrize(
    ("text", "stop"),
    [
        ("СТОП", True),
        ("стоп", True),
        (" Стоп. ", True),
        ("stop!", True),
        ("STOP", True),
        ("Отписка", True),
        ("«стоп»", True),
        ("стоп машина сломалась", False),
        ("Спасибо, приеду в пятницу", False),
        ("", False),
    ],
)
def test_stop_words(text: str, stop: bool) -> None:
    assert is_stop_word(text) is stop


async def test_a_stop_reply_turns_off_sms_advertising_and_names_the_campaign(
    db: Database, clock: FakeClock
) -> None:
    client = await add_client(db, phone=PHONE, email="a@example.ru", ads=True)
    message_id = await queue_message(db, clock, client, plan=("sms",))
    async with db.sessions() as session, session.begin():
        sent = await session.get_one(Message, message_id)
        sent.state, sent.channel, sent.sent_at, sent.campaign_id = "sent", "sms", clock(), None

    clock.advance(timedelta(hours=1))
    async with db.sessions() as session, session.begin():
        action = await take_sms_reply(
            session, provider="smsru", phone=PHONE, text="СТОП", provider_message_id="in-1",
            now=clock(),
        )  # fmt: skip
        again = await take_sms_reply(
            session, provider="smsru", phone=PHONE, text="СТОП", provider_message_id="in-1",
            now=clock(),
        )  # fmt: skip

    assert (action, again) == ("opt-out", "repeated")
    rows = await consents(db, client)
    assert not allowed(rows, "sms", ADVERTISING)
    assert allowed(rows, "email", ADVERTISING), "a reply to an SMS stops SMS only"
    async with db.sessions() as session:
        [event] = (await session.scalars(select(ConsentEvent))).all()
        [reply] = (await session.scalars(select(InboundSms))).all()
    assert (event.source, event.channel, event.granted) == (STOP_WORD, "sms", False)
    assert (reply.client_id, reply.action, reply.text) == (client, "opt-out", "СТОП")


async def test_other_replies_are_kept_and_unknown_numbers_change_nothing(
    db: Database, clock: FakeClock
) -> None:
    client = await add_client(db, phone=PHONE, ads=True)
    async with db.sessions() as session, session.begin():
        kept = await take_sms_reply(
            session, provider="smsc", phone=PHONE, text="Перезвоните мне", provider_message_id=None,
            now=clock(),
        )  # fmt: skip
        unknown = await take_sms_reply(
            session, provider="smsc", phone="+79990000000", text="стоп", provider_message_id=None,
            now=clock(),
        )  # fmt: skip

    assert (kept, unknown) == ("kept", "unknown number")
    assert allowed(await consents(db, client), "sms", ADVERTISING)

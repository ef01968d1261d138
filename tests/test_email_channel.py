"""The e-mail channel against a real SMTP server (aiosmtpd on 127.0.0.1): what arrives, how
connections are reused and secured, and how the server's answers map onto outcomes."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from email.headerregistry import Address

import dkim
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from gateway.channels import (
    Halted,
    Outgoing,
    Permanent,
    Sender,
    SendResult,
    Sent,
    Transient,
    UnknownAccount,
)
from gateway.channels.email import DkimKey, EmailAccount, EmailChannel
from tests.support.smtp import SmtpServer, refusing_port

SUBJECT = "Скидка 20% на шиномонтаж до конца ноября — только для постоянных клиентов «Севера»"
TEXT = "Здравствуйте, Иван!\nВаш автомобиль ждёт сезонную замену шин.\n"
HTML = (
    '<!DOCTYPE html><html><head><meta charset="utf-8"><title>Север</title></head>'
    "<body><p>Здравствуйте, <b>Иван</b>!</p><p>Ваш автомобиль ждёт замену шин.</p></body></html>\n"
)
UNSUBSCRIBE = (
    "https://crm.sever-auto.ru/unsubscribe/email/0123456789abcdef0123456789abcdef"
    "?token=Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4"
)
IVAN = "ivan.petrov@example.ru"


def outgoing(
    address: str = IVAN, *, message_id: int = 1, account: str | None = None, **content: str
) -> Outgoing:
    parts = {"subject": SUBJECT, "text": TEXT, **content}
    return Outgoing(message_id, 7, "email", address, "campaign", parts, account)


@asynccontextmanager
async def channel(
    *accounts: EmailAccount, default: str | None = None, idle_seconds: float = 30.0
) -> AsyncIterator[EmailChannel]:
    opened = EmailChannel(accounts, default or accounts[0].name, idle_seconds=idle_seconds)
    try:
        yield opened
    finally:
        await opened.close()


def sent(result: SendResult) -> Sent:
    assert isinstance(result, Sent), result
    return result


def headers(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[0]


# What arrives


async def test_the_message_parses_back_with_its_cyrillic_intact() -> None:
    async with SmtpServer() as server:
        account = server.account(reply_to="service@sever-auto.ru")
        async with channel(account) as email:
            result = sent(
                await email.send(outgoing(message_id=42, html=HTML, list_unsubscribe=UNSUBSCRIBE))
            )
        (arrived,) = await server.wait_for(1)

    raw, message = arrived.raw, arrived.message
    assert raw.isascii()  # every header encoded, every part 7-bit
    head = headers(raw)
    assert b"=?utf-8?" in head
    assert "Север".encode() not in raw

    assert message["Subject"] == SUBJECT
    sender = message["From"].addresses[0]
    assert (sender.display_name, sender.addr_spec) == ("Автоцентр «Север»", "promo@sever-auto.ru")
    assert message["To"].addresses[0].addr_spec == IVAN
    assert message["Reply-To"].addresses[0].addr_spec == "service@sever-auto.ru"
    assert message["Date"].datetime is not None
    assert message["MIME-Version"] == "1.0"
    assert (arrived.mail_from, arrived.rcpt_tos) == ("promo@sever-auto.ru", (IVAN,))

    assert result.sender == "email:promo"
    assert result.provider_id == message["Message-ID"]
    assert result.provider_id is not None
    assert result.provider_id.startswith("<")
    assert result.provider_id.endswith(".autoloyal.42@sever-auto.ru>")

    assert message.get_content_type() == "multipart/alternative"
    plain, html = message.iter_parts()
    assert plain.get_content_type() == "text/plain"
    assert html.get_content_type() == "text/html"
    for part, expected in ((plain, TEXT), (html, HTML)):
        assert part.get_content_charset() == "utf-8"
        assert part["Content-Transfer-Encoding"] in ("base64", "quoted-printable")
        assert part.get_content().replace("\r\n", "\n") == expected  # CRLF: canonical text

    assert message["List-Unsubscribe"] == f"<{UNSUBSCRIBE}>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # The long URL stays one plain header line: no encoded words, no folding inside it.
    assert f"\r\nList-Unsubscribe: <{UNSUBSCRIBE}>\r\n".encode() in head
    assert b"\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" in head


async def test_a_message_without_html_or_link_is_plain_text_only() -> None:
    async with SmtpServer() as server:
        async with channel(server.account()) as email:
            sent(await email.send(outgoing(subject="Plain ASCII subject", text="Hello\n")))
        (arrived,) = await server.wait_for(1)
    message = arrived.message
    assert message.get_content_type() == "text/plain"
    assert message.get_content_charset() == "utf-8"
    assert message["Content-Transfer-Encoding"] == "7bit"
    assert message.get_content() == "Hello\r\n"
    assert message["Subject"] == "Plain ASCII subject"
    assert "List-Unsubscribe" not in message
    assert "List-Unsubscribe-Post" not in message
    assert "Reply-To" not in message


async def test_line_breaks_in_the_subject_cannot_inject_headers() -> None:
    async with SmtpServer() as server:
        async with channel(server.account()) as email:
            sent(await email.send(outgoing(subject="Скидка\r\nBcc: victim@example.ru")))
        (arrived,) = await server.wait_for(1)
    assert arrived.message["Subject"] == "Скидка Bcc: victim@example.ru"
    assert "Bcc" not in arrived.message
    assert arrived.rcpt_tos == (IVAN,)


async def test_an_internationalized_domain_goes_out_as_punycode() -> None:
    async with SmtpServer() as server:
        async with channel(server.account()) as email:
            sent(await email.send(outgoing("ivan@почта.рф")))
        (arrived,) = await server.wait_for(1)
    assert arrived.rcpt_tos == ("ivan@xn--80a1acny.xn--p1ai",)
    assert arrived.message["To"].addresses[0].domain == "xn--80a1acny.xn--p1ai"


# Connections


async def test_a_batch_shares_one_connection_and_every_message_has_its_own_id() -> None:
    async with SmtpServer() as server:
        async with channel(server.account()) as email:
            results = [
                sent(await email.send(outgoing(f"client{n}@example.ru", message_id=n)))
                for n in range(1, 6)
            ]
            assert server.sessions == 1
            # Concurrent sends queue on the account's lock and still share the connection.
            more = await asyncio.gather(
                *(email.send(outgoing(f"client{n}@example.ru", message_id=n)) for n in range(6, 9))
            )
            results += [sent(result) for result in more]
        arrived = await server.wait_for(8)
    assert server.sessions == 1
    ids = [result.provider_id for result in results]
    assert len(set(ids)) == 8
    assert ids == [message.message["Message-ID"] for message in arrived]
    assert all(b"\r\nMessage-ID: <" in message.raw for message in arrived)  # unfolded
    for n, message_id in enumerate(ids, start=1):
        assert message_id is not None
        assert message_id.endswith(f".autoloyal.{n}@sever-auto.ru>")
        assert Address(addr_spec=message_id.strip("<>")).domain == "sever-auto.ru"


async def test_an_idle_connection_is_closed_and_the_next_message_opens_a_new_one() -> None:
    async with SmtpServer() as server:
        async with channel(server.account(), idle_seconds=0.2) as email:
            sent(await email.send(outgoing(message_id=1)))
            sent(await email.send(outgoing(message_id=2)))
            assert (server.sessions, server.quits) == (1, 0)
            await server.wait_until(lambda: server.quits == 1, within=3.0)  # the idle timer
            sent(await email.send(outgoing(message_id=3)))
        assert server.sessions == 2
        assert [m.session for m in await server.wait_for(3)] == [1, 1, 2]
        assert server.quits == 2  # close() says goodbye too


async def test_a_connection_dropped_by_the_server_is_reopened_and_nothing_goes_twice() -> None:
    # The server hangs up, without a word, on the MAIL of the second message.
    async with SmtpServer(drop_reused_mail=1) as server:
        async with channel(server.account()) as email:
            sent(await email.send(outgoing(message_id=1)))
            sent(await email.send(outgoing(message_id=2)))
            sent(await email.send(outgoing(message_id=3)))
        arrived = await server.wait_for(3)
        await asyncio.sleep(0.05)
        assert len(server.messages) == 3
    assert [m.session for m in arrived] == [1, 2, 2]
    assert len({m.message["Message-ID"] for m in arrived}) == 3


async def test_a_server_closing_after_each_message_gets_a_new_connection_each_time() -> None:
    async with SmtpServer(close_after=1) as server:
        async with channel(server.account()) as email:
            for n in range(1, 4):
                sent(await email.send(outgoing(message_id=n)))
        arrived = await server.wait_for(3)
        await asyncio.sleep(0.05)
        assert len(server.messages) == 3
    assert [m.session for m in arrived] == [1, 2, 3]


async def test_a_connection_lost_after_the_data_went_is_not_retried() -> None:
    # The server takes the message and hangs up before its 250: resending now could make two.
    async with SmtpServer(drop_after_data=1) as server:
        async with channel(server.account()) as email:
            lost = await email.send(outgoing(message_id=1))
            assert len(server.messages) == 1
            sent(await email.send(outgoing(message_id=2)))
        arrived = await server.wait_for(2)
        await asyncio.sleep(0.05)
        assert len(server.messages) == 2
    assert isinstance(lost, Transient), lost
    assert lost.error.startswith("email promo: connection lost during DATA")
    assert [m.session for m in arrived] == [1, 2]


async def test_a_server_that_does_not_answer_in_time_is_transient() -> None:
    server = SmtpServer(stall_rcpt={"slow@example.ru": 3.0})
    async with server, channel(server.account(timeout=0.3)) as email:
        result = await email.send(outgoing("slow@example.ru"))  # the server stalls 3 s
        sent(await email.send(outgoing()))  # a fresh connection carries the next one
    assert isinstance(result, Transient), result
    assert result.error.startswith("email promo: no answer in 0.3 s")
    assert server.sessions == 2


# Security and AUTH


@pytest.mark.parametrize("security", ["starttls", "tls"])
async def test_tls_delivers_with_the_account_ca_file(security: str) -> None:
    async with SmtpServer(security=security) as server:  # type: ignore[arg-type]
        assert server.ca_file is not None
        async with channel(server.account()) as email:
            sent(await email.send(outgoing()))
        (arrived,) = await server.wait_for(1)
    assert arrived.tls


@pytest.mark.parametrize("security", ["starttls", "tls"])
async def test_a_certificate_nobody_vouches_for_halts_the_account(security: str) -> None:
    async with SmtpServer(security=security) as server:  # type: ignore[arg-type]
        async with channel(server.account(ca_file=None)) as email:
            result = await email.send(outgoing())
        assert server.messages == []
    assert isinstance(result, Halted), result
    assert "TLS" in result.error
    assert "certificate" in result.error
    assert "[[email.account]] promo" in result.error


async def test_starttls_required_but_not_offered_halts_the_account() -> None:
    async with SmtpServer() as server:
        async with channel(server.account(security="starttls")) as email:
            result = await email.send(outgoing())
        assert server.messages == []
    assert isinstance(result, Halted), result
    assert "STARTTLS" in result.error
    assert "[[email.account]] promo" in result.error


async def test_security_none_stays_plain_even_when_starttls_is_offered() -> None:
    async with SmtpServer(security="starttls") as server:
        async with channel(server.account(security="none", ca_file=None)) as email:
            sent(await email.send(outgoing()))
        (arrived,) = await server.wait_for(1)
    assert not arrived.tls


async def test_auth_with_the_right_password_delivers() -> None:
    async with SmtpServer(
        security="starttls", login="promo@sever-auto.ru", password="s3cret"
    ) as server:
        async with channel(server.account()) as email:
            sent(await email.send(outgoing(message_id=1)))
            sent(await email.send(outgoing(message_id=2)))
        arrived = await server.wait_for(2)
    assert [(m.login, m.tls) for m in arrived] == [("promo@sever-auto.ru", True)] * 2
    assert len(server.auth_attempts) == 1  # once per connection


async def test_auth_with_a_wrong_password_halts_the_account() -> None:
    async with SmtpServer(
        security="starttls", login="promo@sever-auto.ru", password="s3cret"
    ) as server:
        async with channel(server.account(password="wrong")) as email:
            result = await email.send(outgoing())
            assert "wrong" not in email.destination
        assert server.messages == []
    assert isinstance(result, Halted), result
    assert "535" in result.error
    assert "[[email.account]] promo" in result.error
    assert "wrong" not in result.error


async def test_a_server_that_wants_auth_from_an_account_without_login_halts_it() -> None:
    server = SmtpServer(security="starttls", login="promo", password="s3cret")
    async with server, channel(server.account(login="", password="")) as email:
        result = await email.send(outgoing())
    assert isinstance(result, Halted), result
    assert "530" in result.error


# Outcomes

DEAD, BUSY, FULL, POLICY, SPAM, LATER = (
    "dead@example.ru",
    "busy@example.ru",
    "full@example.ru",
    "policy@example.ru",
    "spam@example.ru",
    "later@example.ru",
)
RCPT_REPLIES = {
    DEAD: "550 5.1.1 mailbox unavailable",
    BUSY: "451 4.7.1 greylisted, try again later",
    FULL: "552 5.2.2 mailbox full",
    POLICY: "550 5.7.1 recipient refuses mail from your network",
}
DATA_REPLIES = {SPAM: "554 5.7.1 message refused as spam", LATER: "452 4.3.1 insufficient storage"}


@pytest.mark.parametrize(
    ("address", "outcome", "unreachable", "error"),
    [
        (DEAD, Permanent, True, "email promo: 550 5.1.1 mailbox unavailable"),
        (BUSY, Transient, None, "email promo: 451 4.7.1 greylisted, try again later"),
        (FULL, Transient, None, "email promo: 552 5.2.2 mailbox full"),
        (
            POLICY,
            Permanent,
            False,
            "email promo: 550 5.7.1 recipient refuses mail from your network",
        ),
        (SPAM, Permanent, False, "email promo: 554 5.7.1 message refused as spam"),
        (LATER, Transient, None, "email promo: 452 4.3.1 insufficient storage"),
    ],
)
async def test_the_servers_answer_maps_onto_an_outcome(
    address: str, outcome: type, unreachable: bool | None, error: str
) -> None:
    async with SmtpServer(rcpt_replies=RCPT_REPLIES, data_replies=DATA_REPLIES) as server:
        async with channel(server.account()) as email:
            result = await email.send(outgoing(address))
            assert isinstance(result, outcome), result
            assert isinstance(result, Permanent | Transient)
            assert result.error == error
            if unreachable is not None:
                assert isinstance(result, Permanent)
                assert result.unreachable is unreachable
            # The refused transaction was reset: the same connection carries the next message.
            sent(await email.send(outgoing(IVAN)))
        (arrived,) = await server.wait_for(1)
    assert arrived.rcpt_tos == (IVAN,)
    assert server.sessions == 1


@pytest.mark.parametrize(
    ("reply", "outcome"),
    [
        ("553 5.7.1 sender address rejected: not owned by user", Halted),
        ("550 5.4.5 daily user sending quota exceeded", Halted),
        ("552 5.3.4 message size exceeds fixed limit", Permanent),
        ("451 4.3.0 temporary failure", Transient),
    ],
)
async def test_a_refused_sender_stops_the_account_unless_it_is_about_this_message(
    reply: str, outcome: type
) -> None:
    server = SmtpServer(mail_replies={"promo@sever-auto.ru": reply})
    async with server, channel(server.account()) as email:
        result = await email.send(outgoing())
    assert isinstance(result, outcome), result
    assert isinstance(result, Halted | Permanent | Transient)
    assert reply in result.error
    assert result.error.startswith("email promo: ")
    if isinstance(result, Permanent):
        assert not result.unreachable
    if isinstance(result, Halted):
        assert result.error.endswith("check [[email.account]] promo")


async def test_a_refused_connection_is_transient() -> None:
    with refusing_port() as port:
        account = EmailAccount(
            name="promo",
            host="127.0.0.1",
            port=port,
            security="none",
            login="",
            password="",
            from_name="Север",
            from_address="promo@sever-auto.ru",
            timeout=60.0,
        )
        async with channel(account) as email:
            result = await email.send(outgoing())
    assert isinstance(result, Transient), result
    assert result.error.startswith(f"email promo: cannot connect to 127.0.0.1:{port}")


@pytest.mark.parametrize(
    "address",
    [
        "ivan",
        "ivan@",
        "@example.ru",
        "iv an@example.ru",
        "Иван <ivan@example.ru>",
        "иван@почта.рф",
        "a@b@c",
        "",
    ],
)
async def test_an_address_that_is_no_address_is_refused_without_a_connection(address: str) -> None:
    with refusing_port() as port:  # any connection attempt would come back Transient
        account = EmailAccount(
            "promo", "127.0.0.1", port, "none", "", "", "Север", "promo@sever-auto.ru"
        )
        async with channel(account) as email:
            result = await email.send(outgoing(address))
    assert isinstance(result, Permanent), result
    assert result.unreachable
    assert result.error.startswith("email promo: not an e-mail address")


async def test_a_plain_http_unsubscribe_link_gets_no_one_click_header() -> None:
    # The embedded default serves links at http://127.0.0.1:8080: RFC 8058 wants HTTPS.
    link = "http://127.0.0.1:8080/u/abc?channel=email"
    server = SmtpServer()
    async with server, channel(server.account()) as email:
        sent(await email.send(outgoing(list_unsubscribe=link)))
    (arrived,) = await server.wait_for(1)
    assert arrived.message["List-Unsubscribe"] == f"<{link}>"
    assert "List-Unsubscribe-Post" not in arrived.message


@pytest.mark.parametrize(
    "link",
    [
        "mailto:stop@sever-auto.ru",
        "https://sever-auto.ru/u/a b",
        "https://x.ru/>",
        "https://сервис.рф/u",
    ],
)
async def test_an_unsubscribe_link_that_is_no_url_fails_the_message_alone(link: str) -> None:
    server = SmtpServer()
    async with server, channel(server.account()) as email:
        result = await email.send(outgoing(list_unsubscribe=link))
    assert server.messages == []
    assert isinstance(result, Permanent), result
    assert not result.unreachable
    assert "list_unsubscribe" in result.error


# Accounts


async def test_messages_go_through_the_account_they_name() -> None:
    async with SmtpServer() as promo_server, SmtpServer() as service_server:
        promo, service = promo_server.account("promo"), service_server.account("service")
        async with channel(promo, service, default="service") as email:
            assert sent(await email.send(outgoing())).sender == "email:service"
            assert sent(await email.send(outgoing(account="promo"))).sender == "email:promo"
            unknown = await email.send(outgoing(account="newsletter"))
        (via_promo,) = await promo_server.wait_for(1)
        (via_service,) = await service_server.wait_for(1)
    assert via_promo.mail_from == "promo@sever-auto.ru"
    assert via_service.mail_from == "service@sever-auto.ru"
    assert isinstance(unknown, Permanent), unknown
    assert not unknown.unreachable
    assert "'newsletter'" in unknown.error
    assert "promo, service" in unknown.error


def test_sender_names_the_account_and_its_daily_limit() -> None:
    promo = EmailAccount(
        "promo",
        "smtp.example.ru",
        465,
        "tls",
        "promo",
        "pa55",
        "Север",
        "promo@sever-auto.ru",
        daily_limit=500,
    )
    service = replace(promo, name="service", daily_limit=None, port=587, security="starttls")
    email = EmailChannel([promo, service], "service")
    assert email.sender(None) == Sender("email:service", None)
    assert email.sender("promo") == Sender("email:promo", 500)
    with pytest.raises(UnknownAccount, match=r"'newsletter'.*promo, service"):
        email.sender("newsletter")
    assert email.destination == (
        "smtps://smtp.example.ru:465 (promo), smtp://smtp.example.ru:587 (service)"
    )
    assert "pa55" not in email.destination
    assert "pa55" not in repr(promo)
    assert (email.rate_per_second, email.address_rate_per_second) == (None, None)


def test_a_default_account_that_does_not_exist_is_refused() -> None:
    promo = EmailAccount(
        "promo", "smtp.example.ru", 465, "tls", "", "", "Север", "promo@sever-auto.ru"
    )
    with pytest.raises(ValueError, match="'service'"):
        EmailChannel([promo], "service")


# DKIM


def dkim_key() -> tuple[bytes, bytes]:
    """A fresh RSA key: the PEM private key and the DNS TXT record that publishes it."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.TraditionalOpenSSL, NoEncryption())
    public = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return pem, b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)


async def test_dkim_signature_verifies_against_the_published_key() -> None:
    pem, record = dkim_key()
    asked: list[bytes] = []

    def dns(name: bytes, timeout: float = 5) -> bytes | None:
        asked.append(name)
        return record if name == b"mail2026._domainkey.sever-auto.ru." else None

    async with SmtpServer() as server:
        account = server.account(dkim=DkimKey("sever-auto.ru", "mail2026", pem))
        async with channel(account) as email:
            sent(await email.send(outgoing(html=HTML, list_unsubscribe=UNSUBSCRIBE)))
        (arrived,) = await server.wait_for(1)

    raw = arrived.raw
    assert raw.startswith(b"DKIM-Signature:")
    assert dkim.verify(raw, dnsfunc=dns) is True
    assert asked == [b"mail2026._domainkey.sever-auto.ru."]
    signature = arrived.message["DKIM-Signature"].replace(" ", "").replace("\t", "")
    assert "c=relaxed/relaxed" in signature
    signed = (
        next(tag for tag in signature.split(";") if tag.startswith("h="))[2:].lower().split(":")
    )
    for header in (
        "from", "to", "subject", "date", "message-id", "mime-version", "content-type",
        "list-unsubscribe", "list-unsubscribe-post",
    ):  # fmt: skip
        assert header in signed
    # Any change to a signed header breaks it.
    tampered = raw.replace(b"List-Unsubscribe: <https://", b"List-Unsubscribe: <http://", 1)
    assert not dkim.verify(tampered, dnsfunc=dns)


async def test_a_dkim_key_that_cannot_sign_halts_the_account() -> None:
    async with SmtpServer() as server:
        account = server.account(dkim=DkimKey("sever-auto.ru", "mail", b"not a key"))
        async with channel(account) as email:
            result = await email.send(outgoing())
        assert server.messages == []
    assert isinstance(result, Halted), result
    assert "DKIM" in result.error
    assert "[[email.account]] promo" in result.error

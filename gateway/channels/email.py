"""E-mail: messages through SMTP servers with aiosmtplib, one connection per account.

Each `[[email.account]]` is a mailbox on some SMTP server (the dealer's own, Yandex 360,
a relay): its From, its daily limit and optionally its DKIM key. A campaign names the
account it goes out through; other messages use the default one. A message is built as
7-bit MIME (text/plain, plus text/html when given), with RFC 8058 one-click unsubscribe
headers when the message carries a link, and signed with DKIM when the account has a key.

A batch reuses one connection per account, one transaction at a time; the connection is
closed after `idle_seconds` without use. The server's answers map onto our outcomes: a
refused recipient means the address is dead, a refused text is this message's fault, a
refused login, TLS handshake or sender means the whole account cannot send (Halted), and
4xx codes or a lost connection mean "try again later". A connection the server dropped
while idle is reopened once, but only while the message cannot have been taken yet: a
connection lost during DATA is never retried here, so no message goes out twice.
"""

from __future__ import annotations

import asyncio
import base64
import quopri
import re
import ssl
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import errors as email_errors
from email import policy as email_policy
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Literal

import aiosmtplib
import dkim  # type: ignore[import-untyped]

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

Security = Literal["none", "starttls", "tls"]
SECURITY: tuple[Security, ...] = ("none", "starttls", "tls")

QUIT_TIMEOUT = 5.0
"""Seconds to wait for the server's answer to QUIT when closing an idle connection."""

# Generation policy: CRLF output, and header values stored raw (the encoded Subject and From,
# List-Unsubscribe) written as they are: the library would refold them, turning a long URL
# into encoded words and losing the spaces between encoded words.
_POLICY = email_policy.SMTP
_GENERATE = email_policy.SMTP.clone(refold_source="none")

_SIGNED = (
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "Reply-To",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
)
"""Headers the DKIM signature covers, those present in the message."""

_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})(?:\s|$)")
_URL = re.compile(r"https?://[\x21-\x3b\x3d\x3f-\x7e]+")  # printable ASCII but < >
_MAX_URL = 900  # the header line must stay under SMTP's 998 characters


@dataclass(frozen=True)
class DkimKey:
    """A DKIM signing key: the d= domain, the s= selector and the RSA private key in PEM."""

    domain: str
    selector: str
    private_key: bytes = field(repr=False)


@dataclass(frozen=True)
class EmailAccount:
    """One sender mailbox on an SMTP server (`[[email.account]]` in the config)."""

    name: str
    host: str
    port: int
    security: Security
    """"tls": implicit TLS (port 465); "starttls": STARTTLS required; "none": plain text."""
    login: str
    """The AUTH login; "" means the server takes mail without AUTH."""
    password: str = field(repr=False)
    from_name: str
    from_address: str
    reply_to: str = ""
    daily_limit: int | None = None
    dkim: DkimKey | None = None
    ca_file: str | None = None
    """An extra CA bundle to trust besides the system's (an internal server, tests)."""
    timeout: float = 30.0


class _Failed(Exception):
    """Carries an outcome out of the connection and transaction steps."""

    def __init__(self, result: SendResult) -> None:
        super().__init__(result)
        self.result = result


class _Dropped(Exception):
    """The connection was lost (or the server said 421) before the DATA: safe to resend."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


class _Line:
    """One account's SMTP connection and what guards it."""

    def __init__(self, account: EmailAccount) -> None:
        self.account = account
        self.label = f"email {account.name}"
        self.sender = f"email:{account.name}"
        self.lock = asyncio.Lock()
        self.smtp: aiosmtplib.SMTP | None = None
        self.last_used = 0.0
        self.uses = 0
        self.reaper: asyncio.TimerHandle | None = None
        self.tls: ssl.SSLContext | None = None

    def halted(self, what: str) -> Halted:
        return Halted(f"{self.label}: {what}; check [[email.account]] {self.account.name}")


class EmailChannel:
    """Sends `content["subject"]`, `["text"]`, optional `["html"]` and `["list_unsubscribe"]`
    to the e-mail address in `address`, through the account `message.account` names."""

    name = "email"
    rate_per_second: float | None = None
    address_rate_per_second: float | None = None

    def __init__(
        self,
        accounts: Sequence[EmailAccount],
        default: str,
        *,
        idle_seconds: float = 30.0,
    ) -> None:
        if not accounts:
            raise ValueError("email: no accounts")
        self._lines: dict[str, _Line] = {}
        for account in accounts:
            if account.name in self._lines:
                raise ValueError(f"email: account {account.name!r} is given twice")
            if account.security not in SECURITY:
                raise ValueError(
                    f"email account {account.name}: security must be one of "
                    f"{', '.join(SECURITY)}, got {account.security!r}"
                )
            _check_address(account, "from_address", account.from_address)
            if account.reply_to:
                _check_address(account, "reply_to", account.reply_to)
            self._lines[account.name] = _Line(account)
        if default not in self._lines:
            raise ValueError(f"email: no default account {default!r} (accounts: {self._known})")
        self.default = default
        self.idle_seconds = idle_seconds
        self.destination = ", ".join(
            f"{'smtps' if a.security == 'tls' else 'smtp'}://{a.host}:{a.port} ({a.name})"
            for a in accounts
        )
        self._reaping: set[asyncio.Task[None]] = set()

    @property
    def _known(self) -> str:
        return ", ".join(self._lines)

    def sender(self, account: str | None) -> Sender:
        line = self._lines.get(self.default if account is None else account)
        if line is None:
            raise UnknownAccount(
                f"no account named {account!r} (accounts: {self._known}); see [[email.account]]"
            )
        return Sender(line.sender, line.account.daily_limit)

    async def send(self, message: Outgoing) -> SendResult:
        name = self.default if message.account is None else message.account
        line = self._lines.get(name)
        if line is None:
            return Permanent(
                f"email: no account named {name!r} (accounts: {self._known})", unreachable=False
            )
        recipient = _recipient(message.address)
        if recipient is None:
            return Permanent(f"{line.label}: not an e-mail address: {message.address!r}")
        try:
            raw, message_id = _build(line, message, recipient)
        except _Failed as failed:
            return failed.result
        async with line.lock:
            result = await self._deliver(line, recipient, raw)
        if result is not None:
            return result
        return Sent(message_id, sender=line.sender)

    async def close(self) -> None:
        for line in self._lines.values():
            if line.reaper is not None:
                line.reaper.cancel()
                line.reaper = None
            async with line.lock:
                await _hang_up(line)
        for task in list(self._reaping):
            task.cancel()
        await asyncio.gather(*self._reaping, return_exceptions=True)

    # The connection

    async def _deliver(self, line: _Line, recipient: str, raw: bytes) -> SendResult | None:
        """Sends under the line's lock; None when the server took the message."""
        loop = asyncio.get_running_loop()
        if line.smtp is not None and loop.time() - line.last_used > self.idle_seconds:
            await _hang_up(line)
        result: SendResult | None = None
        for attempt in (1, 2):
            try:
                opened = await _connect(line)
                await _transaction(line, recipient, raw)
            except _Failed as failed:
                if line.smtp is None:
                    return failed.result
                result = failed.result
            except _Dropped as dropped:
                await _hang_up(line)
                if not opened and attempt == 1:
                    continue  # the server closed a connection we kept: once more, anew
                result = Transient(dropped.error)
            except BaseException:  # cancelled mid-dialogue: the connection is out of step
                _abandon(line)
                raise
            break
        line.last_used = loop.time()
        line.uses += 1
        if line.smtp is not None:
            self._schedule_reap(line)
        return result

    def _schedule_reap(self, line: _Line) -> None:
        if line.reaper is not None:
            line.reaper.cancel()
        uses = line.uses
        line.reaper = asyncio.get_running_loop().call_later(
            self.idle_seconds, self._start_reap, line, uses
        )

    def _start_reap(self, line: _Line, uses: int) -> None:
        line.reaper = None
        task = asyncio.get_running_loop().create_task(self._reap(line, uses))
        self._reaping.add(task)
        task.add_done_callback(self._reaping.discard)

    async def _reap(self, line: _Line, uses: int) -> None:
        async with line.lock:
            if line.uses == uses:  # nobody sent through it since the timer was set
                await _hang_up(line)


async def _connect(line: _Line) -> bool:
    """Opens the line's connection when it has none: TLS, EHLO and AUTH as configured.
    True when it opened one, False when the line's open connection is reused."""
    if line.smtp is not None and line.smtp.is_connected:
        return False
    await _hang_up(line)
    account = line.account
    context = _tls_context(line) if account.security != "none" else None
    smtp = aiosmtplib.SMTP(
        hostname=account.host,
        port=account.port,
        use_tls=account.security == "tls",
        start_tls=False,
        tls_context=context,
        timeout=account.timeout,
    )
    try:
        await smtp.connect()
        await _hello(smtp)
        if account.security == "starttls":
            if not smtp.supports_extension("starttls"):
                raise _Failed(
                    line.halted(
                        f"{account.host}:{account.port} does not offer STARTTLS "
                        '(security = "starttls")'
                    )
                )
            await smtp.starttls()
            await _hello(smtp)
        if account.login:
            await smtp.login(account.login, account.password)
    except _Failed:
        smtp.close()
        raise
    except Exception as exc:
        smtp.close()
        raise _Failed(_connect_failure(line, exc)) from exc
    except BaseException:  # cancelled: leave nothing half-open
        smtp.close()
        raise
    line.smtp = smtp
    return True


async def _hello(smtp: aiosmtplib.SMTP) -> None:
    try:
        await smtp.ehlo()
    except aiosmtplib.SMTPHeloError as exc:
        if exc.code < 500:
            raise
        await smtp.helo()


def _tls_context(line: _Line) -> ssl.SSLContext:
    if line.tls is None:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        if line.account.ca_file:
            try:
                context.load_verify_locations(cafile=line.account.ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise _Failed(
                    line.halted(f"cannot load ca_file {line.account.ca_file}: {exc}")
                ) from exc
        line.tls = context
    return line.tls


def _connect_failure(line: _Line, exc: Exception) -> SendResult:
    """What a failure while connecting, greeting, STARTTLS or AUTH means."""
    account = line.account
    where = f"{account.host}:{account.port}"
    tls = exc if isinstance(exc, ssl.SSLError) else exc.__cause__
    if isinstance(tls, ssl.SSLError):
        reason = getattr(tls, "verify_message", None) or getattr(tls, "reason", None) or tls
        return line.halted(f"TLS with {where} failed: {reason}")
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return line.halted(f"{where} refused the login {account.login!r}: {exc.code} {exc.message}")
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        text = f"{exc.code} {exc.message}"
        if exc.code >= 500:
            return line.halted(f"{where} refused us: {text}")
        return Transient(f"{line.label}: {where}: {text}")
    if isinstance(exc, TimeoutError):  # SMTPTimeoutError and its kin
        return Transient(f"{line.label}: no answer from {where} in {account.timeout:g} s")
    if isinstance(exc, OSError):  # refused, reset, disconnected
        return Transient(f"{line.label}: cannot connect to {where}: {exc}")
    if isinstance(exc, aiosmtplib.SMTPException):  # e.g. AUTH not offered
        return line.halted(f"{where}: {exc.message}")
    raise exc


async def _transaction(line: _Line, recipient: str, raw: bytes) -> None:
    """MAIL, RCPT and DATA on the line's open connection; raises _Failed or _Dropped."""
    smtp = line.smtp
    assert smtp is not None
    account = line.account
    options = [f"SIZE={len(raw)}"] if smtp.supports_extension("size") else []
    try:
        await smtp.mail(_ascii_address(account.from_address), options=options)
        await smtp.rcpt(recipient)
    except aiosmtplib.SMTPSenderRefused as exc:
        if exc.code == 421:
            raise _Dropped(f"{line.label}: {exc.code} {exc.message}") from exc
        await _reset(line)
        raise _Failed(_sender_refused(line, exc)) from exc
    except aiosmtplib.SMTPRecipientRefused as exc:
        if exc.code == 421:
            raise _Dropped(f"{line.label}: {exc.code} {exc.message}") from exc
        await _reset(line)
        raise _Failed(_recipient_refused(line, exc)) from exc
    except TimeoutError as exc:
        await _hang_up(line)
        raise _Failed(
            Transient(f"{line.label}: no answer in {account.timeout:g} s: {exc}")
        ) from exc
    except ConnectionError as exc:
        raise _Dropped(f"{line.label}: connection lost: {exc}") from exc
    try:
        await smtp.data(raw)
    except aiosmtplib.SMTPDataError as exc:
        await _reset(line)
        raise _Failed(_data_refused(line, exc)) from exc
    except (ConnectionError, TimeoutError) as exc:
        # The server may have taken the message before the connection went: not resent now.
        await _hang_up(line)
        raise _Failed(Transient(f"{line.label}: connection lost during DATA: {exc}")) from exc


async def _reset(line: _Line) -> None:
    """RSET after a refused transaction, so the connection can carry the next message."""
    if line.smtp is None or not line.smtp.is_connected:
        return
    try:
        await line.smtp.rset()
    except (aiosmtplib.SMTPException, OSError):
        await _hang_up(line)


async def _hang_up(line: _Line) -> None:
    """QUIT and close the line's connection, whatever state it is in."""
    smtp, line.smtp = line.smtp, None
    if smtp is None:
        return
    try:
        if smtp.is_connected:
            await smtp.quit(timeout=min(QUIT_TIMEOUT, line.account.timeout))
    except (aiosmtplib.SMTPException, OSError):
        pass
    finally:
        smtp.close()


def _abandon(line: _Line) -> None:
    """Drops the line's connection without a word."""
    smtp, line.smtp = line.smtp, None
    if smtp is not None:
        smtp.close()


def _sender_refused(line: _Line, exc: aiosmtplib.SMTPResponseException) -> SendResult:
    """MAIL FROM refused. The sender is the same for every message of the account, so a
    5xx (sender not allowed, quota spent, auth required) stops the account; 552 is the size."""
    text = f"{exc.code} {exc.message}"
    if exc.code < 500:
        return Transient(f"{line.label}: {text}")
    if exc.code == 552:
        return Permanent(f"{line.label}: {text}", unreachable=False)
    return line.halted(f"the server refused the sender {line.account.from_address}: {text}")


def _recipient_refused(line: _Line, exc: aiosmtplib.SMTPResponseException) -> SendResult:
    """RCPT TO refused: a 5xx says the address is bad, except a full mailbox (552, 5.2.2,
    temporary by RFC 5321 4.5.3.1.10), a policy refusal (5.7.x) and missing AUTH (530)."""
    text = f"{line.label}: {exc.code} {exc.message}"
    if exc.code < 500:
        return Transient(text)
    enhanced = _enhanced(exc.message)
    if exc.code == 530:
        return line.halted(f"the server wants AUTH: {exc.code} {exc.message}")
    if exc.code == 552 or enhanced == "5.2.2":
        return Transient(text)
    if enhanced.startswith("5.7."):
        return Permanent(text, unreachable=False)
    return Permanent(text, unreachable=True)


def _data_refused(line: _Line, exc: aiosmtplib.SMTPResponseException) -> SendResult:
    """DATA refused: the content (spam filter, size); the address stays good."""
    text = f"{line.label}: {exc.code} {exc.message}"
    if exc.code < 500:
        return Transient(text)
    if exc.code == 530:
        return line.halted(f"the server wants AUTH: {exc.code} {exc.message}")
    return Permanent(text, unreachable=False)


def _enhanced(message: str) -> str:
    """The RFC 3463 enhanced status code a reply text starts with ("5.1.1"), or ""."""
    match = _ENHANCED.match(message.strip())
    return ".".join(match.groups()) if match else ""


# The message


def _check_address(account: EmailAccount, what: str, address: str) -> None:
    try:
        Address(account.from_name, addr_spec=_ascii_address(address))
    except (ValueError, IndexError, UnicodeError, email_errors.HeaderParseError):
        raise ValueError(f"email account {account.name}: bad {what} {address!r}") from None


def _ascii_address(address: str) -> str:
    """The address with an internationalized domain in its ASCII (punycode) form."""
    local, at, domain = address.strip().rpartition("@")
    if not at:
        return address.strip()
    if not domain.isascii():
        domain = domain.encode("idna").decode("ascii")
    return f"{local}@{domain}"


def _recipient(address: str) -> str | None:
    """The address fit for RCPT TO and the To header; None when it cannot be one."""
    address = address.strip()
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or not local.isascii():
        return None  # a non-ASCII mailbox needs SMTPUTF8, which we do not speak
    try:
        ascii_form = _ascii_address(address)
        parsed = Address(addr_spec=ascii_form)
    except (ValueError, IndexError, UnicodeError, email_errors.HeaderParseError):
        return None
    if not parsed.username or not parsed.domain:
        return None
    return parsed.addr_spec


def _build(line: _Line, message: Outgoing, recipient: str) -> tuple[bytes, str]:
    """The message as it goes on the wire (DKIM-signed when the account has a key), and
    its Message-ID."""
    account = line.account
    content = message.content
    subject, text = content.get("subject"), content.get("text")
    if subject is None or text is None:
        missing = "subject" if subject is None else "text"
        raise _Failed(Permanent(f"{line.label}: the message has no {missing}", unreachable=False))
    html = content.get("html")
    unsubscribe = content.get("list_unsubscribe")
    if unsubscribe is not None and not (
        _URL.fullmatch(unsubscribe) and len(unsubscribe) <= _MAX_URL
    ):
        raise _Failed(
            Permanent(
                f"{line.label}: list_unsubscribe must be an http(s) URL, got {unsubscribe!r}",
                unreachable=False,
            )
        )

    from_address = _ascii_address(account.from_address)
    domain = from_address.rpartition("@")[2]
    message_id = make_msgid(idstring=f"autoloyal.{message.message_id}", domain=domain)

    mail = EmailMessage(policy=_POLICY)
    mail.set_raw("From", _mailbox(account.from_name, from_address))
    mail["To"] = Address(addr_spec=recipient)
    _set_text_header(mail, "Subject", subject)
    mail["Date"] = format_datetime(datetime.now(UTC))
    mail.set_raw("Message-ID", message_id)  # one line, even when longer than 78
    if account.reply_to:
        mail["Reply-To"] = Address(addr_spec=_ascii_address(account.reply_to))
    if unsubscribe is not None:
        mail.set_raw("List-Unsubscribe", f"<{unsubscribe}>")
        if unsubscribe.startswith("https://"):  # RFC 8058 one-click wants HTTPS
            mail.set_raw("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")
    mail.set_content(text, subtype="plain", charset="utf-8", cte=_transfer_encoding(text))
    if html is not None:
        mail.add_alternative(html, subtype="html", charset="utf-8", cte=_transfer_encoding(html))
    raw = mail.as_bytes(policy=_GENERATE)
    if account.dkim is not None:
        raw = _sign(line, account.dkim, raw, mail)
    return raw, message_id


def _encoded_words(name: str, text: str) -> str:
    """RFC 2047 encoded words for a non-ASCII header text, folded between whole words.

    The modern email folder puts the space between two encoded words outside of them, where
    decoders drop it ("шиномонтаждо"); the legacy Header keeps every space inside a word.
    """
    return Header(text, "utf-8", header_name=name).encode(linesep="\n")


def _set_text_header(mail: EmailMessage, name: str, text: str) -> None:
    text = " ".join(text.split())  # no line breaks: nothing can be injected after it
    if text.isascii():  # folded at spaces; a word longer than a line stays whole
        lines = textwrap.wrap(text, 76 - len(name), break_long_words=False, break_on_hyphens=False)
        mail.set_raw(name, "\n ".join(lines))
    else:
        mail.set_raw(name, _encoded_words(name, text))


def _mailbox(display_name: str, address: str) -> str:
    """A From value: the display name (encoded when Cyrillic) and the address."""
    display_name = " ".join(display_name.split())
    mailbox = Address(display_name, addr_spec=address)
    if display_name.isascii():
        return str(mailbox)
    return f"{_encoded_words('From', display_name)} <{mailbox.addr_spec}>"


def _transfer_encoding(text: str) -> str:
    """7bit for plain ASCII, else the shorter of quoted-printable and base64: the message
    stays 7-bit clean, so no relay re-encodes it and breaks the DKIM signature."""
    data = text.encode("utf-8")
    if data.isascii() and all(len(row) <= 998 for row in data.splitlines()):
        return "7bit"
    if len(quopri.encodestring(data)) <= len(base64.encodebytes(data)):
        return "quoted-printable"
    return "base64"


def _sign(line: _Line, key: DkimKey, raw: bytes, mail: EmailMessage) -> bytes:
    headers = [name.encode("ascii") for name in _SIGNED if name in mail]
    try:
        signature: bytes = dkim.sign(
            raw,
            key.selector.encode("ascii"),
            key.domain.encode("ascii"),
            key.private_key,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=headers,
        )
    except (dkim.DKIMException, ValueError, UnicodeError) as exc:
        raise _Failed(line.halted(f"cannot sign with the DKIM key: {exc}")) from exc
    return signature + raw

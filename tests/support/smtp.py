"""A local SMTP server for e-mail tests: aiosmtpd on 127.0.0.1 at a free port.

    async with SmtpServer(security="starttls", login="promo", password="secret") as server:
        channel = EmailChannel([server.account("promo")], "promo")
        ...
        arrived = await server.wait_for(1)
        assert arrived[0].message["Subject"] == "..."

The server speaks plain SMTP, STARTTLS or implicit TLS with a certificate from a trustme CA
(`server.ca_file` is that CA, for the account's `ca_file`), takes AUTH LOGIN/PLAIN with one
login and password, and fails on demand: `rcpt_replies` answers RCPT TO for the given
addresses with the given reply ("550 5.1.1 no such mailbox", "451 4.7.1 later"),
`mail_replies` answers MAIL FROM for the given senders, `data_replies` answers the end of DATA for a message to the given addresses, `stall_rcpt`
answers RCPT TO for the given addresses only after so many seconds, `close_after` closes
each connection after that many messages, `drop_reused_mail` hangs up (with no reply) that
many times on a MAIL command that comes on a connection which already carried a message,
and `drop_after_data` that many times right after taking a message, before the 250. It counts connections (those that said EHLO/HELO: the controller's own probe
does not count) and keeps what arrived as raw bytes and parsed.

aiosmtpd runs the server on its own thread and loop: everything recorded goes through a
lock, and the properties return copies.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import functools
import re
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from email.message import EmailMessage
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, cast

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from gateway.channels.email import EmailAccount

HOST = "127.0.0.1"
Security = Literal["none", "starttls", "tls"]


@dataclass(frozen=True)
class Arrived:
    """One message the server took."""

    session: int
    """Which connection carried it: 1 for the first that said EHLO, 2 for the next..."""
    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes
    """As received, after dot-unstuffing: CRLF line ends, the exact bytes DKIM signed."""
    message: EmailMessage
    """`raw` parsed with email.policy.default: headers decoded, parts reachable."""
    tls: bool
    login: str | None


@functools.cache
def _ca() -> trustme.CA:
    return trustme.CA()


@functools.cache
def _server_context() -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    _ca().issue_cert(HOST, "localhost").configure_cert(context)
    return context


class _Recorder:
    """What the server saw, shared between its thread and the test's."""

    def __init__(self, drop_reused_mail: int, drop_after_data: int) -> None:
        self.lock = threading.Lock()
        self.sessions = 0
        self.quits = 0
        self.auth_attempts: list[tuple[str, str]] = []
        self.arrived: list[Arrived] = []
        self.drops_left = drop_reused_mail
        self.data_drops_left = drop_after_data

    def next_session(self) -> int:
        with self.lock:
            self.sessions += 1
            return self.sessions

    def take_drop(self) -> bool:
        with self.lock:
            if self.drops_left <= 0:
                return False
            self.drops_left -= 1
            return True

    def take_data_drop(self) -> bool:
        with self.lock:
            if self.data_drops_left <= 0:
                return False
            self.data_drops_left -= 1
            return True


class _Smtp(SMTP):
    """aiosmtpd's server, numbering its connection and able to hang up mid-dialogue."""

    def __init__(
        self, handler: Any, recorder: _Recorder, mail_replies: Mapping[str, str], **kwargs: Any
    ) -> None:
        super().__init__(handler, **kwargs)
        self.recorder = recorder
        self.mail_replies = mail_replies
        self.number = 0
        self.carried = 0

    def _greeted(self) -> None:
        if not self.number:
            self.number = self.recorder.next_session()

    async def smtp_EHLO(self, arg: str) -> None:
        self._greeted()
        await super().smtp_EHLO(arg)

    async def smtp_HELO(self, arg: str) -> None:
        self._greeted()
        await super().smtp_HELO(arg)

    async def smtp_MAIL(self, arg: str) -> None:
        if self.carried and self.recorder.take_drop():
            cast(asyncio.Transport, self.transport).abort()  # no reply: the client sees it gone
            return
        sender = re.match(r"\s*FROM:\s*<([^>]*)>", arg or "", re.IGNORECASE)
        reply = self.mail_replies.get(sender.group(1).lower()) if sender else None
        if reply is not None:
            await self.push(reply)
            return
        await super().smtp_MAIL(arg)

    async def smtp_QUIT(self, arg: str) -> None:
        with self.recorder.lock:
            self.recorder.quits += 1
        await super().smtp_QUIT(arg)


class _Handler:
    def __init__(
        self,
        recorder: _Recorder,
        rcpt_replies: Mapping[str, str],
        data_replies: Mapping[str, str],
        stall_rcpt: Mapping[str, float],
        close_after: int | None,
    ) -> None:
        self.recorder = recorder
        self.stall_rcpt = {k.lower(): v for k, v in stall_rcpt.items()}
        self.rcpt_replies = {k.lower(): v for k, v in rcpt_replies.items()}
        self.data_replies = {k.lower(): v for k, v in data_replies.items()}
        self.close_after = close_after

    async def handle_RCPT(
        self,
        server: _Smtp,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        stall = self.stall_rcpt.get(address.lower())
        if stall is not None:
            await asyncio.sleep(stall)
        reply = self.rcpt_replies.get(address.lower())
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: _Smtp, session: Session, envelope: Envelope) -> str:
        for address in envelope.rcpt_tos:
            reply = self.data_replies.get(address.lower())
            if reply is not None:
                return reply
        raw = envelope.original_content
        assert raw is not None
        assert server.transport is not None
        login = session.auth_data.login.decode() if session.auth_data is not None else None
        arrived = Arrived(
            session=server.number,
            mail_from=envelope.mail_from or "",
            rcpt_tos=tuple(envelope.rcpt_tos),
            raw=raw,
            message=email.message_from_bytes(raw, policy=email.policy.default),
            tls=server.transport.get_extra_info("ssl_object") is not None,
            login=login,
        )
        with self.recorder.lock:
            self.recorder.arrived.append(arrived)
            number = len(self.recorder.arrived)
        server.carried += 1
        if self.recorder.take_data_drop():
            # The message is taken, but the 250 never goes out.
            cast(asyncio.Transport, server.transport).abort()
        elif self.close_after is not None and server.carried >= self.close_after:
            # After the 250 below is written: the reply goes out, then the connection closes.
            server.loop.call_soon(server.transport.close)
        return f"250 OK queued as {number}"


class _Controller(Controller):
    """Binds port 0 and learns the port the system gave before probing the server."""

    def __init__(
        self,
        handler: _Handler,
        recorder: _Recorder,
        mail_replies: Mapping[str, str],
        **kwargs: Any,
    ) -> None:
        super().__init__(handler, hostname=HOST, port=0, server_hostname="localhost", **kwargs)
        self.recorder = recorder
        self.mail_replies = {k.lower(): v for k, v in mail_replies.items()}

    def factory(self) -> _Smtp:
        return _Smtp(self.handler, self.recorder, self.mail_replies, **self.SMTP_kwargs)

    def _trigger_server(self) -> None:
        server = cast(asyncio.Server, self.server)
        self.port = server.sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]


class SmtpServer:
    """The test server; an async context manager that starts and stops it."""

    def __init__(
        self,
        *,
        security: Security = "none",
        login: str | None = None,
        password: str = "",
        mail_replies: Mapping[str, str] | None = None,
        rcpt_replies: Mapping[str, str] | None = None,
        data_replies: Mapping[str, str] | None = None,
        stall_rcpt: Mapping[str, float] | None = None,
        close_after: int | None = None,
        drop_reused_mail: int = 0,
        drop_after_data: int = 0,
    ) -> None:
        self.security = security
        self.login = login
        self.password = password
        self._recorder = _Recorder(drop_reused_mail, drop_after_data)
        handler = _Handler(
            self._recorder, rcpt_replies or {}, data_replies or {}, stall_rcpt or {}, close_after
        )
        kwargs: dict[str, Any] = {}
        if security == "starttls":
            kwargs["tls_context"] = _server_context()
        elif security == "tls":
            kwargs["ssl_context"] = _server_context()
        if login is not None:
            kwargs.update(
                authenticator=self._authenticate,
                auth_required=True,
                auth_require_tls=security != "none",
            )
        self._controller = _Controller(handler, self._recorder, mail_replies or {}, **kwargs)
        self._folder: tempfile.TemporaryDirectory[str] | None = None
        self.ca_file: str | None = None
        self.host = HOST

    @property
    def port(self) -> int:
        return int(self._controller.port)

    def _authenticate(
        self, server: Any, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if not isinstance(data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login, password = data.login.decode(), data.password.decode()
        with self._recorder.lock:
            self._recorder.auth_attempts.append((mechanism, login))
        ok = login == self.login and password == self.password
        return AuthResult(success=ok, handled=False, auth_data=data if ok else None)

    async def start(self) -> None:
        if self.security != "none":
            self._folder = tempfile.TemporaryDirectory(prefix="smtp-ca-")
            path = Path(self._folder.name) / "ca.pem"
            _ca().cert_pem.write_to_path(str(path))
            self.ca_file = str(path)
        await asyncio.to_thread(self._controller.start)

    async def stop(self) -> None:
        await asyncio.to_thread(self._controller.stop)
        if self._folder is not None:
            self._folder.cleanup()
            self._folder = None

    async def __aenter__(self) -> SmtpServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def account(self, name: str = "promo", **changes: Any) -> EmailAccount:
        """An account that sends through this server: its security, its CA, its login."""
        account = EmailAccount(
            name=name,
            host=self.host,
            port=self.port,
            security=self.security,
            login=self.login or "",
            password=self.password,
            from_name="Автоцентр «Север»",
            from_address=f"{name}@sever-auto.ru",
            ca_file=self.ca_file,
            timeout=60.0,  # the local server always answers; a loaded machine may be slow
        )
        return replace(account, **changes)

    # What the server saw

    @property
    def messages(self) -> list[Arrived]:
        with self._recorder.lock:
            return list(self._recorder.arrived)

    @property
    def sessions(self) -> int:
        """Connections that said EHLO or HELO."""
        with self._recorder.lock:
            return self._recorder.sessions

    @property
    def quits(self) -> int:
        with self._recorder.lock:
            return self._recorder.quits

    @property
    def auth_attempts(self) -> list[tuple[str, str]]:
        """(mechanism, login) for each AUTH the server was asked for."""
        with self._recorder.lock:
            return list(self._recorder.auth_attempts)

    async def wait_for(self, count: int, within: float = 5.0) -> list[Arrived]:
        """Waits up to `within` seconds until `count` messages arrived; returns them all."""
        deadline = time.monotonic() + within
        while True:
            messages = self.messages
            if len(messages) >= count:
                return messages
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(messages)} messages arrived, expected {count}")
            await asyncio.sleep(0.01)

    async def wait_until(self, check: Callable[[], bool], within: float = 5.0) -> None:
        """Waits up to `within` seconds until `check()` is true."""
        deadline = time.monotonic() + within
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError("the SMTP server never got there")
            await asyncio.sleep(0.01)


@contextmanager
def refusing_port() -> Iterator[int]:
    """A port on 127.0.0.1 where nothing listens: a socket holds it so no one else binds it,
    and connecting to it is refused."""
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        holder.bind((HOST, 0))
        yield int(holder.getsockname()[1])
    finally:
        holder.close()

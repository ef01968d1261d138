"""Benchmark: the e-mail and SMS channels end to end against local fakes (prints figures).

E-mail: --emails messages (a subject and a Russian text, one recipient each) sent one after
another with EmailChannel.send to a local aiosmtpd server (tests/support/smtp.py), for
security "none" and "starttls", three ways: through one channel that keeps its connection
(what the dispatcher does), through one channel closed after every message (a fresh
connection per message, the TLS context kept), and through a new channel per message,
closed after it (a fresh connection and a fresh TLS context per message: the naive way).
A few messages go first as a warm-up and are left out. Prints messages/s for each, how much
faster reuse is, and how many SMTP sessions (connections that said EHLO) the server saw.

SMS: a fresh SQLite database (migrated, the default branch synced) with --sms clients, each
with a phone and one queued service message (template winback, plan sms; service, so quiet
hours and the advertising cap do not apply), and settings with [sms] provider smsru pointing
at the fake SMS.ru of tests/support/sms_servers.py (rate_per_second --sms-rate, a
callback_secret). The real Dispatcher built from build_channels(settings) and
dispatch_policy(settings) runs `drain()`; prints sent messages/s and where every message
ended. Then delivery receipts (code 103) for every SMS.ru id go through the real webhook
`/webhooks/sms/smsru?secret=...` of make_http_app served on 127.0.0.1, --receipt-batch ids
per call (SMS.ru puts several data[] entries in one call), one call after another; prints
receipts/s, calls/s and the final states (all should be delivered). The clock stands at
2026-11-24 06:00 UTC (09:00 in Moscow, a Tuesday), so nothing depends on the time of day.

    python bench/channels.py [--emails 500] [--sms 300] [--sms-rate 100] [--receipt-batch 50]
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # `python bench/channels.py` must find tests.support

from aiohttp import web  # noqa: E402
from sqlalchemy import func, select  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker  # noqa: E402

from autoloyal.app import App  # noqa: E402
from autoloyal.config import Settings  # noqa: E402
from autoloyal.http import make_http_app  # noqa: E402
from autoloyal.messaging import build_channels, dispatch_policy  # noqa: E402
from crm.branches import sync_branches  # noqa: E402
from crm.importing.report import thousands  # noqa: E402
from gateway.channels import Outgoing, Sent  # noqa: E402
from gateway.channels.email import EmailAccount, EmailChannel, Security  # noqa: E402
from gateway.consent import SERVICE  # noqa: E402
from gateway.dispatch import Dispatcher  # noqa: E402
from gateway.outbox import STATES  # noqa: E402
from storage import create_engine, make_session_factory, upgrade  # noqa: E402
from storage.outbox import DeliveryReceipt, Message  # noqa: E402
from tests.support.api import api_settings  # noqa: E402
from tests.support.clock import FakeClock  # noqa: E402
from tests.support.databases import Database  # noqa: E402
from tests.support.messaging import COMPANY, add_client, queue_message  # noqa: E402
from tests.support.sms_servers import SmsRuServer  # noqa: E402
from tests.support.smtp import SmtpServer  # noqa: E402

NOW = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
"""09:00 in Moscow on a Tuesday; also the unix time the fake SMS.ru stamps on receipts."""
WARM_UP = 10
SECURITIES: tuple[Security, ...] = ("none", "starttls")
SUBJECT = "Давно не виделись, Иван Петрович!"
TEXT = (
    "Здравствуйте, Иван Петрович!\n\n"
    "Вы не были у нас больше полугода. Приезжайте на бесплатную диагностику ходовой части "
    "и получите скидку 10 % на работы до конца месяца.\n\n"
    "Запись по телефону +7 495 123-45-67 или в Telegram: https://t.me/autoloyal_bot?start=book\n"
    "Автоцентр «Север», Москва, ул. Ленина, 1\n"
)
UNSUBSCRIBE = "https://sever-auto.ru/u/3f9c2a7b1e"
FIRST_PHONE = 79_160_000_000
DELIVERED_CODE = 103


# --- e-mail -----------------------------------------------------------------------------------


def letter(number: int) -> Outgoing:
    return Outgoing(
        message_id=number,
        client_id=number,
        channel="email",
        address=f"client{number}@example.ru",
        kind=SERVICE,
        content={"subject": SUBJECT, "text": TEXT, "list_unsubscribe": UNSUBSCRIBE},
    )


@dataclass(frozen=True)
class Run:
    """One way of sending `count` messages: how long it took, what the server saw."""

    how: str
    count: int
    seconds: float
    sent: int
    arrived: int
    sessions: int

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0


async def reused(account: EmailAccount, numbers: range) -> int:
    """One channel for every message: it keeps one connection open."""
    channel = EmailChannel([account], account.name)
    sent = 0
    try:
        for number in numbers:
            sent += isinstance(await channel.send(letter(number)), Sent)
    finally:
        await channel.close()
    return sent


async def reconnecting(account: EmailAccount, numbers: range) -> int:
    """One channel closed after every message: a new connection each time (QUIT, then
    connect, EHLO, STARTTLS...), the channel's TLS context kept."""
    channel = EmailChannel([account], account.name)
    sent = 0
    try:
        for number in numbers:
            sent += isinstance(await channel.send(letter(number)), Sent)
            await channel.close()
    finally:
        await channel.close()
    return sent


async def fresh_channels(account: EmailAccount, numbers: range) -> int:
    """A new channel per message, closed after it: a new connection and TLS context each."""
    sent = 0
    for number in numbers:
        channel = EmailChannel([account], account.name)
        try:
            sent += isinstance(await channel.send(letter(number)), Sent)
        finally:
            await channel.close()
    return sent


WAYS: tuple[tuple[str, Callable[[EmailAccount, range], Awaitable[int]]], ...] = (
    ("one reused connection", reused),
    ("a fresh connection per message", reconnecting),
    ("a new channel (and TLS context) per message", fresh_channels),
)


async def email_runs(security: Security, count: int) -> tuple[list[Run], float]:
    """The runs of every way, and the mean size of a message on the wire in bytes."""
    runs: list[Run] = []
    async with SmtpServer(security=security) as server:
        account = server.account("promo")
        await reused(account, range(1, WARM_UP + 1))  # imports, the server's thread, caches
        await server.wait_for(WARM_UP)
        first = WARM_UP + 1
        for how, way in WAYS:
            sessions, arrived = server.sessions, len(server.messages)
            numbers = range(first, first + count)
            started = time.perf_counter()
            sent = await way(account, numbers)
            seconds = time.perf_counter() - started
            runs.append(
                Run(
                    how,
                    count,
                    seconds,
                    sent,
                    len(server.messages) - arrived,
                    server.sessions - sessions,
                )
            )
            first += count
        taken = server.messages
    return runs, sum(len(m.raw) for m in taken) / max(1, len(taken))


async def bench_email(count: int) -> bool:
    print(
        f"e-mail: {thousands(count)} messages each way, one after another, to a local aiosmtpd"
        f" on 127.0.0.1, after a {WARM_UP}-message warm-up"
    )
    ok = True
    width = max(len(how) for how, _ in WAYS)
    for security in SECURITIES:
        runs, size = await email_runs(security, count)
        print(f"  security {security!r} (messages of {size / 1024:.1f} KB on the wire):")
        base = runs[0]
        for run in runs:
            faster = "" if run is base else f"; reuse is {base.rate / run.rate:.1f}x faster"
            print(
                f"    {run.how:<{width}}  {run.rate:7.0f} messages/s ({run.seconds:.2f} s);"
                f" SMTP sessions seen by the server: {thousands(run.sessions)}{faster}"
            )
            if run.sent != run.count or run.arrived != run.count:
                ok = False
                print(f"    CHECK FAILED: {run.sent} of {run.count} sent, {run.arrived} arrived")
        if base.sessions != 1:
            ok = False
            print(f"    CHECK FAILED: the reused connection took {base.sessions} sessions")
    return ok


# --- SMS --------------------------------------------------------------------------------------


async def states(sessions: async_sessionmaker[AsyncSession]) -> Counter[str]:
    async with sessions() as session:
        rows = await session.execute(select(Message.state, func.count()).group_by(Message.state))
        return Counter({state: count for state, count in rows})


def listed(by_state: Counter[str]) -> str:
    parts = [f"{state} {thousands(by_state[state])}" for state in STATES if by_state[state]]
    return ", ".join(parts) or "none"


async def fill(db: Database, clock: FakeClock, count: int) -> list[int]:
    """`count` clients with their own phone, and one queued service SMS for each."""
    ids = []
    for number in range(count):
        client = await add_client(db, phone=f"+{FIRST_PHONE + number}", now=clock())
        ids.append(
            await queue_message(db, clock, client, plan=("sms",), kind=SERVICE, key=f"b:{number}")
        )
    return ids


async def deliver_receipts(
    smsru: SmsRuServer, url: str, provider_ids: list[str], batch: int
) -> tuple[int, Counter[str]]:
    """Receipts for every id through the webhook, `batch` ids a call; (calls, answers)."""
    answers: Counter[str] = Counter()
    calls = 0
    for start in range(0, len(provider_ids), batch):
        chunk = provider_ids[start : start + batch]
        call = smsru.status_callback(*((sms_id, DELIVERED_CODE) for sms_id in chunk))
        status, body = await call.deliver(url)
        answers[f"{status} {body.strip()!r}"] += 1
        calls += 1
    return calls, answers


async def bench_sms(folder: Path, count: int, rate: float, batch: int) -> bool:
    clock = FakeClock(NOW)
    url = f"sqlite:///{folder / 'bench.db'}"
    engine = create_engine(url)
    ok = True
    try:
        await upgrade(engine)
        sessions = make_session_factory(engine)
        async with sessions() as session, session.begin():
            await sync_branches(session, (), company_name=COMPANY.name, now=clock())
        db = Database(url, engine, sessions)
        started = time.perf_counter()
        message_ids = await fill(db, clock, count)
        print(
            f"sms: setup (not in the figures): {thousands(count)} clients with a phone, one"
            f" service SMS each (winback, plan sms) queued in {time.perf_counter() - started:.1f} s"
            f" in a fresh SQLite database"
        )
        async with SmsRuServer() as smsru:
            secret = secrets.token_hex(16)
            settings = api_settings(
                url,
                sms={
                    "provider": "smsru",
                    "base_url": smsru.url,
                    "password": smsru.api_id,
                    "sender": "AutoSever",
                    "rate_per_second": rate,
                    "callback_secret": secret,
                },
                outbox={"dir": str(folder / "outbox")},
            )
            ok &= await dispatch(db, settings, clock, smsru, len(message_ids), rate)
            clock.advance(minutes=1)
            ok &= await receipts(db, settings, clock, smsru, secret, batch)
    finally:
        await engine.dispose()
    return ok


async def dispatch(
    db: Database, settings: Settings, clock: FakeClock, smsru: SmsRuServer, count: int, rate: float
) -> bool:
    channels = build_channels(settings)
    dispatcher = Dispatcher(db.sessions, channels, dispatch_policy(settings), clock)
    try:
        started = time.perf_counter()
        handled = await dispatcher.drain()
        seconds = time.perf_counter() - started
    finally:
        await dispatcher.close()
    by_state = await states(db.sessions)
    requests = len(smsru.seen("/sms/send"))
    print(
        f"  dispatch: Dispatcher.drain() handled {thousands(handled)} messages in {seconds:.2f} s"
        f" = {by_state['sent'] / seconds:.1f} sent/s (limit [sms] rate_per_second = {rate:g});"
        f" the fake SMS.ru got {thousands(requests)} send requests"
    )
    print(f"  database after dispatch: {listed(by_state)}")
    if by_state["sent"] != count or requests != count:
        print(f"  CHECK FAILED: expected {count} sent, got {dict(by_state)}")
        return False
    return True


async def receipts(
    db: Database,
    settings: Settings,
    clock: FakeClock,
    smsru: SmsRuServer,
    secret: str,
    batch: int,
) -> bool:
    async with db.sessions() as session:
        found = await session.scalars(
            select(Message.provider_message_id)
            .where(Message.provider_message_id.is_not(None))
            .order_by(Message.id)
        )
        provider_ids = [str(sms_id) for sms_id in found]
    app = App(settings, db.engine, db.sessions, clock)
    runner = web.AppRunner(make_http_app(app))
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        url = f"http://{host}:{port}/webhooks/sms/smsru?secret={secret}"
        started = time.perf_counter()
        calls, answers = await deliver_receipts(smsru, url, provider_ids, batch)
        seconds = time.perf_counter() - started
    finally:
        await runner.cleanup()
    by_state = await states(db.sessions)
    async with db.sessions() as session:
        recorded = await session.scalar(select(func.count()).select_from(DeliveryReceipt))
    said = ", ".join(f"{answer} x{n}" for answer, n in sorted(answers.items()))
    print(
        f"  receipts: {thousands(len(provider_ids))} through /webhooks/sms/smsru in"
        f" {calls} calls of up to {batch} data[] entries, one after another, in {seconds:.2f} s"
        f" = {len(provider_ids) / seconds:.0f} receipts/s ({calls / seconds:.1f} calls/s,"
        f" {seconds / calls * 1000:.1f} ms a call); answers: {said}"
    )
    print(
        f"  database after receipts: {listed(by_state)};"
        f" {thousands(recorded or 0)} delivery receipts recorded"
    )
    total = sum(by_state.values())
    if by_state["delivered"] != total or set(answers) != {"200 '100'"}:
        print(f"  CHECK FAILED: not all delivered: {dict(by_state)}; answers {dict(answers)}")
        return False
    return True


# --- main -------------------------------------------------------------------------------------


async def bench(emails: int, sms: int, rate: float, batch: int) -> bool:
    began = time.perf_counter()
    ok = True
    if emails:
        ok &= await bench_email(emails)
    if sms:
        with tempfile.TemporaryDirectory(prefix="bench-channels-") as tmp:
            ok &= await bench_sms(Path(tmp), sms, rate, batch)
    print(f"total run: {time.perf_counter() - began:.1f} s")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emails", type=int, default=500, help="messages per way and security")
    parser.add_argument("--sms", type=int, default=300, help="clients, one queued SMS each")
    parser.add_argument("--sms-rate", type=float, default=100.0, help="[sms] rate_per_second")
    parser.add_argument("--receipt-batch", type=int, default=50, help="receipts per webhook call")
    args = parser.parse_args()
    if args.emails < 0 or args.sms < 0 or args.sms_rate <= 0 or args.receipt_batch < 1:
        parser.error("counts must be >= 0, --sms-rate > 0 and --receipt-batch >= 1")
    if not asyncio.run(bench(args.emails, args.sms, args.sms_rate, args.receipt_batch)):
        sys.exit(1)


if __name__ == "__main__":
    main()

"""Benchmark: dispatch to a local Bot API server limited to 30 messages/s (target: at least 95 %
of the limit sustained over 60 s, never above it).

Queues rate x seconds x 1.2 service messages (template winback, plan telegram), one per
client and chat, in a fresh SQLite database, starts the fake Bot API server of
tests/support/botapi.py answering 429 to anything over the limit (overall, and 1/s per chat),
and runs one Dispatcher against it for --seconds. Prints what the server accepted: the rate
sustained after a 1 s warm-up, the most in any 1 s window, 429 answers, the spacing of sends,
and where every message ended in the database.

With --flood-at N the server answers one 429 (retry_after --retry-after seconds) to the
request after its N-th accepted message, as Telegram does to a burst, and the run reports
what reached the server inside that pause (target: nothing but requests already on the
wire) and how soon after it the paced message went (target: first, under 1 s).

    python bench/dispatch.py [--rate 30] [--seconds 60] [--flood-at 100 --retry-after 2]
                             [--pg postgresql://postgres@127.0.0.1/test]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import math
import statistics
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # `python bench/dispatch.py` must find tests.support

from sqlalchemy import func, select  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker  # noqa: E402

from crm.branches import sync_branches  # noqa: E402
from crm.context import ClientFacts, message_context  # noqa: E402
from crm.importing.report import thousands  # noqa: E402
from crm.templates import TemplateLibrary  # noqa: E402
from gateway.channels.telegram import TelegramChannel  # noqa: E402
from gateway.consent import SERVICE  # noqa: E402
from gateway.dispatch import Dispatcher, DispatchPolicy  # noqa: E402
from gateway.outbox import STATES, EnqueueResult, Recipient, enqueue  # noqa: E402
from storage import create_engine, make_session_factory, upgrade  # noqa: E402
from storage.bulk import insert_returning_ids  # noqa: E402
from storage.models import Client  # noqa: E402
from storage.outbox import Message  # noqa: E402
from tests.support.botapi import FakeBotAPI  # noqa: E402
from tests.support.databases import create_pg_scratch, drop_pg_scratch  # noqa: E402
from tests.support.messaging import COMPANY  # noqa: E402

MOSCOW = ZoneInfo("Europe/Moscow")
TEMPLATE = "winback"
PLAN = ("telegram",)
BATCH = 1000
FIRST_CHAT = 500_000_000
WARM_UP = 1.0
TARGET_SHARE = 0.95


def now() -> datetime:
    return datetime.now(UTC)


async def fill(sessions: async_sessionmaker[AsyncSession], count: int) -> EnqueueResult:
    """`count` clients, each with their own Telegram chat, and a service message for each."""
    stamp = now()
    today = stamp.astimezone(MOSCOW).date()
    result = EnqueueResult()
    async with sessions() as session, session.begin():
        await sync_branches(session, (), company_name=COMPANY.name, now=stamp)
        template = await TemplateLibrary().get(session, TEMPLATE)
        for start in range(0, count, BATCH):
            numbers = range(start, min(start + BATCH, count))
            rows = [
                {
                    "external_id": f"B{number}",
                    "first_name": "Иван",
                    "middle_name": "Петрович",
                    "last_name": "Смирнов",
                    "gender": "male",
                    "telegram_id": FIRST_CHAT + number,
                    "created_at": stamp,
                    "updated_at": stamp,
                }
                for number in numbers
            ]
            ids = await insert_returning_ids(session, Client, rows, key=("external_id",))
            recipients = []
            for row in rows:
                client_id = ids[(row["external_id"],)]
                facts = ClientFacts(client_id, "Иван", "Петрович", "Смирнов", "male", None)
                recipients.append(
                    Recipient(
                        client_id=client_id,
                        key=f"bench:dispatch:{client_id}",
                        context=message_context(COMPANY, facts, None, today),
                    )
                )
            result.add(
                await enqueue(session, template, recipients, plan=PLAN, kind=SERVICE, now=stamp)
            )
    return result


async def states(sessions: async_sessionmaker[AsyncSession]) -> Counter[str]:
    async with sessions() as session:
        rows = await session.execute(
            select(Message.state, func.count()).group_by(Message.state).order_by(Message.state)
        )
        return Counter({state: count for state, count in rows})


def percentile(sorted_values: list[float], share: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    index = min(len(sorted_values) - 1, max(0, math.ceil(share * len(sorted_values)) - 1))
    return sorted_values[index]


ON_THE_WIRE = 0.05
"""Seconds after a 429 in which a request may still arrive that left before the answer did."""


async def flood_once(api: FakeBotAPI, after: int, retry_after: int) -> None:
    """Answer 429 to the request that follows the `after`-th accepted message."""
    await api.wait_sent(after, timeout=3600)
    api.fail_next("flood", retry_after=retry_after)


def report_flood(api: FakeBotAPI, retry_after: int) -> bool:
    floods = [r for r in api.requests if r.status == 429]
    if not floods:
        print("429: the server sent none (the run ended before --flood-at messages)")
        return False
    flood = floods[0]
    end = flood.at + retry_after
    sends = [r for r in api.requests if r.method == "sendMessage" and r is not flood]
    inside = [r for r in sends if flood.at < r.at < end]
    late = [r for r in inside if r.at > flood.at + ON_THE_WIRE]
    chat = flood.params.get("chat_id")
    resent = next((r for r in sends if r.at >= flood.at and r.params.get("chat_id") == chat), None)
    after = [r for r in sends if r.at >= end]
    print(
        f"429 (retry_after {retry_after} s) at +0: {len(inside)} request(s) reached the server"
        f" inside the pause, {len(late)} of them more than {ON_THE_WIRE * 1000:.0f} ms after the"
        f" 429 (sent after it was known; target 0)"
    )
    if resent is None:
        print("CHECK FAILED: the paced message was never sent again")
        return False
    place = after.index(resent) + 1 if resent in after else 0
    print(
        f"the paced message went again {resent.at - end:+.3f} s after the pause ended"
        f" ({resent.at - flood.at:.3f} s after the 429), as number {place} after the pause"
    )
    return not late and place == 1


async def bench(
    url: str, rate: int, seconds: float, flood_at: int | None = None, retry_after: int = 2
) -> bool:
    engine = create_engine(url)
    await upgrade(engine)
    sessions = make_session_factory(engine)
    print(f"database: {engine.url.render_as_string(hide_password=True)}")
    count = math.ceil(rate * seconds * 1.2)
    started = time.perf_counter()
    queued = await fill(sessions, count)
    print(
        f"setup (not in the figures): {thousands(count)} clients with their own Telegram chat,"
        f" {thousands(queued.queued)} service messages ({TEMPLATE}, plan telegram) queued"
        f" in {time.perf_counter() - started:.1f} s"
    )

    async with FakeBotAPI() as api:
        api.enforce_rate(per_second=rate, per_chat_per_second=1)
        channel = TelegramChannel(
            api.token,
            api_server=api.base_url,
            rate_per_second=rate,
            chat_rate_per_second=1,
            request_timeout=10,
        )
        dispatcher = Dispatcher(
            sessions,
            {"telegram": channel},
            DispatchPolicy(night=None, advertising_limit=0),
            clock=now,
        )
        stop = asyncio.Event()
        began = time.monotonic()
        if flood_at is not None:
            flooding = asyncio.create_task(flood_once(api, flood_at, retry_after))
        running = asyncio.create_task(dispatcher.run(stop))
        await asyncio.sleep(seconds)
        stop.set()
        stopped = time.monotonic()
        await running
        finished = time.monotonic()
        if flood_at is not None:
            flooding.cancel()
            flood_ok = report_flood(api, retry_after)
        await dispatcher.close()
        sent = sorted(message.at for message in api.sent)
        answers = Counter(request.status for request in api.requests)
        peak = api.max_in_window(1.0)
    by_state = await states(sessions)
    await engine.dispose()

    print(
        f"dispatch: ran {stopped - began:.1f} s, then {finished - stopped:.2f} s to finish the"
        f" requests under way; limit {rate}/s overall and 1/s per chat, enforced by the server"
    )
    if not sent:
        print("CHECK FAILED: the server accepted no message")
        return False
    span = sent[-1] - sent[0]
    print(
        f"accepted: {thousands(len(sent))} messages; first at +{sent[0] - began:.2f} s after start,"
        f" last at +{sent[-1] - began:.2f} s; {span:.2f} s between first and last"
        f" ({(len(sent) - 1) / span if span else 0:.2f}/s)"
    )
    window_start = sent[0] + WARM_UP
    window = stopped - window_start
    in_window = sum(1 for at in sent if window_start <= at < stopped)
    sustained = in_window / window
    share = sustained / rate
    verdict = "met" if share >= TARGET_SHARE else "NOT met"
    print(
        f"sustained: {thousands(in_window)} messages in {window:.2f} s = {sustained:.2f}/s"
        f" = {share:.1%} of the {rate}/s limit (steady state: from {WARM_UP:g} s after the"
        f" first send, the warm-up left out, to the stop); target >= {TARGET_SHARE:.0%}: {verdict}"
    )
    above = peak > rate
    print(
        f"max in any 1 s window: {peak} (limit {rate}):"
        f" {'ABOVE the limit' if above else 'never above it'}"
    )
    flood = answers.get(429, 0)
    others = ", ".join(f"{status}: {n}" for status, n in sorted(answers.items()))
    print(f"429 answers: {flood} of {thousands(len(api.requests))} requests (by status: {others})")
    gaps = sorted(b - a for a, b in itertools.pairwise(sent))
    if gaps:
        print(
            f"interval between consecutive sends: p50 {percentile(gaps, 0.50) * 1000:.1f} ms,"
            f" p99 {percentile(gaps, 0.99) * 1000:.1f} ms, max {gaps[-1] * 1000:.1f} ms,"
            f" mean {statistics.fmean(gaps) * 1000:.1f} ms (1/limit = {1000 / rate:.1f} ms)"
        )
    total = sum(by_state.values())
    listed = ", ".join(
        f"{state} {thousands(by_state[state])}" for state in STATES if by_state[state]
    )
    print(f"database: {thousands(total)} messages: {listed}")
    consistent = by_state["sent"] == len(sent) and not by_state["sending"]
    if not consistent:
        print(
            f"CHECK FAILED: {thousands(len(sent))} accepted by the server, states {dict(by_state)}"
        )
    return consistent and (flood_at is None or flood_ok)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=30, help="messages per second (limit)")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--pg", help="a PostgreSQL admin URL: a scratch database is made beside")
    parser.add_argument("--flood-at", type=int, help="one 429 after this many accepted messages")
    parser.add_argument("--retry-after", type=int, default=2, help="the 429's retry_after, s")
    args = parser.parse_args()
    flood = (args.flood_at, args.retry_after)
    if args.pg:
        url = asyncio.run(create_pg_scratch(args.pg, migrate=False))
        try:
            ok = asyncio.run(bench(url, args.rate, args.seconds, *flood))
        finally:
            asyncio.run(drop_pg_scratch(args.pg, url))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            database = f"sqlite:///{Path(tmp) / 'bench.db'}"
            ok = asyncio.run(bench(database, args.rate, args.seconds, *flood))
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()

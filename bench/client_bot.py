"""Benchmark: the client bot under load, beside an echo bot on the same harness (target:
handler p99 under 50 ms and within 5x of the echo's, the floor).

Fills a fresh SQLite database with --users clients linked to Telegram, each with a car (a
paid maintenance visit with its odometer reading: a forecast and a bonus accrual) and a
paid repair visit not surveyed yet, whose invitation the bot sent beforehand. Starts the
local Bot API server of tests/support/botapi.py and feeds --updates updates to long
polling, round-robin over the users, never more than --outstanding not handled yet: 40 %
/balance, 40 % /cars, 20 % taps on the survey's buttons (CSAT 5, NPS 10, skip the comment;
over 15 updates a user, taps replay, and the fake refuses their edits as not modified).

Two runs in one process: an echo Dispatcher ("ok" to a message, a bare answer to a tap),
the floor that aiogram, HTTP and the fake server cost; then the real bot role as `autoloyal
run` starts it. Handler time is taken by an outermost update middleware, from when the
Dispatcher starts on an update to when it is done with it; updates/s from the first push
to the last update handled. Updates are handled concurrently, so with N outstanding an
update's time includes its turns waiting for the others (Little's law: about N / rate).
The default, --outstanding 1, gives the time of one update alone, which the target is
about; --outstanding 500 shows the most updates/s the bot keeps up with.

    python bench/client_bot.py [--updates 10000] [--users 1000] [--outstanding 1]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import math
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from logging.handlers import BufferingHandler
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# The project's root first: the bot package and tests.support are imported from there.
sys.path.insert(0, str(ROOT))

from aiogram import BaseMiddleware, Dispatcher, Router  # noqa: E402
from aiogram.types import CallbackQuery, Message, TelegramObject, Update  # noqa: E402
from aiogram.utils.keyboard import InlineKeyboardBuilder  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from autoloyal.app import open_app  # noqa: E402
from autoloyal.config import Settings  # noqa: E402
from autoloyal.rules import bonus_rules  # noqa: E402
from autoloyal.run import settle_heap  # noqa: E402
from autoloyal.telegram_bot import bot_role, make_bot  # noqa: E402
from bot.callbacks import SurveyTap  # noqa: E402
from crm.bonuses.program import VisitFacts, accrue_for_visit  # noqa: E402
from crm.branches import sync_branches  # noqa: E402
from crm.clock import Moment  # noqa: E402
from storage import create_engine, make_session_factory, upgrade  # noqa: E402
from storage.bulk import insert_returning_ids, insert_rows  # noqa: E402
from storage.feedback import SurveyAnswer  # noqa: E402
from storage.models import Branch, Car, Client, OdometerReading, Visit  # noqa: E402
from tests.support.botapi import FakeBotAPI  # noqa: E402
from tests.support.botchat import bot_settings  # noqa: E402
from tests.support.databases import Database  # noqa: E402

FIRST_USER = 10_000_000
CHUNK = 100  # updates pushed at once
KINDS = ("/balance", "/cars", "/balance", "/cars", "survey tap")  # a user's 5 rounds
TAPS = (("csat", 5), ("nps", 10), ("comment", -1))  # high scores: no complaint, no alert
INVITATION = "Как прошёл визит? Оцените, пожалуйста, от 1 до 5"
P99_TARGET_MS, FLOOR_FACTOR = 50.0, 5.0
Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]


class Timer(BaseMiddleware):
    """Outermost: the time the Dispatcher spends on each update, by kind; and a count."""

    def __init__(self) -> None:
        self.ms: dict[str, list[float]] = defaultdict(list)
        self.done, self._done = 0, asyncio.Condition()

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        started = time.perf_counter()
        try:
            return await handler(event, data)
        finally:
            assert isinstance(event, Update)
            kind = event.message.text if event.message else "survey tap"
            self.ms[kind or "?"].append((time.perf_counter() - started) * 1000)
            async with self._done:
                self.done += 1
                self._done.notify_all()

    async def wait_done(self, count: int) -> None:
        async with self._done:
            await self._done.wait_for(lambda: self.done >= count)


async def fill(db: Database, settings: Settings, users: int) -> dict[int, int]:
    """Clients, cars, visits, readings, accruals; answers {telegram id: visit to survey}."""
    now = datetime.now(UTC)
    moment = Moment(now, now.astimezone(settings.company.tz).date())
    stamp = {"created_at": now, "updated_at": now}
    keys = [f"BOT{i}" for i in range(users)]
    names = {"first_name": "Иван", "middle_name": "Петрович", "last_name": "Смирнов"}
    async with db.sessions() as session, session.begin():
        await sync_branches(session, settings.branch, company_name=settings.company.name, now=now)
        branch = await session.scalar(select(Branch.id))
        rows = [
            {"external_id": key, "telegram_id": FIRST_USER + i, **names, **stamp}
            for i, key in enumerate(keys)
        ]
        clients = await insert_returning_ids(session, Client, rows, key=("external_id",))
        rows = [
            {"external_id": key, "client_id": clients[key,], "make": "Kia", "model": "Rio"}
            | {"year": 2019, "plate": f"А{i % 1000:03d}ВС{77 + i // 1000}", **stamp}
            for i, key in enumerate(keys)
        ]
        cars = await insert_returning_ids(session, Car, rows, key=("external_id",))
        visits: list[dict[str, Any]] = [
            {"client_id": clients[key,], "car_id": cars[key,], "branch_id": branch, **stamp}
            | {"external_id": key + suffix, "kind": kind, "amount": Decimal(amount)}
            | {"visited_on": moment.today - timedelta(days=days), "odometer": km}
            for i, key in enumerate(keys)
            for suffix, kind, amount, days, km in (
                ("-TO", "maintenance", 12_000, 120, 40_000 + i),
                ("-R", "repair", 4_500, 2, None),
            )
        ]
        ids = await insert_returning_ids(session, Visit, visits, key=("external_id",))
        readings = [
            {"car_id": v["car_id"], "read_on": v["visited_on"], "km": v["odometer"]}
            | {"source": "visit", "visit_id": ids[v["external_id"],], "created_at": now}
            for v in visits
            if v["odometer"] is not None
        ]
        await insert_rows(session, OdometerReading, readings)
        rules = bonus_rules(settings)
        for v in visits:
            visit_id = ids[v["external_id"],]
            facts = VisitFacts(visit_id, v["client_id"], v["external_id"], v["kind"], v["amount"])
            await accrue_for_visit(session, rules, facts, moment)
    return {FIRST_USER + i: ids[f"{key}-R",] for i, key in enumerate(keys)}


async def invite(settings: Settings, visits: dict[int, int]) -> dict[int, int]:
    """The survey invitation in every user's chat, sent by the bot: {telegram id: message}."""
    bot = make_bot(settings)
    sent: dict[int, int] = {}

    async def one(user: int, visit: int) -> None:
        keyboard = InlineKeyboardBuilder()
        for score in range(1, 6):
            data = SurveyTap(visit=visit, question="csat", score=score).pack()
            keyboard.button(text=str(score), callback_data=data)
        message = await bot.send_message(user, INVITATION, reply_markup=keyboard.as_markup())
        sent[user] = message.message_id

    try:
        items = list(visits.items())
        for start in range(0, len(items), CHUNK):
            await asyncio.gather(*(one(*item) for item in items[start : start + CHUNK]))
    finally:
        await bot.session.close()
    return sent


def make_updates(
    count: int, visits: dict[int, int], invitations: dict[int, int], bot_user: dict[str, Any]
) -> list[dict[str, Any]]:
    users = sorted(visits)
    message_ids = itertools.count(1_000_000)  # never the id of a message the bot sent
    taps: Counter[int] = Counter()
    updates: list[dict[str, Any]] = []
    for n in range(count):
        index, round_ = n % len(users), n // len(users)
        user = users[index]
        sender = {"id": user, "is_bot": False, "first_name": "Иван", "language_code": "ru"}
        chat = {"id": user, "type": "private", "first_name": "Иван"}
        kind = KINDS[(index + round_) % len(KINDS)]  # each user goes through KINDS in turn
        if kind.startswith("/"):
            entity = {"type": "bot_command", "offset": 0, "length": len(kind)}
            message = {"message_id": next(message_ids), "date": int(time.time()), "chat": chat}
            message |= {"from": sender, "text": kind, "entities": [entity]}
            updates.append({"message": message})
            continue
        question, score = TAPS[taps[user] % len(TAPS)]
        taps[user] += 1
        data = SurveyTap(visit=visits[user], question=question, score=score).pack()
        message = {"message_id": invitations[user], "date": int(time.time()), "chat": chat}
        message |= {"from": bot_user, "text": INVITATION}
        query = {"id": f"{user}:{n}", "from": sender, "chat_instance": str(user), "data": data}
        updates.append({"callback_query": query | {"message": message}})
    return updates


async def drive(
    fake: FakeBotAPI, timer: Timer, updates: list[dict[str, Any]], outstanding: int
) -> tuple[float, int]:
    """Push every update, never more than `outstanding` ahead; answers (seconds, last id)."""
    started = time.perf_counter()
    last, chunk = 0, min(CHUNK, outstanding)
    for start in range(0, len(updates), chunk):
        if start + chunk > outstanding:
            await timer.wait_done(start + chunk - outstanding)
        for update in updates[start : start + chunk]:
            last = fake.push_update(update) or last
    await timer.wait_done(len(updates))
    return time.perf_counter() - started, last


async def run_echo(
    settings: Settings, fake: FakeBotAPI, updates: list[Any], outstanding: int
) -> tuple[Timer, float]:
    router = Router(name="echo")

    @router.message()
    async def echo(message: Message) -> None:
        await message.answer("ok")

    @router.callback_query()
    async def tap(query: CallbackQuery) -> None:
        await query.answer()

    timer, dp, bot = Timer(), Dispatcher(), make_bot(settings)
    dp.update.outer_middleware(timer)
    dp.include_router(router)
    polling = asyncio.create_task(
        dp.start_polling(bot, handle_signals=False, close_bot_session=False)
    )
    try:
        seconds, last = await drive(fake, timer, updates, outstanding)
    finally:
        await dp.stop_polling()
        await polling
    await bot.get_updates(offset=last + 1, timeout=0)  # confirm the last batch: not the bot's
    await bot.session.close()
    return timer, seconds


async def run_bot(
    settings: Settings, fake: FakeBotAPI, updates: list[Any], outstanding: int
) -> tuple[Timer, float]:
    timer = Timer()
    async with open_app(settings, migrate=False) as app:
        role = bot_role(app, make_bot(settings))
        middlewares = role.dp.update.outer_middleware
        ordered: list[Any] = [timer, *middlewares]  # the timer first, before the bot's own
        for middleware in ordered[1:]:
            middlewares.unregister(middleware)
        for middleware in ordered:
            middlewares.register(middleware)
        await role.start()
        settle_heap()  # as `autoloyal run` does once its roles have started
        try:
            seconds, _ = await drive(fake, timer, updates, outstanding)
        finally:
            await role.stop()
    return timer, seconds


def percentile(sorted_values: list[float], share: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    index = min(len(sorted_values) - 1, max(0, math.ceil(share * len(sorted_values)) - 1))
    return sorted_values[index]


def row(name: str, ms: list[float], rate: float | None = None) -> str:
    ms = sorted(ms)
    cells = [f"{percentile(ms, share):>9.1f}" for share in (0.50, 0.95, 0.99)]
    per_second = f"{rate:>11,.0f}" if rate is not None else " " * 11
    return f"{name:<16}{len(ms):>9,}{per_second}{''.join(cells)}{ms[-1]:>9.1f}"


async def bench(url: str, count: int, users: int, outstanding: int) -> bool:
    errors = BufferingHandler(capacity=sys.maxsize)  # keeps every record it takes
    errors.setLevel(logging.ERROR)
    for name in ("autoloyal.bot", "aiogram"):
        logging.getLogger(name).addHandler(errors)
    ok, runs = True, {}
    async with FakeBotAPI() as fake:
        engine = create_engine(url)
        await upgrade(engine)
        db = Database(url, engine, make_session_factory(engine))
        settings = bot_settings(db, fake, telegram={"user_messages_per_minute": 10_000})
        started = time.perf_counter()
        visits = await fill(db, settings, users)
        invitations = await invite(settings, visits)
        print(
            f"setup (not in the figures): {users:,} clients linked to Telegram, each with a car,"
            f" a maintenance visit with its odometer reading, a repair visit to survey and the"
            f" survey's invitation, in {time.perf_counter() - started:.1f} s"
        )
        for name, run in (("echo (floor)", run_echo), ("bot", run_bot)):
            updates = make_updates(count, visits, invitations, fake.bot_user)
            since = len(fake.requests)
            timer, seconds = await run(settings, fake, updates, outstanding)
            runs[name] = (timer, seconds)
            answered = Counter(
                (r.method, r.status) for r in fake.requests[since:] if r.method != "getUpdates"
            )
            taken = ", ".join(f"{m} {n:,}" for (m, s), n in sorted(answered.items()) if s == 200)
            refused = {f"{m} {s}": n for (m, s), n in answered.items() if s != 200}
            print(f"{name}: {timer.done:,} updates handled in {seconds:.1f} s; accepted: {taken}")
            if refused:
                ok = False
                print(f"CHECK FAILED: {name}: requests refused: {refused}")
        async with db.sessions() as session:
            query = select(SurveyAnswer.step, func.count()).group_by(SurveyAnswer.step)
            steps = {step: n for step, n in await session.execute(query)}
        await engine.dispose()
    print(f"survey answers in the database, by the step each waits for: {steps}")
    if errors.buffer:
        ok = False
        first = errors.buffer[0].getMessage()
        print(f"CHECK FAILED: {len(errors.buffer)} ERROR log records; the first: {first}")
    elif ok:
        print("no ERROR logged (autoloyal.bot, aiogram), no request refused by the server")

    print(f"\n{'run':<16}{'updates':>9}{'updates/s':>11}", end="")
    print("".join(f"{head:>9}" for head in ("p50 ms", "p95 ms", "p99 ms", "max ms")))
    figures = {}
    for name, (timer, seconds) in runs.items():
        every = [ms for kind in timer.ms.values() for ms in kind]
        figures[name] = (percentile(sorted(every), 0.99), timer.done / seconds)
        print(row(name, every, timer.done / seconds))
    for kind in dict.fromkeys(KINDS):
        print(row(f"  {kind}", runs["bot"][0].ms[kind]))
    (floor_p99, floor_rate), (p99, rate) = figures["echo (floor)"], figures["bot"]
    print(f"bot/floor: p99 {p99 / floor_p99:.2f}x, updates/s {rate / floor_rate:.2f}x")
    if (held := min(outstanding, count)) > 1:
        print(
            f"{held} outstanding: an update waits its turns among them (Little's law:"
            f" {held / floor_rate * 1000:.0f} ms on the floor, {held / rate * 1000:.0f} ms on"
            f" the bot)"
        )
    met = p99 < P99_TARGET_MS and p99 <= FLOOR_FACTOR * floor_p99
    print(
        f"target: p99 < {P99_TARGET_MS:.0f} ms and within {FLOOR_FACTOR:.0f}x of the floor:"
        f" {'MET' if met else 'NOT MET'}"
    )
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=10_000)
    parser.add_argument("--users", type=int, default=1_000)
    parser.add_argument("--outstanding", type=int, default=1, help="pushed, not yet handled")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        ok = asyncio.run(bench(url, args.updates, args.users, args.outstanding))
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()

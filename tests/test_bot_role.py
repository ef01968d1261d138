"""The bot role as `autoloyal run` runs it: long polling or a webhook over real HTTP, the
command list, a stop that finishes the update in hand, and the config it needs."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest

from autoloyal.app import open_app
from autoloyal.config import ConfigError, Settings, parse_settings
from autoloyal.run import UnknownRole, parse_roles, run
from autoloyal.telegram_bot import bot_role, make_bot
from tests.support import telegram_updates as tg
from tests.support.botapi import ApiRequest, FakeBotAPI
from tests.support.botchat import bot_settings
from tests.support.clock import FakeClock
from tests.support.databases import Database
from tests.test_cli import autoloyal

T = TypeVar("T")

WAIT = 60.0  # seconds; a passing test never waits this long
IVAN = tg.TelegramUser(555, "Иван")
OLGA = tg.TelegramUser(556, "Ольга", language_code="en")
SECRET = "s" * 24
HEADER = "X-Telegram-Bot-Api-Secret-Token"
TOKEN = "123456:TEST-token"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def webhook_settings(db: Database, fake: FakeBotAPI, port: int) -> Settings:
    return bot_settings(
        db,
        fake,
        telegram={"mode": "webhook", "webhook_secret": SECRET},
        http={"host": "127.0.0.1", "port": port, "public_url": f"http://127.0.0.1:{port}"},
    )


@asynccontextmanager
async def running(settings: Settings, roles: tuple[str, ...]) -> AsyncIterator[Running]:
    """`run(settings, roles, stop)` in a task; stopped (and awaited) on the way out."""
    stop = asyncio.Event()
    task = asyncio.create_task(run(settings, roles, stop))
    process = Running(stop, task)
    try:
        yield process
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.shield(task), WAIT)


class Running:
    def __init__(self, stop: asyncio.Event, task: asyncio.Task[None]) -> None:
        self.stop, self.task = stop, task

    async def until(self, step: Awaitable[T]) -> T:
        """`step`, unless `run` ends first: then what it raised, or a failure saying so."""
        waiting = asyncio.ensure_future(step)
        await asyncio.wait({waiting, self.task}, return_when=asyncio.FIRST_COMPLETED)
        if waiting.done():
            return waiting.result()
        waiting.cancel()
        self.task.result()
        raise AssertionError("run returned while the test still waited for it")

    async def stopped(self) -> None:
        self.stop.set()
        await asyncio.wait_for(asyncio.shield(self.task), WAIT)


def calls(fake: FakeBotAPI, method: str) -> list[ApiRequest]:
    return [r for r in fake.requests if r.method == method]


async def arrived(fake: FakeBotAPI, method: str) -> ApiRequest:
    """The first `method` request the fake holds unanswered (it records a request as it
    arrives; its waits only wake on answers, so this looks again every few ms)."""
    deadline = asyncio.get_running_loop().time() + WAIT
    while asyncio.get_running_loop().time() < deadline:
        pending = [r for r in calls(fake, method) if r.status == 0]
        if pending:
            return pending[0]
        await asyncio.sleep(0.01)
    raise AssertionError(f"no {method} arrived in {WAIT}s: {[r.method for r in fake.requests]}")


# 1. Long polling through `run`


async def test_run_polls_lists_the_commands_in_each_language_and_answers_start(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with FakeBotAPI() as fake:
        settings = bot_settings(db, fake)
        async with running(settings, ("bot",)) as process:
            fake.push_update(tg.command(IVAN, "start"))
            await process.until(fake.wait_sent(1))
            await process.stopped()

    [answer] = fake.sent
    assert answer.chat_id == IVAN.id
    assert "Здравствуйте, Иван!" in answer.text
    by_language = {language: (commands, scope) for commands, language, scope in fake.commands}
    assert len(fake.commands) == 3
    assert list(by_language) == [None, "ru", "en"]
    for commands, scope in by_language.values():
        assert scope == {"type": "all_private_chats"}
        names = [c["command"] for c in commands]
        assert names == ["start", "balance", "card", "cars", "book", "bookings", "settings", "help"]
    described = {
        lang: {c["command"]: c["description"] for c in by_language[lang][0]} for lang in by_language
    }
    assert described[None] == described["ru"]
    assert described["ru"]["start"] == "Начать и привязать телефон"
    assert described["ru"]["balance"] == "Бонусный баланс"
    assert described["en"]["start"] == "Start and link your phone"
    assert described["en"]["balance"] == "Bonus balance"
    assert len(calls(fake, "deleteWebhook")) == 1
    assert calls(fake, "setWebhook") == []
    first_poll = fake.requests.index(calls(fake, "getUpdates")[0])
    assert fake.requests.index(calls(fake, "deleteWebhook")[0]) < first_poll
    assert "role bot: @autoloyal_test_bot, long polling" in caplog.messages
    assert caplog.messages.index("stopping") < caplog.messages.index("stopped")


# 2. A webhook over real HTTP


@pytest.mark.parametrize("roles", [("bot",), ("api", "bot")], ids=["bot", "api+bot"])
async def test_a_webhook_takes_updates_with_the_secret_only(
    db: Database, roles: tuple[str, ...]
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    hook = f"{base}/webhooks/telegram"
    async with FakeBotAPI() as fake, aiohttp.ClientSession() as http:
        settings = webhook_settings(db, fake, port)
        async with running(settings, roles) as process:
            fake.push_update(tg.command(IVAN, "start"))
            await process.until(fake.wait_delivered(1))
            await process.until(fake.wait_sent(1))

            [set_webhook] = calls(fake, "setWebhook")
            assert set_webhook.params["url"] == hook
            assert set_webhook.params["secret_token"] == SECRET
            assert calls(fake, "getUpdates") == []
            assert fake.webhook_url == hook
            assert "Здравствуйте, Иван!" in fake.sent[0].text

            async def post(body: Any, headers: Mapping[str, str]) -> tuple[int, str]:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                async with http.post(
                    hook, data=data, headers={"Content-Type": "application/json", **headers}
                ) as response:
                    return response.status, await response.text()

            update = {**tg.command(OLGA, "start"), "update_id": 10_000}
            for headers in (
                {},
                {HEADER: ""},
                {HEADER: "t" * 24},
                {HEADER: SECRET[:-1]},
                {HEADER: SECRET + "s"},
                {HEADER.lower(): SECRET.upper()},
            ):
                assert await post(update, headers) == (403, "forbidden"), headers
            assert len(fake.sent) == 1  # none of them was handled

            for body in (b"not json", b"", b"\xff\xfe", [], "update", {"message": {}}, {"a": 1}):
                status, said = await post(body, {HEADER: SECRET})
                assert (status, said) == (400, "not an update"), body
            assert len(fake.sent) == 1

            assert await post(update, {HEADER: SECRET}) == (200, "ok")
            assert [m.chat_id for m in fake.sent] == [IVAN.id, OLGA.id]
            assert "Hello, Ольга!" in fake.sent[1].text

            async with http.get(f"{base}/healthz") as health:
                assert health.status == 200
            async with http.get(f"{base}/api/v1/openapi.json") as api:
                assert api.status == (200 if "api" in roles else 404)
            async with http.get(hook) as wrong_method:
                assert wrong_method.status == 405
            await process.stopped()
    assert calls(fake, "deleteWebhook") == []


# 3. A stop finishes the update in hand


@pytest.mark.parametrize("mode", ["polling", "webhook"])
async def test_a_stop_waits_for_the_answer_in_hand_then_closes_cleanly(
    db: Database, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with FakeBotAPI() as fake:
        if mode == "webhook":
            settings = webhook_settings(db, fake, free_port())
        else:
            settings = bot_settings(db, fake)
        fake.fail_next("timeout", method="sendMessage", delay=2.0)  # stalls, then answers
        async with running(settings, ("bot",)) as process:
            update_id = fake.push_update(tg.command(IVAN, "start"))
            stalled = await process.until(arrived(fake, "sendMessage"))
            assert stalled.status == 0
            await process.stopped()

            [answered] = calls(fake, "sendMessage")  # at the moment run returned
            assert answered.status == 200
            [sent] = fake.sent
            assert sent.chat_id == IVAN.id
            assert "Здравствуйте, Иван!" in sent.text
        if mode == "webhook":
            await fake.wait_delivered(1)
            assert fake.webhook_deliveries == [(update_id, 200)]  # Telegram will not resend it

    troubles = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert troubles == [], [r.getMessage() for r in troubles]
    assert caplog.messages.index("stopping") < caplog.messages.index("stopped")


async def test_a_role_stopped_right_after_its_start_stops_cleanly(
    db: Database, clock: FakeClock
) -> None:
    """stop() straight after start(), before the polling task had its first turn: what
    `bot_chat` does when a test fails before its first await, or any caller that gives up
    at once. The role stops; no poller is left behind."""
    async with FakeBotAPI() as fake:
        settings = bot_settings(db, fake)
        async with open_app(settings, clock=clock, migrate=False) as app:
            role = bot_role(app, make_bot(settings))
            await role.start()
            try:
                await role.stop()
                assert role._polling is not None
                assert role._polling.done()
            finally:  # after a failed stop, no poller outlives the test
                polling = role._polling
                if polling is not None and not polling.done():
                    polling.cancel()
                    await asyncio.gather(polling, return_exceptions=True)
                    await role.bot.session.close()


# 4. Which roles run


def test_without_a_token_the_bot_is_left_out_and_asking_for_it_is_one_line() -> None:
    without = parse_settings({})
    assert parse_roles(None, without) == ("api", "dispatcher", "scheduler")
    assert parse_roles("", without) == ("api", "dispatcher", "scheduler")
    for asked in ("bot", "api,bot", " bot , dispatcher "):
        with pytest.raises(UnknownRole) as refused:
            parse_roles(asked, without)
        assert "[telegram] token" in str(refused.value)
        assert "\n" not in str(refused.value)

    with_token = parse_settings({"telegram": {"token": TOKEN}})
    assert "bot" in parse_roles(None, with_token)
    assert parse_roles(None, with_token) == ("api", "dispatcher", "bot", "scheduler")
    assert parse_roles("bot", with_token) == ("bot",)


def test_autoloyal_run_roles_bot_without_a_token_exits_2_with_one_line(tmp_path: Path) -> None:
    result = autoloyal(tmp_path, "run", "--roles", "bot")

    assert result.returncode == 2, result.stdout + result.stderr
    [line] = result.stderr.strip().splitlines()
    assert "[telegram] token" in line
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "autoloyal.db").exists()  # refused before touching the database


# 5. Webhook config


def webhook_config(**telegram: Any) -> dict[str, Any]:
    return {"telegram": {"token": TOKEN, "mode": "webhook", **telegram}}


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        (
            {**webhook_config(), "http": {"public_url": "https://loyal.example.ru"}},
            "telegram.webhook_secret",
        ),
        (
            {
                **webhook_config(webhook_secret="short"),
                "http": {"public_url": "https://loyal.example.ru"},
            },
            "telegram.webhook_secret",
        ),
        (webhook_config(webhook_secret=SECRET), "http.public_url"),
        (
            {
                **webhook_config(webhook_secret=SECRET),
                "http": {"public_url": "http://loyal.example.ru"},
            },
            "http.public_url",
        ),
    ],
    ids=["no secret", "short secret", "no public_url", "http to api.telegram.org"],
)
def test_webhook_config_errors_name_the_key(raw: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_settings(raw)
    assert f"config: {key}: " in str(refused.value)
    assert "\n" not in str(refused.value)


def test_a_complete_webhook_config_is_taken() -> None:
    settings = parse_settings(
        {
            **webhook_config(webhook_secret=SECRET),
            "http": {"public_url": "https://loyal.example.ru/"},
        }
    )
    assert settings.telegram.mode == "webhook"
    assert settings.http.base_url + "/webhooks/telegram" == (
        "https://loyal.example.ru/webhooks/telegram"
    )

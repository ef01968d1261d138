"""The dispatcher against a local Bot API server: the story of a message after it is queued."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from gateway import lifecycle
from gateway.alerts import ChatAlerts
from gateway.channels.filesink import FileSink
from gateway.channels.telegram import TelegramChannel
from gateway.consent import ALL_CHANNELS, SERVICE
from storage.outbox import ChannelUnreachable
from tests.support.botapi import FakeBotAPI
from tests.support.clock import FakeClock
from tests.support.databases import Database
from tests.support.messaging import add_client, attempts, make_dispatcher, message, queue_message

CHAT = 5001


@pytest.fixture
async def bot_api() -> AsyncIterator[FakeBotAPI]:
    async with FakeBotAPI() as server:
        yield server


@pytest.fixture
async def telegram(bot_api: FakeBotAPI) -> AsyncIterator[TelegramChannel]:
    channel = TelegramChannel(
        bot_api.token, api_server=bot_api.base_url, rate_per_second=1000, request_timeout=60
    )
    yield channel
    await channel.close()


@pytest.fixture
def sms(tmp_path: Path) -> FileSink:
    return FileSink("sms", tmp_path / "outbox")


def sms_lines(sink: FileSink) -> list[dict[str, object]]:
    if not sink.path.exists():
        return []
    return [json.loads(line) for line in sink.path.read_text("utf-8").splitlines()]


async def test_a_message_goes_out_once_through_telegram(
    db: Database, clock: FakeClock, bot_api: FakeBotAPI, telegram: TelegramChannel
) -> None:
    client = await add_client(db, telegram_id=CHAT)
    message_id = await queue_message(db, clock, client)
    dispatcher = make_dispatcher(db, {"telegram": telegram}, clock)

    assert await dispatcher.drain() == 1
    assert await dispatcher.drain() == 0

    assert [sent.chat_id for sent in bot_api.sent] == [CHAT]
    assert bot_api.sent[0].parse_mode == "HTML"
    assert "<b>Уважаемый Иван Петрович!</b>" in bot_api.sent[0].text
    sent = await message(db, message_id)
    assert (sent.state, sent.channel, sent.address) == ("sent", "telegram", str(CHAT))
    assert sent.provider_message_id == str(bot_api.sent[0].message_id)
    assert sent.sent_at == clock()
    [attempt] = await attempts(db, message_id)
    assert (attempt.outcome, attempt.channel, attempt.error) == ("sent", "telegram", None)


async def test_a_blocked_client_falls_through_to_sms_and_telegram_is_not_tried_again(
    db: Database,
    clock: FakeClock,
    bot_api: FakeBotAPI,
    telegram: TelegramChannel,
    sms: FileSink,
) -> None:
    bot_api.blocked.add(CHAT)
    client = await add_client(db, telegram_id=CHAT, phone="+79035254560")
    first = await queue_message(db, clock, client, plan=("telegram", "sms"))
    dispatcher = make_dispatcher(db, {"telegram": telegram, "sms": sms}, clock)

    await dispatcher.drain()

    done = await message(db, first)
    assert (done.state, done.channel, done.address) == ("sent", "sms", "+79035254560")
    assert done.reason == "telegram: Telegram: Forbidden: bot was blocked by the user"
    assert [a.outcome for a in await attempts(db, first)] == ["permanent", "sent"]
    assert [line["message_id"] for line in sms_lines(sms)] == [first]
    async with db.sessions() as session:
        mark = await session.scalar(select(ChannelUnreachable))
    assert mark is not None
    assert (mark.client_id, mark.address) == (client, str(CHAT))

    requests_before = len(bot_api.requests)
    second = await queue_message(db, clock, client, plan=("telegram", "sms"), kind=SERVICE)
    await dispatcher.drain()

    assert len(bot_api.requests) == requests_before
    assert (await message(db, second)).channel == "sms"
    assert [a.channel for a in await attempts(db, second)] == ["sms"]


async def test_chat_not_found_marks_telegram_unreachable_and_ends_failed_without_fallback(
    db: Database, clock: FakeClock, bot_api: FakeBotAPI, telegram: TelegramChannel
) -> None:
    bot_api.missing.add(CHAT)
    client = await add_client(db, telegram_id=CHAT)
    message_id = await queue_message(db, clock, client)

    await make_dispatcher(db, {"telegram": telegram}, clock).drain()

    failed = await message(db, message_id)
    assert failed.state == "failed"
    assert failed.reason == "telegram: Telegram: Bad Request: chat not found"


async def test_a_server_error_is_retried_after_a_backoff(
    db: Database, clock: FakeClock, bot_api: FakeBotAPI, telegram: TelegramChannel
) -> None:
    bot_api.fail_next("server")
    client = await add_client(db, telegram_id=CHAT)
    message_id = await queue_message(db, clock, client)
    dispatcher = make_dispatcher(db, {"telegram": telegram}, clock, retry_base_seconds=30)

    await dispatcher.drain()

    waiting = await message(db, message_id)
    assert (waiting.state, waiting.attempts, waiting.channel_attempts) == ("queued", 1, 1)
    assert "Bad Gateway" in (waiting.last_error or "")
    assert timedelta(seconds=24) <= waiting.next_attempt_at - clock() <= timedelta(seconds=36)
    assert await dispatcher.drain() == 0  # not due yet

    clock.advance(seconds=40)
    await dispatcher.drain()

    assert (await message(db, message_id)).state == "sent"
    assert len(bot_api.sent) == 1
    assert [a.outcome for a in await attempts(db, message_id)] == ["transient", "sent"]


async def test_a_timeout_is_transient(db: Database, clock: FakeClock, bot_api: FakeBotAPI) -> None:
    # The fake stalls on the same event loop, so the client's 0.3 s run out first for sure.
    bot_api.fail_next("timeout", delay=5)
    slow = TelegramChannel(bot_api.token, api_server=bot_api.base_url, request_timeout=0.3)
    client = await add_client(db, telegram_id=CHAT)
    message_id = await queue_message(db, clock, client)

    try:
        await make_dispatcher(db, {"telegram": slow}, clock).drain()
    finally:
        await slow.close()

    waiting = await message(db, message_id)
    assert waiting.state == "queued"
    assert [a.outcome for a in await attempts(db, message_id)] == ["transient"]


async def test_after_the_last_try_the_next_channel_takes_over(
    db: Database,
    clock: FakeClock,
    bot_api: FakeBotAPI,
    telegram: TelegramChannel,
    sms: FileSink,
) -> None:
    bot_api.fail_next("server", times=2)
    client = await add_client(db, telegram_id=CHAT, phone="+79035254560")
    message_id = await queue_message(db, clock, client, plan=("telegram", "sms"))
    dispatcher = make_dispatcher(db, {"telegram": telegram, "sms": sms}, clock, max_attempts=2)

    await dispatcher.drain()
    clock.advance(minutes=5)
    await dispatcher.drain()

    done = await message(db, message_id)
    assert (done.state, done.channel) == ("sent", "sms")
    assert done.reason == "telegram: gave up after 2 tries (Telegram: Bad Gateway)"
    assert [a.outcome for a in await attempts(db, message_id)] == ["transient", "transient", "sent"]


async def test_after_a_429_nothing_leaves_until_retry_after_and_the_paced_go_first(
    db: Database, clock: FakeClock, bot_api: FakeBotAPI
) -> None:
    # The server allows 10 a second and asks for 1 s of silence; we hold 200 a second and
    # 64 messages in hand, so many have a rate slot when the first 429 comes back.
    bot_api.enforce_rate(per_second=10, per_chat_per_second=None, retry_after=1)
    fast = TelegramChannel(bot_api.token, api_server=bot_api.base_url, rate_per_second=200)
    ids = [
        await queue_message(db, clock, await add_client(db, telegram_id=9100 + n))
        for n in range(25)
    ]
    try:
        # One try each: a 429 is the server pacing us, not a failure, so it spends none.
        await make_dispatcher(db, {"telegram": fast}, clock, max_attempts=1).drain()
    finally:
        await fast.close()

    assert {(await message(db, m)).state for m in ids} == {"sent"}
    assert len(bot_api.sent) == 25
    floods = [r for r in bot_api.requests if r.status == 429]
    assert floods
    # Requests already on the wire when a 429 comes back are exempt: they arrive at once.
    on_the_wire = 0.25
    inside = [
        r
        for flood in floods
        for r in bot_api.requests
        if r.method == "sendMessage" and flood.at + on_the_wire < r.at < flood.at + 1.0
    ]
    assert inside == []
    # Each paced message is the first to go once its pause is over, straight away.
    for flood in floods:
        after = [r for r in bot_api.requests if r.method == "sendMessage" and r.at > flood.at + 1]
        paced_at_once = [f for f in floods if abs(f.at - flood.at) < on_the_wire]
        first_ones = {r.params["chat_id"] for r in after[: len(paced_at_once)]}
        assert flood.params["chat_id"] in first_ones
        resent = next(r for r in after if r.params["chat_id"] == flood.params["chat_id"])
        assert resent.at - (flood.at + 1) < 1.0
    for m in ids:
        outcomes = [a.outcome for a in await attempts(db, m)]
        assert outcomes in (["sent"], ["transient", "sent"])


async def test_a_dispatcher_stopped_during_a_429_pause_gives_the_message_back_unsent(
    db: Database, clock: FakeClock, bot_api: FakeBotAPI, telegram: TelegramChannel
) -> None:
    bot_api.fail_next("flood", retry_after=30)
    paced = await queue_message(db, clock, await add_client(db, telegram_id=CHAT))
    dispatcher = make_dispatcher(db, {"telegram": telegram}, clock)
    stop = asyncio.Event()

    running = asyncio.create_task(dispatcher.run(stop))
    await bot_api.wait_answered(1)
    stop.set()
    await asyncio.wait_for(running, timeout=60)

    # The next attempt was recorded for the moment the pause ends; stopping takes it back,
    # so the message is queued again rather than `unknown`, and nothing was sent twice.
    waiting = await message(db, paced)
    assert (waiting.state, waiting.channel_attempts) == ("queued", 0)
    assert [a.outcome for a in await attempts(db, paced)] == ["transient"]
    assert [r.status for r in bot_api.requests] == [429]


async def test_quiet_hours_hold_advertising_until_morning_but_not_service(
    db: Database, clock: FakeClock, bot_api: FakeBotAPI, telegram: TelegramChannel
) -> None:
    clock.set(datetime(2026, 11, 24, 19, 0, tzinfo=UTC))  # 22:00 in Moscow
    client = await add_client(db, telegram_id=CHAT)
    advert = await queue_message(db, clock, client)
    reminder = await queue_message(db, clock, client, kind=SERVICE, template="winback")
    dispatcher = make_dispatcher(db, {"telegram": telegram}, clock, advertising_limit=0)

    await dispatcher.drain()

    assert (await message(db, reminder)).state == "sent"
    waiting = await message(db, advert)
    assert waiting.state == "queued"
    assert waiting.next_attempt_at == datetime(2026, 11, 25, 6, 0, tzinfo=UTC)  # 09:00 Moscow
    assert waiting.waiting == "quiet_hours"
    assert await attempts(db, advert) == []

    clock.set(datetime(2026, 11, 25, 6, 0, tzinfo=UTC))
    await dispatcher.drain()

    assert (await message(db, advert)).state == "sent"


async def test_turning_quiet_hours_off_releases_the_messages_waiting_for_the_morning(
    db: Database, clock: FakeClock, bot_api: FakeBotAPI, telegram: TelegramChannel
) -> None:
    clock.set(datetime(2026, 11, 24, 19, 0, tzinfo=UTC))  # 22:00 in Moscow
    advert = await queue_message(db, clock, await add_client(db, telegram_id=CHAT))
    await make_dispatcher(db, {"telegram": telegram}, clock, advertising_limit=0).drain()
    assert (await message(db, advert)).waiting == "quiet_hours"

    # The dealer sets quiet_hours = "" and restarts: the wait is re-evaluated at once.
    await make_dispatcher(db, {"telegram": telegram}, clock, night=None).drain()

    sent = await message(db, advert)
    assert sent.state == "sent"
    assert sent.waiting is None
    assert len(bot_api.sent) == 1


async def test_quiet_hours_moved_later_move_the_waiting_messages_with_them(
    db: Database, clock: FakeClock, bot_api: FakeBotAPI, telegram: TelegramChannel
) -> None:
    clock.set(datetime(2026, 11, 24, 19, 0, tzinfo=UTC))  # 22:00 in Moscow
    advert = await queue_message(db, clock, await add_client(db, telegram_id=CHAT))
    await make_dispatcher(db, {"telegram": telegram}, clock, advertising_limit=0).drain()

    later = (time(21, 0), time(10, 30))
    await make_dispatcher(db, {"telegram": telegram}, clock, night=later).drain()

    waiting = await message(db, advert)
    assert waiting.state == "queued"
    assert waiting.next_attempt_at == datetime(2026, 11, 25, 7, 30, tzinfo=UTC)  # 10:30 Moscow
    assert bot_api.sent == []


async def test_a_working_dispatcher_logs_what_it_sent_per_channel(
    db: Database,
    clock: FakeClock,
    bot_api: FakeBotAPI,
    telegram: TelegramChannel,
    sms: FileSink,
    caplog: pytest.LogCaptureFixture,
) -> None:
    bot_api.blocked.add(CHAT + 1)
    await queue_message(db, clock, await add_client(db, telegram_id=CHAT), kind=SERVICE)
    blocked = await add_client(db, telegram_id=CHAT + 1, phone="+79161234567")
    await queue_message(db, clock, blocked, kind=SERVICE, plan=("telegram", "sms"))
    dispatcher = make_dispatcher(db, {"telegram": telegram, "sms": sms}, clock)
    caplog.set_level(logging.INFO, logger="autoloyal.dispatch")

    await dispatcher.drain()
    dispatcher.report()  # what run() does once a minute
    dispatcher.report()  # and nothing more when nothing more happened

    lines = [r.getMessage() for r in caplog.records if r.name == "autoloyal.dispatch"]
    assert lines == ["dispatcher: sms: sent 1; telegram: sent 1, failed 1"]


async def test_quiet_hours_are_the_clients_own_when_their_zone_is_known(
    db: Database, clock: FakeClock, bot_api: FakeBotAPI, telegram: TelegramChannel
) -> None:
    clock.set(datetime(2026, 11, 24, 0, 30, tzinfo=UTC))  # 03:30 Moscow, 10:30 Vladivostok
    moscow = await queue_message(db, clock, await add_client(db, telegram_id=CHAT))
    far_east = await queue_message(
        db, clock, await add_client(db, telegram_id=CHAT + 1, timezone="Asia/Vladivostok")
    )

    await make_dispatcher(db, {"telegram": telegram}, clock).drain()

    assert (await message(db, far_east)).state == "sent"
    assert (await message(db, moscow)).state == "queued"


@pytest.mark.parametrize(
    ("consents", "kind", "reason"),
    [
        pytest.param({}, "advertising", "telegram: no consent to advertising", id="no-ads-consent"),
        pytest.param(
            {(ALL_CHANNELS, "advertising"): True, ("telegram", "advertising"): False},
            "advertising",
            "telegram: the client unsubscribed from advertising",
            id="channel-overrides-blanket",
        ),
        pytest.param(
            {(ALL_CHANNELS, SERVICE): False},
            SERVICE,
            "telegram: the client opted out of service messages",
            id="service-opt-out",
        ),
    ],
)
async def test_without_consent_a_message_is_skipped_with_the_reason(
    db: Database,
    clock: FakeClock,
    bot_api: FakeBotAPI,
    telegram: TelegramChannel,
    consents: dict[tuple[str, str], bool],
    kind: str,
    reason: str,
) -> None:
    client = await add_client(db, telegram_id=CHAT, ads=None, consents=consents)
    message_id = await queue_message(db, clock, client, kind=kind)

    await make_dispatcher(db, {"telegram": telegram}, clock).drain()

    skipped = await message(db, message_id)
    assert (skipped.state, skipped.reason) == ("skipped", reason)
    assert bot_api.sent == []


async def test_service_messages_need_no_consent_row(
    db: Database, clock: FakeClock, bot_api: FakeBotAPI, telegram: TelegramChannel
) -> None:
    client = await add_client(db, telegram_id=CHAT, ads=None)
    message_id = await queue_message(db, clock, client, kind=SERVICE)

    await make_dispatcher(db, {"telegram": telegram}, clock).drain()

    assert (await message(db, message_id)).state == "sent"


async def test_a_client_with_no_address_on_any_channel_is_skipped_naming_each(
    db: Database, clock: FakeClock, telegram: TelegramChannel, sms: FileSink
) -> None:
    client = await add_client(db)
    message_id = await queue_message(db, clock, client, plan=("telegram", "sms"))

    await make_dispatcher(db, {"telegram": telegram, "sms": sms}, clock).drain()

    skipped = await message(db, message_id)
    assert skipped.state == "skipped"
    assert skipped.reason == "telegram: not linked to Telegram; sms: no phone number"


async def test_the_frequency_cap_skips_advertising_beyond_the_limit_across_campaigns(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    sink = FileSink("telegram", tmp_path / "outbox")
    client = await add_client(db, telegram_id=CHAT)
    adverts = [
        await queue_message(db, clock, client, key=f"campaign:{n}:{client}") for n in range(3)
    ]
    service = await queue_message(db, clock, client, kind=SERVICE)
    dispatcher = make_dispatcher(
        db, {"telegram": sink}, clock, advertising_limit=2, advertising_window_days=7
    )

    await dispatcher.drain()

    done = [await message(db, m) for m in adverts]
    outcomes = sorted([m.state, m.reason or ""] for m in done)
    assert outcomes == [
        ["sent", ""],
        ["sent", ""],
        ["skipped", "frequency cap: 2 advertising message(s) in 7 days already"],
    ]
    assert (await message(db, service)).state == "sent"

    clock.advance(days=7, seconds=1)
    later = await queue_message(db, clock, client)
    await dispatcher.drain()
    assert (await message(db, later)).state == "sent"


async def test_a_crash_after_the_request_left_ends_unknown_and_is_never_resent(
    db: Database, clock: FakeClock, bot_api: FakeBotAPI, telegram: TelegramChannel
) -> None:
    bot_api.fail_next("timeout", delay=1.0)
    message_id = await queue_message(db, clock, await add_client(db, telegram_id=CHAT))
    dying = make_dispatcher(db, {"telegram": telegram}, clock, lease_seconds=60)
    crash = asyncio.create_task(dying.drain())
    while not bot_api.requests:  # noqa: ASYNC110 (the fake records a request as it arrives)
        await asyncio.sleep(0.01)
    crash.cancel()  # the process dies with the request out
    with pytest.raises(asyncio.CancelledError):
        await crash

    clock.advance(seconds=61)
    survivor = make_dispatcher(db, {"telegram": telegram}, clock)
    assert await survivor.reap() == (1, 0)
    await survivor.drain()

    lost = await message(db, message_id)
    assert lost.state == "unknown"
    assert "not resent" in (lost.reason or "")
    assert [a.outcome for a in await attempts(db, message_id)] == ["unknown"]
    assert len([r for r in bot_api.requests if r.method == "sendMessage"]) == 1


async def test_a_crash_before_any_request_queues_the_message_again(
    db: Database, clock: FakeClock, bot_api: FakeBotAPI, telegram: TelegramChannel
) -> None:
    message_id = await queue_message(db, clock, await add_client(db, telegram_id=CHAT))
    async with db.sessions() as session, session.begin():
        await lifecycle.claim(session, "died", clock(), timedelta(seconds=60), 10)

    dispatcher = make_dispatcher(db, {"telegram": telegram}, clock)
    assert await dispatcher.drain() == 0  # held by the dead one until its lease runs out
    clock.advance(seconds=61)
    assert await dispatcher.reap() == (0, 1)
    await dispatcher.drain()

    assert (await message(db, message_id)).state == "sent"
    assert len(bot_api.sent) == 1


async def test_the_rate_is_never_above_the_limit_in_any_second(
    db: Database, clock: FakeClock, bot_api: FakeBotAPI
) -> None:
    bot_api.enforce_rate(per_second=20, per_chat_per_second=1)
    limited = TelegramChannel(bot_api.token, api_server=bot_api.base_url, rate_per_second=20)
    for number in range(45):
        await queue_message(db, clock, await add_client(db, telegram_id=9000 + number))

    try:
        await make_dispatcher(db, {"telegram": limited}, clock).drain()
    finally:
        await limited.close()

    assert len(bot_api.sent) == 45, [
        (r.method, r.status, r.params.get("chat_id")) for r in bot_api.requests if r.status != 200
    ]
    assert [r for r in bot_api.requests if r.status == 429] == []
    assert bot_api.max_in_window(1.0) <= 20
    assert bot_api.sent[-1].at - bot_api.sent[0].at >= 2.0  # 45 at 20/s: not in one burst


async def test_one_chat_gets_at_most_one_message_a_second(
    db: Database, clock: FakeClock, bot_api: FakeBotAPI, telegram: TelegramChannel
) -> None:
    bot_api.enforce_rate(per_second=None, per_chat_per_second=1)
    client = await add_client(db, telegram_id=CHAT)
    for _ in range(3):
        await queue_message(db, clock, client, kind=SERVICE)

    await make_dispatcher(db, {"telegram": telegram}, clock).drain()

    assert len(bot_api.sent) == 3
    assert bot_api.max_in_window(1.0, chat_id=CHAT) == 1


async def test_stopping_finishes_requests_under_way_and_gives_back_the_rest(
    db: Database, clock: FakeClock, bot_api: FakeBotAPI
) -> None:
    slow = TelegramChannel(bot_api.token, api_server=bot_api.base_url, rate_per_second=2)
    ids = [
        await queue_message(db, clock, await add_client(db, telegram_id=7000 + n)) for n in range(8)
    ]
    dispatcher = make_dispatcher(db, {"telegram": slow}, clock)
    stop = asyncio.Event()
    running = asyncio.create_task(dispatcher.run(stop))
    await bot_api.wait_sent(2)
    stop.set()
    await asyncio.wait_for(running, timeout=60)
    await slow.close()

    states = [(await message(db, m)).state for m in ids]
    assert states.count("sent") == len(bot_api.sent)
    assert set(states) == {"sent", "queued"}
    for m in ids:
        assert all(a.outcome is not None for a in await attempts(db, m))


async def test_two_dispatchers_share_the_queue_and_never_send_one_message_twice(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    sink = FileSink("telegram", tmp_path / "outbox")
    ids = [
        await queue_message(db, clock, await add_client(db, telegram_id=8000 + n))
        for n in range(60)
    ]
    first = make_dispatcher(db, {"telegram": sink}, clock, max_in_flight=7)
    second = make_dispatcher(db, {"telegram": sink}, clock, max_in_flight=5)
    second.worker = "second"

    await asyncio.gather(first.drain(), second.drain())

    written = [line["message_id"] for line in sms_lines(sink)]
    assert sorted(written) == sorted(ids)
    assert {(await message(db, m)).state for m in ids} == {"sent"}


async def test_a_refused_bot_token_halts_telegram_the_message_waits_and_staff_hear_once(
    db: Database, clock: FakeClock, bot_api: FakeBotAPI
) -> None:
    client = await add_client(db, telegram_id=CHAT)
    first = await queue_message(db, clock, client)
    second = await queue_message(db, clock, client)
    wrong = TelegramChannel("999:WRONG-token", api_server=bot_api.base_url, request_timeout=60)
    heard: list[str] = []

    async def post(text: str) -> None:
        heard.append(text)

    dispatcher = make_dispatcher(
        db, {"telegram": wrong}, clock, halt_seconds=600.0, advertising_limit=0, max_in_flight=1
    )
    dispatcher.alerts = ChatAlerts(post)
    try:
        await dispatcher.drain()
        clock.advance(minutes=11)
        await dispatcher.drain()
    finally:
        await wrong.close()

    for message_id in (first, second):
        waiting = await message(db, message_id)
        assert waiting.state == "queued", "a halted channel loses no message"
        assert waiting.channel_attempts == 0, "and costs it no try"
        assert waiting.next_attempt_at > clock()
    assert [a.outcome for a in await attempts(db, first)] == ["halted", "halted"]
    assert await attempts(db, second) == [], "while it rests, nothing else is tried"
    assert len(heard) == 1
    assert "telegram stopped sending" in heard[0]
    assert "check [telegram] token" in heard[0]

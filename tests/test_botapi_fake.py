"""The fake Bot API answers the real aiogram Bot the way Telegram would, switches included."""

from __future__ import annotations

import asyncio
import gc
import warnings
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramConflictError,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.methods import SendMessage
from aiogram.types import (
    BotCommand,
    BotCommandScopeAllPrivateChats,
    BufferedInputFile,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    Update,
)
from aiogram.webhook.aiohttp_server import SimpleRequestHandler
from aiohttp import web

from tests.support import telegram_updates as tg
from tests.support.botapi import FakeBotAPI, SentMessage, UploadedFile

ALICE, BOB = 1001, 1002
ALICE_USER = tg.TelegramUser(ALICE, "Алиса", "Петрова", username="alice")
GROUP = -1001234567890


@pytest.fixture
async def api() -> AsyncIterator[FakeBotAPI]:
    async with FakeBotAPI() as fake:
        yield fake


@pytest.fixture
async def bot(api: FakeBotAPI) -> AsyncIterator[Bot]:
    bot = api.bot()
    yield bot
    await bot.session.close()


class ManualClock:
    """A monotonic clock for the fake that moves only when a test sets `now`."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def send_at(api: FakeBotAPI, bot: Bot, at: float, chat_id: int) -> str:
    """Send as if at monotonic `at`; say whether the fake accepted it or asked to retry."""
    clock = api.clock if isinstance(api.clock, ManualClock) else ManualClock()
    api.clock, clock.now = clock, at
    try:
        await bot.send_message(chat_id, f"at {at}")
    except TelegramRetryAfter as flood:
        return f"retry {flood.retry_after}"
    return "ok"


async def test_get_me_names_the_bot_by_its_token(bot: Bot) -> None:
    me = await bot.get_me()
    assert (me.id, me.is_bot, me.username) == (123456, True, "autoloyal_test_bot")


async def test_send_message_answers_a_message_and_records_it(api: FakeBotAPI, bot: Bot) -> None:
    keyboard = InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text="Записаться", callback_data="book:7")]]
    )
    first = await bot.send_message(
        ALICE, "<b>Здравствуйте</b>", parse_mode="HTML", reply_markup=keyboard
    )
    second = await bot.send_message(ALICE, "again")
    other = await bot.send_message(BOB, "hi")

    assert (first.message_id, second.message_id, other.message_id) == (1, 2, 1)
    assert (first.chat.id, first.chat.type) == (ALICE, "private")
    assert first.from_user is not None
    assert first.from_user.id == 123456
    assert first.reply_markup is not None
    assert first.reply_markup.model_dump() == keyboard.model_dump()
    assert api.sent[0] == SentMessage(
        chat_id=ALICE,
        text="<b>Здравствуйте</b>",
        parse_mode="HTML",
        reply_markup={"inline_keyboard": [[{"text": "Записаться", "callback_data": "book:7"}]]},
        message_id=1,
        at=api.sent[0].at,
        method="sendMessage",
    )
    assert [(r.method, r.status) for r in api.requests] == [("sendMessage", 200)] * 3
    assert api.requests[0].params["chat_id"] == str(ALICE)  # form fields arrive as strings


@pytest.mark.parametrize(
    ("switch", "error", "description"),
    [
        ("blocked", TelegramForbiddenError, "Forbidden: bot was blocked by the user"),
        ("missing", TelegramBadRequest, "Bad Request: chat not found"),
        ("deactivated", TelegramForbiddenError, "Forbidden: user is deactivated"),
    ],
)
async def test_chat_switches_refuse_only_their_chat(
    api: FakeBotAPI, bot: Bot, switch: str, error: type[Exception], description: str
) -> None:
    getattr(api, switch).add(ALICE)

    with pytest.raises(error, match=description):
        await bot.send_message(ALICE, "hello")
    await bot.send_message(BOB, "hello")

    assert [m.chat_id for m in api.sent] == [BOB]
    assert [r.status for r in api.requests] == [
        403 if error is TelegramForbiddenError else 400,
        200,
    ]


async def test_flood_answers_429_with_retry_after_then_recovers(api: FakeBotAPI, bot: Bot) -> None:
    api.fail_next("flood", times=2, retry_after=7)

    for _ in range(2):
        with pytest.raises(TelegramRetryAfter) as caught:
            await bot.send_message(ALICE, "hello")
        assert caught.value.retry_after == 7
        assert "Too Many Requests: retry after 7" in caught.value.message
    await bot.send_message(ALICE, "hello")

    assert [r.status for r in api.requests] == [429, 429, 200]
    assert len(api.sent) == 1


async def test_server_failure_answers_502(api: FakeBotAPI, bot: Bot) -> None:
    api.fail_next("server")

    with pytest.raises(TelegramServerError, match="Bad Gateway"):
        await bot.send_message(ALICE, "hello")
    await bot.send_message(ALICE, "hello")

    assert [r.status for r in api.requests] == [502, 200]


async def test_timeout_fires_on_the_client_but_telegram_still_delivers(
    api: FakeBotAPI, bot: Bot
) -> None:
    # The fake stalls past the client's timeout. The client gets 2 s, not less, to get the request
    # out at all: a full garbage collection on a busy machine can pause the loop for 0.3 s.
    api.fail_next("timeout", delay=4.0)

    with pytest.raises(TelegramNetworkError, match="timeout"):
        await bot.send_message(ALICE, "maybe twice", request_timeout=2)
    assert api.sent == []
    await api.wait_sent(1, timeout=60)

    assert api.sent[0].text == "maybe twice"
    assert api.requests[0].status == 200


async def test_fail_rules_match_method_and_chat_and_go_in_order(api: FakeBotAPI, bot: Bot) -> None:
    api.fail_next("server", chat_id=BOB)
    api.fail_next("flood", method="sendPhoto")
    api.fail_next("flood", method=None, retry_after=3)

    api.fail_next("server", method="getMe", times=2)

    with pytest.raises(TelegramRetryAfter) as caught:  # the first rule that matches is consumed
        await bot.send_message(ALICE, "to Alice")
    assert caught.value.retry_after == 3
    with pytest.raises(TelegramServerError):
        await bot.send_message(BOB, "to Bob")
    await bot.send_message(ALICE, "to Alice")  # the sendPhoto rule waits for a photo
    with pytest.raises(TelegramRetryAfter):
        await bot.send_photo(ALICE, "file-id")
    for _ in range(2):
        with pytest.raises(TelegramServerError):
            await bot.get_me()
    await bot.get_me()

    assert [r.status for r in api.requests] == [429, 502, 200, 429, 502, 502, 200]


async def test_html_is_checked_like_telegram(bot: Bot) -> None:
    accepted = [
        "<b>bold</b> <strong>s</strong> <i>i</i> <em>e</em> <u>u</u> <ins>i</ins>",
        "<s>s</s> <strike>s</strike> <del>d</del> <tg-spoiler>x</tg-spoiler>",
        '<span class="tg-spoiler">x</span> <a href="https://ex.ru/?a=1&amp;b=2">link</a>',
        '<pre><code class="language-python">x &lt; 1</code></pre> <code>a &gt; b</code>',
        "<blockquote>q</blockquote> <B>upper</B> <b><i>nested</i></b>",
        '<tg-emoji emoji-id="5368324170671202286">👍</tg-emoji> &quot;q&quot; &#8381; &#x20BD;',
    ]
    for text in accepted:
        await bot.send_message(ALICE, text, parse_mode="HTML")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("<div>x</div>", 'Unsupported start tag "div" at byte offset 0'),
        ("<br/>x", 'Unsupported start tag "br"'),
        ("<span>x</span>", 'Unsupported start tag "span"'),
        ("<b>bold", "Can't find end tag for <b>"),
        ("<b><i>x</b></i>", 'Unmatched end tag "</b>" at byte offset 7'),
        ("x</b>", 'Unexpected end tag "</b>"'),
        ("1 < 2", 'Unescaped "<" at byte offset 2'),
        ("2 > 1", 'Unescaped ">"'),
        ("Tom & Jerry", 'Unescaped "&"'),
        ("a&nbsp;b", "unsupported entity"),
        ("<code><b>x</b></code>", "Can't nest <b> in <code>"),
        ("Привет <", 'Unescaped "<" at byte offset 13'),  # offsets count UTF-8 bytes
    ],
)
async def test_bad_html_is_refused(api: FakeBotAPI, bot: Bot, text: str, reason: str) -> None:
    with pytest.raises(TelegramBadRequest, match="Bad Request: can't parse entities: ") as caught:
        await bot.send_message(ALICE, text, parse_mode="HTML")

    assert reason in caught.value.message
    assert api.sent == []


async def test_plain_text_may_hold_any_characters(api: FakeBotAPI, bot: Bot) -> None:
    await bot.send_message(ALICE, "1 < 2 & <div>")

    assert api.sent[0].text == "1 < 2 & <div>"


@pytest.mark.parametrize(
    ("text", "parse_mode", "description"),
    [
        ("", None, "message text is empty"),
        ("   ", None, "message text is empty"),
        ("<b> </b>", "HTML", "message text is empty"),
        ("я" * 4097, None, "message is too long"),
    ],
)
async def test_text_must_be_present_and_short(
    bot: Bot, text: str, parse_mode: str | None, description: str
) -> None:
    with pytest.raises(TelegramBadRequest, match=description):
        await bot.send_message(ALICE, text, parse_mode=parse_mode)


async def test_the_length_limit_counts_what_the_reader_sees(api: FakeBotAPI, bot: Bot) -> None:
    await bot.send_message(ALICE, "я" * 4096)
    await bot.send_message(ALICE, "<b>" + "&amp;" * 4096 + "</b>", parse_mode="HTML")

    assert len(api.sent) == 2


async def test_rate_limit_refuses_the_message_over_the_global_limit(
    api: FakeBotAPI, bot: Bot
) -> None:
    api.enforce_rate(per_second=3, per_chat_per_second=None, retry_after=2)

    # Five sends inside one second, then one a second after the first.
    times = (0.0, 0.1, 0.2, 0.3, 0.4, 1.0)
    outcomes = [await send_at(api, bot, at, chat_id) for chat_id, at in enumerate(times, 1)]

    assert outcomes == ["ok", "ok", "ok", "retry 2", "retry 2", "ok"]
    assert [r.status for r in api.requests] == [200, 200, 200, 429, 429, 200]
    assert [m.chat_id for m in api.sent] == [1, 2, 3, 6]
    assert api.max_in_window() == 3  # t=1.0 is outside the window that starts at t=0.0


async def test_rate_limit_per_chat(api: FakeBotAPI, bot: Bot) -> None:
    api.enforce_rate(per_second=None, per_chat_per_second=1)

    assert await send_at(api, bot, 0.0, ALICE) == "ok"
    assert await send_at(api, bot, 0.5, ALICE) == "retry 1"
    assert await send_at(api, bot, 0.5, BOB) == "ok"
    assert (
        await send_at(api, bot, 1.0, ALICE) == "ok"
    )  # the window is the last 1.0 s, open at the far end

    assert [(m.chat_id, m.at) for m in api.sent] == [(ALICE, 0.0), (BOB, 0.5), (ALICE, 1.0)]
    assert api.max_in_window(chat_id=ALICE) == 1


async def test_rate_limit_off_by_default_and_with_real_time(api: FakeBotAPI, bot: Bot) -> None:
    await asyncio.gather(*(bot.send_message(ALICE, str(n)) for n in range(5)))
    api.enforce_rate()  # Telegram's own: 30/s overall, 1/s per chat
    await bot.send_message(BOB, "first")
    with pytest.raises(TelegramRetryAfter):
        await bot.send_message(BOB, "second")

    assert api.max_in_window(chat_id=ALICE) == 5
    assert api.max_in_window(chat_id=BOB) == 1


async def test_max_in_window_slides_over_arrival_times(api: FakeBotAPI, bot: Bot) -> None:
    for at, chat_id in [(0.0, ALICE), (0.5, BOB), (0.99, ALICE), (1.0, ALICE), (1.5, BOB)]:
        await send_at(api, bot, at, chat_id)

    assert api.max_in_window() == 3
    assert api.max_in_window(1.5) == 4
    assert api.max_in_window(0.01) == 1
    assert api.max_in_window(chat_id=ALICE) == 2
    assert api.max_in_window(chat_id=BOB) == 1
    assert FakeBotAPI().max_in_window() == 0


async def test_get_updates_delivers_pushed_updates_and_confirms_by_offset(
    api: FakeBotAPI, bot: Bot
) -> None:
    chat = {"id": ALICE, "type": "private"}
    user = {"id": ALICE, "is_bot": False, "first_name": "Алиса"}
    api.push_update(
        {"message": {"message_id": 1, "date": 0, "chat": chat, "from": user, "text": "/start"}}
    )

    (update,) = await bot.get_updates(offset=0, timeout=1)
    assert update.update_id == 1
    assert update.message is not None
    assert update.message.text == "/start"
    assert await bot.get_updates(offset=update.update_id + 1, timeout=0) == []

    # A long poll returns as soon as something is pushed, not at its timeout.
    poll = asyncio.create_task(bot.get_updates(offset=2, timeout=1))
    await asyncio.sleep(0.05)
    api.push_update(
        {"update_id": 40, "message": {"message_id": 2, "date": 0, "chat": chat, "text": "hi"}}
    )
    started = asyncio.get_running_loop().time()
    (later,) = await poll
    assert later.update_id == 40
    assert asyncio.get_running_loop().time() - started < 0.5
    api.push_update({"message": {"message_id": 3, "date": 0, "chat": chat, "text": "next"}})
    assert [u.update_id for u in await bot.get_updates(offset=40)] == [40, 41]


async def test_service_methods_answer_true(api: FakeBotAPI, bot: Bot) -> None:
    assert await bot.delete_webhook(drop_pending_updates=True) is True
    assert (await bot.get_webhook_info()).url == ""
    assert await bot.set_my_commands([]) is True
    assert await bot.delete_my_commands() is True
    assert await bot.answer_callback_query("cb-1") is True


async def test_photos_and_documents_arrive_as_multipart(api: FakeBotAPI, bot: Bot) -> None:
    photo = await bot.send_photo(
        ALICE, BufferedInputFile(b"\x89PNG...", "car.png"), caption="Ваш автомобиль"
    )
    document = await bot.send_document(ALICE, BufferedInputFile(b"%PDF-1.4", "act.pdf"))

    assert photo.photo is not None
    assert photo.caption == "Ваш автомобиль"
    assert document.document is not None
    assert document.document.file_name == "act.pdf"
    assert document.document.file_size == 8
    assert [(m.method, m.text, m.message_id) for m in api.sent] == [
        ("sendPhoto", "Ваш автомобиль", 1),
        ("sendDocument", "", 2),
    ]
    with pytest.raises(TelegramBadRequest, match="there is no photo"):
        await bot.send_photo(ALICE, "")


async def test_edit_message_text_edits_without_sending(api: FakeBotAPI, bot: Bot) -> None:
    sent = await bot.send_message(ALICE, "Запись на 10:00")

    edited = await bot.edit_message_text(
        "Запись на 11:00", chat_id=ALICE, message_id=sent.message_id
    )
    assert not isinstance(edited, bool)
    assert edited.text == "Запись на 11:00"
    assert [m.text for m in api.sent] == ["Запись на 10:00"]
    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_text("Запись на 11:00", chat_id=ALICE, message_id=sent.message_id)
    with pytest.raises(TelegramBadRequest, match="message to edit not found"):
        await bot.edit_message_text("x", chat_id=ALICE, message_id=99)


async def test_unknown_token_is_unauthorized(api: FakeBotAPI) -> None:
    stranger = api.bot("654321:other-token")
    try:
        with pytest.raises(TelegramUnauthorizedError, match="Unauthorized"):
            await stranger.get_me()
    finally:
        await stranger.session.close()
    assert api.requests[0].status == 401


async def test_raw_wire_formats(api: FakeBotAPI) -> None:
    base = f"{api.base_url}/bot{api.token}"
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{base}/sendMessage", json={"chat_id": ALICE, "text": "json"}
        ) as resp:
            assert resp.status == 200
            assert (await resp.json())["result"]["text"] == "json"
        async with http.post(
            f"{base}/sendmessage", data={"chat_id": str(BOB), "text": "form"}
        ) as resp:
            assert resp.status == 200
        async with http.get(f"{base}/sendMessage", params={"chat_id": "7", "text": "get"}) as resp:
            assert resp.status == 200
        async with http.post(f"{base}/sendTelepathy", data={"chat_id": "7"}) as resp:
            assert resp.status == 404
            assert await resp.json() == {"ok": False, "error_code": 404, "description": "Not Found"}
        async with http.get(f"{api.base_url}/nowhere") as resp:
            assert resp.status == 404
        api.fail_next("server")
        async with http.post(f"{base}/sendMessage", json={"chat_id": 1, "text": "x"}) as resp:
            assert resp.status == 502
            assert await resp.json() == {
                "ok": False,
                "error_code": 502,
                "description": "Bad Gateway",
            }
        api.fail_next("flood", retry_after=5)
        async with http.post(f"{base}/sendMessage", json={"chat_id": 1, "text": "x"}) as resp:
            assert resp.status == 429
            assert (await resp.json())["parameters"] == {"retry_after": 5}

    assert [(m.chat_id, m.text) for m in api.sent] == [(ALICE, "json"), (BOB, "form"), (7, "get")]
    assert api.requests[1].method == "sendMessage"  # names match case-insensitively


async def test_wait_sent_says_what_arrived(api: FakeBotAPI, bot: Bot) -> None:
    api.blocked.add(BOB)
    await bot.send_message(ALICE, "one")
    with pytest.raises(TelegramForbiddenError):
        await bot.send_message(BOB, "two")

    await api.wait_sent(1, timeout=60)  # already there: returns at once
    with pytest.raises(AssertionError, match=r"1 of 2 messages .*'one'.*\('sendMessage', 403\)"):
        await api.wait_sent(2, timeout=0.05)


async def test_fail_next_refuses_unknown_kinds(api: FakeBotAPI) -> None:
    with pytest.raises(ValueError, match="kind must be one of"):
        api.fail_next("gremlins")


async def test_stop_does_not_wait_for_long_polls_or_stalls() -> None:
    api = FakeBotAPI()
    await api.start()
    bot = api.bot()
    api.fail_next("timeout", delay=30)
    poll = asyncio.create_task(bot.get_updates(timeout=30))
    stalled = asyncio.create_task(bot.send_message(ALICE, "stalled"))
    await asyncio.sleep(0.05)
    started = asyncio.get_running_loop().time()

    await api.stop()

    assert await poll == []
    await stalled
    assert asyncio.get_running_loop().time() - started < 1
    await bot.session.close()


def _unclosed(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if "Unclosed" in str(w.message)]


async def test_a_bot_closes_cleanly(api: FakeBotAPI) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bot = Bot(api.token, session=AiohttpSession(api=TelegramAPIServer.from_base(api.base_url)))
        await bot.send_message(ALICE, "hello")
        await bot.session.close()
        del bot
        gc.collect()

    assert _unclosed(caught) == []
    assert len(api.sent) == 1


async def test_the_unclosed_check_would_catch_a_leak(api: FakeBotAPI) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        leaked = AiohttpSession(api=TelegramAPIServer.from_base(api.base_url))
        await leaked.create_session()
        del leaked
        gc.collect()

    assert any("Unclosed client session" in message for message in _unclosed(caught))


# --- Webhook mode -----------------------------------------------------------------------------


class Receiver:
    """A webhook on 127.0.0.1: records each POST, answers the planned statuses, then `status`."""

    def __init__(self) -> None:
        self.url = ""
        self.got: list[tuple[str | None, dict[str, Any]]] = []
        self.answers: list[int] = []
        self.status = 200
        self.reply: dict[str, Any] = {}

    async def handle(self, request: web.Request) -> web.Response:
        secret = request.headers.get("X-Telegram-Bot-Api-Secret-Token")
        self.got.append((secret, await request.json()))
        status = self.answers.pop(0) if self.answers else self.status
        return web.json_response(self.reply if status == 200 else {}, status=status)


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    hook = Receiver()
    app = web.Application()
    app.router.add_post("/hook", hook.handle)
    runner, base = await serve(app)
    hook.url = f"{base}/hook"
    yield hook
    await runner.cleanup()


async def wait_until(condition: Callable[[], bool], timeout: float = 60.0) -> None:  # noqa: ASYNC109
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_a_webhook_gets_updates_in_order_with_the_secret_and_retries(
    api: FakeBotAPI, bot: Bot, receiver: Receiver
) -> None:
    receiver.answers = [500]  # the first update is refused once, then taken

    assert await bot.set_webhook(receiver.url, secret_token="s3cret_-X") is True
    ids = [api.push_update(tg.text(ALICE_USER, f"сообщение {n}")) for n in range(3)]
    await api.wait_delivered(3)

    first, second, third = ids
    assert api.webhook_deliveries == [(first, 500), (first, 200), (second, 200), (third, 200)]
    assert [update["update_id"] for _, update in receiver.got] == [first, first, second, third]
    assert {secret for secret, _ in receiver.got} == {"s3cret_-X"}
    assert receiver.got[-1][1]["message"]["text"] == "сообщение 2"
    info = await bot.get_webhook_info()
    assert (info.url, info.pending_update_count) == (receiver.url, 0)
    assert info.last_error_message == "Wrong response from the webhook: 500 Internal Server Error"


async def test_a_webhook_without_a_secret_gets_no_secret_header(
    api: FakeBotAPI, bot: Bot, receiver: Receiver
) -> None:
    await bot.set_webhook(receiver.url)
    api.push_update(tg.text(ALICE_USER, "привет"))
    await api.wait_delivered(1)

    assert receiver.got[0][0] is None


async def test_an_unreachable_webhook_keeps_the_update_until_it_answers(
    api: FakeBotAPI, bot: Bot, receiver: Receiver
) -> None:
    runner, dead = await serve(web.Application())
    await runner.cleanup()  # nothing listens there any more
    await bot.set_webhook(f"{dead}/hook")
    first = api.push_update(tg.text(ALICE_USER, "первое"))
    await wait_until(lambda: len(api.webhook_deliveries) >= 2)
    assert (await bot.get_webhook_info()).pending_update_count == 1
    second = api.push_update(tg.text(ALICE_USER, "второе"))

    await bot.set_webhook(receiver.url)
    await api.wait_delivered(2)

    assert {status for _, status in api.webhook_deliveries[:2]} == {0}
    assert [update["update_id"] for _, update in receiver.got] == [first, second]


async def test_get_updates_is_refused_while_a_webhook_is_set(
    api: FakeBotAPI, bot: Bot, receiver: Receiver
) -> None:
    receiver.status = 503  # the webhook keeps failing: the update stays pending
    await bot.set_webhook(receiver.url)
    pending = api.push_update(tg.text(ALICE_USER, "ждёт"))

    with pytest.raises(TelegramConflictError, match="can't use getUpdates method while webhook"):
        await bot.get_updates()
    assert api.requests[-1].status == 409

    assert await bot.delete_webhook() is True  # back to polling, the update is still there
    assert (await bot.get_webhook_info()).url == ""
    assert [u.update_id for u in await bot.get_updates(timeout=0)] == [pending]


async def test_drop_pending_updates_drops_them(
    api: FakeBotAPI, bot: Bot, receiver: Receiver
) -> None:
    api.push_update(tg.text(ALICE_USER, "старое"))
    await bot.set_webhook(receiver.url, drop_pending_updates=True)
    assert (await bot.get_webhook_info()).pending_update_count == 0

    receiver.status = 503
    api.push_update(tg.text(ALICE_USER, "тоже старое"))
    await wait_until(lambda: len(api.webhook_deliveries) >= 2)
    assert await bot.delete_webhook(drop_pending_updates=True) is True

    assert await bot.get_updates(timeout=0) == []


async def test_bad_webhook_parameters_are_refused(api: FakeBotAPI, bot: Bot) -> None:
    with pytest.raises(TelegramBadRequest, match="secret token contains unallowed characters"):
        await bot.set_webhook("http://127.0.0.1:1/hook", secret_token="has:colon")
    with pytest.raises(TelegramBadRequest, match="An HTTPS URL must be provided"):
        await bot.set_webhook("ftp://127.0.0.1/hook")

    assert (await bot.get_webhook_info()).url == ""


async def test_a_method_in_the_webhook_answer_is_carried_out(api: FakeBotAPI, bot: Bot) -> None:
    # aiogram answers a webhook with the method a handler returns (multipart), like Telegram wants.
    dispatcher = Dispatcher()

    @dispatcher.message()
    async def echo(message: Message) -> SendMessage:
        return message.answer(f"Вы написали: {message.text}")

    app = web.Application()
    handler = SimpleRequestHandler(dispatcher, bot, handle_in_background=False, secret_token="k1")
    handler.register(app, path="/tg")
    runner, base = await serve(app)
    try:
        await bot.set_webhook(f"{base}/tg", secret_token="k1")
        api.push_update(tg.text(ALICE_USER, "привет"))
        await api.wait_delivered(1)
        await api.wait_sent(1)
    finally:
        await runner.cleanup()

    assert [(m.chat_id, m.text) for m in api.sent] == [(ALICE, "Вы написали: привет")]


async def test_a_json_method_answer_is_carried_out_too(
    api: FakeBotAPI, bot: Bot, receiver: Receiver
) -> None:
    receiver.reply = {"method": "sendMessage", "chat_id": ALICE, "text": "ответ"}
    await bot.set_webhook(receiver.url)
    api.push_update(tg.text(ALICE_USER, "вопрос"))
    await api.wait_sent(1)

    assert api.sent[0].text == "ответ"


async def test_allowed_updates_filter_what_telegram_makes(api: FakeBotAPI, bot: Bot) -> None:
    # By default Telegram leaves chat_member updates out.
    assert api.push_update({"chat_member": {}}) is None
    await bot.get_updates(timeout=0, allowed_updates=["message"])

    assert api.push_update(tg.callback(ALICE_USER, "x", message_id=1)) is None
    kept = api.push_update(tg.text(ALICE_USER, "текст"))

    assert [u.update_id for u in await bot.get_updates(timeout=0)] == [kept]
    assert [next(iter(u)) for u in api.not_allowed] == ["chat_member", "callback_query"]
    assert (await bot.get_webhook_info()).allowed_updates == ["message"]


# --- More methods -----------------------------------------------------------------------------


async def test_my_commands_per_language_and_scope(api: FakeBotAPI, bot: Bot) -> None:
    ru = [
        BotCommand(command="start", description="Начать"),
        BotCommand(command="bonus", description="Баллы"),
    ]
    en = [BotCommand(command="start", description="Start")]
    assert await bot.set_my_commands(ru, language_code="ru") is True
    assert await bot.set_my_commands(en) is True

    assert [c.model_dump() for c in await bot.get_my_commands(language_code="ru")] == [
        c.model_dump() for c in ru
    ]
    assert [c.model_dump() for c in await bot.get_my_commands()] == [c.model_dump() for c in en]
    assert await bot.get_my_commands(language_code="de") == []
    assert (
        await bot.get_my_commands(scope=BotCommandScopeAllPrivateChats(), language_code="ru") == []
    )
    assert api.commands == [
        ([c.model_dump(exclude_none=True) for c in ru], "ru", None),
        ([c.model_dump(exclude_none=True) for c in en], None, None),
    ]

    await bot.delete_my_commands(language_code="ru")
    assert await bot.get_my_commands(language_code="ru") == []
    with pytest.raises(TelegramBadRequest, match="BOT_COMMAND_INVALID"):
        await bot.set_my_commands([BotCommand(command="Start", description="x")])
    with pytest.raises(TelegramBadRequest, match="description must be non-empty"):
        await bot.set_my_commands([BotCommand(command="start", description="")])


async def test_leave_chat_is_recorded(api: FakeBotAPI, bot: Bot) -> None:
    assert await bot.leave_chat(GROUP) is True

    assert api.left_chats == [GROUP]


async def test_edit_message_reply_markup(api: FakeBotAPI, bot: Bot) -> None:
    def keyboard(data: str) -> InlineKeyboardMarkup:
        button = InlineKeyboardButton(text="Да", callback_data=data)
        return InlineKeyboardMarkup(inline_keyboard=[[button]])

    sent = await bot.send_message(ALICE, "Подтвердите запись", reply_markup=keyboard("yes:1"))

    edited = await bot.edit_message_reply_markup(
        chat_id=ALICE, message_id=sent.message_id, reply_markup=keyboard("yes:2")
    )
    assert isinstance(edited, Message)
    assert edited.text == "Подтвердите запись"
    assert edited.reply_markup is not None
    assert edited.reply_markup.model_dump() == keyboard("yes:2").model_dump()
    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_reply_markup(
            chat_id=ALICE, message_id=sent.message_id, reply_markup=keyboard("yes:2")
        )
    await bot.edit_message_reply_markup(chat_id=ALICE, message_id=sent.message_id)
    shown = api.chat_message(ALICE, sent.message_id)
    assert shown is not None
    assert "reply_markup" not in shown
    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_reply_markup(chat_id=ALICE, message_id=sent.message_id)
    with pytest.raises(TelegramBadRequest, match="message to edit not found"):
        await bot.edit_message_reply_markup(chat_id=ALICE, message_id=99)
    assert len(api.sent) == 1


async def test_photos_go_again_by_the_file_id_the_fake_issued(api: FakeBotAPI, bot: Bot) -> None:
    first = await bot.send_photo(ALICE, BufferedInputFile(b"\x89PNG...", "car.png"))
    assert first.photo is not None
    file_id = first.photo[-1].file_id

    again = await bot.send_photo(BOB, file_id, caption="Снова")
    assert again.photo is not None
    assert again.photo[-1].file_id == file_id
    assert isinstance(api.sent[0].file, UploadedFile)
    assert api.sent[0].file.filename == "car.png"
    assert api.sent[1].file == file_id

    with pytest.raises(TelegramBadRequest, match="wrong file identifier/HTTP URL specified"):
        await bot.send_photo(ALICE, "AgACAgIAAxkBAAIB-never-issued")
    document = await bot.send_document(ALICE, BufferedInputFile(b"%PDF-1.4", "act.pdf"))
    assert document.document is not None
    with pytest.raises(TelegramBadRequest, match="type of file mismatch"):
        await bot.send_photo(ALICE, document.document.file_id)
    assert len(api.sent) == 3


async def test_small_service_methods(api: FakeBotAPI, bot: Bot) -> None:
    assert await bot.send_chat_action(ALICE, "typing") is True
    with pytest.raises(TelegramBadRequest, match="wrong parameter action"):
        await bot.send_chat_action(ALICE, "dancing")
    assert await bot.answer_callback_query("cb-7", text="Готово", show_alert=True) is True
    assert await bot.set_chat_menu_button(chat_id=ALICE) is True

    assert api.callback_answers == [
        {"callback_query_id": "cb-7", "text": "Готово", "show_alert": "true"}
    ]


async def test_delete_message(api: FakeBotAPI, bot: Bot) -> None:
    sent = await bot.send_message(ALICE, "Временное")

    assert await bot.delete_message(ALICE, sent.message_id) is True
    assert api.chat_message(ALICE, sent.message_id) is None
    with pytest.raises(TelegramBadRequest, match="message to delete not found"):
        await bot.delete_message(ALICE, sent.message_id)
    assert api.deleted_messages == [(ALICE, sent.message_id)]


async def test_users_messages_share_the_chat_ids_and_may_be_deleted(
    api: FakeBotAPI, bot: Bot
) -> None:
    update = tg.contact(ALICE_USER, "+79161234567")
    api.push_update(update)
    users_id = update["message"]["message_id"]

    reply = await bot.send_message(ALICE, "Спасибо")
    assert reply.message_id == users_id + 1
    with pytest.raises(TelegramBadRequest, match="message can't be edited"):
        await bot.edit_message_text("x", chat_id=ALICE, message_id=users_id)
    assert await bot.delete_message(ALICE, users_id) is True


# --- Update builders --------------------------------------------------------------------------


BUILDERS: dict[str, Callable[[], dict[str, Any]]] = {
    "text": lambda: tg.text(ALICE_USER, "Привет"),
    "group text": lambda: tg.text(ALICE_USER, "Всем привет", chat_id=GROUP),
    "command": lambda: tg.command(ALICE_USER, "start", "ref_ab12"),
    "contact": lambda: tg.contact(ALICE_USER, "+79161234567"),
    "foreign contact": lambda: tg.contact(
        ALICE_USER, "+79160000000", user_id=None, first_name="Мама"
    ),
    "sticker": lambda: tg.sticker(ALICE_USER),
    "photo": lambda: tg.photo(ALICE_USER),
    "callback": lambda: tg.callback(ALICE_USER, "book:7", message_id=3, message_text="Запись"),
    "blocked": lambda: tg.my_chat_member(ALICE_USER),
    "unblocked": lambda: tg.my_chat_member(ALICE_USER, old="kicked", new="member"),
    "added to group": lambda: tg.bot_added_to_group(ALICE_USER, GROUP),
    "made admin": lambda: tg.my_chat_member(ALICE_USER, old="member", new="administrator"),
    "restricted": lambda: tg.my_chat_member(ALICE_USER, old="member", new="restricted"),
}


@pytest.mark.parametrize("name", BUILDERS)
def test_builders_make_updates_aiogram_accepts(name: str) -> None:
    raw = BUILDERS[name]()

    assert "update_id" not in raw
    update = Update.model_validate(raw | {"update_id": 1})
    assert update.event_type == next(iter(raw))


def test_builders_say_what_telegram_says() -> None:
    command = Update.model_validate(tg.command(ALICE_USER, "start", "ref_ab12") | {"update_id": 1})
    assert command.message is not None
    assert command.message.text == "/start ref_ab12"
    assert command.message.entities is not None
    assert command.message.entities[0].extract_from(command.message.text) == "/start"
    assert command.message.chat.type == "private"

    own = tg.contact(ALICE_USER, "+79161234567")["message"]["contact"]
    assert (own["user_id"], own["first_name"]) == (ALICE, "Алиса")
    assert "user_id" not in tg.contact(ALICE_USER, "+7916", user_id=None)["message"]["contact"]
    group = tg.text(ALICE_USER, "x", chat_id=GROUP)["message"]["chat"]
    assert (group["type"], group["title"]) == ("supergroup", "Группа")
    one, two = tg.text(ALICE_USER, "1"), tg.text(ALICE_USER, "2")
    assert two["message"]["message_id"] > one["message"]["message_id"]
    query = tg.callback(ALICE_USER, "x", message_id=5)["callback_query"]
    assert query["message"]["from"] == tg.BOT_USER == FakeBotAPI().bot_user
    assert query["id"] != tg.callback(ALICE_USER, "x", message_id=5)["callback_query"]["id"]
    blocked = tg.my_chat_member(ALICE_USER)["my_chat_member"]
    assert (blocked["old_chat_member"]["status"], blocked["new_chat_member"]["status"]) == (
        "member",
        "kicked",
    )
    added = tg.bot_added_to_group(ALICE_USER, GROUP, "Автосервис")["my_chat_member"]
    assert (added["chat"]["title"], added["from"]["id"]) == ("Автосервис", ALICE)
    assert added["new_chat_member"]["status"] == "member"
    with pytest.raises(ValueError, match="private chat"):
        tg.text(ALICE_USER, "x", chat_id=BOB)

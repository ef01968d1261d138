"""The fake Bot API answers the real aiogram Bot the way Telegram would, switches included."""

from __future__ import annotations

import asyncio
import gc
import warnings
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.types import BufferedInputFile, InlineKeyboardButton, InlineKeyboardMarkup

from tests.support.botapi import FakeBotAPI, SentMessage

ALICE, BOB = 1001, 1002


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
    # The fake stalls on the same event loop, so the client's 0.2 s run out first for sure.
    api.fail_next("timeout", delay=1.0)

    with pytest.raises(TelegramNetworkError, match="timeout"):
        await bot.send_message(ALICE, "maybe twice", request_timeout=0.2)  # type: ignore[arg-type]
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

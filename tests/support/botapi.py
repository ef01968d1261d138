"""A local fake of the Telegram Bot API server that the real aiogram Bot can talk to."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiohttp import BodyPartReader, ClientError, ClientSession, ClientTimeout, MultipartReader, web

# Form bodies carry these JSON-encoded (aiogram dumps every dict/list); decode them for asserts.
_JSON_FIELDS = frozenset(
    {"reply_markup", "entities", "caption_entities", "link_preview_options", "reply_parameters"}
    | {"commands", "scope", "allowed_updates"}
)
_TEXT_LIMIT, _CAPTION_LIMIT = 4096, 1024
_LONG_POLL_CAP = 2.0  # seconds; a test never needs Telegram's 50 s polls
_FAIL_KINDS = frozenset({"flood", "server", "timeout"})
_PARSE_MODES = frozenset({"html", "markdown", "markdownv2"})
_WEBHOOK_RETRY = 0.2  # seconds between delivery attempts of an update the webhook refused
_WEBHOOK_TIMEOUT = 60.0  # seconds a webhook may take to answer one update
_SECRET_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}")
_BOT_COMMAND = re.compile(r"[a-z0-9_]{1,32}")
# Without allowed_updates (or with []) Telegram sends every update type but these.
_OPT_IN_UPDATES = frozenset({"chat_member", "message_reaction", "message_reaction_count"})
_CHAT_ACTIONS = frozenset(
    {"typing", "upload_photo", "record_video", "upload_video", "record_voice", "upload_voice"}
    | {"upload_document", "choose_sticker", "find_location", "record_video_note"}
    | {"upload_video_note"}
)
_NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are "
    "exactly the same as a current content and reply markup of the message"
)

# Telegram's HTML subset; https://core.telegram.org/bots/api#html-style
_HTML_TAGS = frozenset(
    {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "a", "code", "pre"}
    | {"tg-spoiler", "span", "blockquote", "tg-emoji"}
)
_ATTRS = r"""(?:\s+[^\s=<>"'/]+(?:\s*=\s*(?:"[^"]*"|'[^']*'|[^\s<>"']+))?)*"""
_START_TAG = re.compile(rf"<([a-zA-Z][a-zA-Z0-9-]*)({_ATTRS})\s*/?>")
_END_TAG = re.compile(r"</([a-zA-Z][a-zA-Z0-9-]*)\s*>")
_ATTR = re.compile(r"""([^\s=<>"'/]+)(?:\s*=\s*("[^"]*"|'[^']*'|[^\s<>"']+))?""")
_ENTITY = re.compile(r"&(?:#([0-9]{1,7})|#[xX]([0-9a-fA-F]{1,6})|([a-zA-Z][a-zA-Z0-9]*));")
_NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}

# A method's answer: the "result", or an awaitable of it; errors are raised as _ApiError.
Handler = Callable[[dict[str, Any]], Any]


def _true(params: dict[str, Any]) -> bool:
    return True


def _flag(value: Any) -> bool:
    """A Boolean parameter: JSON true, or "true"/"1" from a form (aiogram sends "true")."""
    return value is True or str(value).lower() in ("true", "1")


def _update_type(update: dict[str, Any]) -> str:
    return next((key for key in update if key != "update_id"), "")


@dataclass(frozen=True)
class ApiRequest:
    """One call the fake received; status is 0 while it is still being answered."""

    method: str
    params: dict[str, Any]
    at: float
    status: int


@dataclass(frozen=True)
class SentMessage:
    """One message the fake accepted, as its recipient would get it."""

    chat_id: int
    text: str
    parse_mode: str | None
    reply_markup: dict[str, Any] | None
    message_id: int
    at: float
    method: str
    file: UploadedFile | str | None = None  # the uploaded file, or the file_id sent again


@dataclass(frozen=True)
class UploadedFile:
    """A file part of a multipart request, kept in ApiRequest.params."""

    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class _Webhook:
    url: str
    secret: str | None
    max_connections: int


@dataclass(frozen=True)
class _Kept:
    """A message the chat holds now: its text (or caption), inline keyboard and content."""

    text: str
    markup: dict[str, Any] | None
    body: dict[str, Any]
    by_bot: bool


@dataclass
class _FailRule:
    kind: str
    times: int
    method: str | None
    chat_id: int | None
    retry_after: int
    delay: float


class _ApiError(Exception):
    """An error answer; the HTTP status equals error_code, as on the real server."""

    def __init__(self, code: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.code, self.description, self.retry_after = code, description, retry_after

    def payload(self) -> dict[str, Any]:
        body: dict[str, Any] = dict(ok=False, error_code=self.code, description=self.description)
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return body


def _flood(retry_after: int) -> _ApiError:
    return _ApiError(429, f"Too Many Requests: retry after {retry_after}", retry_after)


def _bad(reason: str) -> _ApiError:
    return _ApiError(400, f"Bad Request: {reason}")


def _unparsable(reason: str, text: str, at: int) -> _ApiError:
    offset = len(text[:at].encode())  # Telegram counts offsets in UTF-8 bytes
    return _bad(f"can't parse entities: {reason} at byte offset {offset}")


def html_visible_text(text: str) -> str:
    """Check `text` against Telegram's HTML subset and return what the reader sees."""
    stack: list[str] = []
    out: list[str] = []
    i = 0
    while i < len(text):
        if end := _END_TAG.match(text, i):
            name = end.group(1).lower()
            if not stack:
                raise _unparsable(f'Unexpected end tag "</{name}>"', text, i)
            if name != stack.pop():
                raise _unparsable(f'Unmatched end tag "</{name}>"', text, i)
            i = end.end()
        elif text[i] == "<":
            start = _START_TAG.match(text, i)
            if start is None:
                raise _unparsable('Unescaped "<"', text, i)
            name = start.group(1).lower()
            attrs = {k.lower(): v.strip("\"'") for k, v in _ATTR.findall(start.group(2))}
            if name not in _HTML_TAGS or (name == "span" and attrs.get("class") != "tg-spoiler"):
                raise _unparsable(f'Unsupported start tag "{name}"', text, i)
            # pre/code hold plain text only (pre may wrap one code); blockquotes don't nest.
            inner = stack[-1] if stack else ""
            if (
                inner == "code"
                or (inner == "pre" and name != "code")
                or (name == "blockquote" and "blockquote" in stack)
            ):
                raise _unparsable(f"Can't nest <{name}> in <{inner}>", text, i)
            stack.append(name)
            i = start.end()
        elif text[i] == "&":
            entity = _ENTITY.match(text, i)
            dec, hexa, named = entity.groups() if entity else (None, None, None)
            code = int(dec) if dec else int(hexa, 16) if hexa else None
            char = chr(code) if code and code <= 0x10FFFF else _NAMED.get((named or "").lower())
            if entity is None or char is None:
                raise _unparsable('Unescaped "&" or unsupported entity', text, i)
            out.append(char)
            i = entity.end()
        elif text[i] == ">":
            raise _unparsable('Unescaped ">"', text, i)
        else:
            out.append(text[i])
            i += 1
    if stack:
        raise _unparsable(f"Can't find end tag for <{stack[-1]}>", text, len(text))
    return "".join(out)


def _check_text(text: str, parse_mode: str | None, *, caption: bool = False) -> None:
    visible = html_visible_text(text) if (parse_mode or "").lower() == "html" else text
    if not caption and not visible.strip():
        raise _bad("message text is empty")
    if len(visible) > (_CAPTION_LIMIT if caption else _TEXT_LIMIT):
        raise _bad("message caption is too long" if caption else "message is too long")


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _parse_mode(params: dict[str, Any]) -> str | None:
    mode = params.get("parse_mode") or None
    if mode is not None and str(mode).lower() not in _PARSE_MODES:
        raise _bad("unsupported parse_mode")
    return None if mode is None else str(mode)


def _markup(params: dict[str, Any]) -> dict[str, Any] | None:
    markup = params.get("reply_markup") or None
    if markup is not None and not isinstance(markup, dict):
        raise _bad("can't parse reply keyboard markup JSON object")
    return markup


def _inline(markup: dict[str, Any] | None) -> dict[str, Any] | None:
    """What a message keeps of a reply_markup: only an inline keyboard stays on it."""
    return markup if markup is not None and "inline_keyboard" in markup else None


def _decode_json_fields(params: dict[str, Any]) -> dict[str, Any]:
    for key in _JSON_FIELDS & params.keys():
        if isinstance(params[key], str):
            with contextlib.suppress(ValueError):
                params[key] = json.loads(params[key])
    return params


async def _read_params(request: web.Request) -> dict[str, Any]:
    params: dict[str, Any] = dict(request.query)
    if request.method != "GET" and request.body_exists:
        if request.content_type == "application/json":
            try:
                body = await request.json()
            except ValueError:
                body = None
            if not isinstance(body, dict):
                raise _bad("can't parse JSON body")
            params.update(body)
        else:  # multipart/form-data and x-www-form-urlencoded alike
            for key, value in (await request.post()).items():
                if isinstance(value, web.FileField):
                    params[key] = UploadedFile(
                        value.filename, value.content_type, value.file.read()
                    )
                else:
                    params[key] = value if isinstance(value, str) else bytes(value).decode()
    return _decode_json_fields(params)


async def _read_webhook_reply(response: Any) -> dict[str, Any] | None:
    """The method a webhook answered with (JSON or multipart, as aiogram sends it), if any."""
    params: dict[str, Any] = {}
    if response.content_type == "application/json":
        with contextlib.suppress(ValueError):
            body = await response.json()
            if isinstance(body, dict):
                params = dict(body)
    elif response.content_type == "multipart/form-data":
        reader = MultipartReader(response.headers, response.content)
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader) or not part.name:
                continue
            data = bytes(await part.read())
            if part.filename:
                content_type = part.headers.get("Content-Type", "application/octet-stream")
                params[part.name] = UploadedFile(part.filename, content_type, data)
            else:
                params[part.name] = data.decode()
    if not isinstance(params.get("method"), str):
        return None
    return _decode_json_fields(params)


class LocalSession(AiohttpSession):
    """aiogram's session minus the 250 ms TLS drain on close: plain HTTP to 127.0.0.1 has none."""

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
            await asyncio.sleep(0)  # let the transports' close callbacks run


class FakeBotAPI:
    """A Telegram Bot API server on 127.0.0.1 with switches for the failures a gateway must survive."""

    def __init__(
        self, token: str = "123456:TEST-token", *, username: str = "autoloyal_test_bot"
    ) -> None:
        self.token, self.username = token, username
        self.base_url = ""
        self.requests: list[ApiRequest] = []
        self.sent: list[SentMessage] = []
        self.blocked: set[int] = set()
        self.missing: set[int] = set()
        self.deactivated: set[int] = set()
        # Tests may swap the clock to move time without sleeping.
        self.clock: Callable[[], float] = time.monotonic
        self._rules: list[_FailRule] = []
        self._rate: tuple[int | None, int | None, int] | None = None
        self._updates: list[dict[str, Any]] = []
        self._next_update_id = 1
        self._last_ids: dict[int, int] = {}
        self._messages: dict[tuple[int, int], _Kept] = {}
        self._file_ids = itertools.count(1)
        self._files: dict[str, tuple[str, dict[str, Any]]] = {}  # file_id -> (kind, metadata)
        # Webhook mode: deliveries as (update_id, HTTP status or 0 when unreachable).
        self.webhook_deliveries: list[tuple[int, int]] = []
        self._webhook: _Webhook | None = None
        self._webhook_error: tuple[int, str] | None = None
        self._allowed_updates: list[str] | None = None  # None: Telegram's default set
        self.not_allowed: list[dict[str, Any]] = []  # pushed updates allowed_updates filtered out
        self.left_chats: list[int] = []
        self.callback_answers: list[dict[str, Any]] = []
        self.commands: list[tuple[list[dict[str, Any]], str | None, dict[str, Any] | None]] = []
        self._command_sets: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.deleted_messages: list[tuple[int, int]] = []
        self._changed = asyncio.Event()
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._http: ClientSession | None = None
        self._deliverer: asyncio.Task[None] | None = None
        handlers: dict[str, Handler] = {
            "getMe": lambda _: self.bot_user,
            "getUpdates": self._get_updates,
            "setWebhook": self._set_webhook,
            "deleteWebhook": self._delete_webhook,
            "getWebhookInfo": self._webhook_info,
            "setMyCommands": self._set_my_commands,
            "getMyCommands": self._get_my_commands,
            "deleteMyCommands": self._delete_my_commands,
            "setChatMenuButton": _true,
            "answerCallbackQuery": self._answer_callback_query,
            "sendChatAction": self._send_chat_action,
            "leaveChat": self._leave_chat,
            "sendMessage": self._send_message,
            "sendPhoto": partial(self._send_file, "sendPhoto", "photo"),
            "sendDocument": partial(self._send_file, "sendDocument", "document"),
            "editMessageText": self._edit_message_text,
            "editMessageReplyMarkup": self._edit_message_reply_markup,
            "deleteMessage": self._delete_message,
        }
        # Telegram matches method names case-insensitively.
        self._methods = {name.lower(): (name, fn) for name, fn in handlers.items()}

    async def start(self) -> None:
        """Listen on a random port of 127.0.0.1 and set base_url."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}"
        self._http = ClientSession(timeout=ClientTimeout(total=_WEBHOOK_TIMEOUT))
        self._deliverer = asyncio.create_task(self._deliver_to_webhook())

    async def stop(self) -> None:
        """Wake pending long polls and delays, stop webhook deliveries, shut the server down."""
        self._closing.set()
        self._notify()
        if self._deliverer is not None:
            self._deliverer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._deliverer
            self._deliverer = None
        if self._http is not None:
            await self._http.close()
            self._http = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeBotAPI:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def bot(self, token: str | None = None) -> Bot:
        """A real aiogram Bot aimed here; the caller closes it with `await bot.session.close()`."""
        api = TelegramAPIServer.from_base(self.base_url)
        return Bot(token or self.token, session=LocalSession(api=api))

    @property
    def bot_user(self) -> dict[str, Any]:
        """The User object getMe answers and messages carry as "from"."""
        bot_id = int(self.token.split(":", 1)[0])
        return dict(id=bot_id, is_bot=True, first_name="autoloyal test", username=self.username)

    def fail_next(
        self,
        kind: str,
        *,
        times: int = 1,
        method: str | None = "sendMessage",
        chat_id: int | None = None,
        retry_after: int = 1,
        delay: float = 0.0,
    ) -> None:
        """Make the next `times` matching requests flood (429), fail (502) or stall `delay` s."""
        if kind not in _FAIL_KINDS or times < 1:
            raise ValueError(f"fail_next: kind must be one of {sorted(_FAIL_KINDS)}, times >= 1")
        self._rules.append(_FailRule(kind, times, method, chat_id, retry_after, delay))

    def enforce_rate(
        self,
        *,
        per_second: int | None = 30,
        per_chat_per_second: int | None = 1,
        retry_after: int = 1,
    ) -> None:
        """Answer 429 to sends over Telegram's limits in a sliding 1 s window; None lifts a limit."""
        no_limits = per_second is None and per_chat_per_second is None
        self._rate = None if no_limits else (per_second, per_chat_per_second, retry_after)

    def push_update(self, update: dict[str, Any]) -> int | None:
        """Queue a raw Update for getUpdates or the webhook, numbering it when it has no update_id.

        Answers its update_id, or None when the bot's allowed_updates leave its type out: then
        Telegram never makes the update, and it lands in `not_allowed` instead.
        """
        self._keep_incoming(update)
        if not self._wants(_update_type(update)):
            self.not_allowed.append(update)
            return None
        update = {**update, "update_id": update.get("update_id", self._next_update_id)}
        self._next_update_id = max(self._next_update_id, int(update["update_id"]) + 1)
        self._updates.append(update)
        self._notify()
        return int(update["update_id"])

    def chat_message(self, chat_id: int, message_id: int) -> dict[str, Any] | None:
        """A message as its chat shows it now (after edits), or None: never there, or deleted."""
        kept = self._messages.get((chat_id, message_id))
        if kept is None:
            return None
        body = {**kept.body, "reply_markup": kept.markup}
        return self._message(chat_id, message_id, body, by_bot=kept.by_bot)

    @property
    def webhook_url(self) -> str:
        """The webhook set now, "" in getUpdates mode."""
        return self._webhook.url if self._webhook else ""

    def max_in_window(self, seconds: float = 1.0, *, chat_id: int | None = None) -> int:
        """The most accepted messages inside any `seconds`-long window (half-open, like the limiter)."""
        times = sorted(m.at for m in self.sent if chat_id is None or m.chat_id == chat_id)
        best = first = 0
        for last, at in enumerate(times):
            while at - times[first] >= seconds:
                first += 1
            best = max(best, last - first + 1)
        return best

    async def wait_sent(self, count: int, timeout: float = 60.0) -> None:  # noqa: ASYNC109
        """Wait until `count` messages were accepted, else fail saying what did arrive."""
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.sent) < count:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                got = [(m.chat_id, m.text[:40]) for m in self.sent]
                refused = [(r.method, r.status) for r in self.requests if r.status != 200]
                raise AssertionError(
                    f"{len(got)} of {count} messages sent in {timeout}s: {got}; refused: {refused}"
                )
            await self._wait_change(left)

    async def wait_answered(self, count: int, timeout: float = 60.0) -> None:  # noqa: ASYNC109
        """Wait until `count` requests were answered, whatever the answer."""
        deadline = asyncio.get_running_loop().time() + timeout
        while sum(1 for r in self.requests if r.status) < count:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise AssertionError(f"{len(self.requests)} of {count} requests in {timeout}s")
            await self._wait_change(left)

    async def wait_delivered(self, count: int, timeout: float = 60.0) -> None:  # noqa: ASYNC109
        """Wait until the webhook took `count` updates with a 2xx answer."""
        deadline = asyncio.get_running_loop().time() + timeout
        while sum(1 for _, status in self.webhook_deliveries if 200 <= status < 300) < count:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise AssertionError(
                    f"{count} updates not delivered in {timeout}s to {self.webhook_url!r}: "
                    f"attempts {self.webhook_deliveries}; last error {self._webhook_error}; "
                    f"{len(self._updates)} pending; not allowed: {len(self.not_allowed)}"
                )
            await self._wait_change(left)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _wait_change(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), seconds)

    async def _not_found(self, request: web.Request) -> web.Response:
        return web.json_response(_ApiError(404, "Not Found").payload(), status=404)

    async def _handle(self, request: web.Request) -> web.Response:
        raw_method = request.match_info["method"]
        method, handler = self._methods.get(raw_method.lower(), (raw_method, None))
        index = len(self.requests)
        self.requests.append(ApiRequest(method, {}, self.clock(), 0))
        try:
            params = await _read_params(request)
            self.requests[index] = replace(self.requests[index], params=params)
            if request.match_info["token"] != self.token:
                raise _ApiError(401, "Unauthorized")
            result = await self._invoke(method, handler, params)
            status, body = 200, {"ok": True, "result": result}
        except _ApiError as error:
            status, body = error.code, error.payload()
        self.requests[index] = replace(self.requests[index], status=status)
        self._notify()
        return web.json_response(body, status=status)

    async def _invoke(self, method: str, handler: Handler | None, params: dict[str, Any]) -> Any:
        if handler is None:
            raise _ApiError(404, "Not Found")
        await self._apply_rules(method, _int(params.get("chat_id")))
        result = handler(params)
        return await result if inspect.isawaitable(result) else result

    async def _apply_rules(self, method: str, chat_id: int | None) -> None:
        for rule in self._rules:
            if (rule.method is None or rule.method.lower() == method.lower()) and (
                rule.chat_id is None or rule.chat_id == chat_id
            ):
                break
        else:
            return
        rule.times -= 1
        if rule.times == 0:
            self._rules.remove(rule)
        if rule.kind == "flood":
            raise _flood(rule.retry_after)
        if rule.kind == "server":
            raise _ApiError(502, "Bad Gateway")
        # "timeout": stall, then answer normally; the client gave up, but Telegram still delivers.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), rule.delay)

    def _chat(self, params: dict[str, Any], *, reachable: bool = True) -> int:
        if params.get("chat_id") in (None, ""):
            raise _bad("chat_id is empty")
        chat_id = _int(params["chat_id"])
        if chat_id is None or chat_id in self.missing:  # "@name" chats don't exist here
            raise _bad("chat not found")
        if reachable and chat_id in self.blocked:
            raise _ApiError(403, "Forbidden: bot was blocked by the user")
        if reachable and chat_id in self.deactivated:
            raise _ApiError(403, "Forbidden: user is deactivated")
        return chat_id

    def _check_rate(self, chat_id: int, now: float) -> None:
        if self._rate is None:
            return
        per_second, per_chat, retry_after = self._rate
        total = to_chat = 0
        for message in reversed(self.sent):
            if message.at <= now - 1.0:
                break
            total += 1
            to_chat += message.chat_id == chat_id
        if (per_second is not None and total >= per_second) or (
            per_chat is not None and to_chat >= per_chat
        ):
            raise _flood(retry_after)

    def _message(
        self, chat_id: int, message_id: int, body: dict[str, Any], *, by_bot: bool = True
    ) -> dict[str, Any]:
        chat = {"id": chat_id, "type": "private" if chat_id > 0 else "group"}
        message = {"message_id": message_id, "date": int(time.time()), "chat": chat}
        markup = _inline(body.pop("reply_markup", None))  # only inline keyboards come back
        if markup is not None:
            message["reply_markup"] = markup
        return {**message, **({"from": self.bot_user} if by_bot else {}), **body}

    def _accept(
        self,
        method: str,
        chat_id: int,
        text: str,
        params: dict[str, Any],
        body: dict[str, Any],
        file: UploadedFile | str | None = None,
    ) -> dict[str, Any]:
        markup = _markup(params)
        parse_mode = _parse_mode(params)
        now = self.clock()
        self._check_rate(chat_id, now)
        message_id = self._last_ids[chat_id] = self._last_ids.get(chat_id, 0) + 1
        self.sent.append(
            SentMessage(chat_id, text, parse_mode, markup, message_id, now, method, file)
        )
        self._messages[chat_id, message_id] = _Kept(text, _inline(markup), body, by_bot=True)
        return self._message(chat_id, message_id, {**body, "reply_markup": markup})

    def _keep_incoming(self, update: dict[str, Any]) -> None:
        """Users' messages share the chat's message ids, and the bot may delete them."""
        for kind in ("message", "edited_message"):
            message = update.get(kind)
            if not isinstance(message, dict) or not isinstance(message.get("chat"), dict):
                continue
            chat_id, message_id = _int(message["chat"].get("id")), _int(message.get("message_id"))
            if chat_id is None or message_id is None:
                continue
            text = str(message.get("text") or message.get("caption") or "")
            body = {k: v for k, v in message.items() if k != "message_id"}
            self._messages[chat_id, message_id] = _Kept(text, None, body, by_bot=False)
            self._last_ids[chat_id] = max(self._last_ids.get(chat_id, 0), message_id)

    def _wants(self, update_type: str) -> bool:
        if self._allowed_updates is None:
            return update_type not in _OPT_IN_UPDATES
        return update_type in self._allowed_updates

    def _take_allowed_updates(self, params: dict[str, Any]) -> None:
        """allowed_updates persists until the next getUpdates/setWebhook that names it."""
        allowed = params.get("allowed_updates")
        if isinstance(allowed, list):
            self._allowed_updates = [str(kind) for kind in allowed] or None

    async def _set_webhook(self, params: dict[str, Any]) -> bool:
        url = str(params.get("url") or "")
        secret = str(params.get("secret_token") or "") or None
        # Telegram wants HTTPS on ports 443/80/88/8443; a local receiver gets plain HTTP anywhere.
        if url and not url.startswith(("http://", "https://")):
            raise _bad("bad webhook: An HTTPS URL must be provided for webhook")
        if secret is not None and not _SECRET_TOKEN.fullmatch(secret):
            raise _bad("secret token contains unallowed characters")
        if _flag(params.get("drop_pending_updates")):
            self._updates = []
        self._take_allowed_updates(params)
        max_connections = min(max(_int(params.get("max_connections")) or 40, 1), 100)
        self._webhook = _Webhook(url, secret, max_connections) if url else None
        self._webhook_error = None
        self._notify()
        return True

    async def _delete_webhook(self, params: dict[str, Any]) -> bool:
        if _flag(params.get("drop_pending_updates")):
            self._updates = []
        self._webhook, self._webhook_error = None, None
        self._notify()
        return True

    def _webhook_info(self, params: dict[str, Any]) -> dict[str, Any]:
        info: dict[str, Any] = dict(
            url=self.webhook_url,
            has_custom_certificate=False,
            pending_update_count=len(self._updates),
        )
        if self._webhook is not None:
            info["max_connections"] = self._webhook.max_connections
        if self._webhook_error is not None:
            info["last_error_date"], info["last_error_message"] = self._webhook_error
        if self._allowed_updates is not None:
            info["allowed_updates"] = list(self._allowed_updates)
        return info

    async def _deliver_to_webhook(self) -> None:
        """Telegram's side of a webhook: the oldest pending update, until a 2xx takes it."""
        while not self._closing.is_set():
            hook = self._webhook
            if hook is None or not self._updates:
                await self._wait_change(_WEBHOOK_TIMEOUT)
                continue
            update = self._updates[0]
            status, reply = await self._post_update(hook, update)
            self.webhook_deliveries.append((int(update["update_id"]), status))
            if 200 <= status < 300:
                self._updates = [u for u in self._updates if u is not update]
                if reply is not None:
                    await self._run_webhook_reply(reply)
                self._notify()
                continue
            self._notify()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), _WEBHOOK_RETRY)

    async def _post_update(
        self, hook: _Webhook, update: dict[str, Any]
    ) -> tuple[int, dict[str, Any] | None]:
        """POST one update; answer the HTTP status (0: unreachable) and any method in the reply."""
        assert self._http is not None
        headers = {"X-Telegram-Bot-Api-Secret-Token": hook.secret} if hook.secret else {}
        try:
            async with self._http.post(
                hook.url, json=update, headers=headers, allow_redirects=False
            ) as response:
                if not 200 <= response.status < 300:
                    reason = f"{response.status} {response.reason or ''}".strip()
                    self._webhook_error = (
                        int(time.time()),
                        f"Wrong response from the webhook: {reason}",
                    )
                    return response.status, None
                try:
                    return response.status, await _read_webhook_reply(response)
                except (ClientError, ValueError, UnicodeDecodeError):
                    return response.status, None  # Telegram ignores a reply it can't read
        except TimeoutError:
            self._webhook_error = (int(time.time()), "Read timeout expired")
        except (ClientError, OSError):
            self._webhook_error = (int(time.time()), "Connection refused")
        return 0, None

    async def _run_webhook_reply(self, params: dict[str, Any]) -> None:
        """Carry out the method a webhook answered with; nobody sees its result, as on Telegram."""
        raw_method = str(params.pop("method"))
        method, handler = self._methods.get(raw_method.lower(), (raw_method, None))
        index = len(self.requests)
        self.requests.append(ApiRequest(method, params, self.clock(), 0))
        try:
            await self._invoke(method, handler, params)
            status = 200
        except _ApiError as error:
            status = error.code
        self.requests[index] = replace(self.requests[index], status=status)

    async def _get_updates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        if self._webhook is not None:
            raise _ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        self._take_allowed_updates(params)
        offset = _int(params.get("offset")) or 0
        limit = min(max(_int(params.get("limit")) or 100, 1), 100)
        # Like Telegram: a positive offset confirms all earlier updates, a negative one keeps the tail.
        if offset > 0:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
        elif offset < 0:
            self._updates = self._updates[offset:]
        timeout = min(max(float(params.get("timeout") or 0), 0.0), _LONG_POLL_CAP)
        deadline = asyncio.get_running_loop().time() + timeout
        while not self._updates and not self._closing.is_set():
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                break
            await self._wait_change(left)
            if self._webhook is not None:
                raise _ApiError(409, "Conflict: terminated by setWebhook request")
        return self._updates[:limit]

    async def _send_message(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id = self._chat(params)
        text = str(params.get("text") or "")
        _check_text(text, _parse_mode(params))
        return self._accept("sendMessage", chat_id, text, params, {"text": text})

    async def _send_file(self, method: str, kind: str, params: dict[str, Any]) -> dict[str, Any]:
        chat_id = self._chat(params)
        file = params.get(kind)
        if isinstance(file, str) and file.startswith("attach://"):  # aiogram's way to upload
            file = params.get(file.removeprefix("attach://"))
        if not file:
            raise _bad(f"there is no {kind} in the request")
        if isinstance(file, str):  # sent again by file_id: only ids this "Telegram" issued
            known = self._files.get(file)
            if known is None:
                raise _bad("wrong file identifier/HTTP URL specified")
            if known[0] != kind:
                raise _bad("type of file mismatch")
        caption = str(params.get("caption") or "")
        _check_text(caption, _parse_mode(params), caption=True)
        if isinstance(file, str):
            meta = self._files[file][1]
        else:
            number = next(self._file_ids)
            meta = {"file_id": f"fake-{kind}-{number}", "file_unique_id": f"u{number}"}
            meta["file_size"] = len(file.data)
            if kind == "document":
                meta |= {"file_name": file.filename, "mime_type": file.content_type}
        body: dict[str, Any] = {
            kind: [meta | {"width": 90, "height": 90}] if kind == "photo" else meta
        }
        if caption:
            body["caption"] = caption
        message = self._accept(method, chat_id, caption, params, body, file)
        self._files.setdefault(meta["file_id"], (kind, meta))  # issued once the message went
        return message

    def _own_message(self, params: dict[str, Any], *, edit: bool = True) -> tuple[int, int, _Kept]:
        chat_id = self._chat(params)
        message_id = _int(params.get("message_id")) or 0
        kept = self._messages.get((chat_id, message_id))
        if kept is None:
            raise _bad(f"message to {'edit' if edit else 'delete'} not found")
        if edit and not kept.by_bot:
            raise _bad("message can't be edited")
        return chat_id, message_id, kept

    async def _edit_message_text(self, params: dict[str, Any]) -> dict[str, Any]:
        text = str(params.get("text") or "")
        chat_id, message_id, kept = self._own_message(params)
        if "text" not in kept.body:
            raise _bad("there is no text in the message to edit")
        _check_text(text, _parse_mode(params))
        markup = _inline(_markup(params))  # no reply_markup: the keyboard goes away
        if (kept.text, kept.markup) == (text, markup):
            raise _bad(_NOT_MODIFIED)
        body = {**kept.body, "text": text}
        self._messages[chat_id, message_id] = _Kept(text, markup, body, by_bot=True)
        return self._message(
            chat_id, message_id, {**body, "edit_date": int(time.time()), "reply_markup": markup}
        )

    async def _edit_message_reply_markup(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id, message_id, kept = self._own_message(params)
        markup = _inline(_markup(params))
        if kept.markup == markup:
            raise _bad(_NOT_MODIFIED)
        self._messages[chat_id, message_id] = replace(kept, markup=markup)
        return self._message(
            chat_id,
            message_id,
            {**kept.body, "edit_date": int(time.time()), "reply_markup": markup},
        )

    async def _delete_message(self, params: dict[str, Any]) -> bool:
        chat_id, message_id, _ = self._own_message(params, edit=False)
        del self._messages[chat_id, message_id]
        self.deleted_messages.append((chat_id, message_id))
        return True

    async def _send_chat_action(self, params: dict[str, Any]) -> bool:
        self._chat(params)
        if str(params.get("action") or "") not in _CHAT_ACTIONS:
            raise _bad("wrong parameter action in request")
        return True

    async def _leave_chat(self, params: dict[str, Any]) -> bool:
        self.left_chats.append(self._chat(params, reachable=False))
        return True

    async def _answer_callback_query(self, params: dict[str, Any]) -> bool:
        self.callback_answers.append(dict(params))
        return True

    @staticmethod
    def _commands_key(params: dict[str, Any]) -> tuple[str, str]:
        scope = params.get("scope") or {"type": "default"}
        return json.dumps(scope, sort_keys=True), str(params.get("language_code") or "")

    async def _set_my_commands(self, params: dict[str, Any]) -> bool:
        commands = params.get("commands") or []  # Telegram takes a missing list as an empty one
        if not isinstance(commands, list) or not all(isinstance(c, dict) for c in commands):
            raise _bad("can't parse commands JSON object")
        for command in commands:
            if not _BOT_COMMAND.fullmatch(str(command.get("command") or "")):
                raise _bad("BOT_COMMAND_INVALID")
            if not str(command.get("description") or "").strip():
                raise _bad("command description must be non-empty")
        language_code = str(params.get("language_code") or "") or None
        self.commands.append((commands, language_code, params.get("scope") or None))
        key = self._commands_key(params)
        if commands:
            self._command_sets[key] = [
                {"command": c["command"], "description": c["description"]} for c in commands
            ]
        else:
            self._command_sets.pop(key, None)
        return True

    async def _get_my_commands(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        return list(self._command_sets.get(self._commands_key(params), []))

    async def _delete_my_commands(self, params: dict[str, Any]) -> bool:
        self._command_sets.pop(self._commands_key(params), None)
        return True

"""`/webhooks/sms/{provider}`: delivery receipts and client replies pushed by the SMS provider.

A call is admitted by the secret in its URL (`?secret=` with `[sms] callback_secret`) or by
the provider's own signature. The secret is checked first, from the query alone; the body is
parsed after it either way (a signature is computed over the body), and a body that does not
parse (bytes not in its charset, an unknown charset, a broken multipart) is a 400 "malformed
body", with or without the secret, before the signature is looked at (403 without both).

The adapter parses the call; receipts move messages to delivered or failed, replies are
recorded and a stop word opts the number out of SMS advertising. All of one call is one
transaction, and the answer is what the provider expects ("100" for SMS.ru), so it stops
resending. A malformed call gets a 4xx; what the provider sends in its own format but we can
never apply (a time out of range, an id too long to be ours) gets the provider's answer
anyway, with one WARNING line, because a 4xx would only make it resend for ever. Only a
failure of ours (the database) is a 5xx, which the provider retries.

Every piece of the caller's text in a log line goes through `loggable`.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from aiohttp import web

from autoloyal.app import App
from autoloyal.messaging import sms_provider
from crm.preferences import take_sms_reply
from gateway.channels.sms import CallbackError, CallbackRequest, SmsProvider
from gateway.logsafe import loggable
from gateway.receipts import CALLBACK, record_receipts

log = logging.getLogger("autoloyal.webhooks")

_APP = web.AppKey("app", App)
_PROVIDER = web.AppKey("sms_provider", SmsProvider)
MAX_BODY = 1024 * 1024
T = TypeVar("T")


def make_webhooks(
    app: App,
    *,
    telegram: Callable[[web.Request], Awaitable[web.StreamResponse]] | None = None,
    sms: bool = True,
) -> web.Application:
    """The sub-app mounted at /webhooks: the SMS provider's callbacks (`sms`), and the
    Telegram bot's updates when it takes them by webhook."""
    hooks = web.Application(client_max_size=MAX_BODY)
    hooks[_APP] = app
    if telegram is not None:
        hooks.router.add_route("POST", "/telegram", telegram)
    if not sms:
        return hooks
    provider = sms_provider(app.settings)
    if provider is not None:
        hooks[_PROVIDER] = provider

        async def close(_: web.Application) -> None:
            await provider.close()

        hooks.on_cleanup.append(close)
    hooks.router.add_route("GET", "/sms/{provider}", sms_callback)
    hooks.router.add_route("POST", "/sms/{provider}", sms_callback)
    return hooks


async def sms_callback(request: web.Request) -> web.Response:
    app = request.app[_APP]
    provider = request.app.get(_PROVIDER)
    name = request.match_info["provider"]
    if provider is None or provider.provider != name:
        here = "none" if provider is None else provider.provider
        log.warning("SMS webhook: a call for provider %s, but ours is %s", loggable(name), here)
        return _text(404, f"no SMS provider {name!r} is configured here")
    by_secret = _secret_given(request, app.settings.sms.callback_secret)
    try:
        call = await _as_call(request)
    except _Malformed as exc:
        log.warning("SMS webhook %s: a malformed body (%s)", name, exc)
        return _text(400, "malformed body")
    if not (by_secret or provider.signed(call)):
        log.warning("SMS webhook %s: refused a call without the secret or a valid signature", name)
        return _text(403, "forbidden")
    try:
        callback = provider.callback(call)
    except CallbackError as exc:
        log.warning("SMS webhook %s: %s", name, exc)
        return _text(exc.status, str(exc))
    if callback.notes:
        log.warning("SMS webhook %s: %s", name, _summary(callback.notes))
    now = app.clock()
    async with app.sessions() as session, session.begin():
        report = await record_receipts(session, name, callback.receipts, via=CALLBACK, now=now)
        actions = [
            await take_sms_reply(
                session,
                provider=name,
                phone=reply.phone,
                text=reply.text,
                provider_message_id=reply.provider_id,
                now=now,
            )
            for reply in callback.inbound
        ]
    if callback.receipts or actions:
        log.info(
            "SMS webhook %s: %d receipt(s) applied, %d waiting for their send, "
            "%d unchanged; replies: %s",
            name,
            report.applied,
            report.waiting,
            report.unchanged,
            ", ".join(actions) or "none",
        )
    return web.Response(text=callback.reply, content_type=callback.content_type)


NOTES_SHOWN = 3
"""Notes of one call said in its WARNING line; the rest are counted."""


def _summary(notes: Sequence[str]) -> str:
    shown = "; ".join(notes[:NOTES_SHOWN])
    more = len(notes) - NOTES_SHOWN
    return f"{shown}; and {more} more like these" if more > 0 else shown


def _secret_given(request: web.Request, secret: str) -> bool:
    """Whether the URL carries the configured secret (the first `secret` in the query)."""
    given = request.query.get("secret")
    if not secret or given is None:
        return False
    # surrogatepass: whatever the query decoded to can be compared, never raises.
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), secret.encode("utf-8"))


class _Malformed(Exception):
    """The body does not parse; the message says why, escaped for the log."""


async def _as_call(request: web.Request) -> CallbackRequest:
    """The call as plain data. A form is parsed by aiohttp (in the charset its Content-Type
    names, UTF-8 by default); the raw body is read after it, so a multipart body (which
    aiohttp reads as a stream) comes with its fields and no raw bytes."""
    form: list[tuple[str, str]] = []
    if request.method == "POST" and request.content_type in (
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ):
        posted = await _parsing(request.post())
        form = [(key, value) for key, value in posted.items() if isinstance(value, str)]
    return CallbackRequest(
        method=request.method,
        query=list(request.query.items()),
        form=form,
        headers={key: value for key, value in request.headers.items()},
        body=await _parsing(request.read()),
    )


async def _parsing(step: Awaitable[T]) -> T:
    """aiohttp reading the body; _Malformed for whatever the caller's bytes make it raise:
    ValueError (bytes not in the charset, a broken multipart), LookupError (an unknown
    charset), RuntimeError (an unknown transfer encoding), HttpProcessingError (a body that
    does not decompress)... aiohttp's own HTTP errors (413: over the size limit, too many
    fields) stay what they are."""
    try:
        return await step
    except web.HTTPException:
        raise
    except Exception as exc:
        raise _Malformed(f"{type(exc).__name__}: {loggable(exc)}") from None


def _text(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text, content_type="text/plain")

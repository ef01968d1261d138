"""`/webhooks/sms/{provider}`: delivery receipts and client replies pushed by the SMS provider.

A call is admitted by the secret in its URL (`?secret=` with `[sms] callback_secret`) or by
the provider's own signature. The adapter parses it; receipts move messages to delivered or
failed, replies are recorded and a stop word opts the number out of SMS advertising. All of
one call is one transaction, and the answer is what the provider expects ("100" for SMS.ru),
so it stops resending. A call that cannot be applied gets a 4xx/5xx and the provider retries.
"""

from __future__ import annotations

import hmac
import logging

from aiohttp import web

from autoloyal.app import App
from autoloyal.messaging import sms_provider
from crm.preferences import take_sms_reply
from gateway.channels.sms import CallbackError, CallbackRequest, SmsProvider
from gateway.receipts import CALLBACK, record_receipts

log = logging.getLogger("autoloyal.webhooks")

_APP = web.AppKey("app", App)
_PROVIDER = web.AppKey("sms_provider", SmsProvider)
MAX_BODY = 1024 * 1024


def make_webhooks(app: App) -> web.Application:
    """The sub-app mounted at /webhooks."""
    hooks = web.Application(client_max_size=MAX_BODY)
    hooks[_APP] = app
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
        return _text(404, f"no SMS provider {name!r} is configured here")
    call = await _as_call(request)
    if not _admitted(call, provider, app.settings.sms.callback_secret):
        log.warning("SMS webhook %s: refused a call without the secret or a valid signature", name)
        return _text(403, "forbidden")
    try:
        callback = provider.callback(call)
    except CallbackError as exc:
        log.warning("SMS webhook %s: %s", name, exc)
        return _text(exc.status, str(exc))
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


def _admitted(call: CallbackRequest, provider: SmsProvider, secret: str) -> bool:
    given = next((value for key, value in call.query if key == "secret"), None)
    if secret and given is not None and hmac.compare_digest(given.encode(), secret.encode()):
        return True
    return provider.signed(call)


async def _as_call(request: web.Request) -> CallbackRequest:
    body = await request.read()
    form: list[tuple[str, str]] = []
    if request.method == "POST" and request.content_type in (
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ):
        posted = await request.post()
        form = [(key, value) for key, value in posted.items() if isinstance(value, str)]
    return CallbackRequest(
        method=request.method,
        query=list(request.query.items()),
        form=form,
        headers={key: value for key, value in request.headers.items()},
        body=body,
    )


def _text(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text, content_type="text/plain")

"""The aiohttp application: health, the integration API at /api/v1, the unsubscribe pages at
/u/, the SMS providers' webhooks at /webhooks/sms/; and the access log it is served with."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from sqlalchemy import text

import autoloyal
from autoloyal.api import make_api
from autoloyal.api.openapi import PREFIX
from autoloyal.app import App
from autoloyal.unsubscribe import PREFIX as UNSUBSCRIBE
from autoloyal.unsubscribe import make_unsubscribe, redacted
from autoloyal.webhooks import make_webhooks
from gateway.logsafe import loggable
from storage import read_only

APP_KEY = web.AppKey("autoloyal", App)
TARGET_LIMIT = 200
"""Characters of a request's path and query kept in an access log line."""
HIDDEN = frozenset({"secret"})
"""Query parameters whose value an access log line does not show (the webhook's secret)."""


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def make_http_app(
    app: App, *, telegram: Handler | None = None, api: bool = True
) -> web.Application:
    """The routes of the API role (`api`), and `telegram`, the bot's webhook, when the bot
    role takes updates by webhook; a process without the API role serves only that."""
    http = web.Application()
    http[APP_KEY] = app
    http.router.add_get("/healthz", healthz)
    if api:
        http.add_subapp(PREFIX, make_api(app))
        http.add_subapp(UNSUBSCRIBE, make_unsubscribe(app))
    http.add_subapp("/webhooks", make_webhooks(app, telegram=telegram, sms=api))
    return http


class AccessLog(AbstractAccessLogger):
    """An access log line fit to keep; serve the app with `access_log_class=AccessLog`.

    aiohttp's own line prints the request's path and query as they came, so it would keep
    every client's personal /u/{token} link and the webhook's `?secret=`. This one prints
    the path `redacted` (/u/~3f2a9c1b), the secret as ***, and escapes and shortens what the
    caller chose (path, query, User-Agent). Its format is fixed: `access_log_format` is not
    read.
    """

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        query = "&".join(
            f"{key}={'***' if key in HIDDEN else value}" for key, value in request.query.items()
        )
        target = redacted(request.path) + (f"?{query}" if query else "")
        self.logger.info(
            "%s %s %s %d %d %.3fs %s",
            request.remote or "-",
            request.method,
            loggable(target, TARGET_LIMIT),
            response.status,
            response.body_length,
            time,
            loggable(request.headers.get("User-Agent", "-")),
        )

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)


async def healthz(request: web.Request) -> web.Response:
    """200 when the process serves and its database answers; 503 otherwise."""
    app = request.app[APP_KEY]
    try:
        async with read_only(app.engine).connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:  # any failure of the database is "not healthy", with its reason
        return web.json_response({"status": "unavailable", "database": str(exc)[:200]}, status=503)
    return web.json_response({"status": "ok", "database": "ok", "version": autoloyal.__version__})

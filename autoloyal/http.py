"""The aiohttp application: health, the integration API at /api/v1, the unsubscribe pages at
/u/, the SMS providers' webhooks at /webhooks/sms/."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import text

import autoloyal
from autoloyal.api import make_api
from autoloyal.api.openapi import PREFIX
from autoloyal.app import App
from autoloyal.unsubscribe import make_unsubscribe
from autoloyal.webhooks import make_webhooks
from storage import read_only

APP_KEY = web.AppKey("autoloyal", App)


def make_http_app(app: App) -> web.Application:
    http = web.Application()
    http[APP_KEY] = app
    http.router.add_get("/healthz", healthz)
    http.add_subapp(PREFIX, make_api(app))
    http.add_subapp("/u", make_unsubscribe(app))
    http.add_subapp("/webhooks", make_webhooks(app))
    return http


async def healthz(request: web.Request) -> web.Response:
    """200 when the process serves and its database answers; 503 otherwise."""
    app = request.app[APP_KEY]
    try:
        async with read_only(app.engine).connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:  # any failure of the database is "not healthy", with its reason
        return web.json_response({"status": "unavailable", "database": str(exc)[:200]}, status=503)
    return web.json_response({"status": "ok", "database": "ok", "version": autoloyal.__version__})

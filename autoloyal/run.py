"""`autoloyal run`: migrate, start the requested roles, serve until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence

from aiohttp import web

from autoloyal.app import App, masked_url, open_app
from autoloyal.config import Settings
from autoloyal.http import make_http_app
from storage import current_revision

log = logging.getLogger("autoloyal")

# Roles this release has; later ones (bot, dispatcher, scheduler) join this tuple.
ROLES = ("api",)


class UnknownRole(ValueError):
    pass


def parse_roles(text: str | None) -> tuple[str, ...]:
    if not text:
        return ROLES
    roles = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [role for role in roles if role not in ROLES]
    if unknown or not roles:
        raise UnknownRole(
            f"--roles: unknown role {', '.join(unknown) or '(none)'}; known: {', '.join(ROLES)}"
        )
    return roles


async def run(settings: Settings, roles: Sequence[str], stop: asyncio.Event | None = None) -> None:
    stop = stop or _stop_on_signals()
    async with open_app(settings) as app:
        revision = await current_revision(app.engine)
        log.info("database %s at revision %s", masked_url(settings), revision)
        runners = [await _start_api(app)] if "api" in roles else []
        await stop.wait()
        log.info("stopping")
        for runner in runners:
            await runner.cleanup()
    log.info("stopped")


async def _start_api(app: App) -> web.AppRunner:
    runner = web.AppRunner(make_http_app(app), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, app.settings.http.host, app.settings.http.port)
    await site.start()
    addresses = ", ".join(f"http://{host}:{port}" for host, port, *_ in runner.addresses)
    log.info("role api: serving %s (GET /healthz)", addresses)
    return runner


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop

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
from autoloyal.messaging import build_channels, describe_channels, dispatch_policy, worker_name
from gateway.dispatch import Dispatcher
from storage import current_revision

log = logging.getLogger("autoloyal")

# Roles this release has; later ones (bot, scheduler) join this tuple.
ROLES = ("api", "dispatcher")


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
        dispatcher = _start_dispatcher(app, stop) if "dispatcher" in roles else None
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait(
            {stopped, *([dispatcher] if dispatcher else [])}, return_when=asyncio.FIRST_COMPLETED
        )
        stop.set()
        log.info("stopping")
        if dispatcher is not None:
            await dispatcher  # finishes the requests under way, gives back the rest
        for runner in runners:
            await runner.cleanup()
    log.info("stopped")


async def _start_api(app: App) -> web.AppRunner:
    runner = web.AppRunner(make_http_app(app), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, app.settings.http.host, app.settings.http.port)
    await site.start()
    addresses = ", ".join(f"http://{host}:{port}" for host, port, *_ in runner.addresses)
    api = "on" if app.settings.http.api_token else "off (no [http] api_token)"
    log.info("role api: serving %s (GET /healthz; /api/v1 %s)", addresses, api)
    return runner


def _start_dispatcher(app: App, stop: asyncio.Event) -> asyncio.Task[None]:
    channels = build_channels(app.settings)
    dispatcher = Dispatcher(
        app.sessions, channels, dispatch_policy(app.settings), app.clock, worker=worker_name()
    )
    log.info("role dispatcher: %s", describe_channels(channels))

    async def work() -> None:
        try:
            await dispatcher.run(stop)
        finally:
            await dispatcher.close()

    return asyncio.create_task(work())


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop

"""`autoloyal run`: migrate, start the requested roles, serve until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

from aiohttp import web

from autoloyal.app import App, masked_url, open_app
from autoloyal.config import Settings
from autoloyal.http import AccessLog, Handler, make_http_app
from autoloyal.messaging import (
    build_channels,
    describe_channels,
    dispatch_policy,
    staff_alerts,
    worker_name,
)
from autoloyal.telegram_bot import bot_role
from gateway.channels.sms import SmsProvider
from gateway.dispatch import Dispatcher
from gateway.receipts import poll_receipts
from storage import current_revision

if TYPE_CHECKING:
    from scheduler.runner import SchedulerRole

log = logging.getLogger("autoloyal")

ROLES = ("api", "dispatcher", "bot", "scheduler")


class UnknownRole(ValueError):
    pass


class CannotListen(Exception):
    """The API cannot open its port (taken, not allowed, no such address): one line naming
    the address and the config keys that choose it, instead of asyncio's traceback."""


def parse_roles(text: str | None, settings: Settings | None = None) -> tuple[str, ...]:
    """The roles `--roles` names; none named: all of them, but the bot only with a token."""
    has_token = settings is None or bool(settings.telegram.token)
    if not text:
        return ROLES if has_token else tuple(role for role in ROLES if role != "bot")
    roles = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [role for role in roles if role not in ROLES]
    if unknown or not roles:
        raise UnknownRole(
            f"--roles: unknown role {', '.join(unknown) or '(none)'}; known: {', '.join(ROLES)}"
        )
    if "bot" in roles and not has_token:
        raise UnknownRole("--roles: the bot role needs [telegram] token")
    return roles


async def run(settings: Settings, roles: Sequence[str], stop: asyncio.Event | None = None) -> None:
    stop = stop or _stop_on_signals()
    async with open_app(settings) as app:
        revision = await current_revision(app.engine)
        log.info("database %s at revision %s", masked_url(settings), revision)
        bot = bot_role(app) if "bot" in roles else None
        if not settings.telegram.token:
            log.info("the client bot is off: no [telegram] token")
        webhook = bot.handle_webhook if bot is not None and bot.webhook_url else None
        serve = "api" in roles or webhook is not None
        runners = [await _start_api(app, webhook, api="api" in roles)] if serve else []
        if bot is not None:
            await bot.start()
        dispatcher = _start_dispatcher(app, stop) if "dispatcher" in roles else None
        scheduler = scheduler_role(app) if "scheduler" in roles else None
        if scheduler is not None:
            await scheduler.start()
        settle_heap()
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait(
            {stopped, *([dispatcher] if dispatcher else [])}, return_when=asyncio.FIRST_COMPLETED
        )
        stop.set()
        log.info("stopping")
        if scheduler is not None:
            await scheduler.stop()  # the job runs in hand finish
        if bot is not None:
            await bot.stop()  # finishes the updates in hand
        if dispatcher is not None:
            await dispatcher  # finishes the requests under way, gives back the rest
        for runner in runners:
            await runner.cleanup()
    log.info("stopped")


def scheduler_role(app: App) -> SchedulerRole:
    from scheduler.runner import SchedulerRole

    return SchedulerRole(app.settings, app.engine, app.sessions, app.clock)


def settle_heap() -> None:
    """Once the roles have started: what start-up built (modules, aiogram's pydantic
    models, SQLAlchemy's mappers and statements) lives as long as the process, so the
    garbage collector's full passes stop walking it. They did for every few hundred
    updates, and made the bot's slowest answers (its p99 went from 7.9 ms to 5.0 ms for
    /help; bench/client_bot.py)."""
    gc.collect()
    gc.freeze()


async def _start_api(app: App, telegram: Handler | None, *, api: bool) -> web.AppRunner:
    """The HTTP server: the API role's routes, and the bot's webhook when it takes one."""
    # No access log; should one be turned on, AccessLog keeps links' tokens out of it.
    http = make_http_app(app, telegram=telegram, api=api)
    runner = web.AppRunner(http, access_log=None, access_log_class=AccessLog)
    await runner.setup()
    host, port = app.settings.http.host, app.settings.http.port
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        address = f"[{host}]:{port}" if ":" in host else f"{host or '*'}:{port}"
        raise CannotListen(
            f"cannot listen on {address}: {_reason(exc)} ([http] host and port)"
        ) from None
    addresses = ", ".join(f"http://{host}:{port}" for host, port, *_ in runner.addresses)
    settings = app.settings
    if not api:
        log.info("serving %s for the bot's webhook (GET /healthz; /webhooks/telegram)", addresses)
        return runner
    token = "on" if settings.http.api_token else "off (no [http] api_token)"
    sms = f"; /webhooks/sms/{settings.sms.provider}" if settings.sms.provider else ""
    bot = "; /webhooks/telegram" if telegram is not None else ""
    log.info(
        "role api: serving %s (GET /healthz; /api/v1 %s; /u/ unsubscribe pages at %s%s%s)",
        addresses,
        token,
        settings.http.base_url,
        sms,
        bot,
    )
    return runner


def _reason(exc: OSError) -> str:
    """Why a socket failed, in a few words: asyncio's bind error repeats the address
    ("error while attempting to bind on address (...): address already in use"), and a
    host name that does not resolve has a negative errno of its own."""
    if exc.errno is not None and exc.errno > 0:
        return os.strerror(exc.errno).lower()
    return (exc.strerror or str(exc)).lower()


def _start_dispatcher(app: App, stop: asyncio.Event) -> asyncio.Task[None]:
    channels = build_channels(app.settings)
    dispatcher = Dispatcher(
        app.sessions,
        channels,
        dispatch_policy(app.settings),
        app.clock,
        worker=worker_name(),
        alerts=staff_alerts(app.settings, channels),
    )
    log.info("role dispatcher: %s", describe_channels(channels))
    sms = channels["sms"]
    minutes = app.settings.sms.poll_minutes
    polling = getattr(sms, "can_poll", False) and minutes > 0

    async def work() -> None:
        poller = None
        if polling:
            provider = cast(SmsProvider, sms)  # can_poll: an SMS provider's adapter
            poller = asyncio.create_task(_poll(app, provider, minutes * 60, stop))
        try:
            await dispatcher.run(stop)
        finally:
            if poller is not None:
                poller.cancel()
                await asyncio.gather(poller, return_exceptions=True)
            await dispatcher.close()

    return asyncio.create_task(work())


async def _poll(app: App, provider: SmsProvider, every: float, stop: asyncio.Event) -> None:
    """Ask the SMS provider for the receipts of the last day's messages, every `every` s."""
    log.info("receipts: asking %s every %g min", provider.provider, every / 60)
    while not stop.is_set():
        try:
            report = await poll_receipts(app.sessions, {provider.provider: provider}, app.clock)
        except Exception:
            log.exception("receipts: the poll failed; trying again in %g min", every / 60)
        else:
            if report.applied:
                log.info("receipts: %d message(s) settled by the poll", report.applied)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop

"""Wiring for the messaging core: channels, the dispatcher and the template library from config.

A channel with credentials talks to its service; one without writes to the outbox folder
(`[outbox] dir`), so the embedded default runs the whole lifecycle with no accounts.
"""

from __future__ import annotations

import os
import socket

from autoloyal.config import Settings
from crm.context import CompanyInfo
from crm.templates import TemplateLibrary
from gateway.channels import Channel
from gateway.channels.filesink import FileSink
from gateway.dispatch import DispatchPolicy
from gateway.outbox import CHANNELS


def company_info(settings: Settings) -> CompanyInfo:
    company, telegram = settings.company, settings.telegram
    booking = f"https://t.me/{telegram.bot_username}?start=book" if telegram.bot_username else None
    return CompanyInfo(
        name=company.name,
        phone=company.phone,
        address=company.address,
        website=company.website,
        locale=company.locale,
        timezone=company.timezone,
        booking_url=booking,
    )


def template_library(settings: Settings) -> TemplateLibrary:
    return TemplateLibrary(settings.templates.dir)


def build_channels(settings: Settings) -> dict[str, Channel]:
    """Every channel a plan may name; those without credentials write files instead."""
    folder = settings.outbox.dir
    channels: dict[str, Channel] = {name: FileSink(name, folder) for name in CHANNELS}
    telegram = settings.telegram
    if telegram.token:
        # aiogram takes two seconds to import: only a process that sends to Telegram pays.
        from gateway.channels.telegram import TelegramChannel

        channels["telegram"] = TelegramChannel(
            telegram.token,
            api_server=telegram.api_server,
            rate_per_second=telegram.rate_per_second,
            chat_rate_per_second=telegram.chat_rate_per_second,
            request_timeout=telegram.request_timeout,
        )
    return channels


def describe_channels(channels: dict[str, Channel]) -> str:
    """One line for the log: where each channel's messages go."""
    return ", ".join(f"{name} -> {channel.destination}" for name, channel in channels.items())


def dispatch_policy(settings: Settings) -> DispatchPolicy:
    outbox = settings.outbox
    return DispatchPolicy(
        default_timezone=settings.company.timezone,
        night=settings.company.quiet,
        max_attempts=outbox.max_attempts,
        retry_base_seconds=outbox.retry_base_seconds,
        retry_max_seconds=outbox.retry_max_seconds,
        lease_seconds=outbox.lease_seconds,
        advertising_limit=outbox.advertising_limit,
        advertising_window_days=outbox.advertising_window_days,
        poll_seconds=outbox.poll_seconds,
    )


def worker_name() -> str:
    """Names this process in `claimed_by`, so a stuck message says who held it."""
    return f"{socket.gethostname()}:{os.getpid()}"[:64]

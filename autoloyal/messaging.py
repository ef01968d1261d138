"""Wiring for the messaging core: channels, the dispatcher and the template library from config.

A channel with credentials talks to its service; one without writes to the outbox folder
(`[outbox] dir`), so the embedded default runs the whole lifecycle with no accounts.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from autoloyal.config import ConfigError, Settings, sms_generic_spec
from crm.context import CompanyInfo
from crm.preferences import LinkSigner, link_secret
from crm.templates import TemplateLibrary
from gateway.alerts import Alerts, ChatAlerts, LogAlerts
from gateway.channels import Channel
from gateway.channels.email import DkimKey, EmailAccount, EmailChannel
from gateway.channels.filesink import FileSink
from gateway.channels.sms import SmsAccount, SmsProvider
from gateway.dispatch import DispatchPolicy
from gateway.limits import Limits
from gateway.optout import OptOut
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
    return TemplateLibrary(settings.templates.dir, Limits(sms_parts=settings.sms.max_parts))


def sms_provider(settings: Settings) -> SmsProvider | None:
    """The configured SMS provider's adapter; None when `[sms] provider` is empty."""
    sms = settings.sms
    account = SmsAccount(
        base_url=sms.url,
        sender=sms.sender,
        login=sms.login,
        password=sms.password,
        rate_per_second=sms.rate_per_second,
        timeout=sms.request_timeout,
    )
    if sms.provider == "smsru":
        from gateway.channels.sms.smsru import SmsRu

        return SmsRu(account)
    if sms.provider == "smsc":
        from gateway.channels.sms.smsc import Smsc

        return Smsc(account)
    if sms.provider == "generic":
        from gateway.channels.sms.generic import GenericSms

        try:
            return GenericSms(account, sms_generic_spec(sms.generic))
        except ValueError as exc:  # a spec that needs what the account lacks (a base_url)
            raise ConfigError(f"sms.{exc}") from None
    return None


def email_channel(settings: Settings) -> EmailChannel | None:
    """The e-mail channel over the `[[email.account]]`s; None when there are none."""
    email = settings.email
    if not email.account or email.default is None:
        return None
    accounts = []
    for index, account in enumerate(email.account):
        dkim = None
        if account.dkim_key_file is not None:
            try:
                key = account.dkim_key_file.read_bytes()
            except OSError as exc:
                raise ConfigError(
                    f"email.account[{index}].dkim_key_file: cannot read "
                    f"{account.dkim_key_file}: {exc.strerror}"
                ) from None
            dkim = DkimKey(account.dkim_domain, account.dkim_selector, key)
        accounts.append(
            EmailAccount(
                name=account.name,
                host=account.host,
                port=account.port,
                security=account.security,
                login=account.login,
                password=account.password,
                from_name=account.from_name or settings.company.name,
                from_address=account.from_address,
                reply_to=account.reply_to,
                daily_limit=account.daily_limit,
                dkim=dkim,
                ca_file=None if account.ca_file is None else str(account.ca_file),
                timeout=account.timeout,
            )
        )
    try:
        return EmailChannel(accounts, email.default)
    except ValueError as exc:
        raise ConfigError(f"email.account: {exc}") from None


def build_channels(settings: Settings) -> dict[str, Channel]:
    """Every channel a plan may name; those without credentials write files instead."""
    folder = settings.outbox.dir
    channels: dict[str, Channel] = {name: FileSink(name, folder) for name in CHANNELS}
    provider = sms_provider(settings)
    if provider is not None:
        channels["sms"] = provider
    email = email_channel(settings)
    if email is not None:
        channels["email"] = email
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


def staff_alerts(settings: Settings, channels: dict[str, Channel]) -> Alerts:
    """Alerts to the staff chat through the Telegram channel when both are configured."""
    chat = settings.telegram.staff_chat_id
    telegram = channels.get("telegram")
    notify = getattr(telegram, "notify", None)
    if chat is None or notify is None:
        return LogAlerts()

    async def post(text: str) -> None:
        await notify(chat, f"⚠️ autoloyal: {text}")

    return ChatAlerts(post)


def opt_out(settings: Settings) -> OptOut:
    label = "Unsubscribe" if settings.company.locale == "en" else "Отписаться от рассылки"
    return OptOut(sms_text=settings.sms.opt_out_text, telegram_label=label)


async def link_signer(session: AsyncSession, settings: Settings, now: datetime) -> LinkSigner:
    """Signs the unsubscribe links of messages queued now; served at `[http] public_url`."""
    return LinkSigner(await link_secret(session, now), settings.http.base_url)


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
        halt_seconds=outbox.halt_minutes * 60,
    )


def worker_name() -> str:
    """Names this process in `claimed_by`, so a stuck message says who held it."""
    return f"{socket.gethostname()}:{os.getpid()}"[:64]

"""Configuration: a TOML file validated into typed settings.

No file at all is a valid configuration: the built-in defaults run on a SQLite file with
no credentials. A bad value is a `ConfigError` naming the key, e.g.
`http.port: expected an integer, got "abc"`.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from datetime import date, time
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from crm.visits import VISIT_KINDS

# phonenumbers, gateway.outbox and storage.engine are imported where a value needs them:
# they pull in the phone metadata, SQLAlchemy and Alembic, which `autoloyal --help` and a
# config without those keys never need.

DEFAULT_CONFIG_PATH = Path("config.toml")


def _slug(value: str) -> str:
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", value):
        raise ValueError("use lowercase latin letters, digits, '-' and '_'")
    return value


def _plan(value: tuple[str, ...]) -> tuple[str, ...]:
    from gateway.outbox import PlanError, parse_plan

    try:
        return parse_plan(value)
    except PlanError as exc:
        raise ValueError(str(exc)) from None


def _clock_time(value: str) -> str:
    if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", value):
        raise ValueError(f'expected "HH:MM" like "10:00", got "{value}"')
    return value


ClockTime = Annotated[str, AfterValidator(_clock_time)]
"""A local time of day, "HH:MM"."""


def clock_time(text: str) -> time:
    """A checked "HH:MM" (`ClockTime`) as a time of day."""
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


Slug = Annotated[str, AfterValidator(_slug)]
"""A code or name in config: lowercase latin letters, digits, '-' and '_'."""
ChannelPlan = Annotated[tuple[str, ...], AfterValidator(_plan)]
"""Channels in the order a message tries them, e.g. ("telegram", "sms", "email")."""

_HTTP_URL = re.compile(r"https?://[^\s/?#]+(/[^\s?#]*)?")
_QUIET_HOURS = re.compile(
    r"(?P<h1>[01]\d|2[0-3]):(?P<m1>[0-5]\d)-(?P<h2>[01]\d|2[0-3]):(?P<m2>[0-5]\d)"
)
CONFIG_ENV = "AUTOLOYAL_CONFIG"


class ConfigError(Exception):
    """The configuration cannot be used; the message names the file and the key."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseSettings(Section):
    url: str = "sqlite:///autoloyal.db"

    @field_validator("url")
    @classmethod
    def _supported(cls, value: str) -> str:
        from storage.engine import DatabaseUrlError, normalize_database_url

        try:
            normalize_database_url(value)
        except DatabaseUrlError as exc:
            raise ValueError(str(exc)) from None
        return value


class CompanySettings(Section):
    name: str = "Автосервис"
    timezone: str = "Europe/Moscow"
    locale: Literal["ru", "en"] = "ru"
    country: str = "RU"
    phone: str = ""
    address: str = ""
    website: str = ""
    quiet_hours: str = "21:00-09:00"

    @field_validator("quiet_hours")
    @classmethod
    def _hours(cls, value: str) -> str:
        if value and not _QUIET_HOURS.fullmatch(value):
            raise ValueError(
                f'expected "HH:MM-HH:MM" like "21:00-09:00", or "" for none, got "{value}"'
            )
        return value

    @property
    def quiet(self) -> tuple[time, time] | None:
        """The night as (start, end) local times, or None when there is none."""
        match = _QUIET_HOURS.fullmatch(self.quiet_hours)
        if match is None:
            return None
        start = time(int(match["h1"]), int(match["m1"]))
        end = time(int(match["h2"]), int(match["m2"]))
        return None if start == end else (start, end)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return check_timezone(value)

    @field_validator("country")
    @classmethod
    def _known_region(cls, value: str) -> str:
        import phonenumbers

        if value.upper() not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"unknown country code {value!r}: use a two-letter code like RU")
        return value.upper()

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SPAN = re.compile(r"(?P<h1>[01]\d|2[0-3]):(?P<m1>[0-5]\d)-(?P<h2>[01]\d|2[0-4]):(?P<m2>[0-5]\d)")


def parse_span(value: str) -> tuple[time, time] | None:
    """ "09:00-18:00" -> (09:00, 18:00); "" -> None (closed). The end may be 24:00."""
    if value == "":
        return None
    match = _SPAN.fullmatch(value)
    if match is None:
        raise ValueError(
            f'expected "HH:MM-HH:MM" like "09:00-18:00", or "" for none, got "{value}"'
        )
    start = time(int(match["h1"]), int(match["m1"]))
    end_h, end_m = int(match["h2"]), int(match["m2"])
    if end_h == 24 and end_m:
        raise ValueError(f'"{value}": a day ends at 24:00 at the latest')
    end = time.max if end_h == 24 else time(end_h, end_m)
    if end <= start:
        raise ValueError(f'"{value}": the end must come after the start')
    return start, end


class BranchSettings(Section):
    code: Slug = Field(min_length=1, max_length=32)
    name: str = Field(min_length=1, max_length=128)
    departments: list[str] = Field(default_factory=list)
    timezone: str | None = None
    address: str = ""
    phone: str = ""
    hours: dict[str, str] | None = None
    """Working hours per weekday (`mon` ... `sun`), "09:00-18:00"; a day left out, or "",
    is closed. None: 09:00-18:00 Monday to Saturday."""
    lunch: str = ""
    """"13:00-14:00": nobody is booked across it; "": no break."""
    bays: int = Field(default=1, ge=1, le=100)
    """Bookings that may run at the same time."""
    closed: tuple[date, ...] = ()
    """Extra days off (ISO dates)."""
    work_on_holidays: bool = False
    """Open on Russia's public holidays and their transferred days off."""

    @field_validator("hours")
    @classmethod
    def _hours(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is None:
            return None
        for day, span in value.items():
            if day not in WEEKDAYS:
                raise ValueError(f"{day!r} is not a weekday: use {', '.join(WEEKDAYS)}")
            try:
                parse_span(span)
            except ValueError as exc:
                raise ValueError(f"{day}: {exc}") from None
        return value

    @field_validator("lunch")
    @classmethod
    def _lunch(cls, value: str) -> str:
        parse_span(value)
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        return None if value is None else check_timezone(value)


class MakeInterval(Section):
    interval_km: int | None = Field(default=None, gt=0)
    interval_months: int | None = Field(default=None, gt=0)


class MaintenanceSettings(Section):
    interval_km: int = Field(default=15_000, gt=0)
    interval_months: int = Field(default=12, gt=0)
    daily_km: float = Field(default=40.0, gt=0)
    max_daily_km: int = Field(default=1500, gt=0, le=10_000)
    """The most a car can plausibly drive a day: an odometer a client reports beyond the last
    reading plus this much a day since is a typo, refused."""
    makes: dict[str, MakeInterval] = Field(default_factory=dict)


class SegmentSettings(Section):
    lost_after_days: int = Field(default=365, ge=1, le=36_500)
    regular_min_visits: int = Field(default=2, ge=2, le=1000)
    abc_thresholds: tuple[Decimal, Decimal, Decimal] = (Decimal(75), Decimal(20), Decimal(5))
    xyz_period: Literal["month", "quarter", "year"] = "quarter"
    xyz_periods: int = Field(default=8, ge=2, le=120)
    xyz_x: Decimal = Field(default=Decimal("0.75"), gt=0)
    xyz_y: Decimal = Field(default=Decimal("1.25"), gt=0)

    @field_validator("abc_thresholds")
    @classmethod
    def _shares(cls, value: tuple[Decimal, Decimal, Decimal]) -> tuple[Decimal, Decimal, Decimal]:
        if any(share < 0 for share in value) or sum(value) != 100:
            raise ValueError("expected three shares in percent that make 100, like [75, 20, 5]")
        return value

    @model_validator(mode="after")
    def _xyz_order(self) -> SegmentSettings:
        if self.xyz_x > self.xyz_y:
            raise ValueError(f"xyz_x ({self.xyz_x}) must not be above xyz_y ({self.xyz_y})")
        return self


class HttpSettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    api_token: str = ""
    public_url: str = ""
    """Where clients reach this server (unsubscribe links); "": http://host:port."""

    @field_validator("public_url")
    @classmethod
    def _public(cls, value: str) -> str:
        if value and not _HTTP_URL.fullmatch(value):
            raise ValueError(
                f'expected an http(s) URL like "https://loyal.example.ru", got "{value}"'
            )
        return value.rstrip("/")

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url
        host = "127.0.0.1" if self.host in ("", "0.0.0.0", "::") else self.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    @field_validator("api_token")
    @classmethod
    def _strong_token(cls, value: str) -> str:
        if value and (len(value) < 16 or not re.fullmatch(r"[\x21-\x7e]+", value)):
            raise ValueError(
                "expected at least 16 printable characters without spaces, "
                "e.g. the output of `openssl rand -hex 24`"
            )
        return value


class TierSettings(Section):
    """A tier of the loyalty program: from what spend over the last year, what it gives."""

    name: str = Field(min_length=1, max_length=64)
    spend_from: Decimal = Field(alias="from", ge=0, decimal_places=2)
    accrual_percent: Decimal = Field(ge=0, le=100, decimal_places=2)
    discount_percent: Decimal = Field(default=Decimal(0), ge=0, le=100, decimal_places=2)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


DEFAULT_TIERS = (
    TierSettings(name="Базовый", spend_from=Decimal(0), accrual_percent=Decimal(3)),
    TierSettings(
        name="Серебряный",
        spend_from=Decimal(50_000),
        accrual_percent=Decimal(5),
        discount_percent=Decimal(3),
    ),
    TierSettings(
        name="Золотой",
        spend_from=Decimal(150_000),
        accrual_percent=Decimal(7),
        discount_percent=Decimal(5),
    ),
)


class BonusSettings(Section):
    expire_after_days: int = Field(default=365, ge=0, le=36_500)
    max_redeem_percent: Decimal = Field(default=Decimal(30), ge=0, le=100, decimal_places=2)
    welcome: Decimal = Field(default=Decimal(300), ge=0, decimal_places=2)
    birthday: Decimal = Field(default=Decimal(500), ge=0, decimal_places=2)
    birthday_valid_days: int = Field(default=30, ge=0, le=36_500)
    referral_referrer: Decimal = Field(default=Decimal(500), ge=0, decimal_places=2)
    referral_referred: Decimal = Field(default=Decimal(500), ge=0, decimal_places=2)
    no_accrual_kinds: tuple[str, ...] = ("sale",)
    expiring_warn_days: int = Field(default=14, ge=0, le=365)
    """Warn a client (`bonus_expiring`) this many days before bonuses expire; 0: never."""
    accrued_notice: bool = True
    """Tell a client what a work order earned (`bonus_accrued`)."""
    notice_channels: ChannelPlan = ("telegram", "sms", "email")

    @field_validator("no_accrual_kinds")
    @classmethod
    def _known_kinds(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [kind for kind in value if kind not in VISIT_KINDS]
        if unknown:
            raise ValueError(f"unknown visit kind {unknown[0]!r}: use {', '.join(VISIT_KINDS)}")
        return value


class SurveySettings(Section):
    invite: bool = True
    invite_after_hours: float = Field(default=3.0, ge=0, le=24 * 14)
    max_visit_age_days: int = Field(default=3, ge=0, le=365)
    channels: ChannelPlan = ("telegram", "sms", "email")
    complaint_csat: int = Field(default=3, ge=0, le=5)
    """A satisfaction score (1-5) at or below this opens a complaint; 0: never."""
    complaint_nps: int = Field(default=6, ge=-1, le=10)
    """A recommendation score (0-10) at or below this opens a complaint; -1: never."""


TELEGRAM_API = "https://api.telegram.org"


class TelegramSettings(Section):
    token: str = ""
    api_server: str = TELEGRAM_API
    bot_username: str = ""
    staff_chat_id: int | None = None
    rate_per_second: float = Field(default=30.0, gt=0)
    chat_rate_per_second: float = Field(default=1.0, gt=0)
    request_timeout: float = Field(default=10.0, gt=0)
    mode: Literal["polling", "webhook"] = "polling"
    """How the bot role gets updates: long polling, or Telegram posting them to
    `[http] public_url` + /webhooks/telegram."""
    webhook_secret: str = ""
    """What Telegram sends in X-Telegram-Bot-Api-Secret-Token; required in webhook mode."""
    user_messages_per_minute: int = Field(default=30, ge=1, le=10_000)
    """Updates one user may send the bot a minute; beyond it the bot stays silent."""

    @field_validator("webhook_secret")
    @classmethod
    def _secret(cls, value: str) -> str:
        if value and not re.fullmatch(r"[A-Za-z0-9_-]{16,256}", value):
            raise ValueError(
                "expected 16 to 256 characters of A-Z, a-z, 0-9, _ and - "
                "(Telegram's rule), e.g. the output of `openssl rand -hex 24`"
            )
        return value

    @field_validator("token")
    @classmethod
    def _token(cls, value: str) -> str:
        if value and not re.fullmatch(r"\d+:[\w-]+", value):
            raise ValueError("expected a bot token like 123456:ABC-DEF... from @BotFather")
        return value

    @field_validator("api_server")
    @classmethod
    def _server(cls, value: str) -> str:
        if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", value):
            raise ValueError(
                f'expected an http(s) URL like "https://api.telegram.org", got "{value}"'
            )
        return value.rstrip("/")


SMS_PROVIDERS = ("smsru", "smsc", "generic")
SMS_BASE_URLS = {"smsru": "https://sms.ru", "smsc": "https://smsc.ru"}


class SmsSettings(Section):
    provider: Literal["", "smsru", "smsc", "generic"] = ""
    base_url: str = ""
    sender: str = Field(default="", max_length=64)
    login: str = ""
    password: str = ""
    rate_per_second: float = Field(default=10.0, gt=0)
    request_timeout: float = Field(default=15.0, gt=0)
    price_per_segment: Decimal = Field(default=Decimal(0), ge=0, decimal_places=4)
    max_parts: int = Field(default=6, ge=1, le=255)
    opt_out_text: str = "Отказ: {link}"
    callback_secret: str = ""
    poll_minutes: float = Field(default=10.0, ge=0)
    generic: dict[str, Any] = Field(default_factory=dict)

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if value and not _HTTP_URL.fullmatch(value):
            raise ValueError(f'expected an http(s) URL like "https://sms.ru", got "{value}"')
        return value.rstrip("/")

    @field_validator("opt_out_text")
    @classmethod
    def _opt_out(cls, value: str) -> str:
        try:
            value.format(link="")
        except (KeyError, IndexError, ValueError):
            raise ValueError(
                'only {link} may appear in braces, e.g. "Отказ: {link}" or "Отказ: СТОП"'
            ) from None
        return value

    @field_validator("callback_secret")
    @classmethod
    def _secret(cls, value: str) -> str:
        if value and (len(value) < 16 or not re.fullmatch(r"[A-Za-z0-9_-]+", value)):
            raise ValueError(
                "expected at least 16 letters, digits, '-' or '_', "
                "e.g. the output of `openssl rand -hex 16`"
            )
        return value

    @model_validator(mode="after")
    def _complete(self) -> SmsSettings:
        if not self.provider:
            return self
        if self.provider == "generic":
            if not self.generic:
                raise ValueError("sms.generic: the generic provider needs a [sms.generic] table")
            sms_generic_spec(self.generic)
        elif not self.password:
            what = "api_id" if self.provider == "smsru" else "password"
            raise ValueError(f"sms.password: {self.provider} needs its {what} here")
        if self.provider == "smsc" and not self.login:
            raise ValueError("sms.login: smsc needs the account's login")
        return self

    @property
    def url(self) -> str:
        return self.base_url or SMS_BASE_URLS.get(self.provider, "")


def sms_generic_spec(raw: Mapping[str, Any]) -> Any:
    """The generic provider's spec, checked; a bad field is named `sms.generic.<field>`."""
    import dataclasses

    from gateway.channels.sms.generic import GenericSpec

    known = {field.name: field for field in dataclasses.fields(GenericSpec)}
    for key in raw:
        if key not in known:
            raise ValueError(f"sms.generic.{key}: unknown key")
    for name, field in known.items():
        required = field.default is dataclasses.MISSING
        if required and field.default_factory is dataclasses.MISSING and name not in raw:
            raise ValueError(f"sms.generic.{name}: required key is missing")
    try:
        return GenericSpec(**raw)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"sms.generic.{exc}") from None


class EmailAccountSettings(Section):
    name: Slug = Field(min_length=1, max_length=48)
    host: str = Field(min_length=1)
    port: int = Field(default=587, ge=1, le=65535)
    security: Literal["none", "starttls", "tls"] = "starttls"
    login: str = ""
    password: str = ""
    from_name: str = ""
    from_address: str
    reply_to: str = ""
    daily_limit: int | None = Field(default=None, ge=1)
    dkim_domain: str = ""
    dkim_selector: str = ""
    dkim_key_file: Path | None = None
    ca_file: Path | None = None
    timeout: float = Field(default=30.0, gt=0)

    @field_validator("from_address", "reply_to")
    @classmethod
    def _address(cls, value: str) -> str:
        if value and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", value):
            raise ValueError(f'expected an e-mail address like "news@example.ru", got "{value}"')
        return value

    @model_validator(mode="after")
    def _dkim(self) -> EmailAccountSettings:
        given = [bool(self.dkim_domain), bool(self.dkim_selector), self.dkim_key_file is not None]
        if any(given) and not all(given):
            raise ValueError(
                "dkim_domain, dkim_selector and dkim_key_file go together: set all three or none"
            )
        return self


class EmailSettings(Section):
    default_account: str = ""
    account: tuple[EmailAccountSettings, ...] = ()

    @model_validator(mode="after")
    def _accounts(self) -> EmailSettings:
        names = [account.name for account in self.account]
        for index, name in enumerate(names):
            if name in names[:index]:
                raise ValueError(f"email.account[{index}].name: {name!r} is used twice")
        if self.default_account and self.default_account not in names:
            known = ", ".join(names) or "none"
            raise ValueError(
                f"email.default_account: no account named {self.default_account!r} "
                f"(accounts: {known})"
            )
        return self

    @property
    def default(self) -> str | None:
        """The account a campaign uses unless it names one; None: no accounts."""
        if self.default_account:
            return self.default_account
        return self.account[0].name if self.account else None


class OutboxSettings(Section):
    dir: Path = Path("outbox")
    batch_size: int = Field(default=1000, ge=1, le=10_000)
    max_attempts: int = Field(default=5, ge=1, le=100)
    retry_base_seconds: float = Field(default=30.0, gt=0)
    retry_max_seconds: float = Field(default=3600.0, gt=0)
    lease_seconds: float = Field(default=300.0, ge=30)
    advertising_limit: int = Field(default=2, ge=0)
    advertising_window_days: int = Field(default=7, ge=0)
    poll_seconds: float = Field(default=1.0, gt=0)
    halt_minutes: float = Field(default=10.0, gt=0)


class TemplateSettings(Section):
    dir: Path | None = None


class ImportSettings(Section):
    batch_size: int = Field(default=2000, ge=1, le=10_000)


STAFF_ROLES = ("admin", "manager", "operator")


class JobTiming(Section):
    """When one scheduler job runs: daily `at` a local time, or `every_minutes`."""

    at: ClockTime | None = None
    every_minutes: int | None = Field(default=None, ge=1, le=24 * 60)
    enabled: bool = True

    @model_validator(mode="after")
    def _one(self) -> JobTiming:
        if (self.at is None) == (self.every_minutes is None):
            raise ValueError("give exactly one of at, every_minutes")
        return self


DEFAULT_JOB_TIMES: Mapping[str, JobTiming] = {
    "greetings": JobTiming(at="09:00"),
    "maintenance_reminders": JobTiming(at="11:00"),
    "booking_reminders": JobTiming(every_minutes=15),
    "surveys": JobTiming(every_minutes=10),
    "bonus_expiry": JobTiming(at="03:30"),
    "bonus_accrued": JobTiming(every_minutes=10),
    "winback": JobTiming(at="12:00"),
    "snapshots": JobTiming(at="02:30"),
}


class SchedulerSettings(Section):
    catch_up_days: int = Field(default=3, ge=0, le=31)
    """After downtime, reminders and bonus jobs run for missed days up to this many days back
    (greetings never: a late greeting is worse than none)."""
    jobs: dict[str, JobTiming] = Field(default_factory=lambda: dict(DEFAULT_JOB_TIMES))
    """Per job: `greetings = { at = "10:00" }`; a job not listed keeps its default."""

    @field_validator("jobs")
    @classmethod
    def _known(cls, value: dict[str, JobTiming]) -> dict[str, JobTiming]:
        for name in value:
            if name not in DEFAULT_JOB_TIMES:
                raise ValueError(f"unknown job {name!r}: use {', '.join(DEFAULT_JOB_TIMES)}")
        return value

    def timing(self, job: str) -> JobTiming:
        return self.jobs.get(job) or DEFAULT_JOB_TIMES[job]


class ReminderSettings(Section):
    maintenance_days_before: int = Field(default=14, ge=0, le=365)
    """The maintenance reminder goes this many days before the forecast's planned date."""
    maintenance_again_after_days: int = Field(default=14, ge=0, le=365)
    """Once more this many days after the planned date when the client has neither booked
    nor come; 0: never."""
    maintenance_channels: ChannelPlan = ("telegram", "sms", "email")
    booking_day_before_at: str = "12:00"
    """The day-before booking reminder goes out from this local time; "" for none."""
    booking_hours_before: float = Field(default=3.0, ge=0, le=48)
    """A second reminder this many hours before the start; 0: none."""
    booking_channels: ChannelPlan = ("telegram", "sms", "email")

    @field_validator("booking_day_before_at")
    @classmethod
    def _at(cls, value: str) -> str:
        return value if value == "" else _clock_time(value)


class WinbackSettings(Section):
    enabled: bool = True
    template: str = "winback"
    channels: ChannelPlan = ("telegram", "sms", "email")
    kind: Literal["advertising", "service"] = "advertising"


OCCASION_DATE = re.compile(
    r"(?P<fixed>(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01]))"
    r"|(?P<nth>(1st|2nd|3rd|4th|last)-(mon|tue|wed|thu|fri|sat|sun)-(0[1-9]|1[0-2]))"
    r"|birthday|car_purchase"
)


class OccasionSettings(Section):
    """A greeting (`[[occasion]]`): who gets it, on which day, with which template."""

    code: Slug = Field(min_length=1, max_length=32)
    template: str = Field(min_length=1, max_length=64)
    date: str
    """"MM-DD" (fixed), "last-sun-10" (the last Sunday of October; 1st..4th or last, mon..sun,
    month), "birthday" (the client's; 29 February on the 28th in common years), or
    "car_purchase" (the anniversary of buying a car here)."""
    audience: str = "all"
    """A segment expression: "filter(gender=female)", "all", "abc(group=A) and not lost"."""
    days_before: int = Field(default=0, ge=0, le=30)
    at: ClockTime = "10:00"
    """The local time the greeting goes out (in the client's zone, else the company's)."""
    gift: Decimal | None = Field(default=None, gt=0, decimal_places=2)
    """Bonuses given with the greeting (a birthday's default is `[bonuses] birthday`)."""
    gift_valid_days: int | None = Field(default=None, ge=1, le=36_500)
    channels: ChannelPlan = ("telegram", "sms", "email")
    kind: Literal["advertising", "service"] = "advertising"
    enabled: bool = True

    @field_validator("date")
    @classmethod
    def _date(cls, value: str) -> str:
        if not OCCASION_DATE.fullmatch(value):
            raise ValueError(
                f'"{value}": use "MM-DD", "last-sun-10" (1st..4th or last, mon..sun, month),'
                ' "birthday" or "car_purchase"'
            )
        return value


DEFAULT_OCCASIONS = (
    OccasionSettings(code="new_year", template="new_year", date="12-31", days_before=1),
    OccasionSettings(code="feb23", template="feb23", date="02-23", audience="filter(gender=male)"),
    OccasionSettings(code="mar8", template="mar8", date="03-08", audience="filter(gender=female)"),
    OccasionSettings(code="motorist_day", template="motorist_day", date="last-sun-10"),
    OccasionSettings(code="birthday", template="birthday", date="birthday"),
    OccasionSettings(code="car_anniversary", template="car_anniversary", date="car_purchase"),
)


class ServiceSettings(Section):
    """A service clients book (`[[service]]`)."""

    code: Slug = Field(min_length=1, max_length=32)
    name: str = Field(min_length=1, max_length=128)
    duration_minutes: int = Field(gt=0, le=24 * 60)
    price_from: Decimal | None = Field(default=None, ge=0)
    kind: str = "maintenance"
    """The visit kind it leads to (maintenance, repair, diagnostics, tyres, bodywork, other)."""
    branches: tuple[str, ...] = ()
    """Branch codes that offer it; empty: every branch."""

    @field_validator("kind")
    @classmethod
    def _kind(cls, value: str) -> str:
        if value not in VISIT_KINDS:
            raise ValueError(f"unknown visit kind {value!r}: use one of {', '.join(VISIT_KINDS)}")
        return value


DEFAULT_SERVICES = (
    ServiceSettings(code="maintenance", name="Техническое обслуживание", duration_minutes=120),
    ServiceSettings(
        code="diagnostics", name="Диагностика", duration_minutes=60, kind="diagnostics"
    ),
    ServiceSettings(code="repair", name="Ремонт", duration_minutes=120, kind="repair"),
    ServiceSettings(code="tyres", name="Шиномонтаж", duration_minutes=60, kind="tyres"),
)


class BookingSettings(Section):
    slot_minutes: int = Field(default=30, ge=5, le=240)
    """Bookings start on this grid from the opening time."""
    min_lead_hours: float = Field(default=2.0, ge=0, le=24 * 14)
    """The earliest a booking may start, from now."""
    horizon_days: int = Field(default=21, ge=1, le=366)
    cancel_hours_before: float = Field(default=2.0, ge=0, le=24 * 14)
    """A client may cancel or move a booking up to this long before it starts."""
    auto_confirm: bool = False
    """False: staff confirm each request in the staff chat; True: a booking is confirmed at once."""
    channels: ChannelPlan = ("telegram", "sms", "email")
    """How the confirmation reaches the client."""


DEFAULT_CONTACT_SOURCES = (
    "Рекомендация знакомых",
    "Уже обслуживался у нас",
    "Интернет-поиск",
    "Карты (Яндекс, 2ГИС)",
    "Социальные сети",
    "Реклама",
    "Проезжал мимо",
    "Другое",
)


class ContactSettings(Section):
    sources: tuple[str, ...] = DEFAULT_CONTACT_SOURCES
    """The answers to "how did you hear about us" staff pick from."""

    @field_validator("sources")
    @classmethod
    def _sources(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        cleaned = tuple(" ".join(source.split()) for source in value)
        for source in cleaned:
            if not 0 < len(source) <= 64:
                raise ValueError(f"{source!r}: a source is 1 to 64 characters")
        if len(set(cleaned)) != len(cleaned):
            raise ValueError("a source is listed twice")
        return cleaned


class StaffSettings(Section):
    """A member of staff the bots know by their Telegram account (`[[staff]]`)."""

    telegram_id: int = Field(gt=0)
    name: str = Field(min_length=1, max_length=128)
    role: Literal["admin", "manager", "operator"]
    branch: str | None = None
    """The branch code they work at (`[[branch]] code`); None: every branch."""


class RedisSettings(Section):
    url: str = ""
    """redis://HOST:PORT/DB: the bots' conversation state and flood control live there, so
    several bot processes share them; "": in each process's memory."""

    @field_validator("url")
    @classmethod
    def _redis(cls, value: str) -> str:
        if value and not re.fullmatch(r"rediss?://\S+|unix://\S+", value):
            raise ValueError(f'expected a URL like "redis://127.0.0.1:6379/0", got "{value}"')
        return value


class Settings(Section):
    database: DatabaseSettings = DatabaseSettings()
    company: CompanySettings = CompanySettings()
    branch: list[BranchSettings] = Field(default_factory=list)
    maintenance: MaintenanceSettings = MaintenanceSettings()
    segments: SegmentSettings = SegmentSettings()
    bonuses: BonusSettings = BonusSettings()
    tier: tuple[TierSettings, ...] = DEFAULT_TIERS
    surveys: SurveySettings = SurveySettings()
    http: HttpSettings = HttpSettings()
    telegram: TelegramSettings = TelegramSettings()
    staff: tuple[StaffSettings, ...] = ()
    service: tuple[ServiceSettings, ...] = DEFAULT_SERVICES
    booking: BookingSettings = BookingSettings()
    contacts: ContactSettings = ContactSettings()
    scheduler: SchedulerSettings = SchedulerSettings()
    reminders: ReminderSettings = ReminderSettings()
    winback: WinbackSettings = WinbackSettings()
    occasion: tuple[OccasionSettings, ...] = DEFAULT_OCCASIONS
    redis: RedisSettings = RedisSettings()
    sms: SmsSettings = SmsSettings()
    email: EmailSettings = EmailSettings()
    outbox: OutboxSettings = OutboxSettings()
    templates: TemplateSettings = TemplateSettings()
    import_: ImportSettings = Field(default=ImportSettings(), alias="import")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _unique_codes(self) -> Settings:
        codes = {
            "branch": [branch.code for branch in self.branch],
            "service": [service.code for service in self.service],
            "occasion": [occasion.code for occasion in self.occasion],
        }
        for key, listed in codes.items():
            seen: set[str] = set()
            for index, code in enumerate(listed):
                if code in seen:
                    raise ValueError(f"{key}[{index}].code: {code!r} is used twice")
                seen.add(code)
        return self

    @model_validator(mode="after")
    def _services(self) -> Settings:
        from crm.branches import DEFAULT_BRANCH_CODE

        codes = {branch.code for branch in self.branch} or {DEFAULT_BRANCH_CODE}
        for index, service in enumerate(self.service):
            for code in service.branches:
                if code not in codes:
                    raise ValueError(
                        f"service[{index}].branches: {code!r} is not a [[branch]] code"
                    )
        return self

    @model_validator(mode="after")
    def _staff(self) -> Settings:
        codes = {branch.code for branch in self.branch}
        seen: set[int] = set()
        for index, member in enumerate(self.staff):
            if member.telegram_id in seen:
                raise ValueError(
                    f"staff[{index}].telegram_id: {member.telegram_id} is listed twice"
                )
            seen.add(member.telegram_id)
            if member.branch is not None and member.branch not in codes:
                known = ", ".join(sorted(codes)) or "none configured"
                raise ValueError(
                    f"staff[{index}].branch: no [[branch]] with code {member.branch!r} ({known})"
                )
        return self

    @model_validator(mode="after")
    def _webhook(self) -> Settings:
        telegram = self.telegram
        if telegram.mode != "webhook" or not telegram.token:
            return self
        if not telegram.webhook_secret:
            raise ValueError(
                "telegram.webhook_secret: webhook mode needs a secret Telegram sends back "
                "with every update, e.g. the output of `openssl rand -hex 24`"
            )
        public = self.http.public_url
        # Telegram's own servers post to HTTPS only; a local Bot API server takes any URL.
        if not public or (telegram.api_server == TELEGRAM_API and not public.startswith("https")):
            raise ValueError(
                "http.public_url: webhook mode needs the https:// address Telegram posts "
                "updates to (the path /webhooks/telegram is added)"
            )
        return self

    @model_validator(mode="after")
    def _tier_ladder(self) -> Settings:
        if not self.tier:
            raise ValueError("tier: at least one tier is needed, from 0")
        if self.tier[0].spend_from != 0:
            raise ValueError(
                f"tier[0].from: the first tier starts at 0, not {self.tier[0].spend_from}"
            )
        for index in range(1, len(self.tier)):
            before, tier = self.tier[index - 1], self.tier[index]
            if tier.spend_from <= before.spend_from:
                raise ValueError(
                    f"tier[{index}].from: {tier.spend_from} must be above the tier before "
                    f"({before.spend_from}): list tiers from the lowest spend up"
                )
        names = [tier.name.casefold() for tier in self.tier]
        for index, name in enumerate(names):
            if name in names[:index]:
                raise ValueError(f"tier[{index}].name: {self.tier[index].name!r} is used twice")
        return self


def check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r}: use a name like Europe/Moscow") from None
    return value


def load_settings(path: Path | None = None) -> tuple[Settings, Path | None]:
    """Read the config file (explicit path, else $AUTOLOYAL_CONFIG, else ./config.toml if it
    exists) and validate it; return the settings and the file they came from (None: defaults).

    Relative paths (the SQLite file, the outbox and templates folders) are taken relative to
    the config file's folder, so a service runs the same from any working directory.
    """
    source = _find_config(path)
    if source is None:
        return Settings(), None
    try:
        raw = tomllib.loads(source.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{source}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}") from None
    settings = parse_settings(raw, source=str(source))
    return _anchor_paths(settings, source.parent), source


def parse_settings(raw: Mapping[str, Any], *, source: str = "config") -> Settings:
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError("\n".join(f"{source}: {line}" for line in _describe(exc))) from None


def _find_config(path: Path | None) -> Path | None:
    if path is None and os.environ.get(CONFIG_ENV):
        path = Path(os.environ[CONFIG_ENV])
    if path is not None:
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        return path
    return DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.is_file() else None


def _anchor_paths(settings: Settings, base: Path) -> Settings:
    from storage.engine import normalize_database_url

    outbox = settings.outbox.model_copy(update={"dir": base / settings.outbox.dir})
    templates = settings.templates
    if templates.dir is not None:
        templates = templates.model_copy(update={"dir": base / templates.dir})
    accounts = tuple(
        account.model_copy(
            update={
                "dkim_key_file": account.dkim_key_file and base / account.dkim_key_file,
                "ca_file": account.ca_file and base / account.ca_file,
            }
        )
        for account in settings.email.account
    )
    email = settings.email.model_copy(update={"account": accounts})
    settings = settings.model_copy(
        update={"outbox": outbox, "templates": templates, "email": email}
    )
    url = normalize_database_url(settings.database.url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return settings
    if Path(url.database).is_absolute():
        return settings
    anchored = url.set(database=str((base / url.database).resolve()))
    database = DatabaseSettings(url=anchored.render_as_string(hide_password=False))
    return settings.model_copy(update={"database": database})


_EXPECTED = {
    "int_parsing": "expected an integer",
    "int_type": "expected an integer",
    "int_from_float": "expected an integer",
    "float_parsing": "expected a number",
    "float_type": "expected a number",
    "bool_parsing": "expected true or false",
    "bool_type": "expected true or false",
    "string_type": "expected a string",
    "list_type": "expected a list",
    "dict_type": "expected a table",
    "model_type": "expected a table",
    "model_attributes_type": "expected a table",
    "extra_forbidden": "unknown key",
    "missing": "required key is missing",
}

_BOUNDS = {
    "greater_than": "must be greater than {gt}",
    "greater_than_equal": "must be at least {ge}",
    "less_than": "must be less than {lt}",
    "less_than_equal": "must be at most {le}",
    "string_too_short": "must be at least {min_length} characters long",
    "string_too_long": "must be at most {max_length} characters long",
    "literal_error": "expected {expected}",
}


def _describe(exc: ValidationError) -> list[str]:
    lines = []
    for error in exc.errors(include_url=False):
        key = _dotted(error["loc"])
        kind = error["type"]
        if kind in _EXPECTED:
            reason = _EXPECTED[kind]
        elif kind == "value_error":
            reason = str(error["ctx"]["error"]) if "ctx" in error else error["msg"]
        elif kind in _BOUNDS:
            reason = _BOUNDS[kind].format(**{k: _plain(v) for k, v in error.get("ctx", {}).items()})
        else:
            reason = error["msg"][0].lower() + error["msg"][1:]
        quiet = kind in ("missing", "extra_forbidden", "value_error")
        got = "" if quiet else f", got {_show(error['input'])}"
        if key and reason.startswith((f"{key}.", f"{key}[")):
            key = ""  # a section's own check names the key in full
        lines.append(f"{key}: {reason}{got}" if key else f"{reason}{got}")
    return lines


def _plain(value: Any) -> Any:
    """30.0 reads as 30 in a message about a bound."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _dotted(loc: tuple[int | str, ...]) -> str:
    key = ""
    for part in loc:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    return key


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return json.dumps(value, ensure_ascii=False, default=str)

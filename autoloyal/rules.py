"""The company's rules from config, in the shapes crm/ takes them."""

from __future__ import annotations

from datetime import date, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from autoloyal.config import Settings
from crm.bonuses import BonusRules
from crm.cards import Tier, TierLadder
from crm.maintenance import MaintenancePolicy
from crm.segments import AnalysisDefaults, LifecycleRules, SegmentContext
from gateway.quiet import QuietHours

if TYPE_CHECKING:
    # Only survey invitations need these, and they pull in the channels and Jinja2: a
    # command that counts a segment should not pay for them (tests/test_cli_startup.py).
    from autoloyal.config import OccasionSettings
    from crm.booking import BookingNotices, BookingRules
    from crm.notices import Notices
    from crm.occasions import Occasion
    from crm.reminders import BookingReminders, MaintenanceReminders
    from crm.surveys import SurveyInvites
    from crm.templates import TemplateLibrary


def maintenance_policy(settings: Settings) -> MaintenancePolicy:
    section = settings.maintenance
    return MaintenancePolicy(
        interval_km=section.interval_km,
        interval_months=section.interval_months,
        daily_km=section.daily_km,
        makes={
            make: (intervals.interval_km, intervals.interval_months)
            for make, intervals in section.makes.items()
        },
    )


def quiet_hours(settings: Settings) -> QuietHours | None:
    """`[company] quiet_hours` as now configured; None when there are none."""
    night = settings.company.quiet
    return None if night is None else QuietHours(night, settings.company.timezone)


def segment_context(settings: Settings, today: date) -> SegmentContext:
    """What segments are evaluated against on `today` (the company's date)."""
    section = settings.segments
    a, b, c = section.abc_thresholds
    return SegmentContext(
        today=today,
        maintenance=maintenance_policy(settings),
        lifecycle=LifecycleRules(section.lost_after_days, section.regular_min_visits),
        analysis=AnalysisDefaults(
            abc_thresholds=(a, b, c),
            xyz_period=section.xyz_period,
            xyz_periods=section.xyz_periods,
            xyz_x=section.xyz_x,
            xyz_y=section.xyz_y,
        ),
    )


def bonus_rules(settings: Settings) -> BonusRules:
    section = settings.bonuses
    return BonusRules(
        ladder=TierLadder(
            tuple(
                Tier(t.name, t.spend_from, t.accrual_percent, t.discount_percent)
                for t in settings.tier
            )
        ),
        expire_after_days=section.expire_after_days,
        max_redeem_percent=section.max_redeem_percent,
        welcome=section.welcome,
        birthday=section.birthday,
        birthday_valid_days=section.birthday_valid_days,
        referral_referrer=section.referral_referrer,
        referral_referred=section.referral_referred,
        no_accrual_kinds=frozenset(section.no_accrual_kinds),
    )


def survey_invites(settings: Settings, library: TemplateLibrary) -> SurveyInvites | None:
    """How survey invitations go out; None when `[surveys] invite` is off."""
    from autoloyal.messaging import company_info
    from crm.surveys import SurveyInvites

    section = settings.surveys
    if not section.invite:
        return None
    bot = settings.telegram.bot_username
    return SurveyInvites(
        library=library,
        company=company_info(settings),
        plan=section.channels,
        delay=timedelta(hours=section.invite_after_hours),
        max_visit_age_days=section.max_visit_age_days,
        night=settings.company.quiet,
        link=f"https://t.me/{bot}?start=survey_{{visit}}" if bot else None,
        buttons=survey_buttons if settings.telegram.token else None,
    )


def survey_buttons(visit_id: int) -> dict[str, dict[str, str]]:
    """The invitation's Telegram message carries the survey's first question as buttons."""
    from bot.screens.survey import csat_buttons
    from bot.telegram.render import inline_json

    return {"telegram": {"reply_markup": inline_json(csat_buttons(visit_id))}}


def booking_rules(settings: Settings) -> BookingRules:
    """Capacity and booking policy: `[[service]]`, each `[[branch]]`'s hours, `[booking]`.
    With no branch configured, the default branch books (crm.branches makes it)."""
    from autoloyal.config import WEEKDAYS, parse_span
    from crm.booking import BookingRules, BranchHours, Service
    from crm.booking.calendar import DEFAULT_WEEK
    from crm.branches import DEFAULT_BRANCH_CODE

    company = settings.company
    branches: dict[str, BranchHours] = {}
    for spec in settings.branch:
        week = (
            DEFAULT_WEEK
            if spec.hours is None
            else tuple(parse_span(spec.hours.get(day, "")) for day in WEEKDAYS)
        )
        branches[spec.code] = BranchHours(
            code=spec.code,
            name=spec.name,
            zone=ZoneInfo(spec.timezone or company.timezone),
            week=week,
            lunch=parse_span(spec.lunch),
            bays=spec.bays,
            closed=frozenset(spec.closed),
            work_on_holidays=spec.work_on_holidays,
            country=company.country,
            address=spec.address or company.address,
            phone=spec.phone or company.phone,
        )
    if not branches:
        branches[DEFAULT_BRANCH_CODE] = BranchHours(
            code=DEFAULT_BRANCH_CODE,
            name=company.name,
            zone=ZoneInfo(company.timezone),
            country=company.country,
            address=company.address,
            phone=company.phone,
        )
    section = settings.booking
    return BookingRules(
        services={
            s.code: Service(
                code=s.code,
                name=s.name,
                duration=timedelta(minutes=s.duration_minutes),
                kind=s.kind,
                price_from=s.price_from,
                branches=frozenset(s.branches),
            )
            for s in settings.service
        },
        branches=branches,
        slot=timedelta(minutes=section.slot_minutes),
        min_lead=timedelta(hours=section.min_lead_hours),
        horizon_days=section.horizon_days,
        cancel_before=timedelta(hours=section.cancel_hours_before),
        auto_confirm=section.auto_confirm,
    )


def booking_notices(settings: Settings, library: TemplateLibrary) -> BookingNotices:
    from autoloyal.messaging import company_info
    from crm.booking import BookingNotices

    return BookingNotices(library, company_info(settings), settings.booking.channels)


def bonus_notices(settings: Settings) -> Notices:
    """How bonus notices (expiring, accrued) go out, from `[bonuses]` and `[company]`."""
    from autoloyal.messaging import company_info, template_library
    from crm.notices import Notices

    return Notices(
        library=template_library(settings),
        company=company_info(settings),
        plan=settings.bonuses.notice_channels,
        night=settings.company.quiet,
    )


def maintenance_reminders(settings: Settings) -> MaintenanceReminders:
    from autoloyal.messaging import company_info, template_library
    from crm.reminders import MaintenanceReminders

    section = settings.reminders
    return MaintenanceReminders(
        library=template_library(settings),
        company=company_info(settings),
        plan=section.maintenance_channels,
        days_before=section.maintenance_days_before,
        again_after_days=section.maintenance_again_after_days,
        night=settings.company.quiet,
    )


def booking_reminders(settings: Settings) -> BookingReminders:
    from autoloyal.config import clock_time
    from autoloyal.messaging import company_info, template_library
    from crm.reminders import BookingReminders

    section = settings.reminders
    at = section.booking_day_before_at
    return BookingReminders(
        library=template_library(settings),
        company=company_info(settings),
        plan=section.booking_channels,
        day_before_at=clock_time(at) if at else None,
        hours_before=timedelta(hours=section.booking_hours_before),
        night=settings.company.quiet,
    )


def occasions(settings: Settings) -> list[Occasion]:
    """The enabled `[[occasion]]`s, defaults filled in: a birthday's gift is `[bonuses]
    birthday` for `birthday_valid_days`; another gift lasts as long as bonuses do."""
    return [occasion_of(section, settings) for section in settings.occasion if section.enabled]


def occasion_of(section: OccasionSettings, settings: Settings) -> Occasion:
    from autoloyal.config import clock_time
    from crm.occasions import BIRTHDAY_RULE, Occasion

    bonuses = settings.bonuses
    gift, valid_days = section.gift, section.gift_valid_days
    if section.date == BIRTHDAY_RULE:
        gift = gift if gift is not None else (bonuses.birthday or None)
        valid_days = valid_days if valid_days is not None else bonuses.birthday_valid_days
    elif valid_days is None:
        valid_days = bonuses.expire_after_days
    return Occasion(
        code=section.code,
        template=section.template,
        rule=section.date,
        audience=section.audience,
        days_before=section.days_before,
        at=clock_time(section.at),
        gift=gift,
        gift_valid_days=valid_days or None,
        channels=section.channels,
        kind=section.kind,
    )

"""The company's rules from config, in the shapes crm/ takes them."""

from __future__ import annotations

from datetime import date, timedelta
from typing import TYPE_CHECKING

from autoloyal.config import Settings
from crm.bonuses import BonusRules
from crm.cards import Tier, TierLadder
from crm.maintenance import MaintenancePolicy
from crm.segments import AnalysisDefaults, LifecycleRules, SegmentContext
from gateway.quiet import QuietHours

if TYPE_CHECKING:
    # Only survey invitations need these, and they pull in the channels and Jinja2: a
    # command that counts a segment should not pay for them (tests/test_cli_startup.py).
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

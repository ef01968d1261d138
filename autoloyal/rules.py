"""The company's rules from config, in the shapes crm/ takes them."""

from __future__ import annotations

from datetime import date

from autoloyal.config import Settings
from crm.maintenance import MaintenancePolicy
from crm.segments import AnalysisDefaults, LifecycleRules, SegmentContext


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

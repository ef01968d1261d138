"""Quiet hours: advertising waits for the morning in the client's own time zone."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

Night = tuple[time, time]
"""(start, end) local times; a night from 21:00 to 09:00 spans midnight."""


def morning_after(now: datetime, zone: ZoneInfo, night: Night | None) -> datetime | None:
    """When the night around `now` ends (UTC), or None when `now` is not in the night.

    The end is found on the local calendar, so a night across a daylight-saving change
    still ends at 09:00 local time, not nine hours after it began.
    """
    if night is None:
        return None
    start, end = night
    local = now.astimezone(zone)
    clock = local.time().replace(tzinfo=None)
    in_night = start <= clock < end if start < end else (clock >= start or clock < end)
    if not in_night:
        return None
    day = local.date() if clock < end else local.date() + timedelta(days=1)
    return datetime.combine(day, end, zone).astimezone(UTC)


@dataclass(frozen=True, slots=True)
class QuietHours:
    """Quiet hours as configured: the night, and the zone of clients without their own."""

    night: Night
    default_zone: str

    def morning(self, now: datetime, zone: str | None) -> datetime | None:
        """When the night around `now` ends in `zone` (None: it is day there)."""
        return morning_after(now, ZoneInfo(zone or self.default_zone), self.night)

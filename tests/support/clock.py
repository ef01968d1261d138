"""A clock that stands still until a test moves it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class FakeClock:
    """Call it for "now" (aware UTC), like the real clock; `advance` and `set` move it."""

    def __init__(self, now: datetime) -> None:
        self.now = self._checked(now)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta | None = None, **parts: float) -> datetime:
        self.now += delta if delta is not None else timedelta(**parts)
        return self.now

    def set(self, now: datetime) -> None:
        self.now = self._checked(now)

    @staticmethod
    def _checked(now: datetime) -> datetime:
        if now.tzinfo is None:
            raise ValueError("FakeClock needs an aware datetime")
        return now.astimezone(UTC)

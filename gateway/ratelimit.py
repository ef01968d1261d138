"""Rate limits per channel and per address, as the receiving server counts them.

A token bucket with a burst allows up to twice its rate in some one-second window (a full
bucket, then a refill), and Telegram answers that with 429. This limiter keeps a log of
recent sends instead: a request may start only when fewer than `rate` started in the last
second (plus a small margin for network jitter), and never sooner than 1/rate after the
previous one, so sends are spread evenly and no one-second window at the server holds more
than the limit.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable

Monotonic = Callable[[], float]

MARGIN = 0.02
"""Seconds added to each window: requests leave us in order but may arrive a little apart."""


class Slot:
    """A request's place in a limiter's log; `stamp` moves it to when the request really left.

    The dispatcher takes a slot, then records the attempt in the database, then sends:
    the write can take longer than the margin, so the window must count the send time.
    """

    __slots__ = ("at", "reserved")

    def __init__(self, at: float) -> None:
        self.reserved = at
        self.at = at

    def stamp(self, now: float) -> None:
        self.at = max(self.at, now)


class RateLimiter:
    """At most `rate` requests in any window of `per` seconds, evenly spaced; can be paused."""

    def __init__(self, rate: float, per: float = 1.0, *, monotonic: Monotonic = time.monotonic):
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.limit = max(1, math.floor(rate * per))
        self.window = per + MARGIN
        self.spacing = per / (rate * per)
        self._now = monotonic
        self._starts: deque[Slot] = deque()
        self._paused_until = 0.0
        self._lock = asyncio.Lock()

    def pause(self, seconds: float) -> None:
        """No request before `seconds` from now (a 429's retry_after)."""
        self._paused_until = max(self._paused_until, self._now() + seconds)

    def delay(self) -> float:
        """Seconds until the next request may start (0: now)."""
        now = self._now()
        while self._starts and now - self._starts[0].at >= self.window:
            self._starts.popleft()
        wait = self._paused_until - now
        if self._starts:
            # Spacing runs from the reservations, so a slow database write before one send
            # does not push every later send back; the window counts real send times.
            wait = max(wait, self._starts[-1].reserved + self.spacing - now)
            if len(self._starts) >= self.limit:
                wait = max(wait, self._starts[-self.limit].at + self.window - now)
        return max(0.0, wait)

    async def acquire(self, stopping: asyncio.Event | None = None) -> Slot | None:
        """Wait for a slot and take it; None (no slot taken) when `stopping` is set first."""
        async with self._lock:
            while (wait := self.delay()) > 0:
                if stopping is None:
                    await asyncio.sleep(wait)
                    continue
                try:
                    await asyncio.wait_for(stopping.wait(), timeout=wait)
                except TimeoutError:
                    continue
                return None
            if stopping is not None and stopping.is_set():
                return None
            slot = Slot(self._now())
            self._starts.append(slot)
            return slot


class KeyedRateLimiter:
    """One limiter per address (Telegram: 1 message a second to one chat), kept while in use."""

    def __init__(
        self,
        rate: float,
        per: float = 1.0,
        *,
        monotonic: Monotonic = time.monotonic,
        keep: int = 10_000,
    ) -> None:
        self.rate = rate
        self.per = per
        self._monotonic = monotonic
        self._keep = keep
        self._limiters: OrderedDict[str, RateLimiter] = OrderedDict()

    def of(self, key: str) -> RateLimiter:
        limiter = self._limiters.pop(key, None)
        if limiter is None:
            limiter = RateLimiter(self.rate, self.per, monotonic=self._monotonic)
        self._limiters[key] = limiter
        # Forget the least recently used: a chat silent for a while has no window left to keep.
        while len(self._limiters) > self._keep:
            oldest_key, oldest = next(iter(self._limiters.items()))
            if oldest.delay() > 0:
                break
            del self._limiters[oldest_key]
        return limiter

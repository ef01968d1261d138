"""Rate limits per channel and per address, as the receiving server counts them.

A token bucket with a burst allows up to twice its rate in some one-second window (a full
bucket, then a refill), and Telegram answers that with 429. This limiter keeps a log of
recent sends instead: a request may start only when fewer than `rate` started in the last
second (plus a small margin for network jitter), and never sooner than 1/rate after the
previous one, so sends are spread evenly and no one-second window at the server holds more
than the limit.

A server that answers 429 pauses the limiter. A slot granted before the pause began and not
yet used is void: its holder asks again (`superseded`), so nothing leaves during the pause
but the requests already on the wire. Slots go to waiters by priority, then in order of
arrival: a request the server paced is the first to go once the pause is over, then those
whose slots the pause voided, then the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

Monotonic = Callable[[], float]

MARGIN = 0.02
"""Seconds added to each window: requests leave us in order but may arrive a little apart."""

PACED = 0
"""Priority of a request the server paced: it goes before every other waiter."""
VOIDED = 1
"""Priority of a request whose slot a pause voided: it had its turn once already."""
NORMAL = 2


class Slot:
    """A request's place in a limiter's log; `stamp` moves it later: to when the request
    really left, then to when its answer came.

    The dispatcher takes a slot, then records the attempt in the database, then sends:
    the write can take longer than the margin, so the window counts the send time; and the
    server counted the request at some moment before its answer, so the window counts it
    from the answer at the latest (on a loaded machine a request can leave late).
    """

    __slots__ = ("at", "reserved")

    def __init__(self, at: float) -> None:
        self.reserved = at
        self.at = at

    def stamp(self, now: float) -> None:
        self.at = max(self.at, now)


class RateLimiter:
    """At most `rate` requests in any window of `per` seconds, evenly spaced; can be paused.

    `rate` None: no limit, but a pause still holds every request back.
    """

    def __init__(
        self, rate: float | None, per: float = 1.0, *, monotonic: Monotonic = time.monotonic
    ) -> None:
        if rate is not None and rate <= 0:
            raise ValueError("rate must be positive")
        self.limit = max(1, math.floor(rate * per)) if rate is not None else None
        self.window = per + MARGIN
        self.spacing = 1 / rate if rate is not None else 0.0
        self._now = monotonic
        self._starts: deque[Slot] = deque()
        self._paused_until = 0.0
        self._paused_at = -math.inf
        self._waiters: list[tuple[int, int, asyncio.Future[Slot]]] = []
        self._arrivals = itertools.count()
        self._granting: asyncio.Task[None] | None = None

    def pause(self, seconds: float) -> None:
        """No request before `seconds` from now (a 429's retry_after).

        Slots granted until now and not yet used are void (see `superseded`).
        """
        now = self._now()
        self._paused_until = max(self._paused_until, now + seconds)
        self._paused_at = now

    def paused_for(self) -> float:
        """Seconds the pause still runs (0: not paused)."""
        return max(0.0, self._paused_until - self._now())

    def superseded(self, slot: Slot) -> bool:
        """A pause began after `slot` was granted: the request must not leave on it."""
        return slot.reserved <= self._paused_at

    def give_back(self, slot: Slot) -> None:
        """Forget a slot whose request never left."""
        with contextlib.suppress(ValueError):  # already out of the window
            self._starts.remove(slot)

    def delay(self) -> float:
        """Seconds until the next request may start (0: now)."""
        now = self._now()
        # The log is in order of reservation, but stamps (when a request left, when its
        # answer came) need not be: a slot leaves the window by its own stamp.
        if any(now - slot.at >= self.window for slot in self._starts):
            self._starts = deque(slot for slot in self._starts if now - slot.at < self.window)
        wait = self._paused_until - now
        if self._starts and self.limit is not None:
            # Spacing runs from the reservations, so a slow database write before one send
            # does not push every later send back; the window counts real send times.
            wait = max(wait, self._starts[-1].reserved + self.spacing - now)
            if len(self._starts) >= self.limit:
                # The window frees up when the limit-th latest stamp leaves it.
                nth_latest = heapq.nlargest(self.limit, (slot.at for slot in self._starts))[-1]
                wait = max(wait, nth_latest + self.window - now)
        return max(0.0, wait)

    async def acquire(
        self, stopping: asyncio.Event | None = None, *, priority: int = NORMAL
    ) -> Slot | None:
        """Wait for a slot and take it; None (no slot taken) when `stopping` is set first.

        Waiters of a lower `priority` number go first (PACED, VOIDED, NORMAL).
        """
        granted: asyncio.Future[Slot] = asyncio.get_running_loop().create_future()
        entry = (priority, next(self._arrivals), granted)
        heapq.heappush(self._waiters, entry)
        if self._granting is None or self._granting.done():
            self._granting = asyncio.create_task(self._grant())
        waits: set[asyncio.Future[Any]] = {granted}
        if stopping is not None:
            waits.add(asyncio.ensure_future(stopping.wait()))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits - {granted}:
                waiting.cancel()
            if not granted.done() or (stopping is not None and stopping.is_set()):
                # Stopping, or this task was cancelled: the slot, if any, was never used.
                if granted.done() and not granted.cancelled():
                    self.give_back(granted.result())
                granted.cancel()
        return None if granted.cancelled() else granted.result()

    async def _grant(self) -> None:
        """Hand out slots to the waiters in turn, as the window and the pause allow."""
        waiters = self._waiters
        while True:
            while waiters and waiters[0][2].done():
                heapq.heappop(waiters)  # a waiter that stopped waiting
            if not waiters:
                return
            if (wait := self.delay()) > 0:
                await asyncio.sleep(wait)
                continue
            _, _, granted = heapq.heappop(waiters)
            slot = Slot(self._now())
            self._starts.append(slot)
            granted.set_result(slot)


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

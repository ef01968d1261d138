"""The dispatcher: claims due messages and sends each through the first channel that works.

For each message: pick the first channel of the plan (from where it stands) that has the
client's address, consent and no mark of being unreachable; advertising waits out the
night and takes a slot of the client's frequency cap; then wait for the channel's rate
limits (and the sender account's daily limit), record the attempt as open, send, and record
the outcome. Transient errors retry the same channel with backoff; permanent ones fall
through to the next channel. A halted channel (no money, credentials refused) rests: its
messages wait without losing a try, and staff are alerted once per halt.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import time as clock_time
from typing import Any, TypeGuard
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway import lifecycle, ratelimit, receipts
from gateway.alerts import Alerts, LogAlerts
from gateway.channels import (
    CONTACTS,
    Channel,
    Halted,
    Outgoing,
    Permanent,
    Sender,
    SendResult,
    Sent,
    Transient,
    UnknownAccount,
)
from gateway.consent import ADVERTISING, allowed, refusal
from gateway.outbox import (
    DAILY_LIMIT,
    FAILED,
    HALTED,
    PACED,
    QUIET_HOURS,
    RETRY,
    SENT,
    SKIPPED,
)
from gateway.quiet import Night, QuietHours, morning_after
from gateway.ratelimit import KeyedRateLimiter, RateLimiter, Slot
from gateway.tally import SendTally
from storage.outbox import Message

log = logging.getLogger("autoloyal.dispatch")

Clock = Callable[[], datetime]
"""Aware UTC now; tests pass a fake one."""
REPORT_SECONDS = 60.0
"""How often a working dispatcher logs what it sent."""
PACED_WAIT_IN_HAND = 60.0
"""Seconds of a server's pause a paced message waits out in hand (at most half its lease);
a longer one queues it."""
PACED_IN_A_ROW = 10
"""Paced answers to one message before it is treated as a failed try after all."""
_NO_ADDRESS = {
    "telegram": "not linked to Telegram",
    "sms": "no phone number",
    "email": "no e-mail address",
}


@dataclass(frozen=True, slots=True)
class DispatchPolicy:
    """The rules from `[outbox]` and `[company] quiet_hours`."""

    default_timezone: str = "Europe/Moscow"
    night: Night | None = None
    max_attempts: int = 5
    retry_base_seconds: float = 30.0
    retry_max_seconds: float = 3600.0
    lease_seconds: float = 300.0
    advertising_limit: int = 2
    advertising_window_days: int = 7
    poll_seconds: float = 1.0
    max_in_flight: int = 64
    halt_seconds: float | None = None
    """How long a halted channel rests (None: as long as the adapter says)."""

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.lease_seconds)

    def backoff(self, tries: int, rng: random.Random) -> float:
        """Seconds before try number `tries` + 1: doubling from the base, capped, +-20 %."""
        delay = min(self.retry_max_seconds, self.retry_base_seconds * 2 ** (tries - 1))
        return float(delay * rng.uniform(0.8, 1.2))


@dataclass(frozen=True, slots=True)
class _Route:
    channel_index: int
    channel: str
    address: str
    sender: Sender
    history: str | None = None
    """The message's reason with the channels skipped on the way here; saved as it begins."""


@dataclass(frozen=True, slots=True)
class _Day:
    start: datetime
    end: datetime


class Dispatcher:
    """One worker. On PostgreSQL several may run; on SQLite run one."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        channels: Mapping[str, Channel],
        policy: DispatchPolicy,
        clock: Clock,
        *,
        worker: str = "dispatcher",
        rng: random.Random | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        alerts: Alerts | None = None,
    ) -> None:
        self.sessions = sessions
        self.channels = dict(channels)
        self.policy = policy
        self.clock = clock
        self.worker = worker
        self.rng = rng or random.Random()
        self.alerts = alerts or LogAlerts()
        self._halted: dict[str, datetime] = {}
        """Channels resting after a Halted answer, until when (by `clock`)."""
        self._alerted: set[str] = set()
        """Channels staff were told are halted, and not yet that they work again."""
        self.stopping = asyncio.Event()
        self.tally = SendTally()
        self._monotonic = monotonic
        # Every channel has one, unlimited when it has no rate: a server's pause needs a gate.
        self._limits = {
            name: RateLimiter(channel.rate_per_second or None, monotonic=monotonic)
            for name, channel in self.channels.items()
        }
        self._address_limits = {
            name: KeyedRateLimiter(channel.address_rate_per_second, monotonic=monotonic)
            for name, channel in self.channels.items()
            if channel.address_rate_per_second
        }

    async def run(self, stop: asyncio.Event) -> None:
        """Work until `stop` is set; then finish the requests under way and return."""
        tasks: set[asyncio.Task[None]] = set()
        stop_waiter = asyncio.ensure_future(stop.wait())
        next_reap = 0.0
        next_report = time.monotonic() + REPORT_SECONDS
        try:
            await self.recheck_quiet_hours()
            while not stop.is_set():
                if time.monotonic() >= next_report:
                    self.report()
                    next_report = time.monotonic() + REPORT_SECONDS
                try:
                    if time.monotonic() >= next_reap:
                        await self.reap()
                        next_reap = time.monotonic() + max(self.policy.lease_seconds / 10, 1.0)
                    free = self.policy.max_in_flight - len(tasks)
                    claimed = await self._claim(free) if free > 0 else []
                except Exception:
                    # A database that went away comes back; the worker waits for it.
                    log.exception(
                        "cannot claim messages; trying again in %g s", self.policy.poll_seconds
                    )
                    claimed = []
                for message_id in claimed:
                    task = asyncio.create_task(self._deliver(message_id))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                if claimed and len(claimed) == free:
                    continue
                waiting: set[asyncio.Future[Any]] = {stop_waiter, *tasks}
                await asyncio.wait(
                    waiting, timeout=self.policy.poll_seconds, return_when=asyncio.FIRST_COMPLETED
                )
        finally:
            self.stopping.set()
            stop_waiter.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            self.report()

    def report(self) -> None:
        """Log what this worker did since the last report (run does so once a minute)."""
        if (line := self.tally.take()) is not None:
            log.info("%s: %s", self.worker, line)

    async def recheck_quiet_hours(self) -> int:
        """Messages waiting out the night are due again at once where quiet hours as now
        configured do not hold them (turned off, or shorter), and later where they end later."""
        now = self.clock()
        night = self.policy.night
        quiet = None if night is None else QuietHours(night, self.policy.default_timezone)
        async with self.sessions() as session, session.begin():
            moved = await lifecycle.wake_quiet(session, now, quiet)
        if moved:
            log.info("quiet hours as configured now: %d waiting message(s) rescheduled", moved)
        return moved

    async def drain(self) -> int:
        """Send everything due now, one batch after another; return how many were handled."""
        await self.recheck_quiet_hours()
        handled = 0
        while claimed := await self._claim(self.policy.max_in_flight):
            await asyncio.gather(*(self._deliver(message_id) for message_id in claimed))
            handled += len(claimed)
        return handled

    async def reap(self) -> tuple[int, int]:
        async with self.sessions() as session, session.begin():
            unknown, requeued = await lifecycle.reap(session, self.clock())
        if unknown or requeued:
            log.warning(
                "expired leases: %d message(s) now unknown (a request may have gone out), "
                "%d queued again (none had)",
                unknown,
                requeued,
            )
        return unknown, requeued

    async def close(self) -> None:
        for channel in self.channels.values():
            await channel.close()

    async def _claim(self, limit: int) -> list[int]:
        async with self.sessions() as session, session.begin():
            return await lifecycle.claim(
                session, self.worker, self.clock(), self.policy.lease, limit
            )

    async def _deliver(self, message_id: int) -> None:
        try:
            route = await self._route(message_id)
            if route is None:
                return
            turn = await self._take_turn(message_id, route)
            if turn is None:
                return
            outgoing, slots = turn
            channel = self.channels[route.channel]
            result = await self._send(channel, outgoing, slots)
            for _ in range(PACED_IN_A_ROW):
                if not _is_pacing(result):
                    break
                paced_slots = await self._paced(message_id, route, result)
                if paced_slots is None:
                    return
                result = await self._send(channel, outgoing, paced_slots)
            await self._record(message_id, outgoing, result)
        except Exception:
            # The message stays in `sending`; its lease runs out and `reap` settles it.
            log.exception("message %d: delivery failed", message_id)

    async def _send(self, channel: Channel, outgoing: Outgoing, slots: list[Slot]) -> SendResult:
        """Send on the slots taken; they count from when the request leaves, then from when
        its answer came: the server counted it at some moment in between, so a loaded loop
        or network that delays a request can never crowd more into one of its seconds."""
        for slot in slots:
            slot.stamp(self._monotonic())
        try:
            return await channel.send(outgoing)
        finally:
            for slot in slots:
                slot.stamp(self._monotonic())

    async def _take_turn(
        self, message_id: int, route: _Route
    ) -> tuple[Outgoing, list[Slot]] | None:
        """Wait for the rate limits, record the attempt as open; None when the message was
        settled, released or taken away meanwhile.

        A pause that began after the slots were granted voids them: the request waits it
        out (ahead of newcomers) rather than leave inside the server's pause.
        """
        limiters = self._limiters_of(route.channel, route.address)
        slots = await self._wait_for_slots(limiters, ratelimit.NORMAL)
        if slots is not None and self._superseded(limiters, slots):
            slots = await self._wait_for_slots(limiters, ratelimit.VOIDED)
        if slots is None:
            async with self.sessions() as session, session.begin():
                await lifecycle.release(session, [message_id], self.worker, self.clock())
            return None
        outgoing = await self._begin(message_id, route)
        if outgoing is None:
            self._give_back(limiters, slots)
            return None
        while self._superseded(limiters, slots):
            # The attempt is open while this waits: a crash now ends `unknown`, never doubled.
            slots = await self._wait_for_slots(limiters, ratelimit.VOIDED)
            if slots is None:
                async with self.sessions() as session, session.begin():
                    await lifecycle.withdraw_attempt(session, message_id, self.clock())
                return None
        return outgoing, slots

    async def _paced(self, message_id: int, route: _Route, result: Transient) -> list[Slot] | None:
        """Record a paced request and pause the channel; the slot of the next attempt, once
        it is recorded and its turn has come, first after the pause; None when the message
        went back to the queue (a long pause, or stopping).

        The next attempt is opened before the pause runs out, so nothing stands between its
        turn and the request: a crash during the pause ends it `unknown`, never doubled.
        The chat's own limit is not asked again: the server took nothing to that chat.
        """
        pause = result.retry_after or 0.0
        limiter = self._limits[route.channel]
        limiter.pause(pause)
        self.tally.add(route.channel, "paced")
        now = self.clock()
        async with self.sessions() as session, session.begin():
            message = await session.get_one(Message, message_id, populate_existing=True)
            attempt = await lifecycle.open_attempt(session, message_id)
            lifecycle.close_attempt(attempt, lifecycle.ATTEMPT_TRANSIENT, now, error=result.error)
            message.attempts += 1
            message.last_error = result.error
            if pause > min(PACED_WAIT_IN_HAND, self.policy.lease_seconds / 2):
                due = now + timedelta(seconds=pause)
                await lifecycle.requeue(session, message, due, now, PACED)
                return None
            # The lease outlasts the pause from here, however many pauses come in a row.
            if not await lifecycle.hold(session, message_id, self.worker, now, self.policy.lease):
                return None
            await lifecycle.begin_attempt(
                session, message, route.channel_index, route.address, now, route.sender.name
            )
        slots = await self._wait_for_slots([limiter], ratelimit.PACED)
        if slots is None:
            async with self.sessions() as session, session.begin():
                await lifecycle.withdraw_attempt(session, message_id, self.clock())
        return slots

    async def _route(self, message_id: int) -> _Route | None:
        """Choose the channel, or settle the message without one (skip, defer, cap)."""
        now = self.clock()
        async with self.sessions() as session, session.begin():
            if not await lifecycle.hold(session, message_id, self.worker, now, self.policy.lease):
                return None
            claimed = await lifecycle.load(session, message_id)
            message = claimed.message
            route, reasons = self._first_open_channel(claimed)
            history = "; ".join(part for part in (message.reason, *reasons) if part) or None
            if route is None:
                state = FAILED if message.attempts else SKIPPED
                await lifecycle.settle(session, message, state, now, reason=history)
                return None
            if (resting := self._resting(route.channel, now)) is not None:
                await lifecycle.requeue(session, message, resting, now, HALTED)
                return None
            if message.kind == ADVERTISING:
                zone = ZoneInfo(claimed.timezone or self.policy.default_timezone)
                morning = morning_after(now, zone, self.policy.night)
                if morning is not None:
                    await lifecycle.requeue(session, message, morning, now, QUIET_HOURS)
                    return None
                if message.capped_at is None and not await self._cap_allows(session, message, now):
                    cap = (
                        f"frequency cap: {self.policy.advertising_limit} advertising message(s) "
                        f"in {self.policy.advertising_window_days} days already"
                    )
                    await lifecycle.settle(session, message, SKIPPED, now, reason=cap)
                    return None
            return _Route(route.channel_index, route.channel, route.address, route.sender, history)

    def _resting(self, channel: str, now: datetime) -> datetime | None:
        """Until when a halted channel rests; None when it may send."""
        until = self._halted.get(channel)
        return until if until is not None and until > now else None

    def _first_open_channel(self, claimed: lifecycle.Claimed) -> tuple[_Route | None, list[str]]:
        message = claimed.message
        reasons: list[str] = []
        for index in range(message.channel_index, len(claimed.plan)):
            channel = claimed.plan[index]
            address = claimed.contacts.get(CONTACTS.get(channel, ""))
            mark = claimed.unreachable.get(channel)
            if channel not in self.channels:
                reasons.append(f"{channel}: the channel is not configured")
            elif not address:
                reasons.append(f"{channel}: {_NO_ADDRESS.get(channel, 'no address')}")
            elif channel not in message.content:
                reasons.append(f"{channel}: no address yet when the message was queued")
            elif mark is not None and mark.address == address:
                reasons.append(f"{channel}: unreachable ({mark.reason})")
            elif not allowed(claimed.consents, channel, message.kind):
                reasons.append(refusal(claimed.consents, channel, message.kind))
            else:
                try:
                    sender = self.channels[channel].sender(message.account)
                except UnknownAccount as exc:
                    reasons.append(f"{channel}: {exc}")
                    continue
                return _Route(index, channel, address, sender), reasons
        return None, reasons

    async def _cap_allows(self, session: AsyncSession, message: Message, now: datetime) -> bool:
        policy = self.policy
        if policy.advertising_limit <= 0 or policy.advertising_window_days <= 0:
            return True
        window = timedelta(days=policy.advertising_window_days)
        return await lifecycle.take_cap_slot(
            session, message, now, policy.advertising_limit, window
        )

    def _limiters_of(self, channel: str, address: str) -> list[RateLimiter]:
        """The chat's limiter (where the channel has one), then the channel's."""
        per_address = self._address_limits.get(channel)
        limiters = [per_address.of(address)] if per_address is not None else []
        return [*limiters, self._limits[channel]]

    async def _wait_for_slots(
        self, limiters: list[RateLimiter], priority: int
    ) -> list[Slot] | None:
        """Wait until every limiter allows a request; None: stopping."""
        slots: list[Slot] = []
        for limiter in limiters:
            slot = await limiter.acquire(self.stopping, priority=priority)
            if slot is None:
                self._give_back(limiters, slots)
                return None
            slots.append(slot)
        return slots

    @staticmethod
    def _superseded(limiters: list[RateLimiter], slots: list[Slot]) -> bool:
        """A pause began after the slots were granted; they are given back if so."""
        if not any(limiter.superseded(slot) for limiter, slot in zip(limiters, slots, strict=True)):
            return False
        Dispatcher._give_back(limiters, slots)
        return True

    @staticmethod
    def _give_back(limiters: list[RateLimiter], slots: list[Slot]) -> None:
        for limiter, slot in zip(limiters, slots, strict=False):
            limiter.give_back(slot)

    async def _begin(self, message_id: int, route: _Route) -> Outgoing | None:
        now = self.clock()
        async with self.sessions() as session, session.begin():
            if not await lifecycle.hold(session, message_id, self.worker, now, self.policy.lease):
                return None  # cancelled or reaped while it waited for a slot
            message = await session.get_one(Message, message_id, populate_existing=True)
            if (resting := self._resting(route.channel, now)) is not None:
                # The channel halted while this message waited for its rate-limit slot.
                await lifecycle.requeue(session, message, resting, now, HALTED)
                return None
            limit = route.sender.daily_limit
            if limit is not None:
                day = self._local_day(now)
                used = await lifecycle.sends_since(session, route.sender.name, day.start)
                if used >= limit:
                    why = f"{route.sender.name}: the daily limit of {limit} is used up"
                    await lifecycle.requeue(
                        session, message, day.end, now, DAILY_LIMIT, last_error=why
                    )
                    return None
            await lifecycle.begin_attempt(
                session, message, route.channel_index, route.address, now, route.sender.name
            )
            message.reason = route.history
            return Outgoing(
                message_id=message.id,
                client_id=message.client_id,
                channel=route.channel,
                address=route.address,
                kind=message.kind,
                content=message.content[route.channel],
                account=message.account,
            )

    def _local_day(self, now: datetime) -> _Day:
        """The company's calendar day around `now`, as UTC bounds: daily limits reset at
        local midnight."""
        zone = ZoneInfo(self.policy.default_timezone)
        today = now.astimezone(zone).date()
        start = datetime.combine(today, clock_time(), zone)
        end = datetime.combine(today + timedelta(days=1), clock_time(), zone)
        return _Day(start, end)

    async def _record(self, message_id: int, outgoing: Outgoing, result: SendResult) -> None:
        alert = await self._settle(message_id, outgoing, result)
        if alert is not None:
            # Told after the transaction: a slow staff chat must not hold the outbox's lock.
            await self.alerts.alert(alert)

    async def _settle(self, message_id: int, outgoing: Outgoing, result: SendResult) -> str | None:
        """Record the outcome; returns what staff must hear of it, if anything."""
        now = self.clock()
        async with self.sessions() as session, session.begin():
            message = await session.get_one(Message, message_id, populate_existing=True)
            attempt = await lifecycle.open_attempt(session, message_id)
            message.attempts += 1
            if isinstance(result, Sent):
                sender = result.sender or attempt.sender
                lifecycle.close_attempt(attempt, lifecycle.ATTEMPT_SENT, now, result.provider_id)
                attempt.sender, attempt.cost = sender, result.cost
                await lifecycle.settle(
                    session,
                    message,
                    SENT,
                    now,
                    sent_at=now,
                    provider_message_id=result.provider_id,
                    sender=sender,
                    cost=result.cost,
                    last_error=None,
                )
                self.tally.add(outgoing.channel, "sent")
                if result.provider_id and sender:
                    # A receipt can overtake the send: the provider called back before this
                    # transaction recorded the id. It waited; it applies now.
                    await receipts.apply_waiting(session, message, sender, now)
                if outgoing.channel in self._alerted:
                    self._alerted.discard(outgoing.channel)
                    return f"{outgoing.channel} sends again."
                return None
            error = result.error
            message.last_error = error
            if isinstance(result, Halted):
                lifecycle.close_attempt(attempt, lifecycle.ATTEMPT_HALTED, now, error=error)
                self.tally.add(outgoing.channel, "halted")
                pause = self.policy.halt_seconds or result.pause
                resume = now + timedelta(seconds=pause)
                self._halted[outgoing.channel] = resume
                await lifecycle.requeue(session, message, resume, now, HALTED)
                if outgoing.channel in self._alerted:
                    return None
                self._alerted.add(outgoing.channel)
                return (
                    f"{outgoing.channel} stopped sending: {error}. Its messages wait; "
                    f"it is tried again every {pause / 60:g} min."
                )
            if isinstance(result, Permanent):
                lifecycle.close_attempt(attempt, lifecycle.ATTEMPT_PERMANENT, now, error=error)
                self.tally.add(outgoing.channel, "failed")
                if result.unreachable:
                    await lifecycle.mark_unreachable(
                        session, message.client_id, outgoing.channel, outgoing.address, error, now
                    )
                await self._fall_through(session, message, f"{outgoing.channel}: {error}", now)
                return None
            lifecycle.close_attempt(attempt, lifecycle.ATTEMPT_TRANSIENT, now, error=error)
            self.tally.add(outgoing.channel, "retry")
            if result.retry_after:
                self._limits[outgoing.channel].pause(result.retry_after)
            message.channel_attempts += 1
            if message.channel_attempts >= self.policy.max_attempts:
                gave_up = (
                    f"{outgoing.channel}: gave up after {message.channel_attempts} tries "
                    f"({result.error})"
                )
                await self._fall_through(session, message, gave_up, now)
                return None
            delay = max(
                self.policy.backoff(message.channel_attempts, self.rng), result.retry_after or 0
            )
            due = now + timedelta(seconds=delay)
            await lifecycle.requeue(session, message, due, now, RETRY)
            return None

    async def _fall_through(
        self, session: AsyncSession, message: Message, why: str, now: datetime
    ) -> None:
        message.reason = "; ".join(part for part in (message.reason, why) if part)
        next_index = message.channel_index + 1
        if next_index >= len(message.plan.split(",")):
            await lifecycle.settle(session, message, FAILED, now)
            return
        await lifecycle.requeue(
            session, message, now, now, channel_index=next_index, channel_attempts=0
        )


def _is_pacing(result: SendResult) -> TypeGuard[Transient]:
    """The server asked us to slow down and said for how long (429 with retry_after)."""
    return isinstance(result, Transient) and result.retry_after is not None

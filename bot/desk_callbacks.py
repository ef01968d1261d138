"""Callback data of the staff chat's booking desk and calls register, as typed factories.

A callback arrives from anyone who can forge one: the handlers check the permission flag,
the member's branch and their own conversation's state before acting on what it carries.
Every packed value stays well under Telegram's 64 bytes: codes are at most 32 characters,
a day is ISO (10), a start is a Unix time (10 digits), a source is its index in the list.
"""

from __future__ import annotations

from aiogram.filters.callback_data import CallbackData


class DeskDay(CallbackData, prefix="dkd"):
    """Show the bookings of `day` (ISO date)."""

    day: str


class DeskAttend(CallbackData, prefix="dka"):
    """Mark a booking: `action` "arrive" or "no_show"; `day` is the list to show after."""

    booking: int
    action: str
    day: str


class DeskBook(CallbackData, prefix="dkb"):
    """A step of booking a client by phone. `step`: "new" (create the client: value "yes"),
    "service" (a service code), "branch" (a branch code), "day" (ISO date; "" back to the
    days), "at" (a start, Unix seconds), "ok" (book it), "cancel"."""

    step: str
    value: str = ""


class DeskCall(CallbackData, prefix="dkc"):
    """A step of recording a call. `step`: "purpose" (a purpose), "source" (the index in
    `[contacts] sources`; -1 skips), "outcome" (an outcome), "book" (go on to book the
    client), "save" (record it booked without booking here), "cancel"."""

    step: str
    value: str = ""

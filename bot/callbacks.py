"""Callback data of every inline button, as typed factories (never hand-split strings).

A callback arrives from anyone who can forge one, so every handler checks the ids it
carries against the user's own records before acting (a visit, a car, a complaint).
"""

from __future__ import annotations

from aiogram.filters.callback_data import CallbackData


class SurveyTap(CallbackData, prefix="sv"):
    """An answer to a visit survey: `question` is "csat" or "nps"; "comment" with score -1
    skips the comment."""

    visit: int
    question: str
    score: int


class CarAction(CallbackData, prefix="car"):
    """`action`: "km" (report the odometer), "add" (a new car; car 0)."""

    action: str
    car: int


class SettingTap(CallbackData, prefix="set"):
    """`what`: "ads" or "service" for a channel, "lang" for the language (channel holds it),
    "menu" to show the settings again."""

    what: str
    channel: str
    on: bool


class AdsAnswer(CallbackData, prefix="ads"):
    """The answer to "may we send you offers?" asked after linking."""

    yes: bool


class ComplaintTap(CallbackData, prefix="cmp"):
    """Staff act on a complaint: `action` "take" or "resolve"."""

    action: str
    complaint: int


class Cancel(CallbackData, prefix="x"):
    """Leave the step in hand (odometer, a new car, a comment) and show the menu."""

    step: str


class BookCar(CallbackData, prefix="bkc"):
    """The car to book for; 0: another car, not on record."""

    car: int


class BookService(CallbackData, prefix="bks"):
    """A `[[service]]` code."""

    service: str


class BookBranch(CallbackData, prefix="bkb"):
    """A `[[branch]]` code."""

    branch: str


class BookMonth(CallbackData, prefix="bkm"):
    """Turn the calendar to a month: YYYYMM."""

    month: int


class BookDay(CallbackData, prefix="bkd"):
    """A day of the calendar: YYYYMMDD."""

    day: int


class BookIdle(CallbackData, prefix="bki"):
    """A calendar cell that books nothing: `why` is "full", "closed" or "blank"."""

    why: str


class BookTime(CallbackData, prefix="bkt"):
    """A start, in unix seconds (UTC): a free start of the day, or an alternative offered
    when the chosen one was taken."""

    at: int


class BookStep(CallbackData, prefix="bk"):
    """A step of the booking conversation: "days" (back to the calendar), "nocomment",
    "confirm", "cancel", "list" (the client's bookings)."""

    action: str


class MyBooking(CallbackData, prefix="mbk"):
    """The client acts on their own booking: "cancel" (asks first), "cancel_yes", "move"."""

    action: str
    booking: int


class StaffBooking(CallbackData, prefix="sbk"):
    """Staff act on a booking card: "confirm", "decline", "move" (shows new times), "to" (move
    to `at`, unix seconds), "card" (back to the card)."""

    action: str
    booking: int
    at: int = 0

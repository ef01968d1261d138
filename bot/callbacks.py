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

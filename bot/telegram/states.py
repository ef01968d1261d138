"""The steps of the bot's conversations, as aiogram FSM states."""

from __future__ import annotations

from aiogram.fsm.state import State, StatesGroup


class Onboarding(StatesGroup):
    contact = State()
    """Waiting for the phone; the deep link that brought them is kept in the state data."""


class Odometer(StatesGroup):
    km = State()


class NewCar(StatesGroup):
    answer = State()
    """One question at a time; the step and the answers so far are in the state data."""


class SurveyComment(StatesGroup):
    text = State()


class Resolution(StatesGroup):
    note = State()
    """A member of staff is writing how a complaint was resolved."""

"""My cars: the list with the forecast, reporting the odometer, adding a car step by step."""

from __future__ import annotations

import re
from typing import Any

from aiogram import F, Router
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message

from bot.callbacks import Cancel, CarAction
from bot.screens import cars as screens
from bot.screens.cars import NEW_CAR_STEPS
from bot.telegram import render
from bot.telegram.middlewares import Who, require_client
from bot.telegram.services import BotServices
from bot.telegram.states import NewCar, Odometer
from bot.texts import Texts
from crm.errors import Conflict, DomainError
from crm.garage import NewCar as CarInput
from crm.garage import OdometerRefused, add_car, client_cars, report_odometer

_NUMBER = re.compile(r"^\s*(\d{1,3}(?:[\s.,]\d{3})+|\d{1,9})\s*(?:км|km)?\.?\s*$", re.IGNORECASE)


async def show_cars(services: BotServices, message: Message, client_id: int, t: Texts) -> None:
    async with services.read() as session:
        garage = await client_cars(
            session, services.maintenance, client_id, services.moment().today
        )
    await render.answer(message, screens.cars(t, garage), t)


def read_km(text: str | None) -> int | None:
    """ "45000", "45 000", "45.000 км" -> 45000; None when it is not a plain number."""
    found = _NUMBER.match(text or "")
    return int(re.sub(r"\D", "", found.group(1))) if found else None


def make_router(services: BotServices) -> Router:
    router = require_client(Router(name="cars"), services)

    @router.callback_query(CarAction.filter(F.action == "km"))
    async def ask_km(
        query: CallbackQuery, callback_data: CarAction, state: FSMContext, who: Who, t: Texts
    ) -> None:
        assert who.client_id is not None
        async with services.read() as session:
            garage = await client_cars(
                session, services.maintenance, who.client_id, services.moment().today
            )
        car = next((c for c in garage if c.car_id == callback_data.car), None)
        await query.answer()
        if car is None or not isinstance(query.message, Message):  # not theirs: say nothing of it
            return
        await state.set_state(Odometer.km)
        await state.update_data(car=car.car_id)
        await render.answer(query.message, screens.ask_km(t, car), t)

    @router.message(Odometer.km)
    async def km(message: Message, state: FSMContext, who: Who, t: Texts) -> None:
        assert who.client_id is not None
        value = read_km(message.text)
        if value is None:
            await render.answer(message, screens.not_a_number(t), t)
            return
        car_id = int((await state.get_data()).get("car") or 0)
        try:
            async with services.write() as session:
                car = await report_odometer(
                    session,
                    services.maintenance,
                    who.client_id,
                    car_id,
                    value,
                    services.moment(),
                    max_daily_km=services.max_daily_km,
                )
        except OdometerRefused as refused:
            if refused.most_km is None:
                reason = screens.km_too_low(
                    t, refused.last_km, t.date(refused.last_read_on, "dd.MM.yyyy")
                )
            else:
                reason = screens.km_too_high(t, refused.most_km)
            await render.answer(message, screens.km_refused(t, reason), t)
            return
        except DomainError:
            await render.answer(message, screens.not_a_number(t), t)
            return
        await state.clear()
        await render.answer(message, screens.km_saved(t, car), t)

    @router.callback_query(CarAction.filter(F.action == "add"))
    async def start_adding(query: CallbackQuery, state: FSMContext, t: Texts) -> None:
        await query.answer()
        await state.set_state(NewCar.answer)
        await state.set_data({"step": NEW_CAR_STEPS[0]})
        if isinstance(query.message, Message):
            await render.answer(query.message, screens.ask_new_car(t, NEW_CAR_STEPS[0]), t)

    @router.callback_query(NewCar.answer, CarAction.filter(F.action == "skip"))
    async def skip(query: CallbackQuery, state: FSMContext, who: Who, t: Texts) -> None:
        await query.answer()
        if isinstance(query.message, Message):
            await _next_step(query.message, state, who, t, None)

    @router.message(NewCar.answer, F.text)
    async def car_answer(message: Message, state: FSMContext, who: Who, t: Texts) -> None:
        await _next_step(message, state, who, t, (message.text or "").strip())

    async def _next_step(
        message: Message, state: FSMContext, who: Who, t: Texts, text: str | None
    ) -> None:
        assert who.client_id is not None
        data: dict[str, Any] = await state.get_data()
        step = str(data.get("step") or NEW_CAR_STEPS[0])
        if step not in NEW_CAR_STEPS:
            step = NEW_CAR_STEPS[0]
        if text is None and step in ("make", "model"):
            await render.answer(message, screens.ask_new_car(t, step), t)
            return
        if text is not None and step in ("year", "odometer"):
            number = read_km(text)
            if number is None:
                reason = t._("Please send a number.")
                await render.answer(message, screens.bad_answer(t, reason, step), t)
                return
            data[step] = number
        else:
            data[step] = text
        following = NEW_CAR_STEPS.index(step) + 1
        if following < len(NEW_CAR_STEPS):
            data["step"] = NEW_CAR_STEPS[following]
            await state.set_data(data)
            await render.answer(message, screens.ask_new_car(t, NEW_CAR_STEPS[following]), t)
            return
        car = CarInput(
            make=str(data.get("make") or ""),
            model=str(data.get("model") or ""),
            year=data.get("year"),
            plate=data.get("plate"),
            odometer=data.get("odometer"),
        )
        try:
            async with services.write() as session:
                await add_car(session, who.client_id, car, services.moment())
        except Conflict:
            await state.clear()
            await render.answer(message, screens.plate_taken(t), t)
            return
        except DomainError as error:
            field = {"km": "odometer"}.get(error.field or "", error.field or "")
            field = field if field in NEW_CAR_STEPS else NEW_CAR_STEPS[0]
            data["step"] = field
            await state.set_data(data)
            reason = _why(t, field)
            await render.answer(message, screens.bad_answer(t, reason, field), t)
            return
        await state.clear()
        await render.answer(message, screens.car_added(t), t)
        await show_cars(services, message, who.client_id, t)

    @router.callback_query(Cancel.filter())
    async def cancel(query: CallbackQuery, state: FSMContext, t: Texts) -> None:
        await state.clear()
        await query.answer()
        if isinstance(query.message, Message):
            await render.answer(query.message, screens.cancelled(t), t)

    return router


def _why(t: Texts, field: str) -> str:
    reasons = {
        "make": t._("The make should be a word or two, for example Kia."),
        "model": t._("The model should be a word or two, for example Rio."),
        "year": t._("The year should be between 1950 and next year."),
        "plate": t._("We could not read this number plate. Write it like А123ВС77."),
        "odometer": t._("The mileage should be a number of km, for example 45000."),
    }
    return reasons[field]

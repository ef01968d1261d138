"""/cars: each car with its mileage and the next maintenance, reporting the odometer, and
adding a car."""

from __future__ import annotations

from collections.abc import Sequence

from bot.callbacks import Cancel, CarAction
from bot.screens.ui import Button, Screen, esc
from bot.texts import Texts
from crm.garage import GarageCar


def car_title(car: GarageCar) -> str:
    words = [car.make or "", car.model or ""]
    title = " ".join(w for w in words if w) or "—"
    return f"{title} {car.plate}" if car.plate else title


def cars(t: Texts, garage: Sequence[GarageCar]) -> Screen:
    add = Button(t._("➕ Add a car"), CarAction(action="add", car=0).pack())
    if not garage:
        text = t._(
            "You have no cars with us yet. Add yours, and we will remind you when its "
            "maintenance is due."
        )
        return Screen(text, buttons=[[add]])
    blocks = [_car(t, car) for car in garage]
    buttons = [
        [
            Button(
                t._("📏 Mileage: {car}").format(car=car_title(car)),
                CarAction(action="km", car=car.car_id).pack(),
            )
        ]
        for car in garage
    ]
    return Screen("\n\n".join(blocks), buttons=[*buttons, [add]])


def _car(t: Texts, car: GarageCar) -> str:
    lines = [f"🚗 <b>{esc(car_title(car))}</b>"]
    if car.year:
        lines[0] += f" ({car.year})"
    if car.last_km is not None and car.last_read_on is not None:
        lines.append(
            t._("Mileage: {km} km on {day}").format(
                km=t.number(car.last_km), day=t.date(car.last_read_on, "dd.MM.yyyy")
            )
        )
    else:
        lines.append(t._("Mileage: not known yet"))
    lines.append(_next_service(t, car))
    return "\n".join(lines)


def _next_service(t: Texts, car: GarageCar) -> str:
    forecast = car.forecast
    if forecast is None:
        return t._("Next maintenance: tell us the mileage and we will work it out")
    if forecast.days_left < 0:
        return t._("🔧 Maintenance is <b>overdue</b> since {day}: time to book").format(
            day=t.date(forecast.planned, "dd.MM.yyyy")
        )
    if forecast.base_km is not None:
        return t._("🔧 Next maintenance: by {day} or at {km} km").format(
            day=t.date(forecast.planned, "dd.MM.yyyy"),
            km=t.number(forecast.base_km + forecast.interval_km),
        )
    return t._("🔧 Next maintenance: by {day}").format(day=t.date(forecast.planned, "dd.MM.yyyy"))


def ask_km(t: Texts, car: GarageCar) -> Screen:
    text = t._("What does the odometer of {car} show now? Send the number of km.").format(
        car=esc(car_title(car))
    )
    if car.last_km is not None:
        text += "\n" + t._("The last reading was {km} km.").format(km=t.number(car.last_km))
    return Screen(text, buttons=[[cancel_button(t, "km")]])


def km_saved(t: Texts, car: GarageCar) -> Screen:
    return Screen(t._("Thank you, saved.") + "\n\n" + _car(t, car), menu=True)


def not_a_number(t: Texts) -> Screen:
    return Screen(
        t._("Please send the mileage as a number of km, for example 45000."),
        buttons=[[cancel_button(t, "km")]],
    )


def km_refused(t: Texts, reason: str) -> Screen:
    return Screen(reason, buttons=[[cancel_button(t, "km")]])


def km_too_low(t: Texts, last_km: int, day: str) -> str:
    return t._(
        "The last reading was {km} km on {day}: the odometer cannot show less. "
        "Please check the number."
    ).format(km=t.number(last_km), day=day)


def km_too_high(t: Texts, most: int) -> str:
    return t._(
        "That is more than a car can drive since the last reading (at most {km} km). "
        "Please check the number."
    ).format(km=t.number(most))


NEW_CAR_STEPS = ("make", "model", "year", "plate", "odometer")


def ask_new_car(t: Texts, step: str) -> Screen:
    questions = {
        "make": t._("Which make is your car? For example: Kia"),
        "model": t._("Which model? For example: Rio"),
        "year": t._("Which year was it made? For example: 2019"),
        "plate": t._("What is its number plate? For example: А123ВС77"),
        "odometer": t._("What does the odometer show, in km?"),
    }
    rows = [[cancel_button(t, "car")]]
    if step in ("year", "plate", "odometer"):
        rows.insert(0, [Button(t._("Skip"), CarAction(action="skip", car=0).pack())])
    return Screen(questions[step], buttons=rows)


def plate_taken(t: Texts) -> Screen:
    text = t._(
        "A car with this number plate is already on record. Please contact the service "
        "centre and we will sort it out."
    )
    return Screen(text, menu=True)


def car_added(t: Texts) -> Screen:
    return Screen(
        t._("The car is added. We will remind you when its maintenance is due."), menu=True
    )


def bad_answer(t: Texts, reason: str, step: str) -> Screen:
    screen = ask_new_car(t, step)
    return Screen(reason + "\n\n" + screen.text, buttons=screen.buttons)


def cancelled(t: Texts) -> Screen:
    return Screen(t._("Cancelled."), menu=True)


def cancel_button(t: Texts, step: str) -> Button:
    return Button(t._("✖️ Cancel"), Cancel(step=step).pack())

"""/settings: offers and service messages per channel the client has, and the language."""

from __future__ import annotations

from bot.callbacks import SettingTap
from bot.screens.ui import Button, Screen
from bot.texts import Texts
from crm.preferences import Preferences

LANGUAGE_NAMES = {"ru": "Русский", "en": "English"}


def channel_name(t: Texts, channel: str) -> str:
    names = {"telegram": t._("Telegram"), "sms": t._("SMS"), "email": t._("E-mail")}
    return names.get(channel, channel)


def settings(t: Texts, prefs: Preferences, locale: str) -> Screen:
    lines = [t._("⚙️ <b>Settings</b>"), ""]
    lines.append(
        t._("Offers: promotions and special offers. Service: reminders, bookings, surveys.")
    )
    rows: list[list[Button]] = []
    for channel in prefs.reachable:
        name = channel_name(t, channel)
        ads, service = prefs.advertising[channel], prefs.service[channel]
        offers = t._("📣 Offers by {channel}: on") if ads else t._("📣 Offers by {channel}: off")
        reminders = (
            t._("🔔 Service by {channel}: on") if service else t._("🔔 Service by {channel}: off")
        )
        rows.append([_switch(offers.format(channel=name), "ads", channel, ads)])
        rows.append([_switch(reminders.format(channel=name), "service", channel, service)])
    rows.append(
        [
            Button(
                ("✅ " if code == locale else "") + label,
                SettingTap(what="lang", channel=code, on=True).pack(),
            )
            for code, label in LANGUAGE_NAMES.items()
        ]
    )
    lines.append(t._("Tap a line to switch it."))
    return Screen("\n".join(lines), buttons=rows)


def _switch(label: str, what: str, channel: str, on: bool) -> Button:
    """A line that turns what it shows the other way."""
    return Button(label, SettingTap(what=what, channel=channel, on=not on).pack())


def service_off_warning(t: Texts) -> str:
    return t._("Service messages are off for this channel: you will not get reminders there.")


def language_changed(t: Texts) -> Screen:
    return Screen(t._("Language changed."), menu=True)

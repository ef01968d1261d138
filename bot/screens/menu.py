"""The main menu, help, and what the bot says when it has nothing better to say."""

from __future__ import annotations

from collections.abc import Iterable

from bot.screens.ui import MenuKey, Screen, esc
from bot.texts import Texts
from crm.context import CompanyInfo


def menu_labels(t: Texts) -> dict[MenuKey, str]:
    """The menu's buttons in the client's language, in menu order."""
    return {
        MenuKey.BALANCE: t._("💰 Balance"),
        MenuKey.CARD: t._("💳 Card"),
        MenuKey.CARS: t._("🚗 My cars"),
        MenuKey.BOOK: t._("📅 Book a service"),
        MenuKey.SETTINGS: t._("⚙️ Settings"),
        MenuKey.HELP: t._("❓ Help"),
    }


def menu_lookup(languages: Iterable[Texts]) -> dict[str, MenuKey]:
    """Button text -> key in every language: a client who switched language may still tap
    a keyboard drawn in the old one."""
    return {label: key for t in languages for key, label in menu_labels(t).items()}


def commands(t: Texts) -> list[tuple[str, str]]:
    """The command list Telegram shows beside the input field, in the client's language."""
    return [
        ("start", t._("Start and link your phone")),
        ("balance", t._("Bonus balance")),
        ("card", t._("Discount card with a QR code")),
        ("cars", t._("My cars and maintenance")),
        ("book", t._("Book a service")),
        ("bookings", t._("My bookings")),
        ("settings", t._("Messages and language")),
        ("help", t._("Help")),
    ]


def main_menu(t: Texts, company: CompanyInfo, name: str | None = None) -> Screen:
    if name:
        greeting = t._("{name}, what would you like to do?").format(name=esc(name))
    else:
        greeting = t._("What would you like to do?")
    return Screen(greeting + "\n" + t._("Use the buttons below."), menu=True)


def help_screen(t: Texts, company: CompanyInfo) -> Screen:
    lines = [
        t._("<b>{company}</b>: bonuses, your card and your cars in one place.").format(
            company=esc(company.name)
        ),
        "",
        t._("/balance: bonus balance, tier and what expires soon"),
        t._("/card: your discount card and its QR code to show at the desk"),
        t._("/cars: your cars, their mileage and the next maintenance"),
        t._("/book: book a service"),
        t._("/bookings: your bookings, to cancel or move one"),
        t._("/settings: which messages you get, and the language"),
    ]
    lines += ["", *_contacts(t, company)]
    return Screen("\n".join(lines), menu=True)


def unknown_input(t: Texts) -> Screen:
    return Screen(t._("I didn't get that. Please use the buttons below, or /help."), menu=True)


def apology(t: Texts) -> Screen:
    return Screen(t._("Sorry, something went wrong on our side. Please try again in a minute."))


def slow_down(t: Texts) -> Screen:
    return Screen(t._("Too many messages at once. Please wait a minute and try again."))


def contact_centre(t: Texts, company: CompanyInfo) -> list[str]:
    return _contacts(t, company)


def _contacts(t: Texts, company: CompanyInfo) -> list[str]:
    lines = []
    if company.phone:
        lines.append(t._("📞 Phone: {phone}").format(phone=esc(company.phone)))
    if company.address:
        lines.append(t._("📍 Address: {address}").format(address=esc(company.address)))
    if company.website:
        lines.append(t._("🌐 {website}").format(website=esc(company.website)))
    return lines

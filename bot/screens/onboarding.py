"""Linking by phone: the greeting, the contact request, and every way it can end."""

from __future__ import annotations

from decimal import Decimal

from bot.callbacks import AdsAnswer
from bot.screens.menu import contact_centre
from bot.screens.ui import Button, Screen, esc
from bot.texts import Texts
from crm.context import CompanyInfo


def ask_contact(t: Texts, company: CompanyInfo, name: str | None) -> Screen:
    hello = t._("Hello, {name}!").format(name=esc(name)) if name else t._("Hello!")
    text = "\n\n".join(
        [
            hello + " " + t._("This is the bot of {company}.").format(company=esc(company.name)),
            t._(
                "Share your phone number with the button below: we will find your bonuses, "
                "card and cars."
            ),
        ]
    )
    return Screen(text, ask_contact=t._("📱 Share my phone number"))


def not_own_contact(t: Texts) -> Screen:
    return Screen(
        t._(
            "Please share your own number with the button below, not someone else's "
            "contact: that is how we know it is you."
        ),
        ask_contact=t._("📱 Share my phone number"),
    )


def bad_phone(t: Texts) -> Screen:
    return Screen(
        t._("We could not read this phone number. Please share it with the button below."),
        ask_contact=t._("📱 Share my phone number"),
    )


def linked_elsewhere(t: Texts, company: CompanyInfo) -> Screen:
    lines = [
        t._(
            "This number or this Telegram account is already linked to another profile. "
            "Please contact the service centre and we will sort it out."
        ),
        "",
        *contact_centre(t, company),
    ]
    return Screen("\n".join(lines), remove_keyboard=True)


def welcome(
    t: Texts, name: str | None, *, created: bool, bonus: Decimal | None, referred: bool
) -> Screen:
    if created:
        first = t._("Welcome! We have created your profile.")
    elif name:
        first = t._("Welcome, {name}! Your profile is linked.").format(name=esc(name))
    else:
        first = t._("Welcome! Your profile is linked.")
    lines = [first]
    if bonus:
        lines.append(
            t._("🎁 {amount} in welcome bonuses are on your account.").format(amount=t.money(bonus))
        )
    if referred:
        lines.append(
            t._("Your friend's invitation is noted: you both get bonuses after your first visit.")
        )
    return Screen("\n".join(lines), menu=True)


def already_linked(t: Texts) -> Screen:
    return Screen(t._("Your profile is already linked."), menu=True)


def ask_advertising(t: Texts) -> Screen:
    return Screen(
        t._(
            "May we send you offers and promotions here? You can change this any time in /settings."
        ),
        buttons=[
            [
                Button(t._("✅ Yes, please"), AdsAnswer(yes=True).pack()),
                Button(t._("No, thanks"), AdsAnswer(yes=False).pack()),
            ]
        ],
    )


def advertising_answered(t: Texts, yes: bool) -> Screen:
    if yes:
        return Screen(t._("Done: we will send you offers. /settings changes it."))
    return Screen(t._("Done: no offers, only what concerns your visits. /settings changes it."))


def referral_noted(t: Texts) -> Screen:
    return Screen(
        t._("Your friend's invitation is noted: you both get bonuses after your first visit."),
        menu=True,
    )


def referral_ignored(t: Texts) -> Screen:
    return Screen(
        t._("This invitation link cannot be used for your profile, but you are welcome anyway!"),
        menu=True,
    )

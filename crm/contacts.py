"""Phone numbers and e-mail addresses as people write them, normalised for storage."""

from __future__ import annotations

import re

import phonenumbers


class ContactError(ValueError):
    """A phone number or e-mail address that cannot be used; the message says why."""


_PHONE_SEPARATORS = re.compile(r"[;,/]|\s{2,}")
_EMAIL_SEPARATORS = re.compile(r"[;,\s]+")
# Local part, then a domain of dot-separated labels that neither start nor end with a hyphen.
_EMAIL = re.compile(
    r"^[^@\s.][^@\s]*@(?:[a-z0-9\u0400-\u04ff](?:[a-z0-9\u0400-\u04ff-]*[a-z0-9\u0400-\u04ff])?\.)+"
    r"[a-z\u0400-\u04ff]{2,}$"
)


def normalize_phone(raw: str, region: str = "RU") -> str:
    """Return the number in E.164 ("+79035254560").

    Takes any common notation: "+7 (903) 525-45-60", "8 903 5254560", "9035254560". A cell
    with several numbers or a note ("8 903 525-45-60, 8 495 123-45-67", "8 903 525-45-60
    (жена)") gives its first valid number.
    """
    text = raw.strip()
    if not text:
        raise ContactError("empty phone number")
    parts = [text, *(part.strip() for part in _PHONE_SEPARATORS.split(text))]
    number = next((n for part in parts if (n := _parse(part, region)) is not None), None)
    if number is None:  # numbers amid words: "8 903 525-45-60 (жена)"
        found = phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.VALID)
        number = next((match.number for match in found), None)
    if number is None:
        raise ContactError(f"not a valid phone number {text!r}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _parse(candidate: str, region: str) -> phonenumbers.PhoneNumber | None:
    try:
        number = phonenumbers.parse(candidate, region)
    except phonenumbers.NumberParseException:
        return None
    return number if phonenumbers.is_valid_number(number) else None


def normalize_email(raw: str) -> str:
    """Return the address trimmed and lower-cased; a cell with several gives its first valid
    one; refuse what cannot be an address."""
    text = raw.strip().lower()
    candidates = _EMAIL_SEPARATORS.split(text) if text.count("@") > 1 else [text]
    for candidate in candidates:
        address = candidate.removeprefix("mailto:")
        if _EMAIL.match(address) and ".." not in address:
            return address
    raise ContactError(f"not a valid e-mail address {raw.strip()!r}")

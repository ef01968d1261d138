"""Phone numbers and e-mail addresses as people write them, normalised for storage."""

from __future__ import annotations

import re

import phonenumbers


class ContactError(ValueError):
    """A phone number or e-mail address that cannot be used; the message says why."""


_PHONE_SEPARATORS = re.compile(r"[;,/]|\s{2,}")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]{2,}$")


def normalize_phone(raw: str, region: str = "RU") -> str:
    """Return the number in E.164 ("+79035254560").

    Takes any common notation: "+7 (903) 525-45-60", "8 903 5254560", "9035254560". A cell
    with several numbers ("8 903 525-45-60, 8 495 123-45-67") gives its first valid one.
    """
    text = raw.strip()
    if not text:
        raise ContactError("empty phone number")
    candidates = [text, *(part.strip() for part in _PHONE_SEPARATORS.split(text) if part.strip())]
    for candidate in candidates:
        number = _parse(candidate, region)
        if number is not None:
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    raise ContactError(f"not a valid phone number {raw.strip()!r}")


def _parse(candidate: str, region: str) -> phonenumbers.PhoneNumber | None:
    try:
        number = phonenumbers.parse(candidate, region)
    except phonenumbers.NumberParseException:
        return None
    return number if phonenumbers.is_valid_number(number) else None


def normalize_email(raw: str) -> str:
    """Return the address trimmed and lower-cased; refuse what cannot be an address."""
    text = raw.strip().lower()
    if text.startswith("mailto:"):
        text = text[len("mailto:") :]
    if not _EMAIL.match(text) or ".." in text:
        raise ContactError(f"not a valid e-mail address {raw.strip()!r}")
    return text

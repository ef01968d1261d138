"""Cars as dealers' systems write them: VINs and Russian number plates, normalised."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from sqlalchemy import ColumnElement, func

# Cyrillic letters that look like Latin ones, typed into VINs by mistake, and back for plates.
_CYRILLIC_TO_LATIN = str.maketrans("АВЕКМНОРСТУХ", "ABEKMHOPCTYX")
_LATIN_TO_CYRILLIC = str.maketrans("ABEKMHOPCTYX", "АВЕКМНОРСТУХ")
_RUSSIAN_PLATE = re.compile(r"^[АВЕКМНОРСТУХ]\d{3}[АВЕКМНОРСТУХ]{2}\d{2,3}$")
VIN_MAX = 17
PLATE_MAX = 16


class CarError(ValueError):
    """A VIN or plate that cannot be stored; the message says why."""


def normalize_vin(raw: str) -> str | None:
    """Upper case, no spaces, Cyrillic look-alikes made Latin.

    A 17-character VIN must not contain I, O or Q; hyphens between its groups are dropped.
    Shorter identifiers are kept as they are: Japanese cars carry frame numbers
    ("GX110-6012345") in that column.
    """
    vin = "".join(raw.split()).upper().translate(_CYRILLIC_TO_LATIN)
    if not vin:
        return None
    if len(vin.replace("-", "")) == VIN_MAX:  # "XTA-210990-Y2123456": a VIN typed in groups
        vin = vin.replace("-", "")
    if len(vin) > VIN_MAX:
        raise CarError(f"{raw.strip()!r} is longer than {VIN_MAX} characters")
    if len(vin) == VIN_MAX and not re.fullmatch(r"[A-HJ-NPR-Z0-9]{17}", vin):
        raise CarError(f"{raw.strip()!r} is not a VIN (17 characters without I, O, Q)")
    return vin


def normalize_plate(raw: str) -> str | None:
    """Upper case without spaces; a Russian plate typed in Latin look-alikes ("A123BC77")
    is stored in Cyrillic, the way the state writes it, so a search by plate finds it."""
    plate = re.sub(r"[\s\-]", "", raw).upper()
    plate = re.sub(r"(?<=\d)RUS?$", "", plate)  # the flag printed on plates: "А123ВС 77 RUS"
    if not plate:
        return None
    if len(plate) > PLATE_MAX:
        raise CarError(f"{raw.strip()!r} is longer than {PLATE_MAX} characters")
    cyrillic = plate.translate(_LATIN_TO_CYRILLIC)
    return cyrillic if _RUSSIAN_PLATE.match(cyrillic) else plate


def same_name(column: Any, names: Iterable[str]) -> ColumnElement[bool]:
    """`column` holds one of `names`, ignoring case: "KIA", "Kia", "kIA" are all Kia.

    SQLite's lower() folds Latin letters only, so a Cyrillic make ("ЛАДА", "Лада") is
    matched as written, in upper, lower or title case.
    """
    names = list(names)
    spellings: set[str] = set()
    for name in names:
        spellings |= {name, name.upper(), name.lower(), name.title(), name.capitalize()}
    folded = sorted({name.lower() for name in names})
    matches: ColumnElement[bool] = column.in_(sorted(spellings)) | func.lower(column).in_(folded)
    return matches

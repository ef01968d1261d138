"""How an SMS text splits into segments: GSM-7 or UCS-2, and how many parts a provider bills."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

GSM7 = "gsm-7"
UCS2 = "ucs-2"

# GSM 03.38 / 3GPP TS 23.038 section 6.2.1, default alphabet, one row per high nibble 0x0-0x7.
# Slot 0x1B is the escape to the extension table, not a character, so it is dropped below.
_GSM7_BASIC: frozenset[str] = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅå"  # 0x00-0x0F (0x09 is capital Ç; 0x0A LF, 0x0D CR)
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"  # 0x10-0x1F (Greek capitals: U+0394, U+03A6 ... U+039E)
    " !\"#¤%&'()*+,-./"  # 0x20-0x2F (0x24 is ¤, not $)
    "0123456789:;<=>?"  # 0x30-0x3F
    "¡ABCDEFGHIJKLMNO"  # 0x40-0x4F
    "PQRSTUVWXYZÄÖÑÜ§"  # 0x50-0x5F
    "¿abcdefghijklmno"  # 0x60-0x6F
    "pqrstuvwxyzäöñüà"  # 0x70-0x7F
) - {"\x1b"}

# GSM 03.38 / 3GPP TS 23.038 section 6.2.1.1, default alphabet extension table: each is sent as
# ESC (0x1B) + code, so it costs 2 septets. 0x0A form feed, 0x14 ^, 0x28 {, 0x29 }, 0x2F \,
# 0x3C [, 0x3D ~, 0x3E ], 0x40 |, 0x65 €.
_GSM7_EXTENSION: frozenset[str] = frozenset("\f^{}\\[~]|€")

_GSM7_SINGLE, _GSM7_PART = 160, 153  # a concatenated part loses 7 septets to the UDH
_UCS2_SINGLE, _UCS2_PART = 70, 67  # a concatenated part loses 3 code units to the UDH


@dataclass(frozen=True, slots=True)
class SmsLength:
    """Encoding, size in units (septets or UTF-16 code units), parts, and units per part."""

    encoding: str
    units: int
    segments: int
    per_segment: int

    def __str__(self) -> str:
        """Human summary; "characters" are units, so "€" counts 2 and an emoji counts 2."""
        if self.segments == 0:
            return "empty"
        noun = "character" if self.units == 1 else "characters"
        return (
            f"{self.segments} SMS ({self.encoding.upper()}, {self.units} {noun}, "
            f"{self.per_segment} per part)"
        )


def is_gsm7(text: str) -> bool:
    """True if every character is in the GSM 03.38 basic or extension table ("ç", "’" are not)."""
    return all(char in _GSM7_BASIC or char in _GSM7_EXTENSION for char in text)


def _count_segments(sizes: Iterable[int], single: int, part: int) -> tuple[int, int]:
    """Total units and parts; an item of size 2 is never split, so a part may end one unit short."""
    total = 0
    segments = 1
    used = 0
    for size in sizes:
        total += size
        if used + size > part:
            segments += 1
            used = 0
        used += size
    if total == 0:
        return 0, 0
    return total, (1 if total <= single else segments)


def sms_length(text: str) -> SmsLength:
    """Segments as a phone counts them; one non-GSM character makes the whole text UCS-2."""
    if is_gsm7(text):
        sizes = (2 if char in _GSM7_EXTENSION else 1 for char in text)
        encoding, single, part = GSM7, _GSM7_SINGLE, _GSM7_PART
    else:
        # UTF-16 code units: a character beyond the BMP (most emoji) is a surrogate pair.
        sizes = (2 if ord(char) > 0xFFFF else 1 for char in text)
        encoding, single, part = UCS2, _UCS2_SINGLE, _UCS2_PART
    units, segments = _count_segments(sizes, single, part)
    return SmsLength(encoding, units, segments, single if segments <= 1 else part)


SURE_PER_PART = 33
"""Characters that always fit in a part: no character takes more than 2 units, and a part
holds at least 66 (UCS-2's 67, less the one a 2-unit character cannot straddle)."""


def fits(text: str, parts: int) -> bool:
    """True if `text` goes in at most `parts` parts; a short one is not even counted, so the
    bulk of SMS pass without a character-by-character count."""
    return len(text) <= SURE_PER_PART * parts or sms_length(text).segments <= parts

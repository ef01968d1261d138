"""Visits (work orders) and their kinds, as dealers' systems name them."""

from __future__ import annotations

import re

MAINTENANCE = "maintenance"
REPAIR = "repair"
DIAGNOSTICS = "diagnostics"
TYRES = "tyres"
BODYWORK = "bodywork"
SALE = "sale"
OTHER = "other"
VISIT_KINDS = (MAINTENANCE, REPAIR, DIAGNOSTICS, TYRES, BODYWORK, SALE, OTHER)

# Checked in order: "Кузовной ремонт" is bodywork before it is a repair, "Продажа" of a car
# is a sale. Patterns match word starts, so "ТО-2" and "ТО 60 000" are maintenance.
_KIND_PATTERNS = (
    (BODYWORK, r"кузов|покрас|body"),
    (TYRES, r"шин|колес|tyre|tire|wheel"),
    (DIAGNOSTICS, r"диагност|diagnos"),
    (MAINTENANCE, r"\bто\b|\bто-?\d|техобсл|техническ\w* обслуж|регламент|maint|service\b"),
    (SALE, r"^продаж|\bsale"),
    (REPAIR, r"ремонт|repair|гаранти"),
    (OTHER, r"проч|other|мойк|^$"),
)


def visit_kind(text: str) -> tuple[str, bool]:
    """The kind of a visit from its name in the export, and whether it was recognised.

    Unrecognised names ("Тонировка") are `other`; the import report lists them so that
    the dealer can see nothing is mistaken for a repair.
    """
    name = " ".join(text.split()).casefold().replace("ё", "е")
    if name in VISIT_KINDS:
        return name, True
    for kind, pattern in _KIND_PATTERNS:
        if re.search(pattern, name):
            return kind, True
    return OTHER, False

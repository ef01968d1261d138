"""CSV import of the dealer's exports (canonical headers or a 1C-style export as it comes)."""

from __future__ import annotations

from typing import Any

from crm.importing.base import ImportContext, Importer, run_import
from crm.importing.cars import CarImporter
from crm.importing.clients import ClientImporter
from crm.importing.reader import ImportFileError
from crm.importing.report import ImportReport, Merge, RowError
from crm.importing.visits import VisitImporter

# Importers that need no settings; crm.importing.bonuses.BonusImporter takes the expiry term.
IMPORTERS: dict[str, Importer[Any]] = {
    "clients": ClientImporter(),
    "cars": CarImporter(),
    "visits": VisitImporter(),
}

__all__ = [
    "IMPORTERS",
    "ImportContext",
    "ImportFileError",
    "ImportReport",
    "Importer",
    "Merge",
    "RowError",
    "run_import",
]

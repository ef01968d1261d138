"""Run an import the way the CLI does, against a test database and a fake clock."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

from crm.clock import Clock
from crm.importing import IMPORTERS, ImportContext, ImportReport, run_import
from tests.support.databases import Database

MOSCOW = ZoneInfo("Europe/Moscow")


async def import_file(
    db: Database, clock: Clock, kind: str, path: Path, *, batch_size: int = 2000
) -> ImportReport:
    context = ImportContext(clock=clock, tz=MOSCOW, region="RU", batch_size=batch_size)
    return await run_import(IMPORTERS[kind], path, db.sessions, context)

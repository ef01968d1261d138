"""Importing opening bonus balances: finding the client, sums and expiry, one opening ever."""

from __future__ import annotations

import sqlite3
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from autoloyal.cli import app
from autoloyal.config import parse_settings
from crm.bonuses import OPENING, balance
from crm.cards import issue
from crm.clock import local_today, system_clock
from crm.importing import ImportContext, ImportReport, run_import
from crm.importing.bonuses import BonusImporter
from storage.bonuses import BonusLot, BonusMovement
from storage.models import Client
from tests.support.clock import FakeClock
from tests.support.databases import Database
from tests.support.files import read_csv, write_csv
from tests.support.importing import MOSCOW, import_file

HEADER = ["client_id", "phone", "card", "balance", "expires_on"]
VALID_DAYS = 365
TODAY = date(2026, 11, 24)  # the `clock` fixture's day in Moscow


async def import_bonuses(db: Database, clock: FakeClock, path: Path) -> ImportReport:
    context = ImportContext(clock=clock, tz=MOSCOW, region="RU")
    return await run_import(BonusImporter(valid_days=VALID_DAYS), path, db.sessions, context)


@pytest.fixture
async def clients(db: Database, clock: FakeClock, tmp_path: Path) -> dict[str, int]:
    """C1, C2 and C3 by external id -> client id; C3 holds card 2000001234."""
    path = write_csv(tmp_path / "clients.csv", ["external_id", "full_name", "phone"],
                     [["C1", "Иванов Иван", "9035254560"], ["C2", "Петрова Анна", "9161234567"],
                      ["C3", "Сидоров Пётр", "9267654321"]])  # fmt: skip
    await import_file(db, clock, "clients", path)
    async with db.sessions() as session, session.begin():
        ids = dict((await session.execute(select(Client.external_id, Client.id))).all())
        await issue(session, "2000 0012-34", ids["C3"], actor="test", now=clock())
    return {key: value for key, value in ids.items() if key is not None}


async def balances(db: Database, ids: dict[str, int]) -> dict[str, Decimal]:
    async with db.sessions() as session:
        return {key: await balance(session, client_id, TODAY) for key, client_id in ids.items()}


async def lot_expiry(db: Database, client_id: int) -> date | None:
    async with db.sessions() as session:
        return await session.scalar(
            select(BonusLot.expires_on).where(BonusLot.client_id == client_id)
        )


async def movements(db: Database) -> list[tuple[int, str, Decimal, str | None]]:
    async with db.sessions() as session:
        rows = await session.execute(
            select(BonusMovement.client_id, BonusMovement.kind, BonusMovement.amount,
                   BonusMovement.external_ref).order_by(BonusMovement.id))  # fmt: skip
        return list(rows.all())


async def test_a_row_finds_its_client_by_external_id_phone_or_card(
    db: Database, clock: FakeClock, tmp_path: Path, clients: dict[str, int]
) -> None:
    path = write_csv(tmp_path / "bonuses.csv", HEADER,
                     [["C1", "", "", "1 500,50", ""],
                      ["", "8 916 123-45-67", "", "200", ""],
                      ["", "", "2000-0012-34", "75,5", ""]])  # fmt: skip

    report = await import_bonuses(db, clock, path)

    assert (report.imported, report.unchanged, report.rejected) == (3, 0, 0)
    assert await balances(db, clients) == {
        "C1": Decimal("1500.50"), "C2": Decimal("200.00"), "C3": Decimal("75.50"),
    }  # fmt: skip
    assert [(kind, ref) for _, kind, _, ref in await movements(db)] == [
        (OPENING, f"opening:{clients[key]}") for key in ("C1", "C2", "C3")
    ]
    assert report.carried_over == Decimal("1776.00")
    assert "bonuses carried over: 1 776.00" in report.notes()


async def test_a_lot_expires_on_the_given_date_or_after_the_programs_usual_term(
    db: Database, clock: FakeClock, tmp_path: Path, clients: dict[str, int]
) -> None:
    path = write_csv(tmp_path / "bonuses.csv", HEADER,
                     [["C1", "", "", "100", "31.12.2027"], ["C2", "", "", "100", ""]])  # fmt: skip

    await import_bonuses(db, clock, path)

    assert await lot_expiry(db, clients["C1"]) == date(2027, 12, 31)
    assert await lot_expiry(db, clients["C2"]) == TODAY + timedelta(days=VALID_DAYS)


@pytest.mark.usefixtures("clients")
@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (["C404", "", "", "100", ""], "client_id: no client 'C404'"),
        (["C404", "8 999 111-22-33", "", "100", ""], "client_id: no client 'C404', nor by phone +79991112233"),
        (["", "", "9999 0000", "100", ""], "card: no client '99990000'"),
        (["C1", "", "", "-100", ""], "balance: -100.00 is negative"),
        (["C1", "", "", "", ""], "balance: empty"),
        (["C1", "", "", "сто", ""], "balance: not a sum of money"),
        (["C1", "", "", "100", "24.11.2026"], "expires_on: 24.11.2026: already expired"),
        (["C1", "", "", "100", "01.01.2026"], "expires_on: 01.01.2026: already expired"),
        (["C1", "", "", "100", "31.02.2027"], "expires_on: no such date '31.02.2027'"),
        (["", "123", "", "100", ""], "phone: not a valid phone number '123'"),
        (["", "", "", "100", ""], "no client_id, phone or card"),
    ],
)  # fmt: skip
async def test_a_bad_row_is_rejected_with_its_reason(
    db: Database, clock: FakeClock, tmp_path: Path, row: list[str], reason: str
) -> None:
    path = write_csv(tmp_path / "bonuses.csv", HEADER, [row, ["C2", "", "", "100", ""]])

    report = await import_bonuses(db, clock, path)

    assert (report.imported, report.rejected) == (1, 1)
    rejected = read_csv(tmp_path / "bonuses.rejects.csv")[1]
    assert rejected[-2] == "2"
    assert rejected[-1].startswith(reason)
    assert len(await movements(db)) == 1


async def test_a_zero_balance_carries_nothing_over(
    db: Database, clock: FakeClock, tmp_path: Path, clients: dict[str, int]
) -> None:
    path = write_csv(tmp_path / "bonuses.csv", HEADER, [["C1", "", "", "0,00", ""]])

    report = await import_bonuses(db, clock, path)

    assert (report.imported, report.unchanged, report.rejected) == (0, 1, 0)
    assert await movements(db) == []


async def test_a_1c_export_in_cp1251_with_russian_headers_imports(
    db: Database, clock: FakeClock, tmp_path: Path, clients: dict[str, int]
) -> None:
    path = write_csv(tmp_path / "Бонусы.csv", ["Код клиента", "Баланс", "Действуют до"],
                     [["C1", "2 000,00", "01.03.2027"], ["C2", "350,25", ""]],
                     encoding="cp1251", delimiter=";")  # fmt: skip

    report = await import_bonuses(db, clock, path)

    assert (report.imported, report.rejected) == (2, 0)
    assert await balances(db, {"C1": clients["C1"], "C2": clients["C2"]}) == {
        "C1": Decimal("2000.00"), "C2": Decimal("350.25"),
    }  # fmt: skip
    assert await lot_expiry(db, clients["C1"]) == date(2027, 3, 1)


async def test_reimporting_the_same_file_moves_nothing(
    db: Database, clock: FakeClock, tmp_path: Path, clients: dict[str, int]
) -> None:
    path = write_csv(tmp_path / "bonuses.csv", HEADER,
                     [["C1", "", "", "1 500,50", ""], ["C2", "", "", "200", "01.06.2027"]])  # fmt: skip
    await import_bonuses(db, clock, path)
    before = (await balances(db, clients), await movements(db))
    clock.set(clock() + timedelta(days=3))  # a day other than the first import's, on purpose

    again = await import_bonuses(db, clock, path)

    assert (again.imported, again.unchanged, again.rejected) == (0, 2, 0)
    assert again.carried_over == 0
    assert (await balances(db, clients), await movements(db)) == before


async def test_a_different_opening_balance_for_the_same_client_is_rejected(
    db: Database, clock: FakeClock, tmp_path: Path, clients: dict[str, int]
) -> None:
    first = write_csv(tmp_path / "bonuses.csv", HEADER, [["C1", "", "", "1 500,50", ""]])
    later = write_csv(tmp_path / "more.csv", HEADER,
                      [["", "8 903 525-45-60", "", "900", ""],
                       ["C2", "", "", "200", ""], ["C2", "", "", "300", ""],
                       ["C3", "", "", "50", ""], ["", "", "2000001234", "50", ""]])  # fmt: skip
    await import_bonuses(db, clock, first)

    report = await import_bonuses(db, clock, later)

    assert (report.imported, report.unchanged, report.rejected) == (2, 1, 2)
    reasons = [row[-1] for row in read_csv(tmp_path / "more.rejects.csv")[1:]]
    assert reasons == [
        "balance: an opening balance of 1500.50 was already imported for this client",
        "balance: an opening balance of 200.00 was already imported for this client",
    ]
    assert await balances(db, clients) == {
        "C1": Decimal("1500.50"), "C2": Decimal("200.00"), "C3": Decimal("50.00"),
    }  # fmt: skip
    async with db.sessions() as session:
        count = await session.scalar(select(func.count()).select_from(BonusMovement))
    assert count == 3


def test_the_cli_imports_bonuses_with_the_configured_term(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "autoloyal.db"}"\n'
        "[bonuses]\nexpire_after_days = 30\n",
        encoding="utf-8",
    )
    write_csv(tmp_path / "clients.csv", ["external_id", "phone"], [["C1", "9035254560"]])
    write_csv(tmp_path / "bonuses.csv", ["Телефон", "Бонусы"],
              [["8 903 525-45-60", "1 500,50"], ["8 999 111-22-33", "10"]])  # fmt: skip
    runner = CliRunner()
    base = ["--config", str(config), "import"]
    assert runner.invoke(app, [*base, "clients", str(tmp_path / "clients.csv")]).exit_code == 0

    result = runner.invoke(app, [*base, "bonuses", str(tmp_path / "bonuses.csv")])

    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == (
        "bonuses: 1 imported, 0 updated, 1 rejected -> bonuses.rejects.csv"
    )
    assert "bonuses carried over: 1 500.50" in result.stderr
    today = local_today(system_clock, parse_settings({}).company.tz)
    with sqlite3.connect(tmp_path / "autoloyal.db") as conn:
        [(expires_on,)] = conn.execute("SELECT expires_on FROM bonus_lot").fetchall()
    assert date.fromisoformat(expires_on) == today + timedelta(days=30)

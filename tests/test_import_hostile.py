"""Hostile CSV files: whatever bytes a file holds, an import never ends in a traceback.

A problem in a row rejects that row (its line and reason in FILE.rejects.csv) and the others
land; a problem with the file as a whole refuses it in one line, exit code 2, before anything
is written. Each file is imported twice: the second run must say the same.
"""

from __future__ import annotations

import csv
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from crm.importing import (
    IMPORTERS,
    ImportContext,
    Importer,
    ImportFileError,
    ImportReport,
    run_import,
)
from crm.importing.bonuses import BonusImporter
from storage.bonuses import BonusLot
from storage.models import Car, Client, Visit
from tests.support.clock import FakeClock
from tests.support.databases import Database
from tests.support.files import read_csv, write_csv
from tests.support.importing import MOSCOW, import_file

AUTOLOYAL = str(Path(sys.executable).parent / "autoloyal")
HEADER = "external_id,full_name,phone\n"
# What no stored text may hold: control characters (tab and line breaks included, as a name
# is one line) and the mark of text that was decoded wrongly.
UNWANTED = {chr(c) for c in (*range(0x20), *range(0x7F, 0xA0))} | {"\ufffd"}


@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: str
    stderr: str
    rejects: list[list[str]] | None  # the rejects file's rows under its header, if written


def autoloyal_import(
    db: Database,
    path: Path,
    kind: str = "clients",
    *,
    batch_size: int = 2000,
    encoding: str = "utf-8",
    delimiter: str = ",",
) -> Outcome:
    """`autoloyal import KIND PATH` as a process, against the test's database."""
    config = path.parent / "config.toml"
    config.write_text(
        f'[database]\nurl = "{db.url}"\n[import]\nbatch_size = {batch_size}\n', encoding="utf-8"
    )
    env = {k: v for k, v in os.environ.items() if k != "AUTOLOYAL_CONFIG"}
    result = subprocess.run(
        [AUTOLOYAL, "--config", str(config), "import", kind, str(path)],
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=300,  # a hung import fails the test rather than the run; never near it
    )
    assert "Traceback" not in result.stderr, result.stderr
    rejects_path = path.with_name(path.name.removesuffix(".csv") + ".rejects.csv")
    rejects = (
        read_rejects(rejects_path, encoding=encoding, delimiter=delimiter)
        if rejects_path.exists()
        else None
    )
    return Outcome(result.returncode, result.stdout.strip(), result.stderr.strip(), rejects)


def read_rejects(path: Path, *, encoding: str = "utf-8", delimiter: str = ",") -> list[list[str]]:
    with long_cells():
        header, *rows = read_csv(path, encoding=encoding, delimiter=delimiter)
    assert header[-2:] == ["reject_line", "reject_reason"]
    return rows


@contextmanager
def long_cells() -> Iterator[None]:
    """Let this process's csv read a rejects file that keeps a cell of 200 000 characters."""
    limit = csv.field_size_limit()
    csv.field_size_limit(2**31 - 1)
    try:
        yield
    finally:
        csv.field_size_limit(limit)


async def stored_clients(db: Database) -> list[tuple[str | None, ...]]:
    """(external_id, last_name, first_name, middle_name, phone, email) of every client."""
    async with db.sessions() as session:
        rows = await session.execute(
            select(
                Client.external_id, Client.last_name, Client.first_name, Client.middle_name,
                Client.phone, Client.email,
            ).order_by(Client.external_id)
        )  # fmt: skip
        return [tuple(row) for row in rows.all()]


def assert_clean(rows: list[tuple[str | None, ...]]) -> None:
    for row in rows:
        for value in row:
            assert not UNWANTED & set(value or ""), row


# --- a cell longer than csv reads ---------------------------------------------------------


async def test_a_cell_too_long_is_a_rejected_row_even_past_the_csv_limit_after_a_batch(
    db: Database, tmp_path: Path
) -> None:
    note = "примечание " * 1000  # 11 000 characters, in a column the import does not read
    lines = [f"C{i},Клиент{i} Иван,+7903525{i:04d},{note if i == 1 else ''}\n" for i in range(6)]
    lines.insert(3, "C90," + "Я" * 200_000 + ",+79035259990,\n")  # line 5, in the 2nd batch
    lines.append("C91,Длинный Телефон," + "9" * 4097 + ",\n")  # line 9
    path = tmp_path / "clients.csv"
    path.write_text(HEADER.replace("\n", ",Комментарий\n") + "".join(lines), encoding="utf-8")

    first = autoloyal_import(db, path, batch_size=2)
    second = autoloyal_import(db, path, batch_size=2)

    assert (first.code, second.code) == (0, 0)
    assert first.stdout == (
        "clients: 6 imported, 0 updated, 0 merged, 2 rejected -> clients.rejects.csv"
    )
    assert second.stdout == (
        "clients: 0 imported, 0 updated, 6 unchanged, 0 merged, 2 rejected -> clients.rejects.csv"
    )
    assert first.rejects == second.rejects
    assert first.rejects is not None
    assert [[cell if len(cell) < 100 else f"{cell[0]} x {len(cell)}" for cell in row]
            for row in first.rejects] == [
        ["C90", "Я x 200000", "+79035259990", "", "5",
         "full_name: cell too long: 200000 characters, at most 4096"],
        ["C91", "Длинный Телефон", "9 x 4097", "", "9",
         "phone: cell too long: 4097 characters, at most 4096"],
    ]  # fmt: skip
    stored = await stored_clients(db)
    assert [row[:3] for row in stored] == [(f"C{i}", f"Клиент{i}", "Иван") for i in range(6)]


# --- line ends -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "last_end", ["\r", "", "\r\x1a"], ids=["ends-with-cr", "no-end", "dos-end-of-file-mark"]
)
async def test_an_old_mac_export_with_cr_line_ends_is_read_line_by_line(
    db: Database, tmp_path: Path, last_end: str
) -> None:
    text = (
        "Код;ФИО;Телефон\r1;ИВАНОВ ИВАН;8 903 525-45-60\r2;Петров Пётр;123\r"
        f"3;Сидорова Анна;8 916 123-45-67{last_end}"
    )
    path = tmp_path / "clients.csv"
    path.write_bytes(text.encode("cp1251"))

    first = autoloyal_import(db, path, encoding="cp1251", delimiter=";")
    second = autoloyal_import(db, path, encoding="cp1251", delimiter=";")

    assert first.code == second.code == 0
    assert (
        first.stdout
        == "clients: 2 imported, 0 updated, 0 merged, 1 rejected -> clients.rejects.csv"
    )
    assert (
        first.rejects
        == second.rejects
        == [["2", "Петров Пётр", "123", "3", "phone: not a valid phone number '123'"]]
    )
    assert await stored_clients(db) == [
        ("1", "Иванов", "Иван", None, "+79035254560", None),
        ("3", "Сидорова", "Анна", None, "+79161234567", None),
    ]


# --- quotes --------------------------------------------------------------------------------


async def test_a_quote_never_closed_rejects_each_line_it_would_swallow(
    db: Database, tmp_path: Path
) -> None:
    # 100 lines of 1 500 characters after the quote: more than csv's 131 072 in one cell.
    note = "н" * 1500
    lines = [f"C{i},Клиент{i} Иван,+7903525{i:04d},{note}\n" for i in range(1, 4)]
    lines.insert(1, 'C50,"Петров Пётр,+79035254561,\n')  # line 3
    lines += [f"C{i},Клиент{i} Иван,+7916{i:07d},{note}\n" for i in range(100, 197)]
    path = tmp_path / "clients.csv"
    path.write_text(HEADER.replace("\n", ",Комментарий\n") + "".join(lines), encoding="utf-8")

    first = autoloyal_import(db, path, batch_size=10)
    second = autoloyal_import(db, path, batch_size=10)

    assert first.code == second.code == 0
    assert first.stdout == (
        "clients: 1 imported, 0 updated, 0 merged, 100 rejected -> clients.rejects.csv"
    )
    assert first.rejects == second.rejects
    assert first.rejects is not None
    assert [row[-2:] for row in first.rejects[:2]] == [
        ["3", "a quote opened in this row is never closed: lines 3-102 are not read"],
        ["4", "not read: the quote left open on line 3 takes it in"],
    ]
    assert first.rejects[0][:3] == ["C50", "Петров Пётр,+79035254561,", ""]
    assert first.rejects[1][:3] == ["C2", "Клиент2 Иван", "+79035250002"]
    assert [int(row[-2]) for row in first.rejects] == list(range(3, 103))
    assert [row[0] for row in await stored_clients(db)] == ["C1"]


async def test_a_quote_left_open_on_the_last_line_without_a_line_end_is_rejected(
    db: Database, tmp_path: Path
) -> None:
    path = tmp_path / "clients.csv"
    path.write_text(
        HEADER + 'C1,Иванов Иван,+79035254560\nC2,"Петров Пётр,+79035254561', encoding="utf-8"
    )

    outcome = autoloyal_import(db, path)

    assert outcome.stdout == (
        "clients: 1 imported, 0 updated, 0 merged, 1 rejected -> clients.rejects.csv"
    )
    assert outcome.rejects == [
        ["C2", "Петров Пётр,+79035254561", "", "3",
         "a quote opened in this row is never closed"],
    ]  # fmt: skip
    assert [row[0] for row in await stored_clients(db)] == ["C1"]


async def test_a_stray_quote_closed_lines_later_rejects_the_row_it_made_of_them(
    db: Database, tmp_path: Path
) -> None:
    path = tmp_path / "clients.csv"
    path.write_text(
        HEADER + 'C1,"Иванов Иван,+79035254560\nC2,Петров Пётр",+79035254561\n'
        "C3,Сидорова Анна,+79035254562\n",
        encoding="utf-8",
    )

    first = autoloyal_import(db, path)
    second = autoloyal_import(db, path)

    assert first.rejects == second.rejects == [
        ["C1", "Иванов Иван,+79035254560\nC2,Петров Пётр", "+79035254561", "2",
         "full_name: a line break inside the cell: is a quote left open?"],
    ]  # fmt: skip
    assert [row[0] for row in await stored_clients(db)] == ["C3"]


# --- encodings -----------------------------------------------------------------------------


@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"], ids=["utf-8", "utf-8-bom"])
async def test_a_windows_1251_row_in_a_utf8_file_is_rejected_and_the_others_land(
    db: Database, tmp_path: Path, bom: bytes
) -> None:
    path = tmp_path / "clients.csv"
    path.write_bytes(
        bom
        + (HEADER + "C1,Иванов Иван,+79035254560\n").encode("utf-8")
        + "C2,Петров Пётр,+79035254561\n".encode("cp1251")
        + "C3,Сидорова Анна,+79035254562\n".encode()
    )

    first = autoloyal_import(db, path, encoding="utf-8-sig")
    second = autoloyal_import(db, path, encoding="utf-8-sig")

    assert first.stdout == (
        "clients: 2 imported, 0 updated, 0 merged, 1 rejected -> clients.rejects.csv"
    )
    # The row is shown as Windows-1251 would read it: legible, to be fixed and imported.
    assert first.rejects == second.rejects == [
        ["C2", "Петров Пётр", "+79035254561", "3",
         "not valid UTF-8 like the rest of the file (Windows-1251?)"],
    ]  # fmt: skip
    rejects = (tmp_path / "clients.rejects.csv").read_bytes()
    assert rejects.startswith(b"\xef\xbb\xbf") == bool(bom)
    assert [row[:3] for row in await stored_clients(db)] == [
        ("C1", "Иванов", "Иван"),
        ("C3", "Сидорова", "Анна"),
    ]


async def test_a_utf8_row_in_a_windows_1251_file_is_rejected_not_stored_as_mojibake(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    path = tmp_path / "clients.csv"
    path.write_bytes(
        "Код;ФИО;Телефон\n1;Иванов Иван;89035254560\n".encode("cp1251")
        + "2;Петров Пётр;89035254561\n".encode()
        + "3;Сидорова Анна;89035254562\n4;Смирнов Олег;89035254563\n".encode("cp1251")
    )

    report = await import_file(db, clock, "clients", path)

    assert (report.imported, report.rejected) == (3, 1)
    assert read_rejects(tmp_path / "clients.rejects.csv", encoding="cp1251", delimiter=";") == [
        ["2", "Петров Пётр", "89035254561", "3",
         "UTF-8, not Windows-1251 like the rest of the file"],
    ]  # fmt: skip
    assert [row[:3] for row in await stored_clients(db)] == [
        ("1", "Иванов", "Иван"),
        ("3", "Сидорова", "Анна"),
        ("4", "Смирнов", "Олег"),
    ]


@pytest.mark.parametrize(
    ("codec", "bom"), [("utf-16-le", b"\xff\xfe"), ("utf-16-be", b"\xfe\xff")], ids=["le", "be"]
)
async def test_the_rejects_of_a_utf16_export_are_utf16_with_one_bom_and_bad_bytes_a_row(
    db: Database, clock: FakeClock, tmp_path: Path, codec: str, bom: bytes
) -> None:
    # Excel's "Unicode text": UTF-16 with a BOM, tabs between cells.
    rows = [
        "Код\tФИО\tТелефон\r\n",
        "1\tИванов Иван\t89035254560\r\n",
        "2\tПетров Пётр\t123\r\n",
        "3\tСидорова Анна\t89035254562\r\n",
        "4\tСмирнов \ud800Олег\t89035254563\r\n",  # a lone surrogate: not UTF-16
        "5\tКузнецова Ольга\t89035254564\r\n",
    ]
    path = tmp_path / "clients.csv"
    path.write_bytes(bom + "".join(rows).encode(codec, errors="surrogatepass"))
    context = ImportContext(clock=clock, tz=MOSCOW, batch_size=2)  # two batches with rejects

    report = await run_import(IMPORTERS["clients"], path, db.sessions, context)

    assert (report.imported, report.rejected) == (3, 2)
    data = (tmp_path / "clients.rejects.csv").read_bytes()
    assert data.startswith(bom)
    text = data[len(bom) :].decode(codec)
    assert "\ufeff" not in text
    assert list(csv.reader(text.splitlines(), delimiter="\t")) == [
        ["Код", "ФИО", "Телефон", "reject_line", "reject_reason"],
        ["2", "Петров Пётр", "123", "3", "phone: not a valid phone number '123'"],
        ["4", "Смирнов \ufffdОлег", "89035254563", "5", "not valid UTF-16"],
    ]
    assert [row[:3] for row in await stored_clients(db)] == [
        ("1", "Иванов", "Иван"),
        ("3", "Сидорова", "Анна"),
        ("5", "Кузнецова", "Ольга"),
    ]


async def test_a_header_not_in_the_files_encoding_refuses_the_file_in_one_line(
    db: Database, tmp_path: Path
) -> None:
    path = tmp_path / "clients.csv"
    path.write_bytes(
        b"\xef\xbb\xbf"
        + "Код,ФИО,Телефон\n".encode("cp1251")
        + "1,Иванов Иван,89035254560\n".encode()
    )

    outcome = autoloyal_import(db, path)

    assert outcome.code == 2
    assert outcome.stderr == (
        f"autoloyal: {path}: the header (line 1) is not valid UTF-8 like the rest of the file "
        "(Windows-1251?)"
    )
    assert outcome.rejects is None
    assert await stored_clients(db) == []


async def test_a_quote_never_closed_in_the_header_refuses_the_file(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    path = tmp_path / "clients.csv"
    path.write_text('Код,"ФИО,Телефон\n1,Иванов Иван,89035254560\n', encoding="utf-8")

    with pytest.raises(ImportFileError, match=r"a quote opened in the header is never closed$"):
        await import_file(db, clock, "clients", path)

    assert await stored_clients(db) == []


async def test_a_header_title_with_a_line_break_is_one_title_and_the_rows_follow_it(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    path = tmp_path / "clients.csv"
    path.write_text(
        'Код,ФИО,"Дата\nрождения",Телефон\n1,Иванов Иван,12.03.1975,89035254560\n'
        "2,Петров Пётр,31.02.1980,89035254561\n",
        encoding="utf-8",
    )

    report = await import_file(db, clock, "clients", path)

    assert (report.imported, report.rejected) == (1, 1)
    assert [row[-2:] for row in read_rejects(tmp_path / "clients.rejects.csv")] == [
        ["4", "birthday: no such date '31.02.1980'"]
    ]
    async with db.sessions() as session:
        assert await session.scalar(select(Client.birthday)) == date(1975, 3, 12)


async def test_a_first_line_longer_than_csv_reads_is_refused_as_a_header_in_one_line(
    db: Database, tmp_path: Path
) -> None:
    path = tmp_path / "clients.csv"
    path.write_bytes(b"x" * 200_000 + b"\nC1,+79035254560\n")

    outcome = autoloyal_import(db, path)

    assert outcome.code == 2
    assert outcome.stderr == (
        f"autoloyal: {path}: needs at least one of the columns 'external_id', 'phone', 'email'"
    )
    assert await stored_clients(db) == []


# --- binary data and control characters ---------------------------------------------------


async def test_binary_garbage_after_the_rows_of_a_utf8_file_is_rejected_line_by_line(
    db: Database, tmp_path: Path
) -> None:
    # Random bytes: control bytes in most lines, and short runs without any, which must not
    # sway the file to Windows-1251 (its UTF-8 rows would then be rejected, or mojibake).
    garbage = random.Random(20261124).randbytes(20_000)
    rows = "C1,Иванов Иван,+79035254560\nC2,Петрова Анна,+79035254561\n"
    path = tmp_path / "clients.csv"
    path.write_bytes((HEADER + rows).encode() + garbage)

    first = autoloyal_import(db, path)
    second = autoloyal_import(db, path)

    assert first.code == second.code == 0
    assert first.stdout.startswith("clients: 2 imported, 0 updated, 0 merged, ")
    assert second.stdout.startswith("clients: 0 imported, 0 updated, 2 unchanged, 0 merged, ")
    assert first.rejects == second.rejects
    assert first.rejects is not None
    assert first.stdout.endswith(f" {len(first.rejects)} rejected -> clients.rejects.csv")
    assert {row[-1].split(" U+")[0] for row in first.rejects} <= {
        "not valid UTF-8 like the rest of the file (Windows-1251?)",
        "external_id: control character",
        "full_name: control character",
        "phone: control character",
    }
    stored = await stored_clients(db)
    assert [row[:3] for row in stored] == [("C1", "Иванов", "Иван"), ("C2", "Петрова", "Анна")]
    assert_clean(stored)


async def test_control_characters_in_a_cell_the_import_reads_reject_the_row_naming_the_column(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    path = write_csv(
        tmp_path / "clients.csv",
        ["external_id", "full_name", "phone", "email", "Комментарий"],
        [
            ["C1", "Иванов\x00Иван", "+79035254560", "", ""],
            ["C\x072", "Петров Пётр", "+79035254561", "", ""],
            ["C3", "Сидорова Анна", "+79035254562", "a\x1bb@mail.ru", ""],
            ["C4", "Смирнов\u0085Олег", "+79035254563", "", ""],
            ["C5", "Кузнецова \ufffdльга", "+79035254564", "", ""],
            ["C6", "Орлов\tОлег", "+79035254565", "", "\x00\x01 binary note\x02"],
        ],
    )

    first = await import_file(db, clock, "clients", path)
    second = await import_file(db, clock, "clients", path)

    assert (first.imported, first.rejected) == (1, 5)
    assert (second.unchanged, second.rejected) == (1, 5)
    assert [row[-2:] for row in read_rejects(tmp_path / "clients.rejects.csv")] == [
        ["2", "full_name: control character U+0000 in the cell: binary data?"],
        ["3", "external_id: control character U+0007 in the cell: binary data?"],
        ["4", "email: control character U+001B in the cell: binary data?"],
        ["5", "full_name: control character U+0085 in the cell: binary data?"],
        ["6", "full_name: U+FFFD in the cell: the text was damaged by a wrong encoding before "
              "this export"],
    ]  # fmt: skip
    # A tab is a space; an ignored column may hold anything.
    assert await stored_clients(db) == [("C6", "Орлов", "Олег", None, "+79035254565", None)]


@pytest.mark.parametrize(
    ("kind", "header", "row", "reason"),
    [
        ("cars", ["external_id", "client_id", "vin", "model"],
         ["A1", "C1", "XW8ZZZ61ZEG012345", "Octavia\x00"], "model: control character U+0000"),
        ("visits", ["external_id", "client_id", "date", "amount", "department"],
         ["V1", "C1", "01.11.2026", "1 500,00", "Сервис\x1b[31m"],
         "department: control character U+001B"),
        ("bonuses", ["client_id", "balance"], ["C1\x00", "100"],
         "client_id: control character U+0000"),
    ],
)  # fmt: skip
async def test_every_kind_of_file_rejects_a_text_cell_with_a_control_character(
    db: Database,
    clock: FakeClock,
    tmp_path: Path,
    kind: str,
    header: list[str],
    row: list[str],
    reason: str,
) -> None:
    clients = write_csv(tmp_path / "clients.csv", ["external_id", "phone"], [["C1", "9035254560"]])
    await import_file(db, clock, "clients", clients)
    importer: Importer[Any] = (
        BonusImporter(valid_days=365) if kind == "bonuses" else IMPORTERS[kind]
    )
    path = write_csv(tmp_path / f"{kind}.csv", header, [row])
    context = ImportContext(clock=clock, tz=MOSCOW)

    report: ImportReport = await run_import(importer, path, db.sessions, context)

    assert (report.imported, report.rejected) == (0, 1)
    [rejected] = read_rejects(tmp_path / f"{kind}.rejects.csv")
    assert rejected[-2] == "2"
    assert rejected[-1].startswith(reason)
    async with db.sessions() as session:
        for model in (Car, Visit, BonusLot):
            assert list(await session.scalars(select(model))) == []

"""Importing clients: canonical and 1C files, upserts, merges of duplicates, rejected rows."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import select

from crm.importing import IMPORTERS, ImportContext, ImportFileError, run_import
from storage.models import Client, ClientAlias, ClientConsent
from tests.support.clock import FakeClock
from tests.support.databases import Database
from tests.support.files import read_csv, write_csv
from tests.support.importing import MOSCOW, import_file

HEADER = ["external_id", "full_name", "phone", "email", "birthday", "gender", "telegram_id",
          "consent_ads"]  # fmt: skip


async def clients(db: Database) -> list[Client]:
    async with db.sessions() as session:
        return list(await session.scalars(select(Client).order_by(Client.id)))


async def test_a_canonical_file_lands_with_names_split_and_phones_in_e164(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    path = write_csv(
        tmp_path / "clients.csv",
        HEADER,
        [
            ["C1", "Иванов Иван Петрович", "+7 (903) 525-45-60", "Ivanov@Mail.RU", "1980-03-12",
             "", "123456789", "да"],
            ["C2", "Петрова Анна Сергеевна", "8 916 1234567", "", "05.07.1991", "Ж", "", "нет"],
        ],
    )  # fmt: skip

    report = await import_file(db, clock, "clients", path)

    assert (report.imported, report.rejected) == (2, 0)
    ivanov, petrova = await clients(db)
    assert (ivanov.last_name, ivanov.first_name, ivanov.middle_name) == (
        "Иванов",
        "Иван",
        "Петрович",
    )
    assert ivanov.phone == "+79035254560"
    assert ivanov.email == "ivanov@mail.ru"
    assert ivanov.birthday == date(1980, 3, 12)
    assert ivanov.gender == "male"  # from the patronymic: the gender cell was empty
    assert ivanov.telegram_id == 123456789
    assert petrova.phone == "+79161234567"
    assert petrova.gender == "female"
    assert petrova.birthday == date(1991, 7, 5)


async def test_consent_to_advertising_is_recorded_with_when_and_how(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    path = write_csv(
        tmp_path / "clients.csv",
        HEADER,
        [["C1", "Иванов Иван", "9035254560", "", "", "", "", "да"],
         ["C2", "Петров Пётр", "9035254561", "", "", "", "", "нет"],
         ["C3", "Сидоров Сидор", "9035254562", "", "", "", "", ""]],
    )  # fmt: skip

    await import_file(db, clock, "clients", path)

    async with db.sessions() as session:
        rows = (await session.execute(select(Client.external_id, ClientConsent).join(
            ClientConsent, ClientConsent.client_id == Client.id))).all()  # fmt: skip
    consents = {external_id: consent for external_id, consent in rows}
    assert set(consents) == {"C1", "C2"}  # an empty cell says nothing
    assert consents["C1"].granted is True
    assert consents["C2"].granted is False
    assert consents["C1"].purpose == "advertising"
    assert consents["C1"].channel == "all"
    assert consents["C1"].source == "import"
    assert consents["C1"].changed_at == clock()


async def test_a_1c_export_in_cp1251_with_russian_headers_is_understood(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    path = write_csv(
        tmp_path / "Контрагенты.csv",
        ["Код", "ФИО", "Телефон", "Электронная почта", "Дата рождения", "Пол"],
        [["000123", "СМИРНОВ АЛЕКСЕЙ ВИКТОРОВИЧ", "8(903)525-45-60", "", "12.03.1975 0:00:00",
          "М"]],
        encoding="cp1251",
        delimiter=";",
    )  # fmt: skip

    report = await import_file(db, clock, "clients", path)

    assert report.imported == 1
    [smirnov] = await clients(db)
    assert smirnov.external_id == "000123"
    assert smirnov.full_name == "Смирнов Алексей Викторович"
    assert smirnov.birthday == date(1975, 3, 12)
    assert smirnov.phone == "+79035254560"


async def test_utf8_with_bom_is_read_and_the_bom_is_not_part_of_the_first_header(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    path = write_csv(
        tmp_path / "clients.csv", ["external_id", "full_name", "phone"],
        [["C1", "Ёлкина Алёна", "+79035254560"]], encoding="utf-8-sig", delimiter=";",
    )  # fmt: skip

    report = await import_file(db, clock, "clients", path)

    assert report.imported == 1
    assert (await clients(db))[0].last_name == "Ёлкина"


@pytest.mark.parametrize(
    "notation",
    ["+7 (903) 525-45-60", "8 903 5254560", "9035254560", "89035254560", "+7-903-525-45-60",
     "8 (903) 525 45 60"],
)  # fmt: skip
async def test_every_common_russian_phone_notation_gives_the_same_number(
    db: Database, clock: FakeClock, tmp_path: Path, notation: str
) -> None:
    path = write_csv(tmp_path / "clients.csv", ["external_id", "phone"], [["C1", notation]])

    await import_file(db, clock, "clients", path)

    assert (await clients(db))[0].phone == "+79035254560"


async def test_importing_the_same_file_again_changes_nothing(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    path = write_csv(
        tmp_path / "clients.csv", HEADER,
        [["C1", "Иванов Иван Петрович", "9035254560", "i@mail.ru", "1980-03-12", "М", "", "да"],
         ["C2", "Петрова Анна", "9161234567", "", "", "", "", ""]],
    )  # fmt: skip
    await import_file(db, clock, "clients", path)
    before = [(c.id, c.full_name, c.phone, c.updated_at) for c in await clients(db)]
    clock.advance(hours=1)

    again = await import_file(db, clock, "clients", path)

    assert (again.imported, again.updated, again.unchanged, again.merged) == (0, 0, 2, 0)
    assert [(c.id, c.full_name, c.phone, c.updated_at) for c in await clients(db)] == before


async def test_a_changed_row_updates_its_client_and_empty_cells_keep_what_is_known(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    first = write_csv(
        tmp_path / "a.csv", HEADER,
        [["C1", "Иванов Иван Петрович", "9035254560", "i@mail.ru", "1980-03-12", "", "", ""]],
    )  # fmt: skip
    second = write_csv(
        tmp_path / "b.csv", ["external_id", "full_name", "phone", "email"],
        [["C1", "Иванов Иван Петрович", "9161234567", ""]],
    )  # fmt: skip
    await import_file(db, clock, "clients", first)
    clock.advance(days=1)

    report = await import_file(db, clock, "clients", second)

    assert report.updated == 1
    [ivanov] = await clients(db)
    assert ivanov.phone == "+79161234567"
    assert ivanov.email == "i@mail.ru"
    assert ivanov.birthday == date(1980, 3, 12)
    assert ivanov.updated_at == clock()


async def test_a_new_client_with_a_known_phone_is_merged_and_the_report_says_so(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    path = write_csv(
        tmp_path / "clients.csv", HEADER,
        [["C1", "Иванов Ваня", "+79035254560", "", "", "", "", ""],
         ["C2", "Иванов Иван Петрович", "8 903 525-45-60", "ivanov@mail.ru", "1980-03-12", "",
          "", ""]],
    )  # fmt: skip

    report = await import_file(db, clock, "clients", path)

    assert (report.imported, report.merged) == (1, 1)
    assert "1 merged" in report.summary()
    assert any("C2 merged into C1 (same phone)" in note for note in report.notes())
    [ivanov] = await clients(db)
    assert ivanov.external_id == "C1"
    assert ivanov.first_name == "Ваня"  # a merge keeps what the survivor knows...
    assert ivanov.middle_name == "Петрович"  # ...and fills in what it did not
    assert ivanov.email == "ivanov@mail.ru"
    assert ivanov.birthday == date(1980, 3, 12)
    async with db.sessions() as session:
        alias = await session.get(ClientAlias, "C2")
    assert alias is not None
    assert alias.client_id == ivanov.id


async def test_a_new_client_with_a_known_email_is_merged_into_it(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    first = write_csv(tmp_path / "a.csv", ["external_id", "full_name", "email"],
                      [["C1", "Иванов Иван", "ivanov@mail.ru"]])  # fmt: skip
    second = write_csv(tmp_path / "b.csv", ["external_id", "full_name", "email", "phone"],
                       [["C9", "Иванов И.", "IVANOV@mail.ru", "9035254560"]])  # fmt: skip
    await import_file(db, clock, "clients", first)

    report = await import_file(db, clock, "clients", second)

    assert report.merged == 1
    assert report.merges[0].matched_by == "email"
    [ivanov] = await clients(db)
    assert ivanov.phone == "+79035254560"


async def test_reimporting_a_file_that_caused_a_merge_changes_nothing(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    path = write_csv(
        tmp_path / "clients.csv", ["external_id", "full_name", "phone"],
        [["C1", "Иванов Иван", "9035254560"], ["C2", "Иванов Иван Петрович", "89035254560"]],
    )  # fmt: skip
    await import_file(db, clock, "clients", path)

    again = await import_file(db, clock, "clients", path)

    assert (again.imported, again.updated, again.unchanged, again.merged) == (0, 0, 2, 0)
    assert [c.full_name for c in await clients(db)] == ["Иванов Иван Петрович"]


async def test_a_row_without_an_id_updates_the_client_with_its_phone(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    first = write_csv(tmp_path / "a.csv", ["external_id", "phone"], [["C1", "9035254560"]])
    second = write_csv(tmp_path / "b.csv", ["phone", "full_name"],
                       [["+79035254560", "Иванов Иван"]])  # fmt: skip
    await import_file(db, clock, "clients", first)

    report = await import_file(db, clock, "clients", second)

    assert (report.updated, report.merged) == (1, 0)
    assert (await clients(db))[0].full_name == "Иванов Иван"


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (["C1", "Иванов", "12345", "", "", "", "", ""], "phone: not a valid phone number '12345'"),
        (["C1", "Иванов", "", "not-an-email", "", "", "", ""], "email: not a valid e-mail address"),
        (["C1", "Иванов", "", "", "31.02.1980", "", "", ""], "birthday: no such date '31.02.1980'"),
        (["C1", "Иванов", "", "", "вчера", "", "", ""], "birthday: not a date 'вчера'"),
        (["C1", "Иванов", "", "", "01.01.2030", "", "", ""], "birthday: 01.01.2030 is not a birthday"),
        (["C1", "Иванов", "", "", "", "X", "", ""], "gender: unknown gender 'X'"),
        (["C1", "Иванов", "", "", "", "", "abc", ""], "telegram_id: not a whole number 'abc'"),
        (["C1", "Иванов", "", "", "", "", "", "может"], "consent_ads: not yes or no 'может'"),
        (["", "Иванов", "", "", "", "", "", ""], "no external_id, phone or e-mail"),
    ],
)  # fmt: skip
async def test_a_bad_row_is_rejected_with_its_line_and_reason_and_good_rows_land(
    db: Database, clock: FakeClock, tmp_path: Path, row: list[str], reason: str
) -> None:
    good = ["C0", "Петров Пётр", "9161234567", "", "", "", "", ""]
    path = write_csv(
        tmp_path / "clients.csv", HEADER, [good, row, good[:1] + ["Сидоров"] + [""] * 6]
    )

    report = await import_file(db, clock, "clients", path)

    assert (report.imported, report.updated, report.rejected) == (1, 1, 1)
    assert report.rejects_path == tmp_path / "clients.rejects.csv"
    assert report.summary().endswith("1 rejected -> clients.rejects.csv")
    header, rejected = read_csv(report.rejects_path)
    assert header == [*HEADER, "reject_line", "reject_reason"]
    assert rejected[:8] == row
    assert rejected[8] == "3"
    assert rejected[9].startswith(reason)
    assert [c.external_id for c in await clients(db)] == ["C0"]


async def test_a_phone_that_belongs_to_another_client_is_rejected_not_stolen(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    path = write_csv(
        tmp_path / "clients.csv", ["external_id", "phone", "telegram_id"],
        [["C1", "9035254560", "111"], ["C2", "9161234567", "222"], ["C2", "9035254560", ""],
         ["C1", "", "222"]],
    )  # fmt: skip

    report = await import_file(db, clock, "clients", path)

    assert report.rejected == 2
    reasons = [row[-1] for row in read_csv(tmp_path / "clients.rejects.csv")[1:]]
    assert reasons == ["phone: +79035254560 already belongs to client C1",
                       "telegram_id: 222 already belongs to client C2"]  # fmt: skip
    assert [c.phone for c in await clients(db)] == ["+79035254560", "+79161234567"]


async def test_the_rejects_file_keeps_the_1c_encoding_and_can_be_imported_once_fixed(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    path = write_csv(
        tmp_path / "clients.csv", ["Код", "ФИО", "Телефон"],
        [["1", "Иванов Иван", "8 903 525-45-6"]], encoding="cp1251", delimiter=";",
    )  # fmt: skip
    await import_file(db, clock, "clients", path)
    rejects = tmp_path / "clients.rejects.csv"
    rows = read_csv(rejects, encoding="cp1251", delimiter=";")
    assert rows[1][:3] == ["1", "Иванов Иван", "8 903 525-45-6"]
    rows[1][2] = "8 903 525-45-60"  # the dealer fixes the number in the rejects file
    write_csv(rejects, rows[0], rows[1:], encoding="cp1251", delimiter=";")

    report = await import_file(db, clock, "clients", rejects)

    assert report.imported == 1
    assert "reject_line" in report.ignored_columns


async def test_a_clean_rerun_removes_the_stale_rejects_file(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "clients.csv", ["external_id", "phone"], [["C1", "123"]])
    await import_file(db, clock, "clients", path)
    assert (tmp_path / "clients.rejects.csv").exists()
    write_csv(path, ["external_id", "phone"], [["C1", "9035254560"]])

    report = await import_file(db, clock, "clients", path)

    assert report.rejects_path is None
    assert not (tmp_path / "clients.rejects.csv").exists()


async def test_a_file_without_any_identifying_column_is_refused_whole(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "clients.csv", ["full_name", "birthday"], [["Иванов", ""]])

    with pytest.raises(ImportFileError, match="needs at least one of the columns 'external_id'"):
        await import_file(db, clock, "clients", path)

    assert await clients(db) == []


async def test_rows_are_written_in_batches_and_all_land(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    rows = [[f"C{i}", f"Клиент{i} Иван", f"+7903525{i:04d}"] for i in range(25)]
    path = write_csv(tmp_path / "clients.csv", ["external_id", "full_name", "phone"], rows)

    report = await import_file(db, clock, "clients", path, batch_size=4)

    assert report.imported == 25
    assert len(await clients(db)) == 25


async def test_family_members_sharing_an_email_but_not_a_phone_stay_two_clients(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    path = write_csv(
        tmp_path / "clients.csv",
        ["external_id", "full_name", "phone", "email"],
        [["C1", "Иванов Иван", "9035254560", "family@mail.ru"],
         ["C2", "Иванова Мария", "9161234567", "family@mail.ru"]],
    )  # fmt: skip

    report = await import_file(db, clock, "clients", path)

    assert (report.imported, report.merged) == (2, 0)
    assert [c.email for c in await clients(db)] == ["family@mail.ru", "family@mail.ru"]


async def test_progress_is_reported_batch_by_batch(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    rows = [[f"C{i}", f"+7903525{i:04d}"] for i in range(10)]
    path = write_csv(tmp_path / "clients.csv", ["external_id", "phone"], rows)
    started: list[int] = []
    done: list[int] = []
    context = ImportContext(clock=clock, tz=MOSCOW, batch_size=4)

    await run_import(
        IMPORTERS["clients"], path, db.sessions, context, on_start=started.append,
        progress=done.append,
    )  # fmt: skip

    assert started == [10]
    assert done == [4, 4, 2]


@pytest.mark.parametrize(
    "signature", [b"PK\x03\x04", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"], ids=["xlsx", "xls"]
)
async def test_an_excel_workbook_is_refused_with_how_to_save_it_as_csv(
    db: Database, clock: FakeClock, tmp_path: Path, signature: bytes
) -> None:
    path = tmp_path / "clients.csv"
    path.write_bytes(signature + b"\x00" * 100)

    with pytest.raises(ImportFileError, match="Excel workbook, not CSV: save it as CSV"):
        await import_file(db, clock, "clients", path)


async def test_an_empty_file_is_refused_as_having_no_header(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    path = tmp_path / "clients.csv"
    path.write_bytes(b"")

    with pytest.raises(ImportFileError, match="no header row"):
        await import_file(db, clock, "clients", path)


async def test_a_dry_run_reports_what_the_import_would_do_and_keeps_nothing(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    rows = [[f"C{i}", f"Клиент{i} Иван", f"+7903525{i:04d}"] for i in range(9)]
    rows += [["C9", "Дубль", "+79035250000"], ["C10", "Плохой", "12345"]]
    path = write_csv(tmp_path / "clients.csv", ["external_id", "full_name", "phone"], rows)
    context = ImportContext(clock=clock, tz=MOSCOW, batch_size=4)

    dry = await run_import(IMPORTERS["clients"], path, db.sessions, context, dry_run=True)

    assert (dry.imported, dry.merged, dry.rejected) == (9, 1, 1)  # C9 merges into C0 of batch 1
    assert dry.summary().endswith("-> clients.rejects.csv (dry run: nothing was written)")
    assert (tmp_path / "clients.rejects.csv").exists()
    assert await clients(db) == []
    real = await run_import(IMPORTERS["clients"], path, db.sessions, context)
    assert (real.imported, real.merged, real.rejected) == (9, 1, 1)


async def test_a_name_longer_than_its_column_is_a_rejected_row_not_a_failed_batch(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    company = "ООО «" + "Северо-Западная транспортная компания " * 4 + "»"  # 158 characters
    path = write_csv(
        tmp_path / "clients.csv",
        HEADER,
        [
            ["C1", company, "", "", "", "", "", ""],
            ["C2", "Петрова Анна Сергеевна", "8 916 1234567", "", "", "", "", ""],
        ],
    )

    report = await import_file(db, clock, "clients", path)

    assert (report.imported, report.rejected) == (1, 1)
    assert [c.external_id for c in await clients(db)] == ["C2"]
    (rejected,) = read_csv(path.with_suffix(".rejects.csv"))[1:]
    assert "full_name: a name part is longer than 128 characters" in rejected[-1]

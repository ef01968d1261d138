"""Importing cars and visits: references, 1C number formats, odometer, branches, failures."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from crm.branches import sync_branches
from storage.models import Branch, Car, Client, OdometerReading, Visit
from tests.support.clock import FakeClock
from tests.support.databases import Database
from tests.support.files import read_csv, write_csv
from tests.support.importing import import_file

CAR_HEADER = ["external_id", "client_id", "vin", "plate", "make", "model", "year",
              "service_interval_km", "service_interval_months"]  # fmt: skip
VISIT_HEADER = ["external_id", "client_id", "car_id", "date", "mileage", "amount", "margin",
                "kind", "department"]  # fmt: skip


@pytest.fixture
async def owners(db: Database, clock: FakeClock, tmp_path: Path) -> None:
    """Two clients, C1 and C2, and C1's car A1."""
    clients = write_csv(tmp_path / "clients.csv", ["external_id", "full_name", "phone"],
                        [["C1", "Иванов Иван", "9035254560"], ["C2", "Петрова Анна", "9161234567"]])  # fmt: skip
    cars = write_csv(tmp_path / "cars.csv", CAR_HEADER,
                     [["A1", "C1", "XW8ZZZ61ZEG012345", "А123ВС77", "Skoda", "Octavia", "2019", "", ""]])  # fmt: skip
    await import_file(db, clock, "clients", clients)
    await import_file(db, clock, "cars", cars)


async def all_of(db: Database, model: type) -> list:  # type: ignore[type-arg]
    async with db.sessions() as session:
        return list(await session.scalars(select(model).order_by(model.id)))


# --- cars --------------------------------------------------------------------------------


@pytest.mark.usefixtures("owners")
async def test_a_car_is_attached_to_its_owner_with_vin_and_plate_normalised(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "more.csv", CAR_HEADER,
                     [["A2", "C2", "xw8 zzz61zeg0123б6".replace("б", "4"), "a 456 mp 199", "Kia",
                       "Rio", "2021", "15000", "12"]])  # fmt: skip

    report = await import_file(db, clock, "cars", path)

    assert report.imported == 1
    car = (await all_of(db, Car))[-1]
    assert car.vin == "XW8ZZZ61ZEG012346"
    assert car.plate == "А456МР199"  # Latin look-alikes typed by a person become Cyrillic
    assert (car.make, car.model, car.year) == ("Kia", "Rio", 2021)
    assert (car.service_interval_km, car.service_interval_months) == (15000, 12)


@pytest.mark.usefixtures("owners")
async def test_a_car_without_an_id_is_recognised_by_its_vin(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "more.csv", ["client_id", "vin", "plate"],
                     [["C2", "XW8ZZZ61ZEG012345", "В777ОР77"]])  # fmt: skip

    report = await import_file(db, clock, "cars", path)

    assert (report.imported, report.updated) == (0, 1)
    [car] = await all_of(db, Car)
    assert car.plate == "В777ОР77"  # the car was sold to C2 and got new plates


@pytest.mark.usefixtures("owners")
@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (["A9", "C404", "", "", "", "", "", "", ""], "client_id: no client 'C404'"),
        (["A9", "", "", "", "", "", "", "", ""], "client_id: empty"),
        (["A9", "C1", "", "", "", "", "1890", "", ""], "year: 1890 is out of range"),
        (["A9", "C1", "", "", "", "", "", "90", ""], "service_interval_km: 90 is out of range"),
        (["A9", "C1", "WVWZZZ1JZXW0000001", "", "", "", "", "", ""], "vin: 'WVWZZZ1JZXW0000001' is longer"),
        (["A9", "C1", "WVWZZZ1JZXW00000I", "", "", "", "", "", ""], "vin: 'WVWZZZ1JZXW00000I' is not a VIN"),
        (["", "C1", "", "А123ВС77", "", "", "", "", ""], "no external_id or vin"),
    ],
)  # fmt: skip
async def test_a_bad_car_row_is_rejected_with_its_reason(
    db: Database, clock: FakeClock, tmp_path: Path, row: list[str], reason: str
) -> None:
    path = write_csv(tmp_path / "more.csv", CAR_HEADER, [row])

    report = await import_file(db, clock, "cars", path)

    assert report.rejected == 1
    assert read_csv(tmp_path / "more.rejects.csv")[1][-1].startswith(reason)
    assert len(await all_of(db, Car)) == 1


# --- visits ------------------------------------------------------------------------------


@pytest.mark.usefixtures("owners")
async def test_a_1c_visit_export_with_decimal_commas_imports_exactly(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    path = write_csv(
        tmp_path / "Заказ-наряды.csv",
        ["Номер", "Код клиента", "Код автомобиля", "Дата", "Пробег", "Сумма", "Маржа", "Вид ремонта",
         "Подразделение"],
        [["ЗН-0001", "C1", "A1", "12.02.2024", "45 120", "1 618 406,43", "612\u00a0300,10",
          "Кузовной ремонт", ""],
         ["ЗН-0002", "C1", "A1", "2024-08-30", "51200", "12 500,00", "", "ТО-2", ""],
         ["ЗН-0003", "C2", "", "01.09.2024 0:00:00", "", "980,5", "-120,00", "Тонировка", ""]],
        encoding="cp1251",
        delimiter=";",
    )  # fmt: skip

    report = await import_file(db, clock, "visits", path)

    assert (report.imported, report.rejected) == (3, 0)
    first, second, third = await all_of(db, Visit)
    assert (first.external_id, first.visited_on, first.odometer) == (
        "ЗН-0001",
        date(2024, 2, 12),
        45120,
    )
    assert first.amount == Decimal("1618406.43")
    assert first.margin == Decimal("612300.10")
    assert first.kind == "bodywork"
    assert (second.visited_on, second.amount, second.margin, second.kind) == (
        date(2024, 8, 30),
        Decimal("12500.00"),
        None,
        "maintenance",
    )
    assert (third.car_id, third.odometer, third.amount, third.margin) == (
        None,
        None,
        Decimal("980.50"),
        Decimal("-120.00"),
    )
    assert third.kind == "other"
    assert report.unknown_kinds == {"Тонировка": 1}
    assert any("'Тонировка' x1" in note for note in report.notes())


@pytest.mark.usefixtures("owners")
async def test_a_visit_records_the_odometer_reading_of_its_car(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "visits.csv", VISIT_HEADER,
                     [["V1", "C1", "A1", "12.02.2024", "45120", "5000", "", "ТО", ""]])  # fmt: skip

    await import_file(db, clock, "visits", path)

    [reading] = await all_of(db, OdometerReading)
    [visit] = await all_of(db, Visit)
    assert (reading.read_on, reading.km, reading.source) == (date(2024, 2, 12), 45120, "visit")
    assert (reading.car_id, reading.visit_id) == (visit.car_id, visit.id)


@pytest.mark.usefixtures("owners")
async def test_reimporting_visits_changes_nothing_and_a_corrected_one_updates(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    rows = [["V1", "C1", "A1", "12.02.2024", "45120", "5 000,00", "", "ТО", ""],
            ["V2", "C1", "A1", "12.08.2024", "52000", "3 000,00", "", "Ремонт", ""]]  # fmt: skip
    path = write_csv(tmp_path / "visits.csv", VISIT_HEADER, rows)
    await import_file(db, clock, "visits", path)

    again = await import_file(db, clock, "visits", path)
    rows[1][4:6] = ["52500", "3 100,00"]  # the work order was corrected in 1C
    write_csv(path, VISIT_HEADER, rows)
    corrected = await import_file(db, clock, "visits", path)

    assert (again.imported, again.updated, again.unchanged) == (0, 0, 2)
    assert (corrected.imported, corrected.updated, corrected.unchanged) == (0, 1, 1)
    assert [v.amount for v in await all_of(db, Visit)] == [Decimal("5000.00"), Decimal("3100.00")]
    assert [r.km for r in await all_of(db, OdometerReading)] == [45120, 52500]


@pytest.mark.usefixtures("owners")
@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (["V9", "C404", "", "12.02.2024", "", "100", "", "", ""], "client_id: no client 'C404'"),
        (["V9", "C1", "A404", "12.02.2024", "", "100", "", "", ""], "car_id: no car 'A404'"),
        (["V9", "C1", "", "30.02.2024", "", "100", "", "", ""], "date: no such date '30.02.2024'"),
        (["V9", "C1", "", "", "", "100", "", "", ""], "date: empty"),
        (["V9", "C1", "", "25.11.2026", "", "100", "", "", ""], "date: 25.11.2026 is in the future"),
        (["V9", "C1", "", "12.02.2024", "", "сто рублей", "", "", ""], "amount: not a sum of money"),
        (["V9", "C1", "", "12.02.2024", "-5", "100", "", "", ""], "mileage: -5 is out of range"),
        (["", "C1", "", "12.02.2024", "", "100", "", "", ""], "external_id: empty"),
    ],
)  # fmt: skip
async def test_a_bad_visit_row_is_rejected_with_its_reason(
    db: Database, clock: FakeClock, tmp_path: Path, row: list[str], reason: str
) -> None:
    good = ["V1", "C1", "A1", "12.02.2024", "45120", "5000", "", "ТО", ""]
    path = write_csv(tmp_path / "visits.csv", VISIT_HEADER, [row, good])

    report = await import_file(db, clock, "visits", path)

    assert (report.imported, report.rejected) == (1, 1)
    rejected = read_csv(tmp_path / "visits.rejects.csv")[1]
    assert rejected[-2] == "2"
    assert rejected[-1].startswith(reason)


@pytest.mark.usefixtures("owners")
async def test_today_in_moscow_is_not_the_future_even_before_utc_midnight(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    clock.set(clock().replace(hour=22, minute=30))  # 01:30 on the 25th in Moscow
    path = write_csv(tmp_path / "visits.csv", VISIT_HEADER,
                     [["V1", "C1", "", "25.11.2026", "", "100", "", "", ""]])  # fmt: skip

    report = await import_file(db, clock, "visits", path)

    assert report.imported == 1


@pytest.mark.usefixtures("owners")
async def test_departments_map_to_configured_branches_and_unknown_ones_become_branches(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    class North:
        code, name, departments, timezone = "north", "Сервис Север", ["СТО-1"], None

    async with db.sessions() as session, session.begin():
        await sync_branches(session, [North()], company_name="Автосервис", now=clock())
    path = write_csv(
        tmp_path / "visits.csv", VISIT_HEADER,
        [["V1", "C1", "", "12.02.2024", "", "100", "", "", "сто-1"],
         ["V2", "C1", "", "12.02.2024", "", "100", "", "", "Сервис  Север"],
         ["V3", "C1", "", "12.02.2024", "", "100", "", "", "Кузовной цех"],
         ["V4", "C1", "", "12.02.2024", "", "100", "", "", "Кузовной цех"],
         ["V5", "C1", "", "12.02.2024", "", "100", "", "", ""]],
    )  # fmt: skip

    report = await import_file(db, clock, "visits", path)

    assert report.new_branches == ["Кузовной цех"]
    async with db.sessions() as session:
        branch_of = dict((await session.execute(
            select(Visit.external_id, Branch.code).join(Branch, Visit.branch_id == Branch.id))).all())  # fmt: skip
    assert branch_of == {"V1": "north", "V2": "north", "V3": "kuzovnoy-tsekh",
                         "V4": "kuzovnoy-tsekh", "V5": "north"}  # fmt: skip


# --- failures ----------------------------------------------------------------------------


async def install_failing_trigger(db: Database, external_id: str) -> None:
    """Make the database itself refuse one visit, as a full disk or a lost server would."""
    statements = {
        "sqlite": [
            f"""CREATE TRIGGER refuse_visit BEFORE INSERT ON visit
                WHEN NEW.external_id = '{external_id}'
                BEGIN SELECT RAISE(ABORT, 'disk I/O error (simulated)'); END"""
        ],
        "postgresql": [
            f"""CREATE FUNCTION refuse_visit() RETURNS trigger AS $$ BEGIN
                IF NEW.external_id = '{external_id}' THEN
                  RAISE EXCEPTION 'disk I/O error (simulated)'; END IF;
                RETURN NEW; END $$ LANGUAGE plpgsql""",
            """CREATE TRIGGER refuse_visit BEFORE INSERT ON visit
               FOR EACH ROW EXECUTE FUNCTION refuse_visit()""",
        ],
    }
    async with db.engine.begin() as conn:
        for statement in statements[db.dialect]:
            await conn.execute(text(statement))


async def remove_failing_trigger(db: Database) -> None:
    async with db.engine.begin() as conn:
        if db.dialect == "sqlite":
            await conn.execute(text("DROP TRIGGER refuse_visit"))
        else:
            await conn.execute(text("DROP TRIGGER refuse_visit ON visit"))
            await conn.execute(text("DROP FUNCTION refuse_visit()"))


@pytest.mark.usefixtures("owners")
async def test_a_failure_mid_file_leaves_no_half_written_batch_and_a_rerun_completes(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    rows = [[f"V{i}", "C1", "A1", "12.02.2024", str(1000 + i), "100", "", "ТО", ""]
            for i in range(1, 11)]  # fmt: skip
    path = write_csv(tmp_path / "visits.csv", VISIT_HEADER, rows)
    await install_failing_trigger(db, "V6")

    with pytest.raises(DBAPIError, match="simulated"):
        await import_file(db, clock, "visits", path, batch_size=4)

    async with db.sessions() as session:
        landed = list(await session.scalars(select(Visit.external_id).order_by(Visit.id)))
        readings = await session.scalar(select(func.count()).select_from(OdometerReading))
    assert landed == ["V1", "V2", "V3", "V4"]  # the first batch; nothing of the second
    assert readings == 4
    await remove_failing_trigger(db)

    rerun = await import_file(db, clock, "visits", path, batch_size=4)

    assert (rerun.imported, rerun.unchanged) == (6, 4)
    assert len(await all_of(db, Visit)) == 10


async def test_a_car_naming_a_merged_duplicate_lands_on_the_surviving_client(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    clients = write_csv(tmp_path / "clients.csv", ["external_id", "full_name", "phone"],
                        [["C1", "Иванов Иван", "9035254560"], ["C1-dup", "Иванов И.", "89035254560"]])  # fmt: skip
    cars = write_csv(tmp_path / "cars.csv", CAR_HEADER,
                     [["A1", "C1-dup", "", "А123ВС77", "Kia", "Rio", "2018", "", ""]])  # fmt: skip
    visits = write_csv(tmp_path / "visits.csv", VISIT_HEADER,
                       [["V1", "C1-dup", "A1", "12.02.2024", "45120", "5000", "", "ТО", ""]])  # fmt: skip
    await import_file(db, clock, "clients", clients)

    await import_file(db, clock, "cars", cars)
    await import_file(db, clock, "visits", visits)

    async with db.sessions() as session:
        survivor = await session.scalar(select(Client.id).where(Client.external_id == "C1"))
        car_owner = await session.scalar(select(Car.client_id))
        visit_client = await session.scalar(select(Visit.client_id))
    assert car_owner == survivor
    assert visit_client == survivor


@pytest.mark.usefixtures("owners")
async def test_a_car_sold_by_the_dealer_is_flagged_from_a_1c_column(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "sold.csv", ["Код", "Код клиента", "VIN", "Марка", "Продан нами"],
                     [["A2", "C2", "XW8ZZZ61ZEG012346", "Kia", "да"],
                      ["A3", "C2", "XW8ZZZ61ZEG012347", "Kia", "нет"],
                      ["A4", "C2", "XW8ZZZ61ZEG012348", "Kia", "может быть"]])  # fmt: skip

    report = await import_file(db, clock, "cars", path)

    assert report.imported == 2
    assert [(car.external_id, car.sold_here) for car in await all_of(db, Car)] == [
        ("A1", None), ("A2", True), ("A3", False),
    ]  # fmt: skip
    assert report.rejected == 1

"""The demo dealer generator and its 1C-style export, as a user of `autoloyal demo` sees them."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import phonenumbers
import pytest

from crm.demo import (
    DEPARTMENTS,
    ONEC_KIND_LABELS,
    DemoCar,
    DemoClient,
    DemoHousehold,
    DemoVisit,
    generate_households,
    write_onec_export,
)
from crm.demo.names import FEMININE_SURNAMES, MALE_NAMES, SURNAMES, feminine_surname, patronymic
from crm.visits import VISIT_KINDS

TODAY = date(2026, 3, 15)
NBSP = "\u00a0"


def households(clients: int, *, seed: int = 42, start: int = 0) -> list[DemoHousehold]:
    return list(generate_households(seed=seed, today=TODAY, clients=clients, start=start))


@pytest.fixture(scope="module")
def dealer() -> list[DemoHousehold]:
    return households(2000)


def all_cars(dealer: list[DemoHousehold]) -> list[DemoCar]:
    return [car for h in dealer for car in h.cars]


def all_visits(dealer: list[DemoHousehold]) -> list[DemoVisit]:
    return [visit for h in dealer for visit in h.visits]


# --- determinism and streaming ------------------------------------------------------------------


def test_same_seed_gives_same_households() -> None:
    assert households(40) == households(40)


def test_client_is_the_same_whatever_the_range() -> None:
    fifty = households(50)
    assert households(5) == fifty[:5]
    assert households(3, start=20) == fifty[20:23]


def test_different_seed_gives_different_dealer() -> None:
    one, other = households(20, seed=1), households(20, seed=2)
    assert [h.client.phone for h in one] != [h.client.phone for h in other]
    assert [h.client.last_name for h in one] != [h.client.last_name for h in other]


def test_generation_is_lazy() -> None:
    stream = generate_households(seed=1, today=TODAY, clients=10_000_000)
    assert isinstance(stream, Iterator)
    assert next(stream).client.external_id == "C000000"


# --- identities --------------------------------------------------------------------------------


def test_phones_are_valid_unique_e164_mobiles(dealer: list[DemoHousehold]) -> None:
    phones = [h.client.phone for h in dealer]
    assert len(set(phones)) == len(phones)
    for phone in phones:
        assert re.fullmatch(r"\+79\d{9}", phone), phone
        parsed = phonenumbers.parse(phone)
        assert phonenumbers.is_valid_number(parsed), phone
        assert phonenumbers.number_type(parsed) == phonenumbers.PhoneNumberType.MOBILE


def test_identifiers_are_unique(dealer: list[DemoHousehold]) -> None:
    clients = [h.client for h in dealer]
    cars = all_cars(dealer)
    visits = all_visits(dealer)
    emails = [c.email for c in clients if c.email is not None]
    telegram_ids = [c.telegram_id for c in clients if c.telegram_id is not None]
    for values in (
        [c.external_id for c in clients],
        [c.external_id for c in cars],
        [v.external_id for v in visits],
        emails,
        telegram_ids,
        [c.vin for c in cars],
        [c.plate for c in cars],
    ):
        assert len(set(values)) == len(values)
    for value in [c.external_id for c in clients] + [v.external_id for v in visits]:
        assert value.isascii()
    assert all(tid > 0 for tid in telegram_ids)
    domains = {"mail.ru", "yandex.ru", "gmail.com", "bk.ru", "inbox.ru"}
    for email in emails:
        assert re.fullmatch(r"[a-z0-9._]+@[a-z.]+", email), email
        assert email.split("@")[1] in domains
    for car in cars:
        assert re.fullmatch(r"[A-HJ-NPR-Z0-9]{17}", car.vin), car.vin
        assert re.fullmatch(r"[АВЕКМНОРСТУХ]\d{3}[АВЕКМНОРСТУХ]{2}\d{2,3}", car.plate), car.plate
        assert car.plate[1:4] != "000"


def test_links_between_clients_cars_and_visits(dealer: list[DemoHousehold]) -> None:
    for h in dealer:
        car_ids = {car.external_id for car in h.cars}
        assert all(car.client_external_id == h.client.external_id for car in h.cars)
        assert all(v.client_external_id == h.client.external_id for v in h.visits)
        assert all(v.car_external_id in car_ids for v in h.visits)
        assert list(h.visits) == sorted(h.visits, key=lambda v: (v.visited_on, v.external_id))


# --- names -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("male", "female"),
    [("Иванов", "Иванова"), ("Смирнов", "Смирнова"), ("Соловьёв", "Соловьёва"),
     ("Ковалевский", "Ковалевская"), ("Толстой", "Толстая"), ("Троицкий", "Троицкая"),
     ("Никитин", "Никитина"), ("Шевченко", "Шевченко"), ("Ким", "Ким"), ("Цой", "Цой"),
     ("Черных", "Черных"), ("Дюма", "Дюма"), ("Ковальчук", "Ковальчук")],
)  # fmt: skip
def test_feminine_surnames(male: str, female: str) -> None:
    assert feminine_surname(male) == female


@pytest.mark.parametrize(
    ("father", "son", "daughter"),
    [("Иван", "Иванович", "Ивановна"), ("Никита", "Никитич", "Никитична"),
     ("Илья", "Ильич", "Ильинична"), ("Лев", "Львович", "Львовна"),
     ("Сергей", "Сергеевич", "Сергеевна"), ("Николай", "Николаевич", "Николаевна"),
     ("Юрий", "Юрьевич", "Юрьевна"), ("Пётр", "Петрович", "Петровна")],
)  # fmt: skip
def test_patronymics(father: str, son: str, daughter: str) -> None:
    assert patronymic(father, "male") == son
    assert patronymic(father, "female") == daughter


def test_name_lists_are_big_enough() -> None:
    assert len(MALE_NAMES) >= 55
    assert len(SURNAMES) >= 140


def test_women_carry_feminine_forms(dealer: list[DemoHousehold]) -> None:
    women = [h.client for h in dealer if h.client.gender == "female"]
    men = [h.client for h in dealer if h.client.gender == "male"]
    assert 0.48 <= len(men) / len(dealer) <= 0.62
    feminine = set(FEMININE_SURNAMES.values())
    sons = {m for m, _, _ in MALE_NAMES.values()}
    daughters = {f for _, f, _ in MALE_NAMES.values()}
    for woman in women:
        assert woman.last_name in feminine
        assert not woman.last_name.endswith(("ов", "ев", "ёв", "ин", "ский", "цкий"))
        assert woman.middle_name in daughters
        assert woman.middle_name.endswith(("вна", "чна"))
    for man in men:
        assert man.last_name in SURNAMES
        assert man.middle_name in sons
        assert man.middle_name.endswith("ич")


def test_birthdays_and_client_ratios(dealer: list[DemoHousehold]) -> None:
    clients = [h.client for h in dealer]
    born = [c.birthday for c in clients if c.birthday is not None]
    assert 0.85 <= len(born) / len(clients) <= 0.95
    for birthday in born:
        had_birthday = (TODAY.month, TODAY.day) >= (birthday.month, birthday.day)
        age = TODAY.year - birthday.year - (not had_birthday)
        assert 19 <= age <= 78
    assert 0.38 <= sum(c.email is not None for c in clients) / len(clients) <= 0.52
    assert 0.24 <= sum(c.telegram_id is not None for c in clients) / len(clients) <= 0.36
    assert 0.58 <= sum(c.consent_ads for c in clients) / len(clients) <= 0.72
    assert 0.54 <= sum(c.department == DEPARTMENTS[0] for c in clients) / len(clients) <= 0.66


# --- cars and histories ------------------------------------------------------------------------


def test_cars(dealer: list[DemoHousehold]) -> None:
    cars = all_cars(dealer)
    assert 1.3 <= len(cars) / len(dealer) <= 1.7
    assert all(1 <= len(h.cars) <= 5 for h in dealer)
    assert any(len(h.cars) >= 4 for h in dealer)
    for car in cars:
        assert 2008 <= car.year <= TODAY.year
        assert 15 <= car.daily_km <= 130
        assert car.service_interval_km in (None, 10000, 12500, 15000)
        assert car.service_interval_months in (None, 6, 12)
    assert 0.6 <= sum(c.service_interval_km is None for c in cars) / len(cars) <= 0.8
    assert 0.7 <= sum(c.service_interval_months is None for c in cars) / len(cars) <= 0.9
    makes = Counter(car.make for car in cars)
    assert makes.most_common(1)[0][0] == "Lada"
    assert len(makes) >= 12


def test_visits_are_plausible(dealer: list[DemoHousehold]) -> None:
    visits = all_visits(dealer)
    assert 7 <= len(visits) / len(dealer) <= 13
    home = {h.client.external_id: h.client.department for h in dealer}
    at_home = sum(v.department == home[v.client_external_id] for v in visits)
    assert 0.78 <= at_home / len(visits) <= 0.92
    for visit in visits:
        assert visit.visited_on <= TODAY
        assert visit.kind in VISIT_KINDS
        assert visit.department in DEPARTMENTS
        assert visit.amount > 0
        assert visit.amount.as_tuple().exponent == -2
        assert visit.margin.as_tuple().exponent == -2
        assert Decimal("0.25") <= visit.margin / visit.amount <= Decimal("0.50")
    kinds = Counter(v.kind for v in visits)
    assert set(kinds) == set(VISIT_KINDS)
    assert kinds["maintenance"] > kinds["repair"] > kinds["bodywork"]


def test_odometer_never_goes_back(dealer: list[DemoHousehold]) -> None:
    for h in dealer:
        last: dict[str, int] = {}
        for visit in h.visits:
            assert visit.odometer >= last.get(visit.car_external_id, 0), visit
            last[visit.car_external_id] = visit.odometer


def test_maintenance_follows_the_service_interval(dealer: list[DemoHousehold]) -> None:
    pairs = 0
    for h in dealer:
        cars = {car.external_id: car for car in h.cars}
        previous: dict[str, DemoVisit] = {}
        for visit in h.visits:
            if visit.kind != "maintenance":
                continue
            before = previous.get(visit.car_external_id)
            previous[visit.car_external_id] = visit
            if before is None:
                continue
            pairs += 1
            days = (visit.visited_on - before.visited_on).days
            km = visit.odometer - before.odometer
            assert 30 <= days <= 405, (before, visit)
            assert km <= 17_300, (before, visit)
            assert km >= 8_500 or days >= 170, (before, visit)
            # The car's own pace is recoverable from two maintenance visits.
            pace = cars[visit.car_external_id].daily_km
            assert abs(km / days - pace) <= 0.1 * pace, (before, visit, pace)
    assert pairs > len(dealer)


def test_history_shape(dealer: list[DemoHousehold]) -> None:
    with_visits = [h for h in dealer if h.visits]
    assert 0.005 <= 1 - len(with_visits) / len(dealer) <= 0.05
    starts = [h.visits[0].visited_on for h in with_visits]
    assert min(starts) >= TODAY - timedelta(days=3 * 366)
    assert sum(s <= TODAY - timedelta(days=2 * 365) for s in starts) / len(starts) > 0.6
    gone = sum(h.visits[-1].visited_on < TODAY - timedelta(days=365) for h in with_visits)
    assert 0.08 <= gone / len(with_visits) <= 0.28


def test_sales_open_a_car_history(dealer: list[DemoHousehold]) -> None:
    cars = all_cars(dealer)
    sold = 0
    for h in dealer:
        for car in h.cars:
            own = [v for v in h.visits if v.car_external_id == car.external_id]
            if any(v.kind == "sale" for v in own):
                sold += 1
                assert own[0].kind == "sale"
                assert sum(v.kind == "sale" for v in own) == 1
                assert Decimal(1_200_000) <= own[0].amount <= Decimal(6_500_000)
                assert car.year >= own[0].visited_on.year - 1
    assert 0.04 <= sold / len(cars) <= 0.13


def test_tyre_changes_are_seasonal(dealer: list[DemoHousehold]) -> None:
    tyres = [v for v in all_visits(dealer) if v.kind == "tyres"]
    in_season = [v for v in tyres if v.visited_on.month in (4, 5, 10, 11)]
    assert len(in_season) / len(tyres) >= 0.9


def test_key_clients_bring_a_disproportionate_share(dealer: list[DemoHousehold]) -> None:
    revenue = {h.client.external_id: sum((v.amount for v in h.visits), Decimal(0)) for h in dealer}
    fleets = [h.client.external_id for h in dealer if len(h.cars) >= 4]
    share = sum(revenue[c] for c in fleets) / sum(revenue.values())
    assert share > 2.5 * len(fleets) / len(dealer)


# --- 1C export ---------------------------------------------------------------------------------


def read_rows(path: Path) -> list[list[str]]:
    raw = path.read_bytes()
    text = raw.decode("cp1251")
    assert text.endswith("\r\n")
    assert "\n" not in text.replace("\r\n", "")
    return [line.split(";") for line in text.split("\r\n")[:-1]]


def test_onec_export_files(dealer: list[DemoHousehold], tmp_path: Path) -> None:
    sample = dealer[:300]
    counts = write_onec_export(iter(sample), tmp_path / "export")
    clients = read_rows(tmp_path / "export" / "clients.csv")
    cars = read_rows(tmp_path / "export" / "cars.csv")
    visits = read_rows(tmp_path / "export" / "visits.csv")
    assert ";".join(clients[0]) == (
        "external_id;full_name;phone;email;birthday;gender;telegram_id;consent_ads"
    )
    assert ";".join(cars[0]) == (
        "external_id;client_id;vin;plate;make;model;year;service_interval_km;"
        "service_interval_months"
    )
    assert ";".join(visits[0]) == (
        "external_id;client_id;car_id;date;mileage;amount;margin;kind;department"
    )
    assert counts == {
        "clients.csv": len(clients) - 1,
        "cars.csv": len(cars) - 1,
        "visits.csv": len(visits) - 1,
    }
    assert counts["clients.csv"] == 300
    assert counts["visits.csv"] == sum(len(h.visits) for h in sample)
    assert all(len(row) == 8 for row in clients)
    assert all(len(row) == 9 for row in cars + visits)

    # A 1C base mixes notations; each must still mean the client's number.
    by_id = {h.client.external_id: h.client for h in sample}
    for row in clients[1:]:
        parsed = phonenumbers.parse(row[2], "RU")
        assert phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164) == (
            by_id[row[0]].phone
        )
    shapes = {re.sub(r"\d", "9", row[2]) for row in clients[1:]}
    assert len(shapes) == 6
    amounts = [row[5] for row in visits[1:]]
    assert any(NBSP in a for a in amounts)
    assert any(" " in a for a in amounts)
    assert all(re.fullmatch(r"\d{1,3}([ \u00a0]\d{3})*,\d\d", a) for a in amounts)
    assert {row[7] for row in visits[1:]} <= set(ONEC_KIND_LABELS.values())


def test_onec_known_household_row(tmp_path: Path) -> None:
    client = DemoClient(
        "C000777", "Смирнова", "Анна", "Ильинична", "female", date(1985, 3, 4),
        "+79035254560", "anna.smirnova777@mail.ru", None, True, "Сервис Юг",
    )  # fmt: skip
    car = DemoCar(
        "C000777-1", "C000777", "XW8ZZZ5NZKG123456", "А123ВС77", "Skoda", "Octavia", 2024,
        15000, None, 38.5,
    )  # fmt: skip
    visits = (
        DemoVisit(
            "C000777-1-001", "C000777", "C000777-1", date(2024, 5, 7), 12, Decimal("1618406.43"),
            Decimal("420000.00"), "sale", "Сервис Юг",
        ),
        DemoVisit(
            "C000777-1-002", "C000777", "C000777-1", date(2025, 4, 20), 14210, Decimal("980.50"),
            Decimal("300.00"), "tyres", "Сервис Север",
        ),
    )  # fmt: skip
    counts = write_onec_export([DemoHousehold(client, (car,), visits)], tmp_path)
    assert counts == {"clients.csv": 1, "cars.csv": 1, "visits.csv": 2}

    [_, client_row] = read_rows(tmp_path / "clients.csv")
    assert client_row[:2] == ["C000777", "Смирнова Анна Ильинична"]
    assert client_row[2] in {
        "+7 (903) 525-45-60", "8 903 5254560", "89035254560", "9035254560", "+79035254560",
        "8(903)525-45-60",
    }  # fmt: skip
    assert client_row[3:] == ["anna.smirnova777@mail.ru", "04.03.1985", "Ж", "", "да"]

    [_, car_row] = read_rows(tmp_path / "cars.csv")
    assert car_row == [
        "C000777-1", "C000777", "XW8ZZZ5NZKG123456", "А123ВС77", "Skoda", "Octavia", "2024",
        "15000", "",
    ]  # fmt: skip

    [_, sale, tyres] = read_rows(tmp_path / "visits.csv")
    assert sale[:5] == ["C000777-1-001", "C000777", "C000777-1", "07.05.2024", "12"]
    assert sale[5].replace(NBSP, " ") == "1 618 406,43"
    assert sale[6].replace(NBSP, " ") == "420 000,00"
    assert sale[7:] == ["Продажа автомобиля", "Сервис Юг"]
    assert tyres[3:] == ["20.04.2025", "14210", "980,50", "300,00", "Шиномонтаж", "Сервис Север"]


def test_onec_kind_labels_cover_every_kind() -> None:
    assert set(ONEC_KIND_LABELS) == set(VISIT_KINDS)
    assert ONEC_KIND_LABELS["maintenance"] == "Техническое обслуживание"
    assert ONEC_KIND_LABELS["bodywork"] == "Кузовной ремонт"

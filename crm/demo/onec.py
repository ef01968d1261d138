"""Writer of generated data as a 1C export looks: cp1251, `;`, Russian labels, mixed notations.

The mix (phone notations, no-break and plain spaces in amounts) is deliberate: the importer has
to cope with what an operator's 1C base actually contains, so the demo files exercise it.
"""

from __future__ import annotations

import csv
import zlib
from collections.abc import Iterable
from datetime import date
from decimal import Decimal
from pathlib import Path

from crm.demo.generator import DemoCar, DemoClient, DemoHousehold, DemoVisit

ONEC_KIND_LABELS: dict[str, str] = {
    "maintenance": "Техническое обслуживание",
    "repair": "Ремонт",
    "diagnostics": "Диагностика",
    "tyres": "Шиномонтаж",
    "bodywork": "Кузовной ремонт",
    "other": "Прочее",
    "sale": "Продажа автомобиля",
}

CLIENT_HEADER = (
    "external_id", "full_name", "phone", "email", "birthday", "gender", "telegram_id",
    "consent_ads",
)  # fmt: skip
CAR_HEADER = (
    "external_id", "client_id", "vin", "plate", "make", "model", "year", "service_interval_km",
    "service_interval_months",
)  # fmt: skip
VISIT_HEADER = (
    "external_id", "client_id", "car_id", "date", "mileage", "amount", "margin", "kind",
    "department",
)  # fmt: skip

NBSP = "\u00a0"


def _choice(key: str, variants: int) -> int:
    """A stable per-row pick; crc32 rather than hash() because str hashes are salted per process."""
    return zlib.crc32(key.encode()) % variants


def format_phone(phone: str, key: str) -> str:
    """The E.164 number in one of the notations a 1C base contains, chosen by `key`."""
    n = phone[2:]  # ten national digits: 903 525 45 60
    dashed = f"{n[3:6]}-{n[6:8]}-{n[8:]}"
    variants = (
        f"+7 ({n[:3]}) {dashed}",
        f"8 {n[:3]} {n[3:]}",
        f"8{n}",
        n,
        phone,
        f"8({n[:3]}){dashed}",
    )
    return variants[_choice(key, len(variants))]


def format_money(value: Decimal, key: str) -> str:
    """1618406.43 -> "1 618 406,43": grouped by a no-break space mostly, a plain one at times."""
    group = " " if _choice(key, 3) == 0 else NBSP
    return f"{value:,.2f}".replace(",", group).replace(".", ",")


def format_date(day: date | None) -> str:
    return "" if day is None else f"{day.day:02d}.{day.month:02d}.{day.year:04d}"


def _cell(value: int | None) -> str:
    return "" if value is None else str(value)


def client_row(client: DemoClient) -> list[str]:
    key = client.external_id
    return [
        key,
        f"{client.last_name} {client.first_name} {client.middle_name}",
        format_phone(client.phone, key),
        client.email or "",
        format_date(client.birthday),
        "М" if client.gender == "male" else "Ж",
        _cell(client.telegram_id),
        "да" if client.consent_ads else "нет",
    ]


def car_row(car: DemoCar) -> list[str]:
    return [
        car.external_id,
        car.client_external_id,
        car.vin,
        car.plate,
        car.make,
        car.model,
        str(car.year),
        _cell(car.service_interval_km),
        _cell(car.service_interval_months),
    ]


def visit_row(visit: DemoVisit) -> list[str]:
    key = visit.external_id
    return [
        key,
        visit.client_external_id,
        visit.car_external_id,
        format_date(visit.visited_on),
        str(visit.odometer),
        format_money(visit.amount, key),
        format_money(visit.margin, key),
        ONEC_KIND_LABELS[visit.kind],
        visit.department,
    ]


def write_onec_export(
    households: Iterable[DemoHousehold], folder: Path, *, encoding: str = "cp1251"
) -> dict[str, int]:
    """Write clients.csv, cars.csv, visits.csv as a 1C export looks.

    Returns row counts (without the header) per file name.
    """
    folder.mkdir(parents=True, exist_ok=True)
    counts = {"clients.csv": 0, "cars.csv": 0, "visits.csv": 0}
    # All three files are written in one pass so that a streamed generator is consumed once.
    with (
        (folder / "clients.csv").open("w", encoding=encoding, newline="") as clients_file,
        (folder / "cars.csv").open("w", encoding=encoding, newline="") as cars_file,
        (folder / "visits.csv").open("w", encoding=encoding, newline="") as visits_file,
    ):
        clients = csv.writer(clients_file, delimiter=";", lineterminator="\r\n")
        cars = csv.writer(cars_file, delimiter=";", lineterminator="\r\n")
        visits = csv.writer(visits_file, delimiter=";", lineterminator="\r\n")
        clients.writerow(CLIENT_HEADER)
        cars.writerow(CAR_HEADER)
        visits.writerow(VISIT_HEADER)
        for household in households:
            clients.writerow(client_row(household.client))
            cars.writerows(car_row(car) for car in household.cars)
            visits.writerows(visit_row(visit) for visit in household.visits)
            counts["clients.csv"] += 1
            counts["cars.csv"] += len(household.cars)
            counts["visits.csv"] += len(household.visits)
    return counts

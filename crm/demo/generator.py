"""Streaming generator of a synthetic dealer: clients, their cars and visit histories.

Every client is generated from its own `random.Random` seeded by (seed, index), so a household
never depends on how many others are generated around it and any range streams in bounded
memory. Identifiers that must be unique (phones, VINs, plates, Telegram ids) come from keyed
bijections of the index instead of retry loops, which would need global state.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from operator import attrgetter

from crm.clock import years_before
from crm.demo.names import (
    FEMALE_POOL,
    FEMININE_SURNAMES,
    MALE_NAMES,
    MALE_POOL,
    SURNAMES,
)
from crm.names import translit

DEPARTMENTS: tuple[str, ...] = ("Сервис Север", "Сервис Юг")


@dataclass(frozen=True, slots=True)
class DemoClient:
    external_id: str
    last_name: str
    first_name: str
    middle_name: str
    gender: str
    birthday: date | None
    phone: str
    email: str | None
    telegram_id: int | None
    consent_ads: bool
    department: str


@dataclass(frozen=True, slots=True)
class DemoCar:
    external_id: str
    client_external_id: str
    vin: str
    plate: str
    make: str
    model: str
    year: int
    service_interval_km: int | None
    service_interval_months: int | None
    daily_km: float


@dataclass(frozen=True, slots=True)
class DemoVisit:
    external_id: str
    client_external_id: str
    car_external_id: str
    visited_on: date
    odometer: int
    amount: Decimal
    margin: Decimal
    kind: str
    department: str


@dataclass(frozen=True, slots=True)
class DemoHousehold:
    client: DemoClient
    cars: tuple[DemoCar, ...]
    visits: tuple[DemoVisit, ...]


# --- catalogue ---------------------------------------------------------------------------------

# make: (VIN world manufacturer id, default service interval km, premium)
_MAKES: dict[str, tuple[str, int, bool]] = {
    "Lada": ("XTA", 15000, False), "Kia": ("XWE", 15000, False),
    "Hyundai": ("Z94", 15000, False), "Toyota": ("XW7", 10000, False),
    "Volkswagen": ("XW8", 15000, False), "Skoda": ("TMB", 15000, False),
    "Renault": ("X7L", 15000, False), "Nissan": ("Z8N", 15000, False),
    "Haval": ("LGW", 15000, False), "Chery": ("LVV", 12500, False),
    "Geely": ("L6T", 10000, False), "Mitsubishi": ("Z8T", 15000, False),
    "Mazda": ("JMZ", 12500, False), "BMW": ("WBA", 15000, True),
    "Mercedes-Benz": ("WDD", 15000, True),
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Model:
    make: str
    model: str
    first_year: int
    last_year: int | None  # last year sold new in Russia; None: still on sale in 2026
    price: int  # new car price, roubles; 0 when not sold new any more


# (make, model, weight, first year, last year, new price)
# Models that left the Russian market in 2022 have no new price: they are never sold here new.
_MODEL_ROWS: tuple[tuple[str, str, int, int, int | None, int], ...] = (
    ("Lada", "Vesta", 90, 2015, None, 1_650_000),
    ("Lada", "Granta", 90, 2011, None, 1_250_000),
    ("Lada", "Niva Travel", 40, 2021, None, 1_450_000),
    ("Lada", "Largus", 30, 2012, None, 1_700_000),
    ("Kia", "Rio", 50, 2011, 2022, 0),
    ("Kia", "Sportage", 30, 2010, None, 3_600_000),
    ("Kia", "Ceed", 20, 2012, 2022, 0),
    ("Kia", "Seltos", 20, 2019, None, 2_900_000),
    ("Hyundai", "Solaris", 50, 2011, 2022, 0),
    ("Hyundai", "Creta", 40, 2016, None, 2_600_000),
    ("Hyundai", "Tucson", 20, 2015, None, 3_900_000),
    ("Toyota", "Camry", 30, 2011, None, 4_200_000),
    ("Toyota", "RAV4", 30, 2013, None, 4_000_000),
    ("Toyota", "Corolla", 20, 2008, None, 2_900_000),
    ("Toyota", "Land Cruiser Prado", 20, 2009, None, 7_500_000),
    ("Volkswagen", "Polo", 40, 2010, 2022, 0),
    ("Volkswagen", "Tiguan", 30, 2008, None, 4_200_000),
    ("Skoda", "Octavia", 40, 2008, None, 3_200_000),
    ("Skoda", "Rapid", 20, 2014, 2022, 0),
    ("Skoda", "Kodiaq", 20, 2017, None, 4_300_000),
    ("Renault", "Logan", 30, 2008, 2022, 0),
    ("Renault", "Duster", 30, 2011, 2022, 0),
    ("Renault", "Kaptur", 20, 2016, 2022, 0),
    ("Nissan", "Qashqai", 20, 2008, 2022, 0),
    ("Nissan", "X-Trail", 20, 2008, 2022, 0),
    ("Haval", "Jolion", 40, 2021, None, 2_300_000),
    ("Haval", "F7", 30, 2019, None, 2_900_000),
    ("Haval", "H6", 20, 2017, None, 2_600_000),
    ("Chery", "Tiggo 4", 30, 2019, None, 2_100_000),
    ("Chery", "Tiggo 7 Pro", 40, 2020, None, 2_600_000),
    ("Chery", "Tiggo 8", 20, 2019, None, 3_200_000),
    ("Geely", "Coolray", 30, 2020, None, 2_400_000),
    ("Geely", "Monjaro", 20, 2022, None, 4_300_000),
    ("Mitsubishi", "Outlander", 20, 2008, None, 3_900_000),
    ("Mazda", "CX-5", 20, 2012, None, 3_800_000),
    ("BMW", "X5", 15, 2008, None, 11_000_000),
    ("Mercedes-Benz", "E-Class", 15, 2008, None, 8_500_000),
)

_MODELS: tuple[_Model, ...] = tuple(_Model(r[0], r[1], r[3], r[4], r[5]) for r in _MODEL_ROWS)
_MODEL_CUM: tuple[float, ...] = tuple(
    float(sum(r[2] for r in _MODEL_ROWS[: k + 1])) for k in range(len(_MODEL_ROWS))
)

# kind: (median roubles, log-normal sigma, low, high, round to roubles, margin low, margin high)
_PRICES: dict[str, tuple[float, float, float, float, int, float, float]] = {
    "maintenance": (12_000, 0.35, 7_000, 30_000, 0, 0.35, 0.495),
    "repair": (11_000, 0.85, 3_000, 90_000, 0, 0.30, 0.45),
    "diagnostics": (2_500, 0.30, 1_500, 4_500, 50, 0.40, 0.495),
    "tyres": (3_800, 0.25, 2_400, 6_500, 10, 0.35, 0.495),
    "bodywork": (45_000, 0.70, 15_000, 180_000, 0, 0.30, 0.45),
    "other": (1_500, 0.70, 500, 5_000, 10, 0.255, 0.495),
}
_SALE_MARGIN = (0.255, 0.30)

# Yearly rates of unplanned visits per car; "tyres" here is an off-season puncture or balancing.
_EVENT_KINDS: tuple[str, ...] = ("repair", "diagnostics", "bodywork", "other", "tyres")
_EVENT_CUM: tuple[float, ...] = (0.8, 1.1, 1.2, 1.5, 1.55)
_EVENT_RATE = _EVENT_CUM[-1]

# Moscow-area mobile DEF codes in which phonenumbers accepts every subscriber number.
_PHONE_CODES: tuple[int, ...] = (
    903, 905, 906, 909, 910, 915, 916, 917, 919, 925, 926, 929, 936, 962, 963, 964, 965, 966,
    967, 968, 977, 980, 985, 991, 993, 995, 996, 999,
)  # fmt: skip
_EMAIL_DOMAINS: tuple[str, ...] = (
    ("mail.ru",) * 7 + ("yandex.ru",) * 6 + ("gmail.com",) * 4 + ("bk.ru", "inbox.ru")
)
_PLATE_LETTERS = "АВЕКМНОРСТУХ"
_PLATE_REGIONS: tuple[str, ...] = (
    "77", "97", "99", "177", "197", "199", "777", "797", "977",
    "50", "90", "150", "190", "750", "790",
)  # fmt: skip
_VIN_CHARS = "0123456789ABCDEFGHJKLMNPRSTUVWXYZ"
_VIN_YEARS = "ABCDEFGHJKLMNPRSTVWXY123456789"  # model-year code cycle starting at 2010
# Check-digit values of VIN characters: digits are themselves, A-H 1-8, J-N 1-5, P 7, R 9, S-Z 2-9.
_VIN_VALUES: dict[str, int] = dict(
    zip(_VIN_CHARS, map(int, "0123456789" + "12345678" + "12345" + "79" + "23456789"), strict=True)
)
_VIN_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)
_VIN_SERIALS = 1_000_000

_LATIN: dict[str, str] = {
    name: translit(name)
    for name in (*MALE_NAMES, *FEMALE_POOL, *SURNAMES, *FEMININE_SURNAMES.values())
}

_MAX_CARS = 5
_YEAR = 365.2425


# --- unique identifiers -----------------------------------------------------------------------


class _Permutation:
    """A keyed bijection of range(size): a Feistel network over the next even power of two,
    cycle-walked back into range. Unique by construction, yet neighbours look unrelated."""

    __slots__ = ("_half", "_keys", "_mask", "size")

    def __init__(self, size: int, key: str) -> None:
        bits = max(size - 1, 1).bit_length()
        bits += bits & 1
        self.size = size
        self._half = bits // 2
        self._mask = (1 << self._half) - 1
        digest = hashlib.sha256(key.encode()).digest()
        self._keys = tuple(int.from_bytes(digest[k * 4 : k * 4 + 4], "big") for k in range(6))

    def __call__(self, x: int) -> int:
        if not 0 <= x < self.size:
            raise ValueError(f"demo identifier space exhausted: {x} not below {self.size}")
        half, mask = self._half, self._mask
        while True:
            left, right = x >> half, x & mask
            for key in self._keys:
                mixed = ((right + key) * 0x9E3779B97F4A7C15 >> 21) & mask
                left, right = right, left ^ mixed
            x = (left << half) | right
            if x < self.size:
                return x


def _vds(model: _Model) -> str:
    """A stable made-up vehicle descriptor section per model."""
    digest = hashlib.sha256(f"{model.make} {model.model}".encode()).digest()
    return "".join(_VIN_CHARS[b % 33] for b in digest[:5])


_VDS: dict[str, str] = {model.model: _vds(model) for model in _MODELS}


def _vin(wmi: str, model: _Model, year: int, unique: int) -> str:
    vds = _VDS[model.model]
    plant, serial = divmod(unique, _VIN_SERIALS)
    body = f"{wmi}{vds}0{_VIN_YEARS[(year - 2010) % 30]}{_VIN_CHARS[plant]}{serial:06d}"
    total = sum(_VIN_VALUES[c] * w for c, w in zip(body, _VIN_WEIGHTS, strict=True))
    check = "X" if total % 11 == 10 else str(total % 11)
    return body[:8] + check + body[9:]


def _plate(unique: int) -> str:
    unique, region = divmod(unique, len(_PLATE_REGIONS))
    unique, number = divmod(unique, 999)
    second, third = divmod(unique, 12)
    first, second = divmod(second, 12)
    letters = _PLATE_LETTERS
    series = f"{letters[first]}{number + 1:03d}{letters[second]}{letters[third]}"
    return series + _PLATE_REGIONS[region]


class _Keys:
    """Per-seed identifier bijections, shared by every client of one generation run."""

    __slots__ = ("phone", "plate", "telegram", "vin")

    def __init__(self, seed: int) -> None:
        self.phone = _Permutation(len(_PHONE_CODES) * 10_000_000, f"{seed}:phone")
        self.telegram = _Permutation(2_000_000_000, f"{seed}:telegram")
        self.vin = _Permutation(len(_VIN_CHARS) * _VIN_SERIALS, f"{seed}:vin")
        self.plate = _Permutation(12**3 * 999 * len(_PLATE_REGIONS), f"{seed}:plate")


# --- generation -------------------------------------------------------------------------------


def generate_households(
    *, seed: int, today: date, clients: int, start: int = 0
) -> Iterator[DemoHousehold]:
    """Yield households for client indexes start .. start+clients-1.

    Client i is identical whatever the range, so 10 clients are a prefix of 1000.
    """
    if clients < 0 or start < 0:
        raise ValueError("clients and start must not be negative")
    keys = _Keys(seed)
    today_ord = today.toordinal()
    birth_bounds = (years_before(today, 79).toordinal() + 1, years_before(today, 19).toordinal())
    seasons = _tyre_seasons(today)
    for index in range(start, start + clients):
        yield _household(seed, index, today, today_ord, birth_bounds, seasons, keys)


def _tyre_seasons(today: date) -> tuple[tuple[int, int], ...]:
    """(first day, length) of the spring and autumn tyre-change windows of recent years."""
    windows = []
    for year in range(today.year - 4, today.year + 1):
        spring = date(year, 4, 1).toordinal()
        autumn = date(year, 10, 5).toordinal()
        windows.append((spring, date(year, 5, 10).toordinal() - spring + 1))
        windows.append((autumn, date(year, 11, 20).toordinal() - autumn + 1))
    return tuple(windows)


def _money(rng: random.Random, kind: str, premium: bool, boost: float) -> int:
    """A long-tailed amount in kopecks; outliers fold back inside the range, not onto its edge."""
    median, sigma, low, high, step, _, _ = _PRICES[kind]
    value = median * math.exp(rng.gauss(0.0, sigma))
    if value < low:
        value = low * (1.0 + 0.3 * rng.random())
    elif value > high:
        value = high * (1.0 - 0.3 * rng.random())
    if premium:
        value *= 1.8
    value *= boost
    if step:
        return int(value / step + 0.5) * step * 100
    return int(value * 100)


def _cents(kopecks: int) -> Decimal:
    return Decimal(kopecks).scaleb(-2)


def _household(
    seed: int,
    index: int,
    today: date,
    today_ord: int,
    birth_bounds: tuple[int, int],
    seasons: tuple[tuple[int, int], ...],
    keys: _Keys,
) -> DemoHousehold:
    rng = random.Random(f"{seed}:{index}")
    rand = rng.random
    client_id = f"C{index:06d}"

    client = _client(rng, index, client_id, birth_bounds, keys)
    home = client.department
    away = DEPARTMENTS[1] if home == DEPARTMENTS[0] else DEPARTMENTS[0]

    history_start = today_ord - int(_YEAR * (2.0 + rand()))
    potential = rand() < 0.02
    end = today_ord
    if rand() < 0.18:  # lost: stops coming, mostly more than a year ago
        if rand() < 0.85:
            end = history_start + 30 + int(rand() * (today_ord - 400 - history_start - 30))
        else:
            end = today_ord - 180 - int(rand() * 185)

    roll = rand()
    n_cars = 1 if roll < 0.65 else 2 if roll < 0.90 else 3 if roll < 0.97 else 4
    if n_cars == 4 and rand() < 0.5:
        n_cars = 5
    fleet = n_cars >= 4  # the key clients: small fleets

    cars: list[DemoCar] = []
    visits: list[DemoVisit] = []
    for number in range(1, n_cars + 1):
        # The first car opens the history with a visit; others were either already owned (no
        # visit of their own on day one) or bought later (a visit when they arrive).
        if number == 1 or rand() < 0.4:
            entry, later = history_start, False
        else:
            entry, later = history_start + int(rand() * (today_ord - 30 - history_start)), True
        sale = rand() < (0.20 if later else 0.056) * (1.5 if fleet else 1.0)
        entry_year = date.fromordinal(entry).year
        model = _pick_model(rng, entry_year, new=sale)
        if sale:
            year = entry_year
        else:
            low = max(model.first_year, 2008)
            high = min(model.last_year or entry_year, entry_year)
            year = max(low, high - int(rng.expovariate(1 / 5.0)))
        wmi, default_km, premium = _MAKES[model.make]

        daily_km = 40.0 * math.exp(rng.gauss(0.0, 0.45)) * (1.5 if fleet else 1.0)
        daily_km = round(min(130.0, max(15.0, daily_km)), 1)
        own_km = None
        if rand() < 0.30:
            roll = rand()
            own_km = 10000 if roll < 0.3 else 12500 if roll < 0.5 else 15000
        own_months = (6 if rand() < 0.2 else 12) if rand() < 0.20 else None
        interval_km = own_km or int(default_km * (0.95 + 0.1 * rand()))
        interval_days = (own_months or 12) * 30.44

        car_id = f"{client_id}-{number}"
        global_car = index * _MAX_CARS + number - 1
        car = DemoCar(
            external_id=car_id,
            client_external_id=client_id,
            vin=_vin(wmi, model, year, keys.vin(global_car)),
            plate=_plate(keys.plate(global_car)),
            make=model.make,
            model=model.model,
            year=year,
            service_interval_km=own_km,
            service_interval_months=own_months,
            daily_km=daily_km,
        )
        cars.append(car)
        if potential:
            continue

        if sale:
            start_km = 5 + int(rand() * 40)
        else:
            age_days = max(90, entry - date(year, 7, 1).toordinal())
            start_km = int(age_days * daily_km * (0.7 + 0.5 * rand()))
        # Older cars break more often; fleets drive harder and come more often.
        event_factor = (0.5 + 0.04 * min(today.year - year, 15)) * (1.4 if fleet else 1.0)
        opening = number == 1 or later
        timing = (daily_km, interval_km, interval_days, event_factor)
        events = _car_events(rng, entry, end, sale, opening, timing, seasons)
        boost = 1.3 if fleet else 1.0
        odometer = start_km
        for seq, (day, kind) in enumerate(events, 1):
            if day > entry:
                driven = start_km + daily_km * (day - entry) + 80.0 * (rand() - 0.5)
                odometer = max(odometer, int(driven))
            if kind == "sale":
                price = model.price * (0.9 + 0.25 * rand())
                amount = int(min(6_500_000.0, max(1_200_000.0, price)) / 1000 + 0.5) * 100_000
                margin_low, margin_high = _SALE_MARGIN
            else:
                amount = _money(rng, kind, premium, boost)
                margin_low, margin_high = _PRICES[kind][5:]
            margin = int(amount * (margin_low + (margin_high - margin_low) * rand()))
            visit = DemoVisit(
                external_id=f"{car_id}-{seq:03d}",
                client_external_id=client_id,
                car_external_id=car_id,
                visited_on=date.fromordinal(day),
                odometer=odometer,
                amount=_cents(amount),
                margin=_cents(margin),
                kind=kind,
                department=home if rand() < 0.85 else away,
            )
            visits.append(visit)

    visits.sort(key=_VISIT_ORDER)
    return DemoHousehold(client, tuple(cars), tuple(visits))


_VISIT_ORDER = attrgetter("visited_on", "external_id")


def _pick_model(rng: random.Random, entry_year: int, *, new: bool) -> _Model:
    while True:
        model = rng.choices(_MODELS, cum_weights=_MODEL_CUM)[0]
        if model.first_year > entry_year:
            continue
        if new and model.last_year is not None:
            continue
        return model


def _car_events(
    rng: random.Random,
    entry: int,
    end: int,
    sale: bool,
    opening: bool,
    timing: tuple[float, int, float, float],
    seasons: tuple[tuple[int, int], ...],
) -> list[tuple[int, str]]:
    """(day ordinal, kind) of one car's visits between its entry and `end`, in date order.

    `timing` is (daily km, service interval km, service interval days, unplanned-visit factor);
    `opening` marks a car whose arrival is itself a visit.
    """
    daily_km, interval_km, interval_days, event_factor = timing
    rand = rng.random
    if entry > end:
        return []
    first = None
    if sale:
        first = "sale"
    elif opening:
        roll = rand()
        first = "maintenance" if roll < 0.55 else "diagnostics" if roll < 0.8 else "repair"
    events = [] if first is None else [(entry, first)]
    if sale and rand() < 0.12:  # bought here, serviced elsewhere
        return events

    def gap() -> int:
        # Whichever comes first: the km interval at this car's pace or the time interval.
        # Owners come a little early or, more often, a little late.
        by_km = interval_km * (0.92 + 0.16 * rand()) / daily_km
        by_time = interval_days * (0.95 + 0.15 * rand())
        return max(30, int(min(by_km, by_time)))

    day = entry + gap() if first in ("sale", "maintenance") else entry + int(rand() * gap()) + 1
    while day <= end:
        events.append((day, "maintenance"))
        day += gap()

    # Seasonal tyre changes; a tyre customer skips a season now and then.
    if rand() < 0.55:
        for window_start, length in seasons:
            day = window_start + int(rand() * length)
            if entry < day <= end and rand() < 0.7:
                events.append((day, "tyres"))

    rate = _EVENT_RATE * event_factor / _YEAR
    day = entry + int(rng.expovariate(rate)) + 1
    while day <= end:
        roll = rand() * _EVENT_RATE
        kind = next(k for k, c in zip(_EVENT_KINDS, _EVENT_CUM, strict=True) if roll < c)
        events.append((day, kind))
        day += int(rng.expovariate(rate)) + 1

    events.sort()
    return events


def _client(
    rng: random.Random, index: int, client_id: str, birth_bounds: tuple[int, int], keys: _Keys
) -> DemoClient:
    rand = rng.random
    male = rand() < 0.55
    gender = "male" if male else "female"
    surname = SURNAMES[int(rand() * len(SURNAMES))]
    father = MALE_POOL[int(rand() * len(MALE_POOL))]
    if male:
        first = MALE_POOL[int(rand() * len(MALE_POOL))]
        middle = MALE_NAMES[father][0]
    else:
        first = FEMALE_POOL[int(rand() * len(FEMALE_POOL))]
        middle = MALE_NAMES[father][1]
        surname = FEMININE_SURNAMES[surname]

    birthday = None
    if rand() < 0.9:
        low, high = birth_bounds
        # Car owners cluster around forty; the triangle keeps both tails thin.
        born = high - int(rng.triangular(0.0, high - low, 21 * _YEAR))
        birthday = date.fromordinal(min(high, max(low, born)))

    code, subscriber = divmod(keys.phone(index), 10_000_000)
    phone = f"+7{_PHONE_CODES[code]}{subscriber:07d}"

    email = None
    if rand() < 0.45:
        fn, ln = _LATIN[first], _LATIN[surname]
        shapes = (f"{fn}.{ln}", f"{ln}.{fn[0]}", f"{fn[0]}{ln}", f"{ln}_{fn}", ln)
        local = shapes[int(rand() * len(shapes))]
        # The trailing index keeps addresses unique: names never contain digits.
        email = f"{local}{index}@{_EMAIL_DOMAINS[int(rand() * len(_EMAIL_DOMAINS))]}"

    telegram_id = 100_000_000 + keys.telegram(index) if rand() < 0.30 else None
    consent = rand() < 0.65
    department = DEPARTMENTS[0] if rand() < 0.6 else DEPARTMENTS[1]
    return DemoClient(
        external_id=client_id,
        last_name=surname,
        first_name=first,
        middle_name=middle,
        gender=gender,
        birthday=birthday,
        phone=phone,
        email=email,
        telegram_id=telegram_id,
        consent_ads=consent,
        department=department,
    )

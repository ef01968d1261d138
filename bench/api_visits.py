"""Benchmark: POST /api/v1/visits on loopback (target: 300 requests/s, p99 < 50 ms on SQLite).

A demo dealer of --clients clients is loaded into a fresh database (SQLite file, or with
--postgres ADMIN_URL a scratch PostgreSQL database made beside the one it names and dropped
at the end). Then `autoloyal run --roles api` starts in its own process, from a generated
config.toml (a free port, an API token, [telegram] bot_username so that every visit also
queues its survey invitation), pinned to one core while this load generator keeps the
other. Once GET /healthz answers 200, an aiohttp client with --concurrency keep-alive
connections posts closed work orders: unique numbers, a random demo client (one of their
cars with an odometer reading above the car's last one, when they have a car), today,
1 000-60 000 roubles with kopecks, a kind from ТО-2 / Диагностика / Шиномонтаж / Кузовной
ремонт. --warmup requests go first and are left out of the figures.

Closed loop by default: --concurrency workers, each posting its next request as soon as
the last one answered. With --rate R, open loop: request i is due at start + i/R whatever
the answers before it, and its latency counts from when it was due (so waiting for a free
connection counts too).

Prints requests, seconds, requests/s, latency p50/p90/p99/max measured here per request,
answers other than 201 (and the first one's body), PASS or MISS against the target, and
what the database holds after the run: visits, bonus movements and queued messages, each
against what the 201 answers promised.

    python bench/api_visits.py [--clients 2000] [--requests 6000] [--concurrency 16]
                               [--rate 300] [--warmup 200] [--sqlite PATH]
                               [--postgres postgresql://postgres@127.0.0.1/postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # `python bench/api_visits.py` must find tests.support

import aiohttp  # noqa: E402
from sqlalchemy import func, select  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from autoloyal.app import open_app  # noqa: E402
from autoloyal.config import Settings, parse_settings  # noqa: E402
from crm.demo.load import load_demo  # noqa: E402
from crm.importing.report import thousands  # noqa: E402
from gateway.outbox import QUEUED  # noqa: E402
from storage.bonuses import BonusMovement  # noqa: E402
from storage.models import Car, Client, OdometerReading, Visit  # noqa: E402
from storage.outbox import Message  # noqa: E402
from tests.support.databases import create_pg_scratch, drop_pg_scratch  # noqa: E402

SEED = 42
KINDS = ("ТО-2", "Диагностика", "Шиномонтаж", "Кузовной ремонт")
PATH = "/api/v1/visits"
TARGET_RATE = 300.0  # requests/s
TARGET_P99_MS = 50.0
SERVER_START_SECONDS = 120.0
BOT_USERNAME = "dealer_bot"


# --- the data -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Counts:
    visits: int
    movements: int
    queued: int
    readings: int

    def minus(self, other: Counts) -> Counts:
        return Counts(
            self.visits - other.visits,
            self.movements - other.movements,
            self.queued - other.queued,
            self.readings - other.readings,
        )


async def count_rows(settings: Settings) -> Counts:
    async with open_app(settings, migrate=False) as app, app.sessions() as session:

        async def rows(query: Any) -> int:
            return int(await session.scalar(query) or 0)

        return Counts(
            visits=await rows(select(func.count()).select_from(Visit)),
            movements=await rows(select(func.count()).select_from(BonusMovement)),
            queued=await rows(
                select(func.count()).select_from(Message).where(Message.state == QUEUED)
            ),
            readings=await rows(select(func.count()).select_from(OdometerReading)),
        )


Owners = dict[str, list[tuple[str, int]]]  # client external id: [(car external id, last km)]


async def build(settings: Settings, clients: int) -> tuple[dict[str, int], Owners]:
    """Migrate, load the demo dealer; return its counts and {client: [(car, last km), ...]}."""
    async with open_app(settings) as app:
        counts = await load_demo(
            app.sessions, app.clock, settings.company.tz, seed=SEED, clients=clients
        )
        async with app.sessions() as session:
            last_km = (
                select(OdometerReading.car_id, func.max(OdometerReading.km).label("km"))
                .group_by(OdometerReading.car_id)
                .subquery()
            )
            rows = await session.execute(
                select(Client.external_id, Car.external_id, last_km.c.km)
                .outerjoin(Car, Car.client_id == Client.id)
                .outerjoin(last_km, last_km.c.car_id == Car.id)
                .where(Client.external_id.is_not(None))
                .order_by(Client.id, Car.id)
            )
            owners: Owners = {}
            for client, car, km in rows:
                cars = owners.setdefault(client, [])
                if car is not None:
                    cars.append((car, int(km or 0)))
    return counts, owners


def bodies(owners: Owners, count: int, today: date) -> list[bytes]:
    """`count` closed work orders with unique numbers, as request bodies."""
    rng = random.Random(SEED)
    clients = sorted(owners)
    km = {car: last for cars in owners.values() for car, last in cars}
    out = []
    for number in range(1, count + 1):
        client = rng.choice(clients)
        amount = Decimal(rng.randint(1_000_00, 60_000_99)) / 100
        body: dict[str, Any] = {
            "external_id": f"ЗН-БЕНЧ-{number:07d}",
            "client": client,
            "visited_on": today.isoformat(),
            "amount": f"{amount:.2f}",
            "kind": rng.choice(KINDS),
        }
        if owners[client]:
            car, _ = rng.choice(owners[client])
            km[car] += rng.randint(300, 15_000)
            body["car"] = car
            body["odometer"] = km[car]
        out.append(json.dumps(body, ensure_ascii=False).encode())
    return out


# --- the server -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(folder: Path, url: str, port: int, token: str) -> tuple[Path, Settings]:
    raw: dict[str, dict[str, object]] = {
        "database": {"url": url},
        "http": {"host": "127.0.0.1", "port": port, "api_token": token},
        "telegram": {"bot_username": BOT_USERNAME},
    }
    text = "\n".join(
        f"[{section}]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in keys.items())
        for section, keys in raw.items()
    )
    path = folder / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path, parse_settings(raw, source=str(path))


def start_server(config: Path, log: Path, core: int | None) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "autoloyal", "--config", str(config), "run", "--roles", "api"]
    with log.open("wb") as out:
        server = subprocess.Popen(
            command, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )
    if core is not None:
        os.sched_setaffinity(server.pid, {core})  # before it starts any thread of its own
    return server


async def wait_healthy(base: str, server: subprocess.Popen[bytes]) -> float | None:
    """Seconds until GET /healthz answered 200; None when the server died or took too long."""
    started = time.perf_counter()
    async with aiohttp.ClientSession() as http:
        while time.perf_counter() - started < SERVER_START_SECONDS:
            if server.poll() is not None:
                break
            try:
                async with http.get(f"{base}/healthz") as answer:
                    if answer.status == 200:
                        return time.perf_counter() - started
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    return None


def stop_server(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


# --- the load -------------------------------------------------------------------------------


@dataclass
class Results:
    latencies: list[float] = field(default_factory=list)  # seconds, 201 answers and others
    statuses: Counter[int] = field(default_factory=Counter)
    first_error: str | None = None
    accrued: int = 0  # 201 answers with bonuses accrued
    referral: int = 0  # 201 answers with a referral bonus for the client
    surveys: int = 0  # 201 answers with an invitation scheduled
    readings: int = 0  # 201 answers to a visit with a car and an odometer reading

    def note(self, status: int, text: str, body: bytes, latency: float | None) -> None:
        if latency is not None:
            self.latencies.append(latency)
        self.statuses[status] += 1
        if status != 201:
            if self.first_error is None:
                self.first_error = f"{status}: {text[:2000]}"
            return
        answer = json.loads(text)
        self.accrued += Decimal(answer["bonus"]["accrued"]) > 0
        self.referral += Decimal(answer["bonus"]["referral"]) > 0
        self.surveys += (answer["survey"] or {}).get("scheduled_at") is not None
        sent = json.loads(body)
        self.readings += "car" in sent and bool(sent.get("odometer"))


async def post(
    http: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]
) -> tuple[int, str]:
    try:
        async with http.post(url, data=body, headers=headers) as answer:
            return answer.status, await answer.text()
    except aiohttp.ClientError as exc:
        return 0, f"{type(exc).__name__}: {exc}"


async def closed_loop(
    http: aiohttp.ClientSession,
    url: str,
    work: list[bytes],
    headers: dict[str, str],
    concurrency: int,
    results: Results,
    measured: bool,
) -> float:
    queue = iter(work)

    async def worker() -> None:
        for body in queue:  # the workers share one iterator: each body goes once
            sent = time.perf_counter()
            status, text = await post(http, url, body, headers)
            latency = time.perf_counter() - sent
            results.note(status, text, body, latency if measured else None)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started


async def open_loop(
    http: aiohttp.ClientSession,
    url: str,
    work: list[bytes],
    headers: dict[str, str],
    rate: float,
    results: Results,
) -> float:
    async def one(body: bytes, due: float) -> None:
        status, text = await post(http, url, body, headers)
        results.note(status, text, body, time.perf_counter() - due)

    tasks = []
    started = time.perf_counter()
    for index, body in enumerate(work):
        due = started + index / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(body, due)))
    await asyncio.gather(*tasks)
    return time.perf_counter() - started


def percentile(sorted_values: list[float], share: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    index = min(len(sorted_values) - 1, max(0, math.ceil(share * len(sorted_values)) - 1))
    return sorted_values[index]


def cpu_seconds(pid: int) -> float | None:
    """CPU time a process (all its threads) used so far, from /proc; None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


@dataclass(frozen=True)
class Timing:
    seconds: float  # wall time of the timed requests
    server_cpu: float | None  # CPU seconds the server process used meanwhile
    client_cpu: float  # ... and this load generator


async def load(
    base: str,
    token: str,
    work: list[bytes],
    warmup: int,
    concurrency: int,
    rate: float | None,
    server_pid: int,
) -> tuple[Results, Results, Timing]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=120)
    url = f"{base}{PATH}"
    warm, timed = Results(), Results()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        await closed_loop(http, url, work[:warmup], headers, concurrency, warm, measured=False)
        server_before, client_before = cpu_seconds(server_pid), time.process_time()
        if rate is None:
            seconds = await closed_loop(
                http, url, work[warmup:], headers, concurrency, timed, measured=True
            )
        else:
            seconds = await open_loop(http, url, work[warmup:], headers, rate, timed)
        server_after, client_after = cpu_seconds(server_pid), time.process_time()
    server_cpu = None
    if server_before is not None and server_after is not None:
        server_cpu = server_after - server_before
    return warm, timed, Timing(seconds, server_cpu, client_after - client_before)


# --- the run --------------------------------------------------------------------------------


def pin(cores: bool) -> tuple[int | None, int | None]:
    """(server core, load generator core): the last core and the first, when there are two."""
    if not cores or not hasattr(os, "sched_getaffinity"):
        return None, None
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        return None, None
    return available[-1], available[0]


def report(
    args: argparse.Namespace,
    warm: Results,
    timed: Results,
    timing: Timing,
    added: Counts,
    totals: Counts,
    loads: tuple[float, float],
) -> bool:
    seconds = timing.seconds
    done = len(timed.latencies)
    rate = done / seconds
    ms = sorted(latency * 1000 for latency in timed.latencies)
    mode = (
        f"open loop at {args.rate:g}/s, latency from when each request was due"
        if args.rate
        else f"closed loop, {args.concurrency} clients"
    )
    print(
        f"requests: {thousands(done)} in {seconds:.2f} s = {rate:.1f} requests/s"
        f"  [{mode}, {args.concurrency} keep-alive connections; {args.warmup} warm-up"
        " requests before, not counted]"
    )
    p50, p90, p99 = (percentile(ms, share) for share in (0.50, 0.90, 0.99))
    print(
        f"latency (ms, client side): p50 {p50:.1f}, p90 {p90:.1f}, p99 {p99:.1f},"
        f" max {ms[-1]:.1f}, mean {sum(ms) / len(ms):.1f}"
    )
    if timing.server_cpu is not None:
        print(
            f"CPU: server process {timing.server_cpu / done * 1000:.2f} ms per request"
            f" ({timing.server_cpu / seconds:.0%} of a core), load generator"
            f" {timing.client_cpu / done * 1000:.2f} ms per request"
            f" ({timing.client_cpu / seconds:.0%} of a core)"
        )
    print(
        f"machine load average (1 min): {loads[0]:.2f} before the server started,"
        f" {loads[1]:.2f} after the run (which counts the run's own processes);"
        f" {os.cpu_count()} cores"
    )
    both = warm.statuses + timed.statuses
    errors = sum(count for status, count in both.items() if status != 201)
    by_status = ", ".join(f"{status or 'no answer'}: {n}" for status, n in sorted(both.items()))
    print(f"errors: {errors} answers other than 201 (by status, warm-up included: {by_status})")
    first = warm.first_error or timed.first_error
    if first:
        print(f"  first error: {first}")
    verdict = "PASS" if rate >= TARGET_RATE and p99 < TARGET_P99_MS else "MISS"
    print(
        f"target: >= {TARGET_RATE:g} requests/s with p99 < {TARGET_P99_MS:g} ms: {verdict}"
        f" ({rate:.1f} requests/s, p99 {p99:.1f} ms)"
    )
    if args.rate and args.rate < TARGET_RATE:
        print(f"  (an open loop at {args.rate:g}/s cannot reach {TARGET_RATE:g}/s by design)")

    ok = errors == 0
    created = both[201]
    expected = {
        "visits": created,
        "bonus movements": warm.accrued + timed.accrued + warm.referral + timed.referral,
        "messages queued": warm.surveys + timed.surveys,
        "odometer readings": warm.readings + timed.readings,
    }
    got = {
        "visits": added.visits,
        "bonus movements": added.movements,
        "messages queued": added.queued,
        "odometer readings": added.readings,
    }
    total = {
        "visits": totals.visits,
        "bonus movements": totals.movements,
        "messages queued": totals.queued,
        "odometer readings": totals.readings,
    }
    print(f"database after the run ({thousands(created)} visits posted, warm-up included):")
    for name, want in expected.items():
        # a referral credits the referrer too: more movements than answers show is fine
        fine = got[name] >= want if name == "bonus movements" else got[name] == want
        ok &= fine
        print(
            f"  {name}: {thousands(total[name])} rows, +{thousands(got[name])} in the run;"
            f" the 201 answers promised {thousands(want)}: {'ok' if fine else 'MISMATCH'}"
        )
    return ok


def run(args: argparse.Namespace, url: str, folder: Path) -> bool:
    token = secrets.token_hex(24)
    port = free_port()
    config, settings = write_config(folder, url, port, token)
    shown = make_url(url).render_as_string(hide_password=True)

    started = time.perf_counter()
    demo, owners = asyncio.run(build(settings, args.clients))
    with_car = sum(1 for cars in owners.values() if cars)
    rows = ", ".join(f"{thousands(count)} {name}" for name, count in demo.items())
    print(
        f"setup (not in the figures): {shown}: demo dealer of {rows} in"
        f" {time.perf_counter() - started:.1f} s; {thousands(with_car)} of"
        f" {thousands(len(owners))} clients have a car"
    )
    today = datetime.now(settings.company.tz).date()
    work = bodies(owners, args.warmup + args.requests, today)
    before = asyncio.run(count_rows(settings))

    server_core, client_core = pin(not args.no_pin)
    log = folder / "server.log"
    load_before = os.getloadavg()[0]
    server = start_server(config, log, server_core)
    try:
        if client_core is not None:
            os.sched_setaffinity(0, {client_core})
        base = f"http://127.0.0.1:{port}"
        ready = asyncio.run(wait_healthy(base, server))
        if ready is None:
            tail = log.read_text(encoding="utf-8", errors="replace")[-3000:]
            raise SystemExit(f"the server did not answer GET /healthz with 200; its log:\n{tail}")
        cores = (
            f"server on core {server_core}, load generator on core {client_core}"
            if server_core is not None
            else "not pinned to cores"
        )
        print(
            f"server: `autoloyal run --roles api`, pid {server.pid}, {base},"
            f" healthy after {ready:.1f} s; {cores}"
        )
        warm, timed, timing = asyncio.run(
            load(base, token, work, args.warmup, args.concurrency, args.rate, server.pid)
        )
        loads = (load_before, os.getloadavg()[0])  # before the server started, after the run
    finally:
        stop_server(server)
    after = asyncio.run(count_rows(settings))
    return report(args, warm, timed, timing, after.minus(before), after, loads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=2000, help="demo clients to load")
    parser.add_argument("--requests", type=int, default=6000, help="timed requests")
    parser.add_argument("--concurrency", type=int, default=16, help="connections (and workers)")
    parser.add_argument(
        "--rate", type=float, help="open loop: requests per second (default: closed loop)"
    )
    parser.add_argument("--warmup", type=int, default=200, help="requests before the timing")
    parser.add_argument("--sqlite", type=Path, help="the SQLite file (default: a temp file)")
    parser.add_argument(
        "--postgres", help="a PostgreSQL admin URL: a scratch database is made beside"
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    args = parser.parse_args()
    if args.requests < 1 or args.concurrency < 1 or args.warmup < 0 or args.clients < 1:
        parser.error("--requests, --concurrency and --clients must be positive, --warmup >= 0")
    if args.rate is not None and args.rate <= 0:
        parser.error("--rate must be positive")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if args.postgres:
            url = asyncio.run(create_pg_scratch(args.postgres, migrate=False))
            try:
                ok = run(args, url, folder)
            finally:
                asyncio.run(drop_pg_scratch(args.postgres, url))
        else:
            db = args.sqlite or folder / "bench.db"
            if db.exists():
                parser.error(f"--sqlite {db}: the file exists; the demo dealer needs a new one")
            ok = run(args, f"sqlite:///{db.resolve()}", folder)
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()

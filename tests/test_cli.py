"""The `autoloyal` command as the dealer's IT person runs it: a real process, real files."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from crm.demo import write_onec_export
from crm.demo.generator import generate_households
from storage.migrate import head_revision
from tests.support.files import write_csv

AUTOLOYAL = str(Path(sys.executable).parent / "autoloyal")


def autoloyal(cwd: Path, *args: str, config: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "AUTOLOYAL_CONFIG"}
    if config is not None:
        (cwd / "config.toml").write_text(config, encoding="utf-8")
    return subprocess.run(
        [AUTOLOYAL, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def query(db: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


def test_db_upgrade_creates_the_database_and_says_where(tmp_path: Path) -> None:
    result = autoloyal(tmp_path, "db", "upgrade")

    assert result.returncode == 0, result.stderr
    assert f"is at revision {head_revision()} (head)" in result.stdout
    assert (tmp_path / "autoloyal.db").exists()
    assert query(tmp_path / "autoloyal.db", "SELECT code, is_default FROM branch") == [("main", 1)]


def test_a_1c_visit_export_imports_exactly_and_again_changes_nothing(tmp_path: Path) -> None:
    counts = write_onec_export(
        generate_households(seed=3, today=date(2026, 11, 20), clients=40), tmp_path
    )
    autoloyal(tmp_path, "db", "upgrade")
    for kind in ("clients", "cars"):
        assert autoloyal(tmp_path, "import", kind, f"{kind}.csv").returncode == 0

    first = autoloyal(tmp_path, "import", "visits", "visits.csv")
    snapshot = query(tmp_path / "autoloyal.db", "SELECT * FROM visit ORDER BY id")
    second = autoloyal(tmp_path, "import", "visits", "visits.csv")

    visits = counts["visits.csv"]
    assert first.stdout.strip() == f"visits: {visits} imported, 0 updated, 0 rejected"
    assert second.stdout.strip() == (
        f"visits: 0 imported, 0 updated, {visits} unchanged, 0 rejected"
    )
    assert query(tmp_path / "autoloyal.db", "SELECT * FROM visit ORDER BY id") == snapshot
    source = (tmp_path / "visits.csv").read_text(encoding="cp1251").splitlines()[1:]
    expected = sum(
        Decimal(line.split(";")[5].replace("\u00a0", "").replace(" ", "").replace(",", "."))
        for line in source
    )
    [(total,)] = query(
        tmp_path / "autoloyal.db", "SELECT CAST(SUM(amount * 100) AS INTEGER) FROM visit"
    )
    assert Decimal(total) / 100 == expected


def test_import_prints_the_summary_and_notes_and_writes_the_rejects(tmp_path: Path) -> None:
    write_csv(
        tmp_path / "clients.csv",
        ["external_id", "full_name", "phone", "Комментарий"],
        [["1", "Иванов Иван", "9035254560", ""], ["2", "Иванов И.", "8 903 525-45-60", ""],
         ["3", "Петров", "123", ""]],
    )  # fmt: skip

    result = autoloyal(tmp_path, "import", "clients", "clients.csv")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "clients: 1 imported, 0 updated, 1 merged, 1 rejected -> clients.rejects.csv"
    )
    assert "ignored columns: Комментарий" in result.stderr
    assert "line 3: client 2 merged into 1 (same phone)" in result.stderr
    assert (tmp_path / "clients.rejects.csv").exists()


def test_a_file_missing_a_required_column_is_refused_with_exit_code_2(tmp_path: Path) -> None:
    write_csv(tmp_path / "visits.csv", ["external_id", "client_id"], [["V1", "C1"]])

    result = autoloyal(tmp_path, "import", "visits", "visits.csv")

    assert result.returncode == 2
    assert "no column 'date'" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            "[telegram]\nrate_per_second = 0\n",
            "telegram.rate_per_second: must be greater than 0, got 0",
        ),
        ('[http]\nport = "abc"\n', 'http.port: expected an integer, got "abc"'),
        ("[http\n", "invalid TOML"),
    ],
)
def test_bad_config_is_one_line_naming_the_key_and_exit_code_2(
    tmp_path: Path, config: str, message: str
) -> None:
    result = autoloyal(tmp_path, "db", "upgrade", config=config)

    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "autoloyal.db").exists()


def test_an_unreachable_database_is_named_with_its_password_masked(tmp_path: Path) -> None:
    config = "[database]\nurl = 'postgresql://app:secret@127.0.0.1:1/autoloyal'\n"

    result = autoloyal(tmp_path, "db", "upgrade", config=config)

    assert result.returncode == 2
    assert (
        "database.url: cannot connect to postgresql+asyncpg://app:***@127.0.0.1:1/autoloyal"
        in result.stderr
    )
    assert "secret" not in result.stderr
    assert "Traceback" not in result.stderr


def test_demo_fills_an_empty_database_and_refuses_a_full_one(tmp_path: Path) -> None:
    first = autoloyal(tmp_path, "demo", "--clients", "30", "--seed", "5")
    second = autoloyal(tmp_path, "demo", "--clients", "30")

    assert first.returncode == 0, first.stderr
    assert re.search(r"30 clients, \d+ cars, \d+ visits", first.stdout)
    assert query(tmp_path / "autoloyal.db", "SELECT count(*) FROM client") == [(30,)]
    assert second.returncode == 2
    assert "already holds 30 clients" in second.stderr


def test_demo_can_write_a_1c_export_instead(tmp_path: Path) -> None:
    result = autoloyal(tmp_path, "demo", "--clients", "10", "--export", "csv")

    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "csv").iterdir()) == [
        "cars.csv",
        "clients.csv",
        "visits.csv",
    ]
    assert not (tmp_path / "autoloyal.db").exists()


def test_unknown_role_is_refused(tmp_path: Path) -> None:
    result = autoloyal(tmp_path, "run", "--roles", "api,mailer")

    assert result.returncode == 2
    assert "unknown role mailer" in result.stderr


def test_run_migrates_serves_health_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("[http]\nport = 0\n", encoding="utf-8")
    process = subprocess.Popen([AUTOLOYAL, "run"], cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    try:
        # Every role has started (and said so) before the signal: a SIGTERM that overtook
        # the dispatcher's start would stop the process before it logged its line.
        lines, url, dispatching, scheduling = [], None, False, False
        deadline = time.monotonic() + 120
        while not (url and dispatching and scheduling) and time.monotonic() < deadline:
            line = process.stderr.readline() if process.stderr else ""
            if not line:
                break  # the process ended
            lines.append(line)
            if match := re.search(r"role api: serving (http://[\d.]+:\d+)", line):
                url = match.group(1)
            dispatching = dispatching or "role dispatcher:" in line
            scheduling = scheduling or "role scheduler: leading" in line
        assert url is not None, "".join(lines)
        assert dispatching, "".join(lines)
        assert scheduling, "".join(lines)

        with urllib.request.urlopen(f"{url}/healthz", timeout=60) as response:
            health = json.load(response)
            status = response.status
        process.send_signal(signal.SIGTERM)
        _, rest = process.communicate(timeout=60)
    finally:
        process.kill()

    assert (status, health["status"], health["database"]) == (200, "ok", "ok")
    assert process.returncode == 0
    log = "".join(lines) + rest
    assert f"at revision {head_revision()}" in log
    # one line per role started
    assert re.findall(r"role (\w+):", log) == ["api", "dispatcher", "scheduler"]
    assert "stopped" in rest
    assert (tmp_path / "autoloyal.db").exists()

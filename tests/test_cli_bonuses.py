"""`autoloyal bonus ...` and `autoloyal card ...` from the shell, on a small demo dealer."""

from __future__ import annotations

import json
import shutil
import sqlite3
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.test_cli import autoloyal

# The demo's first clients, as `autoloyal segment all` lists them.
FIRST, SECOND = "C000000", "C000001"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("demo")
    result = autoloyal(folder, "demo", "--clients", "20", "--seed", "3")
    assert result.returncode == 0, result.stderr
    return folder


@pytest.fixture
def dealer(demo: Path, tmp_path: Path) -> Path:
    """A fresh copy of the demo dealer for each test."""
    shutil.copy(demo / "autoloyal.db", tmp_path / "autoloyal.db")
    return tmp_path


def ok(dealer: Path, *args: str) -> str:
    result = autoloyal(dealer, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def balance(dealer: Path, client: str) -> dict[str, object]:
    found: dict[str, object] = json.loads(
        ok(dealer, "bonus", "balance", client, "--format", "json")
    )
    return found


def test_staff_add_and_take_bonuses_with_a_reason_and_never_below_zero(dealer: Path) -> None:
    added = ok(dealer, "bonus", "adjust", FIRST, "--add", "1000", "--reason", "компенсация",
               "--by", "Анна")  # fmt: skip
    assert "+1000.00; balance 1 000.00" in added
    ok(dealer, "bonus", "adjust", FIRST, "--take", "300", "--reason", "ошибка")
    refused = autoloyal(dealer, "bonus", "adjust", FIRST, "--take", "701", "--reason", "x")
    assert refused.returncode == 2
    assert "the balance never goes below zero" in refused.stderr
    assert balance(dealer, FIRST)["balance"] == "700.00"
    without_reason = autoloyal(dealer, "bonus", "adjust", FIRST, "--add", "5")
    assert without_reason.returncode == 2
    assert "give the reason" in without_reason.stderr
    history = json.loads(ok(dealer, "bonus", "history", FIRST, "--format", "json"))
    assert [(m["kind"], m["amount"], m["reason"], m["by"]) for m in history] == [
        ("adjustment", "-300.00", "ошибка", "cli:" + history[0]["by"].removeprefix("cli:")),
        ("adjustment", "1000.00", "компенсация", "Анна"),
    ]


def test_the_same_ref_adjusts_once(dealer: Path) -> None:
    for _ in range(2):
        ok(dealer, "bonus", "adjust", FIRST, "--add", "50", "--reason", "акция", "--ref", "promo-1")
    assert balance(dealer, FIRST)["balance"] == "50.00"


def test_a_card_is_issued_lost_and_replaced_and_keeps_its_history(dealer: Path) -> None:
    assert "3 new cards of 3" in ok(dealer, "card", "produce", "20000001-20000003")
    ok(dealer, "card", "issue", "2000 0001", FIRST)
    ok(dealer, "card", "lose", "20000001", "--reason", "потерял на мойке")
    assert "card 20000002 issued in place of 20000001" in ok(
        dealer, "card", "replace", "20000001", "20000002", "--reason", "перевыпуск"
    )
    shown = ok(dealer, "card", "show", "20000001")
    assert "card 20000001: replaced" in shown
    assert "replaced by 20000002" in shown
    events = [line.split()[2].rstrip(";") for line in shown.splitlines() if line.startswith("  ")]
    assert events == ["produced", "issued", "lost", "replaced"]
    assert "потерял на мойке" in shown
    # the old number still finds the client, whose card is now the new one
    assert balance(dealer, "20000001")["card"] == {"number": "20000002", "state": "issued"}
    refused = autoloyal(dealer, "card", "issue", "20000003", FIRST)
    assert refused.returncode == 2
    assert "already holds card 20000002" in refused.stderr


def test_a_vip_card_pins_its_tier(dealer: Path) -> None:
    ok(dealer, "card", "issue", "VIP0001", SECOND, "--tier", "золотой")
    assert balance(dealer, SECOND)["tier"] == "Золотой"
    unknown = autoloyal(dealer, "card", "issue", "VIP0002", FIRST, "--tier", "platinum")
    assert unknown.returncode == 2
    assert "no tier named 'platinum'" in unknown.stderr


def test_the_segment_filter_finds_clients_by_bonus_balance(dealer: Path) -> None:
    ok(dealer, "bonus", "adjust", SECOND, "--add", "1500", "--reason", "подарок")
    found = ok(dealer, "segment", "filter", "bonus=1000-", "--format", "json")
    assert [row["client_id"] for row in json.loads(found)["rows"]] == [2]
    assert ok(dealer, "segment", "filter", "bonus=-1499.99", "--count").strip() == "19"


def test_birthday_bonuses_are_given_once_a_day_from_the_shell(dealer: Path) -> None:
    # The shell runs on the real clock: make someone's birthday today in the company's zone.
    today = datetime.now(ZoneInfo("Europe/Moscow")).date()
    with sqlite3.connect(dealer / "autoloyal.db") as conn:
        conn.execute("UPDATE client SET birthday = NULL")
        conn.execute("UPDATE client SET birthday = ? WHERE id = 3", (today.replace(year=1990),))
    assert "birthday bonus given to 1 clients" in ok(dealer, "bonus", "birthday")
    assert "birthday bonus given to 0 clients" in ok(dealer, "bonus", "birthday")
    assert balance(dealer, "#3")["balance"] == "500.00"
    assert "expired 0.00 bonuses of 0 clients" in ok(dealer, "bonus", "expire")

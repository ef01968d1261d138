"""What the command line prints is what the database and the config hold.

Names and texts are printed through Rich, which would take "[sms]" for markup and ":e-mail:"
for an emoji; CSV for people is opened in spreadsheets, which would run "=cmd|..." as a
formula. A small demo dealer with hostile names shows both.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from pathlib import Path

import pytest

from tests.test_cli import autoloyal, query

FORMULAS = [
    "=cmd|' /C calc'!A0",
    '=HYPERLINK("http://evil.example","[sms] :e-mail:")',
    "+SUM(1,1)",
    "-2+3",
    "@SUM(1,1)",
    "\tTAB",
]
MARKUP = FORMULAS[1]  # both a formula and Rich markup with an emoji code
CAMPAIGN = "[sms] :e-mail: [bold]акция[/bold]"


@pytest.fixture(scope="module")
def dealer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Clients 1-6 named by FORMULAS; the first lost client paid back more than they spent;
    a campaign to everyone by SMS, queued."""
    folder = tmp_path_factory.mktemp("dealer")
    assert autoloyal(folder, "demo", "--clients", "40", "--seed", "3").returncode == 0
    lost = autoloyal(folder, "segment", "lost", "days=180", "--format", "json")
    refunded = json.loads(lost.stdout)["rows"][0]["client_id"]
    with sqlite3.connect(folder / "autoloyal.db") as conn:
        for client_id, name in enumerate(FORMULAS, start=1):
            conn.execute(
                "UPDATE client SET last_name = ?, first_name = NULL, middle_name = NULL "
                "WHERE id = ?",
                (name, client_id),
            )
        conn.execute("UPDATE visit SET amount = -ABS(amount) WHERE client_id = ?", (refunded,))
    (folder / "refunded").write_text(str(refunded), encoding="utf-8")
    return folder


def rows(text: str) -> dict[str, dict[str, str]]:
    return {row["client_id"]: row for row in csv.DictReader(io.StringIO(text))}


def test_a_segment_as_csv_defuses_formulas_and_keeps_numbers_and_phones(dealer: Path) -> None:
    everyone = autoloyal(dealer, "segment", "all", "--format", "csv")
    lost = autoloyal(dealer, "segment", "lost", "days=180", "--format", "csv")

    assert everyone.returncode == 0, everyone.stderr
    by_id = rows(everyone.stdout)
    assert [by_id[str(n)]["client"] for n in range(1, 7)] == ["'" + name for name in FORMULAS]
    phones = {str(n): phone or "" for n, phone in query(dealer / "autoloyal.db",
                                                         "SELECT id, phone FROM client")}  # fmt: skip
    assert {n: row["phone"] for n, row in by_id.items()} == phones, "a phone is not a formula"
    assert any(phone.startswith("+7") for phone in phones.values())
    refunded = rows(lost.stdout)[(dealer / "refunded").read_text(encoding="utf-8")]
    assert refunded["amount"].startswith("-"), "a negative amount is a number, not a formula"
    float(refunded["amount"])


def test_a_campaign_and_its_messages_print_names_as_they_are(dealer: Path) -> None:
    created = autoloyal(
        dealer, "campaign", "create", "--segment", "all", "--template", "winback",
        "--channels", "sms", "--name", CAMPAIGN, "--yes",
    )  # fmt: skip
    shown = autoloyal(dealer, "campaign", "show", "1")
    listed = autoloyal(dealer, "messages", "--campaign", "1", "--format", "csv")
    [message] = json.loads(
        autoloyal(dealer, "messages", "--client", "#2", "--format", "json").stdout
    )
    detail = autoloyal(dealer, "message", str(message["id"]))

    assert created.returncode == 0, created.stderr
    assert "set [sms] price_per_segment to see the cost" in created.stderr
    assert shown.stdout.startswith(f"campaign 1 «{CAMPAIGN}»: ")
    by_id = rows(listed.stdout)
    assert [by_id[str(n)]["client"] for n in range(1, 7)] == ["'" + name for name in FORMULAS]
    assert all(row["address"].startswith("+7") for row in by_id.values() if row["address"])
    assert f" to {MARKUP} (#2), campaign 1" in detail.stdout.splitlines()[0]


def test_a_saved_segment_and_a_folder_print_as_they_are(dealer: Path, tmp_path: Path) -> None:
    saved = autoloyal(
        dealer, "segment", "abc", "group=A", "--save", "vip", "--description", CAMPAIGN
    )
    listing = autoloyal(dealer, "segment")
    exported = autoloyal(tmp_path, "demo", "--clients", "5", "--export", "csv [sms] :e-mail:")

    assert saved.returncode == 0, saved.stderr
    [saved_line] = [line for line in listing.stdout.splitlines() if line.split()[:1] == ["vip"]]
    assert saved_line.strip().split(maxsplit=3)[1:] == ["abc", "group=A", CAMPAIGN]
    assert exported.returncode == 0, exported.stderr
    assert "-> csv [sms] :e-mail:/ clients.csv: 5 rows" in exported.stdout

"""`autoloyal segment` from the shell, on a small demo dealer: counts, formats, saving."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from tests.test_cli import autoloyal


@pytest.fixture(scope="module")
def dealer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("dealer")
    result = autoloyal(folder, "demo", "--clients", "300", "--seed", "3")
    assert result.returncode == 0, result.stderr
    return folder


def test_without_a_name_every_segment_is_listed_with_its_parameters(dealer: Path) -> None:
    result = autoloyal(dealer, "segment")
    assert result.returncode == 0, result.stderr
    for name in ("abc", "xyz", "bcg", "lost", "lifecycle", "no_service_history",
                 "maintenance_due", "birthdays", "filter"):  # fmt: skip
        assert f"\n {name} " in result.stdout or f"\n{name} " in result.stdout, name
    assert "within: planned within this many days" in result.stdout
    assert "by the rules in [segments]" in result.stdout  # not swallowed as rich markup


def test_count_csv_and_json_agree(dealer: Path) -> None:
    counted = autoloyal(dealer, "segment", "lost", "days=180", "--count")
    assert counted.returncode == 0, counted.stderr
    total = int(counted.stdout)
    assert total > 0
    table = autoloyal(dealer, "segment", "lost", "days=180")
    assert "lost days=180 as of " in table.stdout
    assert f": {total} clients" in table.stdout
    assert "Visits group" in table.stdout
    rows = list(csv.DictReader(io.StringIO(autoloyal(dealer, "segment", "lost", "days=180",
                                                     "--format", "csv").stdout)))  # fmt: skip
    assert len(rows) == total
    assert list(rows[0]) == ["client_id", "client", "phone", "group", "visits", "last_visit",
                             "days_since", "amount"]  # fmt: skip
    document = json.loads(
        autoloyal(dealer, "segment", "lost", "days=180", "--format", "json").stdout
    )
    assert document["count"] == total == len(document["rows"])
    assert sum(group["clients"] for group in document["summary"]) == total
    amounts = sum(float(row["amount"]) for row in document["rows"])
    assert amounts == pytest.approx(sum(float(g["amount"]) for g in document["summary"]))


def test_a_saved_segment_is_used_by_name_and_listed(dealer: Path) -> None:
    saved = autoloyal(dealer, "segment", "abc", "group=A", "--save", "key", "--description", "VIP")
    assert saved.returncode == 0, saved.stderr
    assert saved.stdout.startswith("saved segment key = abc group=A: ")
    by_name = autoloyal(dealer, "segment", "key", "--count").stdout
    assert by_name == autoloyal(dealer, "segment", "abc", "group=A", "--count").stdout
    combined = int(autoloyal(dealer, "segment", "key and not lost", "--count").stdout)
    assert 0 < combined <= int(by_name)
    listing = autoloyal(dealer, "segment").stdout
    assert "key" in listing
    assert "abc group=A" in listing
    assert "VIP" in listing
    assert autoloyal(dealer, "segment", "key", "--delete").returncode == 0
    assert "Saved segment" not in autoloyal(dealer, "segment").stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("abc", "group=D"), "autoloyal: segment abc: group='D': 'D' is not one of A, B, C\n"),
        (("nope",), "autoloyal: unknown segment 'nope': built-in segments are "),
        (("abc", "--date", "31.02.2026"), "autoloyal: --date '31.02.2026': no such date"),
        (("abc and",), "autoloyal: segment expression 'abc and': a segment name is missing"),
    ],
)
def test_mistakes_are_one_line_and_exit_code_2(
    dealer: Path, args: tuple[str, ...], message: str
) -> None:
    result = autoloyal(dealer, "segment", *args)
    assert result.returncode == 2
    assert result.stderr.startswith(message)
    assert result.stderr.count("\n") == 1

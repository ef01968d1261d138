"""Cells as 1C and spreadsheets write them: sums, dates, numbers, yes/no, text, and visit kinds."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from crm.importing.values import (
    CellError,
    parse_bool,
    parse_date,
    parse_int,
    parse_money,
    parse_text,
)
from crm.visits import (
    BODYWORK,
    DIAGNOSTICS,
    MAINTENANCE,
    OTHER,
    REPAIR,
    SALE,
    TYRES,
    VISIT_KINDS,
    visit_kind,
)

# Sums ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        pytest.param("1 618 406,43", "1618406.43", id="plain spaces, decimal comma"),
        pytest.param("1\u00a0618\u00a0406,43", "1618406.43", id="no-break spaces (1C)"),
        pytest.param("1\u202f618\u202f406,43", "1618406.43", id="narrow no-break spaces (Excel)"),
        pytest.param("1.618.406,43", "1618406.43", id="points between thousands"),
        pytest.param("1,618,406.43", "1618406.43", id="commas between thousands, decimal point"),
        pytest.param("980,5", "980.50", id="one decimal place becomes kopecks"),
        pytest.param("980", "980.00", id="whole roubles"),
        pytest.param("12 500 руб.", "12500.00", id="rub. after the sum"),
        pytest.param("12500₽", "12500.00", id="rouble sign after the sum"),
        pytest.param("  4 200,00  ", "4200.00", id="padding around the cell"),
    ],
)
def test_a_sum_is_read_exactly_whatever_the_grouping_and_currency(cell: str, expected: str) -> None:
    assert parse_money(cell) == Decimal(expected)


@pytest.mark.parametrize(
    "cell",
    [
        pytest.param("-120,00", id="minus sign"),
        pytest.param("(120,00)", id="accountants' brackets"),
    ],
)
def test_a_refund_is_a_negative_sum(cell: str) -> None:
    assert parse_money(cell) == Decimal("-120.00")


def test_a_sum_is_always_kept_in_kopecks() -> None:
    amount = parse_money("980,5")

    assert amount is not None
    assert str(amount) == "980.50"


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        pytest.param("0,005", "0.01", id="half a kopeck goes up"),
        pytest.param("0,015", "0.02", id="half a kopeck after an odd kopeck goes up"),
        pytest.param("0,025", "0.03", id="half a kopeck after an even kopeck goes up too"),
        pytest.param("0,0049", "0.00", id="less than half a kopeck goes down"),
        pytest.param("-0,005", "-0.01", id="a negative half kopeck goes away from zero"),
    ],
)
def test_fractions_of_a_kopeck_are_rounded_half_up_as_in_accounting(
    cell: str, expected: str
) -> None:
    assert parse_money(cell) == Decimal(expected)


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        pytest.param("1,500", "1.50", id="lone comma"),
        pytest.param("1.500", "1.50", id="lone point"),
    ],
)
def test_a_lone_separator_is_the_decimal_mark_as_in_russian_notation(
    cell: str, expected: str
) -> None:
    assert parse_money(cell) == Decimal(expected)


@pytest.mark.parametrize(
    "cell",
    ["", "   ", "\u00a0", "руб."],
    ids=["empty", "spaces", "no-break space", "currency only"],
)
def test_an_empty_sum_cell_is_no_sum(cell: str) -> None:
    assert parse_money(cell) is None


@pytest.mark.parametrize(
    ("cell", "reason"),
    [
        pytest.param("сто", "not a sum of money", id="words"),
        pytest.param("1,2,3,4abc", "not a sum of money", id="letters after digits"),
        pytest.param("1e5", "not a sum of money", id="scientific notation"),
        pytest.param("-", "not a sum of money", id="a dash alone"),
        pytest.param("1 000 000 000 000", "sum too large", id="a trillion"),
        pytest.param("999 999 999 999,995", "sum too large", id="rounds up to a trillion"),
    ],
)
def test_a_cell_that_is_not_a_sum_is_refused_with_the_cell_quoted(cell: str, reason: str) -> None:
    with pytest.raises(CellError) as refused:
        parse_money(cell)

    assert reason in str(refused.value)
    assert repr(cell) in str(refused.value)


def test_the_largest_sum_below_a_trillion_is_accepted() -> None:
    assert parse_money("999 999 999 999,99") == Decimal("999999999999.99")


@pytest.mark.parametrize(
    "cell",
    [
        pytest.param("12.03.2021", id="a date in the sum column"),
        pytest.param("1,2,3,4", id="commas between single digits"),
    ],
)
def test_separators_that_do_not_group_thousands_are_refused(cell: str) -> None:
    with pytest.raises(CellError):
        parse_money(cell)


# Dates -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cell",
    [
        pytest.param("12.03.2021", id="DD.MM.YYYY"),
        pytest.param("12.03.2021 0:00:00", id="1C date with midnight"),
        pytest.param("12.03.2021 10:11", id="with hours and minutes"),
        pytest.param("2021-03-12", id="ISO"),
        pytest.param("2021-03-12T10:11:12", id="ISO with time"),
        pytest.param("2021-03-12T10:11:12+03:00", id="ISO with time and offset"),
        pytest.param("2021-03-12 10:11:12Z", id="ISO with space and Z"),
        pytest.param("12/03/2021", id="slashes"),
        pytest.param("12-03-2021", id="dashes"),
        pytest.param(" 12.03.2021 ", id="padded"),
    ],
)
def test_a_date_is_read_from_any_common_notation(cell: str) -> None:
    assert parse_date(cell) == date(2021, 3, 12)


def test_a_date_without_leading_zeros_is_read_day_first() -> None:
    assert parse_date("1.3.2021") == date(2021, 3, 1)


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        pytest.param("12.03.21", date(2021, 3, 12), id="21 is 2021"),
        pytest.param("12.03.00", date(2000, 3, 12), id="00 is 2000"),
        pytest.param("12.03.26", date(2026, 3, 12), id="this year's 26 is 2026"),
        pytest.param("12.03.27", date(1927, 3, 12), id="next year's 27 is 1927"),
        pytest.param("12.03.65", date(1965, 3, 12), id="a birthday in 65 is 1965"),
        pytest.param("12.03.99", date(1999, 3, 12), id="99 is 1999"),
    ],
)
def test_a_two_digit_year_is_the_latest_such_year_not_in_the_future(
    cell: str, expected: date
) -> None:
    assert parse_date(cell, today=date(2026, 11, 24)) == expected


def test_a_two_digit_year_with_no_today_to_judge_by_is_refused() -> None:
    with pytest.raises(CellError, match=r"two-digit year in '12\.03\.65': write the year in full"):
        parse_date("12.03.65")


def test_the_29th_of_february_of_a_leap_year_is_a_date() -> None:
    assert parse_date("29.02.2024") == date(2024, 2, 29)


@pytest.mark.parametrize("cell", ["29.02.2023", "31.04.2021", "12.13.2021", "2021-02-30"])
def test_a_day_the_calendar_does_not_have_is_refused_as_no_such_date(cell: str) -> None:
    with pytest.raises(CellError, match="no such date") as refused:
        parse_date(cell)

    assert repr(cell) in str(refused.value)


@pytest.mark.parametrize(
    "cell",
    ["вчера", "12 03 2021", "0:00:00", "12.3.021"],
    ids=["yesterday", "spaces", "time only", "three-digit year"],
)
def test_words_and_odd_shapes_are_refused_as_not_a_date(cell: str) -> None:
    with pytest.raises(CellError, match="not a date") as refused:
        parse_date(cell)

    assert repr(cell) in str(refused.value)
    assert "DD.MM.YYYY" in str(refused.value)


@pytest.mark.parametrize("cell", ["", "   "], ids=["empty", "spaces"])
def test_an_empty_date_cell_is_no_date(cell: str) -> None:
    assert parse_date(cell) is None


# Whole numbers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cell",
    [
        pytest.param("125000", id="plain"),
        pytest.param("125 000", id="space between thousands"),
        pytest.param("125\u00a0000", id="no-break space between thousands"),
        pytest.param("125000,00", id="spreadsheet number format"),
        pytest.param("125000.0", id="decimal point and zero"),
    ],
)
def test_a_whole_number_is_read_with_grouping_and_zero_fractions(cell: str) -> None:
    assert parse_int(cell, low=0, high=1_000_000) == 125_000


@pytest.mark.parametrize(
    ("cell", "expected"), [("0", 0), ("1 000 000", 1_000_000)], ids=["low", "high"]
)
def test_a_whole_number_on_a_bound_is_accepted(cell: str, expected: int) -> None:
    assert parse_int(cell, low=0, high=1_000_000) == expected


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        pytest.param("-5", "-5 is out of range 0..1000000", id="below"),
        pytest.param("1 000 001", "1000001 is out of range 0..1000000", id="above"),
    ],
)
def test_a_whole_number_out_of_range_is_refused_naming_the_range(cell: str, message: str) -> None:
    with pytest.raises(CellError) as refused:
        parse_int(cell, low=0, high=1_000_000)

    assert str(refused.value) == message


@pytest.mark.parametrize(
    "cell",
    ["сто", "12,5", "125000,50", "1e3", "12 км"],
    ids=["a word", "a fraction", "kopecks", "scientific", "with a unit"],
)
def test_a_cell_that_is_not_a_whole_number_is_refused(cell: str) -> None:
    with pytest.raises(CellError, match="not a whole number") as refused:
        parse_int(cell, low=0, high=1_000_000)

    assert repr(cell) in str(refused.value)


def test_an_empty_number_cell_is_no_number() -> None:
    assert parse_int("  ", low=0, high=10) is None


# Yes or no -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cell",
    ["да", "Да", "ДА", "yes", "YES", "1", "true", "+", " да "],
    ids=["da", "Da", "DA", "yes", "YES", "1", "true", "plus", "padded da"],
)
def test_yes_in_any_spelling_is_true(cell: str) -> None:
    assert parse_bool(cell) is True


@pytest.mark.parametrize(
    "cell",
    ["нет", "Нет", "НЕТ", "no", "0", "false", "-"],
    ids=["net", "Net", "NET", "no", "0", "false", "minus"],
)
def test_no_in_any_spelling_is_false(cell: str) -> None:
    assert parse_bool(cell) is False


def test_an_empty_yes_or_no_cell_is_not_said() -> None:
    assert parse_bool("") is None


def test_a_maybe_is_refused_with_a_hint() -> None:
    with pytest.raises(CellError, match="use да or нет") as refused:
        parse_bool("может")

    assert "'может'" in str(refused.value)


# Text ------------------------------------------------------------------------------------------


def test_text_has_its_white_space_collapsed() -> None:
    assert parse_text("  Иван \t  Петров\n ", max_length=20) == "Иван Петров"


@pytest.mark.parametrize("cell", ["", "   ", "\t\n"], ids=["empty", "spaces", "tab and newline"])
def test_blank_text_is_no_text(cell: str) -> None:
    assert parse_text(cell, max_length=20) is None


def test_text_exactly_at_the_limit_is_kept() -> None:
    assert parse_text("abcde", max_length=5) == "abcde"


def test_text_is_measured_after_its_white_space_is_collapsed() -> None:
    assert parse_text("ab    cd", max_length=5) == "ab cd"


def test_text_over_the_limit_is_refused() -> None:
    with pytest.raises(CellError, match="longer than 5 characters"):
        parse_text("abcdef", max_length=5)


# Visit kinds -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        pytest.param("Техническое обслуживание", MAINTENANCE, id="maintenance in full"),
        pytest.param("ТЕХНИЧЕСКОЕ  ОБСЛУЖИВАНИЕ", MAINTENANCE, id="maintenance shouted"),
        pytest.param("Техобслуживание", MAINTENANCE, id="maintenance in one word"),
        pytest.param("ТО", MAINTENANCE, id="TO"),
        pytest.param("ТО-2", MAINTENANCE, id="TO-2"),
        pytest.param("ТО 60 000", MAINTENANCE, id="TO at 60 000 km"),
        pytest.param("Регламентное обслуживание", MAINTENANCE, id="scheduled service"),
        pytest.param("Ремонт", REPAIR, id="repair"),
        pytest.param("Гарантийный ремонт", REPAIR, id="warranty repair"),
        pytest.param("Кузовной ремонт", BODYWORK, id="body repair"),
        pytest.param("Покраска", BODYWORK, id="painting"),
        pytest.param("Шиномонтаж", TYRES, id="tyre fitting"),
        pytest.param("Сезонная замена шин", TYRES, id="seasonal tyre change"),
        pytest.param("Диагностика", DIAGNOSTICS, id="diagnostics"),
        pytest.param("Компьютерная диагностика", DIAGNOSTICS, id="computer diagnostics"),
        pytest.param("Продажа автомобиля", SALE, id="car sale"),
        pytest.param("Прочее", OTHER, id="other"),
        pytest.param("", OTHER, id="empty"),
    ],
)
def test_a_1c_visit_name_is_recognised_as_its_kind(name: str, kind: str) -> None:
    assert visit_kind(name) == (kind, True)


def test_bodywork_is_not_counted_as_a_repair() -> None:
    assert visit_kind("Кузовной ремонт")[0] != REPAIR


@pytest.mark.parametrize("kind", VISIT_KINDS)
def test_a_canonical_english_name_is_its_own_kind(kind: str) -> None:
    assert visit_kind(kind) == (kind, True)


def test_a_canonical_name_is_read_in_any_case() -> None:
    assert visit_kind("Repair") == (REPAIR, True)


@pytest.mark.parametrize(
    "name", ["Тонировка", "Тюнинг", "Замена масла"], ids=["tinting", "tuning", "oil change"]
)
def test_an_unknown_name_is_other_and_flagged_for_the_report(name: str) -> None:
    assert visit_kind(name) == (OTHER, False)


@pytest.mark.parametrize(
    "name", ["Торговля", "Автомойка", "Тонировка"], ids=["trade", "car wash", "tinting"]
)
def test_a_word_merely_containing_to_is_not_maintenance(name: str) -> None:
    assert visit_kind(name)[0] != MAINTENANCE


def test_a_word_ending_in_to_before_a_number_is_not_maintenance() -> None:
    assert visit_kind("Ремонт по акции Лето-2024") == (REPAIR, True)


def test_pre_sale_preparation_is_not_a_sale() -> None:
    assert visit_kind("Предпродажная подготовка")[0] != SALE


@pytest.mark.parametrize("cell", ["125,000", "125.000", "125 000"])
def test_a_mileage_with_grouped_thousands_is_never_read_as_125_km(cell: str) -> None:
    assert parse_int(cell, low=0, high=3_000_000) == 125_000

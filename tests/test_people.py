"""People and their cars as dealers' bases write them: phones, e-mails, names, genders, VINs, plates."""

from __future__ import annotations

import pytest

from crm.cars import CarError, normalize_plate, normalize_vin
from crm.contacts import ContactError, normalize_email, normalize_phone
from crm.names import (
    FEMALE,
    MALE,
    GenderError,
    PersonName,
    gender_from_patronymic,
    parse_gender,
    split_full_name,
    translit,
)

# Phones ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "+7 (903) 525-45-60",
        "8 903 5254560",
        "89035254560",
        "9035254560",
        "+7-903-525-45-60",
        "8(903)525-45-60",
        " 7 903 525 45 60 ",
    ],
)
def test_a_russian_mobile_in_any_common_notation_is_stored_in_e164(raw: str) -> None:
    assert normalize_phone(raw) == "+79035254560"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("8 495 123-45-67", "+74951234567", id="Moscow"),
        pytest.param("8 (812) 123-45-67", "+78121234567", id="Saint Petersburg"),
    ],
)
def test_a_city_landline_is_a_valid_number(raw: str, expected: str) -> None:
    assert normalize_phone(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("8 903 525-45-60, 8 916 123-45-67", id="comma"),
        pytest.param("8 903 525-45-60; 8 916 123 45 67", id="semicolon"),
        pytest.param("8 903 525-45-60 / 8 916 123-45-67", id="slash"),
        pytest.param("8 903 525-45-60  8 916 123-45-67", id="two spaces"),
    ],
)
def test_a_cell_with_two_numbers_gives_the_first(raw: str) -> None:
    assert normalize_phone(raw) == "+79035254560"


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("12345, 8 916 123-45-67", id="too short first"),
        pytest.param("8 000 000-00-00; 8 916 123 45 67", id="unassigned first"),
    ],
)
def test_a_cell_whose_first_number_is_bad_gives_the_next_good_one(raw: str) -> None:
    assert normalize_phone(raw) == "+79161234567"


@pytest.mark.parametrize("raw", ["12345", "abc", "+7 903 525"])
def test_a_phone_that_cannot_be_dialled_is_refused_with_the_input_quoted(raw: str) -> None:
    with pytest.raises(ContactError, match="not a valid phone number") as refused:
        normalize_phone(raw)

    assert repr(raw) in str(refused.value)


@pytest.mark.parametrize("raw", ["", "   "], ids=["empty", "spaces"])
def test_an_empty_phone_is_refused_as_empty(raw: str) -> None:
    with pytest.raises(ContactError, match="empty phone number"):
        normalize_phone(raw)


@pytest.mark.parametrize("region", ["RU", "KZ"])
def test_a_kazakh_mobile_shares_the_plus_seven_code(region: str) -> None:
    assert normalize_phone("+7 701 123 45 67", region) == "+77011234567"


def test_a_kazakh_mobile_written_with_eight_is_read_in_russia() -> None:
    assert normalize_phone("8 701 123 45 67") == "+77011234567"


def test_a_local_number_is_read_in_the_region_given() -> None:
    assert normalize_phone("020 7946 0018", "GB") == "+442079460018"


def test_an_international_number_is_read_whatever_the_region() -> None:
    assert normalize_phone("+44 20 7946 0018") == "+442079460018"


# E-mail addresses ------------------------------------------------------------------------------


def test_an_email_address_is_trimmed_and_lower_cased() -> None:
    assert normalize_email("  Ivanov@Mail.RU ") == "ivanov@mail.ru"


@pytest.mark.parametrize("raw", ["mailto:ivanov@mail.ru", "MAILTO:Ivanov@mail.ru"])
def test_a_mailto_link_gives_its_address(raw: str) -> None:
    assert normalize_email(raw) == "ivanov@mail.ru"


@pytest.mark.parametrize(
    "raw",
    ["ivan.ov@mail.ru", "ivan+car@gmail.com", "иванов@почта.рф"],
    ids=["dot", "plus tag", "Cyrillic domain"],
)
def test_an_ordinary_address_is_accepted(raw: str) -> None:
    assert normalize_email(raw) == raw


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("ivanov", id="no at sign"),
        pytest.param("ivanov@", id="no domain"),
        pytest.param("@mail.ru", id="no mailbox"),
        pytest.param("a@b", id="no top-level domain"),
        pytest.param("ivanov@mail.r", id="one-letter top-level domain"),
        pytest.param("a@@b.ru", id="two at signs"),
        pytest.param("a..b@mail.ru", id="two dots in a row"),
        pytest.param("a b@mail.ru", id="space inside"),
        pytest.param(".ivanov@mail.ru", id="dot first"),
        pytest.param("ivanov@-mail.ru", id="hyphen starting the domain"),
        pytest.param("", id="empty"),
    ],
)
def test_what_cannot_be_an_address_is_refused_with_the_input_quoted(raw: str) -> None:
    with pytest.raises(ContactError, match="not a valid e-mail address") as refused:
        normalize_email(raw)

    assert repr(raw) in str(refused.value)


# Names -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("Иванов Иван Петрович", id="as written"),
        pytest.param("ИВАНОВ ИВАН ПЕТРОВИЧ", id="upper case"),
        pytest.param("иванов иван петрович", id="lower case"),
        pytest.param("  Иванов  Иван\tПетрович ", id="odd spacing"),
    ],
)
def test_a_full_name_is_split_into_last_first_and_patronymic(raw: str) -> None:
    assert split_full_name(raw) == PersonName("Иванов", "Иван", "Петрович")


@pytest.mark.parametrize(
    "raw",
    ["Петров-Водкин Кузьма Сергеевич", "ПЕТРОВ-ВОДКИН КУЗЬМА СЕРГЕЕВИЧ"],
    ids=["as written", "upper case"],
)
def test_a_double_barrelled_last_name_keeps_both_capitals(raw: str) -> None:
    assert split_full_name(raw).last_name == "Петров-Водкин"


def test_a_mixed_case_name_is_kept_as_written() -> None:
    assert split_full_name("McDonald John") == PersonName("McDonald", "John", None)


@pytest.mark.parametrize(
    "raw", ["Мамедов Али Гасан оглы", "МАМЕДОВ АЛИ ГАСАН ОГЛЫ"], ids=["as written", "upper case"]
)
def test_words_after_the_third_belong_to_the_patronymic(raw: str) -> None:
    name = split_full_name(raw)

    assert (name.last_name, name.first_name) == ("Мамедов", "Али")
    assert name.middle_name is not None
    assert name.middle_name.casefold() == "гасан оглы"


def test_one_word_is_a_last_name() -> None:
    assert split_full_name("Иванов") == PersonName("Иванов", None, None)


def test_two_words_are_a_last_and_a_first_name() -> None:
    assert split_full_name("Иванов Иван") == PersonName("Иванов", "Иван", None)


@pytest.mark.parametrize("raw", ["", "   "], ids=["empty", "spaces"])
def test_an_empty_name_has_no_parts(raw: str) -> None:
    name = split_full_name(raw)

    assert name == PersonName(None, None, None)
    assert name.is_empty


def test_a_name_with_a_last_name_is_not_empty() -> None:
    assert not split_full_name("Иванов").is_empty


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("ООО Ромашка", id="OOO"),
        pytest.param("ИП Иванов И.И.", id="IP"),
        pytest.param("АО «Автоваз»", id="AO in guillemets"),
        pytest.param('ООО "Ромашка"', id="OOO in quotes"),
        pytest.param("ПАО Сбербанк", id="PAO"),
        pytest.param("ооо ромашка", id="ooo in lower case"),
    ],
)
def test_a_company_is_kept_whole_in_the_last_name(raw: str) -> None:
    assert split_full_name(raw) == PersonName(raw, None, None)


@pytest.mark.parametrize("raw", ["Аоян Армен", "Ипатов Иван"], ids=["Aoyan", "Ipatov"])
def test_a_last_name_that_starts_like_a_legal_form_is_a_person(raw: str) -> None:
    assert split_full_name(raw).first_name is not None


def test_initials_separated_by_a_space_are_first_name_and_patronymic() -> None:
    assert split_full_name("Иванов И. И.") == PersonName("Иванов", "И.", "И.")


@pytest.mark.parametrize("raw", ["Иванов И.И.", "ИВАНОВ И.И."], ids=["as written", "upper case"])
def test_initials_written_together_keep_their_capitals(raw: str) -> None:
    name = split_full_name(raw)

    assert (name.first_name, name.middle_name) in {("И.И.", None), ("И.", "И.")}


# Gender ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    ["М", "м", "муж", "муж.", "Мужской", "male", "M", "m"],
    ids=["Cyrillic M", "Cyrillic m", "muzh", "muzh.", "Muzhskoy", "male", "Latin M", "Latin m"],
)
def test_a_man_is_read_from_any_common_word(raw: str) -> None:
    assert parse_gender(raw) == MALE


@pytest.mark.parametrize(
    "raw",
    ["Ж", "ж", "жен", "Жен.", "Женский", "female", "F", "f"],
    ids=["Zh", "zh", "zhen", "Zhen.", "Zhenskiy", "female", "F", "f"],
)
def test_a_woman_is_read_from_any_common_word(raw: str) -> None:
    assert parse_gender(raw) == FEMALE


@pytest.mark.parametrize("raw", ["", "  "], ids=["empty", "spaces"])
def test_an_empty_gender_is_unknown(raw: str) -> None:
    assert parse_gender(raw) is None


def test_an_unknown_gender_word_is_refused_with_a_hint() -> None:
    with pytest.raises(GenderError, match="М or Ж") as refused:
        parse_gender("X")

    assert "'X'" in str(refused.value)


@pytest.mark.parametrize(
    "middle",
    ["Иванович", "Ильич", "Никитич", "Гасан оглы", "ИВАНОВИЧ", "Гасан улы"],
    ids=["Ivanovich", "Ilyich", "Nikitich", "Gasan ogly", "IVANOVICH", "Gasan uly"],
)
def test_a_patronymic_of_a_son_says_male(middle: str) -> None:
    assert gender_from_patronymic(middle) == MALE


@pytest.mark.parametrize(
    "middle",
    ["Ивановна", "Ильинична", "Никитична", "Гасан кызы", "ИВАНОВНА", "Гасан гызы"],
    ids=["Ivanovna", "Ilyinichna", "Nikitichna", "Gasan kyzy", "IVANOVNA", "Gasan gyzy"],
)
def test_a_patronymic_of_a_daughter_says_female(middle: str) -> None:
    assert gender_from_patronymic(middle) == FEMALE


@pytest.mark.parametrize("middle", [None, "", "Smith"], ids=["none", "empty", "not a patronymic"])
def test_no_patronymic_says_nothing_about_gender(middle: str | None) -> None:
    assert gender_from_patronymic(middle) is None


# Transliteration -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("Юрьевич", "yurevich", id="soft sign dropped"),
        pytest.param("Щукин", "shchukin", id="shch"),
        pytest.param("Ёлкина", "elkina", id="yo as e"),
        pytest.param("Хабибуллин", "khabibullin", id="kh"),
        pytest.param("Цой", "tsoy", id="ts and y"),
        pytest.param("Объедков", "obedkov", id="hard sign dropped"),
        pytest.param("Шишкин-Жуков", "shishkin-zhukov", id="hyphen kept"),
    ],
)
def test_a_russian_name_is_spelt_in_latin_as_in_email_addresses(text: str, expected: str) -> None:
    assert translit(text) == expected


def test_latin_letters_and_digits_are_kept_in_lower_case() -> None:
    assert translit("ivanov123") == "ivanov123"
    assert translit("Ivanov 123") == "ivanov 123"


# VINs ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("XTA210990Y2123456", id="as it should be"),
        pytest.param(" xta 21099 0y2 123456 ", id="lower case with spaces"),
        pytest.param("ХТА210990У2123456", id="Cyrillic look-alikes"),
        pytest.param("хта210990у2123456", id="lower-case Cyrillic look-alikes"),
    ],
)
def test_a_vin_is_stored_upper_case_latin_without_spaces(raw: str) -> None:
    assert normalize_vin(raw) == "XTA210990Y2123456"


@pytest.mark.parametrize(
    "raw",
    ["XTA21099OY2123456", "XTA21099IY2123456", "XTA21099QY2123456", "ЖТА210990Y2123456"],
    ids=["O", "I", "Q", "Cyrillic Zh"],
)
def test_a_17_character_vin_with_letters_a_vin_never_has_is_refused(raw: str) -> None:
    with pytest.raises(CarError, match=r"not a VIN \(17 characters without I, O, Q\)") as refused:
        normalize_vin(raw)

    assert repr(raw) in str(refused.value)


def test_a_vin_longer_than_17_characters_is_refused() -> None:
    with pytest.raises(CarError, match="longer than 17 characters"):
        normalize_vin("XTA210990Y21234567")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("GX110-6012345", "GX110-6012345", id="as written"),
        pytest.param("gx110-6012345", "GX110-6012345", id="lower case"),
    ],
)
def test_a_japanese_frame_number_is_kept(raw: str, expected: str) -> None:
    assert normalize_vin(raw) == expected


@pytest.mark.parametrize("raw", ["", "   "], ids=["empty", "spaces"])
def test_an_empty_vin_is_no_vin(raw: str) -> None:
    assert normalize_vin(raw) is None


# Number plates ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("а123вс77", "А123ВС77", id="lower-case Cyrillic"),
        pytest.param("А 123 ВС 77", "А123ВС77", id="Cyrillic with spaces"),
        pytest.param("A123BC77", "А123ВС77", id="Latin look-alikes"),
        pytest.param("a 123 bc 777", "А123ВС777", id="lower-case Latin, three-digit region"),
        pytest.param("а123вс-77", "А123ВС77", id="dash before the region"),
    ],
)
def test_a_russian_plate_is_stored_in_cyrillic_without_spaces(raw: str, expected: str) -> None:
    assert normalize_plate(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("ab 1234 kz", "AB1234KZ", id="Kazakh"),
        pytest.param("а123вс", "А123ВС", id="Russian without a region"),
        pytest.param("Ф123ФФ77", "Ф123ФФ77", id="letters no plate uses"),
    ],
)
def test_a_plate_that_is_not_a_russian_one_is_kept_upper_case_without_spaces(
    raw: str, expected: str
) -> None:
    assert normalize_plate(raw) == expected


def test_a_plate_of_16_characters_is_kept() -> None:
    assert normalize_plate("ABCDEFGHIJKLMNOP") == "ABCDEFGHIJKLMNOP"


def test_a_plate_longer_than_16_characters_is_refused() -> None:
    with pytest.raises(CarError, match="longer than 16 characters"):
        normalize_plate("ABCDEFGHIJKLMNOPQ")


@pytest.mark.parametrize("raw", ["", "   "], ids=["empty", "spaces"])
def test_an_empty_plate_is_no_plate(raw: str) -> None:
    assert normalize_plate(raw) is None


@pytest.mark.parametrize("raw", ["А 123 ВС 77 RUS", "A123BC 77 RUS"], ids=["Cyrillic", "Latin"])
def test_a_plate_typed_with_the_rus_flag_is_the_same_russian_plate(raw: str) -> None:
    assert normalize_plate(raw) == "А123ВС77"


def test_a_phone_with_a_note_beside_it_is_read() -> None:
    assert normalize_phone("8-903-525-45-60 (жена Ольга)") == "+79035254560"


def test_a_cell_with_two_email_addresses_gives_the_first() -> None:
    assert normalize_email("Ivanov@mail.ru; ivanov@yandex.ru") == "ivanov@mail.ru"


def test_a_surname_spelt_like_a_legal_form_is_a_person_unless_in_capitals() -> None:
    assert split_full_name("Ано Хироши").first_name == "Хироши"
    assert split_full_name("АНО Развитие").last_name == "АНО Развитие"


def test_a_vin_typed_in_hyphenated_groups_is_one_vin() -> None:
    assert normalize_vin("XTA-210990-Y2123456") == "XTA210990Y2123456"

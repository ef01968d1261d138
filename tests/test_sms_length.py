"""SMS segment counting at every boundary: GSM-7 160/153, UCS-2 70/67, escapes and surrogates."""

from __future__ import annotations

import pytest

from gateway.sms_length import GSM7, UCS2, SmsLength, is_gsm7, sms_length

CAR = "\U0001f697"  # 🚗, outside the BMP: a surrogate pair, 2 UTF-16 code units

# The whole GSM 03.38 basic table (0x1B escape left out) and the extension table, written out
# again here so that a slip in the module's table shows up as a difference.
BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
EXTENSION = "\f^{}\\[~]|€"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("", SmsLength(GSM7, 0, 0, 160), id="empty"),
        pytest.param("a", SmsLength(GSM7, 1, 1, 160), id="one letter"),
        pytest.param("a" * 160, SmsLength(GSM7, 160, 1, 160), id="gsm 160 -> 1"),
        pytest.param("a" * 161, SmsLength(GSM7, 161, 2, 153), id="gsm 161 -> 2"),
        pytest.param("a" * 306, SmsLength(GSM7, 306, 2, 153), id="gsm 306 -> 2"),
        pytest.param("a" * 307, SmsLength(GSM7, 307, 3, 153), id="gsm 307 -> 3"),
        pytest.param("a" * 459, SmsLength(GSM7, 459, 3, 153), id="gsm 459 -> 3"),
        pytest.param("a" * 460, SmsLength(GSM7, 460, 4, 153), id="gsm 460 -> 4"),
        # Extension characters cost 2 septets each.
        pytest.param("€", SmsLength(GSM7, 2, 1, 160), id="euro is 2"),
        pytest.param("€" * 80, SmsLength(GSM7, 160, 1, 160), id="80 euro = 160 -> 1"),
        pytest.param("€" * 81, SmsLength(GSM7, 162, 2, 153), id="81 euro = 162 -> 2"),
        pytest.param("a" * 159 + "{", SmsLength(GSM7, 161, 2, 153), id="159 + brace = 161 -> 2"),
        pytest.param(EXTENSION, SmsLength(GSM7, 20, 1, 160), id="whole extension table = 20"),
        # An escape pair never straddles a part: 152 + [ESC €] would end at 154 > 153.
        # Part 1 = 152, part 2 = 2 + 151 = 153, part 3 = 1, though 306 septets would fit in 2.
        pytest.param(
            "a" * 152 + "€" + "a" * 152, SmsLength(GSM7, 306, 3, 153), id="escape pushed -> 3"
        ),
        # Same 306 septets with the pair at 152-153: it fits, parts are 153 + 153.
        pytest.param(
            "a" * 151 + "€" + "a" * 153, SmsLength(GSM7, 306, 2, 153), id="escape fits -> 2"
        ),
        # Pairs only: a part holds 76 pairs (152), so 153 pairs need 76 + 76 + 1 = 3 parts.
        pytest.param("€" * 152, SmsLength(GSM7, 304, 2, 153), id="152 euro = 304 -> 2"),
        pytest.param("€" * 153, SmsLength(GSM7, 306, 3, 153), id="153 euro = 306 -> 3"),
        # UCS-2 by Cyrillic.
        pytest.param("я", SmsLength(UCS2, 1, 1, 70), id="one cyrillic"),
        pytest.param("я" * 70, SmsLength(UCS2, 70, 1, 70), id="ucs2 70 -> 1"),
        pytest.param("я" * 71, SmsLength(UCS2, 71, 2, 67), id="ucs2 71 -> 2"),
        pytest.param("я" * 134, SmsLength(UCS2, 134, 2, 67), id="ucs2 134 -> 2"),
        pytest.param("я" * 135, SmsLength(UCS2, 135, 3, 67), id="ucs2 135 -> 3"),
        pytest.param("я" * 201, SmsLength(UCS2, 201, 3, 67), id="ucs2 201 -> 3"),
        pytest.param("я" * 202, SmsLength(UCS2, 202, 4, 67), id="ucs2 202 -> 4"),
        # One non-GSM character turns all of a Latin text into UCS-2.
        pytest.param("a" * 100 + "ж", SmsLength(UCS2, 101, 2, 67), id="one cyrillic in latin"),
        pytest.param("a" * 69 + "₽", SmsLength(UCS2, 70, 1, 70), id="rouble sign 70 -> 1"),
        pytest.param("a" * 70 + "₽", SmsLength(UCS2, 71, 2, 67), id="rouble sign 71 -> 2"),
        pytest.param("a" * 159 + "\u00a0", SmsLength(UCS2, 160, 3, 67), id="no-break space"),
        pytest.param("Total 1\u202f500 EUR", SmsLength(UCS2, 15, 1, 70), id="narrow nbsp"),
        pytest.param("Ok — see you", SmsLength(UCS2, 12, 1, 70), id="em dash"),
        pytest.param("It’s ready", SmsLength(UCS2, 10, 1, 70), id="curly apostrophe"),
        pytest.param("Order №5", SmsLength(UCS2, 8, 1, 70), id="numero sign"),
        # In UCS-2 the euro is one code unit, not two.
        pytest.param("€ я", SmsLength(UCS2, 3, 1, 70), id="euro in ucs2 is 1"),
        # Emoji: a surrogate pair is 2 code units and never straddles a part.
        pytest.param(CAR, SmsLength(UCS2, 2, 1, 70), id="emoji is 2"),
        pytest.param(CAR * 35, SmsLength(UCS2, 70, 1, 70), id="35 emoji = 70 -> 1"),
        pytest.param(CAR * 36, SmsLength(UCS2, 72, 2, 67), id="36 emoji = 72 -> 2"),
        pytest.param("я" * 69 + CAR, SmsLength(UCS2, 71, 2, 67), id="69 + emoji = 71 -> 2"),
        # 66 + pair would end at 68 > 67: part 1 = 66, part 2 = 2 + 65 = 67, part 3 = 1.
        pytest.param(
            "я" * 66 + CAR + "я" * 66, SmsLength(UCS2, 134, 3, 67), id="surrogate pushed -> 3"
        ),
        # Same 134 units with the pair at 66-67: parts are 67 + 67.
        pytest.param(
            "я" * 65 + CAR + "я" * 67, SmsLength(UCS2, 134, 2, 67), id="surrogate fits -> 2"
        ),
        # 33 pairs (66 units) per part: 67 pairs need 33 + 33 + 1 = 3 parts.
        pytest.param(CAR * 66, SmsLength(UCS2, 132, 2, 67), id="66 emoji = 132 -> 2"),
        pytest.param(CAR * 67, SmsLength(UCS2, 134, 3, 67), id="67 emoji = 134 -> 3"),
    ],
)
def test_sms_length(text: str, expected: SmsLength) -> None:
    assert sms_length(text) == expected


# Realistic messages. Counts by hand, word by word.
REMINDER = "Иван Петрович, ждём вас на ТО 12 февраля. Автоцентр, +7 495 123-45-67"
# "Иван Петрович, " 15 + "ждём вас на ТО 12 февраля. " 27 + "Автоцентр, " 11
# + "+7 495 123-45-67" 16 = 69
REMINDER_LATIN = "Ivan Petrovich, zhdyom vas na TO 12 fevralya. Avtocentr, +7 495 123-45-67"
# "Ivan Petrovich, " 16 + "zhdyom vas na TO 12 fevralya. " 30 + "Avtocentr, " 11 + 16 = 73
PROMO = "Скидка 15% на шиномонтаж до 31 марта! Запись: +7 495 123-45-67. Автоцентр «Мотор»"
# "Скидка 15% на шиномонтаж до 31 марта! " 38 + "Запись: +7 495 123-45-67. " 26
# + "Автоцентр «Мотор»" 17 = 81
PRICE = "ТО-1 для Kia Rio: 12\u00a0500\u00a0₽"
# "ТО-1 " 5 + "для " 4 + "Kia " 4 + "Rio: " 5 + "12" 2 + nbsp + "500" 3 + nbsp + "₽" = 26
GREETING = "С днём рождения, Анна! Дарим 500 бонусов " + CAR
# "С " 2 + "днём " 5 + "рождения, " 10 + "Анна! " 6 + "Дарим " 6 + "500 " 4 + "бонусов " 8
# + car 2 = 43


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(REMINDER, SmsLength(UCS2, 69, 1, 70), id="reminder fits one"),
        pytest.param(REMINDER + "!", SmsLength(UCS2, 70, 1, 70), id="reminder + ! = 70"),
        pytest.param(REMINDER + "!!", SmsLength(UCS2, 71, 2, 67), id="reminder + !! = 71"),
        pytest.param(REMINDER_LATIN, SmsLength(GSM7, 73, 1, 160), id="transliterated"),
        pytest.param(PROMO, SmsLength(UCS2, 81, 2, 67), id="promo two parts"),
        pytest.param(PRICE, SmsLength(UCS2, 26, 1, 70), id="price with nbsp and rouble"),
        pytest.param(GREETING, SmsLength(UCS2, 43, 1, 70), id="birthday with emoji"),
        pytest.param(
            "Vash avtomobil gotov. K oplate 12500 rub. Zhdyom vas do 20:00!",
            SmsLength(GSM7, 62, 1, 160),
            id="ready, transliterated",
        ),
    ],
)
def test_realistic_messages(text: str, expected: SmsLength) -> None:
    assert sms_length(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("", "empty", id="empty"),
        pytest.param("Hello there!", "1 SMS (GSM-7, 12 characters, 160 per part)", id="gsm one"),
        pytest.param("a" * 161, "2 SMS (GSM-7, 161 characters, 153 per part)", id="gsm two"),
        pytest.param("я" * 84, "2 SMS (UCS-2, 84 characters, 67 per part)", id="ucs2 two"),
        pytest.param("я", "1 SMS (UCS-2, 1 character, 70 per part)", id="singular"),
        pytest.param("€", "1 SMS (GSM-7, 2 characters, 160 per part)", id="euro is 2"),
    ],
)
def test_str(text: str, expected: str) -> None:
    assert str(sms_length(text)) == expected


def test_tables_are_complete() -> None:
    assert len(set(BASIC)) == len(BASIC) == 127
    assert len(set(EXTENSION)) == len(EXTENSION) == 10
    assert sms_length(BASIC) == SmsLength(GSM7, 127, 1, 160)
    assert sms_length(EXTENSION) == SmsLength(GSM7, 20, 1, 160)


@pytest.mark.parametrize("char", list(BASIC + EXTENSION))
def test_every_gsm_character_is_gsm7(char: str) -> None:
    assert is_gsm7(char)


@pytest.mark.parametrize(
    "char",
    [
        pytest.param("ç", id="small c cedilla (only capital Ç is in the table)"),
        pytest.param("`", id="backtick"),
        pytest.param("\t", id="tab"),
        pytest.param("\x1b", id="bare escape"),
        pytest.param("á", id="a acute"),
        pytest.param("ê", id="e circumflex"),
        pytest.param("’", id="right single quote"),
        pytest.param("“", id="left double quote"),
        pytest.param("«", id="left guillemet"),
        pytest.param("»", id="right guillemet"),
        pytest.param("—", id="em dash"),
        pytest.param("–", id="en dash"),
        pytest.param("…", id="ellipsis"),
        pytest.param("№", id="numero"),
        pytest.param("₽", id="rouble"),
        pytest.param("\u00a0", id="no-break space"),
        pytest.param("\u202f", id="narrow no-break space"),
        pytest.param("\u2206", id="increment sign, not Greek Delta"),
        pytest.param("\u2126", id="ohm sign, not Greek Omega"),
        pytest.param("Α", id="Greek Alpha, not Latin A"),
        pytest.param("ё", id="cyrillic yo"),
        pytest.param("А", id="cyrillic A"),
        pytest.param(CAR, id="emoji"),
    ],
)
def test_non_gsm_characters(char: str) -> None:
    assert not is_gsm7(char)
    assert not is_gsm7("plain latin " + char)
    assert sms_length("plain latin " + char).encoding == UCS2


def test_is_gsm7_of_empty_text() -> None:
    assert is_gsm7("")

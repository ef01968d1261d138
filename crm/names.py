"""Russian personal names: "Фамилия Имя Отчество" into parts, gender from words and patronymics."""

from __future__ import annotations

from dataclasses import dataclass

MALE = "male"
FEMALE = "female"

# Companies appear in dealer bases beside people; their names are kept whole. Some legal forms
# are also surnames (Ао, Ано), so those count only when written in capitals.
_LEGAL_FORMS = ("ооо", "оао", "зао", "пао", "ип", "гуп", "муп", "фгуп")
_LEGAL_FORMS_IN_CAPITALS = ("ао", "ано", "нко")

_GENDER_WORDS = {
    "м": MALE, "муж": MALE, "мужской": MALE, "m": MALE, "male": MALE, "man": MALE,
    "ж": FEMALE, "жен": FEMALE, "женский": FEMALE, "f": FEMALE, "female": FEMALE,
    "woman": FEMALE,
}  # fmt: skip


class GenderError(ValueError):
    """A gender word that cannot be understood."""


NAME_PART_MAX = 128  # the client table's name columns


@dataclass(frozen=True)
class PersonName:
    last_name: str | None
    first_name: str | None
    middle_name: str | None

    @property
    def is_empty(self) -> bool:
        return not (self.last_name or self.first_name or self.middle_name)


def split_full_name(raw: str) -> PersonName:
    """Split "Фамилия Имя Отчество" into its parts.

    One word is a last name; a fourth word and later belong to the patronymic ("Мамедов Али
    Гасан оглы"). A company name ("ООО Ромашка") stays whole in `last_name`.
    """
    words = raw.split()
    if not words:
        return PersonName(None, None, None)
    form = words[0].strip('"«').rstrip(".")
    if form.casefold() in _LEGAL_FORMS or (
        form.isupper() and form.casefold() in _LEGAL_FORMS_IN_CAPITALS
    ):
        return PersonName(" ".join(words), None, None)
    words = [_capitalize(word) for word in words]
    last = words[0]
    first = words[1] if len(words) > 1 else None
    middle = " ".join(words[2:]) if len(words) > 2 else None
    return PersonName(last, first, middle)


def too_long(name: PersonName) -> bool:
    """A part does not fit its column (a company's whole name is one part)."""
    parts = (name.last_name, name.first_name, name.middle_name)
    return any(len(part or "") > NAME_PART_MAX for part in parts)


def _capitalize(word: str) -> str:
    """Upper- or lower-cased words get one capital: ИВАНОВ and иванов become Иванов.

    Mixed case is kept (Петров-Водкин, МакДональд), and so are initials (И.И.).
    """
    if "." in word:
        return word
    if word.isupper() or word.islower():
        return "-".join(part[:1].upper() + part[1:].lower() for part in word.split("-"))
    return word


def parse_gender(raw: str) -> str | None:
    """ "М", "муж", "male", "Ж", "жен", "female" (any case); empty is unknown (None)."""
    word = raw.strip().casefold().rstrip(".")
    if not word:
        return None
    try:
        return _GENDER_WORDS[word]
    except KeyError:
        raise GenderError(f"unknown gender {raw.strip()!r}: use М or Ж") from None


def gender_from_patronymic(middle_name: str | None) -> str | None:
    """Иванович, Ильич, "Али оглы" are men; Ивановна, Ильинична, "кызы" are women."""
    if not middle_name:
        return None
    word = middle_name.casefold()
    if word.endswith(("ич", "оглы", "улы")):
        return MALE
    if word.endswith(("вна", "чна", "кызы", "гызы")):
        return FEMALE
    return None


_TRANSLIT: dict[str, str] = {
    "а": "a", "б": "b", "в": "v", "г": "g", "д": "d", "е": "e", "ё": "e", "ж": "zh", "з": "z",
    "и": "i", "й": "y", "к": "k", "л": "l", "м": "m", "н": "n", "о": "o", "п": "p", "р": "r",
    "с": "s", "т": "t", "у": "u", "ф": "f", "х": "kh", "ц": "ts", "ч": "ch", "ш": "sh",
    "щ": "shch", "ъ": "", "ы": "y", "ь": "", "э": "e", "ю": "yu", "я": "ya",
}  # fmt: skip


def translit(text: str) -> str:
    """Lower-case Latin spelling as people type it in e-mail addresses (Юрьевич -> yurevich)."""
    return "".join(_TRANSLIT.get(ch, ch) for ch in text.casefold())


def polite_address(first: str | None, middle: str | None, gender: str | None, locale: str) -> str:
    """How a letter opens: "Уважаемый Иван Петрович", "Уважаемая Анна Сергеевна".

    With the gender unknown there is no right adjective, so the greeting turns neutral
    ("Здравствуйте, Иван"); with no name at all it is just "Здравствуйте".
    """
    name = given_name(first, middle)
    if locale == "en":
        return f"Dear {name}" if name else "Hello"
    if not name:
        return "Здравствуйте"
    if gender == MALE:
        return f"Уважаемый {name}"
    if gender == FEMALE:
        return f"Уважаемая {name}"
    return f"Здравствуйте, {name}"


def given_name(first: str | None, middle: str | None) -> str:
    """ "Иван Петрович" (name and patronymic, how Russians address each politely), or only
    what is known; "" when neither is."""
    return " ".join(part for part in (first, middle) if part)


def full_name(last: str | None, first: str | None, middle: str | None) -> str:
    """ "Смирнов Иван Петрович", skipping the parts that are missing."""
    return " ".join(part for part in (last, first, middle) if part)

"""Message templates: polite Russian, filters, escaping, the sandbox, the library a dealer edits."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

import templates
from crm.context import CarFacts, ClientFacts, CompanyInfo, message_context, sample_context
from crm.names import FEMALE, MALE, polite_address
from crm.templates import TemplateInfo, TemplateLibrary, TemplateNotFound
from gateway.render import MessageTemplate, TemplateProblem, check_template
from gateway.sms_length import sms_length
from storage.outbox import MessageTemplate as StoredTemplate
from tests.support.clock import FakeClock
from tests.support.databases import Database

TODAY = date(2026, 11, 24)  # the `clock` fixture's day
NBSP, NNBSP = "\u00a0", "\u202f"  # Babel's group separator and its space before "г."
COMPANY = CompanyInfo(name="Автоцентр «Север»", phone="+7 495 123-45-67", address="Москва, ул. Ленина, 1",
                      website="https://sever-auto.ru", booking_url="https://sever-auto.ru/booking")  # fmt: skip
BUILT_IN = sorted(Path(templates.__file__).parent.glob("*.j2"))


def sms_template(body: str) -> MessageTemplate:
    return MessageTemplate("probe", f"{{% block sms %}}{body}{{% endblock %}}", "test")


def sms(body: str, **context: Any) -> str:
    """`body` rendered as an SMS in a Russian, Moscow, rouble context plus `context`."""
    full = {"locale": "ru", "timezone": "Europe/Moscow", "currency": "RUB", **context}
    return sms_template(body).render(full, ["sms"]).content["sms"]["text"]


def client(first: str | None = "Иван", gender: str | None = MALE, **more: Any) -> ClientFacts:
    facts = {"middle_name": None, "last_name": "Смирнов", "birthday": None, **more}
    return ClientFacts(id=1, first_name=first, gender=gender, **facts)


# Polite address ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "middle", "gender", "locale", "expected"),
    [
        pytest.param("Иван", "Петрович", MALE, "ru", "Уважаемый Иван Петрович", id="man"),
        pytest.param("Анна", "Сергеевна", FEMALE, "ru", "Уважаемая Анна Сергеевна", id="woman"),
        pytest.param("Иван", None, None, "ru", "Здравствуйте, Иван", id="gender-unknown"),
        pytest.param(None, None, MALE, "ru", "Здравствуйте", id="no-name"),
        pytest.param("Anna", None, FEMALE, "en", "Dear Anna", id="english"),
    ],
)
def test_a_message_opens_with_the_address_the_clients_name_and_gender_allow(
    first: str | None, middle: str | None, gender: str | None, locale: str, expected: str
) -> None:
    company = CompanyInfo(name="Север", locale=locale)
    context = message_context(company, client(first, gender, middle_name=middle), None, TODAY)
    rendered = sms_template("{{ client.polite }}!").render(context, ["sms"])
    assert rendered.content == {"sms": {"text": f"{expected}!"}}
    assert polite_address(first, middle, gender, locale) == expected


# Filters ----------------------------------------------------------------------------------------

BONUSES = '{{ n|plural("бонус", "бонуса", "бонусов") }}'


@pytest.mark.parametrize(
    ("n", "expected"),
    [(1, "1\u00a0бонус"), (2, "2\u00a0бонуса"), (5, "5\u00a0бонусов"), (11, "11\u00a0бонусов"),
     (21, "21\u00a0бонус"), (22, "22\u00a0бонуса"), (1500, "1\u00a0500\u00a0бонусов"),
     (Decimal("350.00"), "350\u00a0бонусов"),  # a money column read back is a whole number
     (Decimal("1.5"), "1,5\u00a0бонуса")],  # a fraction takes the "few" form
)  # fmt: skip
def test_plural_puts_the_number_before_the_russian_form_it_takes(n: Any, expected: str) -> None:
    assert sms(BONUSES, n=n) == expected


def test_plural_without_the_number_agrees_a_verb_with_the_amount() -> None:
    verb = '{{ n|plural("начислен", "начислено", "начислено", number=False) }} ' + BONUSES
    assert [sms(verb, n=n) for n in (1, 5)] == ["начислен 1\u00a0бонус", "начислено 5\u00a0бонусов"]


@pytest.mark.parametrize(("n", "expected"), [(1, "1\u00a0bonus"), (2, "2\u00a0bonuses"), (1500, "1,500\u00a0bonuses")])  # fmt: skip
def test_plural_in_english_takes_two_forms(n: int, expected: str) -> None:
    assert sms('{{ n|plural("bonus", "bonuses") }}', n=n, locale="en") == expected


FEB_12 = date(2027, 2, 12)  # a Friday


@pytest.mark.parametrize(
    ("body", "value", "zone", "expected"),
    [
        pytest.param("{{ v|date }}", FEB_12, "Europe/Moscow", "12 февраля", id="date"),
        pytest.param('{{ v|date("long") }}', FEB_12, "Europe/Moscow", f"12 февраля 2027{NNBSP}г.", id="long"),
        pytest.param('{{ v|date("d MMMM, EEEE") }}', FEB_12, "Europe/Moscow", "12 февраля, пятница", id="weekday"),
        pytest.param("{{ v|date(\"d MMMM y 'года'\") }}", FEB_12, "Europe/Moscow", "12 февраля 2027 года", id="quoted-text"),
        pytest.param("{{ v|date }}", datetime(2027, 2, 11, 22, 30, tzinfo=UTC), "Asia/Vladivostok", "12 февраля", id="utc-evening-is-next-day-in-vladivostok"),
        pytest.param("{{ v|date }}", datetime(2027, 2, 11, 20, 30, tzinfo=UTC), "Europe/Moscow", "11 февраля", id="still-the-11th-in-moscow"),
        pytest.param("{{ v|time }}", datetime(2027, 2, 12, 7, 30, tzinfo=UTC), "Europe/Moscow", "10:30", id="time-in-moscow"),
        pytest.param("{{ v|money }}", Decimal("1500"), "Europe/Moscow", f"1{NBSP}500,00{NBSP}₽", id="money"),
        pytest.param("{{ v|money(cents=False) }}", Decimal("1500.00"), "Europe/Moscow", f"1{NBSP}500{NBSP}₽", id="money-no-cents"),
        pytest.param("{{ v|number }}", 15000, "Europe/Moscow", f"15{NBSP}000", id="number"),
        pytest.param("[{{ v|date }}{{ v|time }}{{ v|money }}{{ v|number }}]", None, "Europe/Moscow", "[]", id="none-is-blank"),
    ],
)  # fmt: skip
def test_dates_times_and_money_read_as_a_russian_writes_them(
    body: str, value: Any, zone: str, expected: str
) -> None:
    assert sms(body, v=value, timezone=zone) == expected


def test_a_booking_time_is_shown_in_the_clients_own_time_zone() -> None:
    starts_at = datetime(2027, 2, 12, 10, 30, tzinfo=ZoneInfo("Asia/Vladivostok"))
    template = sms_template("{{ booking.starts_at|date }} в {{ booking.starts_at|time }}")
    shown = []
    for zone in ("Asia/Vladivostok", None):  # None: the company's Moscow
        context = message_context(
            COMPANY, client(timezone=zone), None, TODAY, booking={"starts_at": starts_at}
        )
        shown.append(template.render(context, ["sms"]).content["sms"]["text"])
    assert shown == ["12 февраля в 10:30", "12 февраля в 03:30"]


def test_a_subject_keeps_the_no_break_spaces_the_filters_put_in() -> None:
    template = MessageTemplate(
        "bonus",
        "{% block subject %}+{{ 1500|plural('бонус', 'бонуса', 'бонусов') }}\n"
        "на счёте{% endblock %}{% block email_text %}.{% endblock %}",
        "test",
    )
    subject = template.render({"locale": "ru"}, ["email"]).content["email"]["subject"]
    assert subject == f"+1{NBSP}500{NBSP}бонусов на счёте"


# Escaping and channels --------------------------------------------------------------------------

EVERY_BLOCK = """\
{% block subject %}{{ client.name }}, подарок{% endblock %}
{% block telegram %}<b>{{ client.polite }}!</b> — {{ company.name }}{% endblock %}
{% block sms %}{{ client.name }} — {{ company.name }}{% endblock %}
{% block email_text %}{{ client.polite }}!{% endblock %}
{% block email_html %}<p><b>{{ client.polite }}!</b></p>{% endblock %}
"""
RAW, ESCAPED = "<b>Тест & Co</b>", "&lt;b&gt;Тест &amp; Co&lt;/b&gt;"


def render_for_a_client_named_with_markup() -> dict[str, dict[str, str]]:
    company = CompanyInfo(name="A&B <Сервис>", phone="+7 495 123-45-67", address="Москва")
    context = message_context(company, client(RAW, gender=None), None, TODAY)
    template = MessageTemplate("gift", EVERY_BLOCK, "test")
    return template.render(context, template.channels).content


def test_values_in_telegram_and_email_html_are_escaped_and_the_templates_own_tags_are_not() -> None:
    content = render_for_a_client_named_with_markup()
    assert content["telegram"]["text"] == (
        f"<b>Здравствуйте, {ESCAPED}!</b> — A&amp;B &lt;Сервис&gt;"
    )
    assert f"<p><b>Здравствуйте, {ESCAPED}!</b></p>" in content["email"]["html"]


def test_values_in_sms_subject_and_email_text_go_in_as_they_are() -> None:
    content = render_for_a_client_named_with_markup()
    assert content["sms"] == {"text": f"{RAW} — A&B <Сервис>"}
    assert content["email"]["subject"] == f"{RAW}, подарок"
    assert content["email"]["text"] == f"Здравствуйте, {RAW}!"


def test_the_email_html_part_is_wrapped_in_the_layout_with_the_company_in_the_footer() -> None:
    html = render_for_a_client_named_with_markup()["email"]["html"]
    assert html.startswith('<!DOCTYPE html>\n<html lang="ru">')
    assert f"<title>{ESCAPED}, подарок</title>" in html
    body = html.index("<p><b>Здравствуйте")
    footer = html.index("A&amp;B &lt;Сервис&gt;, Москва<br>+7 495 123-45-67")
    assert body < footer
    assert "Отписаться" not in html  # no unsubscribe link given, none shown


@pytest.mark.parametrize(
    ("blocks", "channels"),
    [
        pytest.param(("sms",), ("sms",), id="sms-only"),
        pytest.param(("subject", "sms"), ("sms",), id="subject-alone-is-no-email"),
        pytest.param(("email_text", "email_html"), (), id="email-without-subject"),
        pytest.param(("subject", "email_text"), ("email",), id="email-text-only"),
        pytest.param(("email_html", "sms", "telegram", "email_text", "subject"), ("telegram", "sms", "email"), id="all"),
    ],
)  # fmt: skip
def test_a_template_offers_the_channels_it_has_blocks_for(
    blocks: tuple[str, ...], channels: tuple[str, ...]
) -> None:
    source = "".join(f"{{% block {block} %}}Текст{{% endblock %}}" for block in blocks)
    assert MessageTemplate("t", source, "test").channels == channels


def test_an_email_without_an_html_block_has_only_subject_and_text() -> None:
    source = "{% block subject %}Тема{% endblock %}{% block email_text %}Текст{% endblock %}"
    rendered = MessageTemplate("t", source, "test").render({}, ["email"])
    assert rendered.content == {"email": {"subject": "Тема", "text": "Текст"}}


def test_rendering_a_channel_the_template_does_not_offer_is_a_template_problem() -> None:
    with pytest.raises(TemplateProblem, match="has no block for telegram"):
        sms_template("Текст").render({}, ["telegram"])


def test_a_template_without_any_channel_block_is_refused_by_the_check() -> None:
    template = MessageTemplate("empty", "{# только комментарий #}\nТекст вне блоков", "test")
    with pytest.raises(TemplateProblem, match="offers no channel"):
        check_template(template, sample_context(COMPANY, TODAY))


# Sandbox and validation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "line", "reason"),
    [
        pytest.param("{% block sms %}\n{{ ''.__class__.__mro__[1].__subclasses__() }}{% endblock %}", 2, "'__subclasses__' is not allowed", id="subclasses"),
        pytest.param("{% block sms %}\n\n{{ client['__class__'] }}{% endblock %}", 3, "'__class__' is not allowed", id="item"),
        pytest.param("{% block sms %}\n{{ client|attr('__class__') }}{% endblock %}", 2, "'__class__' is not allowed", id="attr-filter"),
        pytest.param("{% block sms %}{% if false %}\n{{ car._sa_instance_state }}{% endif %}{% endblock %}", 2, "'_sa_instance_state' is not allowed", id="branch-not-taken"),
        pytest.param("{% block sms %}\n{% include 'x' %}{% endblock %}", 2, "include is not allowed", id="include"),
        pytest.param("{% extends 'base.j2' %}", 1, "extends is not allowed", id="extends"),
        pytest.param("\n{% import 'x' as x %}{% block sms %}.{% endblock %}", 2, "import is not allowed", id="import"),
        pytest.param("{% from 'x' import y %}{% block sms %}.{% endblock %}", 1, "from ... import is not allowed", id="from-import"),
        pytest.param("{% block sms %}.{% endblock %}\n{% block smss %}.{% endblock %}", 2, "unknown block 'smss'", id="unknown-block"),
        pytest.param("{% block sms %}\n{% if car %}\n{% endblock %}", 3, "Encountered unknown tag 'endblock'", id="syntax-error"),
    ],
)  # fmt: skip
def test_a_template_that_reaches_outside_the_sandbox_or_breaks_the_rules_is_refused_with_its_line(
    source: str, line: int, reason: str
) -> None:
    with pytest.raises(TemplateProblem) as refused:
        MessageTemplate("staff", source, "test")
    assert (refused.value.line, refused.value.name) == (line, "staff")
    assert reason in refused.value.reason


@pytest.mark.parametrize(
    ("block", "body", "reason"),
    [
        pytest.param("sms", "{{ client.nmae }}", "no such name: 'nmae'", id="misspelt-in-sms"),
        pytest.param("telegram", "<b>{{ client.nmae }}</b>", "no such name: 'nmae'", id="misspelt-in-telegram"),
        pytest.param("sms", "{{ bonus.amount }}", "'bonus' is undefined", id="occasion-data-missing"),
        pytest.param("sms", "{{ client.update({'a': 1}) }}", "not allowed", id="mutating-a-dict"),
        pytest.param("sms", "{{ client['_' ~ '_class__'] }}", "not allowed", id="computed-underscore"),
        pytest.param("sms", "{{ 5|plural }}", "plural needs the word forms", id="filter-misused"),
    ],
)  # fmt: skip
def test_a_mistake_only_rendering_can_see_fails_the_check_with_its_line(
    block: str, body: str, reason: str
) -> None:
    source = f"{{% block {block} %}}\nЗдравствуйте!\n{body}\n{{% endblock %}}"
    template = MessageTemplate("staff", source, "test")
    holiday = message_context(COMPANY, client(), None, TODAY)  # no occasion data
    with pytest.raises(TemplateProblem) as refused:
        check_template(template, holiday)
    assert refused.value.line == 3
    assert reason in refused.value.reason


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("{{ bonus.balance / bonus.amount }}", id="division-by-a-zero-amount"),
        pytest.param("{{ car.plate|number }}", id="text-to-number"),
        pytest.param("{{ client.first_name|date }}", id="text-to-date"),
    ],
)
def test_a_runtime_error_of_any_kind_is_a_template_problem_with_its_line(body: str) -> None:
    car = CarFacts("Kia", "Rio", 2019, "А123ВС777", None, None)
    bonus = {"amount": Decimal("0.00"), "balance": Decimal("1500.00")}
    context = message_context(COMPANY, client(), car, TODAY, bonus=bonus)
    with pytest.raises(TemplateProblem) as refused:
        sms_template(f"\n{body}").render(context, ["sms"])
    assert refused.value.line == 2


def test_an_underscore_attribute_named_to_a_filter_is_refused_at_compile() -> None:
    source = "{% block sms %}{% if client.gender == 'female' %}\n{{ [car]|map(attribute='__class__')|first }}{% endif %}{% endblock %}"
    with pytest.raises(TemplateProblem) as refused:
        MessageTemplate("staff", source, "test")
    assert refused.value.line == 2


# The built-in library ---------------------------------------------------------------------------

NEEDS = {
    "birthday": set(), "new_year": set(), "feb23": set(), "mar8": set(), "motorist_day": set(),
    "winback": set(), "maintenance_reminder": {"maintenance"}, "booking_confirmation": {"booking"},
    "booking_reminder": {"booking"}, "bonus_accrued": {"bonus"}, "bonus_expiring": {"bonus"},
    "survey_invitation": {"survey"}, "car_anniversary": set(),
}  # fmt: skip
TELEGRAM_TAGS = frozenset({"b", "i", "u", "s", "a", "code"})


class TelegramHtml(HTMLParser):
    """Collects what Telegram would reject: unknown tags, unbalanced or unclosed ones."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.open: list[str] = []
        self.problems: list[str] = []
        self.feed(text)
        self.close()
        self.problems += [f"<{tag}> not closed" for tag in self.open]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in TELEGRAM_TAGS or (tag == "a") != bool(attrs):
            self.problems.append(f"<{tag} {attrs}>")
        self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open.pop() != tag:
            self.problems.append(f"</{tag}> out of order")


@pytest.mark.parametrize("path", BUILT_IN, ids=[path.stem for path in BUILT_IN])
def test_a_built_in_template_renders_every_channel_for_the_sample_client(path: Path) -> None:
    template = MessageTemplate(path.stem, path.read_text(encoding="utf-8"), "built-in")
    content = check_template(template, sample_context(COMPANY, TODAY)).content
    assert template.channels == ("telegram", "sms", "email")
    assert template.needs == frozenset(NEEDS[path.stem])
    assert TelegramHtml(content["telegram"]["text"]).problems == []
    assert sms_length(content["sms"]["text"]).segments <= 2
    assert content["sms"]["text"].endswith(f"— {COMPANY.name}")
    assert "\n" not in content["email"]["subject"]
    assert content["email"]["html"].startswith("<!DOCTYPE html>")


# The dealer's library ---------------------------------------------------------------------------

STAFF_BIRTHDAY = (
    "{% block sms %}{{ client.name }}, с днём рождения! {{ company.name }}{% endblock %}"
)
FOLDER_MAR8 = "{% block sms %}С 8 Марта от {{ company.name }}!{% endblock %}"


async def save(
    db: Database, clock: FakeClock, name: str, source: str, library: TemplateLibrary | None = None
) -> Any:
    async with db.sessions() as session, session.begin():
        library = library or TemplateLibrary()
        return await library.save(
            session, name, source, company=COMPANY, today=TODAY, now=clock(), by="marketing"
        )


async def in_force(db: Database, library: TemplateLibrary) -> dict[str, TemplateInfo]:
    async with db.sessions() as session, session.begin():
        return {info.name: info for info in await library.catalogue(session)}


async def test_a_staff_template_overrides_the_built_in_one_of_the_same_name(
    db: Database, clock: FakeClock
) -> None:
    rendered = await save(db, clock, "birthday", STAFF_BIRTHDAY)
    library = TemplateLibrary()
    async with db.sessions() as session, session.begin():
        template = await library.get(session, "birthday")
    catalogue = await in_force(db, library)
    assert rendered.content == {
        "sms": {"text": "Иван Петрович, с днём рождения! Автоцентр «Север»"}
    }
    assert (template.origin, template.source) == ("database", STAFF_BIRTHDAY)
    assert catalogue["birthday"] == TemplateInfo("birthday", "database", ("sms",), frozenset())
    assert catalogue["mar8"].origin == "built-in"
    assert sorted(catalogue) == sorted(NEEDS)


@pytest.mark.parametrize(
    ("name", "source", "line", "reason"),
    [
        pytest.param("birthday", "{% block sms %}\n\n{{ client.nmae }}{% endblock %}", 3, "nmae", id="misspelt-name"),
        pytest.param("birthday", "{% block sms %}\n{{ ''.__class__ }}{% endblock %}", 2, "'__class__' is not allowed", id="outside-sandbox"),
        pytest.param("birthday", "{% block subject %}Тема{% endblock %}", None, "offers no channel", id="no-channel"),
        pytest.param("Birthday", STAFF_BIRTHDAY, None, "lowercase latin", id="capital-letter"),
        pytest.param("день_рождения", STAFF_BIRTHDAY, None, "lowercase latin", id="cyrillic-name"),
        pytest.param("_email_layout", STAFF_BIRTHDAY, None, "lowercase latin", id="leading-underscore"),
        pytest.param("a" * 65, STAFF_BIRTHDAY, None, "lowercase latin", id="too-long"),
    ],
)  # fmt: skip
async def test_a_broken_template_or_a_bad_name_is_refused_and_nothing_is_stored(
    db: Database, clock: FakeClock, name: str, source: str, line: int | None, reason: str
) -> None:
    async with db.sessions() as session, session.begin():  # commits: save must add nothing
        with pytest.raises(TemplateProblem) as refused:
            await TemplateLibrary().save(
                session, name, source, company=COMPANY, today=TODAY, now=clock()
            )
    assert refused.value.line == line
    assert reason in refused.value.reason
    async with db.sessions() as session, session.begin():
        assert (await session.scalars(select(StoredTemplate))).all() == []


async def test_deleting_a_staff_template_brings_back_the_built_in_one(
    db: Database, clock: FakeClock
) -> None:
    await save(db, clock, "birthday", STAFF_BIRTHDAY)
    library = TemplateLibrary()
    async with db.sessions() as session, session.begin():
        assert await library.delete(session, "birthday") is True
    async with db.sessions() as session, session.begin():
        template = await library.get(session, "birthday")
        assert await library.delete(session, "birthday") is False
    assert (template.origin, template.channels) == ("built-in", ("telegram", "sms", "email"))


async def test_a_folder_template_overrides_the_built_in_one_but_not_a_staff_one(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    (tmp_path / "mar8.j2").write_text(FOLDER_MAR8, encoding="utf-8")
    (tmp_path / "birthday.j2").write_text(FOLDER_MAR8, encoding="utf-8")
    library = TemplateLibrary(tmp_path)
    await save(db, clock, "birthday", STAFF_BIRTHDAY, library)
    async with db.sessions() as session, session.begin():
        origins = {name: (await library.get(session, name)).origin for name in NEEDS}
    catalogue = await in_force(db, library)
    assert origins["mar8"] == str(tmp_path)
    assert (origins["birthday"], origins["feb23"]) == ("database", "built-in")
    assert {name: info.origin for name, info in catalogue.items()} == origins


async def test_a_broken_folder_template_is_listed_with_its_problem(
    db: Database, tmp_path: Path
) -> None:
    (tmp_path / "winter_tyres.j2").write_text(
        "{% block sms %}\n{% if car %}Пора менять шины{% endblock %}", encoding="utf-8"
    )
    library = TemplateLibrary(tmp_path)
    catalogue = await in_force(db, library)
    broken = catalogue["winter_tyres"]
    assert (broken.origin, broken.channels, broken.needs) == (str(tmp_path), (), frozenset())
    assert broken.problem is not None
    assert broken.problem.startswith("winter_tyres, line 2: Encountered unknown tag 'endblock'")
    assert sorted(catalogue) == sorted([*NEEDS, "winter_tyres"])
    assert all(info.problem is None for name, info in catalogue.items() if name != "winter_tyres")
    async with db.sessions() as session, session.begin():
        with pytest.raises(TemplateProblem) as refused:
            await library.get(session, "winter_tyres")
    assert refused.value.line == 2


@pytest.mark.parametrize("name", ["no_such_template", "_email_layout", "birthday.j2"])
async def test_a_name_no_template_has_is_not_found(db: Database, name: str) -> None:
    async with db.sessions() as session, session.begin():
        with pytest.raises(TemplateNotFound, match="autoloyal template list"):
            await TemplateLibrary().get(session, name)

"""Templates within bounds: what a staff template may build, send and take, and Telegram's HTML.

A template asking for gigabytes or looping for ever is one line on stderr naming its line,
quickly, and the memory limit under which these run proves no gigabyte was ever built.
"""

from __future__ import annotations

import os
import resource
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import pytest

import templates
from autoloyal.config import Settings, load_settings
from autoloyal.messaging import template_library
from crm.context import CarFacts, ClientFacts, CompanyInfo, message_context, sample_context
from crm.templates import TemplateLibrary
from gateway.limits import DEFAULT_LIMITS, MAX_SOURCE, Limits
from gateway.render import MessageTemplate, TemplateProblem, check_template
from gateway.sms_length import fits, sms_length
from storage.outbox import Campaign, Message
from tests.support.clock import FakeClock
from tests.support.databases import Database
from tests.support.messaging import add_client
from tests.test_campaigns import count, launch, plan_for

AUTOLOYAL = str(Path(sys.executable).parent / "autoloyal")
MEMORY = 1_500_000_000  # bytes of address space a CLI run gets: a gigabyte string cannot fit
COMPANY = CompanyInfo(name="Автоцентр «Север»", phone="+7 495 123-45-67", booking_url="https://sever-auto.ru/booking")  # fmt: skip
SAMPLE = sample_context(COMPANY, date(2026, 11, 24))
BUILT_IN = sorted(Path(templates.__file__).parent.glob("*.j2"))


def sms_on_line_3(body: str) -> str:
    return f"{{% block sms %}}\nЗдравствуйте!\n{body}\n{{% endblock %}}\n"


def refusal(source: str, limits: Limits = DEFAULT_LIMITS) -> TemplateProblem:
    try:
        check_template(MessageTemplate("staff", source, "test", limits), SAMPLE)
    except TemplateProblem as problem:
        problem.__context__ = None  # a failing bound's frames would hold what it let through
        return problem
    raise AssertionError(f"rendered without a problem: {source!r}")


@contextmanager
def bounded_memory() -> Iterator[None]:
    """This process may take 1 GB more than it has meanwhile: a bound that fails to hold is a
    MemoryError (a wrong reason), not a machine swapping for minutes. Lifted before pytest
    reports, which needs memory of its own."""
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[0])
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (pages * os.sysconf("SC_PAGE_SIZE") + 2**30, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


# The CLI, under a memory limit ------------------------------------------------------------------


def limited(cwd: Path, *args: str, config: str = "") -> subprocess.CompletedProcess[str]:
    """`autoloyal ARGS` with at most MEMORY bytes of address space."""
    (cwd / "config.toml").write_text(config, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "AUTOLOYAL_CONFIG"}

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))

    return subprocess.run(
        [AUTOLOYAL, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
        preexec_fn=limit,
    )  # fmt: skip


def stored(db: Path) -> list[tuple[Any, ...]]:
    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT name FROM message_template").fetchall()


HOSTILE = [
    pytest.param("{{ '*'*10**9 }}", "a text of 1 000 000 000 characters", id="repeat-folded-while-compiling"),
    pytest.param('{{ "x"|center(10**9) }}', "a text of 1 000 000 000 characters", id="center"),
    pytest.param("{{ 'a'*99999999 }}", "a text of 99 999 999 characters", id="100-MB-text"),
    pytest.param("{{ client.name|nosuchfilter }}", "there is no filter named 'nosuchfilter'", id="unknown-filter"),
]  # fmt: skip


@pytest.mark.parametrize("command", ["save", "check"])
@pytest.mark.parametrize(("body", "reason"), HOSTILE)
def test_a_hostile_template_is_one_line_naming_its_line_and_exit_code_2(
    tmp_path: Path, command: str, body: str, reason: str
) -> None:
    (tmp_path / "offer.j2").write_text(sms_on_line_3(body), encoding="utf-8")
    args = ("save", "offer", "offer.j2") if command == "save" else ("check", "offer", "--file", "offer.j2")  # fmt: skip

    result = limited(tmp_path, "template", *args)

    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.startswith("autoloyal: offer, line 3: ")
    assert reason in result.stderr
    assert result.stderr.count("\n") == 1
    assert stored(tmp_path / "autoloyal.db") == []


def test_a_good_template_saves_under_the_same_memory_limit(tmp_path: Path) -> None:
    (tmp_path / "offer.j2").write_text(sms_on_line_3("{{ client.name }}, ждём вас."), "utf-8")

    result = limited(tmp_path, "template", "save", "offer", "offer.j2")

    assert result.returncode == 0, result.stderr
    assert stored(tmp_path / "autoloyal.db") == [("offer",)]


def test_the_sms_parts_come_from_the_config(tmp_path: Path) -> None:
    (tmp_path / "offer.j2").write_text(sms_on_line_3("Скидка " * 10), "utf-8")  # 2 parts

    refused = limited(
        tmp_path, "template", "save", "offer", "offer.j2", config="[sms]\nmax_parts = 1\n"
    )
    saved = limited(
        tmp_path, "template", "save", "offer", "offer.j2", config="[sms]\nmax_parts = 2\n"
    )

    assert refused.returncode == 2
    assert refused.stderr.startswith("autoloyal: offer, line 3: ")
    assert "the SMS takes 2 SMS (UCS-2, " in refused.stderr
    assert refused.stderr.endswith("more than [sms] max_parts = 1\n")
    assert saved.returncode == 0, saved.stderr

    checked = limited(
        tmp_path,
        "template",
        "check",
        "offer",
        "--file",
        "offer.j2",
        config="[sms]\nmax_parts = 1\n",
    )
    assert (checked.returncode, checked.stderr) == (2, refused.stderr)


def test_the_library_of_the_config_holds_templates_to_its_sms_parts(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("[sms]\nmax_parts = 3\n", encoding="utf-8")
    settings, _ = load_settings(tmp_path / "config.toml")

    assert template_library(settings).limits == Limits(sms_parts=3)
    assert Settings().sms.max_parts == Limits().sms_parts == 6


# What a template may build ----------------------------------------------------------------------

# Sizes far past any machine's memory: a bound checked after building would be a MemoryError.
BUILDING = [
    pytest.param("{{ 'x' * 10**12 }}", "a text of 1 000 000 000 000", id="repeat"),
    pytest.param("{{ 10**12 * ['x'] }}", "a list of 1 000 000 000 000 items", id="repeat-list"),
    pytest.param("{{ 'x'|center(10**12) }}", "a text of 1 000 000 000 000", id="center-filter"),
    pytest.param("{{ 'x'.center(10**12) }}", "a text of 1 000 000 000 000", id="center-method"),
    pytest.param("{{ 'x'.zfill(10**12) }}", "a text of 1 000 000 000 000", id="zfill-method"),
    pytest.param("{{ ('x\t' * 9).expandtabs(10**12) }}", "a text of 9 000 000 000 018", id="expandtabs"),
    pytest.param("{{ ('a' * 500000)|replace('a', 'b' * 500000) }}", "a text of 250 000 000 000 characters", id="replace-filter"),
    pytest.param("{{ ('a' * 500000).replace('a', 'b' * 500000) }}", "a text of 250 000 000 000 characters", id="replace-method"),
    pytest.param("{{ (['x' * 500000] * 100000)|join }}", "this would make a text of", id="join-filter"),
    pytest.param("{{ ''.join(['x' * 500000] * 100000) }}", "this would make a text of", id="join-method"),
    pytest.param("{{ '%1000000000000s'|format('x') }}", "a text of 1 000 000 000 0", id="format-filter"),
    pytest.param("{{ '%1000000000000s' % 'x' }}", "a text of 1 000 000 000 0", id="percent"),
    pytest.param("{{ '{:>1000000000000}'.format('x') }}", "a text of 1 000 000 000 0", id="format-method"),
    pytest.param("{{ ('a\\n' * 200000)|indent(1000000) }}", "a text of 200 001 400 000", id="indent"),
    pytest.param("{{ ('a ' * 200000)|wordwrap(1, wrapstring='x' * 500000) }}", "a text of 200 000 000 000", id="wordwrap"),
    pytest.param("{{ [1]|batch(10**12)|list }}", "a list of 1 000 000 000 000 items", id="batch"),
    pytest.param("{{ [1]|slice(10**12)|list }}", "a list of 1 000 000 000 000 items", id="slice"),
    pytest.param("{{ [[1] * 100000] * 100000|sum(start=[]) }}", "sum adds numbers", id="sum-of-lists"),
    pytest.param("{{ 2 ** 1000000000000 }}", "a number of about 300 000 000 000 digits", id="power"),
    pytest.param("{{ ['x' * 500000] * 100000 }}", "this would make a text of", id="printing-a-list"),
    pytest.param("{% set client = ['x' * 500000] * 100000 %}{{ client }}\n{% endblock %}{% block telegram %}{{ client.name }}", "this would make a text of", id="printing-a-list-named-like-the-context"),
    pytest.param("{{ (['x' * 500000] * 100000)|upper }}", "this would make a text of", id="list-through-a-filter"),
    pytest.param("{{ (['x' * 500000] * 100000) is lower }}", "this would make a text of", id="list-through-a-test"),
    pytest.param("{{ ('x' * 500000) ~ ('x' * 500000) }}", "a text of 1 000 000 characters", id="concat"),
    pytest.param("{{ ('x'|center(500000)) ~ ('x'|center(500000)) }}", "a text of 1 000 000 characters", id="concat-of-constants"),
    pytest.param("{{ (('x'|center(500000)) ~ ('x'|center(500000)))|length }}", "a text of 1 000 000 characters", id="folding-constants"),
    pytest.param("{% set x %}{% for c in 'x' * 100000 %}{{ 'y' * 500000 }}{% endfor %}{% endset %}{{ x|length }}", "this would make a text of", id="captured-loop"),
    pytest.param("{% macro m() %}{% for c in 'x' * 100000 %}{{ 'y' * 500000 }}{% endfor %}{% endmacro %}{{ m()|length }}", "this would make a text of", id="macro-loop"),
    pytest.param("{% for c in 'x' * 100000 %}{{ 'y' * 500000 }}{% endfor %}", "the sms block makes more than 524 288 characters", id="printed-loop"),
    pytest.param("{{ (1).to_bytes(10**12, 'big') }}", "int.to_bytes() is not available in templates", id="method-not-offered"),
    pytest.param("{{ client.name|tojson }}", "there is no filter named 'tojson'", id="filter-not-offered"),
    pytest.param("{{ lipsum(10**6) }}", "'lipsum' is undefined", id="no-lipsum"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "reason"), BUILDING)
def test_what_would_pass_a_bound_is_refused_before_it_is_built(body: str, reason: str) -> None:
    with bounded_memory():
        problem = refusal(sms_on_line_3(body))

    assert (problem.name, problem.line) == ("staff", 3)
    assert reason in problem.reason


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("{% for a in 'x' * 100000 %}{% for b in 'x' * 10000 %}{% endfor %}{% endfor %}", id="loops"),
        pytest.param("{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(24) }}", id="macro"),
    ],
)  # fmt: skip
def test_a_runaway_loop_or_macro_stops_at_the_deadline(body: str) -> None:
    # A billion loop steps, 17 million macro calls: many seconds on any machine, were it not for
    # the deadline.
    problem = refusal(sms_on_line_3(body))

    assert problem.line == 3
    assert "rendering takes more than the 2 s a message may take" in problem.reason


@pytest.mark.parametrize(
    ("source", "line", "reason"),
    [
        pytest.param("{% block sms %}\n{% if false %}\n{{ client.name|nosuchfilter }}{% endif %}{% endblock %}", 3, "there is no filter named 'nosuchfilter'", id="filter-in-a-branch-not-taken"),
        pytest.param("{% block sms %}\n{% if client is nosuchtest %}.{% endif %}{% endblock %}", 2, "there is no test named 'nosuchtest'", id="unknown-test"),
        pytest.param("{% block sms %}{% filter nosuchfilter %}\nx{% endfilter %}{% endblock %}", 1, "there is no filter named 'nosuchfilter'", id="filter-block"),
        pytest.param("{% block sms %}{{ " + "(" * 300 + "1" + ")" * 300 + " }}{% endblock %}", None, "the template nests too deeply", id="nesting"),
        pytest.param("{% block sms %}" + "x" * MAX_SOURCE + "{% endblock %}", None, "characters long; at most 100 000", id="source-too-long"),
    ],
)  # fmt: skip
def test_a_template_that_cannot_be_compiled_safely_is_refused_with_its_line(
    source: str, line: int | None, reason: str
) -> None:
    with pytest.raises(TemplateProblem) as refused:
        MessageTemplate("staff", source, "test")

    assert refused.value.line == line
    assert reason in refused.value.reason


def test_a_filter_given_a_value_of_the_wrong_kind_says_so() -> None:
    problem = refusal(sms_on_line_3("{{ (['x'] * 3)|money }}"))

    assert problem.line == 3
    assert "money expects a number, not list" in problem.reason


# What a channel takes ---------------------------------------------------------------------------


def telegram(body: str) -> str:
    return f"{{% block telegram %}}<b>Здравствуйте!</b>\n{body}\n{{% endblock %}}"


@pytest.mark.parametrize(
    ("body", "fits_in"),
    [
        pytest.param("{{ 'ы' * 4082 }}", True, id="4096-characters-with-the-greeting"),
        pytest.param("{{ 'ы' * 4083 }}", False, id="4097-characters"),
        pytest.param("{{ '<b>ы</b>'|safe * 4082 }}", True, id="tags-do-not-count"),
        pytest.param("{{ '&' * 4082 }}", True, id="an-entity-counts-one"),
        pytest.param("{{ '😀' * 2041 }}", True, id="an-emoji-counts-two"),
        pytest.param("{{ '😀' * 2042 }}", False, id="one-emoji-too-many"),
    ],
)  # fmt: skip
def test_telegram_takes_4096_characters_counted_as_telegram_counts_them(
    body: str, fits_in: bool
) -> None:
    # The greeting is 14 characters: "Здравствуйте!" and a new line.
    source = telegram(body)
    template = MessageTemplate("staff", source, "test")
    if fits_in:
        assert check_template(template, SAMPLE).content["telegram"]["text"].startswith("<b>")
    else:
        problem = refusal(source)
        assert problem.line == 2
        assert "more than the 4 096 Telegram takes" in problem.reason


def test_an_overlong_text_names_the_line_where_it_passes_the_limit() -> None:
    lines = f"Строка: {{{{ client.name }}}}, {'ждём вас ' * 10}\n" * 60
    problem = refusal(telegram(lines))

    # 14 characters of greeting, then 114 a line: the 4 096th is on the 36th line of text,
    # the template's 37th.
    assert problem.line == 37
    assert problem.reason.startswith("the Telegram text is 6 ")


@pytest.mark.parametrize(
    ("parts", "text", "refused"),
    [
        pytest.param(6, "ы" * 402, False, id="6-parts-of-UCS-2"),
        pytest.param(6, "ы" * 403, True, id="7-parts-of-UCS-2"),
        pytest.param(6, "s" * 918, False, id="6-parts-of-GSM-7"),
        pytest.param(6, "s" * 919, True, id="7-parts-of-GSM-7"),
        pytest.param(1, "ы" * 70, False, id="one-part"),
        pytest.param(1, "ы" * 71, True, id="two-parts-when-one-is-allowed"),
        pytest.param(2, "😀" * 66, False, id="emoji-in-two-parts"),
        pytest.param(2, "😀" * 67, True, id="an-emoji-does-not-straddle-two-parts"),
    ],
)  # fmt: skip
def test_an_sms_takes_the_parts_the_config_allows(parts: int, text: str, refused: bool) -> None:
    source = f"{{% block sms %}}\n{text}{{% endblock %}}"
    limits = Limits(sms_parts=parts)
    if refused:
        problem = refusal(source, limits)
        assert problem.line == 2
        assert problem.reason.endswith(f"more than [sms] max_parts = {parts}")
    else:
        rendered = check_template(MessageTemplate("staff", source, "test", limits), SAMPLE)
        assert sms_length(rendered.content["sms"]["text"]).segments <= parts


@pytest.mark.parametrize(
    ("block", "size", "reason"),
    [
        pytest.param("subject", 300, None, id="subject-300"),
        pytest.param("subject", 301, "the e-mail subject is 301 characters, more than 300", id="subject-301"),
        pytest.param("email_text", 262_144, None, id="text-256-K"),
        pytest.param("email_text", 262_145, "the e-mail text is 262 145 characters, more than 262 144", id="text-over"),
        pytest.param("email_html", 262_145, "the e-mail HTML is 262 145 characters, more than 262 144", id="html-over"),
    ],
)  # fmt: skip
def test_an_email_holds_a_short_subject_and_a_few_hundred_kb(
    block: str, size: int, reason: str | None
) -> None:
    blocks = {"subject": "Тема", "email_text": "Текст", "email_html": "<p>Текст</p>"}
    blocks[block] = f"\n{{{{ 'ы' * {size} }}}}"
    source = "".join(f"{{% block {name} %}}{body}{{% endblock %}}" for name, body in blocks.items())
    if reason is None:
        assert check_template(MessageTemplate("staff", source, "test"), SAMPLE).content["email"]
    else:
        problem = refusal(source)
        assert problem.line == 2
        assert reason in problem.reason


def test_the_quick_sms_count_agrees_with_the_exact_one() -> None:
    # `fits` skips counting texts of up to 33 characters a part: never a wrong answer.
    pieces = ["s", "ы", "€", "😀", "{", "sы"]
    for parts in (1, 2, 3, 6):
        for piece in pieces:
            for length in range(1, 33 * parts + 40):
                text = (piece * length)[:length]
                assert fits(text, parts) == (sms_length(text).segments <= parts), (parts, text)


# Telegram's HTML --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "html",
    [
        "<b>b</b> <strong>s</strong> <i>i</i> <em>e</em> <u>u</u> <ins>i</ins> <s>s</s> <strike>s</strike> <del>d</del>",
        '<tg-spoiler>s</tg-spoiler> <span class="tg-spoiler">s</span> <a href="{{ links.booking }}">запись</a>',
        '<code>x</code> <pre>x</pre> <pre><code class="language-python">print()</code></pre>',
        "<blockquote>q</blockquote> <blockquote expandable>q</blockquote>",
        '<tg-emoji emoji-id="5368324170671202286">👍</tg-emoji> &lt; &gt; &amp; &quot; &#160; &#x1F600;',
        "<b>жирный <i>курсив <u>подчёркнутый</u></i></b> {{ company.name }}",
    ],
)  # fmt: skip
def test_telegrams_html_is_accepted(html: str) -> None:
    content = check_template(MessageTemplate("staff", telegram(html), "test"), SAMPLE).content
    assert content["telegram"]["text"].startswith("<b>Здравствуйте!</b>")


@pytest.mark.parametrize(
    ("html", "line", "reason"),
    [
        pytest.param("Строка<br>\nещё", 2, "<br> is not in Telegram's HTML (a new line in the template is a new line", id="br"),
        pytest.param("<p>абзац</p>", 2, "<p> is not in Telegram's HTML", id="p"),
        pytest.param("{% if false %}\n<div>x</div>{% endif %}", 3, "<div> is not in Telegram's HTML", id="tag-in-a-branch-not-taken"),
        pytest.param("{{ '<h1>x</h1>'|safe }}", 2, "<h1> is not in Telegram's HTML", id="tag-in-a-safe-value"),
        pytest.param("<b>жирный\n\n<i>курсив</b></i>", 4, "</b> closes nothing here: <i> is still open", id="overlapping"),
        pytest.param("первая\n<b>не закрыт", 3, "<b> is not closed", id="unclosed"),
        pytest.param("</i>", 2, "</i> closes nothing here: nothing is open", id="stray-end-tag"),
        pytest.param("2 < 3", 2, "a '<' that starts no tag", id="stray-lt"),
        pytest.param("цена&nbsp;100", 2, "an '&' Telegram cannot read", id="named-entity"),
        pytest.param("A & B", 2, "an '&' Telegram cannot read", id="bare-ampersand"),
        pytest.param('<span class="red">x</span>', 2, '<span> is only for spoilers: <span class="tg-spoiler">', id="span"),
        pytest.param("<a>x</a>", 2, '<a> needs href="…"', id="link-without-href"),
        pytest.param('<a href="https://x.ru" target="_blank">x</a>', 2, "<a> cannot have target= in Telegram", id="link-target"),
        pytest.param('<b class="x">x</b>', 2, "<b> cannot have class= in Telegram", id="attribute"),
        pytest.param('<code class="language-py">x</code>', 2, "is only for a code block", id="language-outside-pre"),
        pytest.param("<code><b>x</b></code>", 2, "<b> inside <code>", id="tag-in-code"),
        pytest.param("<pre><i>x</i></pre>", 2, "<i> inside <pre>", id="tag-in-pre"),
        pytest.param("<blockquote><blockquote>x</blockquote></blockquote>", 2, "a <blockquote> inside a <blockquote>", id="nested-quote"),
        pytest.param('<a href="https://a.ru"><a href="https://b.ru">x</a></a>', 2, "a link inside a link", id="nested-link"),
        pytest.param('<tg-emoji emoji-id="abc">👍</tg-emoji>', 2, "<tg-emoji> needs a numeric emoji-id", id="emoji-id"),
        pytest.param("<b/>", 2, "Telegram's tags are written <b>…</b>", id="self-closing"),
    ],
)  # fmt: skip
def test_html_telegram_would_refuse_is_refused_with_its_line(
    html: str, line: int, reason: str
) -> None:
    problem = refusal(telegram(html))

    assert problem.line == line
    assert reason in problem.reason


# The shipped templates and the outbox -----------------------------------------------------------


@pytest.mark.parametrize("path", BUILT_IN, ids=[path.stem for path in BUILT_IN])
def test_a_built_in_template_fits_every_channel_even_for_the_longest_names(path: Path) -> None:
    template = MessageTemplate(path.stem, path.read_text(encoding="utf-8"), "built-in")
    longest = ClientFacts(1, "Константин" * 2, "Александрович", "Воскресенский", "male", None)
    car = CarFacts("Mercedes-Benz", "GLE Coupe", 2021, "А123ВС777", None, None)
    context = {**SAMPLE, **message_context(COMPANY, longest, car, SAMPLE["today"])}

    sample = check_template(template, SAMPLE).content
    long_names = check_template(template, context).content

    assert sms_length(sample["sms"]["text"]).segments <= 2
    assert sms_length(long_names["sms"]["text"]).segments <= Limits().sms_parts


async def test_a_message_past_a_bound_refuses_the_campaign_and_queues_nothing(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    (tmp_path / "long_offer.j2").write_text(
        "{% block sms %}{{ client.name }}, {{ 'скидка на ТО, ' * 18 }}\n— {{ company.name }}{% endblock %}",
        encoding="utf-8",
    )
    await add_client(db, phone="+79035254560")  # "Иван Петрович": 5 parts
    await add_client(db, phone="+79035254561", first_name="Ы" * 128, middle_name="Ы" * 128)
    strict, lenient = TemplateLibrary(tmp_path), TemplateLibrary(tmp_path, Limits(sms_parts=9))

    with pytest.raises(TemplateProblem) as refused:
        await launch(
            db,
            clock,
            await plan_for(db, clock, template="long_offer", channels="sms", library=strict),
        )
    assert (await count(db, Campaign), await count(db, Message)) == (0, 0)

    await launch(
        db, clock, await plan_for(db, clock, template="long_offer", channels="sms", library=lenient)
    )
    assert await count(db, Message) == 2
    assert str(refused.value).startswith("long_offer, line 1: the SMS takes 8 SMS (UCS-2, ")
    assert refused.value.reason.endswith("more than [sms] max_parts = 6")

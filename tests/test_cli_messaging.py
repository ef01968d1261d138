"""`autoloyal template ...` and `autoloyal campaign ...` as the dealer's IT person runs them."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import signal
import subprocess
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from tests.support.botapi import FakeBotAPI
from tests.test_cli import AUTOLOYAL, autoloyal, query

BROKEN = """{% block sms %}
Здравствуйте!
{{ client.nmae }}, ждём вас.
{% endblock %}
"""


def test_templates_are_listed_checked_and_previewed(tmp_path: Path) -> None:
    assert autoloyal(tmp_path, "demo", "--clients", "20").returncode == 0

    listing = autoloyal(tmp_path, "template", "list")
    check = autoloyal(tmp_path, "template", "check", "birthday")
    preview = autoloyal(tmp_path, "template", "preview", "maintenance_reminder", "--client", "3")

    assert listing.returncode == 0, listing.stderr
    assert "maintenance_reminder  built-in  telegram, sms, email  maintenance" in listing.stdout
    assert check.returncode == 0, check.stderr
    assert "birthday (built-in): OK" in check.stdout
    assert "sms: 2 SMS (UCS-2, " in check.stdout
    assert preview.returncode == 0, preview.stderr
    assert "sample values for: maintenance" in preview.stderr
    name = query(tmp_path / "autoloyal.db", "SELECT first_name FROM client WHERE id = 3")[0][0]
    assert name in preview.stdout


def test_preview_names_the_client_as_every_command_does(tmp_path: Path) -> None:
    assert autoloyal(tmp_path, "demo", "--clients", "5").returncode == 0
    [(external_id, phone, *names)] = query(
        tmp_path / "autoloyal.db",
        "SELECT external_id, phone, last_name, first_name, middle_name FROM client WHERE id = 3",
    )
    spoken = f"8 ({phone[2:5]}) {phone[5:8]}-{phone[8:10]}-{phone[10:]}"  # +7 903 ... as said
    header = f"birthday (built-in) for {' '.join(filter(None, names))} ({external_id})"

    shown = {
        form: autoloyal(tmp_path, "template", "preview", "birthday", "--client", form)
        for form in (external_id, phone, spoken, "#3", "3")
    }
    unknown = autoloyal(tmp_path, "template", "preview", "birthday", "--client", "nobody")

    assert {form: result.stdout.splitlines()[:1] for form, result in shown.items()} == {
        form: [header] for form in shown
    }
    assert (unknown.returncode, unknown.stderr) == (
        2,
        "autoloyal: no client with external id, phone, card or id 'nobody'\n",
    )


def test_a_broken_staff_template_is_refused_with_its_line_and_a_good_one_is_saved(
    tmp_path: Path,
) -> None:
    (tmp_path / "broken.j2").write_text(BROKEN, encoding="utf-8")
    (tmp_path / "good.j2").write_text(
        "{% block sms %}{{ client.polite }}! Ждём вас. {{ company.name }}{% endblock %}", "utf-8"
    )

    (tmp_path / "cp1251.j2").write_bytes("{% block sms %}Привет{% endblock %}".encode("cp1251"))
    refused = autoloyal(tmp_path, "template", "save", "offer", "broken.j2")
    not_utf8 = autoloyal(tmp_path, "template", "save", "offer", "cp1251.j2")
    saved = autoloyal(tmp_path, "template", "save", "winback", "good.j2")
    listing = autoloyal(tmp_path, "template", "list")

    assert refused.returncode == 2
    assert refused.stderr.startswith("autoloyal: offer, line 3: ")
    assert "nmae" in refused.stderr
    assert (not_utf8.returncode, not_utf8.stderr) == (
        2,
        "autoloyal: offer: cp1251.j2 is not UTF-8 text (byte 15): save it as UTF-8\n",
    )
    assert query(tmp_path / "autoloyal.db", "SELECT name FROM message_template") == [("winback",)]
    assert saved.returncode == 0, saved.stderr
    assert "winback               database  sms" in listing.stdout


def test_quiet_hours_are_said_at_creation_and_shown_while_the_messages_wait(
    tmp_path: Path,
) -> None:
    # A night that holds now in Moscow (the demo's clients have no zone of their own).
    now = datetime.now(ZoneInfo("Europe/Moscow"))
    morning = now + timedelta(hours=3)
    night = f"{now - timedelta(hours=1):%H:%M}-{morning:%H:%M}"
    until = f"{morning:%Y-%m-%d %H:%M}"
    config = f'[company]\nquiet_hours = "{night}"\n[outbox]\nadvertising_limit = 0\n'
    assert autoloyal(tmp_path, "demo", "--clients", "20", config=config).returncode == 0

    created = autoloyal(
        tmp_path, "campaign", "create", "--segment", "all", "--template", "new_year",
        "--channels", "telegram,sms", "--yes",
    )  # fmt: skip
    shown = autoloyal(tmp_path, "campaign", "show", "1")
    as_json = json.loads(autoloyal(tmp_path, "campaign", "show", "1", "--format", "json").stdout)
    one = autoloyal(tmp_path, "message", "1")

    assert created.returncode == 0, created.stderr
    assert (
        f"  quiet hours ({night}): 20 client(s) will wait until {until} (Europe/Moscow)"
        in created.stderr.splitlines()
    )
    waits = "waiting for the end of quiet hours in the client's time zone"
    assert f"  20, the first at {until}, {waits}" in shown.stdout.splitlines()
    assert [(w["why"], w["count"]) for w in as_json["waiting"]] == [("quiet_hours", 20)]
    assert f"next attempt: {until}, {waits}" in one.stdout.splitlines()

    # Quiet hours turned off: nothing holds them any more, and nothing says so.
    (tmp_path / "config.toml").write_text(
        '[company]\nquiet_hours = ""\n[outbox]\nadvertising_limit = 0\n', encoding="utf-8"
    )
    released = autoloyal(tmp_path, "campaign", "show", "1")
    assert released.returncode == 0, released.stderr
    assert "not yet due:" not in released.stdout
    assert "next attempt: " in autoloyal(tmp_path, "message", "1").stdout  # due now


def test_a_campaign_is_created_sent_shown_and_its_rest_cancelled(tmp_path: Path) -> None:
    config = '[company]\nquiet_hours = ""\n[outbox]\nadvertising_limit = 0\n[http]\nport = 0\n'
    assert autoloyal(tmp_path, "demo", "--clients", "40", config=config).returncode == 0

    asked = autoloyal(
        tmp_path, "campaign", "create", "--segment", "all", "--template", "new_year",
        "--channels", "telegram,sms",
    )  # fmt: skip
    created = autoloyal(
        tmp_path, "campaign", "create", "--segment", "all", "--template", "new_year",
        "--channels", "telegram,sms", "--yes",
    )  # fmt: skip

    assert asked.returncode == 1
    assert "new_year to 40 client(s) through telegram -> sms" in asked.stderr
    assert "add --yes" in asked.stderr
    assert created.returncode == 0, created.stderr
    assert "campaign 1 created: 40 message(s) queued" in created.stdout

    process = subprocess.Popen(
        [AUTOLOYAL, "run", "--roles", "dispatcher"], cwd=tmp_path, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            shown = autoloyal(tmp_path, "campaign", "show", "1", "--format", "json")
            report = json.loads(shown.stdout)
            if report["status"] == "finished":
                break
            time.sleep(0.3)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    finally:
        process.kill()

    assert report["status"] == "finished"
    assert report["total"] == 40
    assert set(report["by_state"]) <= {"sent", "skipped"}
    sent = report["by_state"].get("sent", 0)
    lines = sum(
        len(path.read_text("utf-8").splitlines()) for path in (tmp_path / "outbox").glob("*.jsonl")
    )
    assert lines == sent > 0
    cancelled = autoloyal(tmp_path, "campaign", "cancel", "1")
    assert cancelled.returncode == 0, cancelled.stderr
    assert "campaign 1 cancelled: 0 message(s) will not be sent" in cancelled.stdout
    listing = autoloyal(tmp_path, "campaign", "list")
    assert "cancelled" in listing.stdout


def test_campaign_mistakes_are_one_line_and_exit_code_2(tmp_path: Path) -> None:
    unknown = autoloyal(
        tmp_path, "campaign", "create", "--segment", "vip", "--template", "winback",
        "--channels", "telegram", "--yes",
    )  # fmt: skip
    occasion = autoloyal(
        tmp_path, "campaign", "create", "--segment", "all", "--template", "booking_reminder",
        "--channels", "sms", "--yes",
    )  # fmt: skip
    missing = autoloyal(tmp_path, "campaign", "show", "42")

    assert (unknown.returncode, unknown.stderr) == (
        2,
        "autoloyal: unknown segment 'vip': built-in segments are all, abc, xyz, bcg, lost, "
        "lifecycle, no_service_history, maintenance_due, birthdays, filter (or a saved one)\n",
    )
    assert occasion.returncode == 2
    assert "needs booking" in occasion.stderr
    assert missing.returncode == 2
    assert "no campaign 42" in missing.stderr


async def test_the_dispatcher_role_sends_through_the_configured_bot_api_server(
    tmp_path: Path,
) -> None:
    async with FakeBotAPI() as bot_api:
        config = (
            f'[telegram]\ntoken = "{bot_api.token}"\napi_server = "{bot_api.base_url}"\n'
            '[company]\nquiet_hours = ""\n'
        )
        assert autoloyal(tmp_path, "demo", "--clients", "30", config=config).returncode == 0
        chats = [
            row[0]
            for row in query(
                tmp_path / "autoloyal.db",
                "SELECT telegram_id FROM client WHERE telegram_id IS NOT NULL",
            )
        ]
        created = autoloyal(
            tmp_path, "campaign", "create", "--segment", "all", "--template", "mar8",
            "--channels", "telegram", "--kind", "service", "--yes",
        )  # fmt: skip
        assert created.returncode == 0, created.stderr
        process = await asyncio.create_subprocess_exec(
            AUTOLOYAL, "run", "--roles", "dispatcher", cwd=tmp_path, stderr=subprocess.PIPE
        )
        try:
            await bot_api.wait_sent(len(chats), timeout=120)
        finally:
            process.send_signal(signal.SIGTERM)
            _, log = await asyncio.wait_for(process.communicate(), timeout=60)

    assert chats
    assert sorted(message.chat_id for message in bot_api.sent) == sorted(chats)
    assert {message.parse_mode for message in bot_api.sent} == {"HTML"}
    assert f"telegram -> {bot_api.base_url}" in log.decode()
    assert process.returncode == 0
    assert not (tmp_path / "outbox" / "telegram.jsonl").exists()


def test_the_estimate_prices_the_sms_and_messages_lists_what_was_queued(tmp_path: Path) -> None:
    config = (
        '[sms]\nprice_per_segment = 2.5\n[http]\npublic_url = "https://l.example.ru"\n'
        '[[email.account]]\nname = "news"\nhost = "127.0.0.1"\nfrom_address = "n@example.ru"\n'
    )
    assert autoloyal(tmp_path, "demo", "--clients", "40", config=config).returncode == 0
    [(phones,)] = query(
        tmp_path / "autoloyal.db", "SELECT count(*) FROM client WHERE phone IS NOT NULL"
    )
    [(phone,)] = query(tmp_path / "autoloyal.db", "SELECT phone FROM client WHERE id = 1")

    wrong = autoloyal(
        tmp_path, "campaign", "create", "--segment", "all", "--template", "winback",
        "--channels", "sms,email", "--email-account", "promo", "--yes",
    )  # fmt: skip
    created = autoloyal(
        tmp_path, "campaign", "create", "--segment", "all", "--template", "winback",
        "--channels", "sms,email", "--email-account", "news", "--yes",
    )  # fmt: skip

    assert wrong.returncode == 2
    assert "--email-account: no account 'promo' in [[email.account]] (accounts: news)" in (
        wrong.stderr
    )
    assert created.returncode == 0, created.stderr
    assert f"by the first channel they have: sms {phones}," in created.stderr
    estimate = re.search(
        rf"SMS: up to {phones} × (\d) part\(s\) × 2\.5 = ([\d ]+\.\d\d)", created.stderr
    )
    assert estimate is not None, created.stderr
    parts = int(estimate[1])
    assert estimate[2].replace(" ", "") == f"{phones * parts * 2.5:.2f}"

    listed = autoloyal(tmp_path, "messages", "--campaign", "1", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(listed.stdout)))
    assert listed.returncode == 0, listed.stderr
    assert len(rows) == 40
    assert {row["state"] for row in rows} == {"queued"}
    one = autoloyal(tmp_path, "messages", "--client", phone, "--format", "json")
    assert [line["client_id"] for line in json.loads(one.stdout)] == [1]
    [shown] = json.loads(one.stdout)
    detail = autoloyal(tmp_path, "message", str(shown["id"]))
    assert detail.returncode == 0, detail.stderr
    assert "Отказ: https://l.example.ru/u/" in detail.stdout, "the SMS ends with the way out"
    assert "no attempts yet" in detail.stdout

    bad_state = autoloyal(tmp_path, "messages", "--state", "lost")
    missing = autoloyal(tmp_path, "message", "4242")
    assert (bad_state.returncode, missing.returncode) == (2, 2)
    assert "--state: unknown state 'lost'" in bad_state.stderr
    assert "no message 4242" in missing.stderr

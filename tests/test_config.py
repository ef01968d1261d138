"""Configuration: defaults with no file, the example documents every key, errors name the key."""

from __future__ import annotations

import re
from datetime import time
from pathlib import Path

import pytest
from pydantic import BaseModel

from autoloyal.config import ConfigError, Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "config.example.toml"


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_with_no_file_the_defaults_run_on_a_sqlite_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AUTOLOYAL_CONFIG", raising=False)

    settings, source = load_settings()

    assert source is None
    assert settings.database.url == "sqlite:///autoloyal.db"
    assert settings.company.timezone == "Europe/Moscow"
    assert settings.http.port == 8080


def test_the_example_file_is_valid_and_shows_the_defaults() -> None:
    settings, _ = load_settings(EXAMPLE)

    defaults = Settings()
    anchored = {"database", "outbox"}
    assert settings.model_dump(exclude=anchored) == defaults.model_dump(exclude=anchored)
    assert settings.outbox.model_copy(update={"dir": Path("outbox")}) == defaults.outbox
    assert settings.database.url.endswith(str(ROOT / "autoloyal.db"))
    assert settings.outbox.dir == ROOT / "outbox"


def keys_of(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        key = field.alias or name
        annotation = field.annotation
        items = [a for a in getattr(annotation, "__args__", ()) if isinstance(a, type)]
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys += keys_of(annotation, f"{key}.")
        elif items and issubclass(items[0], BaseModel):  # [[branch]], [[tier]]
            keys += keys_of(items[0], f"{key}.")
        else:
            keys.append(prefix + key)
    return keys


def test_the_example_file_documents_every_key() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")

    def documented(key: str) -> bool:
        name = re.escape(key.rsplit(".", 1)[-1])
        as_value = rf"^#?\s*{name}\s*="
        as_table = rf"^#?\s*\[{re.escape(key)}\]"
        return bool(re.search(as_value, text, re.M) or re.search(as_table, text, re.M))

    missing = [key for key in keys_of(Settings) if not documented(key)]
    assert missing == []


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[http]\nport = 'abc'", 'http.port: expected an integer, got "abc"'),
        ("[http]\nport = 70000", "http.port: must be at most 65535, got 70000"),
        ("[http]\nprot = 1", "http.prot: unknown key"),
        ("[htp]\nport = 1", "htp: unknown key"),
        (
            "[company]\ntimezone = 'Europe/Moskow'",
            "company.timezone: unknown time zone 'Europe/Moskow'",
        ),
        ("[company]\nlocale = 'de'", "company.locale: expected 'ru' or 'en', got \"de\""),
        ("[company]\ncountry = 'XX'", "company.country: unknown country code 'XX'"),
        ("[database]\nurl = 'mysql://u@h/db'", "database.url: unsupported database 'mysql'"),
        ("[[branch]]\nname = 'Север'", "branch[0].code: required key is missing"),
        (
            "[[branch]]\ncode = 'North 1'\nname = 'Север'",
            "branch[0].code: use lowercase latin letters",
        ),
        (
            "[[branch]]\ncode='a'\nname='A'\n[[branch]]\ncode='a'\nname='B'",
            "branch[1].code: 'a' is used twice",
        ),
        (
            "[maintenance]\ninterval_km = 0",
            "maintenance.interval_km: must be greater than 0, got 0",
        ),
        (
            "[maintenance.makes.Kia]\ninterval_km = 'x'",
            'maintenance.makes.Kia.interval_km: expected an integer, got "x"',
        ),
        ("[import]\nbatch_size = 0", "import.batch_size: must be at least 1, got 0"),
        ("company = 5", "company: expected a table, got 5"),
        ("[sms]\nprovider = 'twilio'", "sms.provider: expected '', 'smsru', 'smsc' or 'generic'"),
        ("[sms]\nprovider = 'smsru'", "sms.password: smsru needs its api_id here"),
        ("[sms]\nprovider = 'smsc'\npassword = 'p'", "sms.login: smsc needs the account's login"),
        ("[sms]\nprovider = 'generic'", "sms.generic: the generic provider needs a [sms.generic]"),
        (
            "[sms]\nprovider = 'generic'\n[sms.generic]\nurl = 'https://x.ru/send'\nfeilds = 1",
            "sms.generic.feilds: unknown key",
        ),
        (
            "[sms]\nprovider = 'generic'\n[sms.generic]\nurl = 'https://x.ru/send'\n"
            "fields = { to = '{digits}', text = '{txt}' }",
            "sms.generic.fields.text: unknown placeholder {txt}",
        ),
        ("[sms]\nopt_out_text = 'Отказ: {url}'", "sms.opt_out_text: only {link} may appear"),
        ("[sms]\ncallback_secret = 'abc'", "sms.callback_secret: expected at least 16"),
        ("[http]\npublic_url = 'loyal.ru'", "http.public_url: expected an http(s) URL"),
        ("[email]\ndefault_account = 'news'", "email.default_account: no account named 'news'"),
        (
            "[[email.account]]\nname = 'News'\nhost = 'h'\nfrom_address = 'a@b.ru'",
            "email.account[0].name: use lowercase latin letters",
        ),
        (
            "[[email.account]]\nname = 'news'\nhost = 'h'\nfrom_address = 'ab.ru'",
            'email.account[0].from_address: expected an e-mail address like "news@example.ru"',
        ),
        (
            "[[email.account]]\nname = 'news'\nhost = 'h'\nfrom_address = 'a@b.ru'\n"
            "security = 'ssl'",
            "email.account[0].security: expected 'none', 'starttls' or 'tls'",
        ),
        (
            "[[email.account]]\nname = 'news'\nhost = 'h'\nfrom_address = 'a@b.ru'\n"
            "dkim_domain = 'b.ru'",
            "email.account[0]: dkim_domain, dkim_selector and dkim_key_file go together",
        ),
        (
            "[[email.account]]\nname = 'a'\nhost = 'h'\nfrom_address = 'a@b.ru'\n"
            "[[email.account]]\nname = 'a'\nhost = 'h'\nfrom_address = 'a@b.ru'",
            "email.account[1].name: 'a' is used twice",
        ),
        ("[telegram]\nstaff_chat_id = 'staff'", "telegram.staff_chat_id: expected an integer"),
        ("[outbox]\nhalt_minutes = 0", "outbox.halt_minutes: must be greater than 0, got 0"),
    ],
)
def test_a_bad_value_is_an_error_naming_the_file_and_the_key(
    tmp_path: Path, toml: str, message: str
) -> None:
    path = write_config(tmp_path, toml)

    with pytest.raises(ConfigError) as error:
        load_settings(path)

    assert str(error.value).startswith(f"{path}: {message}")


def test_broken_toml_says_where(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[http]\nport = \n")

    with pytest.raises(ConfigError, match=r"invalid TOML: .*line 2"):
        load_settings(path)


def test_a_named_config_file_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "nope.toml")


def test_the_config_file_can_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(tmp_path, "[http]\nport = 9999\n")
    monkeypatch.setenv("AUTOLOYAL_CONFIG", str(path))

    settings, source = load_settings()

    assert (source, settings.http.port) == (path, 9999)


def test_a_relative_sqlite_path_is_next_to_the_config_file_wherever_we_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "etc").mkdir()
    path = write_config(tmp_path / "etc", "[database]\nurl = 'sqlite:///data/autoloyal.db'\n")
    monkeypatch.chdir(tmp_path)

    settings, _ = load_settings(path)

    assert (
        settings.database.url == f"sqlite+aiosqlite:///{tmp_path / 'etc' / 'data' / 'autoloyal.db'}"
    )


def test_a_postgresql_url_is_kept_as_written(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[database]\nurl = 'postgresql://app:secret@db/autoloyal'\n")

    settings, _ = load_settings(path)

    assert settings.database.url == "postgresql://app:secret@db/autoloyal"


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[company]\nquiet_hours = '9-21'", 'company.quiet_hours: expected "HH:MM-HH:MM"'),
        ("[telegram]\ntoken = 'secret'", "telegram.token: expected a bot token"),
        (
            "[telegram]\napi_server = 'localhost:8081'",
            "telegram.api_server: expected an http(s) URL",
        ),
        ("[outbox]\nlease_seconds = 5", "outbox.lease_seconds: must be at least 30, got 5"),
    ],
)
def test_messaging_settings_name_the_bad_key(toml: str, message: str, tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(toml, encoding="utf-8")

    with pytest.raises(ConfigError, match=re.escape(message)):
        load_settings(path)


def test_quiet_hours_read_as_a_night_and_can_be_switched_off(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[company]\nquiet_hours = '22:30-08:00'\n[outbox]\ndir = 'out'", "utf-8")

    settings, _ = load_settings(path)

    assert settings.company.quiet == (time(22, 30), time(8, 0))
    assert settings.outbox.dir == tmp_path / "out"
    assert Settings(company={"quiet_hours": ""}).company.quiet is None  # type: ignore[arg-type]

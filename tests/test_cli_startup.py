"""`autoloyal` starts light: the command line loads a command's dependencies when it runs.

Timing a process is not deterministic; what it imports is. SQLAlchemy's asyncio layer,
aiohttp, pydantic, aiogram and Jinja2 are what made `autoloyal --help` take two seconds.
"""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

# Typer itself converts option values with pydantic once it parses any (the root's --verbose
# for `autoloyal segment --help`), so pydantic is ours to avoid only when importing.
OURS = ("aiohttp", "sqlalchemy.ext.asyncio", "aiogram", "jinja2", "alembic")
HEAVY = (*OURS, "pydantic")


def report(modules: tuple[str, ...]) -> str:
    return f"""
import sys
print("heavy:", [name for name in {modules!r} if name in sys.modules])
"""


def python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


def test_importing_the_command_line_loads_none_of_the_heavy_libraries() -> None:
    result = python("import autoloyal.cli\n" + report(HEAVY))

    assert result.returncode == 0, result.stderr
    assert result.stdout == "heavy: []\n"


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["segment", "--help"],
        ["campaign", "create", "--help"],
        ["bonus", "balance", "--help"],
        ["run", "--help"],
    ],
)
def test_help_loads_none_of_the_heavy_libraries(args: list[str]) -> None:
    code = f"""
from autoloyal.cli import main
try:
    main({args!r})
except SystemExit as exit:
    assert exit.code == 0, exit.code
{report(OURS)}
"""
    result = python(code)

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: autoloyal ")
    assert result.stdout.splitlines()[-1] == "heavy: []"


def test_every_user_error_named_for_the_one_line_exit_exists_where_named() -> None:
    from autoloyal.cli.console import USER_ERRORS

    for name in USER_ERRORS:
        module_name, _, class_name = name.partition(":")
        error = getattr(importlib.import_module(module_name), class_name)
        assert issubclass(error, Exception), name
        # Defined there, so it cannot be raised before that module is imported.
        assert error.__module__ == module_name, name


def test_the_config_variable_is_the_one_the_config_reads() -> None:
    from autoloyal.cli.console import CONFIG_ENV
    from autoloyal.config import CONFIG_ENV as READ

    assert CONFIG_ENV == READ


def test_python_dash_m_autoloyal_is_the_same_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "autoloyal", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: autoloyal [OPTIONS] COMMAND")

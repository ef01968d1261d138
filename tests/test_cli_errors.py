"""Mistakes at the command line: one line on stderr saying what was wrong, exit code 2.

And the help says what the code says: "[sms]" in a help text is text, not markup.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.main import get_command

from autoloyal.cli import app
from tests.test_cli import autoloyal


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["segment", "--cont"], "segment: no such option --cont (did you mean --count?)"),
        (["segmnt"], "no such command 'segmnt' (did you mean 'segment'?)"),
        (["--nope"], "no such option --nope"),
        (
            ["campaign", "create", "--segment", "all", "--channels", "sms"],
            "campaign create: missing option '--template'",
        ),
        (["segment", "abc", "grp"], "segment: invalid value for PARAMS: expected k=v, got 'grp'"),
        (
            ["bonus", "adjust", "C1", "--add", "5", "--take", "5"],
            "bonus adjust: invalid value: give exactly one of --add and --take",
        ),
        (["db", "upgrade", "extra"], "db upgrade: got unexpected extra argument(s) (extra)"),
        (
            ["import", "clients", "missing.csv"],
            "import: invalid value for 'file': file 'missing.csv' does not exist",
        ),
    ],
)
def test_a_usage_mistake_is_one_line_and_exit_code_2(
    tmp_path: Path, args: list[str], line: str
) -> None:
    result = autoloyal(tmp_path, *args)

    assert (result.returncode, result.stdout, result.stderr) == (2, "", f"autoloyal: {line}\n")


def test_help_is_help_and_exits_0_and_a_bare_group_shows_its_help(tmp_path: Path) -> None:
    helped = autoloyal(tmp_path, "bonus", "--help")
    bare = autoloyal(tmp_path, "bonus")

    assert (helped.returncode, helped.stderr) == (0, "")
    assert helped.stdout.startswith("Usage: autoloyal bonus [OPTIONS] COMMAND [ARGS]...\n")
    assert (bare.returncode, bare.stdout, bare.stderr) == (2, helped.stdout, "")


def commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every command and group under `command`, with the words that reach it."""
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from commands(sub, (*path, name))


BRACKETS = re.compile(r"\[+[\w.-]+\]+(?: \w+)?")  # "[sms] price_per_segment", "[[email.account]]"


def help_texts(command: Any) -> str:
    params = [getattr(param, "help", None) or "" for param in command.params]
    return " ".join([command.help or "", *params])


def test_every_help_shows_its_brackets_as_written(tmp_path: Path) -> None:
    written = {path: BRACKETS.findall(help_texts(cmd)) for path, cmd in commands(get_command(app))}
    bracketed = {path: found for path, found in written.items() if found}
    assert ("campaign", "create") in bracketed  # "[[email.account]]", "[email] default_account"

    for path, found in bracketed.items():
        shown = " ".join(autoloyal(tmp_path, *path, "--help").stdout.split())
        assert [text for text in found if text not in shown] == [], path


def test_run_on_a_busy_port_says_so_in_one_line_before_starting_anything(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = autoloyal(tmp_path, "run", config=f"[http]\nport = {port}\n")

    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        f"autoloyal: cannot listen on 127.0.0.1:{port}: address already in use "
        "([http] host and port)"
    )
    assert "Traceback" not in result.stderr
    assert "role dispatcher" not in result.stderr

"""Operator password hashes and the chatd-passwd helper."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from chatd import passwd


def test_hash_verifies_only_its_password() -> None:
    encoded = passwd.hash_password("correct horse", n=2**4)
    assert encoded.startswith("scrypt$16$8$1$")
    assert passwd.verify_password("correct horse", encoded)
    assert not passwd.verify_password("correct horsf", encoded)
    assert passwd.hash_password("correct horse", n=2**4) != encoded  # fresh salt


def test_default_cost_round_trip() -> None:
    encoded = passwd.hash_password("pw")
    assert passwd.check_hash(encoded)[0] == passwd.COST_N
    assert passwd.verify_password("pw", encoded)


@pytest.mark.parametrize(
    "encoded",
    ["", "plaintext", "bcrypt$1$2$3$4$5", "scrypt$15$8$1$AAAA$AAAA", "scrypt$16$8$1$!!$AAAA",
     "scrypt$1073741824$8$1$AAAA$AAAA", "scrypt$16$8$1$AAAA$"],
)
def test_malformed_hashes_are_refused_and_match_nothing(encoded: str) -> None:
    with pytest.raises(ValueError):
        passwd.check_hash(encoded)
    assert not passwd.verify_password("", encoded)


def prompts(monkeypatch: pytest.MonkeyPatch, *answers: str) -> list[str]:
    asked: list[str] = []
    replies = iter(answers)

    def fake_getpass(prompt: str = "") -> str:
        asked.append(prompt)
        return next(replies)

    monkeypatch.setattr(passwd.getpass, "getpass", fake_getpass)
    monkeypatch.setattr(passwd.sys, "stdin", Terminal())
    return asked


class Terminal(io.StringIO):
    """Standard input that is a terminal, for the prompting path."""

    def isatty(self) -> bool:
        return True


def test_main_prints_a_hash_of_the_password(monkeypatch: pytest.MonkeyPatch,
                                            capsys: Any) -> None:
    asked = prompts(monkeypatch, "s3cret", "s3cret")
    assert passwd.main([]) == 0
    printed = capsys.readouterr().out.strip()
    assert passwd.verify_password("s3cret", printed)
    assert len(asked) == 2 and "s3cret" not in printed


@pytest.mark.parametrize("answers", [("a", "b"), ("", "")])
def test_main_refuses_mismatch_and_empty(monkeypatch: pytest.MonkeyPatch, capsys: Any,
                                         answers: tuple[str, str]) -> None:
    prompts(monkeypatch, *answers)
    assert passwd.main([]) == 1
    assert capsys.readouterr().out == ""


def test_main_takes_no_password_argument(capsys: Any) -> None:
    with pytest.raises(SystemExit) as exited:
        passwd.main(["secret-on-the-command-line"])
    assert exited.value.code == 2
    assert "secret-on-the-command-line" in capsys.readouterr().err


CHATD_PASSWD = str(Path(sys.executable).parent / "chatd-passwd")


def run_passwd(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """The installed chatd-passwd, with no terminal: what a script sees."""
    return subprocess.run([CHATD_PASSWD, *args], input=stdin, capture_output=True, text=True,
                          timeout=30)


@pytest.mark.parametrize("ending", ["\n", "\r\n", ""])
def test_stdin_reads_one_line_and_prints_only_the_hash(ending: str) -> None:
    result = run_passwd("--stdin", stdin=f" pass word {ending}second line\n")
    assert result.returncode == 0
    assert result.stderr == ""  # no prompt, no GetPassWarning
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    expected = " pass word " if ending else " pass word second line"
    assert passwd.verify_password(expected, lines[0])


def test_stdin_refuses_an_empty_password() -> None:
    result = run_passwd("--stdin", stdin="\n")
    assert result.returncode == 1 and result.stdout == ""
    assert "empty password" in result.stderr


def test_without_a_terminal_it_points_at_stdin_instead_of_a_traceback() -> None:
    result = run_passwd(stdin="pw\n")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == ("chatd-passwd: standard input is not a terminal; use --stdin to "
                             "read the password from it\n")


def test_help_describes_the_tool_and_its_options() -> None:
    result = run_passwd("--help")
    assert result.returncode == 0
    assert result.stdout.startswith("usage: chatd-passwd [-h] [--stdin]")
    assert "[operators]" in result.stdout and "--stdin" in result.stdout

"""Operator password hashes and the chatd-passwd helper."""

from __future__ import annotations

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
    return asked


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


def test_main_takes_no_arguments(capsys: Any) -> None:
    assert passwd.main(["secret-on-the-command-line"]) == 2

"""chatd/former_nicks.py: who gave a nick up lately, for WINDOW seconds and no longer."""

from __future__ import annotations

from chatd.former_nicks import WINDOW, FormerNicks


def test_a_nick_given_up_is_found_for_the_window_then_forgotten() -> None:
    former: FormerNicks[str] = FormerNicks()
    former.gave_up("bob", "user 1", now=100.0)
    former.gave_up("bobby", "user 1", now=101.0)
    assert former.who("bob", now=100.0 + WINDOW - 0.1) == "user 1"
    assert former.who("bob", now=100.0 + WINDOW) is None
    assert former.who("bobby", now=100.0 + WINDOW) == "user 1"
    assert former.who("carol", now=101.0) is None


def test_renaming_all_day_keeps_one_windows_worth() -> None:
    former: FormerNicks[str] = FormerNicks()
    for n in range(10_000):  # ten renames a second, each to a new nick
        former.gave_up(f"nick{n}", "mallory", now=n / 10)
    assert len(former) <= WINDOW * 10 + 1
    # Given up again: the newer time counts.
    former.gave_up("nick0", "mallory", now=999.95)
    assert former.who("nick0", now=999.95 + WINDOW - 0.1) == "mallory"

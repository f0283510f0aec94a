"""Who held a nick moments ago: the local users who renamed themselves lately.

In a cluster (--redis) an operator of one process names a user of another by the nick the
operator's process knows. If the user renamed themselves meanwhile, the operator's kick,
ban by nick or mute is on its way under the nick they just gave up, and would miss them:
a user who renames often could slip through that window. So the user's own process keeps,
for ``WINDOW`` seconds after each rename, who gave up which nick, and finds the user by it
(``ChatService.holder``).

Bounded by time: an entry goes ``WINDOW`` seconds after the rename, so a user keeps at most
as many as they can rename in that time (the flood rate: 100 at 10 lines a second, with
the burst, 150), each a key and a reference.
"""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")

WINDOW = 10.0  # seconds: longer than an event takes from one process to another


class FormerNicks(Generic[T]):
    """nick_key given up -> (when, who), oldest first."""

    __slots__ = ("_given_up",)

    def __init__(self) -> None:
        self._given_up: dict[str, tuple[float, T]] = {}

    def __len__(self) -> int:
        return len(self._given_up)

    def gave_up(self, key: str, who: T, now: float) -> None:
        self._expire(now)
        self._given_up.pop(key, None)  # the newest last, so that the oldest go first
        self._given_up[key] = (now, who)

    def who(self, key: str, now: float) -> T | None:
        """Who gave up ``key`` in the last WINDOW seconds, if anyone."""
        self._expire(now)
        entry = self._given_up.get(key)
        return None if entry is None else entry[1]

    def _expire(self, now: float) -> None:
        while self._given_up:
            key, (when, _) = next(iter(self._given_up.items()))
            if now - when < WINDOW:
                return
            del self._given_up[key]

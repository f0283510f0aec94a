"""The nicks the client knows about: who we are and who else is around."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

from chatd.client.wire import Joined, Left, NickEvent, NickList, Renamed, YouAre


def fold(nick: str) -> str:
    """Nicks compare case-insensitively: NFKC, then casefold (as the server does)."""
    return unicodedata.normalize("NFKC", nick).casefold()


class NickBook:
    """Our own nick and the nicks seen in the room, for completion and highlighting."""

    def __init__(self, me: str | None = None) -> None:
        self.me: str | None = me
        self._nicks: dict[str, str] = {}

    def __contains__(self, nick: object) -> bool:
        return isinstance(nick, str) and fold(nick) in self._nicks

    def __len__(self) -> int:
        return len(self._nicks)

    def names(self) -> list[str]:
        """Known nicks (ours included), sorted case-insensitively."""
        names = dict(self._nicks)
        if self.me is not None:
            names.setdefault(fold(self.me), self.me)
        return sorted(names.values(), key=fold)

    def is_me(self, nick: str | None) -> bool:
        return nick is not None and self.me is not None and fold(nick) == fold(self.me)

    def saw(self, nick: str) -> None:
        """Someone spoke: remember them (keeping the spelling we saw last)."""
        self._nicks[fold(nick)] = nick

    def forget(self, nick: str) -> None:
        self._nicks.pop(fold(nick), None)

    def replace_all(self, nicks: Iterable[str]) -> None:
        self._nicks = {fold(n): n for n in nicks}

    def apply(self, event: NickEvent) -> None:
        """Update from what a server notice said."""
        if isinstance(event, YouAre):
            self.me = event.nick
            self.saw(event.nick)
        elif isinstance(event, Joined):
            self.saw(event.nick)
        elif isinstance(event, Left):
            self.forget(event.nick)
        elif isinstance(event, Renamed):
            if self.is_me(event.old):
                self.me = event.new
            self.forget(event.old)
            self.saw(event.new)
        elif isinstance(event, NickList):
            self.replace_all(event.nicks)

"""IRCv3 capability negotiation (``CAP LS 302`` / ``REQ`` / ``LIST`` / ``END``).

https://ircv3.net/specs/extensions/capability-negotiation. A client that starts with
``CAP LS`` or ``CAP REQ`` holds its registration back until ``CAP END``; a client that never
says CAP registers as soon as it has sent NICK and USER. Only what chatd implements is
advertised: ``server-time`` (a ``time`` tag on relayed messages and history).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from chatd.irc.message import Message
from chatd.irc.numerics import ERR_INVALIDCAPCMD, ERR_NEEDMOREPARAMS, reply

SERVER_TIME = "server-time"
# Name -> value shown to CAP LS 302 clients (None: no value).
AVAILABLE: Mapping[str, str | None] = {SERVER_TIME: None}


class CapNegotiation:
    """One connection's capabilities: what it asked for, and whether it is still asking."""

    __slots__ = ("available", "enabled", "negotiating", "version")

    def __init__(self, available: Mapping[str, str | None] = AVAILABLE) -> None:
        self.available = available
        self.enabled: set[str] = set()
        self.negotiating = False  # between CAP LS/REQ and CAP END, before registration
        self.version = 0

    def handle(self, params: Sequence[str], server: str, nick: str,
               registered: bool) -> list[Message]:
        """The replies to ``CAP params...`` from a client now called ``nick``."""
        if not params:
            return [reply(server, ERR_NEEDMOREPARAMS, nick, "CAP", "Not enough parameters")]
        sub = params[0].upper()
        if sub == "LS":
            if not registered:
                self.negotiating = True
            version = params[1] if len(params) > 1 else ""
            self.version = max(self.version, int(version) if version.isdigit() else 0)
            return [self._cap(server, nick, "LS", self._listing())]
        if sub == "LIST":
            return [self._cap(server, nick, "LIST", " ".join(sorted(self.enabled)))]
        if sub == "REQ":
            if not registered:
                self.negotiating = True
            requested = params[1] if len(params) > 1 else ""
            return [self._cap(server, nick, self._request(requested), requested)]
        if sub == "END":
            self.negotiating = False
            return []
        return [reply(server, ERR_INVALIDCAPCMD, nick, params[0][:20] or "*",
                      "Invalid CAP command")]

    def _listing(self) -> str:
        if self.version >= 302:
            return " ".join(name if value is None else f"{name}={value}"
                            for name, value in self.available.items())
        return " ".join(self.available)

    def _request(self, requested: str) -> str:
        """ACK or NAK: a request is granted whole or not at all."""
        changes = [(name.startswith("-"), name.removeprefix("-")) for name in requested.split()]
        if not changes or any(name not in self.available for _, name in changes):
            return "NAK"
        for removing, name in changes:
            if removing:
                self.enabled.discard(name)
            else:
                self.enabled.add(name)
        return "ACK"

    @staticmethod
    def _cap(server: str, nick: str, sub: str, text: str) -> Message:
        return Message("CAP", (nick, sub, text), server)

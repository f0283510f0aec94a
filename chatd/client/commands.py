"""What to do with a line the user typed: what to send, what to show, whether to quit."""

from __future__ import annotations

import re
from dataclasses import dataclass

from chatd.client.wire import Kind, Line

# The server's commands, for tab completion. A test compares them with the commands
# the server's /help lists, so that one side cannot add a command the other lacks.
SERVER_COMMANDS: tuple[str, ...] = (
    "/away",
    "/back",
    "/describe",
    "/help",
    "/history",
    "/ignore",
    "/join",
    "/me",
    "/msg",
    "/nick",
    "/oper",
    "/quit",
    "/reply",
    "/rooms",
    "/timestamps",
    "/topic",
    "/unignore",
    "/who",
    # Operators only (the server says so to anyone else).
    "/ban",
    "/bans",
    "/kick",
    "/mute",
    "/mutes",
    "/rename",
    "/stats",
    "/unban",
    "/unmute",
    "/wall",
)
# Handled by chatd-client itself, never sent.
RECONNECT = "/reconnect"
CLIENT_COMMANDS: tuple[str, ...] = (RECONNECT,)
COMMANDS: tuple[str, ...] = tuple(sorted(SERVER_COMMANDS + CLIENT_COMMANDS))

_NEWLINES = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class Outgoing:
    """The result of interpreting one input line.

    ``send`` is the line to send to the server (None: nothing); ``echo`` is what to
    show locally, since the server never sends our own lines back; ``quit`` says the
    user asked to leave; ``reconnect`` that they asked to connect again now.
    """

    send: str | None
    echo: Line | None = None
    quit: bool = False
    reconnect: bool = False


def split_lines(text: str) -> list[str]:
    """A paste can hold several lines: each is sent on its own."""
    return _NEWLINES.split(text)


def interpret(text: str, me: str | None) -> Outgoing:
    """Interpret one line of user input (without line ending)."""
    nick = me or "me"
    if not text.strip():
        return Outgoing(None)
    if text.startswith("//"):
        return Outgoing(text, Line(Kind.SELF, text[1:], nick))
    if not text.startswith("/"):
        return Outgoing(text, Line(Kind.SELF, text, nick))
    command, _, rest = text.partition(" ")
    command = command.lower()
    if command == "/me":
        return Outgoing(text, Line(Kind.SELF_ACTION, rest, nick))
    if command == "/quit":
        return Outgoing(text, None, quit=True)
    if command == RECONNECT:
        return Outgoing(None, reconnect=True)
    # Everything else is the server's business: it answers with notices.
    return Outgoing(text)

"""What to do with a line the user typed: what to send, what to show, whether to quit."""

from __future__ import annotations

import re
from dataclasses import dataclass

from chatd.client.wire import Kind, Line

# Commands the server knows (now or soon), for tab completion.
COMMANDS: tuple[str, ...] = (
    "/away",
    "/back",
    "/help",
    "/history",
    "/ignore",
    "/join",
    "/me",
    "/msg",
    "/nick",
    "/quit",
    "/reply",
    "/rooms",
    "/timestamps",
    "/topic",
    "/unignore",
    "/who",
)

_NEWLINES = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class Outgoing:
    """The result of interpreting one input line.

    ``send`` is the line to send to the server (None: nothing); ``echo`` is what to
    show locally, since the server never sends our own lines back; ``quit`` says the
    user asked to leave.
    """

    send: str | None
    echo: Line | None = None
    quit: bool = False


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
    # Everything else is the server's business: it answers with notices.
    return Outgoing(text)

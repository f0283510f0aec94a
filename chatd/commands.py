"""Slash commands of the line protocol: parsing, help text, and the calls into the service.

Each command is a function taking the session and the rest of the line. The logic lives in
the chat service; what is here only turns words into calls and results into reply lines.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from chatd.service import ChatError, User

if TYPE_CHECKING:
    from chatd.protocol import ChatProtocol

Handler = Callable[["ChatProtocol", User, str], None]


@dataclass(frozen=True)
class Command:
    name: str
    usage: str
    help: str
    handler: Handler


COMMANDS: dict[str, Command] = {}


def command(name: str, usage: str, help: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        COMMANDS[name] = Command(name, usage, help, handler)
        return handler

    return register


def dispatch(session: ChatProtocol, user: User, line: str) -> None:
    """Runs the command in ``line`` (which starts with '/'); errors go to the sender only."""
    name, _, args = line[1:].partition(" ")
    cmd = COMMANDS.get(name.lower())
    if cmd is None:
        session.error(f"unknown command /{name}; type /help for a list of commands")
        return
    try:
        cmd.handler(session, user, args.strip())
    except ChatError as e:
        session.error(str(e))


def _require(args: str, usage: str) -> str:
    if not args:
        raise ChatError(f"usage: {usage}")
    return args


@command("nick", "/nick NAME", "change your nickname")
def _nick(session: ChatProtocol, user: User, args: str) -> None:
    session.service.rename(user, _require(args, "/nick NAME"))


@command("me", "/me ACTION", "describe what you are doing: * you ACTION")
def _me(session: ChatProtocol, user: User, args: str) -> None:
    session.service.act(user, _require(args, "/me ACTION"))


@command("who", "/who", "list everyone connected")
def _who(session: ChatProtocol, user: User, args: str) -> None:
    users = session.service.who()
    session.notice(f"Users online ({len(users)}): " + ", ".join(u.nick for u in users))


@command("help", "/help", "show this list")
def _help(session: ChatProtocol, user: User, args: str) -> None:
    session.notice("Commands (type //text to send a line starting with /):")
    width = max(len(c.usage) for c in COMMANDS.values())
    for cmd in COMMANDS.values():
        session.notice(f"{cmd.usage.ljust(width)}  {cmd.help}")


@command("quit", "/quit [REASON]", "leave the chat; others see REASON")
def _quit(session: ChatProtocol, user: User, args: str) -> None:
    session.quit(args or "quit")


# The operator commands live in their own module; importing it registers them after these.
from chatd import operator_commands  # noqa: E402, F401

"""Slash commands: one table, built in ``makeService`` and handed to every front-end.

A command is a name, a usage line, a help line and a handler. Handlers take the table (for
the chat service and the moderator), a ``Session`` and the rest of the line; they turn
words into calls on the service and results into replies. A ``Session`` is the small face
a front-end shows them: the user, the room a one-room front-end talks in, and a few ways to
answer. Any front-end that can provide it (line, IRC, web) runs the same commands.

A handler may return a Deferred (``/oper`` checks a password in a thread): the front-end
holds the connection's later lines until it fires, so replies stay in order.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from twisted.internet import defer

from chatd.errors import ChatError, Refused
from chatd.history import HistoryEntry
from chatd.rooms import ROOM_NAME_MAX, Room, room_key
from chatd.text import parse_whole_number
from chatd.version import VERSION

if TYPE_CHECKING:
    from chatd.moderation.moderator import Moderator
    from chatd.remote import RemoteUser
    from chatd.service import ChatService, User
    from chatd.stats import ServerStats

HELP_WIDTH = 79  # an 80-column terminal wraps at the 80th column
_PREFIX = len("*** ")


class Session(Protocol):
    """One connection, as a command handler sees it."""

    @property
    def user(self) -> User | None: ...

    @property
    def room(self) -> Room:
        """The room the user talks in (a one-room front-end's current room)."""

    def notice(self, text: str) -> None: ...

    def error(self, text: str) -> None: ...

    def quit(self, reason: str) -> None:
        """Says goodbye and closes; others see ``reason``."""

    def history_line(self, entry: HistoryEntry) -> None:
        """Shows one line of room history."""

    def private_sent(self, nick: str, text: str) -> None:
        """Confirms a private message the user sent."""


Result = "defer.Deferred[Any] | None"
Handler = Callable[["CommandTable", Session, "User", str], "defer.Deferred[Any] | None"]


@dataclass(frozen=True)
class Command:
    name: str
    usage: str
    help: str
    handler: Handler


class CommandList:
    """An ordered list of commands, declared with the ``command`` decorator."""

    def __init__(self) -> None:
        self.commands: list[Command] = []

    def command(self, name: str, usage: str, help: str) -> Callable[[Handler], Handler]:
        def add(handler: Handler) -> Handler:
            self.commands.append(Command(name, usage, help, handler))
            return handler

        return add

    def __iter__(self) -> Iterator[Command]:
        return iter(self.commands)


class CommandTable:
    """The commands one daemon runs, bound to its chat service (and moderator)."""

    def __init__(
        self,
        service: ChatService,
        commands: Iterable[Command],
        moderator: Moderator | None = None,
    ) -> None:
        self.service = service
        self.moderator = moderator
        self.commands: dict[str, Command] = {c.name: c for c in commands}
        self.stats: ServerStats | None = None  # for /stats; makeService sets it

    def names(self) -> list[str]:
        """Every command name, in help order: what a client completes."""
        return list(self.commands)

    def help_lines(self) -> list[str]:
        """``/help``: one entry per command, no line wider than HELP_WIDTH with "*** "."""
        width = min(max(len(c.usage) for c in self.commands.values()), 20)
        room = HELP_WIDTH - _PREFIX
        lines = ["Commands (type //text to send a line starting with /):"]
        for cmd in self.commands.values():
            if len(cmd.usage) <= width:
                first = cmd.usage.ljust(width) + "  "
            else:
                lines.append(cmd.usage)
                first = " " * (width + 2)
            lines += textwrap.wrap(
                cmd.help, room, initial_indent=first, subsequent_indent=" " * (width + 2)
            )
        return lines

    def dispatch(self, session: Session, user: User, line: str) -> defer.Deferred[Any] | None:
        """Runs the command in ``line`` (which starts with '/'); errors go to the sender only."""
        self.service.deliver_held()  # what was said before the command is seen before it
        name, _, args = line[1:].partition(" ")
        cmd = self.commands.get(name.lower())
        if cmd is None:
            session.error(f"unknown command /{name}; type /help for a list of commands")
            return None
        try:
            return cmd.handler(self, session, user, args.strip())
        except ChatError as e:
            session.error(str(e))
            if isinstance(e, Refused):
                session.quit(e.reason)
            return None


def require(args: str, usage: str) -> str:
    if not args:
        raise ChatError(f"usage: {usage}")
    return args


def plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def run_line(
    table: CommandTable, session: Session, user: User, text: str
) -> defer.Deferred[Any] | None:
    """A line a one-room front-end's user typed: a command from the table, or chat for their
    room (``//text`` says a line that starts with '/')."""
    if text.startswith("/") and not text.startswith("//"):
        return table.dispatch(session, user, text)
    try:
        table.service.say(user, text[1:] if text.startswith("//") else text)
    except ChatError as e:
        session.error(str(e))
    return None


# --- Shown without being asked ---------------------------------------------------------------


def greet(table: CommandTable, session: Session, user: User) -> None:
    """The greeting, then ``welcome``: what a one-room front-end's newcomer sees first."""
    session.notice(f"Welcome to {table.service.server_name}! You are {user.nick}. "
                   f"Type /help for a list of commands. (chatd {VERSION})")
    welcome(table, session)


def welcome(table: CommandTable, session: Session) -> None:
    """What a new connection sees after the greeting: the MOTD, then its room."""
    for line in table.service.motd:
        session.notice(f"| {line}")
    show_room(table, session, session.room)


def show_room(table: CommandTable, session: Session, room: Room) -> None:
    """The topic of ``room`` and its recent lines, as shown on arriving there."""
    if room.topic:
        _show_topic(session, room)
    replay = table.service.replay(room)
    if replay:
        _show_history(session, room, replay)


def _show_topic(session: Session, room: Room) -> None:
    if room.topic:
        session.notice(f"Topic of {room.name}: {room.topic} (set by {room.topic_by})")
    else:
        session.notice(f"{room.name} has no topic")


def _show_history(session: Session, room: Room, entries: list[HistoryEntry]) -> None:
    session.notice(f"History of {room.name} (last {plural(len(entries), 'line')}):")
    for entry in entries:
        session.history_line(entry)
    session.notice("End of history.")


CHAT_COMMANDS = CommandList()
command = CHAT_COMMANDS.command

# --- You ---------------------------------------------------------------------------------------


@command("nick", "/nick NAME", "change your nickname")
def _nick(table: CommandTable, session: Session, user: User, args: str) -> None:
    table.service.rename(user, require(args, "/nick NAME"))


@command("me", "/me ACTION", "describe what you are doing: * you ACTION")
def _me(table: CommandTable, session: Session, user: User, args: str) -> None:
    table.service.act(user, require(args, "/me ACTION"), session.room)


@command("away", "/away [REASON]", "mark yourself away; private messages get REASON back")
def _away(table: CommandTable, session: Session, user: User, args: str) -> None:
    table.service.set_away(user, args)
    session.notice(f"You are marked as away: {user.away}")


@command("back", "/back", "you are no longer away")
def _back(table: CommandTable, session: Session, user: User, args: str) -> None:
    table.service.set_back(user)
    session.notice("You are no longer marked as away")


@command("timestamps", "/timestamps on|off", "prefix every line you receive with the time")
def _timestamps(table: CommandTable, session: Session, user: User, args: str) -> None:
    choice = args.lower()
    if choice not in ("on", "off", ""):
        raise ChatError("usage: /timestamps on|off")
    if choice:
        user.timestamps = choice == "on"
    session.notice(f"Timestamps are {'on' if user.timestamps else 'off'}")


# --- Rooms -------------------------------------------------------------------------------------


@command("join", "/join #ROOM", "move to another room (created on first join)")
def _join(table: CommandTable, session: Session, user: User, args: str) -> None:
    room = table.service.move(user, require(args, "/join #ROOM"))
    session.notice(f"You are now in {room.name} ({plural(room.size, 'user')})")
    show_room(table, session, room)


@command("rooms", "/rooms", "list the rooms, with how many are in each and the topic")
def _rooms(table: CommandTable, session: Session, user: User, args: str) -> None:
    rooms = table.service.rooms_by_name()
    session.notice(f"Rooms ({len(rooms)}):")
    for room in rooms:
        topic = f": {room.topic}" if room.topic else ""
        session.notice(f"  {room.name} ({plural(room.size, 'user')}){topic}")


@command("topic", "/topic [TEXT]", "show the topic of your room, or set it to TEXT")
def _topic(table: CommandTable, session: Session, user: User, args: str) -> None:
    if args:
        table.service.set_topic(user, args, session.room)
    else:
        _show_topic(session, session.room)


@command("who", "/who [#ROOM]", "list who is in your room, or in #ROOM")
def _who(table: CommandTable, session: Session, user: User, args: str) -> None:
    room = table.service.find_room(args) if args else session.room
    names = table.service.who_names(room)
    if not names:
        session.notice(f"No one is in {room.name}")
        return
    session.notice(f"Users in {room.name} ({len(names)}): {', '.join(names)}")


@command("history", "/history [#ROOM] [N]",
         "show the last N lines of your room, or of #ROOM, one of yours (default: all kept)")
def _history(table: CommandTable, session: Session, user: User, args: str) -> None:
    kept = table.service.history_size
    if not kept:
        raise ChatError("this server keeps no history")
    named, _, rest = args.partition(" ") if args.startswith("#") else ("", "", args)
    rest = rest.strip()
    count = parse_whole_number(rest) if rest else kept
    if count is None or not 1 <= count <= kept:
        raise ChatError(f"usage: /history [#ROOM] [N], N a whole number from 1 to {kept}")
    room = _own_room(user, named) if named else session.room
    entries = table.service.history(room, count)
    if entries:
        _show_history(session, room, entries)
    else:
        session.notice(f"No history in {room.name} yet")


def _own_room(user: User, name: str) -> Room:
    """One of the user's rooms, named: an IRC user in several says which one it means."""
    room = user.rooms.get(room_key(name))
    if room is None:
        raise ChatError(f"you are not in {name[:ROOM_NAME_MAX + 1]}")
    return room


# --- Other people ------------------------------------------------------------------------------


def _nick_and_text(args: str, usage: str) -> tuple[str, str]:
    nick, _, text = args.partition(" ")
    text = text.strip()
    if not nick or not text:
        raise ChatError(f"usage: {usage}")
    return nick, text


@command("msg", "/msg NICK TEXT", "send TEXT to NICK only")
def _msg(table: CommandTable, session: Session, user: User, args: str) -> None:
    nick, text = _nick_and_text(args, "/msg NICK TEXT")
    _sent(session, table.service.private_message(user, nick, text), text)


@command("describe", "/describe NICK ACTION", "a private /me: NICK alone sees * you ACTION")
def _describe(table: CommandTable, session: Session, user: User, args: str) -> None:
    nick, action = _nick_and_text(args, "/describe NICK ACTION")
    target = table.service.private_message(user, nick, action, action=True)
    _sent(session, target, f"* {user.nick} {action}")


@command("reply", "/reply TEXT", "send TEXT to the last person who sent you a private message")
def _reply(table: CommandTable, session: Session, user: User, args: str) -> None:
    text = require(args, "/reply TEXT")
    _sent(session, table.service.reply(user, text), text)


def _sent(session: Session, target: User | RemoteUser, text: str) -> None:
    session.private_sent(target.nick, text)
    if target.away is not None:
        session.notice(f"{target.nick} is away: {target.away}")


@command("ignore", "/ignore [NICK]", "stop receiving NICK's lines and private messages; "
         "alone, list who you ignore")
def _ignore(table: CommandTable, session: Session, user: User, args: str) -> None:
    if args:
        target = table.service.ignore(user, args)
        session.notice(f"You are now ignoring {target.nick}")
        return
    ignored = table.service.ignored(user)
    if ignored:
        session.notice(f"Ignoring ({len(ignored)}): " + ", ".join(u.nick for u in ignored))
    else:
        session.notice("You are not ignoring anyone")


@command("unignore", "/unignore NICK", "receive NICK's lines again")
def _unignore(table: CommandTable, session: Session, user: User, args: str) -> None:
    target = table.service.unignore(user, require(args, "/unignore NICK"))
    session.notice(f"You are no longer ignoring {target.nick}")


# --- This connection ---------------------------------------------------------------------------


@command("help", "/help", "show this list")
def _help(table: CommandTable, session: Session, user: User, args: str) -> None:
    for line in table.help_lines():
        session.notice(line)


@command("quit", "/quit [REASON]", "leave the chat; others see REASON")
def _quit(table: CommandTable, session: Session, user: User, args: str) -> None:
    session.quit(table.service.shown_reason(user, args or "quit"))


def build_command_table(
    service: ChatService, moderator: Moderator | None = None
) -> CommandTable:
    """The chat commands, then the operator commands."""
    from chatd.moderation.commands import OPERATOR_COMMANDS

    return CommandTable(service, [*CHAT_COMMANDS, *OPERATOR_COMMANDS], moderator)


def command_names() -> list[str]:
    """Every command name a chatd server runs (for a client's completion list)."""
    from chatd.moderation.commands import OPERATOR_COMMANDS

    return [c.name for c in (*CHAT_COMMANDS, *OPERATOR_COMMANDS)]

"""Slash commands of the line protocol: parsing, help text, and the calls into the service.

Each command is a function taking the session and the rest of the line. The logic lives in
the chat service; what is here only turns words into calls and results into reply lines.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from chatd import wire
from chatd.history import HistoryEntry
from chatd.rooms import Room
from chatd.service import ChatError, User
from chatd.text import parse_whole_number

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


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


# --- Shown without being asked ---------------------------------------------------------------


def welcome(session: ChatProtocol, user: User) -> None:
    """What a new connection sees after the greeting: the MOTD, then its room."""
    for line in session.service.motd:
        session.notice(f"| {line}")
    _show_room(session, user.room)


def _show_room(session: ChatProtocol, room: Room) -> None:
    """The topic of ``room`` and its recent lines, as shown on arriving there."""
    if room.topic:
        _show_topic(session, room)
    replay = session.service.replay(room)
    if replay:
        _show_history(session, room, replay)


def _show_topic(session: ChatProtocol, room: Room) -> None:
    if room.topic:
        session.notice(f"Topic of {room.name}: {room.topic} (set by {room.topic_by})")
    else:
        session.notice(f"{room.name} has no topic")


def _show_history(session: ChatProtocol, room: Room, entries: list[HistoryEntry]) -> None:
    session.notice(f"History of {room.name} (last {_plural(len(entries), 'line')}):")
    for entry in entries:
        session.send(wire.history_line(entry))
    session.notice("End of history.")


# --- You ---------------------------------------------------------------------------------------


@command("nick", "/nick NAME", "change your nickname")
def _nick(session: ChatProtocol, user: User, args: str) -> None:
    session.service.rename(user, _require(args, "/nick NAME"))


@command("me", "/me ACTION", "describe what you are doing: * you ACTION")
def _me(session: ChatProtocol, user: User, args: str) -> None:
    session.service.act(user, _require(args, "/me ACTION"))


@command("away", "/away [REASON]", "mark yourself away; private messages get REASON back")
def _away(session: ChatProtocol, user: User, args: str) -> None:
    session.service.set_away(user, args or "away")
    session.notice(f"You are marked as away: {user.away}")


@command("back", "/back", "you are no longer away")
def _back(session: ChatProtocol, user: User, args: str) -> None:
    session.service.set_back(user)
    session.notice("You are no longer marked as away")


@command("timestamps", "/timestamps on|off", "prefix every line you receive with the time")
def _timestamps(session: ChatProtocol, user: User, args: str) -> None:
    choice = args.lower()
    if choice not in ("on", "off", ""):
        raise ChatError("usage: /timestamps on|off")
    if choice:
        user.timestamps = choice == "on"
    session.notice(f"Timestamps are {'on' if user.timestamps else 'off'}")


# --- Rooms -------------------------------------------------------------------------------------


@command("join", "/join #ROOM", "move to another room (created on first join)")
def _join(session: ChatProtocol, user: User, args: str) -> None:
    room = session.service.join(user, _require(args, "/join #ROOM"))
    session.notice(f"You are now in {room.name} ({_plural(len(room.members), 'user')})")
    _show_room(session, room)


@command("rooms", "/rooms", "list the rooms, with how many are in each and the topic")
def _rooms(session: ChatProtocol, user: User, args: str) -> None:
    rooms = session.service.rooms_by_name()
    session.notice(f"Rooms ({len(rooms)}):")
    for room in rooms:
        topic = f": {room.topic}" if room.topic else ""
        session.notice(f"  {room.name} ({_plural(len(room.members), 'user')}){topic}")


@command("topic", "/topic [TEXT]", "show the topic of your room, or set it to TEXT")
def _topic(session: ChatProtocol, user: User, args: str) -> None:
    if args:
        session.service.set_topic(user, args)
    else:
        _show_topic(session, user.room)


@command("who", "/who [#ROOM]", "list who is in your room, or in #ROOM")
def _who(session: ChatProtocol, user: User, args: str) -> None:
    room = session.service.find_room(args) if args else user.room
    users = session.service.who(room)
    names = ", ".join(f"{u.nick} (away)" if u.away is not None else u.nick for u in users)
    session.notice(f"Users in {room.name} ({len(users)}): {names}".rstrip())


@command("history", "/history [N]", "show the last N lines of your room (default: all kept)")
def _history(session: ChatProtocol, user: User, args: str) -> None:
    kept = session.service.history_size
    if not kept:
        raise ChatError("this server keeps no history")
    count = parse_whole_number(args) if args else kept
    if count is None or not 1 <= count <= kept:
        raise ChatError(f"usage: /history [N], N a whole number from 1 to {kept}")
    entries = session.service.history(user.room, count)
    if entries:
        _show_history(session, user.room, entries)
    else:
        session.notice(f"No history in {user.room.name} yet")


# --- Other people ------------------------------------------------------------------------------


@command("msg", "/msg NICK TEXT", "send TEXT to NICK only")
def _msg(session: ChatProtocol, user: User, args: str) -> None:
    nick, _, text = args.partition(" ")
    text = text.strip()
    if not nick or not text:
        raise ChatError("usage: /msg NICK TEXT")
    _sent(session, user, session.service.private_message(user, nick, text), text)


@command("reply", "/reply TEXT", "send TEXT to the last person who sent you a private message")
def _reply(session: ChatProtocol, user: User, args: str) -> None:
    text = _require(args, "/reply TEXT")
    _sent(session, user, session.service.reply(user, text), text)


def _sent(session: ChatProtocol, user: User, target: User, text: str) -> None:
    session.send(wire.private_sent(target.nick, text, session.service.stamp_for(user)))
    if target.away is not None:
        session.notice(f"{target.nick} is away: {target.away}")


@command("ignore", "/ignore [NICK]", "stop receiving NICK's lines and private messages; "
         "alone, list who you ignore")
def _ignore(session: ChatProtocol, user: User, args: str) -> None:
    if args:
        target = session.service.ignore(user, args)
        session.notice(f"You are now ignoring {target.nick}")
        return
    ignored = session.service.ignored(user)
    if ignored:
        session.notice(f"Ignoring ({len(ignored)}): " + ", ".join(u.nick for u in ignored))
    else:
        session.notice("You are not ignoring anyone")


@command("unignore", "/unignore NICK", "receive NICK's lines again")
def _unignore(session: ChatProtocol, user: User, args: str) -> None:
    target = session.service.unignore(user, _require(args, "/unignore NICK"))
    session.notice(f"You are no longer ignoring {target.nick}")


# --- This connection ---------------------------------------------------------------------------


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

"""Chat events as IRC lines: the IRC front-end's ``EventFormatter``.

A line user's ``hello`` in #lobby reaches IRC clients as
``:bob!bob@chatd PRIVMSG #lobby :hello``. Every user appears as ``nick!nick@HOST`` with one
host for everyone (the server's name): chatd never shows anyone's address to others.
Text longer than an IRC line (line users may send up to --max-line bytes) is spread over as
many messages as it needs, never cut. ``at`` becomes an IRCv3 ``time`` tag, for clients
that negotiated ``server-time``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from importlib import metadata

from chatd import wire
from chatd.events import (
    Acted,
    Announcement,
    Event,
    Joined,
    Kicked,
    Left,
    PrivateMessage,
    Renamed,
    RoomNotice,
    Said,
    TopicChanged,
)
from chatd.history import HistoryEntry
from chatd.irc.formatting import CTCP_DELIMITER
from chatd.irc.message import EOL, MAX_LINE, Message, serialize, split_to_fit, tag_section

try:
    VERSION = metadata.version("chatd")
except metadata.PackageNotFoundError:  # run from a source tree that was never installed
    VERSION = "unknown"

_NOT_IN_HOSTNAME = re.compile(r"[^A-Za-z0-9.-]+")
ACTION_START = f"{CTCP_DELIMITER}ACTION "


def irc_server_name(name: str) -> str:
    """``--server-name`` as a word IRC can carry in a prefix (it may contain spaces)."""
    return _NOT_IN_HOSTNAME.sub("-", name).strip("-.") or "chatd"


def server_time(at: float) -> str:
    """The ``time`` tag's value: ISO 8601 UTC with milliseconds."""
    millis = int(at * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{millis:03d}Z"


class IRCFormatter:
    """Renders events for IRC clients; one instance is shared by every IRC connection.

    ``server_name`` is --server-name, or a function returning it as it is now (it changes
    on SIGHUP)."""

    __slots__ = ("_name", "_said_head", "_said_key", "_server", "_source", "_stamp",
                 "_stamp_at")

    def __init__(self, server_name: str | Callable[[], str]) -> None:
        self._source = server_name if callable(server_name) else (lambda: server_name)
        self._name = ""
        self._server = ""
        # The fast path's templates (format): the start of the last speaker's PRIVMSG to the
        # last room (for the server's name then), and the last time tag.
        self._said_key: tuple[str, str, str] | None = None
        self._said_head = b""
        self._stamp_at: float | None = None
        self._stamp = b""

    @property
    def server(self) -> str:
        """The server's name as one word, for prefixes."""
        name = self._source()
        if name != self._name:
            self._name, self._server = name, irc_server_name(name)
        return self._server

    def mask(self, nick: str) -> str:
        """How ``nick`` appears as the source of a message."""
        return f"{nick}!{nick}@{self.server}"

    def format(self, event: Event, at: float | None = None) -> bytes:
        """``event`` as IRC lines, with a ``time`` tag if ``at`` is given.

        A chat line in a room that fits one IRC line, nearly every one, takes a fast path:
        ``:nick!nick@server PRIVMSG #room :`` is made once for a speaker's run of lines
        (one fan-out block) and each text appended to it; tests prove it renders every
        event exactly as the general path, ``render``, does."""
        if type(event) is Said:
            line = self._said_line(event)
            if line is not None:
                return line if at is None else self._time_tag(at) + line
        return self.render(event, at)

    def _said_line(self, event: Said) -> bytes | None:
        """``event`` as one PRIVMSG line, or None where ``render`` must decide: text with
        characters that it drops (line breaks; they are not printable), or too long for one
        line (it splits the text, or refuses a prefix that leaves too little room)."""
        text = event.text
        if not text.isprintable():
            return None
        key = (event.nick, event.room, self.server)
        if key != self._said_key:
            # serialize's own checks of the prefix and the room, once per run.
            start = serialize(Message("PRIVMSG", (event.room, ""), self.mask(event.nick)))
            self._said_head, self._said_key = start.removesuffix(EOL), key
        head = self._said_head
        encoded = text.encode("utf-8")
        room = MAX_LINE - len(EOL) - len(head)  # split_to_fit's room for text
        if room < 4 or len(encoded) > room:
            return None
        return head + encoded + EOL

    def _time_tag(self, at: float) -> bytes:
        """The tag section of ``at``'s ``time`` tag; the same for every line of a block."""
        if at != self._stamp_at:
            self._stamp, self._stamp_at = tag_section({"time": server_time(at)}), at
        return self._stamp

    def render(self, event: Event, at: float | None = None) -> bytes:
        """The general path of ``format``: any event, as ``messages`` says, serialised."""
        messages = self.messages(event)
        if at is not None:
            tags = {"time": server_time(at)}
            messages = [Message(m.command, m.params, m.prefix, tags) for m in messages]
        return b"".join(serialize(m) for m in messages)

    def messages(self, event: Event) -> list[Message]:
        match event:
            case Said(room=room, nick=nick, text=text):
                return split_to_fit(Message("PRIVMSG", (room, text), self.mask(nick)))
            case Acted(room=room, nick=nick, text=text):
                return self.action(nick, room, text)
            case PrivateMessage(sender=sender, recipient=recipient, text=text, action=True):
                return self.action(sender, recipient, text)
            case PrivateMessage(sender=sender, recipient=recipient, text=text):
                return split_to_fit(Message("PRIVMSG", (recipient, text), self.mask(sender)))
            case Joined(room=room, nick=nick):
                return [Message("JOIN", (room,), self.mask(nick))]
            case Left(nick=nick, reason=reason, quit=True):
                # One per room shared with them; a client shows the first, and drops the nick.
                return [Message("QUIT", (reason,), self.mask(nick))]
            case Left(room=room, nick=nick, reason=reason):
                return [Message("PART", (room, reason), self.mask(nick))]
            case Kicked(room="", nick=nick, by=by, reason=reason, rooms=rooms):
                # To the one kicked: out of each room, then why, before the connection closes.
                return [*(Message("KICK", (room, nick, reason), self.mask(by))
                          for room in rooms.split()),
                        *self.notice("*", f"You have been kicked by {by}: {reason}")]
            case Kicked(room=room, nick=nick, by=by, reason=reason):
                return [Message("KICK", (room, nick, reason), self.mask(by))]
            case Renamed(old=old, new=new):
                return [Message("NICK", (new,), self.mask(old))]
            case TopicChanged(room=room, nick=nick, topic=topic):
                return [Message("TOPIC", (room, topic), self.mask(nick))]
            case Announcement(text=text):
                return self.notice("*", text)
            case RoomNotice(room=room, text=text):
                return self.notice(room, text)
        raise TypeError(f"no IRC format for {event!r}")

    def action(self, nick: str, target: str, text: str) -> list[Message]:
        """A /me as a CTCP ACTION, split like any text."""
        return split_to_fit(Message("PRIVMSG", (target, text), self.mask(nick)),
                            ACTION_START, CTCP_DELIMITER)

    def notice(self, target: str, text: str, source: str | None = None) -> list[Message]:
        """A notice to ``target`` (a nick, a room, or ``*`` for everyone) from the server,
        or from the nick ``source``."""
        prefix = self.server if source is None else self.mask(source)
        return split_to_fit(Message("NOTICE", (target, text), prefix))

    def history(self, room: str, entries: Sequence[HistoryEntry],
                tagged: bool) -> list[Message]:
        """What a client joining ``room`` is shown of its past: the lines as they were sent,
        each with its ``time`` tag when ``tagged`` (server-time); otherwise a block of
        notices with the date in the text, so old lines do not look new."""
        if not entries:
            return []
        if tagged:
            return [
                Message(m.command, m.params, m.prefix, {"time": server_time(entry.at)})
                for entry in entries for m in self.messages(entry.line)
            ]
        lines = [f"History of {room} (last {len(entries)} "
                 f"{'line' if len(entries) == 1 else 'lines'}):"]
        lines += [wire.date_and_clock(entry.at) + wire.render(entry.line) for entry in entries]
        lines.append("End of history.")
        return [m for line in lines for m in self.notice(room, line)]

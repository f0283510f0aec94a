"""The IRC front-end's connection: one IRC client in the same rooms as line users.

``IRCProtocol`` builds on ``twisted.words.protocols.irc.IRC`` for what it does well, the
dispatch of each command to an ``irc_COMMAND`` method (a handler's exception is logged,
not fatal to the connection). Its ``dataReceived`` is replaced: it decodes text before
framing, and closes the connection on a long line, while chatd frames bytes (decoding once,
in chatd.irc.message) and answers an over-long line with 417. Every guard (flood gate,
send buffer, idle timeout, connection counts, close and abort) is the connection's
``Edge``; commands without an IRC verb (``/history``, the operator commands) come from the
daemon's one ``CommandTable``, through ``/quote`` or by messaging the ``chatd`` service nick.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from twisted.internet import protocol
from twisted.python.failure import Failure
from twisted.words.protocols import irc

from chatd import wire
from chatd.addresses import peer_host
from chatd.edge import TOO_LONG, Edge
from chatd.errors import ChatError, Refused
from chatd.history import HistoryEntry
from chatd.irc import numerics as n
from chatd.irc.caps import SERVER_TIME, CapNegotiation
from chatd.irc.formatting import clean_irc_text, ctcp, parse_ctcp
from chatd.irc.message import (
    CHAT_COMMANDS,
    MAX_LINE,
    MAX_TAGS,
    Message,
    body_length,
    parse_command,
    serialize,
)
from chatd.irc.render import VERSION
from chatd.remote import RemoteUser
from chatd.rooms import ROOM_NAME_MAX, InvalidRoomName, Room, normalize_room, room_key
from chatd.service import ChatService, User
from chatd.text import NICK_MAX_LENGTH, InvalidNickname, nick_key, normalize_nick

if TYPE_CHECKING:
    from chatd.irc.factory import IRCFactory

# Messages to this nick are chatd commands: "/msg chatd help", "/msg chatd ban 1.2.3.4".
SERVICE_NICK = "chatd"
# A client quiet this long is sent a PING; if it then stays quiet this long, it is dropped.
PING_INTERVAL = 120.0
PING_TIMEOUT = 60.0
# A connection that has not registered (NICK and USER, then CAP END) by then is dropped.
REGISTRATION_TIMEOUT = 60.0
TOPICLEN = 300
AWAYLEN = 200
KICKLEN = 200
MAX_TARGETS = 4  # PRIVMSG/NOTICE a,b,c,d
MAX_JOINS = 10  # JOIN #a,#b,... and PART
# The longest line framed at all: the tag section plus an IRC line. Past it, input up to
# the next newline is dropped (and counts as garbage at the edge).
MAX_FRAME = MAX_TAGS + MAX_LINE
# chatd commands IRC has its own verb for: through /quote or the service nick they would
# let the client and the server disagree about which rooms it is in, or what it is called.
IRC_NATIVE = frozenset({"join", "part", "nick", "me", "msg", "topic", "who", "away", "back",
                        "quit", "timestamps", "oper", "kick"})
# Commands an unregistered client may send.
_BEFORE_REGISTRATION = frozenset({"CAP", "NICK", "USER", "PASS", "PING", "PONG", "QUIT"})


def isupport_tokens(network: str) -> dict[str, str | None]:
    """RPL_ISUPPORT. CASEMAPPING: chatd folds nicknames with NFKC and Unicode case folding
    (chatd.text.nick_key), which is what rfc7613 (PRECIS) names; room names are ASCII."""
    return {
        "AWAYLEN": str(AWAYLEN),
        "CASEMAPPING": "rfc7613",
        "CHANLIMIT": f"#:{MAX_JOINS * 10}",
        "CHANMODES": f",,,{n.CHANNEL_MODES.lstrip('+')}",
        "CHANNELLEN": str(ROOM_NAME_MAX + 1),
        "CHANTYPES": "#",
        "KICKLEN": str(KICKLEN),
        "MAXTARGETS": str(MAX_TARGETS),
        "NETWORK": network,
        "NICKLEN": str(NICK_MAX_LENGTH),
        "PREFIX": "(o)@",
        "TARGMAX": f"PRIVMSG:{MAX_TARGETS},NOTICE:{MAX_TARGETS},JOIN:{MAX_JOINS},"
                   f"PART:{MAX_JOINS},NAMES:1,WHOIS:1,LIST:",
        "TOPICLEN": str(TOPICLEN),
    }


class CommandSession:
    """The ``Session`` chatd commands see when an IRC user runs one: replies come back as
    notices from the service nick."""

    def __init__(self, connection: IRCProtocol) -> None:
        self.connection = connection

    @property
    def user(self) -> User | None:
        return self.connection.user

    @property
    def room(self) -> Room:
        """The user's one room. An IRC client shows no "current" room, so a user in several
        names the room as the command's first word (``HISTORY #dev 20``), else is told to."""
        user = self.connection.user
        if user is None:
            raise ChatError("you are not registered")
        if len(user.rooms) > 1:
            names = [room.name for room in user.rooms_by_name()]
            raise ChatError(f"you are in {len(names)} rooms ({', '.join(names)}): name the "
                            f"room first, e.g. {names[0]}")
        return user.room

    def notice(self, text: str) -> None:
        self.connection.service_notice(text)

    def error(self, text: str) -> None:
        self.connection.service_notice(f"Error: {text}")

    def quit(self, reason: str) -> None:
        self.connection.quit(reason)

    def history_line(self, entry: HistoryEntry) -> None:
        self.connection.service_notice(wire.date_and_clock(entry.at) + wire.render(entry.line))

    def private_sent(self, nick: str, text: str) -> None:
        """IRC clients show what their user sends themselves."""


class IRCProtocol(irc.IRC):
    """One IRC connection: a ``ChatClient`` for the service, the owner of its edge."""

    factory: IRCFactory
    frontend: IRCFactory  # for the service: who broadcasts to this client
    transport: Any  # TCP or TLS: ITCPTransport plus IConsumer, which no interface names
    edge: Edge
    counted_key: str | None = None  # the key the factory's limits counted it under
    # irc.IRC.connectionMade would look this up with socket.getfqdn(): a blocking DNS query.
    hostname = "chatd"

    def __init__(self) -> None:
        self._buffer = b""
        self._discarding = False  # dropping the rest of an over-long line
        self.user: User | None = None
        self.nick: str | None = None  # asked for with NICK, before registration
        self.username: str | None = None
        self.realname = ""
        self.caps = CapNegotiation()
        self.session = CommandSession(self)
        self.peer = "?"
        self._heard_at = 0.0  # when the client last sent anything (PING)
        self._pinged = False
        self._answer_by = 0.0  # when the last PING's wait ends (a read before it, see below)
        self._quit_reason: str | None = None

    @property
    def service(self) -> ChatService:
        return self.factory.service

    @property
    def server(self) -> str:
        return self.factory.formatter.server

    @property
    def target(self) -> str:
        """The client's nick in replies: ``*`` until it has one."""
        if self.user is not None:
            return self.user.nick
        return self.nick or "*"

    # --- Connection life -------------------------------------------------------------------

    def connectionMade(self) -> None:
        factory = self.frontend = self.factory
        self.edge = factory.start(self)
        self.peer = self.edge.peer
        self._heard_at = factory.clock.seconds()
        # The factory's shared timers, not a DelayedCall each (chatd/idle.py).
        factory.ping_timers.touch(self, factory.ping_interval)
        factory.registration_timers.touch(self, factory.registration_timeout)

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.factory.ping_timers.forget(self)
        self.factory.registration_timers.forget(self)
        self.factory.lost(self, reason)

    def policy_changed(self) -> None:
        """A reload changed the limits (IRC's own line limit is fixed)."""
        self.edge.policy_changed()

    # --- Input: framing ---------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        """Splits lines once per read (linear in the read's size) and offers each to the
        edge's flood gate. CRLF or LF ends a line (mIRC and friends send LF alone)."""
        factory = self.factory
        factory.traffic.bytes_received += len(data)
        self.edge.activity()
        heard_at = self._heard_at = factory.clock.seconds()
        self._pinged = False
        if heard_at + factory.ping_interval >= self._answer_by:
            factory.ping_timers.touch(self, factory.ping_interval)
        with self.factory.output_batch:
            lines = (self._buffer + data).split(b"\n")
            self._buffer = lines.pop()
            for line in lines:
                if self._discarding:
                    self._discarding = False
                    continue
                if len(line) > MAX_FRAME:
                    self.edge.offer(TOO_LONG)
                elif line.strip(b"\r "):
                    self.edge.offer(line)
            if len(self._buffer) > MAX_FRAME:
                # No line is this long: drop it up to its end, whenever that comes.
                self.edge.swallowed(len(self._buffer))
                self._buffer = b""
                if not self._discarding:
                    self._discarding = True
                    self.edge.offer(TOO_LONG)

    # --- EdgeOwner ----------------------------------------------------------------------------

    def handle_line(self, line: bytes) -> None:
        """A line the flood gate let through."""
        line = line.removesuffix(b"\r")
        body = body_length(line)
        if body > MAX_LINE - 2 or len(line) - body > MAX_TAGS:
            self.line_too_long()
            return
        parsed = parse_command(line)
        if parsed is None or self.edge.closing:
            return
        command, prefix, params = parsed
        if self.user is None and command not in _BEFORE_REGISTRATION:
            self.reply(n.ERR_NOTREGISTERED, "You have not registered")
            return
        if command not in CHAT_COMMANDS:
            # What was said before the command is seen before it, by whoever was there then,
            # as the command table does for /commands: NICK, KICK, PART, ... change who the
            # speaker is or who is in the room, and the held run is delivered to the room as
            # it is when delivered (a renamed speaker got their own lines back, a kicked
            # user never saw the lines said before the kick).
            self.service.deliver_held()
        self.handleCommand(command, prefix, params)

    def line_too_long(self) -> None:
        self.reply(n.ERR_INPUTTOOLONG, "Input line was too long")

    def tell_error(self, text: str) -> None:
        self.server_notice(text)

    def timed_out(self) -> None:
        self.close_link("Idle timeout")

    def pause_input(self) -> None:
        self.transport.pauseProducing()

    def resume_input(self) -> None:
        self.transport.resumeProducing()

    def input_pending(self) -> bool:
        return False  # every complete line was offered to the edge as it arrived

    def finished(self, reason: str) -> None:
        if self.user is not None:
            self.service.disconnect(self.user, self._quit_reason or reason)
            self.user = None

    # --- ChatClient ------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        self.edge.write(data)

    def disconnect(self) -> None:
        self.edge.close()

    def abort(self) -> None:
        self.edge.abort()

    # --- Output helpers ----------------------------------------------------------------------

    def send_message(self, message: Message) -> None:
        self.edge.write(serialize(message))

    def send_messages(self, messages: Sequence[Message]) -> None:
        self.edge.write(b"".join(serialize(m) for m in messages))

    def reply(self, code: str, *params: str) -> None:
        self.send_message(n.reply(self.server, code, self.target, *params))

    def server_notice(self, text: str) -> None:
        self.send_messages(self.factory.formatter.notice(self.target, text))

    def service_notice(self, text: str) -> None:
        """A reply from chatd's commands, from the service nick."""
        self.send_messages(self.factory.formatter.notice(self.target, text, SERVICE_NICK))

    def own(self, command: str, *params: str) -> None:
        """Something this user did, as IRC shows it to them: ``:me!me@host JOIN #room``."""
        assert self.user is not None
        self.send_message(Message(command, params, self.factory.formatter.mask(self.user.nick)))

    def close_link(self, why: str) -> None:
        """``ERROR :Closing Link``, then close once it has been sent."""
        self._quit_reason = self._quit_reason or why
        host = peer_host(self.peer) or self.peer
        self.send_message(Message("ERROR", (f"Closing Link: {host} ({why})",)))
        self.edge.close()

    def quit(self, reason: str) -> None:
        self._quit_reason = reason
        self.close_link(f"Quit: {reason}")

    # --- Liveness ----------------------------------------------------------------------------

    # Each read moves the client's PING deadline to ping_interval after it. A PING moves it
    # to ping_timeout after the PING: a client silent until then is dropped, and one that
    # answered is sent its next PING ping_interval after it was last heard, but never before
    # that wait ends (so a ping_timeout longer than ping_interval, and a read during it, leave
    # the deadline where it is: _answer_by).

    def ping_due(self) -> None:
        """The client's PING deadline passed (the factory's ``ping_timers``)."""
        factory = self.factory
        now = factory.clock.seconds()
        quiet = now - self._heard_at
        if self._pinged:
            self.edge.log_cause("disconnected: ping timeout", f"{quiet:.0f} s")
            self.close_link(f"Ping timeout: {quiet:.0f} seconds")
            return
        self._pinged = True
        self.send_message(Message("PING", (self.server,)))
        self._answer_by = now + factory.ping_timeout
        factory.ping_timers.touch(self, factory.ping_timeout)

    def registration_due(self) -> None:
        """The registration deadline passed (the factory's ``registration_timers``)."""
        if self.user is None:
            self.edge.log_cause("disconnected: did not register")
            self.close_link("Registration timed out")

    # --- Registration -------------------------------------------------------------------------

    def irc_CAP(self, prefix: str, params: list[str]) -> None:
        registered = self.user is not None
        self.send_messages(self.caps.handle(params, self.server, self.target, registered))
        if self.user is not None:
            self.user.timestamps = SERVER_TIME in self.caps.enabled
        else:
            self._try_register()

    def irc_PASS(self, prefix: str, params: list[str]) -> None:
        """Accepted and ignored: chatd has no server password (operators use OPER)."""
        if self.user is not None:
            self.reply(n.ERR_ALREADYREGISTERED, "You may not reregister")

    def irc_NICK(self, prefix: str, params: list[str]) -> None:
        if not params or not params[0]:
            self.reply(n.ERR_NONICKNAMEGIVEN, "No nickname given")
            return
        nick = self._free_nick(params[0])
        if nick is None:
            return
        if self.user is None:
            self.nick = nick
            self._try_register()
            return
        if nick == self.user.nick:
            return
        old = self.user.nick
        try:
            self.service.rename(self.user, nick)
        except Refused as e:  # a nick kicked from this address moments ago
            self._quit_reason = e.reason
            self.close_link(str(e))
            return
        except ChatError as e:  # muted
            self.server_notice(str(e))
            return
        self.edge.nick = nick
        if not self.user.rooms:  # otherwise the rename reached this client through its rooms
            self.send_message(Message("NICK", (nick,), self.factory.formatter.mask(old)))

    def _free_nick(self, requested: str) -> str | None:
        """The nick ``requested`` means if this client may take it; else None after 432 (a
        nick chatd refuses: its rule, reserved names such as ``chatd``) or 433 (someone on
        any front-end holds it, or one that looks like it)."""
        try:
            nick = normalize_nick(requested)
        except InvalidNickname as e:
            self.reply(n.ERR_ERRONEUSNICKNAME, requested[:NICK_MAX_LENGTH * 2] or "*", str(e))
            return None
        try:
            return self.service.valid_free_nick(nick, self.user)
        except ChatError as e:
            self.reply(n.ERR_NICKNAMEINUSE, nick, str(e))
            return None

    def irc_USER(self, prefix: str, params: list[str]) -> None:
        if self.user is not None:
            self.reply(n.ERR_ALREADYREGISTERED, "You may not reregister")
            return
        if len(params) < 4 or not params[0]:
            self.reply(n.ERR_NEEDMOREPARAMS, "USER", "Not enough parameters")
            return
        self.username = params[0]
        self.realname = clean_irc_text(params[3])[:100]
        self._try_register()

    def _try_register(self) -> None:
        nick = self.nick
        if self.user is not None or nick is None or self.username is None:
            return
        if self.caps.negotiating:
            return
        if self._free_nick(nick) is None:  # taken since NICK
            self.nick = None
            return
        try:
            user = self.service.register(self, self.peer, nick)
        except ChatError as e:  # refused (banned): say why, then goodbye
            self.factory.rejections.event("connection refused: banned", self.peer)
            self.close_link(str(e))
            return
        self.factory.registration_timers.forget(self)
        self.user = user
        user.timestamps = SERVER_TIME in self.caps.enabled
        self.edge.nick = user.nick
        self._welcome()

    def _welcome(self) -> None:
        factory = self.factory
        server, nick = self.server, self.target
        self.send_messages([
            *n.welcome(server, nick, server, f"chatd-{VERSION}", factory.created,
                       factory.formatter.mask(nick)),
            *n.isupport(server, nick, isupport_tokens(server)),
            *n.motd(server, nick, self.service.motd),
        ])
        self.server_notice(
            f"chatd rooms are IRC channels: /join {self.service.default_room} to start. "
            f"Type /msg {SERVICE_NICK} help for chatd's own commands."
        )

    # --- Rooms -----------------------------------------------------------------------------

    def irc_JOIN(self, prefix: str, params: list[str]) -> None:
        user = self.user
        assert user is not None
        if not params:
            self.reply(n.ERR_NEEDMOREPARAMS, "JOIN", "Not enough parameters")
            return
        if params[0] == "0":  # JOIN 0: leave every room
            for room in list(user.rooms.values()):
                self._part(room, "Left all channels")
            return
        for requested in params[0].split(",")[:MAX_JOINS]:
            name = self._room_name(requested)
            if name is None or room_key(name) in user.rooms:
                continue  # joining a room one is in is not an error on IRC
            try:
                room = self.service.join(user, name)
            except ChatError as e:
                self.reply(n.ERR_NOSUCHCHANNEL, name, str(e))
                continue
            self.own("JOIN", room.name)
            if room.topic:
                self._send_topic(room)
            self._send_names(room)
            self.send_messages(self.factory.formatter.history(
                room.name, self.service.replay(room), tagged=user.timestamps))

    def _room_name(self, requested: str) -> str | None:
        """A valid room name, or None after telling the client why not."""
        try:
            return normalize_room(requested)
        except InvalidRoomName as e:
            self.reply(n.ERR_NOSUCHCHANNEL, requested[:ROOM_NAME_MAX * 2] or "*", str(e))
            return None

    def _my_room(self, requested: str) -> Room | None:
        """One of the user's rooms, or None after a 403 or 442."""
        assert self.user is not None
        name = self._room_name(requested)
        if name is None:
            return None
        room = self.user.rooms.get(room_key(name))
        if room is None:
            self.reply(n.ERR_NOTONCHANNEL, name, "You're not on that channel")
        return room

    def irc_PART(self, prefix: str, params: list[str]) -> None:
        if not params:
            self.reply(n.ERR_NEEDMOREPARAMS, "PART", "Not enough parameters")
            return
        reason = clean_irc_text(params[1]) if len(params) > 1 else ""
        for requested in params[0].split(",")[:MAX_JOINS]:
            room = self._my_room(requested)
            if room is not None:
                self._part(room, reason)

    def _part(self, room: Room, reason: str) -> None:
        assert self.user is not None
        self.service.part(self.user, room.name, reason or "left")
        self.own("PART", room.name, reason)

    def irc_TOPIC(self, prefix: str, params: list[str]) -> None:
        assert self.user is not None
        if not params:
            self.reply(n.ERR_NEEDMOREPARAMS, "TOPIC", "Not enough parameters")
            return
        if len(params) == 1:
            room = self._existing_room(params[0])
            if room is not None:
                self._send_topic(room)
            return
        room = self._my_room(params[0])
        if room is not None:
            try:
                self.service.set_topic(self.user, clean_irc_text(params[1])[:TOPICLEN], room)
            except ChatError as e:
                self.reply(n.ERR_CHANOPRIVSNEEDED, room.name, str(e))

    def _existing_room(self, requested: str) -> Room | None:
        try:
            return self.service.find_room(requested)
        except ChatError as e:
            self.reply(n.ERR_NOSUCHCHANNEL, requested[:ROOM_NAME_MAX * 2] or "*", str(e))
            return None

    def _send_topic(self, room: Room) -> None:
        self.send_messages(n.topic(self.server, self.target, room.name, room.topic,
                                   room.topic_by, room.topic_at))

    def _send_names(self, room: Room) -> None:
        local = [(u.key, f"@{u.nick}" if u.operator else u.nick) for u in room.members]
        names = [name for _, name in sorted([*local, *room.remote_members.items()])]
        self.send_messages(n.names(self.server, self.target, room.name, names))

    def irc_NAMES(self, prefix: str, params: list[str]) -> None:
        if not params:
            self.reply(n.RPL_ENDOFNAMES, "*", "End of /NAMES list.")
            return
        for requested in params[0].split(",")[:MAX_JOINS]:
            room = self.service.rooms.get(room_key(requested))
            if room is None:
                self.reply(n.RPL_ENDOFNAMES, requested[:ROOM_NAME_MAX * 2], "End of /NAMES list.")
            else:
                self._send_names(room)

    def irc_LIST(self, prefix: str, params: list[str]) -> None:
        rooms = self.service.rooms_by_name()
        if params and params[0]:
            wanted = {room_key(name) for name in params[0].split(",")}
            rooms = [room for room in rooms if room.key in wanted]
        self.send_messages(n.list_rooms(self.server, self.target,
                                        [(r.name, r.size, r.topic) for r in rooms]))

    # --- Talk ------------------------------------------------------------------------------

    def irc_PRIVMSG(self, prefix: str, params: list[str]) -> None:
        self._talk(params, notice=False)

    def irc_NOTICE(self, prefix: str, params: list[str]) -> None:
        self._talk(params, notice=True)

    def _talk(self, params: list[str], notice: bool) -> None:
        """PRIVMSG or NOTICE to rooms or nicks. A NOTICE never gets an error back (RFC 2812
        3.3.2: no automatic reply to a NOTICE), so two programs cannot loop."""
        command = "NOTICE" if notice else "PRIVMSG"
        if not params or not params[0]:
            if not notice:
                self.reply(n.ERR_NORECIPIENT, f"No recipient given ({command})")
            return
        if len(params) < 2 or not params[1]:
            if not notice:
                self.reply(n.ERR_NOTEXTTOSEND, "No text to send")
            return
        for target in params[0].split(",")[:MAX_TARGETS]:
            if target.startswith("#"):
                self._to_room(target, params[1], notice)
            elif target.startswith("$"):
                self._to_everyone(target, params[1], notice)
            elif nick_key(target) == nick_key(SERVICE_NICK):
                if not notice:
                    self._run_command(params[1].removeprefix("/"))
            else:
                self._to_nick(target, params[1], notice)

    def _to_room(self, target: str, text: str, notice: bool) -> None:
        user = self.user
        assert user is not None
        room = user.rooms.get(room_key(target))
        if room is None:
            if not notice:
                self.reply(n.ERR_CANNOTSENDTOCHAN, target[:ROOM_NAME_MAX * 2],
                           "Cannot send to channel (you are not in it)")
            return
        request = parse_ctcp(text)
        if request is not None and request[0] != "ACTION":
            return  # CTCP queries to a whole room are not passed on
        words = clean_irc_text(request[1] if request is not None else text)
        if not words.strip():
            return
        try:
            if request is not None:
                self.service.act(user, words, room)
            else:
                self.service.say(user, words, room)
        except ChatError as e:  # muted
            if not notice:
                self.reply(n.ERR_CANNOTSENDTOCHAN, room.name, str(e))
            return

    def _to_everyone(self, target: str, text: str, notice: bool) -> None:
        """``PRIVMSG $*`` (or ``$SERVER``): an IRC operator's message to every user of the
        server, which is chatd's ``/wall``; chatd is one server, so no other mask matches."""
        user = self.user
        moderator = self.factory.commands.moderator
        assert user is not None
        if moderator is None or user.operator is None:
            if not notice:
                self.reply(n.ERR_NOPRIVILEGES, "Permission Denied- You're not an IRC operator")
            return
        if target[1:].lower() not in ("*", self.server.lower()):
            if not notice:
                self.reply(n.ERR_BADMASK, target[:ROOM_NAME_MAX * 2], "Bad Server/host mask")
            return
        words = clean_irc_text(text)
        if words.strip():
            moderator.wall(user, words)

    def _to_nick(self, target: str, text: str, notice: bool) -> None:
        user = self.user
        assert user is not None
        # Connected here, or to another chatd process of the cluster (--redis).
        recipient = self.service.users.get(nick_key(target)) or self.service.remote.get(target)
        if recipient is None:
            if not notice:
                self.reply(n.ERR_NOSUCHNICK, target[:NICK_MAX_LENGTH * 2], "No such nick/channel")
            return
        request = parse_ctcp(text)
        if request is not None and request[0] != "ACTION":
            if not notice:
                self._answer_ctcp(recipient, *request)
            return
        words = clean_irc_text(request[1] if request is not None else text)
        if not words.strip():
            return
        try:
            self.service.private_message(user, recipient.nick, words, request is not None)
        except ChatError as e:
            if not notice:
                self.server_notice(str(e))
            return
        if recipient.away is not None and not notice:
            self.reply(n.RPL_AWAY, recipient.nick, recipient.away)

    def _answer_ctcp(self, recipient: User | RemoteUser, query: str, args: str) -> None:
        """chatd answers CTCP queries for everyone: line users' clients cannot, and IRC
        clients would only tell one user another's client and version."""
        answers: dict[str, Callable[[], str]] = {
            "VERSION": lambda: f"chatd {VERSION} (a Twisted chat daemon)",
            "PING": lambda: args[:64],
            "TIME": lambda: wire.date_and_clock(self.factory.clock.seconds()).strip("[] "),
            "CLIENTINFO": lambda: "ACTION CLIENTINFO PING TIME VERSION",
        }
        answer = answers.get(query)
        if answer is not None:
            self.send_message(Message("NOTICE", (self.target, ctcp(query, answer())),
                                      self.factory.formatter.mask(recipient.nick)))

    def irc_AWAY(self, prefix: str, params: list[str]) -> None:
        assert self.user is not None
        reason = clean_irc_text(params[0])[:AWAYLEN] if params else ""
        if reason.strip():
            try:
                self.service.set_away(self.user, reason)
            except ChatError as e:  # muted: no text others would see
                self.server_notice(str(e))
                return
            self.reply(n.RPL_NOWAWAY, "You have been marked as being away")
            return
        if self.user.away is not None:
            self.service.set_back(self.user)
        self.reply(n.RPL_UNAWAY, "You are no longer marked as being away")

    # --- Queries -----------------------------------------------------------------------------

    def irc_WHO(self, prefix: str, params: list[str]) -> None:
        mask = params[0] if params and params[0] else "*"
        server = self.server
        lines = []
        if mask.startswith("#"):
            room = self.service.rooms.get(room_key(mask))
            if room is not None:
                mask = room.name
                for member in sorted(room.members, key=lambda u: u.key):
                    lines.append(self._who_line(room.name, member))
                lines += [n.who_reply(server, self.target, room.name, nick, server, nick,
                                      False, False, nick)
                          for _, nick in sorted(room.remote_members.items())]
        else:
            found = self.service.users.get(nick_key(mask))
            elsewhere = self.service.remote.get(mask) if found is None else None
            if found is not None:
                lines.append(self._who_line("*", found))
            elif elsewhere is not None:  # another chatd process's user, in a room or not
                lines.append(n.who_reply(server, self.target, "*", elsewhere.nick, server,
                                         elsewhere.nick, elsewhere.away is not None, False,
                                         elsewhere.nick))
        self.send_messages([*lines, n.end_of_who(server, self.target, mask)])

    def _who_line(self, channel: str, who: User) -> Message:
        return n.who_reply(self.server, self.target, channel, who.nick, self.server, who.nick,
                           who.away is not None, who.operator is not None, who.nick)

    def irc_WHOIS(self, prefix: str, params: list[str]) -> None:
        if not params:
            self.reply(n.ERR_NONICKNAMEGIVEN, "No nickname given")
            return
        nick = params[-1].split(",")[0]  # WHOIS [server] nick
        who = self.service.users.get(nick_key(nick))
        elsewhere = self.service.remote.get(nick) if who is None else None
        if elsewhere is not None:
            # Another chatd process's user: the rooms of theirs this process knows; how
            # long they have been idle is their process's to know.
            self.send_messages(n.whois(
                self.server, self.target, elsewhere.nick, elsewhere.nick, self.server,
                elsewhere.nick, [room.name for room in self.service.rooms_by_name()
                                 if elsewhere.key in room.remote_members],
                elsewhere.away, False, None, None,
            ))
            return
        if who is None:
            self.reply(n.ERR_NOSUCHNICK, nick[:NICK_MAX_LENGTH * 2] or "*",
                       "No such nick/channel")
            self.reply(n.RPL_ENDOFWHOIS, nick[:NICK_MAX_LENGTH * 2] or "*",
                       "End of /WHOIS list.")
            return
        self.send_messages(n.whois(
            self.server, self.target, who.nick, who.nick, self.server, who.nick,
            [room.name for room in who.rooms_by_name()], who.away, who.operator is not None,
            int(self.factory.clock.seconds() - who.active_at), who.signon,
        ))

    def irc_MODE(self, prefix: str, params: list[str]) -> None:
        """Rooms are +n and users +i, always; MODE shows that and changes nothing."""
        assert self.user is not None
        if not params:
            self.reply(n.ERR_NEEDMOREPARAMS, "MODE", "Not enough parameters")
            return
        target = params[0]
        if target.startswith("#"):
            room = self._existing_room(target)
            if room is None:
                return
            if len(params) == 1:
                self.send_message(n.channel_mode(self.server, self.target, room.name))
            elif params[1].lstrip("+") in ("b", "e", "I"):  # list queries: chatd keeps none
                self.reply(n.RPL_ENDOFBANLIST, room.name, "End of channel ban list")
            else:
                self.reply(n.ERR_CHANOPRIVSNEEDED, room.name, "Channel modes cannot be changed")
            return
        if nick_key(target) != self.user.key:
            self.reply(n.ERR_USERSDONTMATCH, "Cant change mode for other users")
        elif len(params) == 1 or params[1] in ("+i", "i"):
            self.reply(n.RPL_UMODEIS, n.USER_MODES)
        else:
            self.reply(n.ERR_UMODEUNKNOWNFLAG, "Unknown MODE flag")

    # --- Liveness and leaving --------------------------------------------------------------

    def irc_PING(self, prefix: str, params: list[str]) -> None:
        self.send_message(Message("PONG", (self.server, params[0] if params else ""),
                                  self.server))

    def irc_PONG(self, prefix: str, params: list[str]) -> None:
        """Any input proves the client alive (dataReceived); a PONG needs nothing more."""

    def irc_QUIT(self, prefix: str, params: list[str]) -> None:
        reason = clean_irc_text(params[0])[:KICKLEN] if params and params[0] else "Client Quit"
        if self.user is not None:  # a muted user's words are not shown
            reason = self.service.shown_reason(self.user, reason, "Client Quit")
        self.quit(reason)

    # --- Operators and chatd's own commands ------------------------------------------------

    def irc_OPER(self, prefix: str, params: list[str]) -> None:
        """The same operator table, password check and backoff as the line front-end's
        /oper; later lines wait for the check (it runs in a thread)."""
        user = self.user
        assert user is not None
        moderator = self.factory.commands.moderator
        if len(params) < 2:
            self.reply(n.ERR_NEEDMOREPARAMS, "OPER", "Not enough parameters")
            return
        if moderator is None:
            self.reply(n.ERR_NOOPERHOST, "No operators are configured on this server")
            return

        def granted(text: str) -> None:
            self.reply(n.RPL_YOUREOPER, "You are now an IRC operator")
            self.server_notice(text)

        def refused(text: str) -> None:
            self.reply(n.ERR_PASSWDMISMATCH, text)

        self.edge.hold_until(moderator.oper(user, f"{params[0]} {params[1]}", granted, refused))

    def irc_KICK(self, prefix: str, params: list[str]) -> None:
        """Operators only: the same kick as /kick (chatd's kick disconnects)."""
        user = self.user
        assert user is not None
        if len(params) < 2:
            self.reply(n.ERR_NEEDMOREPARAMS, "KICK", "Not enough parameters")
            return
        room = self._existing_room(params[0])
        moderator = self.factory.commands.moderator
        if room is None:
            return
        # A member of the room on this process or, in a cluster, on another.
        target = self.service.users.get(nick_key(params[1]))
        if (target is None or target not in room.members) and (
                nick_key(params[1]) not in room.remote_members):
            self.reply(n.ERR_USERNOTINCHANNEL, params[1][:NICK_MAX_LENGTH * 2], room.name,
                       "They aren't on that channel")
            return
        if moderator is None or user.operator is None:
            self.reply(n.ERR_CHANOPRIVSNEEDED, room.name, "You're not a chatd operator")
            return
        reason = clean_irc_text(params[2])[:KICKLEN] if len(params) > 2 else ""
        try:
            moderator.kick(user, params[1], reason)
        except ChatError as e:
            self.server_notice(str(e))

    def irc_unknown(self, prefix: str, command: str, params: list[str]) -> None:
        """``/quote BAN 1.2.3.4``: any chatd command IRC has no verb for; else 421."""
        name = command.lower()
        if name in self.factory.commands.commands and name not in IRC_NATIVE:
            self._run_command(" ".join([name, *params]))
        else:
            self.reply(n.ERR_UNKNOWNCOMMAND, command, "Unknown command")

    def _run_command(self, line: str) -> None:
        user = self.user
        assert user is not None
        text = clean_irc_text(line).strip()
        name = text.partition(" ")[0].lower()
        if not name:
            return
        if name in IRC_NATIVE:
            self.service_notice(f"Error: use your IRC client's /{name} for that")
            return
        done = self.factory.commands.dispatch(self.session, user, "/" + text)
        if done is not None:
            self.edge.hold_until(done)

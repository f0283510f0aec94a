"""The chat service: users, nicknames, rooms and fan-out. It knows nothing about sockets.

Front-ends (the line protocol today; TLS, IRC, WebSocket later) adapt a connection to the
``ChatClient`` protocol below and call the service's methods. The service publishes every
event on its bus and, when the bus hands the event back, renders it once per wire format
and gives the same bytes to every local recipient.
"""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from twisted.application import service
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from chatd.events import (
    Acted,
    Announcement,
    ChatLine,
    Event,
    IEventBus,
    Joined,
    Left,
    LocalEventBus,
    PrivateMessage,
    Renamed,
    RoomNotice,
    Said,
    TopicChanged,
)
from chatd.history import HistoryEntry
from chatd.moderation import peer_host
from chatd.rooms import InvalidRoomName, Room, normalize_room, room_key
from chatd.store import IChatStore, MemoryStore
from chatd.text import InvalidNickname, nick_key, nick_skeleton, normalize_nick

DEFAULT_ROOM = "#lobby"
DEFAULT_HISTORY = 100
DEFAULT_REPLAY = 20
SHUTDOWN_NOTICE = "Server is shutting down. Goodbye."


# Joins and leaves are announced in rooms of at most this many members. Filling a room of N
# people one by one costs N^2/2 notices: 19,000 people would mean 180 million lines, and in
# a room that size nobody reads them anyway.
DEFAULT_ANNOUNCE_LIMIT = 500

class ChatError(Exception):
    """A request the service refuses; the message is meant for the one who asked."""


class EventFormatter(Protocol):
    """Renders events as the bytes of one wire format."""

    def format(self, event: Event, at: float | None = None) -> bytes:
        """``at`` (seconds since the epoch) is given for users who asked for timestamps."""


class ChatClient(Protocol):
    """One connection, as the chat service sees it."""

    formatter: EventFormatter

    def send(self, data: bytes) -> None:
        """Queues already-encoded bytes for the peer."""

    def disconnect(self) -> None:
        """Closes the connection once what is queued has been sent."""

    def abort(self) -> None:
        """Closes the connection at once, dropping what is queued."""


class User:
    """Someone connected to this process."""

    __slots__ = ("__weakref__", "away", "client", "host", "ignoring", "key", "nick", "operator",
                 "peer", "reply_to", "room", "timestamps")

    def __init__(self, client: ChatClient, nick: str, room: Room, peer: str) -> None:
        self.client = client
        self.nick = nick
        self.key = nick_key(nick)
        self.room = room
        self.peer = peer
        # The IP address, parsed once: mute checks read it on every line a user says.
        self.host = peer_host(peer)
        self.away: str | None = None  # the reason, while away
        # Ignoring follows the person through renames and ends when they disconnect.
        self.ignoring: weakref.WeakSet[User] = weakref.WeakSet()
        self.reply_to: User | None = None  # who sent the last private message
        self.timestamps = False
        self.operator: str | None = None  # the operator name after a successful /oper


class ChatService(service.Service):
    """Holds who is connected, the rooms they are in, and carries what they say."""

    log = Logger()
    reloadable_options = frozenset({"server-name", "announce-limit", "motd-lines", "topic"})

    def __init__(
        self,
        reactor: IReactorTime,
        server_name: str = "chatd",
        bus: IEventBus | None = None,
        shutdown_grace: float = 3.0,
        default_room: str = DEFAULT_ROOM,
        history_size: int = DEFAULT_HISTORY,
        replay_size: int = DEFAULT_REPLAY,
        store: IChatStore | None = None,
        motd: Sequence[str] = (),
        announce_limit: int = DEFAULT_ANNOUNCE_LIMIT,
        topic: str | None = None,
    ) -> None:
        self.setName("chat")
        self.announce_limit = announce_limit
        self.configured_topic = topic  # the default room's, from --topic; None: leave it be
        self.reactor = reactor
        self.server_name = server_name
        self.bus: IEventBus = bus if bus is not None else LocalEventBus()
        self.bus.subscribe(self._deliver)
        self.shutdown_grace = shutdown_grace
        self.default_room = normalize_room(default_room)
        self.history_size = history_size
        self.replay_size = replay_size
        self.store: IChatStore = store if store is not None else MemoryStore()
        self.motd = list(motd)
        self.users: dict[str, User] = {}  # by nick_key
        self.look_alikes: dict[str, User] = {}  # by nick_skeleton: no two nicks look alike
        self.rooms: dict[str, Room] = {}  # by room_key
        self._guest_numbers = itertools.count(1)
        self._shutting_down = False
        self._drained: defer.Deferred[None] | None = None
        # Policies (bans, mutes) plug in here; each check raises ChatError to refuse.
        self.admission_checks: list[Callable[[str], None]] = []  # given the peer
        self.speech_checks: list[Callable[[User], None]] = []

    def reconfigure(self, options: Mapping[str, Any]) -> None:
        self.server_name = options["server-name"]
        self.announce_limit = options["announce-limit"]
        self.motd = list(options["motd-lines"])
        self.configured_topic = options["topic"]
        self._apply_configured_topic()

    def startService(self) -> None:
        """Brings back the saved rooms, topics and history before anyone connects."""
        super().startService()
        for saved in self.store.open():
            room = Room(saved.name, self.history_size, saved.topic, saved.topic_by,
                        saved.topic_at, saved.history, persisted=True)
            self.rooms[room.key] = room
        self._apply_configured_topic()

    def _apply_configured_topic(self) -> None:
        """Gives the default room the --topic topic, unless it already has it."""
        if self.configured_topic is None:
            return
        room = self._room(self.default_room)
        if room.topic != self.configured_topic:
            self._set_room_topic(room, self.configured_topic, self.server_name)

    # --- Connections -----------------------------------------------------------------------

    def connect(self, client: ChatClient, peer: str) -> User:
        """Registers a new connection under a fresh guest nickname in the default room.

        Raises ChatError, saying why, when an admission check refuses ``peer``.
        """
        for check in self.admission_checks:
            check(peer)
        nick = self._next_guest_nick()
        room = self._room(self.default_room)
        user = User(client, nick, room, peer)
        self.users[user.key] = user
        self.look_alikes[nick_skeleton(nick)] = user
        room.members.add(user)
        self.log.info("{nick} connected from {peer}", nick=nick, peer=peer)
        self.bus.publish(Joined(room.name, nick))
        return user

    def disconnect(self, user: User, reason: str) -> None:
        """Forgets a connection that has closed, for whatever reason, and says so."""
        if self.users.get(user.key) is not user:
            return
        del self.users[user.key]
        if self.look_alikes.get(skeleton := nick_skeleton(user.nick)) is user:
            del self.look_alikes[skeleton]
        room = user.room
        self._leave(user)
        self.log.info("{nick} ({peer}) left: {reason}", nick=user.nick, peer=user.peer,
                      reason=reason)
        if self._shutting_down:
            # Everyone is leaving: telling each of N users about N-1 others is O(N^2) for nothing.
            if not self.users and self._drained is not None and not self._drained.called:
                self._drained.callback(None)
            return
        self.bus.publish(Left(room.name, user.nick, reason))

    def _next_guest_nick(self) -> str:
        while True:
            nick = f"guest{next(self._guest_numbers)}"
            if nick_key(nick) not in self.users and nick_skeleton(nick) not in self.look_alikes:
                return nick

    # --- Rooms -----------------------------------------------------------------------------

    def _room(self, name: str) -> Room:
        """The room called ``name`` (already normalised), created if it does not exist."""
        room = self.rooms.get(room_key(name))
        if room is None:
            room = self.rooms[room_key(name)] = Room(name, self.history_size)
        return room

    def _leave(self, user: User) -> None:
        room = user.room
        room.members.discard(user)
        if not room.worth_keeping and room.name != self.default_room:
            del self.rooms[room.key]

    @staticmethod
    def _room_name(requested: str) -> str:
        try:
            return normalize_room(requested)
        except InvalidRoomName as e:
            raise ChatError(str(e)) from None

    def find_room(self, requested: str) -> Room:
        """An existing room by name, or ChatError."""
        name = self._room_name(requested)
        room = self.rooms.get(room_key(name))
        if room is None:
            raise ChatError(f"no such room {name}")
        return room

    def join(self, user: User, requested: str) -> Room:
        """Moves ``user`` to another room, creating it on first join."""
        name = self._room_name(requested)
        old = user.room
        if room_key(name) == old.key:
            raise ChatError(f"you are already in {old.name}")
        self._leave(user)
        new = user.room = self._room(name)
        new.members.add(user)
        self.bus.publish(Left(old.name, user.nick, f"joined {new.name}"))
        self.bus.publish(Joined(new.name, user.nick))
        return new

    def rooms_by_name(self) -> list[Room]:
        return sorted(self.rooms.values(), key=lambda r: r.key)

    def set_topic(self, user: User, topic: str) -> None:
        self._set_room_topic(user.room, topic, user.nick)

    def _set_room_topic(self, room: Room, topic: str, by: str) -> None:
        room.topic, room.topic_by, room.topic_at = topic, by, self.reactor.seconds()
        self.store.save_room(room)
        room.persisted = True
        self.bus.publish(TopicChanged(room.name, by, topic))

    def who(self, room: Room) -> list[User]:
        """The members of ``room``, sorted by nickname."""
        return sorted(room.members, key=lambda u: u.key)

    def history(self, room: Room, count: int) -> list[HistoryEntry]:
        """The newest ``count`` lines of ``room`` (at most what is kept), oldest first."""
        return room.history.last(count)

    def replay(self, room: Room) -> list[HistoryEntry]:
        """What someone arriving in ``room`` is shown of its past."""
        return room.history.last(self.replay_size)

    # --- What users say --------------------------------------------------------------------

    def say(self, user: User, text: str) -> None:
        self._may_speak(user)
        self._speak(user.room, Said(user.room.name, user.nick, text))

    def act(self, user: User, text: str) -> None:
        self._may_speak(user)
        self._speak(user.room, Acted(user.room.name, user.nick, text))

    def _speak(self, room: Room, line: ChatLine) -> None:
        if room.history.size:
            entry = HistoryEntry(self.reactor.seconds(), line)
            room.history.append(entry)
            if not room.persisted:
                self.store.save_room(room)
                room.persisted = True
            self.store.add_line(room, entry)
        self.bus.publish(line)

    def private_message(self, user: User, requested: str, text: str) -> User:
        """Sends ``text`` to one user; returns the recipient (whose ``away`` may be set)."""
        self._may_speak(user)
        target = self._other_user(user, requested, "message")
        self.bus.publish(PrivateMessage(user.nick, target.nick, text))
        return target

    def reply(self, user: User, text: str) -> User:
        """Sends ``text`` to whoever sent ``user`` the last private message."""
        self._may_speak(user)
        target = user.reply_to
        if target is None:
            raise ChatError("nobody has sent you a private message yet")
        if self.users.get(target.key) is not target:
            raise ChatError(f"{target.nick} is no longer connected")
        self.bus.publish(PrivateMessage(user.nick, target.nick, text))
        return target

    def _other_user(self, user: User, requested: str, verb: str) -> User:
        target = self.users.get(nick_key(requested))
        if target is None:
            raise ChatError(f'no such user "{requested}"')
        if target is user:
            raise ChatError(f"you cannot {verb} yourself")
        return target

    # --- Personal settings -----------------------------------------------------------------

    def _may_speak(self, user: User) -> None:
        for check in self.speech_checks:
            check(user)

    def rename(self, user: User, requested: str) -> str:
        """Gives ``user`` a new nickname, or raises ChatError saying why not."""
        try:
            new = normalize_nick(requested)
        except InvalidNickname as e:
            raise ChatError(str(e)) from None
        key = nick_key(new)
        holder = self.users.get(key)
        if holder is not None and holder is not user:
            raise ChatError(f'nickname "{new}" is already taken')
        skeleton = nick_skeleton(new)
        twin = self.look_alikes.get(skeleton)
        if twin is not None and twin is not user:
            raise ChatError(f'nickname "{new}" looks too much like "{twin.nick}", who is here')
        if new == user.nick:
            raise ChatError(f'you are already "{new}"')
        old = user.nick
        del self.users[user.key]
        del self.look_alikes[nick_skeleton(old)]
        user.nick, user.key = new, key
        self.users[key] = user
        self.look_alikes[skeleton] = user
        self.bus.publish(Renamed(old, new))
        return new

    def stamp_for(self, user: User | None) -> float | None:
        """The time to prefix a line to ``user`` with, or None if they did not ask for it."""
        return self.reactor.seconds() if user is not None and user.timestamps else None

    def set_away(self, user: User, reason: str) -> None:
        user.away = reason

    def set_back(self, user: User) -> None:
        if user.away is None:
            raise ChatError("you are not marked as away")
        user.away = None

    def ignore(self, user: User, requested: str) -> User:
        target = self._other_user(user, requested, "ignore")
        if target in user.ignoring:
            raise ChatError(f"you are already ignoring {target.nick}")
        user.ignoring.add(target)
        return target

    def unignore(self, user: User, requested: str) -> User:
        target = self.users.get(nick_key(requested))
        if target is None or target not in user.ignoring:
            raise ChatError(f'you are not ignoring "{requested}"')
        user.ignoring.discard(target)
        return target

    def ignored(self, user: User) -> list[User]:
        return sorted(user.ignoring, key=lambda u: u.key)

    # --- Fan-out ---------------------------------------------------------------------------

    def _deliver(self, event: Event) -> None:
        """Picks the local recipients of ``event`` and sends it to them."""
        if isinstance(event, Said | Acted):
            room = self.rooms.get(room_key(event.room))
            if room is not None:
                sender = self.users.get(nick_key(event.nick))
                self._send(event, room.members, skip=sender, unless_ignoring=sender)
        elif isinstance(event, PrivateMessage):
            target = self.users.get(nick_key(event.recipient))
            sender = self.users.get(nick_key(event.sender))
            if target is not None and (sender is None or sender not in target.ignoring):
                target.reply_to = sender
                self._send(event, (target,))
        elif isinstance(event, Joined | Left):
            room = self.rooms.get(room_key(event.room))
            if room is None:
                return
            # The room's size with the mover in it (a leaver has already left the set), so
            # a join and its leave are either both announced or both not.
            size = len(room.members) + isinstance(event, Left)
            if not (self.announce_limit and size > self.announce_limit):
                self._send(event, room.members, skip=self.users.get(nick_key(event.nick)))
        elif isinstance(event, TopicChanged):
            room = self.rooms.get(room_key(event.room))
            if room is not None:
                self._send(event, room.members)
        elif isinstance(event, Renamed):
            renamed = self.users.get(nick_key(event.new))
            if renamed is not None:
                self._send(event, renamed.room.members)
        elif isinstance(event, RoomNotice):
            room = self.rooms.get(room_key(event.room))
            if room is not None:
                self._send(event, room.members)
        else:
            self._send(event, self.users.values())

    def _send(
        self,
        event: Event,
        recipients: Iterable[User],
        skip: User | None = None,
        unless_ignoring: User | None = None,
    ) -> None:
        """Renders ``event`` once per (wire format, with or without time) and sends the same
        bytes to each recipient."""
        plain: dict[EventFormatter, bytes] = {}
        stamped: dict[EventFormatter, bytes] = {}
        # A copy: a send may close a connection, and that changes the member set.
        for user in list(recipients):
            if user is skip:
                continue
            if unless_ignoring is not None and user.ignoring and unless_ignoring in user.ignoring:
                continue
            formatter = user.client.formatter
            if user.timestamps:
                data = stamped.get(formatter)
                if data is None:
                    data = stamped[formatter] = formatter.format(event, self.reactor.seconds())
            else:
                data = plain.get(formatter)
                if data is None:
                    data = plain[formatter] = formatter.format(event)
            user.client.send(data)

    # --- Shutdown --------------------------------------------------------------------------

    def stopService(self) -> defer.Deferred[None]:
        """Says goodbye to everyone, closes every connection, waits a little for them, and
        writes what the store has queued."""
        super().stopService()
        self._shutting_down = True
        if not self.users:
            return self.store.close()
        self.bus.publish(Announcement(SHUTDOWN_NOTICE))
        self._drained = defer.Deferred()
        for user in list(self.users.values()):
            user.client.disconnect()
        timer = self.reactor.callLater(self.shutdown_grace, self._abort_stragglers)
        self._drained.addBoth(lambda result: timer.cancel() if timer.active() else None)
        self._drained.addBoth(lambda _: self.store.close())
        return self._drained

    def _abort_stragglers(self) -> None:
        """Peers that do not read their goodbye do not get to hold up the shutdown."""
        for user in list(self.users.values()):
            user.client.abort()
        if self._drained is not None and not self._drained.called:
            self._drained.callback(None)

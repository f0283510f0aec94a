"""The chat service: users, nicknames, rooms and fan-out. It knows nothing about sockets.

Front-ends (the line protocol today; IRC and WebSocket next) adapt a connection to the
``ChatClient`` protocol below and call the service's methods. Every change to shared state
is an event (chatd/events.py): the service applies its own at once and publishes it on its
bus; what the bus hands back (another process's events are applied first) is rendered once
per front-end and handed, as the same bytes, to that front-end's ``broadcast``.
"""

from __future__ import annotations

import dataclasses
import itertools
import uuid
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

from twisted.application import service
from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from chatd.addresses import DEFAULT_IPV6_PREFIX, count_key, peer_host
from chatd.errors import ChatError
from chatd.events import (
    Acted,
    Announcement,
    AwayChanged,
    Backfilled,
    Banned,
    ChatLine,
    Connected,
    Disconnected,
    Event,
    IEventBus,
    Joined,
    Kicked,
    Left,
    LocalEventBus,
    Muted,
    PrivateMessage,
    Renamed,
    RoomNotice,
    RuleEvent,
    Said,
    TopicChanged,
    Unbanned,
    Unmuted,
)
from chatd.fanout import ChatLineBatch
from chatd.former_nicks import FormerNicks
from chatd.history import DEFAULT_HISTORY_MEMORY, HistoryBudget, HistoryEntry, RoomHistory
from chatd.limits import DEFAULT_CONNECT_RATE, AddressRates
from chatd.ratelog import RateLimitedLog
from chatd.remote import RemoteUser, RemoteUsers
from chatd.rooms import (
    DEFAULT_MAX_ROOMS,
    DEFAULT_ROOM_EXPIRY,
    DEFAULT_ROOM_RATE,
    InvalidRoomName,
    Room,
    RoomCreation,
    normalize_room,
    room_key,
)
from chatd.store import IChatStore, MemoryStore, SavedRoom
from chatd.text import InvalidNickname, nick_key, nick_skeleton, normalize_nick

DEFAULT_ROOM = "#lobby"
DEFAULT_HISTORY = 100
DEFAULT_REPLAY = 20
SHUTDOWN_NOTICE = "Server is shutting down. Goodbye."


# Joins and leaves are announced in rooms of at most this many members. Filling a room of N
# people one by one costs N^2/2 notices: 19,000 people would mean 180 million lines, and in
# a room that size nobody reads them anyway.
DEFAULT_ANNOUNCE_LIMIT = 500

def _presence_rate(connect_rate: float) -> tuple[float, float]:
    """(rate, burst) of one address's join and leave notices, from --connect-rate."""
    return connect_rate / 10, connect_rate


class EventFormatter(Protocol):
    """Renders events as the bytes of one wire format."""

    def format(self, event: Event, at: float | None = None) -> bytes:
        """``at`` (seconds since the epoch) is given for users who asked for timestamps."""


class RuleKeeper(Protocol):
    """Keeps the moderation rules (chatd.moderation): told of every rule event, and of
    every kick, from whichever process."""

    def apply(self, event: RuleEvent | Kicked) -> None:
        """Takes the rule in (or out); called from ``ChatService._apply``."""

    def deliver(self, event: RuleEvent) -> None:
        """Acts on this process's users (a ban disconnects those it covers)."""

    def in_force(self) -> list[Banned | Muted]:
        """The bans and mutes in force, as the events that make them."""


class FrontEnd(Protocol):
    """One front-end (line, IRC, web): its wire format, and how it hands bytes to its own
    clients. Usually the factory that holds them (chatd/protocol.py is the pattern)."""

    @property
    def formatter(self) -> EventFormatter: ...

    def broadcast(self, data: bytes, clients: Sequence[ChatClient]) -> None:
        """Hands the same ``data`` to each of ``clients`` (all of this front-end)."""


class ChatClient(Protocol):
    """One connection, as the chat service sees it."""

    @property
    def frontend(self) -> FrontEnd: ...

    def send(self, data: bytes) -> None:
        """Queues already-encoded bytes for the peer."""

    def disconnect(self) -> None:
        """Closes the connection once what is queued has been sent."""

    def abort(self) -> None:
        """Closes the connection at once, dropping what is queued."""


# Every User's ignore list until their first /ignore.
_NOBODY: frozenset[User | RemoteUser] = frozenset()


class User:
    """Someone connected to this process."""

    __slots__ = ("__weakref__", "active_at", "away", "client", "host", "ignoring", "key", "nick",
                 "operator", "peer", "quiet", "reply_to", "rooms", "signon", "timestamps")

    def __init__(self, client: ChatClient, nick: str, peer: str) -> None:
        self.client = client
        self.nick = nick
        key = nick_key(nick)
        self.key = nick if key == nick else key  # one string, not two, for most nicks
        # The rooms the user is in, by room_key, in the order joined.
        self.rooms: dict[str, Room] = {}
        self.peer = peer
        # The IP address, parsed once: mute checks read it on every line a user says.
        self.host = peer_host(peer)
        self.away: str | None = None  # the reason, while away
        # Ignoring follows the person through renames and ends when they disconnect.
        # A WeakSet from the first /ignore on: one costs about 700 bytes, and the hot path's
        # "is anyone ignored" test on a frozenset does not call WeakSet.__len__.
        self.ignoring: weakref.WeakSet[User | RemoteUser] | frozenset[User | RemoteUser] = (
            _NOBODY)
        self.reply_to: User | RemoteUser | None = None  # who sent the last private message
        self.timestamps = False
        self.operator: str | None = None  # the operator name after a successful /oper
        # When they registered and when they last said something (IRC's WHOIS shows both).
        self.signon = self.active_at = 0.0
        # Comes and goes unannounced: their address connected faster than its notice rate.
        self.quiet = False

    @property
    def room(self) -> Room:
        """The room joined last: where a one-room front-end's user talks."""
        if not self.rooms:
            raise ChatError("you are not in any room; /join one")
        return next(reversed(self.rooms.values()))

    def rooms_by_name(self) -> list[Room]:
        return sorted(self.rooms.values(), key=lambda r: r.key)


__all__ = ["ChatClient", "ChatError", "ChatService", "EventFormatter", "FrontEnd", "User"]


class ChatService(service.Service):
    """Holds who is connected, the rooms they are in, and carries what they say."""

    log = Logger()
    reloadable_options = frozenset({"server-name", "announce-limit", "motd-lines", "topic",
                                    "max-rooms", "room-expiry", "room-rate", "ipv6-prefix",
                                    "connect-rate", "history-memory"})

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
        max_rooms: int = DEFAULT_MAX_ROOMS,
        room_expiry: float = DEFAULT_ROOM_EXPIRY,
        room_rate: float = DEFAULT_ROOM_RATE,
        ipv6_prefix: int = DEFAULT_IPV6_PREFIX,
        client_log: RateLimitedLog | None = None,
        connect_rate: float = DEFAULT_CONNECT_RATE,
        history_memory: int = DEFAULT_HISTORY_MEMORY,
    ) -> None:
        self.setName("chat")
        # Connects and leaves (with the leaver's reason) are lines a client controls.
        self.client_log = client_log if client_log is not None else RateLimitedLog(reactor)
        self.max_rooms = max_rooms  # 0: no limit
        self.room_expiry = room_expiry  # 0: empty rooms with a topic never expire
        self.room_creation = RoomCreation(room_rate, ipv6_prefix)
        self._expiry_sweep: task.LoopingCall | None = None
        self.ipv6_prefix = ipv6_prefix
        # Join and leave notices of one address: a tenth of --connect-rate a second, in
        # bursts of --connect-rate; connections past that come and go unannounced.
        self.presence = AddressRates(*_presence_rate(connect_rate))
        self.announce_limit = announce_limit
        self.configured_topic = topic  # the default room's, from --topic; None: leave it be
        self.reactor = reactor
        self.server_name = server_name
        # Which events are ours when a bus hands them back (see chatd/events.py).
        self.origin = uuid.uuid4().hex
        self.deliveries = 0  # events handed to a recipient (chatd_deliveries_total)
        self.bus: IEventBus = bus if bus is not None else LocalEventBus()
        self.bus.subscribe(self._received)
        # Chat lines held while a read is handled, to fan out as one block (chatd/fanout.py).
        self.chat_lines = ChatLineBatch(self._deliver_lines)
        self.shutdown_grace = shutdown_grace
        self.default_room = normalize_room(default_room)
        self.history_size = history_size
        # Every room's history counts against one bound (--history-memory, 0: none).
        self.history_budget = HistoryBudget(history_memory)
        self.replay_size = replay_size
        self.store: IChatStore = store if store is not None else MemoryStore()
        self.motd = list(motd)
        self.users: dict[str, User] = {}  # by nick_key
        self.look_alikes: dict[str, User] = {}  # by nick_skeleton: no two nicks look alike
        # Local users by the nicks they gave up lately: an operator elsewhere may have named
        # them by one (chatd/former_nicks.py).
        self.former_nicks: FormerNicks[User] = FormerNicks()
        self.rooms: dict[str, Room] = {}  # by room_key
        # Other chatd processes' users in our rooms (chatd/remote.py); empty without a cluster.
        self.remote = RemoteUsers()
        self.guest_numbers: Iterator[int] = itertools.count(1)  # a cluster sets its own
        self._shutting_down = False
        self._drained: defer.Deferred[None] | None = None
        # Policies (bans, mutes, kicks: chatd.moderation) plug in here.
        self.admission_checks: list[Callable[[str], None]] = []  # given the peer; may raise
        # Given a user, why they may not speak ("you are muted"), or None.
        self.speech_checks: list[Callable[[User], str | None]] = []
        # Given the address (None: not IP) and a nick_key about to be taken; may raise.
        self.nick_checks: list[Callable[[str | None, str], None]] = []
        # Where rule events (bans, mutes, kick delays) go, from any process.
        self.rules: RuleKeeper | None = None

    def reconfigure(self, options: Mapping[str, Any]) -> None:
        self.server_name = options["server-name"]
        self.announce_limit = options["announce-limit"]
        self.motd = list(options["motd-lines"])
        self.configured_topic = options["topic"]
        self.max_rooms = options["max-rooms"]
        self.room_expiry = options["room-expiry"]
        self.room_creation.per_minute = options["room-rate"]
        self.room_creation.ipv6_prefix = self.ipv6_prefix = options["ipv6-prefix"]
        self.presence.configure(*_presence_rate(options["connect-rate"]))
        self.history_budget.limit = options["history-memory"]
        self.history_budget.enforce()
        self._apply_configured_topic()
        self._start_expiry_sweep()

    def startService(self) -> None:
        """Brings back the saved rooms, topics and history before anyone connects."""
        super().startService()
        now = self.reactor.seconds()
        saved_rooms = self.store.open()
        for saved in saved_rooms:
            room = self._new_room(saved.name, saved)
            # Nobody is in it: it has been empty since its last activity, as far as we know.
            room.empty_since = room.last_activity() or now
        # A file written under a larger --history-memory (or before there was one) brings
        # back more than the bound: what loading it took away goes from the file too.
        for saved in saved_rooms:
            room = self.rooms[room_key(saved.name)]
            if len(room.history) < len(saved.history):
                self.store.trim_room(room, len(room.history))
        self._apply_configured_topic()
        self._start_expiry_sweep()

    def _apply_configured_topic(self) -> None:
        """Gives the default room the --topic topic, unless it already has it."""
        if self.configured_topic is None:
            return
        room = self._room(self.default_room)
        if room.topic != self.configured_topic:
            self._set_room_topic(room, self.configured_topic, self.server_name)

    # --- Events ----------------------------------------------------------------------------

    def publish(self, event: Event) -> None:
        """Applies one of our own events to our state at once, then puts it on the bus."""
        self._apply(event)
        self.bus.publish(event)

    def _received(self, event: Event) -> None:
        """An event from the bus: another process's change is applied first; then every
        event, ours included, goes to its local recipients."""
        if event.origin != self.origin:
            self._apply(event)
        self._deliver(event)

    def _apply(self, event: Event) -> None:
        """The one place shared state changes: from an event, whoever made it."""
        if isinstance(event, Said | Acted):
            self._record(self._room(event.room), event)
        elif isinstance(event, Joined):
            room = self._room(event.room)
            user = self._local(event)
            if user is not None:
                room.members.add(user)
                user.rooms[room.key] = room
            elif nick_key(event.nick) not in room.remote_members:
                room.remote_members[nick_key(event.nick)] = event.nick
                self.remote.joined(event.nick, event.where)
            room.empty_since = None
        elif isinstance(event, Left):
            left = self.rooms.get(room_key(event.room))
            if left is not None:
                self._leave(left, self._local(event), event.nick)
        elif isinstance(event, Kicked):
            # The user is ours if connected here, whichever process's operator kicked them.
            kicked = self.users.get(nick_key(event.nick))
            if kicked is not None:
                for room in list(kicked.rooms.values()):
                    self._leave(room, kicked, event.nick)
            elif self.holder(event.nick) is None:  # else ours, renamed: see _deliver_kick
                for room in [r for r in self.rooms.values()
                             if nick_key(event.nick) in r.remote_members]:
                    self._leave(room, None, event.nick)
            if self.rules is not None:
                self.rules.apply(event)
        elif isinstance(event, Banned | Unbanned | Muted | Unmuted):
            if self.rules is not None:
                self.rules.apply(event)
        elif isinstance(event, Renamed):
            user = (self.users.get(nick_key(event.old))
                    if event.origin == self.origin or event.forced else None)
            if user is not None:
                del self.users[user.key]
                if self.look_alikes.get(old := nick_skeleton(user.nick)) is user:
                    del self.look_alikes[old]
                self.former_nicks.gave_up(user.key, user, self.reactor.seconds())
                user.nick, user.key = event.new, nick_key(event.new)
                self.users[user.key] = user
                self.look_alikes[nick_skeleton(user.nick)] = user
            else:
                for room in self.rooms.values():
                    if room.remote_members.pop(nick_key(event.old), None) is not None:
                        room.remote_members[nick_key(event.new)] = event.new
                self.remote.renamed(event.old, event.new)
        elif isinstance(event, AwayChanged):
            away = (self.users.get(nick_key(event.nick)) if event.origin == self.origin
                    else self.remote.get(event.nick))
            if away is not None:
                away.away = event.reason or None
        elif isinstance(event, TopicChanged):
            room = self._room(event.room)
            room.topic, room.topic_by, room.topic_at = event.topic, event.nick, event.at
            self.store.save_room(room)
            room.persisted = True
        elif isinstance(event, Connected | Disconnected):
            # Another process's user came or went (ours are self.users, from register).
            if event.origin != self.origin:
                if isinstance(event, Connected):
                    self.remote.connected(event.nick, event.where)
                else:
                    self.remote.disconnected(event.nick)
        elif isinstance(event, Backfilled):
            self._record(self._room(event.room), event.line)

    def _leave(self, room: Room, user: User | None, nick: str) -> None:
        """``nick`` (our ``user``, or another process's when None) is no longer in ``room``."""
        if user is not None:
            room.members.discard(user)
            user.rooms.pop(room.key, None)
        elif room.remote_members.pop(nick_key(nick), None) is not None:
            self.remote.left(nick)
        if room.empty:
            room.empty_since = self.reactor.seconds()
            # Not while stopping: everyone leaves then, and the rooms stay for the restart.
            if not room.worth_keeping and not self._shutting_down:
                self._forget_room(room)

    def _local(self, event: Joined | Left) -> User | None:
        """The local user an event of ours is about; None for another process's user."""
        return self.users.get(nick_key(event.nick)) if event.origin == self.origin else None

    def _record(self, room: Room, line: ChatLine) -> None:
        if room.history.size:
            entry = HistoryEntry(line.at, line)
            if not room.persisted:
                self.store.save_room(room)
                room.persisted = True
            # The store first: appending may trim this room to --history-memory, and the
            # trim must count this line among those the file keeps.
            self.store.add_line(room, entry)
            room.history.append(entry)

    # --- Connections -----------------------------------------------------------------------

    def register(self, client: ChatClient, peer: str, nick: str | None = None) -> User:
        """Registers a new connection under ``nick``, or a fresh guest nick, in no room.

        Raises ChatError, saying why, when an admission check refuses ``peer`` or the nick
        is invalid or taken. Presence (joining rooms) comes after, from the front-end.
        """
        for check in self.admission_checks:
            check(peer)
        if nick is None:
            nick = self._next_guest_nick()
        else:
            nick = self.valid_free_nick(nick, None)
            self._nick_allowed(peer_host(peer), nick)
        user = User(client, nick, peer)
        user.signon = user.active_at = self.reactor.seconds()
        if user.host is not None:
            key = count_key(user.host, self.ipv6_prefix)
            user.quiet = not self.presence.take(key, self.reactor.seconds())
        self.users[user.key] = user
        self.look_alikes[nick_skeleton(nick)] = user
        self.client_log.emit(peer, "{nick} connected from {peer}", event="user.connected",
                             nick=nick)
        self.publish(Connected(nick, self.origin, where=self.where(user)))
        return user

    def connect(self, client: ChatClient, peer: str) -> User:
        """Registers a guest and puts them in the default room: the line front-end's way."""
        user = self.register(client, peer)
        self.join(user, self.default_room)
        return user

    def disconnect(self, user: User, reason: str) -> None:
        """Forgets a connection that has closed, for whatever reason, and says so."""
        if not self.is_connected(user):
            return
        self.client_log.emit(user.peer, "{nick} ({peer}) left: {reason}", event="user.left",
                             nick=user.nick, reason=reason)
        for room in list(user.rooms.values()):
            left = Left(room.name, user.nick, reason, quit=True, origin=self.origin,
                        quiet=user.quiet)
            if self._shutting_down:
                # Everyone is leaving: telling each of N users about N-1 others is O(N^2).
                self._apply(left)
            else:
                self.publish(left)
        del self.users[user.key]
        if self.look_alikes.get(skeleton := nick_skeleton(user.nick)) is user:
            del self.look_alikes[skeleton]
        gone = Disconnected(user.nick, self.origin)
        if self._shutting_down:
            self._apply(gone)
        else:
            self.publish(gone)
        drained = self._drained
        if self._shutting_down and not self.users and drained is not None and not drained.called:
            drained.callback(None)

    def _next_guest_nick(self) -> str:
        while True:
            nick = f"guest{next(self.guest_numbers)}"
            if (nick_key(nick) not in self.users and nick_skeleton(nick) not in self.look_alikes
                    and self.remote.look_alike(nick) is None):
                return nick

    def rename_to_guest(self, user: User) -> str:
        """Gives ``user`` a fresh guest nick (a cluster gave theirs to someone else too)."""
        new = self._next_guest_nick()
        self.publish(Renamed(user.nick, new, self.origin))
        return new

    # --- Rooms -----------------------------------------------------------------------------

    def _room(self, name: str) -> Room:
        """The room called ``name`` (already normalised), created if it does not exist."""
        room = self.rooms.get(room_key(name))
        return room if room is not None else self._new_room(name)

    def _new_room(self, name: str, saved: SavedRoom | None = None) -> Room:
        """Makes the room ``name`` (as the store had it, if ``saved``), its history counted
        against --history-memory."""
        if saved is None:
            room = Room(name, self.history_size, budget=self.history_budget)
        else:
            room = Room(name, self.history_size, saved.topic, saved.topic_by, saved.topic_at,
                        saved.history, persisted=True, budget=self.history_budget)
        self.rooms[room.key] = room

        def trimmed(history: RoomHistory) -> None:
            if room.persisted:
                self.store.trim_room(room, len(history))

        room.history.dropped = trimmed
        return room

    def _forget_room(self, room: Room) -> None:
        """Forgets ``room`` and its history, here and in the store (not the default room)."""
        if room.name == self.default_room or self.rooms.get(room.key) is not room:
            return
        del self.rooms[room.key]
        room.history.clear()
        if room.persisted:
            self.store.forget_room(room.name)

    def _may_create_room(self, user: User, name: str) -> None:
        """Raises ChatError unless ``user`` may make the new room ``name``: their address's
        room creation rate, then --max-rooms; at the limit, the room that has been empty
        longest is forgotten to make way, and only a server whose rooms all have someone
        in them refuses."""
        if room_key(name) == room_key(self.default_room):
            return
        if not self.room_creation.allow(user.host, self.reactor.seconds()):
            raise ChatError(
                f"cannot create {name}: your address may create "
                f"{self.room_creation.per_minute:g} rooms a minute; join an existing room "
                "or try again later"
            )
        if not self.max_rooms or len(self.rooms) < self.max_rooms:
            return
        empty = [r for r in self.rooms.values()
                 if r.empty_since is not None and r.name != self.default_room]
        if not empty:
            raise ChatError(
                f"cannot create {name}: the server has its limit of {self.max_rooms} rooms "
                "and someone is in each; join an existing room (/rooms)"
            )
        self._forget_room(min(empty, key=lambda r: r.empty_since or 0.0))

    def _start_expiry_sweep(self) -> None:
        """Checks for expired rooms every tenth of --room-expiry (at most hourly)."""
        if self._expiry_sweep is not None and self._expiry_sweep.running:
            self._expiry_sweep.stop()
        self._expiry_sweep = None
        if not self.room_expiry or not self.running:
            return
        self._expiry_sweep = task.LoopingCall(self.expire_rooms)
        self._expiry_sweep.clock = self.reactor
        self._expiry_sweep.start(min(self.room_expiry / 10, 3600.0), now=True)

    def expire_rooms(self) -> None:
        """Forgets, with their history, rooms empty for longer than --room-expiry."""
        if not self.room_expiry:
            return
        deadline = self.reactor.seconds() - self.room_expiry
        for room in list(self.rooms.values()):
            if room.empty_since is not None and room.empty_since <= deadline:
                self._forget_room(room)

    def _room_name(self, requested: str) -> str:
        """The name of the room ``requested`` means, as an existing room spells it."""
        try:
            name = normalize_room(requested)
        except InvalidRoomName as e:
            raise ChatError(str(e)) from None
        room = self.rooms.get(room_key(name))
        return room.name if room is not None else name

    def find_room(self, requested: str) -> Room:
        """An existing room by name, or ChatError."""
        name = self._room_name(requested)
        room = self.rooms.get(room_key(name))
        if room is None:
            raise ChatError(f"no such room {name}")
        return room

    def join(self, user: User, requested: str) -> Room:
        """Adds ``user`` to a room (created on first join); they stay in their others."""
        name = self._room_name(requested)
        if room_key(name) in user.rooms:
            raise ChatError(f"you are already in {user.rooms[room_key(name)].name}")
        if room_key(name) not in self.rooms:
            self._may_create_room(user, name)
        self.publish(Joined(name, user.nick, origin=self.origin, quiet=user.quiet,
                            where=self.where(user)))
        return user.rooms[room_key(name)]

    def part(self, user: User, requested: str, reason: str) -> None:
        """Takes ``user`` out of one of their rooms."""
        room = user.rooms.get(room_key(self._room_name(requested)))
        if room is None:
            raise ChatError(f"you are not in {requested}")
        reason = self.shown_reason(user, reason, "")
        self.publish(Left(room.name, user.nick, reason, origin=self.origin, quiet=user.quiet))

    def move(self, user: User, requested: str) -> Room:
        """Moves ``user`` out of every room into another: the line front-end's /join."""
        name = self._room_name(requested)
        if room_key(name) in user.rooms:
            raise ChatError(f"you are already in {user.rooms[room_key(name)].name}")
        if room_key(name) not in self.rooms:
            self._may_create_room(user, name)  # before leaving: a refusal leaves them be
        for old in list(user.rooms.values()):
            self.publish(Left(old.name, user.nick, f"joined {name}", origin=self.origin,
                              quiet=user.quiet))
        self.publish(Joined(name, user.nick, origin=self.origin, quiet=user.quiet,
                            where=self.where(user)))
        return user.rooms[room_key(name)]

    def rooms_by_name(self) -> list[Room]:
        return sorted(self.rooms.values(), key=lambda r: r.key)

    def rooms_of(self, user: User | RemoteUser) -> list[Room]:
        """The rooms ``user`` (of this process or another) is in, by name."""
        if isinstance(user, User):
            return user.rooms_by_name()
        return [r for r in self.rooms_by_name() if user.key in r.remote_members]

    def where(self, user: User) -> str:
        """Where ``user`` connects from, as rules by nickname key it: the IPv4 address or
        the IPv6 address's --ipv6-prefix block; "" when not IP."""
        return "" if user.host is None else count_key(user.host, self.ipv6_prefix)

    def forget_remote_users(self) -> None:
        """Forgets every other process's user (this process lost its way to them)."""
        self.remote.clear()
        for room in list(self.rooms.values()):
            if room.remote_members:
                room.remote_members.clear()
                if room.empty:
                    room.empty_since = self.reactor.seconds()
                    if not room.worth_keeping:
                        self._forget_room(room)

    def restore_room(self, name: str, topic: str, topic_by: str, topic_at: float,
                     remote_members: dict[str, str], history: list[HistoryEntry]) -> Room:
        """Takes in a room as a cluster's snapshot has it: its topic, the other processes'
        users in it (nick_key -> nick), and its history, which replaces this copy's."""
        room = self._room(name)
        room.topic, room.topic_by, room.topic_at = topic, topic_by, topic_at
        for nick in room.remote_members.values():
            self.remote.left(nick)
        room.remote_members = dict(remote_members)
        for nick in remote_members.values():
            self.remote.joined(nick)
        # The same history object, emptied and refilled: it stays counted against
        # --history-memory.
        room.history.clear()
        for entry in history:
            room.history.append(entry)
        return room

    def set_topic(self, user: User, topic: str, room: Room | None = None) -> None:
        """Sets the topic of ``room`` (one of the user's; by default their current one)."""
        self._may_speak(user, "the topic was not changed")
        self._set_room_topic(self._member_room(user, room), topic, user.nick)

    def _set_room_topic(self, room: Room, topic: str, by: str) -> None:
        self.publish(TopicChanged(room.name, by, topic, self.reactor.seconds(), self.origin))

    @staticmethod
    def _member_room(user: User, room: Room | None) -> Room:
        if room is None:
            return user.room
        if user.rooms.get(room.key) is not room:
            raise ChatError(f"you are not in {room.name}")
        return room

    def who(self, room: Room) -> list[User]:
        """The local members of ``room``, sorted by nickname."""
        return sorted(room.members, key=lambda u: u.key)

    def who_names(self, room: Room) -> list[str]:
        """Everyone in ``room``, in every process, sorted; ``(away)`` after local ones away."""
        local = [(u.key, f"{u.nick} (away)" if u.away is not None else u.nick)
                 for u in room.members]
        return [name for _, name in sorted([*local, *room.remote_members.items()])]

    def history(self, room: Room, count: int) -> list[HistoryEntry]:
        """The newest ``count`` lines of ``room`` (at most what is kept), oldest first."""
        return room.history.last(count)

    def replay(self, room: Room) -> list[HistoryEntry]:
        """What someone arriving in ``room`` is shown of its past."""
        return room.history.last(self.replay_size)

    # --- What users say --------------------------------------------------------------------

    def say(self, user: User, text: str, room: Room | None = None) -> None:
        """Says ``text`` in ``room`` (one of the user's; by default their current one)."""
        self._may_speak(user)
        room = self._member_room(user, room)
        self.publish(Said(room.name, user.nick, text, self.reactor.seconds(), self.origin))

    def act(self, user: User, text: str, room: Room | None = None) -> None:
        self._may_speak(user)
        room = self._member_room(user, room)
        self.publish(Acted(room.name, user.nick, text, self.reactor.seconds(), self.origin))

    def private_message(self, user: User, requested: str, text: str,
                        action: bool = False) -> User | RemoteUser:
        """Sends ``text`` to one user, of this process or another (``action``: a private
        /me); returns the recipient (whose ``away`` may be set)."""
        self._may_speak(user)
        target = self._other_user(user, requested, "message")
        self.publish(PrivateMessage(user.nick, target.nick, text, self.origin, action))
        return target

    def reply(self, user: User, text: str) -> User | RemoteUser:
        """Sends ``text`` to whoever sent ``user`` the last private message."""
        self._may_speak(user)
        target = user.reply_to
        if target is None:
            raise ChatError("nobody has sent you a private message yet")
        here = (self.remote.get(target.nick) is target if isinstance(target, RemoteUser)
                else self.is_connected(target))
        if not here:
            raise ChatError(f"{target.nick} is no longer connected")
        self.publish(PrivateMessage(user.nick, target.nick, text, self.origin))
        return target

    def _other_user(self, user: User, requested: str, verb: str) -> User | RemoteUser:
        """Someone else, connected here or (in a cluster) to another process."""
        target = self.users.get(nick_key(requested)) or self.remote.get(requested)
        if target is None:
            raise ChatError(f'no such user "{requested}"')
        if target is user:
            raise ChatError(f"you cannot {verb} yourself")
        return target

    # --- Personal settings -----------------------------------------------------------------

    def _may_speak(self, user: User, otherwise: str = "your line was not sent") -> None:
        """Raises ChatError (``why; otherwise``) when a speech check silences ``user``."""
        why = self._silenced(user)
        if why is not None:
            raise ChatError(f"{why}; {otherwise}")
        user.active_at = self.reactor.seconds()

    def _silenced(self, user: User) -> str | None:
        for check in self.speech_checks:
            why = check(user)
            if why is not None:
                return why
        return None

    def shown_reason(self, user: User, reason: str, instead: str = "quit") -> str:
        """The reason others see when ``user`` quits or parts: a silenced user's own words
        are not shown (``instead`` is). Front-ends pass the user's reason through this."""
        return instead if self._silenced(user) is not None else reason

    def _nick_allowed(self, host: str | None, nick: str) -> None:
        for check in self.nick_checks:
            check(host, nick_key(nick))

    def valid_free_nick(self, requested: str, user: User | RemoteUser | None) -> str:
        """The nickname ``requested`` means, if ``user`` (None: a newcomer) may take it;
        otherwise ChatError saying why. IRC asks before it registers (432 and 433)."""
        try:
            new = normalize_nick(requested)
        except InvalidNickname as e:
            raise ChatError(str(e)) from None
        holder = self.users.get(nick_key(new))
        if holder is not None and holder is not user:
            raise ChatError(f'nickname "{new}" is already taken')
        twin = self.look_alikes.get(nick_skeleton(new))
        if twin is not None and twin is not user:
            raise ChatError(f'nickname "{new}" looks too much like "{twin.nick}", who is here')
        elsewhere = self.remote.look_alike(new)
        if elsewhere is not None and elsewhere is not user:
            if elsewhere.key == nick_key(new):
                raise ChatError(f'nickname "{new}" is already taken')
            raise ChatError(f'nickname "{new}" looks too much like "{elsewhere.nick}", '
                            "who is here")
        return new

    def rename(self, user: User, requested: str) -> str:
        """Gives ``user`` a new nickname, or raises ChatError saying why not."""
        self._may_speak(user, "your nickname was not changed")
        new = self.valid_free_nick(requested, user)
        if new == user.nick:
            raise ChatError(f'you are already "{new}"')
        self._nick_allowed(user.host, new)
        self.publish(Renamed(user.nick, new, self.origin))
        return new

    def force_rename(self, user: User | RemoteUser, requested: str) -> str:
        """An operator's /rename of a user of this process or another: no speech or nick
        check, only a valid, free nickname."""
        new = self.valid_free_nick(requested, user)
        if new == user.nick:
            raise ChatError(f'{user.nick} is already "{new}"')
        self.publish(Renamed(user.nick, new, self.origin, forced=True))
        return new

    def stamp_for(self, user: User | None) -> float | None:
        """The time to prefix a line to ``user`` with, or None if they did not ask for it."""
        return self.reactor.seconds() if user is not None and user.timestamps else None

    def set_away(self, user: User, reason: str = "") -> None:
        """Marks ``user`` away; others, in any process, see ``reason`` (by default "away")
        when they write."""
        if reason:
            self._may_speak(user, "your away text was not set (/away alone still works)")
        self.publish(AwayChanged(user.nick, reason or "away", self.origin))

    def set_back(self, user: User) -> None:
        if user.away is None:
            raise ChatError("you are not marked as away")
        self.publish(AwayChanged(user.nick, "", self.origin))

    def ignore(self, user: User, requested: str) -> User | RemoteUser:
        target = self._other_user(user, requested, "ignore")
        if target in user.ignoring:
            raise ChatError(f"you are already ignoring {target.nick}")
        if not isinstance(user.ignoring, weakref.WeakSet):
            user.ignoring = weakref.WeakSet()
        user.ignoring.add(target)
        return target

    def unignore(self, user: User, requested: str) -> User | RemoteUser:
        target = self.users.get(nick_key(requested)) or self.remote.get(requested)
        if target is None or not isinstance(user.ignoring, weakref.WeakSet) or (
            target not in user.ignoring
        ):
            raise ChatError(f'you are not ignoring "{requested}"')
        user.ignoring.discard(target)
        return target

    def ignored(self, user: User) -> list[User | RemoteUser]:
        return sorted(user.ignoring, key=lambda u: u.key)

    # --- What operators do to users (chatd.moderation decides, these act) ----------------

    def find_user(self, nick: str) -> User:
        """The user connected here as ``nick``, or ChatError."""
        try:
            target = self.users.get(nick_key(normalize_nick(nick)))
        except InvalidNickname:
            target = None
        if target is None:
            raise ChatError(f'no one called "{nick}" is here')
        return target

    def find_anyone(self, nick: str) -> User | RemoteUser:
        """The user called ``nick``, connected here or (in a cluster) to another process,
        or ChatError."""
        try:
            return self.find_user(nick)
        except ChatError:
            target = self.remote.get(nick)
            if target is None:
                raise
            return target

    def holder(self, nick: str) -> User | None:
        """The user connected here as ``nick``, or who was moments ago (chatd/former_nicks.py:
        an operator of another process named them by it before it heard of the rename)."""
        key = nick_key(nick)
        user = self.users.get(key)
        if user is None and key not in self.remote.by_key:  # not someone else's now
            user = self.former_nicks.who(key, self.reactor.seconds())
        return user if user is not None and self.is_connected(user) else None

    def is_connected(self, user: User) -> bool:
        """Whether ``user`` is still connected (an answer that took a while may be late)."""
        return self.users.get(user.key) is user

    def connected(self) -> list[User]:
        """Everyone connected to this process."""
        return list(self.users.values())

    def notice(self, user: User, text: str) -> None:
        """Tells one user ``text``, rendered by their front-end like any announcement."""
        self.chat_lines.flush()  # after anything said before it (chatd/fanout.py)
        self._send((Announcement(text, self.origin),), (user,))

    def tell(self, user: User | RemoteUser, text: str) -> None:
        """Tells one user ``text``, whichever process they are connected to."""
        if isinstance(user, User):
            self.notice(user, text)
        else:
            self.publish(Announcement(text, self.origin, to=user.nick))

    def remove(self, user: User, why: str) -> None:
        """Takes ``user`` off the chat: they are told "You have been WHY", their rooms see
        them leave with WHY as the reason, and their connection closes."""
        self.notice(user, f"You have been {why}")
        self.disconnect(user, why)
        user.client.disconnect()

    # --- Fan-out ---------------------------------------------------------------------------

    def _deliver(self, event: Event) -> None:
        """Picks the local recipients of ``event`` and sends it to them."""
        if isinstance(event, Said | Acted):
            if not self.chat_lines.hold(event):
                self._deliver_lines([event])
            return
        # Held chat lines happened first: they go out first.
        self.chat_lines.flush()
        if isinstance(event, Kicked):
            self._deliver_kick(event)
        elif isinstance(event, Banned | Unbanned | Muted | Unmuted):
            if self.rules is not None:
                self.rules.deliver(event)
        elif isinstance(event, Announcement) and event.to:
            told = self.users.get(nick_key(event.to))
            if told is not None:
                self._send((event,), (told,))
        elif isinstance(event, PrivateMessage):
            target = self.users.get(nick_key(event.recipient))
            author = self._author(self._sender(event.sender, event.origin), event.sender,
                                  event.origin)
            if target is not None and (author is None or author not in target.ignoring):
                target.reply_to = author
                self._send((event,), (target,))
        elif isinstance(event, Joined | Left):
            room = self.rooms.get(room_key(event.room))
            if room is None or event.quiet:
                return
            # The room's size with the mover in it (a leaver has already left the set), so
            # a join and its leave are either both announced or both not.
            size = room.size + isinstance(event, Left)
            if not (self.announce_limit and size > self.announce_limit):
                self._send((event,), room.members, skip=self._sender(event.nick, event.origin))
        elif isinstance(event, TopicChanged | RoomNotice):
            room = self.rooms.get(room_key(event.room))
            if room is not None:
                self._send((event,), room.members)
        elif isinstance(event, Renamed):
            renamed = (self.users.get(nick_key(event.new)) if event.forced
                       else self._sender(event.new, event.origin))
            if renamed is not None:
                rooms = list(renamed.rooms.values())
            else:
                rooms = [r for r in self.rooms.values() if nick_key(event.new) in r.remote_members]
            members = rooms[0].members if len(rooms) == 1 else set().union(
                *(r.members for r in rooms))
            self._send((event,), members)
        elif isinstance(event, AwayChanged | Connected | Disconnected | Backfilled):
            pass  # shown to nobody: /msg tells the sender; a RoomNotice tells of backfills
        else:
            self._send((event,), self.users.values())

    def _deliver_kick(self, event: Kicked) -> None:
        """Each room the user was in sees them kicked from it; the user, if connected
        here, is told and disconnected."""
        user = self.holder(event.nick)
        # Renamed while the kick was on its way (ours, under another nick now): their rooms
        # see them leave under that nick instead, as for any disconnect (Left events).
        renamed = user is not None and user.key != nick_key(event.nick)
        for name in [] if renamed else event.rooms.split():
            room = self.rooms.get(room_key(name))
            if room is not None:
                self._send((dataclasses.replace(event, room=room.name),), room.members)
        if user is not None:
            self._send((event,), (user,))
            self.disconnect(user, f"kicked by {event.by}: {event.reason}")
            user.client.disconnect()

    def _deliver_lines(self, lines: list[ChatLine]) -> None:
        """One speaker's run of lines in one room (often just one line) to the room."""
        first = lines[0]
        room = self.rooms.get(room_key(first.room))
        if room is not None:
            sender = self._sender(first.nick, first.origin)
            self._send(lines, room.members, skip=sender,
                       unless_ignoring=self._author(sender, first.nick, first.origin))

    def deliver_held(self) -> None:
        """Delivers the chat lines held for this read now: before a command runs, since a
        command may write to other users directly."""
        self.chat_lines.flush()

    def _author(self, sender: User | None, nick: str, origin: str) -> User | RemoteUser | None:
        """Who said something, to check ignoring against: our own sender, or the other
        process's user."""
        return sender if origin == self.origin else self.remote.get(nick)

    def _sender(self, nick: str, origin: str) -> User | None:
        """The local user who made an event of ours; None for another process's."""
        return self.users.get(nick_key(nick)) if origin == self.origin else None

    def _send(
        self,
        events: Sequence[Event],
        recipients: Iterable[User],
        skip: User | None = None,
        unless_ignoring: User | RemoteUser | None = None,
    ) -> None:
        """Picks the recipients, renders ``events`` once per front-end as one block (and
        once more for those who want the time), and has each front-end hand the bytes to
        its clients."""
        plain: dict[FrontEnd, list[ChatClient]] = {}
        stamped: dict[FrontEnd, list[ChatClient]] = {}
        last: FrontEnd | None = None  # recipients mostly share one front-end: skip the lookup
        clients: list[ChatClient] = []
        # Gathered first: a send may close a connection, and that changes the member set.
        for user in recipients:
            if user is skip:
                continue
            # (None is in nobody's ignore list.)
            if user.ignoring and unless_ignoring in user.ignoring:
                continue
            client = user.client
            if user.timestamps:
                stamped.setdefault(client.frontend, []).append(client)
                continue
            frontend = client.frontend
            if frontend is not last:
                clients = plain.setdefault(frontend, [])
                last = frontend
            clients.append(client)
        # For the metrics: each event to each recipient, counted once per block.
        self.deliveries += len(events) * (
            sum(map(len, plain.values())) + sum(map(len, stamped.values())))
        for frontend, clients in plain.items():
            frontend.broadcast(_render(frontend.formatter, events, None), clients)
        if stamped:
            now = self.reactor.seconds()
            for frontend, clients in stamped.items():
                frontend.broadcast(_render(frontend.formatter, events, now), clients)

    # --- Shutdown --------------------------------------------------------------------------

    def stopService(self) -> defer.Deferred[None]:
        """Says goodbye to everyone, closes every connection, waits a little for them, and
        writes what the store has queued."""
        super().stopService()
        self._shutting_down = True
        if self._expiry_sweep is not None and self._expiry_sweep.running:
            self._expiry_sweep.stop()
        self.client_log.stop()
        if not self.users:
            return self.store.close()
        self.publish(Announcement(SHUTDOWN_NOTICE, self.origin))
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


def _render(formatter: EventFormatter, events: Sequence[Event], at: float | None) -> bytes:
    """One block: every event in order, each in the front-end's wire format."""
    if len(events) == 1:
        return formatter.format(events[0], at)
    return b"".join([formatter.format(event, at) for event in events])

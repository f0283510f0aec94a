"""The chat service: users, nicknames, rooms and fan-out. It knows nothing about sockets.

Front-ends (the line protocol today; TLS, IRC, WebSocket later) adapt a connection to the
``ChatClient`` protocol below and call the service's methods. The service publishes every
event on its bus and, when the bus hands the event back, renders it once per wire format
and gives the same bytes to every local recipient.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from twisted.application import service
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from chatd.events import (
    Acted,
    Announcement,
    Event,
    IEventBus,
    Joined,
    Left,
    LocalEventBus,
    Renamed,
    Said,
)
from chatd.text import InvalidNickname, nick_key, normalize_nick

DEFAULT_ROOM = "#lobby"
SHUTDOWN_NOTICE = "Server is shutting down. Goodbye."


class ChatError(Exception):
    """A request the service refuses; the message is meant for the one who asked."""


class EventFormatter(Protocol):
    """Renders events as the bytes of one wire format."""

    def format(self, event: Event) -> bytes: ...


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

    __slots__ = ("client", "key", "nick", "operator", "peer", "room")

    def __init__(self, client: ChatClient, nick: str, room: str, peer: str) -> None:
        self.client = client
        self.nick = nick
        self.key = nick_key(nick)
        self.room = room
        self.peer = peer
        self.operator: str | None = None  # the operator name after a successful /oper


class ChatService(service.Service):
    """Holds who is connected and carries what they say to everyone else."""

    log = Logger()
    reloadable_options = frozenset({"server-name"})

    def __init__(
        self,
        reactor: IReactorTime,
        server_name: str = "chatd",
        bus: IEventBus | None = None,
        shutdown_grace: float = 3.0,
    ) -> None:
        self.setName("chat")
        self.reactor = reactor
        self.server_name = server_name
        self.bus: IEventBus = bus if bus is not None else LocalEventBus()
        self.bus.subscribe(self._deliver)
        self.shutdown_grace = shutdown_grace
        self.users: dict[str, User] = {}  # by nick_key
        self._guest_numbers = itertools.count(1)
        self._shutting_down = False
        self._drained: defer.Deferred[None] | None = None
        # Policies (bans, mutes) plug in here; each check raises ChatError to refuse.
        self.admission_checks: list[Callable[[str], None]] = []  # given the peer
        self.speech_checks: list[Callable[[User], None]] = []

    def reconfigure(self, options: Mapping[str, Any]) -> None:
        self.server_name = options["server-name"]

    # --- Connections -----------------------------------------------------------------------

    def connect(self, client: ChatClient, peer: str) -> User:
        """Registers a new connection under a fresh guest nickname and announces it.

        Raises ChatError, saying why, when an admission check refuses ``peer``.
        """
        for check in self.admission_checks:
            check(peer)
        nick = self._next_guest_nick()
        user = User(client, nick, DEFAULT_ROOM, peer)
        self.users[user.key] = user
        self.log.info("{nick} connected from {peer}", nick=nick, peer=peer)
        self.bus.publish(Joined(user.room, nick))
        return user

    def disconnect(self, user: User, reason: str) -> None:
        """Forgets a connection that has closed, for whatever reason, and says so."""
        if self.users.get(user.key) is not user:
            return
        del self.users[user.key]
        self.log.info("{nick} ({peer}) left: {reason}", nick=user.nick, peer=user.peer,
                      reason=reason)
        if self._shutting_down:
            # Everyone is leaving: telling each of N users about N-1 others is O(N^2) for nothing.
            if not self.users and self._drained is not None and not self._drained.called:
                self._drained.callback(None)
            return
        self.bus.publish(Left(user.room, user.nick, reason))

    def _next_guest_nick(self) -> str:
        while True:
            nick = f"guest{next(self._guest_numbers)}"
            if nick_key(nick) not in self.users:
                return nick

    # --- What users do ---------------------------------------------------------------------

    def say(self, user: User, text: str) -> None:
        self._may_speak(user)
        self.bus.publish(Said(user.room, user.nick, text))

    def act(self, user: User, text: str) -> None:
        self._may_speak(user)
        self.bus.publish(Acted(user.room, user.nick, text))

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
        if new == user.nick:
            raise ChatError(f'you are already "{new}"')
        old = user.nick
        del self.users[user.key]
        user.nick, user.key = new, key
        self.users[key] = user
        self.bus.publish(Renamed(old, new))
        return new

    def who(self) -> list[User]:
        """Everyone connected, sorted by nickname."""
        return sorted(self.users.values(), key=lambda u: u.key)

    # --- Fan-out ---------------------------------------------------------------------------

    def _deliver(self, event: Event) -> None:
        """Renders ``event`` once per wire format and sends it to each local recipient."""
        if isinstance(event, Said | Acted):
            sender = event.nick
            recipients: Any = (u for u in self.users.values() if u.nick != sender)
        elif isinstance(event, Joined | Left):
            joiner = event.nick
            recipients = (u for u in self.users.values() if u.nick != joiner)
        else:
            recipients = self.users.values()
        rendered: dict[EventFormatter, bytes] = {}
        for user in recipients:
            client = user.client
            data = rendered.get(client.formatter)
            if data is None:
                data = rendered[client.formatter] = client.formatter.format(event)
            client.send(data)

    # --- Shutdown --------------------------------------------------------------------------

    def stopService(self) -> defer.Deferred[None] | None:
        """Says goodbye to everyone, closes every connection, and waits a little for them."""
        super().stopService()
        self._shutting_down = True
        if not self.users:
            return None
        self.bus.publish(Announcement(SHUTDOWN_NOTICE))
        self._drained = defer.Deferred()
        for user in list(self.users.values()):
            user.client.disconnect()
        timer = self.reactor.callLater(self.shutdown_grace, self._abort_stragglers)
        self._drained.addBoth(lambda result: timer.cancel() if timer.active() else None)
        return self._drained

    def _abort_stragglers(self) -> None:
        """Peers that do not read their goodbye do not get to hold up the shutdown."""
        for user in list(self.users.values()):
            user.client.abort()
        if self._drained is not None and not self._drained.called:
            self._drained.callback(None)

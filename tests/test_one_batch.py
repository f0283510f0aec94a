"""One output batch for the whole chat side (chatd/tap.py): a read on any front-end, a
flood-gate release, or a run of messages from Redis is one write to each recipient on
every front-end, and every recipient still sees everything in the order it happened."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from chatd import tap
from chatd.backpressure import DEFAULT_SEND_BUFFER
from chatd.cluster import codec
from chatd.cluster.address import parse_redis_url
from chatd.cluster.bus import RedisBus
from chatd.echo import EchoFactory
from chatd.events import Connected, Event, Joined, PrivateMessage, Said
from chatd.irc.factory import IRCFactory
from chatd.output import OutputBatch
from chatd.policy import EdgePolicy
from chatd.protocol import ChatFactory
from chatd.service import ChatService
from chatd.store import MemoryStore
from chatd.web import frontend as web_frontend
from chatd.web.socket import ChatSocketFactory
from tests.test_web_socket import client_frame, handshake, parse_frames

ROOM = "#lobby"


class User:
    """One connected client of any front-end; ``writes``: what its transport was handed,
    one entry per write."""

    def __init__(self, kind: str, proto: Any, transport: StringTransport) -> None:
        self.kind, self.proto, self.transport = kind, proto, transport
        self.writes: list[bytes] = []
        real = transport.write

        def counting(data: bytes) -> None:
            self.writes.append(data)
            real(data)

        transport.write = counting  # type: ignore[method-assign]

    def read(self, data: bytes) -> None:
        self.proto.dataReceived(data)

    def forget(self) -> None:
        self.writes.clear()
        self.transport.clear()

    def said(self) -> str:
        """Everything it was handed, as text (web frames unwrapped)."""
        data = b"".join(self.writes)
        if self.kind == "web":
            data = b"\n".join(payload for _, payload in parse_frames(data))
        return data.decode()


def says(kind: str, text: str) -> bytes:
    """The bytes a client of ``kind`` sends to say ``text`` in the room."""
    if kind == "irc":
        return f"PRIVMSG {ROOM} :{text}\r\n".encode()
    if kind == "web":
        return client_frame(text.encode())
    return f"{text}\n".encode()


def whispers(kind: str, nick: str, text: str) -> bytes:
    """The bytes a client of ``kind`` sends for a private message."""
    if kind == "irc":
        return f"PRIVMSG {nick} :{text}\r\n".encode()
    return says(kind, f"/msg {nick} {text}")


class Chat:
    """Line, IRC and web front-ends on one service, sharing one output batch as makeService
    builds them, and one user on each in #lobby: bob (line), alice (IRC), carol (web)."""

    def __init__(self, bus: RedisBus | None = None, **policy: Any) -> None:
        self.clock = Clock()
        self.service = ChatService(self.clock, bus=bus, store=MemoryStore())
        self.batch = OutputBatch(self.service.chat_lines)
        # A send buffer as the daemon's: with none (0) the speaker's own replies go out line
        # by line (Edge._after_line), which is not what is tested here.
        edge = EdgePolicy(**{"send_buffer": DEFAULT_SEND_BUFFER, **policy})
        self.line = ChatFactory(self.service, edge, output_batch=self.batch)
        commands = self.line.commands
        self.irc = IRCFactory(self.service, edge, commands=commands, output_batch=self.batch)
        self.web = ChatSocketFactory(self.service, edge, commands=commands, clock=self.clock,
                                     output_batch=self.batch)
        self.web.setProtocolOptions(openHandshakeTimeout=0)  # its timer is the reactor's
        self._port = 42000
        self.users = {"line": self._line("bob"), "irc": self._irc("alice"),
                      "web": self._web("carol")}
        for user in self.users.values():
            user.forget()

    def _connect(self, kind: str, factory: Any) -> User:
        self._port += 1
        peer = IPv4Address("TCP", "127.0.0.1", self._port)
        proto = factory.buildProtocol(peer)
        transport = StringTransport(peerAddress=peer)
        proto.makeConnection(transport)
        return User(kind, proto, transport)

    def _line(self, nick: str) -> User:
        user = self._connect("line", self.line)
        user.read(f"/nick {nick}\n".encode())
        return user

    def _irc(self, nick: str) -> User:
        user = self._connect("irc", self.irc)
        user.read(f"NICK {nick}\r\nUSER {nick} 0 * :{nick}\r\nJOIN {ROOM}\r\n".encode())
        return user

    def _web(self, nick: str) -> User:
        user = self._connect("web", self.web)
        user.read(handshake())
        user.read(client_frame(f"/nick {nick}".encode()))
        return user

    def nick(self, kind: str) -> str:
        user = self.users[kind].proto.user
        assert user is not None
        return str(user.nick)


def in_order(text: str, words: list[str]) -> bool:
    """Each of ``words`` is in ``text``, each after the one before."""
    at = 0
    for word in words:
        found = text.find(word, at)
        if found < 0:
            return False
        at = found + len(word)
    return True


@pytest.mark.parametrize("speaker", ["line", "irc", "web"])
def test_a_paste_on_any_front_end_is_one_write_to_each_user_on_every_front_end(
        speaker: str) -> None:
    chat = Chat(flood_rate=0)
    others = [kind for kind in chat.users if kind != speaker]
    # Runs of lines broken by private messages: four fan-outs, not one held run.
    paste = says(speaker, "one") + says(speaker, "two")
    for kind in others:
        paste += whispers(speaker, chat.nick(kind), f"psst-{kind}") + says(speaker, f"and-{kind}")
    chat.users[speaker].read(paste)
    for kind in others:
        user = chat.users[kind]
        assert len(user.writes) == 1, (kind, user.writes)
        expected = ["one", "two", f"psst-{others[0]}" if kind == others[0] else "",
                    f"and-{others[0]}", f"psst-{kind}" if kind == others[1] else "",
                    f"and-{others[1]}"]
        assert in_order(user.said(), [word for word in expected if word]), user.said()
    speaker_got = chat.users[speaker]  # not their own lines; any "sent" replies as one write
    assert len(speaker_got.writes) <= 1 and "one" not in speaker_got.said()


def test_one_flood_gate_release_is_one_write_to_each_user_on_every_front_end() -> None:
    chat = Chat(flood_rate=10, flood_burst=3, flood_queue=50)
    chat.clock.advance(10)  # the burst is back
    alice, bob, carol = chat.users["irc"], chat.users["line"], chat.users["web"]
    for n in range(3):  # three releases of three: a line, a whisper to bob, a line
        alice.read(says("irc", f"a{n}") + whispers("irc", "bob", f"w{n}") + says("irc", f"b{n}"))
    assert len(bob.writes) == 1 and len(carol.writes) == 1  # the burst, in the read
    assert in_order(bob.said(), ["a0", "w0", "b0"]) and in_order(carol.said(), ["a0", "b0"])
    chat.clock.advance(0.3)  # three tokens: one release lets three through
    assert len(bob.writes) == 2 and len(carol.writes) == 2
    assert in_order(bob.said(), ["a0", "w0", "b0", "a1", "w1", "b1"])


def _message(seq: int, event: Event) -> bytes:
    """One pub/sub message on the events channel, as Redis sends it to the subscriber."""
    payload = f"{seq} {event.origin} ".encode() + codec.encode(event)
    return b"*3\r\n$7\r\nmessage\r\n$12\r\nchatd:events\r\n$%d\r\n%s\r\n" % (len(payload),
                                                                            payload)


def test_a_run_of_redis_messages_in_one_read_is_one_write_to_each_user() -> None:
    from twisted.internet import reactor

    # Never started: no connection to Redis is made; the subscriber is fed by hand.
    bus = RedisBus(reactor, parse_redis_url("redis://127.0.0.1:1"), history_size=10)
    chat = Chat(bus=bus, flood_rate=0)
    bus.origin = chat.service.origin  # as ClusterMember sets it
    bus.output_batch = chat.batch  # as makeService sets it
    subscriber = bus.link._build_subscriber()  # the channel's connection, without Redis
    subscriber.makeConnection(StringTransport())
    there = "other-process"
    events: list[Event] = [
        Connected("zed", origin=there), Joined(ROOM, "zed", origin=there),
        Said(ROOM, "zed", "first", origin=there), Said(ROOM, "zed", "second", origin=there),
        PrivateMessage("zed", "bob", "for-bob", origin=there),
        PrivateMessage("zed", "alice", "for-alice", origin=there),
        Said(ROOM, "zed", "third", origin=there),
    ]
    subscriber.dataReceived(b"".join(_message(n, e) for n, e in enumerate(events, 1)))
    for kind, mine in (("line", "for-bob"), ("irc", "for-alice"), ("web", "")):
        user = chat.users[kind]
        assert len(user.writes) == 1, (kind, user.writes)
        words = ["zed", "first", "second", mine, "third"]
        assert in_order(user.said(), [word for word in words if word]), user.said()


def test_make_service_hands_one_batch_to_every_chat_front_end_and_the_bus(
        monkeypatch: pytest.MonkeyPatch) -> None:
    built: dict[str, Any] = {}

    def recording(name: str, cls: type[Any]) -> Callable[..., Any]:
        def build(*args: Any, **kwargs: Any) -> Any:
            built[name] = cls(*args, **kwargs)
            return built[name]
        return build

    monkeypatch.setattr(tap, "ChatFactory", recording("line", ChatFactory))
    monkeypatch.setattr(tap, "IRCFactory", recording("irc", IRCFactory))
    monkeypatch.setattr(web_frontend, "ChatSocketFactory", recording("web", ChatSocketFactory))
    monkeypatch.setattr(tap, "EchoFactory", recording("echo", EchoFactory))
    options = tap.Options()
    options.parseOptions(["--listen", "tcp:0", "--irc", "tcp:0", "--web", "tcp:0",
                          "--echo", "tcp:0", "--redis", "redis://127.0.0.1:1"])
    top = tap.makeService(options)
    chat = top.getServiceNamed("chat")
    assert isinstance(chat, ChatService) and isinstance(chat.bus, RedisBus)
    batch = chat.bus.output_batch
    assert isinstance(batch, OutputBatch)
    assert all(built[name].output_batch is batch for name in ("line", "irc", "web"))
    assert built["echo"].output_batch is not batch  # an echo goes out at once
    with batch:  # it holds the service's chat lines, delivered as it closes
        assert chat.chat_lines.hold(Said(ROOM, "x", "y"))
    assert not chat.chat_lines._lines

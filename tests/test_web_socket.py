"""The web socket protocol on in-memory transports, with a fake clock: the handshake, the
JSON it sends, lines in, commands, and the edge's limits."""

from __future__ import annotations

import base64
import json
import os
import struct
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from chatd.frontend import FrontEndClients
from chatd.policy import EdgePolicy
from chatd.service import ChatService
from chatd.version import VERSION
from chatd.web.socket import ChatSocketFactory, ChatSocketProtocol, frame

HOST = "chat.example:8080"


def handshake(origin: str | None = f"http://{HOST}") -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        "GET /ws HTTP/1.1", f"Host: {HOST}", "Upgrade: websocket", "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13",
    ]
    if origin is not None:
        lines.append(f"Origin: {origin}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def client_frame(payload: bytes, opcode: int = 1) -> bytes:
    """A masked client frame, as RFC 6455 requires of clients."""
    mask = os.urandom(4)
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, size)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return header + mask + masked


def parse_frames(data: bytes) -> list[tuple[int, bytes]]:
    """Unmasked server frames: (opcode, payload) each; every byte must belong to one."""
    frames = []
    while data:
        first, second = data[0], data[1]
        assert first & 0x80 and not second & 0x80, "server frames are final and unmasked"
        size, offset = second & 0x7F, 2
        if size == 126:
            size, offset = struct.unpack("!H", data[2:4])[0], 4
        elif size == 127:
            size, offset = struct.unpack("!Q", data[2:10])[0], 10
        assert len(data) >= offset + size, "a frame cut short"
        frames.append((first & 0x0F, data[offset:offset + size]))
        data = data[offset + size:]
    return frames


class SocketTransport(StringTransport):
    """A StringTransport that, like a TCP transport, lets a producer be unregistered when
    none is (autobahn does that as it drops a connection after the close handshake)."""

    def unregisterProducer(self) -> None:
        if self.producer is not None:
            super().unregisterProducer()


class Browser:
    """One socket on a StringTransport: what the page would send and receive."""

    def __init__(self, chat: MemorySockets, origin: str | None = f"http://{HOST}") -> None:
        chat.port += 1
        peer = IPv4Address("TCP", "127.0.0.1", chat.port)
        proto = chat.factory.buildProtocol(peer)
        assert isinstance(proto, ChatSocketProtocol)
        self.proto = proto
        self.transport = SocketTransport(peerAddress=peer)
        proto.makeConnection(self.transport)
        proto.dataReceived(handshake(origin))
        head, _, rest = self.transport.value().partition(b"\r\n\r\n")
        self.status = head.split(b"\r\n")[0]
        self.transport.clear()
        self._rest = rest

    def send(self, line: str) -> None:
        self.proto.dataReceived(client_frame(line.encode()))

    def take(self) -> list[dict[str, Any]]:
        """Every JSON message since the last take."""
        data, self._rest = self._rest + self.transport.value(), b""
        self.transport.clear()
        messages = []
        for opcode, payload in parse_frames(data):
            assert opcode == 1, "text frames only"
            messages.append(json.loads(payload))
        return messages

    def texts(self) -> list[str]:
        return [m.get("text", "") for m in self.take()]


class MemorySockets:
    def __init__(self, **policy: Any) -> None:
        self.clock = Clock()
        self.service = ChatService(self.clock)
        self.factory = ChatSocketFactory(self.service, EdgePolicy(**policy), clock=self.clock)
        # autobahn's handshake timer runs on the global reactor: not in unit tests.
        self.factory.setProtocolOptions(openHandshakeTimeout=0)
        self.port = 50000

    def open(self, origin: str | None = f"http://{HOST}") -> Browser:
        return Browser(self, origin)


def test_a_foreign_origin_gets_403_and_never_becomes_a_user() -> None:
    chat = MemorySockets()
    page = chat.open(origin="http://evil.example")
    assert page.status.startswith(b"HTTP/1.1 403")
    assert chat.service.users == {}
    assert page.transport.disconnecting


def test_the_own_origin_opens_with_the_greeting_then_who_and_where() -> None:
    chat = MemorySockets()
    page = chat.open()
    assert page.status == b"HTTP/1.1 101 Switching Protocols"
    messages = page.take()
    assert messages[0] == {"type": "notice", "text": "Welcome to chatd! You are guest1. "
                                                     "Type /help for a list of commands. "
                                                     f"(chatd {VERSION})"}
    assert messages[1:] == [
        {"type": "state", "nick": "guest1", "room": "#lobby", "server": "chatd"},
        {"type": "members", "room": "#lobby", "members": [{"nick": "guest1", "away": False}]},
        {"type": "rooms", "rooms": [{"name": "#lobby", "users": 1, "topic": None}]},
    ]
    assert chat.service.users["guest1"].room.name == "#lobby"


def test_a_bot_without_origin_is_let_in() -> None:
    page = MemorySockets().open(origin=None)
    assert page.status == b"HTTP/1.1 101 Switching Protocols"


def test_a_line_reaches_the_room_as_one_frame_rendered_once() -> None:
    chat = MemorySockets()
    alice, bob, carol = chat.open(), chat.open(), chat.open()
    for page in (alice, bob, carol):
        page.take()
    alice.send("hello <b>all</b>")
    assert alice.take() == []  # your own line is not sent back
    said = {"type": "said", "room": "#lobby", "nick": "guest1", "text": "hello <b>all</b>"}
    assert bob.take() == [said]
    assert carol.take() == [said]


def test_commands_run_from_the_one_table_and_update_the_page() -> None:
    chat = MemorySockets()
    alice, bob = chat.open(), chat.open()
    alice.take()
    alice.send("/nick alice")
    assert alice.take() == [
        {"type": "renamed", "old": "guest1", "new": "alice"},
        {"type": "state", "nick": "alice", "room": "#lobby", "server": "chatd"},
    ]
    bob.take()
    bob.send("/who")
    assert bob.take()[-1] == {"type": "members", "room": "#lobby", "members": [
        {"nick": "alice", "away": False}, {"nick": "guest2", "away": False}]}
    bob.send("/join #dev")
    messages = bob.take()
    assert {"type": "state", "nick": "guest2", "room": "#dev", "server": "chatd"} in messages
    assert messages[-1]["type"] == "rooms"
    bob.send("/msg alice hi")
    assert bob.take() == [{"type": "sent", "to": "alice", "text": "hi"}]
    assert alice.take()[-1] == {"type": "private", "from": "guest2", "to": "alice",
                                "text": "hi"}
    alice.send("/bogus")
    assert alice.texts() == ["unknown command /bogus; type /help for a list of commands"]
    alice.send("//not a command")
    assert bob.take() == []  # bob is in #dev now


def test_quit_says_goodbye_then_closes_with_1000() -> None:
    chat = MemorySockets()
    alice, bob = chat.open(), chat.open()
    alice.take()
    bob.take()
    alice.send("/quit bye")
    frames = parse_frames(alice.transport.value())
    assert [opcode for opcode, _ in frames] == [1, 8]  # the goodbye, then a close frame
    assert json.loads(frames[0][1])["text"] == "Goodbye."
    assert frames[1][1] == struct.pack("!H", 1000) + b"quit"
    assert alice.transport.disconnecting
    # The page answers with its own close frame: the end of the handshake, not answered
    # again (a second close frame would break RFC 6455).
    alice.transport.clear()
    alice.proto.dataReceived(client_frame(struct.pack("!H", 1000), opcode=8))
    assert alice.transport.value() == b""
    alice.proto.connectionLost(Failure(ConnectionDone()))
    assert bob.take() == [{"type": "left", "room": "#lobby", "nick": "guest1",
                           "reason": "bye", "quit": True}]


def test_a_message_over_max_line_is_refused_and_the_socket_stays() -> None:
    chat = MemorySockets(max_line=20)
    alice, bob = chat.open(), chat.open()
    alice.take()
    bob.take()
    bob.send("x" * 21)
    assert bob.texts() == ["message too long (the limit is 20 bytes); it was not sent"]
    bob.send("y" * 20)
    assert alice.take() == [{"type": "said", "room": "#lobby", "nick": "guest2",
                             "text": "y" * 20}]
    assert not bob.transport.disconnecting


def test_a_binary_message_is_refused() -> None:
    chat = MemorySockets()
    page = chat.open()
    page.take()
    page.proto.dataReceived(client_frame(b"\x00\x01", opcode=2))
    assert page.texts() == [
        "binary messages are not accepted; send each line as a text message"]


def test_a_reload_reaches_a_live_socket() -> None:
    chat = MemorySockets(max_line=100)
    page = chat.open()
    page.take()
    chat.factory.policy.max_line = 10
    chat.factory.policy_changed()
    page.send("x" * 11)
    assert page.texts() == ["message too long (the limit is 10 bytes); it was not sent"]
    assert page.proto.maxMessagePayloadSize == 64 * 1024


def test_persistent_flooding_is_cut_off() -> None:
    chat = MemorySockets(flood_rate=1, flood_burst=1, flood_queue=2)
    page = chat.open()
    page.take()
    for _ in range(12):
        for n in range(5):
            page.send(f"line {n}")
        chat.clock.advance(1)
    texts = page.texts()
    assert texts[0].startswith("you are sending faster than 1 lines a second")
    assert texts[-1] == "disconnected for flooding"
    assert page.transport.disconnecting


def test_an_idle_socket_is_closed() -> None:
    chat = MemorySockets(idle_timeout=30)
    page = chat.open()
    page.take()
    chat.clock.advance(20)
    page.send("still here")
    chat.clock.advance(20)
    assert not page.transport.disconnecting
    chat.clock.advance(11)
    assert page.texts() == ["Idle for 30 seconds; disconnecting."]
    assert page.transport.disconnecting


def test_a_closed_socket_leaves_the_chat() -> None:
    chat = MemorySockets()
    alice, bob = chat.open(), chat.open()
    alice.take()
    bob.proto.connectionLost(Failure(ConnectionDone()))
    assert alice.take() == [{"type": "left", "room": "#lobby", "nick": "guest2",
                             "reason": "connection lost", "quit": True}]
    assert set(chat.service.users) == {"guest1"}
    assert chat.factory.clients == {alice.proto}


def test_the_web_factory_holds_counts_and_broadcasts_as_every_front_end_does() -> None:
    chat = MemorySockets()
    assert isinstance(chat.factory, FrontEndClients)
    alice, bob = chat.open(), chat.open()
    assert chat.factory.clients == {alice.proto, bob.proto}
    alice.take()
    bob.take()
    chat.factory.broadcast(frame(b'{"type":"notice","text":"x"}'), [bob.proto])
    assert (alice.take(), bob.take()) == ([], [{"type": "notice", "text": "x"}])
    received = chat.factory.traffic.bytes_received
    bob.send("hi")
    assert chat.factory.traffic.bytes_received == received + len(client_frame(b"hi"))
    handed = bob.proto.edge.handed  # every frame the edge sent it (greeting, notice, ...)
    assert handed > 0
    bob.proto.connectionLost(Failure(ConnectionDone()))
    assert chat.factory.clients == {alice.proto}
    assert chat.factory.traffic.bytes_sent == handed  # added to the front-end's as it goes


def test_leaving_a_room_is_not_a_quit() -> None:
    chat = MemorySockets()
    alice, bob = chat.open(), chat.open()
    alice.take()
    bob.send("/join #dev")  # out of #lobby, still in the chat
    assert alice.take() == [{"type": "left", "room": "#lobby", "nick": "guest2",
                             "reason": "joined #dev", "quit": False}]


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70000])
def test_a_frame_has_the_header_rfc_6455_gives_its_length(size: int) -> None:
    payload = b"a" * size
    assert parse_frames(frame(payload)) == [(1, payload)]


@given(st.binary(max_size=300))
def test_any_payload_is_one_whole_frame(payload: bytes) -> None:
    assert parse_frames(frame(payload)) == [(1, payload)]

"""Output: coalescing per read, and write_now's direct send on real TCP sockets.

write_now relies on private details of twisted.internet.tcp.Connection; the tests on real
sockets below pin that behaviour so a Twisted upgrade that changes it fails here first.
"""

from __future__ import annotations

from typing import Any

import pytest_twisted
from twisted.internet import defer, endpoints, protocol, reactor, task
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from chatd.output import ConnectionOutput, OutputBatch, write_now
from tests.support import MemoryChat, take_lines, within


class RecordingTransport(StringTransport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        super().write(data)


def test_outside_a_batch_every_send_is_written() -> None:
    transport = RecordingTransport()
    output = ConnectionOutput(transport, OutputBatch())
    output.send(b"a")
    output.send(b"b")
    assert transport.writes == [b"a", b"b"]


def test_a_batch_joins_sends_into_one_write_per_connection() -> None:
    batch = OutputBatch()
    one, two = RecordingTransport(), RecordingTransport()
    out_one, out_two = ConnectionOutput(one, batch), ConnectionOutput(two, batch)
    with batch:
        out_one.send(b"a")
        out_two.send(b"x")
        out_one.send(b"b")
        with batch:
            out_one.send(b"c")
        assert one.writes == [] and two.writes == []  # nested exit does not flush
    assert one.writes == [b"abc"]
    assert two.writes == [b"x"]


def test_a_pasted_burst_reaches_each_recipient_in_one_write() -> None:
    chat = MemoryChat()
    sender, _ = chat.connect()
    receivers = [chat.connect()[1] for _ in range(3)]
    writes: list[list[bytes]] = []
    for t in receivers:
        take_lines(t)
        recorded: list[bytes] = []
        writes.append(recorded)
        original = t.write
        t.write = lambda data, original=original, recorded=recorded: (  # type: ignore[method-assign]
            recorded.append(data), original(data))[1]
    sender.dataReceived(b"".join(b"line %d\n" % i for i in range(100)))
    for recorded, t in zip(writes, receivers, strict=True):
        assert len(recorded) == 1
        assert take_lines(t) == [f"<guest1> line {i}" for i in range(100)]


def test_write_now_uses_transport_write_for_other_transports() -> None:
    transport = RecordingTransport()
    write_now(transport, b"data")
    assert transport.writes == [b"data"]


class Sink(protocol.Protocol):
    """The far end: records bytes; can stop reading to fill the sender's socket."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.connected_d: defer.Deferred[None] = defer.Deferred()

    def connectionMade(self) -> None:
        self.connected_d.callback(None)

    def dataReceived(self, data: bytes) -> None:
        self.received += data


@defer.inlineCallbacks
def tcp_pair() -> Any:
    """A connected (server-side transport, client Sink) pair on loopback."""
    server_side: defer.Deferred[Any] = defer.Deferred()

    class Accept(protocol.Protocol):
        def connectionMade(self) -> None:
            server_side.callback(self.transport)

    factory = protocol.Factory.forProtocol(Accept)
    port = yield endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
    sink = Sink()
    yield endpoints.connectProtocol(
        endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), sink
    )
    transport = yield within(server_side, "the loopback connection accepted")
    return port, transport, sink


@pytest_twisted.inlineCallbacks
def test_write_now_sends_immediately_on_an_idle_tcp_socket() -> Any:
    port, transport, sink = yield tcp_pair()
    try:
        write_now(transport, b"hello")
        # Sent by send() already: nothing queued in Twisted, no writer registered.
        assert transport._tempDataLen == 0
        assert transport.offset == len(transport.dataBuffer) == 0
        assert transport not in reactor.getWriters()  # type: ignore[attr-defined]
        for _ in range(100):
            if bytes(sink.received) == b"hello":
                break
            yield task.deferLater(reactor, 0.01, lambda: None)
        assert bytes(sink.received) == b"hello"
    finally:
        transport.loseConnection()
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_write_now_keeps_order_when_the_socket_is_full() -> Any:
    port, transport, sink = yield tcp_pair()
    try:
        sink.transport.pauseProducing()  # the far end stops reading
        chunks = [bytes([65 + i % 26]) * 65536 for i in range(64)]  # 4 MiB, more than fits
        for chunk in chunks:
            write_now(transport, chunk)
        assert transport._tempDataLen or transport.offset < len(transport.dataBuffer)
        sink.transport.resumeProducing()
        expected = b"".join(chunks)
        for _ in range(1000):
            if len(sink.received) >= len(expected):
                break
            yield task.deferLater(reactor, 0.01, lambda: None)
        assert bytes(sink.received) == expected
    finally:
        transport.loseConnection()
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_write_now_never_overtakes_bytes_twisted_has_queued() -> Any:
    port, transport, sink = yield tcp_pair()
    try:
        transport.write(b"first,")  # queued by Twisted until the reactor's next turn
        write_now(transport, b"second")  # must queue behind it, not send() ahead of it
        for _ in range(100):
            if len(sink.received) >= 12:
                break
            yield task.deferLater(reactor, 0.01, lambda: None)
        assert bytes(sink.received) == b"first,second"
    finally:
        transport.loseConnection()
        yield port.stopListening()


class PausingTransport(RecordingTransport):
    """Pauses its producer once it holds more than ``threshold`` bytes, as Twisted's do."""

    def __init__(self, threshold: int) -> None:
        super().__init__()
        self.threshold = threshold

    def write(self, data: bytes) -> None:
        super().write(data)
        if len(self.value()) > self.threshold and self.producer is not None:
            self.producer.pauseProducing()


def _connected_with_a_small_transport(chat: MemoryChat) -> tuple[Any, PausingTransport]:
    """A line client whose transport fills up (pauses the guard) past 64 bytes."""
    proto = chat.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40999))
    transport = PausingTransport(threshold=1 << 20)
    proto.makeConnection(transport)
    transport.clear()
    transport.writes.clear()
    transport.threshold = 64
    return proto, transport


def test_the_write_that_fills_the_transport_counts_against_the_send_buffer() -> None:
    chat = MemoryChat(send_buffer=1000, send_grace=5)
    proto, transport = _connected_with_a_small_transport(chat)
    proto.edge.write(b"x" * 600)  # under the limit, sent at once; the transport is now full
    proto.edge.write(b"y" * 500)  # 1,100 bytes since it filled: over the limit
    assert transport.writes == [b"x" * 600, b"y" * 500] and not transport.disconnecting
    chat.clock.advance(5)
    assert transport.disconnecting


def test_a_write_to_a_peer_that_is_behind_is_decided_on_before_it_is_handed_over() -> None:
    chat = MemoryChat(send_buffer=1000, send_grace=5)
    proto, transport = _connected_with_a_small_transport(chat)
    welcome = proto.edge.handed
    proto.edge.write(b"x" * 600)  # fills the transport
    proto.edge.write(b"y" * 1500)  # 2,100 bytes: past twice the limit, cut off before handing over
    assert transport.writes == [b"x" * 600] and transport.disconnecting
    assert proto.edge.handed == welcome + 600

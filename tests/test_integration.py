"""The daemon from makeService(), on real loopback sockets with port 0."""

from __future__ import annotations

import os
import socket
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, endpoints, protocol, reactor, ssl

from chatd import echo
from chatd.echo import EchoDatagramProtocol
from chatd.listening import CannotListen
from tests.support import (
    LineClient,
    RunningDaemon,
    connect_client,
    local_args,
    make_certificates,
    sleep,
    until,
    waiting_datagrams,
    within,
)


@pytest.fixture
def daemon() -> Generator[RunningDaemon, None, None]:
    running = RunningDaemon(local_args())
    yield running
    pytest_twisted.blockon(running.stop())


@pytest_twisted.inlineCallbacks
def test_three_clients_with_lf_crlf_and_cr(daemon: RunningDaemon) -> Any:
    port = daemon.chat_port
    lf = yield connect_client(port)
    crlf = yield connect_client(port)
    cr = yield connect_client(port)
    yield lf.wait_for(r"guest3 has joined")
    lf.send(b"/nick nc_user\n")
    crlf.send(b"/nick telnet_user\r\n")
    cr.send(b"/nick raw_user\r")
    for client in (lf, crlf, cr):
        yield client.wait_for(r"is now known as raw_user")
    lf.send(b"hello from nc\n")
    crlf.send(b"hello from telnet\r\n")
    cr.send(b"hello from raw\r")
    # The three lines race each other: check what each client got, not in which order.
    expected = {
        lf: ["<telnet_user> hello from telnet", "<raw_user> hello from raw"],
        crlf: ["<nc_user> hello from nc", "<raw_user> hello from raw"],
        cr: ["<nc_user> hello from nc", "<telnet_user> hello from telnet"],
    }
    for client, lines in expected.items():
        for _ in lines:
            yield client.wait_for("^<")
        assert sorted(line for line in client.lines if line.startswith("<")) == sorted(lines)
    lf.send(b"/me waves\n/who\n")
    assert (yield cr.wait_for(r"^\* ")) == "* nc_user waves"
    assert (yield lf.wait_for(r"Users in")) == (
        "*** Users in #lobby (3): nc_user, raw_user, telnet_user"
    )
    assert not any("hello from nc" in line for line in lf.lines)  # no echo to the sender
    cr.send(b"/quit see you\r")
    yield cr.wait_closed()
    assert (yield lf.wait_for("has left")) == "*** raw_user has left #lobby (see you)"
    crlf.transport.loseConnection()
    assert (yield lf.wait_for("has left")) == "*** telnet_user has left #lobby (connection lost)"
    lf.transport.loseConnection()


@pytest_twisted.inlineCallbacks
def test_every_line_arrives_in_order() -> Any:
    daemon = RunningDaemon(local_args("--flood-rate", "0"))  # order, not the flood limit
    port = daemon.chat_port
    sender = yield connect_client(port)
    receivers = yield defer.gatherResults([connect_client(port) for _ in range(5)])
    sender.send(b"".join(b"line %d\n" % i for i in range(500)))
    for receiver in receivers:
        yield receiver.wait_for(r"line 499$")
        said = [line for line in receiver.lines if line.startswith("<guest1>")]
        assert said == [f"<guest1> line {i}" for i in range(500)]
    for client in (sender, *receivers):
        client.transport.loseConnection()
    yield daemon.stop()


class Collector(protocol.Protocol):
    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.received = bytearray()
        self.done: defer.Deferred[bytes] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if len(self.received) >= self.expected and not self.done.called:
            self.done.callback(bytes(self.received))


@pytest_twisted.inlineCallbacks
def test_tcp_echo_of_one_mebibyte_of_random_bytes(daemon: RunningDaemon) -> Any:
    payload = os.urandom(1024 * 1024)
    endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", daemon.echo_port)
    collector = yield endpoints.connectProtocol(endpoint, Collector(len(payload)))
    collector.transport.write(payload)
    echoed = yield within(collector.done, lambda: f"1 MiB echoed; {len(collector.received)} bytes")
    assert echoed == payload
    collector.transport.loseConnection()


@pytest_twisted.inlineCallbacks
def test_udp_echo(daemon: RunningDaemon) -> Any:
    port = daemon.udp_port
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.bind(("127.0.0.1", 0))
    sent = [os.urandom(n) for n in (1, 512, 1400)]
    for datagram in sent:
        sock.sendto(datagram, ("127.0.0.1", port))
    received = []

    def read() -> bool:
        received.extend(waiting_datagrams(sock))
        return len(received) >= len(sent)

    try:
        yield until(read, lambda: f"{len(sent)} datagrams echoed; got {len(received)}")
    finally:
        sock.close()
    assert [data for data, _ in received] == sent
    assert all(addr == ("127.0.0.1", port) for _, addr in received)


class RecordingUDPTransport:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def write(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append((data, addr))


@pytest.mark.parametrize("source_port", [0, 7, 9, 13, 17, 19, 37])
def test_udp_loop_guard_drops_small_service_ports(source_port: int) -> None:
    echo = EchoDatagramProtocol()
    echo.transport = RecordingUDPTransport()
    echo.datagramReceived(b"ping", ("127.0.0.1", source_port))
    assert echo.transport.sent == []


def test_udp_loop_guard_answers_ordinary_ports() -> None:
    echo = EchoDatagramProtocol()
    echo.transport = RecordingUDPTransport()
    echo.datagramReceived(b"ping", ("127.0.0.1", 40000))
    assert echo.transport.sent == [(b"ping", ("127.0.0.1", 40000))]


@pytest_twisted.inlineCallbacks
def test_udp_loop_guard_over_the_wire(
    daemon: RunningDaemon, monkeypatch: pytest.MonkeyPatch
) -> Any:
    """A datagram from a refused source port (another echo service's) gets no answer;
    one from an ordinary port does, over real sockets. Binding port 7 needs root, so the
    refusing socket binds any free port and the guard's list gains that port."""
    port = daemon.udp_port
    from_echo = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    from_echo.bind(("127.0.0.1", 0))
    from_echo.setblocking(False)
    monkeypatch.setattr(echo, "LOOP_PORTS", echo.LOOP_PORTS | {from_echo.getsockname()[1]})
    control = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    control.bind(("127.0.0.1", 0))
    control.setblocking(False)
    try:
        from_echo.sendto(b"loop?", ("127.0.0.1", port))
        control.sendto(b"control", ("127.0.0.1", port))
        # The guard sees datagrams in the order they arrive: once the later control
        # datagram is answered, the earlier one was dropped, or its answer is on its way.
        answer = yield until(lambda: waiting_datagrams(control), "the control datagram echoed")
        yield sleep(0.05)
        looped = waiting_datagrams(from_echo)
    finally:
        from_echo.close()
        control.close()
    assert [data for data, _ in answer] == [b"control"]
    assert looped == []


@pytest_twisted.inlineCallbacks
def test_tls_chat(tmp_path: Path) -> Any:
    ca, cert, key = make_certificates(tmp_path)
    running = RunningDaemon(
        ["--listen", f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}", "--no-echo",
         "--state", "none"]
    )
    try:
        port = running.chat_port
        trust = ssl.Certificate.loadPEM(ca.read_bytes())
        options = ssl.optionsForClientTLS("localhost", trustRoot=trust)
        clients = []
        for _ in range(2):
            endpoint = endpoints.SSL4ClientEndpoint(reactor, "127.0.0.1", port, options)
            client = yield endpoints.connectProtocol(endpoint, LineClient())
            yield client.wait_for("^\\*\\*\\* Welcome")
            clients.append(client)
        clients[0].send("secret ☂\n".encode())
        assert (yield clients[1].wait_for("^<guest1>")) == "<guest1> secret ☂"
        for client in clients:
            client.transport.loseConnection()
    finally:
        yield running.stop()


def test_port_in_use_names_the_endpoint() -> None:
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    try:
        with pytest.raises(CannotListen, match=f"cannot listen on tcp:{port}:interface=127"):
            RunningDaemon(["--listen", f"tcp:{port}:interface=127.0.0.1", "--no-echo",
                           "--state", "none"])
    finally:
        busy.close()


@pytest_twisted.inlineCallbacks
def test_unix_socket_chat(tmp_path: Path) -> Any:
    path = tmp_path / "chatd.sock"
    running = RunningDaemon(["--listen", f"unix:{path}", "--no-echo", "--state", "none"])
    try:
        endpoint = endpoints.UNIXClientEndpoint(reactor, str(path))
        a = yield endpoints.connectProtocol(endpoint, LineClient())
        b = yield endpoints.connectProtocol(endpoint, LineClient())
        yield a.wait_for("guest2 has joined")
        b.send(b"over unix\n")
        assert (yield a.wait_for("^<guest2>")) == "<guest2> over unix"
        a.transport.loseConnection()
        b.transport.loseConnection()
    finally:
        yield running.stop()


@pytest_twisted.inlineCallbacks
def test_chat_sockets_have_keepalive_and_nodelay(daemon: RunningDaemon) -> Any:
    """Keepalive finds dead peers; NODELAY stops Nagle holding a line behind an ACK."""
    client = yield connect_client(daemon.chat_port)
    [server_side] = [u.client for u in daemon.chat.users.values()]
    sock = server_side.transport.getHandle()
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    client.transport.loseConnection()

"""The web socket over real loopback sockets, beside nc users: a Python WebSocket client
(autobahn's) where a browser would be."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Generator
from typing import Any

import pytest
import pytest_twisted
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import defer, endpoints, reactor, task

from chatd.stats import ServerStats, bytes_sent, stats_lines
from tests.support import WAIT_SECONDS, RunningDaemon, connect_client, local_args

Message = dict[str, Any]


class WebClient(WebSocketClientProtocol):  # type: ignore[misc]
    """Records every JSON message; ``wait_for`` a matching one, with a deadline."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[Message] = []
        self.opened: defer.Deferred[WebClient] = defer.Deferred()
        self.closed: defer.Deferred[tuple[bool, int | None, str | None]] = defer.Deferred()
        self._consumed: set[int] = set()

    def onOpen(self) -> None:
        self.opened.callback(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        assert not isBinary
        self.messages.append(json.loads(payload.decode("utf-8")))

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if not self.opened.called:
            self.opened.errback(ConnectionError(f"refused: {code} {reason}"))
        if not self.closed.called:
            self.closed.callback((wasClean, code, reason))

    def say(self, line: str) -> None:
        self.sendMessage(line.encode("utf-8"))

    @defer.inlineCallbacks
    def wait_for(self, **fields: Any) -> Any:
        """The first message not yet returned whose fields include ``fields``."""
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            for index, message in enumerate(self.messages):
                if index not in self._consumed and all(
                    message.get(k) == v or (callable(v) and v(message.get(k)))
                    for k, v in fields.items()
                ):
                    self._consumed.add(index)
                    return message
            if time.monotonic() > deadline:
                raise AssertionError(f"no message with {fields}; got {self.messages}")
            yield task.deferLater(reactor, 0.01, lambda: None)


def contains(text: str) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, str) and text in value


@defer.inlineCallbacks
def connect_web(port: int, origin: str | None = None, tls: Any = None) -> Any:
    """A WebClient on ws://127.0.0.1:port/ws (wss://localhost:port/ws with ``tls``, client
    TLS options), once the socket is open."""
    url = f"wss://localhost:{port}/ws" if tls is not None else f"ws://127.0.0.1:{port}/ws"
    factory = WebSocketClientFactory(url, origin=origin)
    factory.protocol = WebClient
    endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    if tls is not None:
        endpoint = endpoints.wrapClientTLS(tls, endpoint)
    client = yield endpoints.connectProtocol(endpoint, factory.buildProtocol(None))
    yield client.opened
    return client


@defer.inlineCallbacks
def nc_user(port: int, nick: str) -> Any:
    """An nc-like line client, greeted and renamed to ``nick``."""
    client = yield connect_client(port)
    client.send(f"/nick {nick}\n".encode())
    yield client.wait_for(f"now known as {nick}")
    return client


def web_port(daemon: RunningDaemon) -> int:
    """The port of the first --web (listed after the chat listeners)."""
    return daemon._port(len(daemon.options["listen"]))


@pytest.fixture
def daemon(request: pytest.FixtureRequest) -> Generator[RunningDaemon, None, None]:
    marker = request.node.get_closest_marker("daemon_args")
    extra = marker.args if marker is not None else ()
    running = RunningDaemon(local_args("--web", "tcp:0:interface=127.0.0.1", *extra))
    yield running
    pytest_twisted.blockon(running.stop())


@pytest_twisted.inlineCallbacks
def test_a_web_user_and_an_nc_user_chat_in_the_same_room(daemon: RunningDaemon) -> Any:
    nc = yield nc_user(daemon.chat_port, "ncuser")
    web = yield connect_web(web_port(daemon))
    greeting = yield web.wait_for(type="notice", text=contains("Welcome to chatd! You are"))
    state = yield web.wait_for(type="state", room="#lobby")
    assert greeting["text"].startswith(f"Welcome to chatd! You are {state['nick']}.")
    members = yield web.wait_for(type="members", room="#lobby")
    assert {m["nick"] for m in members["members"]} == {"ncuser", state["nick"]}
    yield web.wait_for(type="rooms", rooms=[{"name": "#lobby", "users": 2, "topic": None}])
    yield nc.wait_for(f"{state['nick']} has joined #lobby")

    web.say("/nick webby")
    yield web.wait_for(type="state", nick="webby")
    yield nc.wait_for(f"{state['nick']} is now known as webby")
    web.say("hello from the browser")
    yield nc.wait_for(r"^<webby> hello from the browser$")
    nc.send(b"hi webby\n")
    said = yield web.wait_for(type="said")
    assert said == {"type": "said", "room": "#lobby", "nick": "ncuser", "text": "hi webby"}

    nc.send(b"/msg webby psst\n")
    yield web.wait_for(type="private", **{"from": "ncuser", "to": "webby", "text": "psst"})
    web.say("/msg ncuser back at you")
    yield web.wait_for(type="sent", to="ncuser", text="back at you")
    yield nc.wait_for(r"^\*webby\* back at you$")

    web.say("/join #dev")
    yield web.wait_for(type="state", room="#dev")
    yield web.wait_for(type="members", room="#dev", members=[{"nick": "webby", "away": False}])
    yield nc.wait_for("webby has left #lobby")
    web.say("/quit gone home")
    yield web.wait_for(type="notice", text="Goodbye.")
    yield within(web.closed)


@pytest_twisted.inlineCallbacks
def test_history_and_the_motd_reach_a_web_user_as_they_reach_nc(tmp_path: Any) -> Any:
    motd = tmp_path / "motd.txt"
    motd.write_text("Be kind.\n")
    running = RunningDaemon(local_args("--web", "tcp:0:interface=127.0.0.1",
                                       "--motd", str(motd)))
    try:
        nc = yield connect_client(running.chat_port)
        nc.send(b"/nick alice\n/topic testing\nfirst line\n")
        yield nc.wait_for("set the topic")
        web = yield connect_web(web_port(running))
        yield web.wait_for(type="notice", text="| Be kind.")
        yield web.wait_for(type="notice", text=contains("Topic of #lobby: testing"))
        line = yield web.wait_for(type="said", history=True)
        assert (line["nick"], line["text"]) == ("alice", "first line")
        assert abs(line["at"] - time.time()) < 60
        yield web.wait_for(type="rooms", rooms=[{"name": "#lobby", "users": 2,
                                                 "topic": "testing"}])
    finally:
        yield running.stop()


@pytest_twisted.inlineCallbacks
def test_a_foreign_origin_is_refused_and_the_own_one_is_not(daemon: RunningDaemon) -> Any:
    port = web_port(daemon)
    with pytest.raises(ConnectionError, match="403"):
        yield connect_web(port, origin="http://evil.example")
    with pytest.raises(ConnectionError, match="not allowed"):
        yield connect_web(port, origin="null")
    own = yield connect_web(port, origin=f"http://127.0.0.1:{port}")
    yield own.wait_for(type="state")
    bot = yield connect_web(port)  # no Origin: not a browser
    yield bot.wait_for(type="state")


@pytest.mark.daemon_args("--web-origin", "https://chat.example.org")
@pytest_twisted.inlineCallbacks
def test_web_origin_lets_another_site_page_in(daemon: RunningDaemon) -> Any:
    client = yield connect_web(web_port(daemon), origin="https://chat.example.org")
    yield client.wait_for(type="state")
    with pytest.raises(ConnectionError, match="403"):
        yield connect_web(web_port(daemon), origin="https://other.example.org")


@pytest.mark.daemon_args("--max-line", "100")
@pytest_twisted.inlineCallbacks
def test_an_oversize_message_is_refused_and_a_huge_one_closes(daemon: RunningDaemon) -> Any:
    nc = yield connect_client(daemon.chat_port)
    web = yield connect_web(web_port(daemon))
    yield web.wait_for(type="state")
    web.say("x" * 101)
    yield web.wait_for(type="error", text=contains("too long (the limit is 100 bytes)"))
    web.say("still here")
    yield nc.wait_for("> still here$")
    assert not any("xxx" in line for line in nc.lines)
    # Past the hard limit (64 KiB here) autobahn stops reading and fails the connection.
    web.sendMessage(b"y" * (70 * 1024))
    _clean, code, _reason = yield within(web.closed)
    assert code == 1009


@pytest.mark.daemon_args("--flood-rate", "2", "--flood-burst", "3", "--flood-queue", "5")
@pytest_twisted.inlineCallbacks
def test_a_flooding_web_user_is_held_back_in_order_and_the_excess_dropped(
    daemon: RunningDaemon,
) -> Any:
    nc = yield connect_client(daemon.chat_port)
    web = yield connect_web(web_port(daemon))
    state = yield web.wait_for(type="state")
    for n in range(40):
        web.say(f"flood {n}")
    yield web.wait_for(type="error", text=contains("you are sending faster than 2 lines"))
    # The burst at once, the queue at 2 a second, in order; nothing past the queue.
    yield nc.wait_for(r"> flood 7$")
    yield task.deferLater(reactor, 1.0, lambda: None)
    said = [line for line in nc.lines if "> flood " in line]
    assert said == [f"<{state['nick']}> flood {n}" for n in range(3 + 5)]


@pytest.mark.daemon_args("--send-buffer", "20000", "--send-grace", "0.5", "--flood-rate", "0")
@pytest_twisted.inlineCallbacks
def test_a_tab_that_stops_reading_is_cut_off(daemon: RunningDaemon) -> Any:
    nc = yield nc_user(daemon.chat_port, "talker")
    web = yield connect_web(web_port(daemon))
    state = yield web.wait_for(type="state")
    web.transport.pauseProducing()  # the tab stops reading; the kernel buffers fill
    line = b"z" * 3000 + b"\n"
    deadline = time.monotonic() + WAIT_SECONDS
    while not any("(not reading)" in seen for seen in nc.lines):
        assert time.monotonic() < deadline, "the silent tab was never cut off"
        nc.send(line * 50)
        yield task.deferLater(reactor, 0.02, lambda: None)
    assert any(f"{state['nick']} has left #lobby (not reading)" in seen for seen in nc.lines)


@pytest.mark.daemon_args("--max-per-ip", "2")
@pytest_twisted.inlineCallbacks
def test_web_connections_count_per_address(daemon: RunningDaemon) -> Any:
    port = web_port(daemon)
    first = yield connect_web(port)
    second = yield connect_web(port)
    yield first.wait_for(type="state")
    yield second.wait_for(type="state")
    refused = yield http_exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert refused.startswith(b"HTTP/1.1 503 ")
    assert b"too many connections from your address (the limit is 2)" in refused
    first.sendClose()
    yield within(first.closed)
    yield wait_until(lambda: daemon.chat.users.__len__() == 1)
    third = yield connect_web(port)  # the closed socket's count was given back
    yield third.wait_for(type="state")


@pytest_twisted.inlineCallbacks
def test_stats_and_metrics_count_web_sockets_and_their_bytes(daemon: RunningDaemon) -> Any:
    stats = next(child for child in daemon.top if isinstance(child, ServerStats))
    web = yield connect_web(web_port(daemon))
    yield web.wait_for(type="state")
    web.say("hello from the browser")
    yield wait_until(lambda: stats.frontends["web"].traffic.bytes_received > 0)
    assert stats.connections()["web"] == 1
    assert "1 web" in stats_lines(stats.snapshot())[1]  # /stats: "Connections: ..."
    assert bytes_sent(stats.frontends["web"]) > 0


@pytest_twisted.inlineCallbacks
def test_the_page_is_served_with_its_policy_and_a_request_body_is_refused(
    daemon: RunningDaemon,
) -> Any:
    port = web_port(daemon)
    page = yield http_exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, body = page.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"Content-Security-Policy: default-src 'none'; script-src 'self'" in head
    assert b'<script src="app.js" defer>' in body
    posted = yield http_exchange(
        port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n")
    assert posted.startswith(b"HTTP/1.1 413 ")


def within(d: defer.Deferred[Any]) -> defer.Deferred[Any]:
    """``d``, failed with TimeoutError if it has not fired within the deadline."""
    return d.addTimeout(WAIT_SECONDS, reactor)


@defer.inlineCallbacks
def wait_until(condition: Callable[[], bool]) -> Any:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        yield task.deferLater(reactor, 0.01, lambda: None)


@defer.inlineCallbacks
def http_exchange(port: int, request: bytes, until_closed: bool = False) -> Any:
    """Sends ``request`` on a fresh connection and returns the response: everything until
    the server closes, or (unless ``until_closed``) until one whole response is in.
    Read without blocking the reactor, with a deadline."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT_SECONDS)
    sock.setblocking(False)
    sock.sendall(request)
    data = b""
    deadline = time.monotonic() + WAIT_SECONDS
    try:
        while not (not until_closed and complete_response(data)):
            try:
                chunk = sock.recv(65536)
            except BlockingIOError:
                assert time.monotonic() < deadline, f"no whole response; got {data!r}"
                yield task.deferLater(reactor, 0.01, lambda: None)
                continue
            if not chunk:
                break
            data += chunk
        return data
    finally:
        sock.close()


def complete_response(data: bytes) -> bool:
    head, found, body = data.partition(b"\r\n\r\n")
    if not found:
        return False
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return False


@pytest_twisted.inlineCallbacks
def test_an_open_socket_outlives_the_http_idle_timeout_and_idle_http_does_not(
    monkeypatch: pytest.MonkeyPatch,
) -> Any:
    monkeypatch.setattr("chatd.web.site.HTTP_IDLE_TIMEOUT", 0.3)
    running = RunningDaemon(local_args("--web", "tcp:0:interface=127.0.0.1"))
    try:
        port = web_port(running)
        nc = yield connect_client(running.chat_port)
        web = yield connect_web(port)
        yield web.wait_for(type="state")
        idle_http = yield http_exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
                                        until_closed=True)
        assert idle_http.startswith(b"HTTP/1.1 200 ")  # answered, then closed when idle
        yield task.deferLater(reactor, 1.0, lambda: None)
        web.say("still connected")
        yield nc.wait_for("> still connected$")
    finally:
        yield running.stop()


@pytest_twisted.inlineCallbacks
def test_over_tls_the_page_origin_is_https_and_the_socket_is_wss(tmp_path: Any) -> Any:
    from twisted.internet import ssl

    from tests.support import make_certificates

    ca, cert, key = make_certificates(tmp_path)
    running = RunningDaemon(local_args(
        "--web", f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}"))
    try:
        port = web_port(running)
        with open(ca, "rb") as f:  # the private CA that signed the server's certificate
            authority = ssl.Certificate.loadPEM(f.read())
        tls = ssl.optionsForClientTLS("localhost", trustRoot=authority)
        secure = yield connect_web(port, f"https://localhost:{port}", tls)
        yield secure.wait_for(type="state")
        with pytest.raises(ConnectionError, match="403"):
            # A plain-http page on the same host and port is another origin.
            yield connect_web(port, f"http://localhost:{port}", tls)
    finally:
        yield running.stop()


@pytest_twisted.inlineCallbacks
def test_a_sighup_reload_reaches_the_web_front_end_and_its_live_sockets(tmp_path: Any) -> Any:
    config = tmp_path / "chatd.toml"
    config.write_text("max-line = 100\nmax-per-ip = 5\n")
    running = RunningDaemon(local_args("--config", str(config),
                                       "--web", "tcp:0:interface=127.0.0.1"))
    try:
        port = web_port(running)
        web = yield connect_web(port)
        yield web.wait_for(type="state")
        config.write_text("max-line = 10\nmax-per-ip = 1\n")
        reload = running.top.getServiceNamed("reload")
        assert reload.reloader.reload() == ["max-line", "max-per-ip"]
        web.say("x" * 11)
        yield web.wait_for(type="error", text=contains("too long (the limit is 10 bytes)"))
        refused = yield http_exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b"too many connections from your address (the limit is 1)" in refused
    finally:
        yield running.stop()


@pytest.mark.daemon_args("--connect-rate", "1")
@pytest_twisted.inlineCallbacks
def test_new_web_connections_from_one_address_are_held_to_connect_rate(
    daemon: RunningDaemon,
) -> Any:
    port = web_port(daemon)
    answers = []
    for _ in range(4):  # a burst of twice the rate is let in, then no more this second
        answer = yield http_exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        answers.append(answer.split(b"\r\n")[0])
    assert answers[:2] == [b"HTTP/1.1 200 OK"] * 2
    assert answers[3].startswith(b"HTTP/1.1 503 ")

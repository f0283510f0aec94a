"""IRC clients (twisted.words' IRCClient) beside line users, on a real daemon over loopback:
plain TCP and TLS, every way a line crosses between the two front-ends."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, endpoints, reactor, ssl, task, threads
from twisted.python import usage
from twisted.words.protocols import irc

from chatd.tap import Options
from tests.support import (
    LOCAL,
    WAIT_SECONDS,
    LineClient,
    RunningDaemon,
    connect_client,
    local_args,
    make_certificates,
)

Event = tuple[str, ...]


class RecordingIRCClient(irc.IRCClient):
    """twisted.words' IRC client, recording what it is told as (kind, ...) tuples."""

    heartbeatInterval = None  # the server's PINGs are the test's subject, not ours

    def __init__(self, nickname: str) -> None:
        self.nickname = nickname
        self.events: list[Event] = []
        self.signed_on: defer.Deferred[None] = defer.Deferred()
        self._waiters: list[tuple[Callable[[Event], bool], defer.Deferred[Event]]] = []

    def signedOn(self) -> None:
        self.signed_on.callback(None)

    def _record(self, *event: str) -> None:
        self.events.append(event)
        for test, waiter in list(self._waiters):
            if test(event):
                self._waiters.remove((test, waiter))
                waiter.callback(event)

    def privmsg(self, user: str, channel: str, message: str) -> None:
        self._record("privmsg", user, channel, message)

    def action(self, user: str, channel: str, data: str) -> None:
        self._record("action", user, channel, data)

    def noticed(self, user: str, channel: str, message: str) -> None:
        self._record("notice", user, channel, message)

    def joined(self, channel: str) -> None:
        self._record("joined", channel)

    def userJoined(self, user: str, channel: str) -> None:
        self._record("userJoined", user, channel)

    def userLeft(self, user: str, channel: str) -> None:
        self._record("userLeft", user, channel)

    def userQuit(self, user: str, quitMessage: str) -> None:
        self._record("userQuit", user, quitMessage)

    def userRenamed(self, oldname: str, newname: str) -> None:
        self._record("userRenamed", oldname, newname)

    def topicUpdated(self, user: str, channel: str, newTopic: str) -> None:
        self._record("topic", user, channel, newTopic)

    def irc_RPL_NAMREPLY(self, prefix: str, params: list[str]) -> None:
        self._record("names", params[2], params[3])

    def wait_for(self, *expected: str) -> defer.Deferred[Event]:
        """The first recorded event equal to ``expected`` (``None`` parts match anything
        given as ``"*"``), now or within WAIT_SECONDS."""

        def test(event: Event) -> bool:
            return len(event) == len(expected) and all(
                want in ("*", got) for want, got in zip(expected, event, strict=True))

        for event in self.events:
            if test(event):
                return defer.succeed(event)
        waiter: defer.Deferred[Event] = defer.Deferred()
        self._waiters.append((test, waiter))
        timer = reactor.callLater(  # type: ignore[attr-defined]
            WAIT_SECONDS, lambda: waiter.called or waiter.errback(AssertionError(
                f"no {expected}; got {self.events}")))
        waiter.addBoth(lambda result: (timer.active() and timer.cancel(), result)[1])
        return waiter


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[RunningDaemon]:
    _ca, cert, key = make_certificates(tmp_path)
    running = RunningDaemon(local_args(
        "--irc", f"tcp:0:{LOCAL}",
        "--irc", f"ssl:0:privateKey={key}:certKey={cert}:{LOCAL}",
    ))
    yield running
    pytest_twisted.blockon(running.stop())


def irc_ports(daemon: RunningDaemon) -> list[int]:
    """The --irc listeners' ports: the last listeners, in the order given."""
    listeners = list(daemon.listeners())[-len(daemon.options["irc"]):]
    return [int(listener.port.getHost().port) for listener in listeners]


@defer.inlineCallbacks
def irc_client(daemon: RunningDaemon, nick: str, tls: bool = False) -> Any:
    plain, secure = irc_ports(daemon)
    if tls:
        endpoint: Any = endpoints.SSL4ClientEndpoint(
            reactor, "127.0.0.1", secure, ssl.CertificateOptions(verify=False))
    else:
        endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", plain)
    client = yield endpoints.connectProtocol(endpoint, RecordingIRCClient(nick))
    yield client.signed_on
    return client


@defer.inlineCallbacks
def line_user(daemon: RunningDaemon, nick: str) -> Any:
    client: LineClient = yield connect_client(daemon.chat_port)
    client.send(f"/nick {nick}\n".encode())
    yield client.wait_for(f"is now known as {nick}")
    return client


@pytest_twisted.inlineCallbacks
def test_irc_and_line_users_talk_in_one_room(daemon: RunningDaemon) -> Any:
    bob = yield line_user(daemon, "bob")
    alice = yield irc_client(daemon, "alice")
    alice.join("#lobby")
    yield alice.wait_for("joined", "#lobby")
    yield alice.wait_for("names", "#lobby", "alice bob")
    yield bob.wait_for(r"^\*\*\* alice has joined #lobby$")

    bob.send(b"hello from nc\n")
    yield alice.wait_for("privmsg", "bob!bob@chatd", "#lobby", "hello from nc")
    alice.say("#lobby", "hi bob")
    yield bob.wait_for(r"^<alice> hi bob$")
    alice.describe("#lobby", "waves")
    yield bob.wait_for(r"^\* alice waves$")
    bob.send(b"/me waves back\n")
    yield alice.wait_for("action", "bob!bob@chatd", "#lobby", "waves back")

    alice.msg("bob", "a secret")
    yield bob.wait_for(r"^\*alice\* a secret$")
    bob.send(b"/msg alice another\n")
    yield alice.wait_for("privmsg", "bob!bob@chatd", "alice", "another")

    alice.topic("#lobby", "IRC and nc together")
    yield bob.wait_for(r"^\*\*\* alice set the topic of #lobby to: IRC and nc together$")
    alice.setNick("alicia")
    yield bob.wait_for(r"^\*\*\* alice is now known as alicia$")
    bob.send(b"/nick robert\n")
    yield alice.wait_for("userRenamed", "bob", "robert")
    alice.leave("#lobby", "lunch")
    yield bob.wait_for(r"^\*\*\* alicia has left #lobby \(lunch\)$")
    alice.join("#lobby")
    yield bob.wait_for(r"^\*\*\* alicia has joined #lobby$")
    alice.quit("bye")
    yield bob.wait_for(r"^\*\*\* alicia has left #lobby \(bye\)$")


@pytest_twisted.inlineCallbacks
def test_two_irc_users_over_tls_and_tcp_in_two_rooms(daemon: RunningDaemon) -> Any:
    alice = yield irc_client(daemon, "alice", tls=True)
    carol = yield irc_client(daemon, "carol")
    alice.join("#lobby")
    alice.join("#dev")
    yield alice.wait_for("joined", "#dev")
    carol.join("#dev")
    yield alice.wait_for("userJoined", "carol", "#dev")
    carol.say("#dev", "in dev")
    yield alice.wait_for("privmsg", "carol!carol@chatd", "#dev", "in dev")
    bob = yield line_user(daemon, "bob")  # the line front-end's default room: #lobby
    yield alice.wait_for("userJoined", "guest1", "#lobby")
    bob.send(b"in the lobby\n")
    yield alice.wait_for("privmsg", "bob!bob@chatd", "#lobby", "in the lobby")
    assert not [e for e in carol.events if e[0] == "privmsg" and e[2] == "#lobby"]
    # A private /me stays an action, both ways and between IRC users.
    alice.describe("bob", "waves")
    yield bob.wait_for(r"^\*alice\* \* alice waves$")
    bob.send(b"/describe alice nods\n")
    yield alice.wait_for("action", "bob!bob@chatd", "alice", "nods")
    carol.describe("alice", "winks")
    yield alice.wait_for("action", "carol!carol@chatd", "alice", "winks")
    # In two rooms, a chatd command on "your room" is told which one.
    alice.sendLine("HISTORY 1")
    yield alice.wait_for("notice", "chatd!chatd@chatd", "alice",
                         "Error: you are in 2 rooms (#dev, #lobby): name the room first, e.g. "
                         "#dev")
    alice.msg("chatd", "history #dev 1")
    yield alice.wait_for("notice", "chatd!chatd@chatd", "alice",
                         "History of #dev (last 1 line):")
    carol.quit("off")
    yield alice.wait_for("userQuit", "carol", "off")


def test_a_bad_irc_endpoint_is_a_usage_error() -> None:
    with pytest.raises(usage.UsageError, match="--irc 'tcp:notaport'"):
        Options().parseOptions(["--irc", "tcp:notaport", "--state", "none"])


@pytest_twisted.inlineCallbacks
def test_a_nick_held_by_a_line_user_is_refused_to_irc(daemon: RunningDaemon) -> Any:
    yield line_user(daemon, "bob")
    bob2 = yield irc_client(daemon, "bob")  # IRCClient retries with "bob_" on 433
    assert bob2.nickname == "bob_"


@pytest_twisted.inlineCallbacks
def test_line_and_irc_connections_count_together_per_address() -> Any:
    daemon = RunningDaemon(local_args("--irc", f"tcp:0:{LOCAL}", "--max-per-ip", "1"))
    try:
        bob = yield connect_client(daemon.chat_port)
        refused = socket.create_connection(("127.0.0.1", irc_ports(daemon)[0]))
        refused.settimeout(WAIT_SECONDS)
        reply = yield threads.deferToThread(refused.recv, 4096)
        assert reply.startswith(b"ERROR :Closing Link: too many connections from your address")
        refused.close()
        bob.transport.loseConnection()
    finally:
        yield daemon.stop()


@pytest_twisted.inlineCallbacks
def test_an_irc_client_that_never_reads_is_cut_off() -> Any:
    daemon = RunningDaemon(local_args(
        "--irc", f"tcp:0:{LOCAL}", "--flood-rate", "0", "--send-grace", "0.5",
        "--send-buffer", "65536"))
    hog = socket.socket()
    try:
        bob = yield line_user(daemon, "bob")
        hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        hog.connect(("127.0.0.1", irc_ports(daemon)[0]))
        hog.sendall(b"NICK hog\r\nUSER hog 0 * :hog\r\nJOIN #lobby\r\n")
        yield bob.wait_for(r"^\*\*\* hog has joined #lobby$")
        for _ in range(20):  # 20 x 100 lines of 4 KiB: far past what the hog's socket holds
            bob.send(b"".join(b"%s\n" % (b"w" * 4000) for _ in range(100)))
            yield task.deferLater(reactor, 0.05, lambda: None)
            if any("hog has left" in line for line in bob.lines):
                break
        yield bob.wait_for(r"^\*\*\* hog has left #lobby \(not reading\)$")
        bob.transport.loseConnection()
    finally:
        hog.close()
        yield daemon.stop()

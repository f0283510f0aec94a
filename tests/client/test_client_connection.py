"""The line protocol, backoff, the reconnecting connector and the session core.

No network and no terminal: StringTransport for the wire, task.Clock for time.
"""

from __future__ import annotations

import errno
import itertools
import os
import random
from typing import Any

import pytest
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import (
    ConnectionDone,
    ConnectionLost,
    getConnectError,
)
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from chatd.client.connection import Backoff, ChatProtocol, Connector
from chatd.client.session import ChatSession
from chatd.client.wire import Kind, Line


class FakeEndpoint:
    """Connects (or refuses) on demand; connected protocols get a StringTransport."""

    def __init__(self) -> None:
        self.refuse = False
        self.protocols: list[ChatProtocol] = []
        self.transports: list[StringTransport] = []
        self.attempts = 0

    def connect(self, factory: Any) -> Deferred[Any]:
        self.attempts += 1
        if self.refuse:
            # What Twisted's TCP client gives for ECONNREFUSED.
            return fail(getConnectError((errno.ECONNREFUSED, os.strerror(errno.ECONNREFUSED))))
        proto = factory.buildProtocol(None)
        transport = StringTransport()
        proto.makeConnection(transport)
        self.protocols.append(proto)
        self.transports.append(transport)
        return succeed(proto)

    def drop(self, reason: Exception | None = None) -> None:
        """The server goes away."""
        self.protocols[-1].connectionLost(Failure(reason or ConnectionLost()))

    def sent(self) -> list[str]:
        return self.transports[-1].value().decode("utf-8").split("\r\n")[:-1]

    def receive(self, data: bytes) -> None:
        self.protocols[-1].dataReceived(data)


class RecordingUI:
    def __init__(self) -> None:
        self.lines: list[Line] = []
        self.changes = 0

    def show(self, line: Line) -> None:
        self.lines.append(line)

    def changed(self) -> None:
        self.changes += 1

    def texts(self, *kinds: Kind) -> list[str]:
        return [ln.text for ln in self.lines if not kinds or ln.kind in kinds]


def no_jitter() -> float:
    return 0.0


def make(
    nick: str | None = None, **kw: Any
) -> tuple[ChatSession, RecordingUI, FakeEndpoint, Clock, Connector]:
    clock = Clock()
    ui = RecordingUI()
    endpoint = FakeEndpoint()
    session = ChatSession(ui, clock, "server:7777", nick=nick, **kw)
    connector = Connector(endpoint, clock, session, Backoff(initial=1, cap=8, rand=no_jitter))
    return session, ui, endpoint, clock, connector


# --- protocol -------------------------------------------------------------------------


def test_protocol_splits_crlf_and_lf_and_decodes_leniently() -> None:
    session, ui, endpoint, _clock, connector = make()
    session.start(connector)
    endpoint.receive(b"<bob> one\r\n<bob> tw")
    endpoint.receive(b"o\n<bob> bad \xff byte\r\n")
    chat = [ln for ln in ui.lines if ln.kind is Kind.CHAT]
    assert [ln.text for ln in chat] == ["one", "two", "bad \ufffd byte"]


def test_protocol_sends_utf8_crlf_lines() -> None:
    session, _ui, endpoint, _clock, connector = make()
    session.start(connector)
    session.user_input("grüße")
    assert endpoint.transports[-1].value() == "grüße\r\n".encode()


# --- backoff --------------------------------------------------------------------------


def test_backoff_doubles_up_to_cap_and_resets() -> None:
    b = Backoff(initial=0.5, factor=2, cap=5, jitter=0.0)
    assert [b.next_delay() for _ in range(6)] == [0.5, 1, 2, 4, 5, 5]
    b.reset()
    assert b.next_delay() == 0.5


def test_backoff_jitter_spreads_downwards() -> None:
    b = Backoff(initial=1, jitter=0.1, rand=lambda: 0.5)
    assert b.next_delay() == pytest.approx(0.95)


def test_backoff_never_exceeds_its_cap() -> None:
    # The largest jitter rand() can give: the old code reached 30 * 1.0999... = 33 s.
    worst = Backoff(rand=lambda: 0.9999999)
    delays = [worst.next_delay() for _ in range(12)]
    assert max(delays) <= 30.0
    least = Backoff(rand=lambda: 0.0)
    assert [least.next_delay() for _ in range(9)] == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]


def test_backoff_sequence_with_seeded_jitter() -> None:
    first_draw = random.Random(2026).random()
    b = Backoff(rand=random.Random(2026).random)
    delays = [b.next_delay() for _ in range(50)]
    assert delays[0] == pytest.approx(0.5 * (1 - 0.1 * first_draw))
    bases = [0.5, 1, 2, 4, 8, 16] + [30] * 44
    for delay, base in zip(delays, bases, strict=True):
        assert base * 0.9 <= delay <= base
    assert len(set(delays[6:])) > 1  # still spread at the cap


def test_reconnection_attempts_are_never_more_than_30s_apart() -> None:
    """What a user waits for, measured on a fake clock: the default client, a dead server."""
    clock = Clock()
    endpoint = FakeEndpoint()
    endpoint.refuse = True
    session = ChatSession(RecordingUI(), clock, "server:7777")
    connector = Connector(endpoint, clock, session, Backoff(rand=random.Random(7).random))
    session.start(connector)
    attempts_at = [clock.seconds()]
    for _ in range(3000):  # 0.1 s steps: 300 s
        clock.advance(0.1)
        if endpoint.attempts > len(attempts_at):
            attempts_at.append(clock.seconds())
    gaps = [b - a for a, b in itertools.pairwise(attempts_at)]
    assert len(gaps) >= 10
    assert max(gaps) <= 30.0 + 0.1  # one clock step of rounding
    assert max(gaps) > 27.0  # it does reach the cap


# --- connector + session ----------------------------------------------------------------


def test_connect_sends_nick_and_shows_status() -> None:
    session, ui, endpoint, _clock, connector = make(nick="alice")
    session.start(connector)
    assert endpoint.sent() == ["/nick alice"]
    assert ui.texts(Kind.STATUS) == ["Connecting to server:7777 ...", "Connected to server:7777"]
    assert session.online


def test_retries_with_exponential_backoff_until_connected() -> None:
    session, ui, endpoint, clock, connector = make(nick="alice")
    endpoint.refuse = True
    session.start(connector)
    assert endpoint.attempts == 1
    for expected_delay, attempts in [(1, 2), (2, 3), (4, 4), (8, 5), (8, 6)]:
        clock.advance(expected_delay - 0.01)
        assert endpoint.attempts == attempts - 1
        clock.advance(0.01)
        assert endpoint.attempts == attempts
    errors = ui.texts(Kind.STATUS_ERROR)
    # The system's words, once (Twisted's text would say "refused" twice).
    assert errors[0] == "Cannot connect to server:7777: Connection refused; retrying in 1.0s"
    assert errors[0].endswith("retrying in 1.0s")
    assert errors[-1].endswith("retrying in 8.0s")
    endpoint.refuse = False
    clock.advance(8)
    assert session.online
    assert endpoint.sent() == ["/nick alice"]


def test_reconnects_after_drop_and_asks_for_nick_again() -> None:
    session, ui, endpoint, clock, connector = make(nick="alice")
    session.start(connector)
    endpoint.receive(b"*** Welcome to chatd! You are guest1. Type /help.\r\n")
    endpoint.receive(b"*** guest1 is now known as alice\r\n")
    assert session.book.me == "alice"
    clock.advance(60)  # a long-lived connection resets the backoff
    endpoint.drop()
    assert not session.online
    assert ui.texts(Kind.STATUS_ERROR)[-1].startswith("Connection lost")
    assert ui.texts(Kind.STATUS_ERROR)[-1].endswith("reconnecting in 1.0s")
    clock.advance(1)
    assert session.online
    assert len(endpoint.protocols) == 2
    assert endpoint.sent() == ["/nick alice"]


def test_own_rename_is_requested_again_after_reconnect() -> None:
    session, _ui, endpoint, clock, connector = make()
    session.start(connector)
    assert endpoint.sent() == []
    endpoint.receive(b"*** Welcome to chatd! You are guest1. Type /help.\r\n")
    session.user_input("/nick zoe")
    endpoint.receive(b"*** guest1 is now known as zoe\r\n")
    endpoint.receive(b"*** bob is now known as robert\r\n")  # someone else: no effect
    endpoint.drop()
    clock.advance(1)
    assert endpoint.sent() == ["/nick zoe"]


def test_quick_drops_keep_backing_off() -> None:
    session, ui, endpoint, clock, connector = make()
    session.start(connector)
    delays = []
    for _ in range(4):
        endpoint.drop()  # dropped at once: no reset
        delays.append(ui.texts(Kind.STATUS_ERROR)[-1].rsplit(" ", 1)[-1])
        clock.advance(10)
    assert delays == ["1.0s", "2.0s", "4.0s", "8.0s"]


def test_typed_lines_are_sent_and_echoed_locally() -> None:
    session, ui, endpoint, _clock, connector = make()
    session.start(connector)
    endpoint.receive(b"*** Welcome to chatd! You are guest1. Type /help.\r\n")
    session.user_input("hello")
    session.user_input("/me waves")
    session.user_input("/who")
    session.user_input("first\nsecond")
    assert endpoint.sent() == ["hello", "/me waves", "/who", "first", "second"]
    echoed = [
        (ln.kind, ln.nick, ln.text) for ln in ui.lines if ln.kind in (Kind.SELF, Kind.SELF_ACTION)
    ]
    assert echoed == [
        (Kind.SELF, "guest1", "hello"),
        (Kind.SELF_ACTION, "guest1", "waves"),
        (Kind.SELF, "guest1", "first"),
        (Kind.SELF, "guest1", "second"),
    ]


def test_offline_lines_are_refused_in_terminal_mode() -> None:
    session, ui, endpoint, _clock, connector = make()
    endpoint.refuse = True
    session.start(connector)
    session.user_input("anyone?")
    assert ui.texts(Kind.STATUS_ERROR)[-1] == "Not connected: line not sent"
    assert not any(ln.kind is Kind.SELF for ln in ui.lines)


def test_nicks_learned_from_chat_and_notices() -> None:
    session, _ui, endpoint, _clock, connector = make()
    session.start(connector)
    endpoint.receive(
        b"*** Welcome to chatd! You are guest1. Type /help.\r\n"
        b"*** Users online (2): guest1, bob\r\n"
        b"<carol> hi\r\n* dave waves\r\n*** erin has joined\r\n*** bob has left (quit)\r\n"
    )
    assert session.book.names() == ["carol", "dave", "erin", "guest1"]


def test_quit_sends_quit_waits_for_server_then_closes() -> None:
    session, ui, endpoint, clock, connector = make()
    session.start(connector)
    session.user_input("/quit see you")
    assert endpoint.sent() == ["/quit see you"]
    assert session.quitting
    transport = endpoint.transports[-1]
    assert not transport.disconnecting  # grace period for the server's goodbye
    clock.advance(session.quit_grace)
    assert transport.disconnecting
    assert not session.finished.called
    endpoint.drop(ConnectionDone())
    assert session.finished.called and session.exit_code == 0
    assert ui.texts(Kind.STATUS)[-1] == "Disconnected"
    clock.advance(100)
    assert endpoint.attempts == 1  # no reconnection after quitting
    session.user_input("too late")
    assert endpoint.sent() == ["/quit see you"]


def test_quit_aborts_if_the_connection_will_not_close() -> None:
    session, _ui, endpoint, clock, connector = make()
    session.start(connector)
    session.quit()
    assert endpoint.sent() == ["/quit"]
    clock.advance(session.quit_grace + 2)
    assert endpoint.transports[-1].disconnecting


def test_quit_while_waiting_to_retry_cancels_retry() -> None:
    session, _ui, endpoint, clock, connector = make()
    endpoint.refuse = True
    session.start(connector)
    session.quit()
    assert session.finished.called
    clock.advance(100)
    assert endpoint.attempts == 1


# --- pipe-mode behaviour ------------------------------------------------------------------


def test_pipe_mode_queues_until_connected_then_lingers_and_quits() -> None:
    session, _ui, endpoint, clock, connector = make(nick="bot", queue_offline=True, linger=0.5)
    endpoint.refuse = True
    session.start(connector)
    session.user_input("one")
    session.user_input("two")
    endpoint.refuse = False
    clock.advance(1)
    assert endpoint.sent() == ["/nick bot", "one", "two"]
    session.end_of_input()
    clock.advance(0.49)
    assert endpoint.sent()[-1] == "two"
    clock.advance(0.01)
    assert endpoint.sent()[-1] == "/quit"
    clock.advance(session.quit_grace)
    endpoint.drop(ConnectionDone())
    assert session.finished.called and session.exit_code == 0


def test_pipe_mode_gives_up_when_input_ended_and_server_unreachable() -> None:
    session, ui, endpoint, clock, connector = make(queue_offline=True)
    endpoint.refuse = True
    session.start(connector)
    session.user_input("lost")
    session.end_of_input()
    assert not session.finished.called  # a retry is still due
    clock.advance(1)
    assert session.finished.called and session.exit_code == 1
    assert ui.texts(Kind.STATUS_ERROR)[-1].endswith("giving up, 1 line(s) not sent")


# --- kicks and bans: no coming back until /reconnect ----------------------------------------

KICKED = b"*** You have been kicked by root: spamming\r\n"
BANNED_AT_CONNECT = b"*** Error: you are banned from this server: spam (for good)\r\n"
KICKED_AT_CONNECT = b"*** Error: you were kicked from this server; come back in 30 seconds\r\n"


@pytest.mark.parametrize(
    ("line", "word"),
    [
        (KICKED, "kicked"),
        (b"*** You have been banned by root for good: flooding\r\n", "banned"),
        (BANNED_AT_CONNECT, "banned"),
        (KICKED_AT_CONNECT, "kicked"),
    ],
)
def test_kick_or_ban_stops_reconnecting_and_says_how_to_come_back(
    line: bytes, word: str
) -> None:
    session, ui, endpoint, clock, connector = make(nick="alice")
    session.start(connector)
    endpoint.receive(line)
    endpoint.drop(ConnectionDone())
    clock.advance(600)
    assert endpoint.attempts == 1
    from_server = [ln.kind for ln in ui.lines if ln.raw]
    assert from_server == [Kind.KICKED if word == "kicked" else Kind.BANNED]  # shown
    assert ui.texts(Kind.STATUS_ERROR)[-1] == (
        f"You were {word}: not reconnecting. "
        "/reconnect or a restart of chatd-client brings you back."
    )
    assert not session.finished.called  # the terminal stays, offline
    session.user_input("hello?")
    assert ui.texts(Kind.STATUS_ERROR)[-1] == (
        "Not connected: line not sent; /reconnect to connect again"
    )


def test_reconnect_after_a_kick_connects_at_once_and_rejoins() -> None:
    session, ui, endpoint, clock, connector = make(nick="alice")
    session.start(connector)
    endpoint.receive(b"*** You are now in #dev (2 users)\r\n")
    endpoint.receive(KICKED)
    endpoint.drop(ConnectionDone())
    session.user_input("/reconnect")
    assert endpoint.attempts == 2 and session.online
    assert endpoint.sent() == ["/nick alice", "/join #dev"]  # /reconnect itself is not sent
    assert session.removed is None
    # Refused again (kicked a moment ago): held again.
    endpoint.receive(KICKED_AT_CONNECT)
    endpoint.drop(ConnectionDone())
    clock.advance(600)
    assert endpoint.attempts == 2
    session.user_input("/reconnect")
    assert endpoint.attempts == 3 and session.online
    session.user_input("/reconnect")
    assert ui.texts(Kind.STATUS_ERROR)[-1] == "Already connected"
    assert endpoint.attempts == 3


def test_reconnect_while_waiting_to_retry_connects_now() -> None:
    session, _ui, endpoint, clock, connector = make()
    endpoint.refuse = True
    session.start(connector)
    for _ in range(3):
        clock.advance(10)
    assert endpoint.attempts == 4  # waiting 8 s for the next
    endpoint.refuse = False
    session.user_input("/reconnect")
    assert endpoint.attempts == 5 and session.online
    clock.advance(100)
    assert endpoint.attempts == 5  # the retry that was due is cancelled


def test_an_ordinary_drop_still_reconnects() -> None:
    session, _ui, endpoint, clock, connector = make()
    session.start(connector)
    endpoint.receive(b"*** mallory has been kicked by root: spam\r\n")  # someone else
    endpoint.receive(b"<mallory> *** You have been kicked by root: fake\r\n")  # a pretender
    endpoint.drop()
    clock.advance(1)
    assert endpoint.attempts == 2 and session.online


def test_pipe_mode_kicked_then_input_ends_exits_1() -> None:
    session, ui, endpoint, _clock, connector = make(queue_offline=True)
    session.start(connector)
    endpoint.receive(KICKED)
    endpoint.drop(ConnectionDone())
    session.user_input("unsent")
    assert not session.finished.called
    session.end_of_input()
    assert session.finished.called and session.exit_code == 1
    assert ui.texts(Kind.STATUS_ERROR)[-1] == "Giving up: 1 line(s) not sent"
    assert endpoint.attempts == 1


# --- after a reconnect: back in our room, away again -------------------------------------------


def test_reconnect_rejoins_room_and_sets_away_again() -> None:
    session, _ui, endpoint, clock, connector = make(nick="alice", who_on_connect=True)
    session.start(connector)
    endpoint.receive(b"*** Welcome to chatd! You are guest1. Type /help.\r\n")
    session.user_input("/join #dev")
    endpoint.receive(b"*** You are now in #dev (2 users)\r\n")
    session.user_input("/away lunch, back at 2")
    endpoint.receive(b"*** You are marked as away: lunch, back at 2\r\n")
    endpoint.drop()  # the server restarts
    clock.advance(1)
    assert session.online
    # Nick first, then room and away, then the /who that shows the room we are back in.
    assert endpoint.sent() == ["/nick alice", "/join #dev", "/away lunch, back at 2", "/who"]


def test_reconnect_after_back_sends_only_the_room() -> None:
    session, _ui, endpoint, clock, connector = make()
    session.start(connector)
    endpoint.receive(b"*** You are now in #dev (2 users)\r\n")
    endpoint.receive(b"*** You are marked as away: away\r\n")
    endpoint.receive(b"*** You are no longer marked as away\r\n")
    endpoint.drop()
    clock.advance(1)
    assert session.online
    assert endpoint.sent() == ["/join #dev"]


def test_rejoin_of_the_starting_room_is_silent() -> None:
    session, ui, endpoint, clock, connector = make()
    session.start(connector)
    endpoint.receive(b"*** You are now in #dev (2 users)\r\n")
    endpoint.receive(b"*** You are now in #lobby (5 users)\r\n")
    endpoint.drop()
    clock.advance(1)
    assert endpoint.sent() == ["/join #lobby"]
    endpoint.receive(b"*** Error: you are already in #lobby\r\n")
    assert not ui.texts(Kind.ERROR)  # the answer to a /join the user did not type
    session.user_input("/join #lobby")
    endpoint.receive(b"*** Error: you are already in #lobby\r\n")
    assert ui.texts(Kind.ERROR) == ["you are already in #lobby"]  # the user's own: shown

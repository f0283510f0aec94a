"""The line protocol, backoff, the reconnecting connector and the session core.

No network and no terminal: StringTransport for the wire, task.Clock for time.
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionDone, ConnectionLost, ConnectionRefusedError
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
            return fail(ConnectionRefusedError())
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


def test_backoff_jitter_spreads_upwards() -> None:
    b = Backoff(initial=1, jitter=0.1, rand=lambda: 0.5)
    assert b.next_delay() == pytest.approx(1.05)


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
    assert errors[0].startswith("Cannot connect to server:7777: Connection was refused")
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

"""The line protocol and a connector that keeps one connection up, with backoff."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IAddress, IHandshakeListener
from twisted.internet.protocol import Factory
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from chatd.client._types import Clock, DelayedCall, Endpoint


class Listener(Protocol):
    """What the connector tells (the session) about the connection."""

    def connecting(self, attempt: int) -> None: ...
    def connected(self) -> None: ...
    def line_received(self, line: str) -> None: ...
    def connect_failed(self, reason: Failure, retry_in: float | None) -> None: ...
    def disconnected(self, reason: Failure, retry_in: float | None) -> None: ...


@implementer(IHandshakeListener)
class ChatProtocol(LineReceiver):
    """Split server output into lines (CRLF or LF), decode them as UTF-8.

    Over TLS the connection counts as made only once the handshake has completed
    (so a certificate that fails verification is a failed connection attempt).
    """

    delimiter = b"\n"
    MAX_LENGTH = 64 * 1024

    def __init__(self, connector: Connector) -> None:
        self.connector = connector

    def connectionMade(self) -> None:
        if not self.connector.tls:
            self.connector._made(self)

    def handshakeCompleted(self) -> None:
        if self.connector.tls:
            self.connector._made(self)

    def lineReceived(self, line: bytes) -> None:
        if line.endswith(b"\r"):
            line = line[:-1]
        self.connector.listener.line_received(line.decode("utf-8", errors="replace"))

    def send(self, text: str) -> None:
        transport: Any = self.transport
        transport.write(text.encode("utf-8") + b"\r\n")

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.connector._lost(self, reason)


class _ChatFactory(Factory):
    def __init__(self, connector: Connector) -> None:
        self.connector = connector

    def buildProtocol(self, addr: IAddress | None) -> ChatProtocol:
        return ChatProtocol(self.connector)


class Backoff:
    """Exponential backoff: initial, initial*factor, ... capped at ``cap`` seconds.

    ``jitter`` shortens each delay by up to that fraction (so that many clients of a
    restarted server do not all come back at the same instant); ``rand`` returns a
    number in [0, 1) and is there for tests.
    """

    def __init__(
        self,
        initial: float = 0.5,
        factor: float = 2.0,
        cap: float = 30.0,
        jitter: float = 0.1,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.initial = initial
        self.factor = factor
        self.cap = cap
        self.jitter = jitter
        self.rand = rand
        self.failures = 0

    def next_delay(self) -> float:
        base = min(self.cap, self.initial * self.factor**self.failures)
        self.failures += 1
        # Spread downwards, so that no delay ever exceeds the cap it promises.
        return base * (1 - self.jitter * self.rand())

    def reset(self) -> None:
        self.failures = 0


class Connector:
    """Keep one connection to the server: connect, and reconnect with backoff.

    A connection that lasted at least ``stable_after`` seconds resets the backoff,
    so a server that accepts and drops at once is not hammered. With ``tls`` the
    connection counts as made when the TLS handshake completes; one lost before
    that is a failed attempt. After :meth:`hold` (the server kicked or banned us) a
    lost connection is not retried until :meth:`reconnect`.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        clock: Clock,
        listener: Listener,
        backoff: Backoff | None = None,
        retry: bool = True,
        stable_after: float = 10.0,
        tls: bool = False,
    ) -> None:
        self.endpoint = endpoint
        self.clock = clock
        self.listener = listener
        self.backoff = backoff or Backoff()
        self.retry = retry
        self.stable_after = stable_after
        self.tls = tls
        self.protocol: ChatProtocol | None = None
        self.attempts = 0
        self._connected_at = 0.0
        self._pending: Deferred[Any] | None = None
        self._retry_call: DelayedCall | None = None
        self._stopping = False
        self._held = False
        self._connecting = False  # from an attempt's start until it is made or has failed
        self._closed: list[Deferred[None]] = []

    @property
    def is_connected(self) -> bool:
        return self.protocol is not None

    def start(self) -> None:
        self._stopping = False
        self._connect()

    @property
    def held(self) -> bool:
        return self._held

    def hold(self) -> None:
        """Do not reconnect after this connection (or the next failure) ends."""
        self._held = True

    def reconnect(self) -> bool:
        """Connect now, whether held or waiting to retry; False if connected or connecting."""
        if self._stopping or self.protocol is not None or self._connecting:
            return False
        if self._retry_call is not None and self._retry_call.active():
            self._retry_call.cancel()
        self._held = False
        self.backoff.reset()
        self._connect()
        return True

    def send(self, line: str) -> bool:
        """Send a line if connected; say whether it went out."""
        if self.protocol is None:
            return False
        self.protocol.send(line)
        return True

    def stop(self, grace: float = 0.0, timeout: float = 2.0) -> Deferred[None]:
        """Stop retrying and close the connection (after sending what is buffered).

        With ``grace``, first give the server that long to close the connection
        itself (after a /quit, so that its goodbye is still shown). The result fires
        once the connection is gone; if it has not gone ``timeout`` seconds later
        it is aborted.
        """
        self._stopping = True
        if self._retry_call is not None and self._retry_call.active():
            self._retry_call.cancel()
        self._retry_call = None
        if self._pending is not None:
            self._pending.cancel()
        if self.protocol is None:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._closed.append(d)
        transport: Any = self.protocol.transport
        calls: list[DelayedCall] = []
        if grace > 0:
            calls.append(self.clock.callLater(grace, transport.loseConnection))
        else:
            transport.loseConnection()
        abort = getattr(transport, "abortConnection", None)
        if abort is not None:
            calls.append(self.clock.callLater(grace + timeout, abort))

        def cancel_calls(result: None) -> None:
            for call in calls:
                if call.active():
                    call.cancel()
            return result

        d.addBoth(cancel_calls)
        return d

    # --- internals ---------------------------------------------------------------

    def _connect(self) -> None:
        self._retry_call = None
        self.attempts += 1
        self._connecting = True
        self.listener.connecting(self.attempts)
        d = self.endpoint.connect(_ChatFactory(self))
        self._pending = d
        d.addCallbacks(self._connect_ok, self._connect_failed)

    def _connect_ok(self, protocol: object) -> None:
        self._pending = None

    def _connect_failed(self, reason: Failure) -> None:
        self._pending = None
        self._connecting = False
        if self._stopping:
            return
        delay = self._schedule_retry()
        self.listener.connect_failed(reason, delay)

    def _schedule_retry(self) -> float | None:
        if not self.retry or self._stopping or self._held:
            return None
        delay = self.backoff.next_delay()
        self._retry_call = self.clock.callLater(delay, self._connect)
        return delay

    def _made(self, protocol: ChatProtocol) -> None:
        self.protocol = protocol
        self._connecting = False
        self._connected_at = self.clock.seconds()
        self.listener.connected()

    def _lost(self, protocol: ChatProtocol, reason: Failure) -> None:
        if self.protocol is not protocol:
            # Lost before it was made (TLS handshake failed): a failed attempt.
            self._connect_failed(reason)
            return
        self.protocol = None
        if self.clock.seconds() - self._connected_at >= self.stable_after:
            self.backoff.reset()
        closed, self._closed = self._closed, []
        delay = None if self._stopping else self._schedule_retry()
        self.listener.disconnected(reason, delay)
        for d in closed:
            d.callback(None)

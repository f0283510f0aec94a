"""The two connections a chatd process keeps to Redis, and whether Redis is there.

Why txredisapi: it speaks RESP on the Twisted reactor chatd already runs (epoll), so
``--redis`` changes nothing about how chatd is started and nothing else in the process
becomes asyncio. The alternative, redis-py's asyncio client, is the better maintained
client, but would need ``twistd --reactor asyncio`` and a Future-to-Deferred bridge on every
call for every process, with or without ``--redis``. txredisapi gives AUTH (with ACL
users), SELECT, EVALSHA with automatic EVAL fallback, pub/sub and reply timeouts; chatd uses
its protocol classes only and does the connecting itself (below), so TLS, Unix sockets and
reconnecting are Twisted's own endpoints and ``ClientService``.

One connection carries commands (scripts, heartbeats), the other is subscribed to the
event channel: a subscribed Redis connection takes no other commands. Each is kept by a
``ClientService`` that reconnects with backoff (0.5 s doubling to 5 s) for as long as
chatd runs. The link is *up* when both are connected, logged in and subscribed; every
change between up and down is reported to the owner once, so the owner can say once
that Redis is gone, keep serving locally, and rejoin when the link is up again.
A Redis that stops answering (a partition, a stopped process) is noticed by the reply
timeout of the heartbeat's commands, which closes the connection.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

import txredisapi
from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet import defer, endpoints, protocol, ssl
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.logger import ILogObserver, LogEvent, Logger, LogLevel, globalLogPublisher
from twisted.python.failure import Failure
from zope.interface import implementer

from chatd.cluster.address import RedisAddress

CONNECT_TIMEOUT = 5.0  # seconds for TCP (and TLS) to connect
REPLY_TIMEOUT = 5.0  # seconds Redis may take to answer a command before the link is down
FIRST_RETRY = 0.5
LAST_RETRY = 5.0


def redis_endpoint(reactor: Any, address: RedisAddress) -> IStreamClientEndpoint:
    """Where to connect: TCP, TLS over TCP, or a Unix socket."""
    if address.unix_path is not None:
        unix: IStreamClientEndpoint = endpoints.UNIXClientEndpoint(
            reactor, address.unix_path, timeout=CONNECT_TIMEOUT)
        return unix
    tcp: IStreamClientEndpoint = endpoints.HostnameEndpoint(
        reactor, address.host, address.port, timeout=CONNECT_TIMEOUT)
    if not address.tls:
        return tcp
    trust: Any = ssl.platformTrust()
    if address.ca is not None:
        with open(address.ca, "rb") as f:
            trust = ssl.Certificate.loadPEM(f.read())
    client_certificate = None
    if address.cert is not None and address.key is not None:
        with open(address.cert, "rb") as f:
            cert = f.read()
        with open(address.key, "rb") as f:
            key = f.read()
        client_certificate = ssl.PrivateCertificate.loadPEM(key + b"\n" + cert)
    options = ssl.optionsForClientTLS(address.host, trustRoot=trust,
                                      clientCertificate=client_certificate)
    tls: IStreamClientEndpoint = endpoints.wrapClientTLS(options, tcp)
    return tls


@implementer(ILogObserver)
def _warnings_only(event: LogEvent) -> None:
    if event.get("log_level", LogLevel.info) >= LogLevel.warn:
        globalLogPublisher(event)


class _QuietClientService(ClientService):
    """ClientService logs every retry at info level: every 5 s for as long as Redis is away.
    The link says once that Redis is gone instead (``on_down``); warnings still pass."""

    _log = Logger(observer=_warnings_only)


class _Commands(txredisapi.RedisProtocol):  # type: ignore[misc]
    lost: Callable[[_Commands], None] = staticmethod(lambda p: None)

    def unwrapped(self) -> _Commands:
        """This protocol itself: ClientService hands prepareConnection a proxy of it."""
        return self

    def connectionLost(self, why: Failure) -> None:
        # The link is down before the commands in flight fail: their errbacks see it so.
        self.lost(self)
        super().connectionLost(why)


class _Subscriber(txredisapi.SubscriberProtocol):  # type: ignore[misc]
    lost: Callable[[_Subscriber], None] = staticmethod(lambda p: None)
    received: Callable[[bytes], None] = staticmethod(lambda message: None)
    batch: Callable[[], AbstractContextManager[Any]] = staticmethod(contextlib.nullcontext)

    def dataReceived(self, data: bytes, unpause: bool = False) -> None:
        # Every message one read brings is handed on inside one output batch, so each
        # client gets one write for all of them (chatd/output.py), as for a client's read.
        with self.batch():
            super().dataReceived(data, unpause)

    def unwrapped(self) -> _Subscriber:
        return self

    def messageReceived(self, pattern: Any, channel: Any, message: Any) -> None:
        if isinstance(message, bytes):
            self.received(message)

    def connectionLost(self, why: Failure) -> None:
        # The link is down before the commands in flight fail: their errbacks see it so.
        self.lost(self)
        super().connectionLost(why)


class _Factory(protocol.Factory):
    """Builds one kind of txredisapi protocol; answers the few calls it makes on its
    factory (a refused password)."""

    isLazy = False
    noisy = False

    def __init__(self, build: Callable[[], Any], refused: Callable[[str], None]) -> None:
        self._build = build
        self._refused = refused

    def buildProtocol(self, addr: Any) -> Any:
        p = self._build()
        p.factory = self
        return p

    def stopTrying(self) -> None:
        """txredisapi gives up on a refused password; chatd keeps trying, with backoff, so
        that fixing Redis's configuration is enough."""

    def connectionError(self, why: str) -> None:
        self._refused(why)


class RedisLink:
    """A command connection and a subscription to ``channel``, kept up for as long as the
    link is started; ``on_up`` and ``on_down(reason)`` are called on each change."""

    log = Logger()

    def __init__(
        self,
        reactor: IReactorTime,
        address: RedisAddress,
        channel: str,
        on_message: Callable[[bytes], None],
        on_up: Callable[[], None],
        on_down: Callable[[str], None],
        batch: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext,
    ) -> None:
        self.address = address
        self._batch = batch
        self.channel = channel
        self._on_message = on_message
        self._on_up = on_up
        self._on_down = on_down
        self.commands: _Commands | None = None
        self._subscriber: _Subscriber | None = None
        self.up: bool | None = None  # None: not known yet (before the first attempt ends)
        self.last_problem = "not connected yet"
        self._refusal_logged: str | None = None
        endpoint = redis_endpoint(reactor, address)
        retry = backoffPolicy(initialDelay=FIRST_RETRY, maxDelay=LAST_RETRY, factor=2.0)
        self._services = [
            _QuietClientService(endpoint, _Factory(self._build_commands, self._refused),
                          retryPolicy=retry, clock=reactor,
                          prepareConnection=self._prepare_commands),
            _QuietClientService(endpoint, _Factory(self._build_subscriber, self._refused),
                          retryPolicy=retry, clock=reactor,
                          prepareConnection=self._prepare_subscriber),
        ]

    def start(self) -> None:
        for keeper in self._services:
            keeper.startService()
        # A Redis that is not there at start is said once too, as if it had gone.
        first: defer.Deferred[Any] = self._services[0].whenConnected(failAfterFailures=1)
        first.addErrback(self._first_failed)

    def _first_failed(self, failure: Failure) -> None:
        if self.up is None and not failure.check(defer.CancelledError):
            self.up = False
            self._on_down(self._refusal_logged or failure.getErrorMessage())

    def stop(self) -> defer.Deferred[Any]:
        """Closes both connections and stops reconnecting."""
        self.up = False
        return defer.DeferredList([defer.maybeDeferred(s.stopService) for s in self._services])

    def call(self, script: str, keys: Sequence[str], args: Sequence[Any]) -> defer.Deferred[Any]:
        """Runs a Lua script (EVALSHA, EVAL the first time); fails if the link is down."""
        if self.commands is None:
            return defer.fail(txredisapi.ConnectionError("Redis is not connected"))
        d: defer.Deferred[Any] = self.commands.eval(script, list(keys), list(args))
        return d

    def command(self, *words: Any) -> defer.Deferred[Any]:
        if self.commands is None:
            return defer.fail(txredisapi.ConnectionError("Redis is not connected"))
        d: defer.Deferred[Any] = self.commands.execute_command(*words)
        return d

    def ping_subscriber(self) -> None:
        """A PING on the subscribed connection, so a silent one is found dead too."""
        if self._subscriber is not None:
            self._subscriber.execute_command("PING").addErrback(lambda _: None)

    # --- Connections -----------------------------------------------------------------------

    def _protocol_options(self) -> dict[str, Any]:
        return {"charset": None, "convertNumbers": False, "replyTimeout": REPLY_TIMEOUT,
                "password": self.address.password, "username": self.address.username,
                "dbid": self.address.db or None}

    def _build_commands(self) -> _Commands:
        p = _Commands(**self._protocol_options())
        p.lost = self._commands_lost
        return p

    def _build_subscriber(self) -> _Subscriber:
        p = _Subscriber(**self._protocol_options())
        p.lost = self._subscriber_lost
        p.received = self._on_message
        p.batch = self._batch
        return p

    def _prepare_commands(self, proxy: Any) -> defer.Deferred[None]:
        p: _Commands = proxy.unwrapped()

        def ready(logged_in: bool) -> None:
            if logged_in:
                self.commands = p
                self._check()

        return self._logged_in(p).addCallback(ready)

    def _prepare_subscriber(self, proxy: Any) -> defer.Deferred[None]:
        p: _Subscriber = proxy.unwrapped()

        def subscribe(logged_in: bool) -> defer.Deferred[Any]:
            if not logged_in:
                return defer.succeed(False)
            d: defer.Deferred[Any] = p.subscribe(self.channel)
            return d.addCallback(lambda _: True)

        def ready(subscribed: bool) -> None:
            if subscribed:
                self._subscriber = p
                self._check()

        return self._logged_in(p).addCallback(subscribe).addCallback(ready)

    def _logged_in(self, p: Any) -> defer.Deferred[bool]:
        """Fires with True once AUTH and SELECT are done, False if the connection is lost
        first (a refused password). Never fails: txredisapi says the connection is lost from
        inside its connectionLost, before ClientService hears of it, and ClientService has
        no way out of a failed prepareConnection followed by that loss (automat's
        NoTransition, logged as an unhandled error); succeeding lets it see a connection
        made and then lost, and retry with backoff as for any other."""
        # Events go out one small write at a time: Nagle would hold each behind the
        # previous one's ACK (and delayed ACKs make that 40 ms).
        set_no_delay = getattr(p.transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            set_no_delay(True)
        d: defer.Deferred[Any] = p.whenConnected()
        lost: defer.Deferred[Any] = p.whenDisconnected()
        first: defer.Deferred[Any] = defer.DeferredList(
            [d, lost], fireOnOneCallback=True, consumeErrors=True)

        def which(result: tuple[Any, int]) -> bool:
            if result[1] == 1 and self.up is None:
                # Not usable from the start (a refused password): said once, as if gone.
                self.up = False
                self._on_down(self._refusal_logged or "lost while logging in")
            return result[1] == 0

        return first.addCallback(which)

    def _commands_lost(self, p: _Commands) -> None:
        if self.commands is p:
            self.commands = None
            self._check("lost the connection")

    def _subscriber_lost(self, p: _Subscriber) -> None:
        if self._subscriber is p:
            self._subscriber = None
            self._check("lost the connection")

    def _refused(self, why: str) -> None:
        """Redis refused us (a wrong password, a missing database): said once per reason,
        not on every retry."""
        self.last_problem = why
        if why != self._refusal_logged:
            self._refusal_logged = why
            self.log.error("Redis at {address}: {why}", address=self.address.describe(),
                           why=why)

    def _check(self, problem: str | None = None) -> None:
        if problem is not None:
            self.last_problem = problem
        up = self.commands is not None and self._subscriber is not None
        if up == bool(self.up):
            return
        self.up = up
        if up:
            self._refusal_logged = None
            self._on_up()
        else:
            self._on_down(self.last_problem)

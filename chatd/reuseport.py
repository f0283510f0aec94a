"""``reuseport:PORT`` endpoints: several chatd processes listening on one TCP port.

With SO_REUSEPORT (Linux 3.9 and later), every process that sets it on its socket before
binding may bind the same address and port; the kernel spreads incoming connections over
them, by a hash of the connection's addresses. So N chatd processes started with
``--listen reuseport:7777 --redis URL`` serve one port with N cores, each accepting on its
own socket (no thundering herd, no process handing sockets to another). A process that
stops takes only its own connections with it; the others keep listening.

Form: ``reuseport:PORT[:interface=ADDR][:backlog=N]``; an IPv6 ``interface`` (escape its
colons, ``interface=\\:\\:1``) listens on IPv6. The default backlog is chatd's, 1024.
"""

from __future__ import annotations

import socket
from typing import Any, cast

from twisted.internet import defer, error
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocolFactory,
    IReactorSocket,
    IStreamServerEndpoint,
    IStreamServerEndpointStringParser,
)
from twisted.plugin import IPlugin
from zope.interface import implementer

DEFAULT_BACKLOG = 1024  # as chatd.tap.DEFAULT_BACKLOG, for the same reason (a restart)


@implementer(IStreamServerEndpoint)
class ReusePortEndpoint:
    """A TCP server endpoint whose socket has SO_REUSEPORT set before it binds."""

    def __init__(self, reactor: IReactorSocket, port: int, interface: str = "",
                 backlog: int = DEFAULT_BACKLOG) -> None:
        self.reactor = reactor
        self.port = port
        self.interface = interface
        self.backlog = backlog

    def listen(self, factory: IProtocolFactory) -> defer.Deferred[IListeningPort]:
        family = socket.AF_INET6 if ":" in self.interface else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((self.interface, self.port))
            sock.listen(self.backlog)
            sock.setblocking(False)
            # The reactor takes a duplicate of the descriptor; ours is closed below.
            port: IListeningPort = self.reactor.adoptStreamPort(
                sock.fileno(), family, cast(Any, factory))
        except OSError as e:
            return defer.fail(error.CannotListenError(self.interface, self.port, e))
        finally:
            sock.close()
        return defer.succeed(port)


@implementer(IPlugin, IStreamServerEndpointStringParser)
class ReusePortParser:
    prefix = "reuseport"

    def parseStreamServer(self, reactor: Any, *args: object,
                          **kwargs: object) -> IStreamServerEndpoint:
        return self._parse(reactor, *map(str, args), **{k: str(v) for k, v in kwargs.items()})

    def _parse(self, reactor: Any, port: str, interface: str = "",
               backlog: str = str(DEFAULT_BACKLOG)) -> ReusePortEndpoint:
        if not (port.isascii() and port.isdigit()) or not 0 <= int(port) <= 65535:
            raise ValueError(f"reuseport: port {port!r} is not a number from 0 to 65535")
        if not (backlog.isascii() and backlog.isdigit()) or not 0 < int(backlog) < 2**31:
            raise ValueError(f"reuseport: backlog {backlog!r} is not a positive number")
        return ReusePortEndpoint(reactor, int(port), interface, int(backlog))

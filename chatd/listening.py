"""A service that listens on one port, with a clear error when it cannot."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.application import service
from twisted.internet import defer
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger
from twisted.python.failure import Failure

from chatd.startup import StartupError, report_plainly

Listen = Callable[[], "defer.Deferred[Any]"]

_log = Logger()


def bound_address(port: IListeningPort) -> str:
    """Where ``port`` listens, as the listening line says it: ``tcp 127.0.0.1 port 7777``
    (``udp`` for datagrams; an IPv6 host as ``::1``), ``unix /path`` for a UNIX socket."""
    address = port.getHost()
    if isinstance(address, IPv4Address | IPv6Address):
        return f"{address.type.lower()} {address.host} port {address.port}"
    name = getattr(address, "name", address)  # a UNIX socket's path, as bytes
    return f"unix {name.decode(errors='replace') if isinstance(name, bytes) else name}"


class CannotListen(StartupError):
    """A port could not be bound; the message names the endpoint as the user wrote it."""


class ListeningService(service.Service):
    """Listens in ``privilegedStartService``, so twistd binds ports below 1024 before it
    drops root (``--uid``/``--gid``), and stops listening when the service stops.

    Unlike ``StreamServerEndpointService``, a failure to bind is raised at once as
    ``CannotListen`` naming the endpoint, so the daemon exits instead of running deaf.
    """

    def __init__(self, description: str, listen: Listen, role: str) -> None:
        self.description = description
        self.role = role  # chat, web, echo, echo-udp, irc, metrics: what the port serves
        self._listen = listen
        self.port: IListeningPort | None = None

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        if self.port is not None:
            return
        outcome: list[Any] = []
        self._listen().addBoth(outcome.append)
        if not outcome:
            raise CannotListen(f"{self.description}: the endpoint did not start listening")
        result = outcome[0]
        if isinstance(result, Failure):
            reason = result.getErrorMessage()
            report_plainly()
            raise CannotListen(f"cannot listen on {self.description}: {reason}")
        self.port = result
        # One line per listener, in one form, for operators and for tests that start the
        # daemon on port 0 and need the port it was given (docs/operations.md).
        address = result.getHost()
        _log.info("listening: {role} {address} ({description})", event="chatd.listening",
                  role=self.role, address=bound_address(result),
                  port=getattr(address, "port", None), description=self.description)

    def startService(self) -> None:
        # Outside twistd nobody calls privilegedStartService first.
        self.privilegedStartService()
        super().startService()

    def stopService(self) -> defer.Deferred[None] | None:
        super().stopService()
        port, self.port = self.port, None
        if port is None:
            return None
        stopped: defer.Deferred[None] | None = port.stopListening()
        return stopped

"""A service that listens on one port, with a clear error when it cannot."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.application import service
from twisted.internet import defer
from twisted.internet.interfaces import IListeningPort
from twisted.python.failure import Failure

from chatd.startup import StartupError, report_plainly

Listen = Callable[[], "defer.Deferred[Any]"]


class CannotListen(StartupError):
    """A port could not be bound; the message names the endpoint as the user wrote it."""


class ListeningService(service.Service):
    """Listens in ``privilegedStartService``, so twistd binds ports below 1024 before it
    drops root (``--uid``/``--gid``), and stops listening when the service stops.

    Unlike ``StreamServerEndpointService``, a failure to bind is raised at once as
    ``CannotListen`` naming the endpoint, so the daemon exits instead of running deaf.
    """

    def __init__(self, description: str, listen: Listen) -> None:
        self.description = description
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

"""Every limit the edge enforces: built from the options once, reloaded in one place.

``EdgePolicy`` holds the limits one family of connections is held to (the chat front-ends
share one, the TCP echo service has its own). Guards keep a reference to their policy and
read it when they decide, so a SIGHUP that changes a value reaches live connections, not
only new ones: ``Policy.reconfigure`` is the one place a reload changes a limit, and it
tells every subscriber (each front-end factory, which tells its connections) afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from twisted.internet.interfaces import IReactorTime

from chatd.addresses import DEFAULT_IPV6_PREFIX
from chatd.backpressure import DEFAULT_SEND_GRACE
from chatd.flood import DEFAULT_FLOOD_QUEUE
from chatd.limits import ConnectionLimits

DEFAULT_MAX_LINE = 4096


@dataclass
class EdgePolicy:
    """The limits of one family of connections; 0 turns a limit off."""

    max_line: int = DEFAULT_MAX_LINE
    flood_rate: float = 0.0
    flood_burst: int = 0
    flood_queue: int = DEFAULT_FLOOD_QUEUE
    send_buffer: int = 0
    send_grace: float = DEFAULT_SEND_GRACE
    idle_timeout: float = 0.0
    max_clients: int = 0
    max_per_ip: int = 0
    ipv6_prefix: int = DEFAULT_IPV6_PREFIX
    connect_rate: float = 0.0

    def connection_limits(self, clock: IReactorTime) -> ConnectionLimits:
        """The admission counts of one listener family, bounded by this policy."""
        return ConnectionLimits(self.max_clients, self.max_per_ip, self.ipv6_prefix,
                                self.connect_rate, clock.seconds)

    def reconfigure_limits(self, limits: ConnectionLimits) -> None:
        limits.reconfigure(self.max_clients, self.max_per_ip, self.ipv6_prefix,
                           self.connect_rate)

    def update(self, other: EdgePolicy) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(other, f.name))


# Option name -> EdgePolicy field, for the chat front-ends.
CHAT_OPTIONS = {
    "max-line": "max_line",
    "flood-rate": "flood_rate",
    "flood-burst": "flood_burst",
    "flood-queue": "flood_queue",
    "send-buffer": "send_buffer",
    "send-grace": "send_grace",
    "idle-timeout": "idle_timeout",
    "max-clients": "max_clients",
    "max-per-ip": "max_per_ip",
    "ipv6-prefix": "ipv6_prefix",
    "connect-rate": "connect_rate",
}
# The echo service: no lines, no flood gate; its own idle timeout; TCP backpressure
# instead of a send buffer (chatd/echo.py).
ECHO_OPTIONS = {
    "echo-idle-timeout": "idle_timeout",
    "max-clients": "max_clients",
    "max-per-ip": "max_per_ip",
    "ipv6-prefix": "ipv6_prefix",
    "connect-rate": "connect_rate",
}


def _policy(options: Mapping[str, Any], names: Mapping[str, str], **fixed: Any) -> EdgePolicy:
    return EdgePolicy(**fixed, **{field: options[option] for option, field in names.items()})


class Policy:
    """The daemon's limits: the chat front-ends' and the echo service's."""

    reloadable_options = frozenset(CHAT_OPTIONS) | frozenset(ECHO_OPTIONS)

    def __init__(self, options: Mapping[str, Any]) -> None:
        self.chat = _policy(options, CHAT_OPTIONS)
        self.echo = _policy(options, ECHO_OPTIONS, max_line=0, flood_queue=0, send_grace=0)
        self._subscribers: list[Callable[[], None]] = []

    def subscribe(self, changed: Callable[[], None]) -> None:
        """Calls ``changed`` after every reload, once the new values are in place."""
        self._subscribers.append(changed)

    def reconfigure(self, options: Mapping[str, Any]) -> None:
        fresh = Policy(options)
        self.chat.update(fresh.chat)
        self.echo.update(fresh.echo)
        for changed in self._subscribers:
            changed()

"""How many connections one listener family accepts: in total, and from one address.

A factory asks ``admit(address)`` in ``buildProtocol``; when that returns a reason, the
newcomer is refused, otherwise the protocol calls ``release(address)`` when it goes.
Addresses that are not IP (UNIX sockets) count toward the total only.
"""

from __future__ import annotations

import resource
from collections import Counter
from collections.abc import Mapping
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address

DEFAULT_MAX_PER_IP = 10
# Descriptors kept back from chat clients: listening sockets, the log, the state database,
# its thread pool, TCP echo clients.
DESCRIPTOR_RESERVE = 100


def default_max_clients() -> int:
    """As many chat connections as the open-file limit allows, less a reserve.

    Past the limit accept() fails with EMFILE and a newcomer gets no reason at all; just
    below it, the newcomer is told the server is full. 0 (no limit) if there is no limit.
    """
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 0
    return max(soft - DESCRIPTOR_RESERVE, 1)


def describe_peer(address: object) -> str:
    """A peer address for logs: ``host:port`` for IP, the class name for anything else."""
    if isinstance(address, IPv4Address | IPv6Address):
        return f"{address.host}:{address.port}"
    return type(address).__name__


def host_of(address: object) -> str | None:
    """The host part of an IP address, for counting per address; None for anything else."""
    if isinstance(address, IPv4Address | IPv6Address):
        host = address.host
        # An IPv4 client on a dual-stack socket shows up as ::ffff:a.b.c.d.
        return host.removeprefix("::ffff:") if host.startswith("::ffff:") else host
    return None


class ConnectionLimits:
    """Counts live connections; 0 means no limit for either bound."""

    def __init__(self, max_total: int, max_per_host: int = DEFAULT_MAX_PER_IP) -> None:
        self.max_total = max_total
        self.max_per_host = max_per_host
        self.total = 0
        self.per_host: Counter[str] = Counter()

    def reconfigure(self, options: Mapping[str, Any]) -> None:
        """New bounds from a reload; connections already counted stay."""
        self.max_total = options["max-clients"]
        self.max_per_host = options["max-per-ip"]

    def admit(self, address: object) -> str | None:
        """Counts a new connection from ``address``, or returns why it is refused."""
        if self.max_total and self.total >= self.max_total:
            return f"the server is full (the limit is {self.max_total} connections)"
        host = host_of(address)
        if host is not None and self.max_per_host and self.per_host[host] >= self.max_per_host:
            return (
                f"too many connections from your address "
                f"(the limit is {self.max_per_host})"
            )
        self.total += 1
        if host is not None:
            self.per_host[host] += 1
        return None

    def release(self, address: object) -> None:
        """Forgets a connection counted by ``admit``."""
        self.total -= 1
        host = host_of(address)
        if host is not None:
            self.per_host[host] -= 1
            if self.per_host[host] <= 0:
                del self.per_host[host]  # so the table only holds addresses connected now

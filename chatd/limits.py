"""How many connections one listener family accepts: in total, and from one address.

A factory asks ``admit(address)`` in ``buildProtocol``; when that returns a reason, the
newcomer is refused, otherwise the protocol calls ``release(address)`` when it goes.
Addresses that are not IP (UNIX sockets) count toward the total only; IPv6 addresses count
per ``--ipv6-prefix`` block (chatd/addresses.py).
"""

from __future__ import annotations

import resource
from collections import Counter

from chatd.addresses import DEFAULT_IPV6_PREFIX, count_key, describe_peer, host_of

__all__ = ["ConnectionLimits", "default_max_clients", "describe_peer", "host_of"]

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


class ConnectionLimits:
    """Counts live connections; 0 means no limit for either bound."""

    def __init__(
        self,
        max_total: int,
        max_per_host: int = DEFAULT_MAX_PER_IP,
        ipv6_prefix: int = DEFAULT_IPV6_PREFIX,
    ) -> None:
        self.max_total = max_total
        self.max_per_host = max_per_host
        self.ipv6_prefix = ipv6_prefix
        self.total = 0
        self.per_host: Counter[str] = Counter()
        # The key each live IP peer was counted under: a reload may change --ipv6-prefix
        # between its admit and its release, and the release must undo exactly the admit.
        self._counted: dict[object, str] = {}

    def reconfigure(self, max_total: int, max_per_host: int, ipv6_prefix: int) -> None:
        """New bounds from a reload; connections already counted stay."""
        self.max_total = max_total
        self.max_per_host = max_per_host
        self.ipv6_prefix = ipv6_prefix

    def admit(self, address: object) -> str | None:
        """Counts a new connection from ``address``, or returns why it is refused."""
        if self.max_total and self.total >= self.max_total:
            return f"the server is full (the limit is {self.max_total} connections)"
        host = host_of(address)
        key = None if host is None else count_key(host, self.ipv6_prefix)
        if key is not None and self.max_per_host and self.per_host[key] >= self.max_per_host:
            return (
                f"too many connections from your address "
                f"(the limit is {self.max_per_host})"
            )
        self.total += 1
        if key is not None:
            self.per_host[key] += 1
            self._counted[address] = key
        return None

    def release(self, address: object) -> None:
        """Forgets a connection counted by ``admit``."""
        self.total -= 1
        key = self._counted.pop(address, None)
        if key is not None:
            self.per_host[key] -= 1
            if self.per_host[key] <= 0:
                del self.per_host[key]  # so the table only holds addresses connected now

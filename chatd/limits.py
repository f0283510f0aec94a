"""How many connections one listener family accepts: in total, and from one address.

A factory asks ``admit(address)`` in ``buildProtocol``; when that returns a reason, the
newcomer is refused, otherwise the protocol calls ``release(address)`` when it goes.
Addresses that are not IP (UNIX sockets) count toward the total only; IPv6 addresses count
per ``--ipv6-prefix`` block (chatd/addresses.py).
"""

from __future__ import annotations

import resource
import time
from collections import Counter
from collections.abc import Callable

from chatd.addresses import DEFAULT_IPV6_PREFIX, count_key, describe_peer, host_of
from chatd.bucket import TokenBucket

__all__ = ["AddressRates", "ConnectionLimits", "default_max_clients", "describe_peer",
           "host_of"]

DEFAULT_MAX_PER_IP = 10
# New connections a second from one address (like xinetd's cps), with bursts of twice that.
DEFAULT_CONNECT_RATE = 10.0
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


class AddressRates:
    """A token bucket per address: ``rate`` events a second, ``burst`` at once.

    Keys are what per-address limits count (``count_key``). Only addresses seen lately are
    remembered: past ``MAX_REMEMBERED``, those whose bucket has refilled are dropped, and a
    refilled bucket is just what a new one would be, so nobody gains by being dropped.
    """

    MAX_REMEMBERED = 4096

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate  # 0: no limit
        self.burst = burst
        self._buckets: dict[str, TokenBucket] = {}

    def configure(self, rate: float, burst: float) -> None:
        if (rate, burst) != (self.rate, self.burst):
            self.rate, self.burst = rate, burst
            self._buckets.clear()

    def take(self, key: str, now: float) -> bool:
        """Spends one event of ``key``; False if it is over its rate."""
        if not self.rate:
            return True
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.MAX_REMEMBERED:
                self._buckets = {k: b for k, b in self._buckets.items() if not b.is_full(now)}
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, now)
        return bucket.take(now)

    def __len__(self) -> int:
        return len(self._buckets)


class ConnectionLimits:
    """Counts live connections; 0 means no limit for either bound."""

    def __init__(
        self,
        max_total: int,
        max_per_host: int = DEFAULT_MAX_PER_IP,
        ipv6_prefix: int = DEFAULT_IPV6_PREFIX,
        connect_rate: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_total = max_total
        self.max_per_host = max_per_host
        self.ipv6_prefix = ipv6_prefix
        self.clock = clock
        self.connect_rate = connect_rate
        self.rates = AddressRates(connect_rate, 2 * connect_rate)
        self.total = 0
        # Descriptors the front-end holds besides its connections' sockets (the echo's
        # pipes, chatd/splice.py): they count against max_total as connections do, so that
        # the bound on what the front-end can take of the open-file limit holds.
        self.other_descriptors = 0
        self.per_host: Counter[str] = Counter()
        # The key each live IP peer was counted under: a reload may change --ipv6-prefix
        # between its admit and its release, and the release must undo exactly the admit.
        self._counted: dict[object, str] = {}
        self.refused = {"full": 0, "per-address": 0}  # for the metrics

    def reconfigure(
        self, max_total: int, max_per_host: int, ipv6_prefix: int, connect_rate: float = 0.0
    ) -> None:
        """New bounds from a reload; connections already counted stay."""
        self.max_total = max_total
        self.max_per_host = max_per_host
        self.ipv6_prefix = ipv6_prefix
        self.connect_rate = connect_rate
        self.rates.configure(connect_rate, 2 * connect_rate)

    def has_room(self, descriptors: int = 1) -> bool:
        """Whether ``descriptors`` more (a connection's socket, or a pipe's two ends) fit
        under max_total beside the connections and other descriptors counted now."""
        return not self.max_total or (
            self.total + self.other_descriptors + descriptors <= self.max_total)

    def admit(self, address: object) -> str | None:
        """Counts a new connection from ``address``, or returns why it is refused."""
        if not self.has_room():
            self.refused["full"] += 1
            return f"the server is full (the limit is {self.max_total} connections)"
        host = host_of(address)
        key = None if host is None else count_key(host, self.ipv6_prefix)
        if key is not None and self.max_per_host and self.per_host[key] >= self.max_per_host:
            self.refused["per-address"] += 1
            return (
                f"too many connections from your address "
                f"(the limit is {self.max_per_host})"
            )
        if key is not None and not self.rates.take(key, self.clock()):
            return (
                f"too many new connections from your address "
                f"(the limit is {self.connect_rate:g} a second)"
            )
        self.total += 1
        if key is not None:
            self.per_host[key] += 1
            self._counted[address] = key
        return None

    def release(self, address: object) -> None:
        """Forgets a connection counted by ``admit``."""
        self.release_counted(self._counted.pop(address, None))

    def counted_as(self, address: object) -> str | None:
        """The key ``admit`` counted ``address`` under (None for a non-IP peer), handed
        over: the caller keeps it and releases with ``release_counted``, and the limits
        keep nothing of the connection (nor its address object) meanwhile."""
        return self._counted.pop(address, None)

    def release_counted(self, key: str | None) -> None:
        """Forgets a connection whose key the caller took with ``counted_as``."""
        self.total -= 1
        if key is not None:
            self.per_host[key] -= 1
            if self.per_host[key] <= 0:
                del self.per_host[key]  # so the table only holds addresses connected now

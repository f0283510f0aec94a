"""The per-client log: every line a client can cause, rate-limited per address and overall.

An attacker controls how often a client connects, leaves with a reason, fails a password or
is refused, and what text it gives: 300 connect-then-``/quit <4 KB>`` cycles once wrote
1.2 MB of log. So every such line goes through one ``RateLimitedLog``:

- each address (counted like ``--max-per-ip``: IPv6 by ``--ipv6-prefix`` block) may log
  ``PER_ADDRESS_BURST`` lines at once and ``PER_ADDRESS_RATE`` a second after that;
- all addresses together may log ``OVERALL_BURST`` at once and ``OVERALL_RATE`` a second;
- what is left out is counted, and one summary line per ``window`` says how many lines
  were not logged and which address caused most of them;
- text in a line is cut to ``MAX_TEXT`` characters.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from chatd.addresses import DEFAULT_IPV6_PREFIX, count_key, peer_host
from chatd.bucket import TokenBucket
from chatd.limits import AddressRates

PER_ADDRESS_BURST = 20
PER_ADDRESS_RATE = 1 / 6  # ten lines a minute
OVERALL_BURST = 500
OVERALL_RATE = 5.0
DEFAULT_WINDOW = 60.0
MAX_TEXT = 200
# Addresses whose left-out lines are counted apart in a summary, at most.
MAX_REMEMBERED = 4096


def cut(text: str, limit: int = MAX_TEXT) -> str:
    """``text`` cut to ``limit`` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


class RateLimitedLog:
    """Logs lines about clients, within a rate per address and overall."""

    log = Logger(namespace="chatd.limits")

    def __init__(
        self,
        clock: IReactorTime,
        per_address_burst: float = PER_ADDRESS_BURST,
        per_address_rate: float = PER_ADDRESS_RATE,
        overall_burst: float = OVERALL_BURST,
        overall_rate: float = OVERALL_RATE,
        window: float = DEFAULT_WINDOW,
        ipv6_prefix: int = DEFAULT_IPV6_PREFIX,
    ) -> None:
        self.clock = clock
        self.per_address = AddressRates(per_address_rate, per_address_burst)
        self.window = window
        self.ipv6_prefix = ipv6_prefix
        self._overall = TokenBucket(overall_rate, overall_burst, clock.seconds())
        self._suppressed: Counter[str] = Counter()  # by address, this window
        self._summary: IDelayedCall | None = None
        # Every refusal and cut-off by kind, logged or not: the metrics' refusal counts.
        # Kinds are fixed phrases from the code, so this stays small.
        self.counts: Counter[str] = Counter()

    def count(self, kind: str) -> None:
        """Counts an event of ``kind`` that is not worth a log line (an over-long line)."""
        self.counts[kind] += 1

    def event(self, kind: str, peer: str, detail: str = "") -> None:
        """``peer: kind (detail)``: ``peer`` was refused or cut off for reason ``kind``."""
        self.counts[kind] += 1
        self.emit(peer, "{peer}: {reason}{details}", event="refusal", reason=kind,
                  detail=detail, details=f" ({cut(detail)})" if detail else "")

    def emit(self, peer: str, format: str, **fields: Any) -> None:
        """Logs ``format`` (a twisted.logger format naming ``{peer}``) about ``peer``, if its
        address and the whole log are within their rates; text fields are cut."""
        key = self._key(peer)
        now = self.clock.seconds()
        # The address's token first: a flooding address must not spend everyone's.
        if not (self.per_address.take(key, now) and self._overall.take(now)):
            self._suppress(key)
            return
        fields = {name: cut(value) if isinstance(value, str) else value
                  for name, value in fields.items()}
        self.log.info(format, peer=peer, **fields)

    def _key(self, peer: str) -> str:
        host = peer_host(peer)
        return peer if host is None else count_key(host, self.ipv6_prefix)

    def _suppress(self, key: str) -> None:
        if key in self._suppressed or len(self._suppressed) < MAX_REMEMBERED:
            self._suppressed[key] += 1
        else:
            self._suppressed["other addresses"] += 1
        if self._summary is None:
            self._summary = self.clock.callLater(self.window, self._summarise)

    def _summarise(self) -> None:
        self._summary = None
        suppressed, self._suppressed = self._suppressed, Counter()
        (top, most), = suppressed.most_common(1)
        self.log.info(
            "{count} more client log lines in the last {window:g} s were not logged "
            "({most} about {top})", event="log.suppressed",
            count=sum(suppressed.values()), window=self.window, most=most, top=top,
        )

    def stop(self) -> None:
        """Cancels a pending summary (so a stopping daemon leaves no timers behind)."""
        if self._summary is not None and self._summary.active():
            self._summary.cancel()
        self._summary = None

"""Moderation as values and rules: durations, ban targets, bans, mutes, recent kicks, and
their expiry.

Nothing here touches a socket or a database: the moderator asks these objects questions (is
this address banned? is this user muted? was this nick kicked from here lately?) and the
store persists bans and mutes. Time always comes from an ``IReactorTime``, so expiry is
tested with ``task.Clock``.
"""

from __future__ import annotations

import ipaddress
import math
import re
import time
from dataclasses import dataclass, replace
from typing import Any, Generic, Protocol, TypeVar

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from chatd import addresses
from chatd.text import parse_whole_number

# Every operator action goes to this namespace, always with the operator's name, so an
# admin can route it to its own file with a log observer filtered on the namespace.
audit = Logger(namespace="chatd.audit")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"([0-9]+)([smhdw])")  # ASCII digits: \d would take any script's
MAX_DURATION = 10 * 365 * 86400  # longer than this is a typo; leave DURATION out for forever


def parse_duration(text: str) -> int:
    """Seconds in ``10m``, ``2h``, ``7d``, ``1w``, ``90s`` or a sum like ``1h30m``."""
    lowered = text.strip().lower()
    if not lowered or _DURATION.sub("", lowered):
        raise ValueError(f'"{text}" is not a duration like 10m, 2h or 7d')
    seconds = 0
    for digits, unit in _DURATION.findall(lowered):
        count = parse_whole_number(digits)  # None: too many digits, so too long
        seconds += MAX_DURATION + 1 if count is None else count * _UNITS[unit]
    if not 0 < seconds <= MAX_DURATION:
        raise ValueError(f'duration "{text}" must be more than 0 and at most 10 years')
    return seconds


def format_duration(seconds: float) -> str:
    """A short human duration: ``2h``, ``1d3h``, ``45s``."""
    remaining = max(1, round(seconds))
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if remaining >= size:
            count, remaining = divmod(remaining, size)
            parts.append(f"{count}{unit}")
        if len(parts) == 2:
            break
    return "".join(parts)


def format_time(when: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(when))


def parse_ban_target(text: str) -> Network:
    """An address (``203.0.113.7``, ``2001:db8::1``) or CIDR block (``203.0.113.0/24``)."""
    try:
        if "/" in text:
            network = ipaddress.ip_network(text, strict=False)
            if isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 96:
                mapped = network.network_address.ipv4_mapped
                if mapped is not None:
                    return ipaddress.ip_network(f"{mapped}/{network.prefixlen - 96}")
            return network
        return ipaddress.ip_network(addresses.ip_address(text))
    except ValueError:
        raise ValueError(f'"{text}" is not an IP address or CIDR block') from None


@dataclass(frozen=True, slots=True)
class Ban:
    """A banned address or block. ``expires`` is None for a permanent ban."""

    network: Network
    reason: str
    by: str
    created: float
    expires: float | None

    def active(self, now: float) -> bool:
        return self.expires is None or now < self.expires

    def expiry(self, now: float) -> str:
        if self.expires is None:
            return "permanent"
        return f"until {format_time(self.expires)}, {format_duration(self.expires - now)} from now"


@dataclass(frozen=True, slots=True)
class Mute:
    """A muted user: the nickname it was muted under (``key``, its ``nick_key``: the mute's
    name), every nickname the user has had since (``keys``: an operator's /rename), and the
    address it was muted on, if any. It covers those nicknames, wherever they connect from,
    and nobody else: other users on the same address speak freely."""

    key: str
    nick: str
    host: str | None
    by: str
    created: float
    expires: float | None
    keys: frozenset[str] = frozenset()

    def active(self, now: float) -> bool:
        return self.expires is None or now < self.expires

    def covers(self, key: str) -> bool:
        return key == self.key or key in self.keys

    def renamed(self, new_key: str) -> Mute:
        """The same mute, covering ``new_key`` as well."""
        return replace(self, keys=self.keys | {new_key})

    def remaining(self, now: float) -> str:
        """`` for 10m more``, or nothing for a mute without end."""
        return "" if self.expires is None else f" for {format_duration(self.expires - now)} more"


class _Record(Protocol):
    @property
    def created(self) -> float: ...

    def active(self, now: float) -> bool: ...


K = TypeVar("K")
V = TypeVar("V", bound=_Record)


class _Expiring(Generic[K, V]):
    """Records in force, by key. Expired ones lift themselves: dropped when next looked at."""

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock
        self._records: dict[K, V] = {}

    def _put(self, key: K, record: V) -> None:
        self._records[key] = record

    def remove(self, key: K) -> V | None:
        return self._records.pop(key, None)

    def current(self) -> list[V]:
        """Records still in force, oldest first; forgets those that have expired."""
        if not self._records:  # the usual case, asked on every line anyone says
            return []
        now = self.clock.seconds()
        for key in [k for k, r in self._records.items() if not r.active(now)]:
            del self._records[key]
        return sorted(self._records.values(), key=lambda r: r.created)


class BanList(_Expiring[Network, Ban]):
    """The bans in force."""

    def add(self, ban: Ban) -> None:
        self._put(ban.network, ban)

    def match(self, host: str | None) -> Ban | None:
        """The ban in force that covers ``host``, the narrowest one if several do."""
        bans = self.current()
        if host is None or not bans:  # no bans: no address to parse, on every connect
            return None
        try:
            address = addresses.ip_address(host)
        except ValueError:
            return None
        covering = [b for b in bans if address in b.network]
        return max(covering, key=lambda b: b.network.prefixlen, default=None)


class MuteList(_Expiring[str, Mute]):
    """The mutes in force, by the nickname each was made under. A muted user cannot /nick
    (chatd.service), so a reconnect under a fresh guest name is the one way round a mute,
    and it is left open on purpose: on a shared address (NAT, a LAN party) the others there
    are different people. The muted nicknames stay muted from any address."""

    def add(self, mute: Mute) -> None:
        self._put(mute.key, mute)

    def match(self, key: str) -> Mute | None:
        for mute in self.current():
            if mute.covers(key):
                return mute
        return None


@dataclass(frozen=True, slots=True)
class Kick:
    """A nickname kicked from an address: refused from there until ``until``."""

    host: str | None
    key: str
    until: float


class RecentKicks:
    """Nicknames kicked lately, by address: what ``--kick-rejoin-delay`` refuses. Entries
    end by themselves; there is one per kick an operator made in the last delay."""

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock
        self._kicks: dict[tuple[str | None, str], Kick] = {}

    def add(self, host: str | None, key: str, seconds: float) -> None:
        if seconds > 0:
            self.add_until(host, key, self.clock.seconds() + seconds)

    def add_until(self, host: str | None, key: str, until: float) -> None:
        """Refuses ``key`` from ``host`` until the time ``until`` (a kick made on any
        process of a cluster)."""
        self._forget_ended()
        if until > self.clock.seconds():
            self._kicks[host, key] = Kick(host, key, until)

    def current(self) -> list[Kick]:
        self._forget_ended()
        return list(self._kicks.values())

    def seconds_left(self, host: str | None, key: str) -> int:
        """Whole seconds until ``key`` may come back from ``host``; 0 if it may now."""
        kick = self._kicks.get((host, key))
        left = 0.0 if kick is None else kick.until - self.clock.seconds()
        return math.ceil(left) if left > 0 else 0

    def _forget_ended(self) -> None:
        now = self.clock.seconds()
        for where in [w for w, k in self._kicks.items() if k.until <= now]:
            del self._kicks[where]


def audit_action(operator: str, action: str, **fields: Any) -> None:
    """One audit line: who did what, with the details as structured fields."""
    details = "".join(f" {k}={{{k}}}" for k in fields)
    # The event name is the action itself ("oper.kicked", "oper.sent_a_wall"): stable, greppable.
    audit.info("operator {operator} " + action + details, event="oper." + action.replace(" ", "_"),
               operator=operator, **fields)

"""Every place chatd turns a peer into an address: parsing, IPv4-mapped folding, prefixes.

Three questions are asked about a peer, and all are answered here:

- what to print in a log line (``describe_peer``);
- which IP address it is, with ``::ffff:a.b.c.d`` folded to plain IPv4, so a dual-stack
  listener's IPv4 peers count, ban and mute like IPv4 peers (``ip_address``,
  ``peer_host``, ``host_of``);
- which *block* it belongs to for per-address counts: an IPv6 user usually holds a whole
  /64, and keying on the exact address lets one person walk round every per-address limit,
  so IPv6 is counted by its first ``--ipv6-prefix`` bits (``count_key``).
"""

from __future__ import annotations

import functools
import ipaddress

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
DEFAULT_IPV6_PREFIX = 64


def ip_address(text: str) -> IPAddress:
    """An IP address (a ``%zone`` suffix dropped), IPv4-mapped IPv6 turned into IPv4.

    Raises ValueError for anything that is not an IP address.
    """
    address = ipaddress.ip_address(text.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def describe_peer(address: object) -> str:
    """A peer address for logs and for ``peer_host``: ``203.0.113.7:4000``,
    ``[2001:db8::1]:4000`` (brackets, as in a URL, so the port stands apart), ``unix:PATH``
    for a UNIX socket peer (``unix:`` alone when it has no name, as accepted peers
    usually do), the class name for anything else."""
    if isinstance(address, IPv4Address):
        return f"{address.host}:{address.port}"
    if isinstance(address, IPv6Address):
        return f"[{address.host}]:{address.port}"
    if isinstance(address, UNIXAddress):
        name = address.name
        path = name.decode("utf-8", "replace") if isinstance(name, bytes) else name
        return f"unix:{path or ''}"
    return type(address).__name__


def host_of(address: object) -> str | None:
    """The folded IP address of a Twisted peer address; None for anything else (UNIX)."""
    if isinstance(address, IPv4Address | IPv6Address):
        return _folded(address.host)
    return None


def peer_host(peer: str) -> str | None:
    """The folded IP address in a peer description (``describe_peer``'s ``host:port`` or
    ``[host]:port``), or None (a UNIX socket)."""
    host, sep, port = peer.rpartition(":")
    if not sep or not port.isdigit():
        return None
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return _folded(host)


@functools.lru_cache(maxsize=4096)  # parsed once per address, not once per connection
def _folded(host: str) -> str | None:
    try:
        return str(ip_address(host))
    except ValueError:
        return None


@functools.lru_cache(maxsize=4096)
def count_key(host: str, ipv6_prefix: int = DEFAULT_IPV6_PREFIX) -> str:
    """What per-address limits count ``host`` (a folded address) under.

    IPv4 counts per address; IPv6 per ``/ipv6_prefix`` block (128: per address).
    """
    try:
        address = ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv4Address) or ipv6_prefix >= 128:
        return str(address)
    return str(ipaddress.IPv6Network(f"{address}/{ipv6_prefix}", strict=False))

"""Several chatd processes as one chat, through Redis (``--redis URL``).

- ``address``: the --redis URL.
- ``codec``: events as bytes between processes.
- ``link``: the connections to Redis, and whether it is there.
- ``state``: the cluster's copy of the chat in Redis, and the Lua scripts that change it.
- ``bus``: the event bus over Redis (the contract of chatd/events.py).
- ``member``: heartbeats, nick claims, rejoining, outages.
"""

from __future__ import annotations

from twisted.python import usage

from chatd.cluster.address import InvalidRedisURL, RedisAddress, parse_redis_url
from chatd.cluster.bus import RedisBus
from chatd.cluster.member import ClusterMember

__all__ = ["ClusterMember", "RedisAddress", "RedisBus", "redis_address"]


def redis_address(url: str) -> RedisAddress:
    """``--redis URL`` parsed, or a UsageError saying what is wrong (never echoing the URL,
    which may hold a password)."""
    try:
        return parse_redis_url(url)
    except InvalidRedisURL as e:
        raise usage.UsageError(f"--redis: {e}") from None

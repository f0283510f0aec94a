"""Several chatd processes as one chat, through Redis (``--redis URL``).

- ``address``: the --redis URL.
- ``codec``: events as bytes between processes.
- ``link``: the connections to Redis, and whether it is there.
- ``state``: the cluster's copy of the chat in Redis, and the Lua scripts that change it.
- ``bus``: the event bus over Redis (the contract of chatd/events.py).
- ``member``: heartbeats, nick claims, rejoining, outages.

Nothing is imported here: ``chatd.tap`` parses ``--redis`` with ``address`` and imports
``bus`` and ``member`` (txredisapi, and OpenSSL with it) only when the option is given, so a
daemon without it does not pay for their import at every start.
"""

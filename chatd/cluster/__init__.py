"""Several chatd processes as one chat, through Redis (``--redis URL``).

- ``address``: the --redis URL.
- ``codec``: events as bytes between processes.
- ``link``: the connections to Redis, and whether it is there.
"""

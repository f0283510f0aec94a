"""Bans and mutes in the SQLite state database, so they survive a restart.

Loading happens once at startup, before any listener accepts, with a plain blocking read:
the reactor is not serving anyone yet. Every later write goes through a one-thread
``adbapi.ConnectionPool``, so the reactor thread never waits on the disk and writes land in
the order they were made. ``close`` waits for the writes still in flight.
"""

from __future__ import annotations

import ipaddress
import sqlite3
from typing import Any

from twisted.enterprise import adbapi
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from chatd.moderation import Ban, Mute, Network

SCHEMA = """
CREATE TABLE IF NOT EXISTS bans (
    network TEXT PRIMARY KEY, reason TEXT NOT NULL, by TEXT NOT NULL,
    created REAL NOT NULL, expires REAL
);
CREATE TABLE IF NOT EXISTS mutes (
    key TEXT PRIMARY KEY, nick TEXT NOT NULL, host TEXT, by TEXT NOT NULL,
    created REAL NOT NULL, expires REAL
);
"""


class ModerationStore:
    """The ``bans`` and ``mutes`` tables of the state database at ``path``."""

    log = Logger()

    def __init__(self, reactor: Any, path: str) -> None:
        self.path = path
        with sqlite3.connect(path) as db:
            db.executescript(SCHEMA)
        db.close()
        self._pool = adbapi.ConnectionPool(
            "sqlite3", path, check_same_thread=False, cp_min=1, cp_max=1, cp_reactor=reactor
        )
        self._pending: set[defer.Deferred[Any]] = set()

    def load(self, now: float) -> tuple[list[Ban], list[Mute]]:
        """The bans and mutes still in force at ``now``."""
        with sqlite3.connect(self.path) as db:
            ban_rows = db.execute(
                "SELECT network, reason, by, created, expires FROM bans "
                "WHERE expires IS NULL OR expires > ?", (now,)).fetchall()
            mute_rows = db.execute(
                "SELECT key, nick, host, by, created, expires FROM mutes "
                "WHERE expires IS NULL OR expires > ?", (now,)).fetchall()
        db.close()
        bans = [Ban(_network(n), reason, by, created, expires)
                for n, reason, by, created, expires in ban_rows]
        return bans, [Mute(*row) for row in mute_rows]

    def save_ban(self, ban: Ban) -> None:
        self._write(
            "INSERT OR REPLACE INTO bans VALUES (?, ?, ?, ?, ?)",
            (str(ban.network), ban.reason, ban.by, ban.created, ban.expires),
        )

    def delete_ban(self, network: Network) -> None:
        self._write("DELETE FROM bans WHERE network = ?", (str(network),))

    def save_mute(self, mute: Mute) -> None:
        self._write(
            "INSERT OR REPLACE INTO mutes VALUES (?, ?, ?, ?, ?, ?)",
            (mute.key, mute.nick, mute.host, mute.by, mute.created, mute.expires),
        )

    def delete_mute(self, key: str) -> None:
        self._write("DELETE FROM mutes WHERE key = ?", (key,))

    def delete_expired(self, now: float) -> None:
        self._write("DELETE FROM bans WHERE expires <= ?", (now,))
        self._write("DELETE FROM mutes WHERE expires <= ?", (now,))

    def _write(self, sql: str, args: tuple[Any, ...]) -> None:
        d = self._pool.runOperation(sql, args)
        self._pending.add(d)

        def settled(result: Any) -> None:
            self._pending.discard(d)
            if isinstance(result, Failure):
                self.log.failure("Could not write moderation state to {path}", result,
                                 path=self.path)

        d.addBoth(settled)

    def close(self) -> defer.Deferred[None]:
        """Waits for the writes in flight, then closes the pool."""
        pending = defer.DeferredList(list(self._pending), consumeErrors=True)
        done: defer.Deferred[None] = pending.addCallback(lambda _: self._pool.close())
        return done


def _network(text: str) -> Network:
    return ipaddress.ip_network(text)

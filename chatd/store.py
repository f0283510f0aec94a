"""Where rooms, topics and history outlive the process: SQLite, written off the reactor.

The chat service never waits for the disk. Writes are queued and, at most
``flush_interval`` seconds later, one worker thread commits everything queued in a
single transaction. The database is in WAL mode with ``synchronous=NORMAL``: a commit
is in the WAL file (the OS has it) when the transaction ends, so a killed process loses
only what was still queued, and SQLite never leaves a half-written database behind.

A batch the disk refuses (full, an I/O error, locked) is kept, with everything queued
after it, and written again later: a room counts as saved only once its row has committed,
so no line is ever written for a room the file does not have. What waits is bounded by
what is kept: a room's latest row, its newest ``--history`` lines, the rooms to forget.
A statement SQLite itself rejects (a constraint) is dropped alone and logged.

The schema grows by appending to ``MIGRATIONS``; ``PRAGMA user_version`` records how many
have run. Every table is here, and so is every statement: bans and mutes (chatd.moderation)
are saved, deleted and loaded through typed methods, so the file has one writer and the
store is the only code that speaks SQL.
"""

from __future__ import annotations

import ipaddress
import os
import shlex
import sqlite3
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass
from threading import Thread
from typing import Any, NamedTuple, TypeVar

from twisted.internet import defer, threads
from twisted.internet.interfaces import IDelayedCall, IReactorFromThreads, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from zope.interface import Interface, implementer

from chatd.events import Acted, Said
from chatd.history import HistoryEntry, line_cost
from chatd.moderation.rules import Ban, Mute
from chatd.rooms import Room, room_key
from chatd.startup import StartupError, report_plainly

T = TypeVar("T")
Params = Sequence[Any]
Row = tuple[Any, ...]

DEFAULT_STATE = "chatd.sqlite3"
MEMORY_ONLY = "none"
DEFAULT_FLUSH_INTERVAL = 0.2  # seconds a written line may wait before it is committed
FIRST_RETRY = 1.0  # seconds after a failed write before it is tried again; doubles each time
LAST_RETRY = 30.0  # ... up to this

# Each entry upgrades the schema by one version. Never edit one that has shipped; append.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE rooms (
        key      TEXT PRIMARY KEY,          -- the name lower-cased: how names compare
        name     TEXT NOT NULL,             -- as first written, e.g. #Dev
        topic    TEXT NOT NULL DEFAULT '',
        topic_by TEXT NOT NULL DEFAULT '',
        topic_at REAL NOT NULL DEFAULT 0    -- seconds since the epoch
    );
    CREATE TABLE history (
        id   INTEGER PRIMARY KEY,           -- insertion order
        room TEXT NOT NULL REFERENCES rooms(key),
        at   REAL NOT NULL,                 -- seconds since the epoch
        kind TEXT NOT NULL CHECK (kind IN ('say', 'act')),
        nick TEXT NOT NULL,
        text TEXT NOT NULL
    );
    CREATE INDEX history_by_room ON history (room, id);
    """,
    # Bans and mutes (chatd.moderation). IF NOT EXISTS: before this migration the moderator
    # created these same tables itself, in files already at version 1.
    """
    CREATE TABLE IF NOT EXISTS bans (
        network TEXT PRIMARY KEY,           -- an address or CIDR block, e.g. 203.0.113.0/24
        reason  TEXT NOT NULL,
        by      TEXT NOT NULL,              -- the operator's name
        created REAL NOT NULL,              -- seconds since the epoch
        expires REAL                        -- NULL: permanent
    );
    CREATE TABLE IF NOT EXISTS mutes (
        key     TEXT PRIMARY KEY,           -- the muted nickname's nick_key
        nick    TEXT NOT NULL,
        host    TEXT,                       -- the address it was muted on, if any
        by      TEXT NOT NULL,
        created REAL NOT NULL,
        expires REAL
    );
    """,
    # A mute follows its user through an operator's /rename: every nick_key it covers,
    # space-separated. (No SQL comment here: SQLite keeps the column text in the schema.)
    """
    ALTER TABLE mutes ADD COLUMN keys TEXT NOT NULL DEFAULT ''
    """,
]

_UPSERT_ROOM = (
    "INSERT INTO rooms (key, name, topic, topic_by, topic_at) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (key) DO UPDATE SET topic = excluded.topic, topic_by = excluded.topic_by, "
    "topic_at = excluded.topic_at"
)
_INSERT_LINE = "INSERT INTO history (room, at, kind, nick, text) VALUES (?, ?, ?, ?, ?)"
# Keeps the newest N lines of one room: everything at or below the (N+1)-th newest id goes.
_TRIM_ROOM = (
    "DELETE FROM history WHERE room = ? AND id <= "
    "(SELECT id FROM history WHERE room = ? ORDER BY id DESC LIMIT 1 OFFSET ?)"
)
# The same for every room at once: at start-up, when --history may have been lowered.
_TRIM_ALL = (
    "DELETE FROM history WHERE id IN (SELECT id FROM ("
    "  SELECT id, row_number() OVER (PARTITION BY room ORDER BY id DESC) AS newest"
    "  FROM history"
    ") WHERE newest > ?)"
)
_FORGET_HISTORY = "DELETE FROM history WHERE room = ?"
_FORGET_ROOM = "DELETE FROM rooms WHERE key = ?"
_SAVE_BAN = (
    "INSERT OR REPLACE INTO bans (network, reason, by, created, expires) VALUES (?, ?, ?, ?, ?)"
)
_DELETE_BAN = "DELETE FROM bans WHERE network = ?"
_SAVE_MUTE = (
    "INSERT OR REPLACE INTO mutes (key, nick, host, by, created, expires, keys) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_DELETE_MUTE = "DELETE FROM mutes WHERE key = ?"
_LOAD_BANS = "SELECT network, reason, by, created, expires FROM bans"
_LOAD_MUTES = "SELECT key, nick, host, by, created, expires, keys FROM mutes"
_LOAD_ROOMS = "SELECT key, name, topic, topic_by, topic_at FROM rooms"
# Newest lines first, taking turns between rooms: every room's newest line, then every
# room's second newest, ... so that a load stopped at --history-memory has kept the
# newest lines of every room (SQLite sorts on disk past its cache, not in our memory).
_LOAD_HISTORY = (
    "SELECT room, at, kind, nick, text FROM ("
    "  SELECT *, row_number() OVER (PARTITION BY room ORDER BY id DESC) AS newest"
    "  FROM history"
    ") WHERE newest <= ? ORDER BY newest, id DESC"
)

# SQLite's primary result codes that blame the file or the disk, not the statement: a batch
# failing with one is kept and written again. Any other error rejects its statement alone.
_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_NOMEM, _SQLITE_READONLY = 5, 6, 7, 8
_SQLITE_IOERR, _SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_CANTOPEN = 10, 11, 13, 14
_SQLITE_PROTOCOL, _SQLITE_NOTADB = 15, 26
_DISK_ERRORS = frozenset({_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_NOMEM, _SQLITE_READONLY,
                          _SQLITE_IOERR, _SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_CANTOPEN,
                          _SQLITE_PROTOCOL, _SQLITE_NOTADB})
_DAMAGED = frozenset({_SQLITE_CORRUPT, _SQLITE_NOTADB})


def _result_code(error: sqlite3.Error) -> int | None:
    """The primary SQLite result code of ``error`` (None: raised by Python's sqlite3)."""
    code: int | None = getattr(error, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF


def _daemon_thread(*args: Any, **kwargs: Any) -> Thread:
    return Thread(*args, daemon=True, **kwargs)


class _WriterPool(ThreadPool):
    """A pool of daemon threads. If start-up fails after the store has opened (a port in
    use), nothing ever stops the service, and a plain worker thread would keep the process
    from exiting. ``close`` still waits for the last commit before it stops the pool."""

    threadFactory = staticmethod(_daemon_thread)  # type: ignore[assignment]


@dataclass(frozen=True)
class Rejected:
    """A statement SQLite refused (not the disk): dropped alone, and logged."""

    sql: str
    params: Params
    error: str


class _Pending:
    """Writes not yet committed, kept as what the commit must do rather than every call: the
    rooms to forget, each room's latest row, its newest ``history_size`` lines, and the
    latest write of each ban and mute. While the disk refuses writes this is what waits, so
    it is bounded by what is kept, not by how long the disk fails."""

    def __init__(self, history_size: int) -> None:
        self.history_size = history_size
        self.forgotten: set[str] = set()
        self.rooms: dict[str, Row] = {}
        self.lines: dict[str, deque[Row]] = {}
        # Rooms whose history memory trimmed below --history (--history-memory): how many
        # of their newest lines the file keeps once the lines above are in.
        self.keep: dict[str, int] = {}
        # The last save or delete of each ban (by network) and mute (by key), in order.
        self.moderation: dict[tuple[str, str], tuple[str, Params]] = {}

    def __bool__(self) -> bool:
        return bool(self.forgotten or self.rooms or self.lines or self.keep or self.moderation)

    def size(self) -> int:
        """How many writes wait: rooms to forget, room rows, history lines, bans and mutes."""
        return (len(self.forgotten) + len(self.rooms) + sum(map(len, self.lines.values()))
                + len(self.moderation))

    def save_room(self, key: str, row: Row) -> None:
        self.rooms[key] = row

    def add_line(self, key: str, row: Row) -> None:
        lines = self.lines.get(key)
        if lines is None:
            lines = self.lines[key] = deque(maxlen=self.history_size)
        lines.append(row)
        if key in self.keep:
            self.keep[key] = min(self.keep[key] + 1, self.history_size)

    def trim_room(self, key: str, keep: int) -> None:
        self.keep[key] = keep
        lines = self.lines.get(key)
        while lines and len(lines) > keep:
            lines.popleft()

    def forget_room(self, key: str) -> None:
        self.rooms.pop(key, None)
        self.lines.pop(key, None)
        self.keep.pop(key, None)
        self.forgotten.add(key)

    def moderate(self, table: str, key: str, sql: str, params: Params) -> None:
        """Queues the latest write of one ban or mute; an earlier one still queued goes."""
        self.moderation.pop((table, key), None)
        self.moderation[table, key] = (sql, params)

    def absorb(self, newer: _Pending) -> None:
        """Adds ``newer``'s writes after these, as if they had been queued here."""
        for key in newer.forgotten:
            self.forget_room(key)
        self.rooms.update(newer.rooms)
        for key, lines in newer.lines.items():
            for row in lines:
                self.add_line(key, row)
        self.keep.update(newer.keep)
        for (table, key), (sql, params) in newer.moderation.items():
            self.moderate(table, key, sql, params)

    def in_order(self) -> Iterator[tuple[str, Params]]:
        """The statements to run: forgetting first (a room may be forgotten and then made
        again), each room's row before its lines (history references rooms)."""
        for key in self.forgotten:
            yield _FORGET_HISTORY, (key,)
            yield _FORGET_ROOM, (key,)
        for row in self.rooms.values():
            yield _UPSERT_ROOM, row
        for key, lines in self.lines.items():
            for row in lines:
                yield _INSERT_LINE, row
            if key not in self.keep:
                yield _TRIM_ROOM, (key, key, self.history_size)
        for key, keep in self.keep.items():
            yield _TRIM_ROOM, (key, key, keep)
        yield from self.moderation.values()

    def describe(self) -> str:
        """What is waiting, for the log, e.g. ``2 rooms, 40 history lines``."""
        counts = [
            (len(self.rooms), "room", "rooms"),
            (sum(map(len, self.lines.values())), "history line", "history lines"),
            (len(self.forgotten), "room to forget", "rooms to forget"),
            (len(self.moderation), "ban or mute", "bans or mutes"),
        ]
        parts = [f"{n} {one if n == 1 else many}" for n, one, many in counts if n]
        return ", ".join(parts) or "nothing"


@dataclass(frozen=True)
class SavedRoom:
    """A room as the store had it: enough to build the ``Room`` again."""

    name: str
    topic: str
    topic_by: str
    topic_at: float
    history: list[HistoryEntry]


@dataclass(frozen=True)
class SavedModeration:
    """The bans and mutes as the store had them at start-up, expired ones included."""

    bans: list[Ban]
    mutes: list[Mute]


class IChatStore(Interface):
    """What the chat service needs from persistence. No method blocks on the disk except
    ``open``, which runs once at start-up, before any client is served."""

    def open() -> list[SavedRoom]:
        """Opens the store and returns every saved room with its recent history."""

    def save_room(room: Room) -> None:
        """Queues a write of the room's name and topic."""

    def add_line(room: Room, entry: HistoryEntry) -> None:
        """Queues a history line of ``room`` (and the room's row, if it has none yet)."""

    def trim_room(room: Room, keep: int) -> None:
        """Queues deleting all but the newest ``keep`` history lines of ``room`` (what
        --history-memory took from it in memory must not come back on a restart)."""

    def forget_room(name: str) -> None:
        """Queues deleting the room ``name`` and all its history (an expired room, or one
        forgotten for being empty); a room of that name made later starts afresh."""

    def load_moderation() -> SavedModeration:
        """The bans and mutes saved when the store opened (nothing before ``open``)."""

    def save_ban(ban: Ban) -> None:
        """Queues writing ``ban``, replacing any ban of the same network."""

    def delete_ban(network: str) -> None:
        """Queues deleting the ban of ``network`` (an address or CIDR block)."""

    def save_mute(mute: Mute) -> None:
        """Queues writing ``mute``, replacing any mute of the same key."""

    def delete_mute(key: str) -> None:
        """Queues deleting the mute made under the nick_key ``key``."""

    def close() -> defer.Deferred[None]:
        """Writes whatever is queued and closes the store."""

    def backlog() -> StoreBacklog:
        """How far behind the disk is, read by metrics and /stats."""


class StoreBacklog(NamedTuple):
    pending_writes: int  # queued, being committed, or waiting to be tried again
    write_errors: int  # failed attempts at a batch, and writes SQLite refused, since start


class CannotOpenState(StartupError):
    """The state file cannot be used; the message names it and says why."""


@implementer(IChatStore)
class MemoryStore:
    """``--state none``: nothing outlives the process."""

    def open(self) -> list[SavedRoom]:
        return []

    def save_room(self, room: Room) -> None:
        pass

    def add_line(self, room: Room, entry: HistoryEntry) -> None:
        pass

    def trim_room(self, room: Room, keep: int) -> None:
        pass

    def forget_room(self, name: str) -> None:
        pass

    def load_moderation(self) -> SavedModeration:
        return SavedModeration([], [])

    def save_ban(self, ban: Ban) -> None:
        pass

    def delete_ban(self, network: str) -> None:
        pass

    def save_mute(self, mute: Mute) -> None:
        pass

    def delete_mute(self, key: str) -> None:
        pass

    def close(self) -> defer.Deferred[None]:
        return defer.succeed(None)

    def backlog(self) -> StoreBacklog:
        return StoreBacklog(0, 0)


def _room_row(room: Room) -> Row:
    return (room.key, room.name, room.topic, room.topic_by, room.topic_at)


@implementer(IChatStore)
class SQLiteStore:
    """Rooms, topics and history in one SQLite file, written by one worker thread."""

    log = Logger()

    def __init__(
        self,
        path: str,
        reactor: Any,
        history_size: int,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        connection_class: type[sqlite3.Connection] = sqlite3.Connection,
        history_memory: int = 0,
    ) -> None:
        """``history_memory``: what the history loaded at start may cost (``line_cost``),
        as --history-memory bounds it in memory later; 0: no bound."""
        self.path = path
        self.history_memory = history_memory
        self._reactor: IReactorTime = reactor
        self._thread_reactor: IReactorFromThreads = reactor
        self.history_size = history_size
        self.flush_interval = flush_interval
        self._connection_class = connection_class  # tests put faults in a subclass
        self._db: sqlite3.Connection | None = None
        # One thread: SQLite has one writer anyway, and it keeps writes in order.
        self._pool = _WriterPool(minthreads=1, maxthreads=1, name="chatd-store")
        self._pending = _Pending(history_size)
        # Rooms whose row has committed: a line for any other room brings the row along.
        self._committed_rooms: set[str] = set()
        self._failures = 0  # failed attempts at the batch now waiting; 0 when all is well
        self._timer: IDelayedCall | None = None
        self._in_flight = 0  # writes in the batch being committed
        self._write_errors = 0
        self._writing: defer.Deferred[None] | None = None
        self._moderation = SavedModeration([], [])

    # --- Start and stop --------------------------------------------------------------------

    def open(self) -> list[SavedRoom]:
        """Raises CannotOpenState, naming the file, when it is unwritable, damaged or not a
        database."""
        # Opened here, in the started service, not in makeService: twistd forks to
        # daemonize after makeService, and an SQLite connection must not cross a fork.
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                 factory=self._connection_class)
        except sqlite3.Error as e:
            raise self._cannot_open(str(e)) from None
        try:
            # Damage past the header would otherwise show only as failing writes, later.
            problems = [row[0] for row in db.execute("PRAGMA quick_check")]
            if problems != ["ok"]:
                raise self._damaged(problems)
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            db.execute("PRAGMA foreign_keys = ON")
            self._migrate(db)
            db.execute(_TRIM_ALL, (self.history_size,))
            rooms = self._load(db)
            self._moderation = self._load_moderation(db)
        except sqlite3.Error as e:
            db.close()
            if _result_code(e) in _DAMAGED:
                raise self._damaged([str(e)]) from None
            raise self._cannot_open(str(e)) from None
        except CannotOpenState:
            db.close()
            raise
        self._db = db
        self._committed_rooms = {room_key(room.name) for room in rooms}
        self._pool.start()
        return rooms

    def _cannot_open(self, why: str) -> CannotOpenState:
        report_plainly()
        return CannotOpenState(f"cannot use the state file {self.path}: {why}")

    def _damaged(self, problems: list[str]) -> CannotOpenState:
        """One line: what SQLite found first, and how to start without the file."""
        details = [line for row in problems for line in row.splitlines()
                   if line and not line.startswith("***")]
        first = details[0][:200] if details else "unknown damage"
        moved = shlex.quote(f"{self.path}.damaged")
        return self._cannot_open(
            f"it is damaged ({first}); move it aside, with its -wal file if there is one "
            f"(mv {shlex.quote(self.path)} {moved}), to start with an empty one"
        )

    def load_moderation(self) -> SavedModeration:
        return self._moderation

    def close(self) -> defer.Deferred[None]:
        """Commits what is queued (one last try if the disk is failing), then closes the
        database and stops the worker."""
        if self._db is None:
            return defer.succeed(None)

        def shut(_: object) -> None:
            if self._timer is not None and self._timer.active():
                self._timer.cancel()
            self._timer = None
            if self._pending:
                self.log.error("stopping with {pending} not written to {path}: they are lost",
                               event="store.writes_lost", pending=self._pending.describe(),
                               path=self.path)
                self._pending = _Pending(self.history_size)
            db, self._db = self._db, None
            if db is not None:
                db.close()
            self._pool.stop()

        return self.flush().addBoth(shut)

    @staticmethod
    def _migrate(db: sqlite3.Connection) -> None:
        (version,) = db.execute("PRAGMA user_version").fetchone()
        for number in range(version, len(MIGRATIONS)):
            db.execute("BEGIN IMMEDIATE")
            try:
                for statement in MIGRATIONS[number].split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version = {number + 1}")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _load(self, db: sqlite3.Connection) -> list[SavedRoom]:
        rooms = {
            key: SavedRoom(name, topic, topic_by, topic_at, [])
            for key, name, topic, topic_by, topic_at in db.execute(_LOAD_ROOMS)
        }
        # Read a line at a time, newest first, until the next would take the history past
        # --history-memory: a file written under a larger bound (or none) is never held
        # whole, even for a moment.
        budget, used, complete = self.history_memory, 0, True
        lines = db.execute(_LOAD_HISTORY, (self.history_size,))
        for key, at, kind, nick, text in lines:
            room = rooms[key]
            line = Said(room.name, nick, text) if kind == "say" else Acted(room.name, nick, text)
            used += line_cost(line)
            if budget and used > budget:
                complete = False
                break
            room.history.append(HistoryEntry(at, line))
        lines.close()  # before the trims below: a read still open would hold them back
        for room in rooms.values():
            room.history.reverse()  # oldest first, as a room keeps them
        if not complete:  # what was left out goes from the file too
            for key, room in rooms.items():
                db.execute(_TRIM_ROOM, (key, key, len(room.history)))
        return list(rooms.values())

    @staticmethod
    def _load_moderation(db: sqlite3.Connection) -> SavedModeration:
        bans = [Ban(ipaddress.ip_network(network), reason, by, created, expires)
                for network, reason, by, created, expires in db.execute(_LOAD_BANS)]
        mutes = [Mute(key, nick, host, by, created, expires, frozenset(keys.split()))
                 for key, nick, host, by, created, expires, keys in db.execute(_LOAD_MUTES)]
        return SavedModeration(bans, mutes)

    # --- Writes ----------------------------------------------------------------------------

    def save_room(self, room: Room) -> None:
        self._pending.save_room(room.key, _room_row(room))
        self._schedule()

    def add_line(self, room: Room, entry: HistoryEntry) -> None:
        if not self._will_have_row(room.key):
            self._pending.save_room(room.key, _room_row(room))
        line = entry.line
        kind = "say" if isinstance(line, Said) else "act"
        self._pending.add_line(room.key, (room.key, entry.at, kind, line.nick, line.text))
        self._schedule()

    def _will_have_row(self, key: str) -> bool:
        """Whether the file will have a row for room ``key`` when what is pending commits:
        it is pending, or it has committed and no pending forget will delete it."""
        pending = self._pending
        return key in pending.rooms or (
            key in self._committed_rooms and key not in pending.forgotten
        )

    def trim_room(self, room: Room, keep: int) -> None:
        self._pending.trim_room(room.key, keep)
        self._schedule()

    def forget_room(self, name: str) -> None:
        key = room_key(name)
        self._pending.forget_room(key)
        self._committed_rooms.discard(key)
        self._schedule()

    def save_ban(self, ban: Ban) -> None:
        network = str(ban.network)
        self._moderate("bans", network, _SAVE_BAN,
                       (network, ban.reason, ban.by, ban.created, ban.expires))

    def delete_ban(self, network: str) -> None:
        self._moderate("bans", network, _DELETE_BAN, (network,))

    def save_mute(self, mute: Mute) -> None:
        self._moderate("mutes", mute.key, _SAVE_MUTE,
                       (mute.key, mute.nick, mute.host, mute.by, mute.created, mute.expires,
                        " ".join(sorted(mute.keys))))

    def delete_mute(self, key: str) -> None:
        self._moderate("mutes", key, _DELETE_MUTE, (key,))

    def _moderate(self, table: str, key: str, sql: str, params: Params) -> None:
        """Queues one ban or mute write; committed within about ``flush_interval`` s."""
        self._pending.moderate(table, key, sql, params)
        self._schedule()

    def _schedule(self) -> None:
        if self._timer is None and self._writing is None:
            self._timer = self._reactor.callLater(self.flush_interval, self._flush_now)

    def flush(self) -> defer.Deferred[None]:
        """Fires once everything queued so far has been tried: committed, or (the disk
        failing) kept for the next try."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self._writing is not None:
            done: defer.Deferred[None] = defer.Deferred()
            self._writing.addBoth(lambda _: self.flush().chainDeferred(done))
            return done
        return self._flush_now()

    def _flush_now(self) -> defer.Deferred[None]:
        self._timer = None
        if not self._pending or self._db is None:
            return defer.succeed(None)
        batch, self._pending = self._pending, _Pending(self.history_size)
        committing = threads.deferToThreadPool(
            self._thread_reactor, self._pool, self._commit, self._db, batch
        )
        self._in_flight = batch.size()
        writing = committing.addCallbacks(self._committed, self._failed,
                                          callbackArgs=(batch,), errbackArgs=(batch,))
        writing.addBoth(self._written)
        self._writing = defer.Deferred()
        return writing

    def backlog(self) -> StoreBacklog:
        return StoreBacklog(self._pending.size() + self._in_flight, self._write_errors)

    def _committed(self, rejected: list[Rejected], batch: _Pending) -> None:
        self._in_flight = 0
        self._write_errors += len(rejected)
        self._committed_rooms.difference_update(batch.forgotten)
        self._committed_rooms.update(batch.rooms)
        for refused in rejected:
            self.log.error("{path} refused a write, which is dropped: {error} ({sql} {params})",
                           event="store.write_refused", path=self.path, error=refused.error,
                           sql=refused.sql, params=refused.params)
        if self._failures:
            self.log.info("writing to {path} again after {failures} failed attempts: "
                          "saved {saved}", event="store.write_recovered", path=self.path,
                          failures=self._failures, saved=batch.describe())
            self._failures = 0

    def _failed(self, failure: Failure, batch: _Pending) -> None:
        """Keeps the batch, ahead of what came since, and tries it again later."""
        self._in_flight = 0
        self._write_errors += 1
        batch.absorb(self._pending)
        self._pending = batch
        self._failures += 1
        if self._failures == 1:  # once per outage: the disk stays full for a while
            if failure.check(sqlite3.Error):
                self.log.error("cannot write to {path}: {error}; keeping {pending} in memory "
                               "and trying again (every {retry} s at most)",
                               event="store.write_failed", path=self.path,
                               error=failure.getErrorMessage(), pending=batch.describe(),
                               retry=LAST_RETRY)
            else:
                self.log.failure("cannot write to {path}; keeping {pending} in memory and "
                                 "trying again", failure, event="store.write_failed",
                                 path=self.path,
                                 pending=batch.describe())
        delay = min(FIRST_RETRY * 2 ** (self._failures - 1), LAST_RETRY)
        self._timer = self._reactor.callLater(delay, self._flush_now)

    def _written(self, _: object) -> None:
        writing, self._writing = self._writing, None
        if self._pending and self._timer is None:
            # Lines came in while the last batch was being written: they have waited already.
            self._timer = self._reactor.callLater(0, self._flush_now)
        if writing is not None:
            writing.callback(None)

    @staticmethod
    def _commit(db: sqlite3.Connection, batch: _Pending) -> list[Rejected]:
        """Runs in the worker thread: the whole batch in one transaction. Raises (having
        rolled back) when the disk fails; returns the statements SQLite refused, which it
        undid alone (a constraint fails one statement, not the transaction)."""
        rejected: list[Rejected] = []
        db.execute("BEGIN")
        try:
            for sql, params in batch.in_order():
                try:
                    db.execute(sql, params)
                except sqlite3.Error as e:
                    if _result_code(e) in _DISK_ERRORS or not db.in_transaction:
                        raise
                    rejected.append(Rejected(sql, params, str(e)))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                with suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            raise
        return rejected

    # --- Reads -----------------------------------------------------------------------------

    def read(self, query: Callable[[sqlite3.Connection], T]) -> defer.Deferred[T]:
        """Runs ``query`` in the worker thread, after everything queued so far is written."""

        def run(_: object) -> defer.Deferred[T]:
            assert self._db is not None, "the store is closed"
            return threads.deferToThreadPool(self._thread_reactor, self._pool, query, self._db)

        return self.flush().addCallback(run)


SQLITE_HEADER = b"SQLite format 3\x00"


def state_file_problem(path: str) -> str | None:
    """Why an existing state file cannot be used, or None. A cheap check for option parsing,
    before twistd daemonizes, so the admin sees it on the terminal; ``open`` still reports
    whatever this does not catch (say, damage past the header, or a dropped --uid)."""
    if not os.path.exists(path):
        return None
    if not os.path.isfile(path):
        return "not a file"
    if not os.access(path, os.R_OK | os.W_OK):
        return "not readable and writable by this user"
    if not os.access(os.path.dirname(path) or ".", os.W_OK):
        # WAL mode keeps two files beside the database.
        return "its directory is not writable by this user"
    with open(path, "rb") as f:
        header = f.read(len(SQLITE_HEADER))
    if header and header != SQLITE_HEADER:
        return "not a SQLite database"
    return None


def open_store(
    state: str, reactor: Any, history_size: int, history_memory: int = 0
) -> IChatStore:
    """The store ``--state`` asks for: ``none`` keeps everything in memory."""
    if state == MEMORY_ONLY:
        return MemoryStore()
    return SQLiteStore(state, reactor, history_size, history_memory=history_memory)

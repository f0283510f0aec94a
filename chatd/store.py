"""Where rooms, topics and history outlive the process: SQLite, written off the reactor.

The chat service never waits for the disk. Writes are queued as SQL statements and, at
most ``flush_interval`` seconds later, one worker thread commits everything queued in a
single transaction. The database is in WAL mode with ``synchronous=NORMAL``: a commit
is in the WAL file (the OS has it) when the transaction ends, so a killed process loses
only what was still queued, and SQLite never leaves a half-written database behind.

The schema grows by appending to ``MIGRATIONS``; ``PRAGMA user_version`` records how many
have run. Other features (bans and mutes) add their tables there, load them with
``on_open`` and queue their writes with ``execute``, so the file has one writer.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Sequence
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
from chatd.history import HistoryEntry
from chatd.rooms import Room
from chatd.startup import StartupError, report_plainly

T = TypeVar("T")
Params = Sequence[Any]
Loader = Callable[[sqlite3.Connection], None]

DEFAULT_STATE = "chatd.sqlite3"
MEMORY_ONLY = "none"
DEFAULT_FLUSH_INTERVAL = 0.2  # seconds a written line may wait before it is committed

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
    # Bans and mutes (chatd.moderator). IF NOT EXISTS: before this migration the moderator
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
_LOAD_ROOMS = "SELECT key, name, topic, topic_by, topic_at FROM rooms"
_LOAD_HISTORY = (
    "SELECT room, at, kind, nick, text FROM ("
    "  SELECT *, row_number() OVER (PARTITION BY room ORDER BY id DESC) AS newest"
    "  FROM history"
    ") WHERE newest <= ? ORDER BY id"
)


def _daemon_thread(*args: Any, **kwargs: Any) -> Thread:
    return Thread(*args, daemon=True, **kwargs)


class _WriterPool(ThreadPool):
    """A pool of daemon threads. If start-up fails after the store has opened (a port in
    use), nothing ever stops the service, and a plain worker thread would keep the process
    from exiting. ``close`` still waits for the last commit before it stops the pool."""

    threadFactory = staticmethod(_daemon_thread)  # type: ignore[assignment]


@dataclass(frozen=True)
class SavedRoom:
    """A room as the store had it: enough to build the ``Room`` again."""

    name: str
    topic: str
    topic_by: str
    topic_at: float
    history: list[HistoryEntry]


class IChatStore(Interface):
    """What the chat service needs from persistence. No method blocks on the disk except
    ``open``, which runs once at start-up, before any client is served."""

    def open() -> list[SavedRoom]:
        """Opens the store and returns every saved room with its recent history."""

    def save_room(room: Room) -> None:
        """Queues a write of the room's name and topic."""

    def add_line(room: Room, entry: HistoryEntry) -> None:
        """Queues a history line of ``room`` (which ``save_room`` has been given)."""

    def on_open(loader: Loader) -> None:
        """Has ``loader`` read its tables when the store opens (at once if it is open),
        before any client is served. A store that keeps nothing never calls it."""

    def execute(sql: str, params: Params = ()) -> None:
        """Queues one write to the store's tables."""

    def close() -> defer.Deferred[None]:
        """Writes whatever is queued and closes the store."""

    def backlog() -> StoreBacklog:
        """How far behind the disk is, read by metrics and /stats."""


class StoreBacklog(NamedTuple):
    pending_writes: int  # queued or being written, not yet committed
    write_errors: int  # batches that failed to commit since start


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

    def on_open(self, loader: Loader) -> None:
        pass

    def execute(self, sql: str, params: Params = ()) -> None:
        pass

    def close(self) -> defer.Deferred[None]:
        return defer.succeed(None)

    def backlog(self) -> StoreBacklog:
        return StoreBacklog(0, 0)


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
    ) -> None:
        self.path = path
        self._reactor: IReactorTime = reactor
        self._thread_reactor: IReactorFromThreads = reactor
        self.history_size = history_size
        self.flush_interval = flush_interval
        self._db: sqlite3.Connection | None = None
        # One thread: SQLite has one writer anyway, and it keeps writes in order.
        self._pool = _WriterPool(minthreads=1, maxthreads=1, name="chatd-store")
        self._queued: list[tuple[str, Params]] = []
        self._rooms_to_trim: set[str] = set()
        self._timer: IDelayedCall | None = None
        self._in_flight = 0  # writes in the batch being committed
        self._write_errors = 0
        self._writing: defer.Deferred[None] | None = None
        self._loaders: list[Loader] = []

    # --- Start and stop --------------------------------------------------------------------

    def open(self) -> list[SavedRoom]:
        """Raises CannotOpenState, naming the file, when it is unwritable or not a database."""
        # Opened here, in the started service, not in makeService: twistd forks to
        # daemonize after makeService, and an SQLite connection must not cross a fork.
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as e:
            raise self._cannot_open(e) from None
        try:
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            db.execute("PRAGMA foreign_keys = ON")
            self._migrate(db)
            rooms = self._load(db)
            for loader in self._loaders:
                loader(db)
        except sqlite3.Error as e:
            db.close()
            raise self._cannot_open(e) from None
        self._db = db
        self._pool.start()
        return rooms

    def _cannot_open(self, error: sqlite3.Error) -> CannotOpenState:
        report_plainly()
        return CannotOpenState(f"cannot use the state file {self.path}: {error}")

    def on_open(self, loader: Loader) -> None:
        if self._db is not None:
            loader(self._db)
        else:
            self._loaders.append(loader)

    def close(self) -> defer.Deferred[None]:
        """Commits what is queued, then closes the database and stops the worker."""
        if self._db is None:
            return defer.succeed(None)

        def shut(_: object) -> None:
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
        for key, at, kind, nick, text in db.execute(_LOAD_HISTORY, (self.history_size,)):
            room = rooms[key]
            line = Said(room.name, nick, text) if kind == "say" else Acted(room.name, nick, text)
            room.history.append(HistoryEntry(at, line))
        return list(rooms.values())

    # --- Writes ----------------------------------------------------------------------------

    def save_room(self, room: Room) -> None:
        self.execute(_UPSERT_ROOM, (room.key, room.name, room.topic, room.topic_by,
                                    room.topic_at))

    def add_line(self, room: Room, entry: HistoryEntry) -> None:
        line = entry.line
        kind = "say" if isinstance(line, Said) else "act"
        self.execute(_INSERT_LINE, (room.key, entry.at, kind, line.nick, line.text))
        self._rooms_to_trim.add(room.key)

    def execute(self, sql: str, params: Params = ()) -> None:
        """Queues one write; it is committed within about ``flush_interval`` seconds."""
        self._queued.append((sql, params))
        if self._timer is None and self._writing is None:
            self._timer = self._reactor.callLater(self.flush_interval, self._flush_now)

    def flush(self) -> defer.Deferred[None]:
        """Fires once everything queued so far is committed (or has failed and been logged)."""
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
        if not self._queued or self._db is None:
            return defer.succeed(None)
        batch, self._queued = self._queued, []
        for key in self._rooms_to_trim:
            batch.append((_TRIM_ROOM, (key, key, self.history_size)))
        self._rooms_to_trim = set()
        writing = threads.deferToThreadPool(
            self._thread_reactor, self._pool, self._commit, self._db, batch
        )
        self._in_flight = len(batch)
        writing.addErrback(self._write_failed)
        writing.addBoth(self._written)
        self._writing = defer.Deferred()
        return writing

    def _write_failed(self, failure: Failure) -> None:
        self._write_errors += 1
        self.log.failure("could not write to {path}", failure, event="store.write_failed",
                         path=self.path)

    def backlog(self) -> StoreBacklog:
        return StoreBacklog(len(self._queued) + self._in_flight, self._write_errors)

    def _written(self, _: object) -> None:
        self._in_flight = 0
        writing, self._writing = self._writing, None
        if self._queued and self._timer is None:
            # Lines came in while the last batch was being written: they have waited already.
            self._timer = self._reactor.callLater(0, self._flush_now)
        if writing is not None:
            writing.callback(None)

    @staticmethod
    def _commit(db: sqlite3.Connection, batch: list[tuple[str, Params]]) -> None:
        """Runs in the worker thread: the whole batch in one transaction."""
        db.execute("BEGIN")
        try:
            for sql, params in batch:
                db.execute(sql, params)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

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


def open_store(state: str, reactor: Any, history_size: int) -> IChatStore:
    """The store ``--state`` asks for: ``none`` keeps everything in memory."""
    if state == MEMORY_ONLY:
        return MemoryStore()
    return SQLiteStore(state, reactor, history_size)

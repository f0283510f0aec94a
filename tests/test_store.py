"""The SQLite store: schema, batched writes from a worker thread, trimming, loading, and
what happens when the disk fails."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import LogEvent, formatEvent, globalLogPublisher

from chatd.events import Acted, Said
from chatd.history import HistoryEntry
from chatd.moderation.rules import Ban, Mute, parse_ban_target
from chatd.rooms import Room
from chatd.service import ChatService
from chatd.store import (
    FIRST_RETRY,
    MIGRATIONS,
    CannotOpenState,
    MemoryStore,
    SavedModeration,
    SQLiteStore,
    _Pending,
    open_store,
)
from tests.support import within


def rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as db:
        return db.execute(sql).fetchall()


def disk_error(message: str, code: int, name: str) -> sqlite3.OperationalError:
    error = sqlite3.OperationalError(message)
    error.sqlite_errorcode = code
    error.sqlite_errorname = name
    return error


class Disk:
    """The store's connection with a disk that can fail at COMMIT, as a full disk does, or
    with an I/O error on one kind of statement; COMMITs can be held until released. It
    counts the commits and attempts it saw."""

    def __init__(self) -> None:
        self.full = False
        self.crash: Exception | None = None  # raised at COMMIT: a failure not of SQLite's
        self.failing_statement = ""  # statements starting with this fail with an I/O error
        self.refused_reason = ""  # a statement with this parameter fails a CHECK constraint
        # A statement with this parameter fails in Python's sqlite3 itself (no SQLite code).
        self.unbindable = ""
        self.open = threading.Event()  # COMMITs wait for this
        self.open.set()
        self.attempts = 0  # COMMITs tried
        self.commits = 0  # COMMITs that went through

    def connection_class(self) -> type[sqlite3.Connection]:
        disk = self

        class Connection(sqlite3.Connection):
            def execute(self, sql: str, params: Any = (), /) -> sqlite3.Cursor:
                if disk.failing_statement and sql.startswith(disk.failing_statement):
                    raise disk_error("disk I/O error", 10, "SQLITE_IOERR")
                if disk.unbindable and disk.unbindable in params:
                    raise sqlite3.ProgrammingError("Error binding parameter 2: unsupported")
                if disk.refused_reason and disk.refused_reason in params:
                    error = sqlite3.IntegrityError("CHECK constraint failed: refused by the test")
                    error.sqlite_errorcode = 275  # SQLITE_CONSTRAINT_CHECK
                    raise error
                if sql != "COMMIT":
                    return super().execute(sql, params)
                assert disk.open.wait(10), "the test never let the commit through"
                disk.attempts += 1
                if disk.crash is not None:
                    raise disk.crash
                if disk.full:
                    raise disk_error("database or disk is full", 13, "SQLITE_FULL")
                cursor = super().execute(sql, params)
                disk.commits += 1
                return cursor

        return Connection


def store_on_disk(path: Path) -> tuple[Disk, SQLiteStore]:
    """A store of 10 history lines per room at ``path``, on a ``Disk`` that can fail."""
    disk = Disk()
    return disk, SQLiteStore(str(path), reactor, 10, connection_class=disk.connection_class())


class ClockedReactor:
    """Time from a ``task.Clock`` the test advances; threads from the real reactor, so the
    store's timers are the test's to fire while its commits still run in the worker."""

    def __init__(self) -> None:
        self.clock = task.Clock()

    def callLater(self, delay: float, f: Callable[..., Any], *args: Any) -> IDelayedCall:
        return self.clock.callLater(delay, f, *args)

    def seconds(self) -> float:
        return self.clock.seconds()

    def callFromThread(self, f: Callable[..., Any], *args: Any) -> None:
        reactor.callFromThread(f, *args)


@defer.inlineCallbacks
def until(condition: Callable[[], bool], what: str, timeout: float = 5.0) -> Any:
    """Waits (on the real reactor) until ``condition`` holds; fails the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        yield task.deferLater(reactor, 0.01, lambda: None)


@pytest.fixture
def store_events() -> Iterator[list[LogEvent]]:
    """What the store logs, as the events themselves (their names, their failures)."""
    events: list[LogEvent] = []

    def observe(event: LogEvent) -> None:
        if event.get("log_namespace", "").startswith("chatd.store"):
            events.append(event)

    globalLogPublisher.addObserver(observe)
    yield events
    globalLogPublisher.removeObserver(observe)


@pytest.fixture
def store_log() -> Iterator[list[str]]:
    """What the store logs, one formatted line per event."""
    lines: list[str] = []

    def observe(event: LogEvent) -> None:
        if event.get("log_namespace", "").startswith("chatd.store"):
            lines.append(formatEvent(event))

    globalLogPublisher.addObserver(observe)
    yield lines
    globalLogPublisher.removeObserver(observe)


def test_open_store_chooses_by_state(tmp_path: Path) -> None:
    assert isinstance(open_store("none", reactor, 10), MemoryStore)
    store = open_store(str(tmp_path / "s.sqlite3"), reactor, 10, 5000)
    assert isinstance(store, SQLiteStore)
    assert (store.path, store._reactor, store.history_size, store.history_memory) == (
        str(tmp_path / "s.sqlite3"), reactor, 10, 5000)


@pytest_twisted.inlineCallbacks
def test_schema_is_created_in_wal_mode_and_versioned(tmp_path: Path) -> Any:
    path = tmp_path / "state.sqlite3"
    store = SQLiteStore(str(path), reactor, 10)
    assert store.open() == []
    yield store.close()
    assert rows(path, "PRAGMA journal_mode") == [("wal",)]
    assert rows(path, "PRAGMA user_version") == [(len(MIGRATIONS),)]
    tables = {name for (name,) in rows(path, "SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"rooms", "history", "bans", "mutes"} <= tables
    again = SQLiteStore(str(path), reactor, 10)  # migrations do not run twice
    assert again.open() == []
    yield again.close()


@pytest_twisted.inlineCallbacks
def test_writes_are_batched_and_land_within_the_flush_interval(tmp_path: Path) -> Any:
    path = tmp_path / "state.sqlite3"
    disk, clocked = Disk(), ClockedReactor()
    store = SQLiteStore(str(path), clocked, 100, flush_interval=0.1,
                        connection_class=disk.connection_class())
    store.open()
    opened = disk.commits  # the migrations'
    room = Room("#Dev", 100, topic="t", topic_by="alice", topic_at=5.0)
    store.save_room(room)
    for i in range(50):
        store.add_line(room, HistoryEntry(10.0 + i, Said("#Dev", "alice", f"line {i}")))
        clocked.clock.advance(0.001)  # the 50 lines come in over 0.05 s
    clocked.clock.advance(0.1 - 0.05 - 0.001)
    yield task.deferLater(reactor, 0.05, lambda: None)  # a write started now would show
    assert (disk.attempts, rows(path, "SELECT count(*) FROM history")) == (opened, [(0,)])
    clocked.clock.advance(0.001)  # the flush interval is up: everything goes, in one commit
    yield until(lambda: disk.commits > opened, "the batch to commit")
    assert rows(path, "SELECT count(*) FROM history") == [(50,)]
    assert rows(path, "SELECT key, name, topic, topic_by, topic_at FROM rooms") == [
        ("#dev", "#Dev", "t", "alice", 5.0)
    ]
    yield store.close()
    assert disk.commits == opened + 1


@pytest_twisted.inlineCallbacks
def test_history_on_disk_is_trimmed_and_loaded_back(tmp_path: Path) -> Any:
    path = tmp_path / "state.sqlite3"
    store = SQLiteStore(str(path), reactor, 3)
    store.open()
    dev, lobby = Room("#dev", 3), Room("#lobby", 3, topic="hi", topic_by="bob", topic_at=1.0)
    store.save_room(dev)
    store.save_room(lobby)
    for i in range(5):
        store.add_line(dev, HistoryEntry(i, Said("#dev", "alice", f"d{i}")))
        store.add_line(lobby, HistoryEntry(i, Acted("#lobby", "bob", f"l{i}")))
    yield store.close()
    assert rows(path, "SELECT count(*) FROM history") == [(6,)]
    reopened = SQLiteStore(str(path), reactor, 2)
    saved = {room.name: room for room in reopened.open()}
    yield reopened.close()
    assert [e.line for e in saved["#dev"].history] == [
        Said("#dev", "alice", "d3"), Said("#dev", "alice", "d4")
    ]
    assert [(e.at, e.line) for e in saved["#lobby"].history] == [
        (3, Acted("#lobby", "bob", "l3")), (4, Acted("#lobby", "bob", "l4"))
    ]
    assert (saved["#lobby"].topic, saved["#lobby"].topic_by) == ("hi", "bob")


@pytest_twisted.inlineCallbacks
def test_a_refused_statement_is_logged_and_dropped_alone(
    tmp_path: Path, store_log: list[str]
) -> Any:
    path = tmp_path / "state.sqlite3"
    disk, store = store_on_disk(path)
    store.open()
    store.save_ban(ban("192.0.2.1", "spam"))
    yield store.flush()
    disk.refused_reason = "again"  # SQLite refuses the statement that carries this reason
    store.save_ban(ban("192.0.2.1", "again"))
    store.save_room(Room("#dev", 10))  # in the same batch: kept
    store.save_ban(ban("192.0.2.2", "spam"))
    yield store.flush()
    assert [line.split(": ", 1)[1] for line in store_log] == [
        "CHECK constraint failed: refused by the test "
        "(INSERT OR REPLACE INTO bans (network, reason, by, created, expires) "
        "VALUES (?, ?, ?, ?, ?) ('192.0.2.1/32', 'again', 'root', 0.0, None))",
    ]
    assert all(line.startswith(f"{path} refused a write, which is dropped: ")
               for line in store_log)
    store.save_room(Room("#later", 10))
    yield store.close()
    assert rows(path, "SELECT name FROM rooms ORDER BY key") == [("#dev",), ("#later",)]
    assert rows(path, "SELECT network, reason FROM bans ORDER BY network") == [
        ("192.0.2.1/32", "spam"), ("192.0.2.2/32", "spam")
    ]


@pytest_twisted.inlineCallbacks
def test_a_statement_sqlite_itself_refuses_is_dropped_alone(
    tmp_path: Path, store_log: list[str]
) -> Any:
    """The single-statement error path against SQLite itself, no fault injected: a
    constraint that fails undoes that one statement and leaves the transaction open (what
    ``_commit`` counts on), so the rest of the batch commits. (Once shown with raw SQL
    against a missing table; the typed methods leave a NOT NULL column to break.)"""
    path = tmp_path / "state.sqlite3"
    store = SQLiteStore(str(path), reactor, 10)
    store.open()
    store.save_ban(ban("192.0.2.1", "spam"))
    store.save_ban(Ban(parse_ban_target("192.0.2.2"), cast(str, None), "root", 0.0, None))
    store.save_room(Room("#dev", 10))
    store.save_ban(ban("192.0.2.3", "spam"))
    yield store.flush()
    assert [line.split(": ", 1)[1].split(" (")[0] for line in store_log] == [
        "NOT NULL constraint failed: bans.reason"]
    assert store.backlog() == (0, 1)  # nothing waits; one write refused
    yield store.close()
    assert rows(path, "SELECT name FROM rooms") == [("#dev",)]
    assert rows(path, "SELECT network FROM bans ORDER BY network") == [
        ("192.0.2.1/32",), ("192.0.2.3/32",)]


@pytest_twisted.inlineCallbacks
def test_a_statement_python_refuses_is_dropped_alone_too(
    tmp_path: Path, store_log: list[str]
) -> Any:
    """An error from Python's sqlite3 (no SQLite result code, as binding a value it cannot
    store) is a refusal of one statement, not a failing disk."""
    path = tmp_path / "state.sqlite3"
    disk, store = store_on_disk(path)
    store.open()
    disk.unbindable = "odd"
    store.save_ban(ban("192.0.2.1", "odd"))
    store.save_room(Room("#dev", 10))
    yield store.flush()
    assert [line.split(": ", 1)[1].split(" (")[0] for line in store_log] == [
        "Error binding parameter 2: unsupported"]
    assert store.backlog().pending_writes == 0  # nothing kept back for another try
    yield store.close()
    assert rows(path, "SELECT name FROM rooms") == [("#dev",)]


@pytest_twisted.inlineCallbacks
def test_a_failed_commit_loses_nothing_and_is_written_after_recovery(
    tmp_path: Path, store_log: list[str]
) -> Any:
    from tests.test_service import FakeClient

    path = tmp_path / "state.sqlite3"
    disk, store = store_on_disk(path)
    chat = ChatService(reactor, store=store, history_size=10)
    chat.startService()
    alice = chat.connect(FakeClient(), "test")
    chat.move(alice, "#old")
    chat.set_topic(alice, "kept")  # so #old outlives alice's leaving it
    chat.say(alice, "before the disk filled")
    yield store.flush()
    before = rows(path, "SELECT name, topic FROM rooms"), rows(path, "SELECT text FROM history")

    disk.full = True
    chat.move(alice, "#new")  # a room created while the disk is full...
    chat.say(alice, "first")  # ... whose row fails to commit with this line
    yield store.flush()
    chat.say(alice, "second")  # the service counts #new as saved: only the line is queued
    chat.join(alice, "#old")  # staying in #new too: an empty room without a topic is forgotten
    chat.set_topic(alice, "set meanwhile", chat.find_room("#old"))  # unrelated rows must
    # not go down with it
    store.save_ban(ban("192.0.2.1", "spam"))
    yield store.flush()
    assert disk.attempts - disk.commits == 2
    assert (rows(path, "SELECT name, topic FROM rooms"),
            rows(path, "SELECT text FROM history")) == before

    disk.full = False
    yield store.flush()
    assert disk.attempts - disk.commits == 2  # recovered in one go
    assert rows(path, "SELECT name, topic FROM rooms ORDER BY key") == [
        ("#new", ""), ("#old", "set meanwhile")
    ]
    assert rows(path, "SELECT room, text FROM history ORDER BY id") == [
        ("#old", "before the disk filled"), ("#new", "first"), ("#new", "second")
    ]
    assert rows(path, "SELECT network FROM bans") == [("192.0.2.1/32",)]
    # Logged once when it failed, with what waits, and once when it recovered.
    assert store_log == [
        f"cannot write to {path}: database or disk is full; keeping 1 room, 1 history line "
        "in memory and trying again (every 30.0 s at most)",
        f"writing to {path} again after 2 failed attempts: saved 2 rooms, 2 history lines, "
        "1 ban or mute",
    ]
    yield chat.stopService()


@pytest_twisted.inlineCallbacks
def test_a_real_full_database_keeps_the_batch_until_there_is_room(
    tmp_path: Path, store_log: list[str]
) -> Any:
    path = tmp_path / "state.sqlite3"
    store = SQLiteStore(str(path), reactor, 100)
    store.open()
    store.save_room(Room("#dev", 100))
    yield store.flush()
    pages = yield store.read(lambda db: db.execute("PRAGMA page_count").fetchone()[0])
    # SQLite's own SQLITE_FULL, raised by an INSERT rather than injected at COMMIT.
    yield store.read(lambda db: db.execute(f"PRAGMA max_page_count = {pages}").fetchall())
    for i in range(100):
        store.add_line(Room("#dev", 100), HistoryEntry(i, Said("#dev", "a", f"{i} " + "x" * 500)))
    yield store.flush()
    assert rows(path, "SELECT count(*) FROM history") == [(0,)]
    assert store_log == [f"cannot write to {path}: database or disk is full; keeping 100 "
                         "history lines in memory and trying again (every 30.0 s at most)"]
    yield store.read(lambda db: db.execute("PRAGMA max_page_count = 100000").fetchall())
    yield store.close()
    assert rows(path, "SELECT count(*) FROM history") == [(100,)]


@pytest_twisted.inlineCallbacks
def test_an_io_error_on_one_statement_keeps_the_whole_batch(
    tmp_path: Path, store_log: list[str]
) -> Any:
    path = tmp_path / "state.sqlite3"
    disk, store = store_on_disk(path)
    store.open()
    disk.failing_statement = "INSERT INTO history"  # the transaction stays open after it
    store.add_line(Room("#dev", 10), HistoryEntry(0, Said("#dev", "alice", "kept")))
    yield store.flush()
    assert rows(path, "SELECT count(*) FROM rooms") == [(0,)]  # not committed without it
    assert store_log[0].startswith(f"cannot write to {path}: disk I/O error; keeping 1 room")
    disk.failing_statement = ""
    yield store.close()
    assert rows(path, "SELECT room, text FROM history") == [("#dev", "kept")]


@pytest_twisted.inlineCallbacks
def test_a_failed_batch_is_tried_again_later_without_being_asked(
    tmp_path: Path, store_log: list[str]
) -> Any:
    path = tmp_path / "state.sqlite3"
    disk, clocked = Disk(), ClockedReactor()
    store = SQLiteStore(str(path), clocked, 3, flush_interval=0.1,
                        connection_class=disk.connection_class())
    store.open()
    opened = disk.attempts
    disk.full = True
    room = Room("#dev", 3)
    store.save_room(room)
    store.add_line(room, HistoryEntry(0, Said("#dev", "alice", "line 0")))
    clocked.clock.advance(0.1)
    yield until(lambda: disk.attempts == opened + 1 and len(store_log) == 1, "a failed try")
    for i in range(1, 100):  # what waits is bounded by what is kept: 3 lines
        store.add_line(room, HistoryEntry(i, Said("#dev", "alice", f"line {i}")))
    clocked.clock.advance(FIRST_RETRY / 2)  # tried again after a second...
    yield task.deferLater(reactor, 0.05, lambda: None)
    assert disk.attempts == opened + 1
    clocked.clock.advance(FIRST_RETRY / 2)
    yield until(lambda: disk.attempts == opened + 2, "the second try")
    disk.full = False
    clocked.clock.advance(2 * FIRST_RETRY - 0.001)  # ... then after two more
    yield task.deferLater(reactor, 0.05, lambda: None)
    assert disk.attempts == opened + 2
    clocked.clock.advance(0.001)
    yield until(lambda: disk.commits == opened + 1, "the retry to commit")
    assert rows(path, "SELECT text FROM history ORDER BY id") == [
        ("line 97",), ("line 98",), ("line 99",)
    ]
    assert store_log[1:] == [
        f"writing to {path} again after 2 failed attempts: saved 1 room, 3 history lines"
    ]
    yield store.close()


@pytest_twisted.inlineCallbacks
def test_what_the_disk_never_took_is_logged_as_lost_at_close(
    tmp_path: Path, store_log: list[str]
) -> Any:
    path = tmp_path / "state.sqlite3"
    disk, store = store_on_disk(path)
    store.open()
    disk.full = True
    store.save_room(Room("#dev", 10))
    yield store.close()
    assert store_log[-1] == f"stopping with 1 room not written to {path}: they are lost"


@pytest_twisted.inlineCallbacks
def test_a_new_topic_of_a_saved_room_is_there_after_reopening(tmp_path: Path) -> Any:
    path = tmp_path / "state.sqlite3"
    store = SQLiteStore(str(path), reactor, 10)
    store.open()
    room = Room("#dev", 10, topic="old", topic_by="alice", topic_at=1.0)
    store.save_room(room)
    yield store.flush()
    room.topic, room.topic_by, room.topic_at = "new", "bob", 2.0
    store.save_room(room)
    yield store.close()
    reopened = SQLiteStore(str(path), reactor, 10)
    [saved] = reopened.open()
    yield reopened.close()
    assert (saved.name, saved.topic, saved.topic_by, saved.topic_at) == ("#dev", "new", "bob", 2.0)


@pytest_twisted.inlineCallbacks
def test_a_forgotten_room_goes_with_its_history(tmp_path: Path) -> Any:
    path = tmp_path / "state.sqlite3"
    store = SQLiteStore(str(path), reactor, 10)
    store.open()
    dev, lobby, gone = Room("#Dev", 10), Room("#lobby", 10), Room("#gone", 10)
    for room in (dev, lobby, gone):
        store.add_line(room, HistoryEntry(1, Said(room.name, "alice", "old")))
    yield store.flush()
    store.forget_room("#DEV")  # names compare case-insensitively
    store.forget_room("#gone")
    again = Room("#dev", 10)  # made again after it was forgotten, in the same batch
    store.add_line(again, HistoryEntry(2, Said("#dev", "bob", "new")))
    yield store.flush()
    store.forget_room("#never-saved")
    yield store.close()
    assert rows(path, "SELECT name FROM rooms ORDER BY key") == [("#dev",), ("#lobby",)]
    assert rows(path, "SELECT room, text FROM history ORDER BY id") == [
        ("#lobby", "old"), ("#dev", "new")
    ]
    MemoryStore().forget_room("#dev")


@pytest_twisted.inlineCallbacks
def test_a_room_forgotten_while_its_row_commits_gets_its_row_back_with_a_new_line(
    tmp_path: Path, store_log: list[str]
) -> Any:
    path = tmp_path / "state.sqlite3"
    disk, store = store_on_disk(path)
    store.open()
    disk.open.clear()
    store.save_room(Room("#dev", 10))
    writing = store.flush()  # the worker holds this batch at COMMIT
    store.forget_room("#dev")  # queued behind it
    disk.open.set()
    yield writing
    store.add_line(Room("#dev", 10), HistoryEntry(1, Said("#dev", "bob", "back")))
    yield store.close()
    assert store_log == []
    assert rows(path, "SELECT name FROM rooms") == [("#dev",)]
    assert rows(path, "SELECT room, text FROM history") == [("#dev", "back")]


@pytest_twisted.inlineCallbacks
def test_a_line_for_a_room_whose_forget_is_committing_brings_the_row_back(
    tmp_path: Path, store_log: list[str]
) -> Any:
    path = tmp_path / "state.sqlite3"
    disk, store = store_on_disk(path)
    store.open()
    store.save_room(Room("#dev", 10))
    yield store.flush()
    store.forget_room("#dev")
    disk.open.clear()
    forgetting = store.flush()  # the worker holds the forget at COMMIT
    store.add_line(Room("#dev", 10), HistoryEntry(1, Said("#dev", "bob", "back")))
    disk.open.set()
    yield forgetting
    yield store.close()
    assert store_log == []  # no line refused for want of its room's row
    assert rows(path, "SELECT name FROM rooms") == [("#dev",)]
    assert rows(path, "SELECT room, text FROM history") == [("#dev", "back")]


def pending_statements(pending: _Pending) -> list[tuple[str, tuple[Any, ...]]]:
    """What a batch would run, each statement named by its first three words."""
    return [(" ".join(sql.split()[:3]), tuple(params)) for sql, params in pending.in_order()]


def test_a_forgotten_room_takes_its_queued_row_lines_and_trim_with_it() -> None:
    pending = _Pending(10)
    pending.save_room("#a", ("#a", "#A", "", "", 0.0))
    pending.add_line("#a", ("#a", 1.0, "say", "x", "hi"))
    pending.trim_room("#a", 1)
    pending.save_room("#b", ("#b", "#B", "", "", 0.0))
    pending.forget_room("#a")
    assert pending_statements(pending) == [
        ("DELETE FROM history", ("#a",)), ("DELETE FROM rooms", ("#a",)),
        ("INSERT INTO rooms", ("#b", "#B", "", "", 0.0)),
    ]


def test_the_latest_write_of_a_ban_or_mute_replaces_the_queued_one_and_goes_last() -> None:
    pending = _Pending(10)
    pending.moderate("bans", "192.0.2.1/32", "INSERT OR REPLACE INTO bans", ("save",))
    pending.moderate("mutes", "bob", "INSERT OR REPLACE INTO mutes", ("mute",))
    pending.moderate("bans", "192.0.2.1/32", "DELETE FROM bans", ("delete",))
    assert pending_statements(pending) == [
        ("INSERT OR REPLACE", ("mute",)), ("DELETE FROM bans", ("delete",))]
    assert pending.size() == 2


def test_a_failed_batch_absorbs_what_came_since_as_if_queued_behind_it() -> None:
    failed = _Pending(3)
    failed.save_room("#a", ("#a", "#A", "", "", 0.0))
    failed.add_line("#a", ("#a", 1.0, "say", "x", "one"))
    failed.moderate("bans", "192.0.2.1/32", "INSERT OR REPLACE INTO bans", ("save",))
    newer = _Pending(3)
    newer.forget_room("#gone")
    newer.save_room("#b", ("#b", "#B", "t", "x", 2.0))
    for n in range(3):
        newer.add_line("#a", ("#a", 2.0 + n, "say", "x", f"new{n}"))
    newer.trim_room("#b", 0)
    newer.moderate("bans", "192.0.2.1/32", "DELETE FROM bans", ("delete",))
    newer.moderate("mutes", "bob", "INSERT OR REPLACE INTO mutes", ("mute",))
    failed.absorb(newer)
    assert pending_statements(failed) == [
        ("DELETE FROM history", ("#gone",)), ("DELETE FROM rooms", ("#gone",)),
        ("INSERT INTO rooms", ("#a", "#A", "", "", 0.0)),
        ("INSERT INTO rooms", ("#b", "#B", "t", "x", 2.0)),
        # --history 3: the oldest queued line goes as the newer ones come in
        ("INSERT INTO history", ("#a", 2.0, "say", "x", "new0")),
        ("INSERT INTO history", ("#a", 3.0, "say", "x", "new1")),
        ("INSERT INTO history", ("#a", 4.0, "say", "x", "new2")),
        ("DELETE FROM history", ("#a", "#a", 3)),
        ("DELETE FROM history", ("#b", "#b", 0)),
        ("DELETE FROM bans", ("delete",)),
        ("INSERT OR REPLACE", ("mute",)),
    ]


@pytest_twisted.inlineCallbacks
def test_a_save_and_a_delete_of_one_ban_or_mute_wait_as_one_write(tmp_path: Path) -> Any:
    store = SQLiteStore(str(tmp_path / "state.sqlite3"), reactor, 10, flush_interval=60)
    store.open()
    store.save_ban(ban("192.0.2.1", "spam"))
    store.delete_ban("192.0.2.1/32")
    assert store.backlog().pending_writes == 1
    store.save_mute(Mute("eve", "eve", None, "root", 2.0, None))
    store.delete_mute("eve")
    assert store.backlog().pending_writes == 2
    yield store.close()


@pytest_twisted.inlineCallbacks
def test_the_state_file_is_bounded_by_the_history_kept(tmp_path: Path) -> Any:
    path = tmp_path / "state.sqlite3"
    sizes = []
    for run in range(3):  # 2,000 lines of 200 bytes each time, in 100 batches
        store = SQLiteStore(str(path), reactor, 10)
        store.open()
        room = Room("#dev", 10)
        for batch in range(100):
            for i in range(20):
                text = f"line {run} {batch:03} {i:02} " + "x" * 200
                store.add_line(room, HistoryEntry(i, Said("#dev", "alice", text)))
            yield store.flush()
        yield store.close()
        assert rows(path, "SELECT count(*) FROM history") == [(10,)]
        assert rows(path, "SELECT min(text) FROM history")[0][0].startswith(f"line {run} 099 10 ")
        sizes.append(os.path.getsize(path))
    # SQLite reuses the pages of trimmed lines: the file does not grow with what was said.
    assert sizes[0] == sizes[1] == sizes[2] < 64 * 1024, sizes


@pytest_twisted.inlineCallbacks
def test_history_beyond_a_lowered_history_size_is_trimmed_at_start(tmp_path: Path) -> Any:
    path = tmp_path / "state.sqlite3"
    store = SQLiteStore(str(path), reactor, 5)
    store.open()
    for i in range(5):
        store.add_line(Room("#dev", 5), HistoryEntry(i, Said("#dev", "alice", f"{i}")))
    yield store.close()
    smaller = SQLiteStore(str(path), reactor, 2)
    smaller.open()
    yield smaller.close()
    assert rows(path, "SELECT text FROM history ORDER BY id") == [("3",), ("4",)]


@pytest_twisted.inlineCallbacks
def test_read_runs_after_queued_writes(tmp_path: Path) -> Any:
    store = SQLiteStore(str(tmp_path / "state.sqlite3"), reactor, 10)
    store.open()
    store.save_room(Room("#dev", 10))
    names = yield store.read(lambda db: db.execute("SELECT name FROM rooms").fetchall())
    assert names == [("#dev",)]
    yield store.close()


@pytest_twisted.inlineCallbacks
def test_service_saves_and_restores_rooms_topics_and_history(tmp_path: Path) -> Any:
    from tests.test_service import FakeClient

    path = str(tmp_path / "state.sqlite3")
    chat = ChatService(reactor, store=SQLiteStore(path, reactor, 10), history_size=10)
    chat.startService()
    alice = chat.connect(FakeClient(), "test")
    chat.move(alice, "#Dev")
    chat.set_topic(alice, "shipping")
    chat.say(alice, "one")
    chat.act(alice, "two")
    chat.move(alice, "#quiet")  # nothing said: not saved
    chat.disconnect(alice, "bye")
    yield chat.stopService()

    again = ChatService(reactor, store=SQLiteStore(path, reactor, 10), history_size=10)
    again.startService()
    assert [r.name for r in again.rooms_by_name()] == ["#Dev"]
    dev = again.find_room("#dev")
    assert (dev.topic, dev.topic_by) == ("shipping", "guest1")
    assert [e.line for e in again.history(dev, 10)] == [
        Said("#Dev", "guest1", "one"), Acted("#Dev", "guest1", "two")
    ]
    yield again.stopService()


def ban(network: str, reason: str, expires: float | None = None) -> Ban:
    return Ban(parse_ban_target(network), reason, "root", 0.0, expires)


@pytest_twisted.inlineCallbacks
def test_bans_and_mutes_are_saved_deleted_and_loaded_by_typed_methods(tmp_path: Path) -> Any:
    path = tmp_path / "state.sqlite3"
    store = SQLiteStore(str(path), reactor, 10)
    assert store.load_moderation() == SavedModeration([], [])  # nothing before it opens
    store.open()
    assert store.load_moderation() == SavedModeration([], [])
    store.save_ban(ban("203.0.113.0/24", "spam"))
    store.save_ban(ban("198.51.100.9", "short", expires=60.0))
    store.save_ban(ban("192.0.2.1", "lifted"))
    store.delete_ban("192.0.2.1/32")  # a later write of the same ban replaces the queued one
    muted = Mute("bob", "Bob", "192.0.2.7", "root", 1.0, None, frozenset({"robert", "rob"}))
    store.save_mute(muted)
    store.save_mute(Mute("eve", "eve", None, "root", 2.0, 90.0))
    store.delete_mute("eve")
    yield store.close()
    assert rows(path, "SELECT key, keys FROM mutes") == [("bob", "rob robert")]
    again = SQLiteStore(str(path), reactor, 10)
    again.open()
    saved = again.load_moderation()
    assert [(str(b.network), b.reason, b.expires) for b in saved.bans] == [
        ("203.0.113.0/24", "spam", None), ("198.51.100.9/32", "short", 60.0)
    ]
    assert saved.mutes == [muted]
    yield again.close()
    memory = MemoryStore()
    memory.save_ban(ban("203.0.113.0/24", "spam"))
    memory.save_mute(muted)
    assert memory.load_moderation() == SavedModeration([], [])


def test_a_file_that_is_not_a_database_cannot_be_opened(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    path.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    with pytest.raises(CannotOpenState, match=f"cannot use the state file {path}: it is "
                       r"damaged \(file is not a database\); move it aside"):
        SQLiteStore(str(path), reactor, 10).open()


def damage(path: Path) -> None:
    """Writes a state file with a sound header and garbage in its history's pages."""
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE history (id INTEGER PRIMARY KEY, text TEXT)")
        db.executemany("INSERT INTO history (text) VALUES (?)",
                       [(f"line {i} " + "x" * 100,) for i in range(1000)])
    data = bytearray(path.read_bytes())
    page = 4096
    for number in (5, 10, 20):
        data[number * page + 100:number * page + 600] = b"\x5a" * 500
    path.write_bytes(bytes(data))


def test_a_file_damaged_past_its_header_cannot_be_opened(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    damage(path)
    damaged = path.read_bytes()
    with pytest.raises(CannotOpenState) as refused:
        SQLiteStore(str(path), reactor, 10).open()
    message = str(refused.value)
    assert message.startswith(f"cannot use the state file {path}: it is damaged (")
    assert message.endswith(f"; move it aside, with its -wal file if there is one "
                            f"(mv {path} {path}.damaged), to start with an empty one")
    assert "\n" not in message
    assert path.read_bytes() == damaged  # nothing was written to it


@pytest.mark.parametrize(("problems", "shown"), [
    # PRAGMA quick_check's rows: a header naming the database, then what it found
    (["*** in database main ***\nPage 5: never used"], "Page 5: never used"),
    (["*** in database main ***\n" + "x" * 300], "x" * 200),  # one line, cut at 200
    (["", "*** in database main ***"], "unknown damage"),
])
def test_the_damage_reported_is_the_first_thing_sqlite_found(
    tmp_path: Path, problems: list[str], shown: str
) -> None:
    path = tmp_path / "state.sqlite3"
    message = str(SQLiteStore(str(path), reactor, 10)._damaged(problems))
    assert message.startswith(f"cannot use the state file {path}: it is damaged ({shown}); ")


@pytest_twisted.inlineCallbacks
def test_failed_tries_are_counted_and_named_and_what_waits_is_not_in_flight(
    tmp_path: Path, store_events: list[LogEvent]
) -> Any:
    path = tmp_path / "state.sqlite3"
    disk, store = store_on_disk(path)
    store.open()
    disk.full = True
    store.save_room(Room("#dev", 10))
    store.save_ban(ban("192.0.2.1", "spam"))
    yield store.flush()
    assert store.backlog() == (2, 1)  # both wait (none in flight); one failed try
    yield store.flush()
    assert store.backlog() == (2, 2)
    assert [(e["event"], formatEvent(e)) for e in store_events] == [(
        "store.write_failed", f"cannot write to {path}: database or disk is full; keeping "
        "1 room, 1 ban or mute in memory and trying again (every 30.0 s at most)")]
    disk.full = False
    yield store.close()


@pytest_twisted.inlineCallbacks
def test_a_failure_that_is_not_sqlites_is_logged_with_its_traceback(
    tmp_path: Path, store_events: list[LogEvent]
) -> Any:
    path = tmp_path / "state.sqlite3"
    disk, store = store_on_disk(path)
    store.open()
    disk.crash = MemoryError("no room for the batch")
    store.save_room(Room("#dev", 10))
    yield store.flush()
    [event] = store_events
    assert event["event"] == "store.write_failed"
    assert formatEvent(event) == (f"cannot write to {path}; keeping 1 room in memory and "
                                  "trying again")
    assert event["log_failure"].check(MemoryError)
    assert store.backlog() == (1, 1)
    disk.crash = None
    yield store.close()
    assert rows(path, "SELECT name FROM rooms") == [("#dev",)]


def test_what_waits_is_described_in_words_for_the_log() -> None:
    pending = _Pending(10)
    assert pending.describe() == "nothing"
    pending.forget_room("#a")
    pending.moderate("bans", "192.0.2.1/32", "DELETE FROM bans", ("x",))
    assert pending.describe() == "1 room to forget, 1 ban or mute"
    pending.forget_room("#b")
    pending.moderate("mutes", "bob", "DELETE FROM mutes", ("bob",))
    pending.save_room("#c", ("#c", "#c", "", "", 0.0))
    pending.add_line("#c", ("#c", 1.0, "say", "x", "hi"))
    assert pending.describe() == ("1 room, 1 history line, 2 rooms to forget, "
                                  "2 bans or mutes")
    assert pending.size() == 6


def test_a_trimmed_room_keeps_its_new_lines_as_they_come_up_to_history_size() -> None:
    pending = _Pending(3)
    pending.trim_room("#a", 1)  # --history-memory took all but one line from the file
    pending.add_line("#a", ("#a", 1.0, "say", "x", "one"))
    assert pending_statements(pending)[-1] == ("DELETE FROM history", ("#a", "#a", 2))
    for n in range(3):
        pending.add_line("#a", ("#a", 2.0 + n, "say", "x", "more"))
    assert pending_statements(pending)[-1] == ("DELETE FROM history", ("#a", "#a", 3))


@pytest_twisted.inlineCallbacks
def test_refusals_and_recoveries_are_counted_and_named_and_each_outage_logged(
    tmp_path: Path, store_events: list[LogEvent]
) -> Any:
    path = tmp_path / "state.sqlite3"
    disk, store = store_on_disk(path)
    store.open()
    disk.refused_reason = "odd"
    for _ in range(2):  # two batches, one refusal each
        store.save_ban(ban("192.0.2.1", "odd"))
        yield store.flush()
    assert store.backlog() == (0, 2)
    for _ in range(2):  # two outages, each logged when it starts and when it ends
        disk.full = True
        store.save_room(Room("#dev", 10))
        yield store.flush()
        disk.full = False
        yield store.flush()
    assert store.backlog() == (0, 4)
    assert [e["event"] for e in store_events] == [
        "store.write_refused", "store.write_refused", "store.write_failed",
        "store.write_recovered", "store.write_failed", "store.write_recovered"]
    yield store.close()


@pytest_twisted.inlineCallbacks
def test_what_came_in_during_a_commit_goes_right_after_it(tmp_path: Path) -> Any:
    """Lines that waited for a batch to commit have waited already: they are written at
    once after it, not a flush interval later; a flush asked for meanwhile waits for both."""
    path = tmp_path / "state.sqlite3"
    disk, clocked = Disk(), ClockedReactor()
    store = SQLiteStore(str(path), clocked, 10, flush_interval=10,
                        connection_class=disk.connection_class())
    store.open()
    opened = disk.commits
    disk.open.clear()
    store.save_room(Room("#dev", 10))
    writing = store.flush()  # held at COMMIT
    store.add_line(Room("#dev", 10), HistoryEntry(1, Said("#dev", "bob", "meanwhile")))
    assert clocked.clock.getDelayedCalls() == []  # no timer of its own while one commits
    disk.open.set()
    yield writing
    clocked.clock.advance(0)
    yield until(lambda: disk.commits == opened + 2, "the second batch, at once")
    disk.open.clear()
    store.add_line(Room("#dev", 10), HistoryEntry(2, Said("#dev", "bob", "later")))
    writing = store.flush()
    store.add_line(Room("#dev", 10), HistoryEntry(3, Said("#dev", "bob", "last")))
    both = store.flush()  # asked for while the other commits: waits for both
    disk.open.set()
    yield writing
    yield within(both, "a flush asked for during a commit")
    assert rows(path, "SELECT text FROM history ORDER BY id") == [
        ("meanwhile",), ("later",), ("last",)]
    yield store.close()


@pytest_twisted.inlineCallbacks
def test_the_writer_thread_never_keeps_the_process_alive(tmp_path: Path) -> Any:
    store = SQLiteStore(str(tmp_path / "state.sqlite3"), reactor, 10)
    store.open()
    store.save_room(Room("#dev", 10))
    yield store.flush()
    assert store._pool.threads and all(thread.daemon for thread in store._pool.threads)
    yield store.close()


@pytest_twisted.inlineCallbacks
def test_a_new_store_has_nothing_pending_and_no_errors(tmp_path: Path) -> Any:
    store = SQLiteStore(str(tmp_path / "state.sqlite3"), reactor, 10)
    assert store.backlog() == (0, 0)
    yield store.flush()  # before it opens: nothing to write, nothing tried
    store.open()
    assert store.backlog() == (0, 0)
    yield store.close()


def test_a_state_file_that_cannot_be_created_says_why(tmp_path: Path) -> None:
    path = tmp_path / "no such directory" / "state.sqlite3"
    with pytest.raises(CannotOpenState) as refused:
        SQLiteStore(str(path), reactor, 10).open()
    assert str(refused.value) == (f"cannot use the state file {path}: "
                                  "unable to open database file")

"""The SQLite store: schema, batched writes from a worker thread, trimming, loading."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor, task

from chatd.events import Acted, Said
from chatd.history import HistoryEntry
from chatd.rooms import Room
from chatd.service import ChatService
from chatd.store import MIGRATIONS, CannotOpenState, MemoryStore, SQLiteStore, open_store


def rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as db:
        return db.execute(sql).fetchall()


def test_open_store_chooses_by_state(tmp_path: Path) -> None:
    assert isinstance(open_store("none", reactor, 10), MemoryStore)
    assert isinstance(open_store(str(tmp_path / "s.sqlite3"), reactor, 10), SQLiteStore)


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
    store = SQLiteStore(str(path), reactor, 100, flush_interval=0.1)
    store.open()
    room = Room("#Dev", 100, topic="t", topic_by="alice", topic_at=5.0)
    store.save_room(room)
    for i in range(50):
        store.add_line(room, HistoryEntry(10.0 + i, Said("#Dev", "alice", f"line {i}")))
    assert rows(path, "SELECT count(*) FROM history") == [(0,)]  # queued, not yet written
    yield task.deferLater(reactor, 0.5, lambda: None)
    assert rows(path, "SELECT count(*) FROM history") == [(50,)]
    assert rows(path, "SELECT key, name, topic, topic_by, topic_at FROM rooms") == [
        ("#dev", "#Dev", "t", "alice", 5.0)
    ]
    yield store.close()


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
def test_a_failed_batch_is_logged_and_later_writes_go_on(tmp_path: Path) -> Any:
    path = tmp_path / "state.sqlite3"
    store = SQLiteStore(str(path), reactor, 10)
    store.open()
    store.execute("INSERT INTO no_such_table VALUES (1)")
    yield store.flush()
    room = Room("#dev", 10)
    store.save_room(room)
    yield store.close()
    assert rows(path, "SELECT name FROM rooms") == [("#dev",)]


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
    chat.join(alice, "#Dev")
    chat.set_topic(alice, "shipping")
    chat.say(alice, "one")
    chat.act(alice, "two")
    chat.join(alice, "#quiet")  # nothing said: not saved
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


@pytest_twisted.inlineCallbacks
def test_loaders_read_as_the_store_opens_and_writes_share_its_writer(tmp_path: Path) -> Any:
    path = tmp_path / "state.sqlite3"
    store = SQLiteStore(str(path), reactor, 10)
    seen: list[list[tuple[Any, ...]]] = []
    store.on_open(lambda db: seen.append(db.execute("SELECT network FROM bans").fetchall()))
    assert seen == []  # not before the store opens (after twistd's fork)
    store.open()
    assert seen == [[]]
    store.execute("INSERT INTO bans VALUES ('203.0.113.0/24', 'spam', 'root', 0, NULL)")
    yield store.close()
    again = SQLiteStore(str(path), reactor, 10)
    again.open()
    again.on_open(lambda db: seen.append(db.execute("SELECT network FROM bans").fetchall()))
    assert seen[-1] == [("203.0.113.0/24",)]  # at once when already open
    yield again.close()
    memory = MemoryStore()
    memory.on_open(lambda db: seen.append([]))
    memory.open()
    memory.execute("DELETE FROM bans")
    assert len(seen) == 2


def test_a_file_that_is_not_a_database_cannot_be_opened(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    path.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    with pytest.raises(CannotOpenState, match=f"cannot use the state file {path}: file is not"):
        SQLiteStore(str(path), reactor, 10).open()

"""--history-memory: one bound on the bytes of history all rooms hold together, so that
filling --max-rooms rooms with --history lines of --max-line bytes (400 MiB with the
defaults) cannot fill the daemon. The accounting with exact numbers, the attack at the
service, forgetting and expiry, a reload, the state file across a restart."""

from __future__ import annotations

import selectors
import socket
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.task import Clock

from chatd.events import Said
from chatd.history import LINE_OVERHEAD, HistoryBudget, HistoryEntry, RoomHistory, line_cost
from chatd.service import ChatService
from chatd.store import MemoryStore, SQLiteStore
from tests.support import Twistd, connect, read_until
from tests.test_room_limits import make, person

TEXT = "x" * 1000
COST = LINE_OVERHEAD + sys.getsizeof(TEXT)  # what one line of TEXT is counted at


def line(text: str = TEXT, at: float = 0.0) -> HistoryEntry:
    return HistoryEntry(at, Said("#r", "alice", text, at=at))


def texts(history: RoomHistory) -> list[str]:
    return [entry.line.text for entry in history.last(len(history))]


def test_a_line_costs_its_text_as_stored_plus_the_overhead() -> None:
    assert line_cost(line().line) == LINE_OVERHEAD + sys.getsizeof(TEXT) == 256 + 1049
    # One emoji makes CPython store the whole line at four bytes a character.
    wide = "x" * 999 + "\N{GRINNING FACE}"
    assert line_cost(line(wide).line) == 256 + sys.getsizeof(wide) > 256 + 4000


def test_the_biggest_room_loses_its_oldest_lines_to_keep_within_the_bound() -> None:
    budget = HistoryBudget(3 * COST)
    flooded, quiet = RoomHistory(100, budget=budget), RoomHistory(100, budget=budget)
    quiet.append(line("q" * 1000))
    for n in range(3):
        flooded.append(line(str(n) * 1000))
    # Four lines in a bound of three: the flooded room (two lines more) gives its oldest.
    assert budget.used == 3 * COST
    assert (flooded.bytes, quiet.bytes) == (2 * COST, COST)
    assert texts(flooded) == ["1" * 1000, "2" * 1000]
    assert texts(quiet) == ["q" * 1000]
    for n in range(3, 50):
        flooded.append(line(str(n % 10) * 1000))
    assert budget.used == 3 * COST  # the quiet room's line outlives 47 more of the flood
    assert texts(quiet) == ["q" * 1000]
    assert texts(flooded) == ["8" * 1000, "9" * 1000]


def test_lines_falling_off_a_room_and_a_cleared_room_are_no_longer_counted() -> None:
    budget = HistoryBudget(0)  # no bound: only the counting
    room = RoomHistory(2, budget=budget)
    for _ in range(5):
        room.append(line())
    assert (budget.used, room.bytes, len(room)) == (2 * COST, 2 * COST, 2)
    room.clear()
    assert (budget.used, room.bytes, len(room)) == (0, 0, 0)


def test_a_lowered_bound_trims_at_once_and_tells_each_trimmed_room() -> None:
    budget = HistoryBudget(0)
    rooms = [RoomHistory(100, budget=budget) for _ in range(3)]
    told: list[tuple[int, int]] = []
    for n, room in enumerate(rooms):
        room.dropped = lambda history, n=n: told.append((n, len(history)))
        for _ in range(n + 1):  # 1, 2 and 3 lines
            room.append(line())
    budget.limit = 3 * COST
    budget.enforce()
    assert budget.used == 3 * COST
    assert [len(room) for room in rooms] == [1, 1, 1]
    assert sorted(told) == [(1, 1), (2, 1)]


def flood(chat: ChatService, rooms: int, lines: int, text: str) -> None:
    """One attacker fills ``rooms`` rooms (each with a topic, so it stays when they leave)
    with ``lines`` lines of ``text``."""
    attacker, _ = person(chat, "10.0.0.66")
    for n in range(rooms):
        make(chat, attacker, f"#flood{n}", "mine")
        for _ in range(lines):
            chat.say(attacker, text)


def test_many_rooms_filled_with_max_line_lines_stay_within_the_bound() -> None:
    bound = 4 * 1024 * 1024
    chat = ChatService(Clock(), history_size=100, max_rooms=0, room_rate=0,
                       history_memory=bound)
    alice, _ = person(chat)
    chat.say(alice, "a quiet room's only line")
    big = "y" * 4000  # one string shared by every line: counted per line, not held per line
    flood(chat, 200, 100, big)  # 80 MB of history without the bound
    used = sum(room.history.bytes for room in chat.rooms.values())
    assert used == chat.history_budget.used
    assert bound - (LINE_OVERHEAD + sys.getsizeof(big)) < used <= bound
    assert [e.line.text for e in chat.history(chat.rooms["#lobby"], 10)] == [
        "a quiet room's only line"]
    # Every flooded room keeps about its share: the bound divided among 201 rooms.
    share = bound // 201 // (LINE_OVERHEAD + sys.getsizeof(big))
    assert {len(chat.rooms[f"#flood{n}"].history) for n in range(200)} <= {share, share + 1}


def test_forgotten_and_expired_rooms_give_their_bytes_back() -> None:
    clock = Clock()
    chat = ChatService(clock, history_size=100, max_rooms=0, room_rate=0,
                       history_memory=10 * COST, room_expiry=100)
    chat.startService()
    alice, _ = person(chat)
    make(chat, alice, "#gone")  # no topic: forgotten when alice leaves
    chat.say(alice, TEXT)
    assert chat.history_budget.used == COST
    make(chat, alice, "#kept", "topic")  # a topic: expires 100 s after alice leaves
    assert "#gone" not in chat.rooms
    assert chat.history_budget.used == 0
    chat.say(alice, TEXT)
    chat.say(alice, TEXT)
    chat.move(alice, "#lobby")
    assert chat.history_budget.used == 2 * COST
    clock.advance(101)
    assert "#kept" not in chat.rooms
    assert chat.history_budget.used == 0
    for _ in range(10):  # the whole bound is #lobby's again
        chat.say(alice, TEXT)
    assert len(chat.rooms["#lobby"].history) == 10


def test_a_reload_changes_the_bound_and_trims_at_once() -> None:
    from chatd.tap import Options

    chat = ChatService(Clock(), history_size=100, max_rooms=0, room_rate=0,
                       history_memory=0)
    chat.startService()
    flood(chat, 4, 10, TEXT)
    assert chat.history_budget.used == 40 * COST
    options = Options()
    options.parseOptions(["--state", "none", "--history-memory", str(20 * COST)])
    assert "history-memory" in chat.reloadable_options
    chat.reconfigure(options)
    assert chat.history_budget.used == 20 * COST
    assert [len(chat.rooms[f"#flood{n}"].history) for n in range(4)] == [5, 5, 5, 5]
    assert [e.line.text for e in chat.history(chat.rooms["#flood0"], 1)] == [TEXT]


class TrimRecordingStore(MemoryStore):
    def __init__(self) -> None:
        self.trims: list[tuple[str, int]] = []

    def trim_room(self, room: object, keep: int) -> None:
        self.trims.append((getattr(room, "name", ""), keep))


def test_what_the_bound_takes_the_store_forgets_too() -> None:
    store = TrimRecordingStore()
    chat = ChatService(Clock(), history_size=100, max_rooms=0, room_rate=0, store=store,
                       history_memory=3 * COST)
    alice, _ = person(chat)
    for _ in range(4):
        chat.say(alice, TEXT)
    assert store.trims == [("#lobby", 3)]


@pytest.mark.parametrize("bound_lines", [7, 0])
@pytest_twisted.inlineCallbacks
def test_a_restart_loads_back_no_more_than_the_bound(
    tmp_path: Path, bound_lines: int
) -> Any:
    """The file keeps what memory keeps; a file written with a larger bound (or none) is
    trimmed as it loads, and the file forgets what loading left out."""
    from twisted.internet import reactor

    path = str(tmp_path / "state.sqlite3")

    def run(bound: int, says: int) -> ChatService:
        store = SQLiteStore(path, reactor, 100, flush_interval=0)
        chat = ChatService(Clock(), history_size=100, max_rooms=0, room_rate=0, store=store,
                           history_memory=bound)
        chat.startService()
        if says:
            flood(chat, 2, says, TEXT)
        return chat

    def lines_in_file() -> int:
        with sqlite3.connect(path) as db:
            return int(db.execute("SELECT count(*) FROM history").fetchone()[0])

    first = run(bound_lines * COST, 10)
    assert isinstance(first.store, SQLiteStore)
    yield first.store.close()
    assert lines_in_file() == (bound_lines or 20)
    second = run(5 * COST, 0)
    assert second.history_budget.used == 5 * COST
    assert second.rooms["#flood1"].history.last(1)[0].line.text == TEXT
    assert isinstance(second.store, SQLiteStore)
    yield second.store.close()
    assert lines_in_file() == 5


def test_a_big_old_file_is_loaded_within_the_bound_newest_lines_of_every_room_first(
    tmp_path: Path,
) -> None:
    """A file written with no bound holds 20 times --history-memory: opening it never
    holds more than the bound in lines (tracemalloc counts the strings made), keeps the
    newest lines of every room alike, and the file forgets the rest."""
    import tracemalloc

    from twisted.internet import reactor

    path = str(tmp_path / "state.sqlite3")
    with sqlite3.connect(path) as db:  # the schema, as the store makes it
        SQLiteStore._migrate(db)
    with sqlite3.connect(path) as db:
        for r in range(4):
            db.execute("INSERT INTO rooms (key, name) VALUES (?, ?)", (f"#r{r}", f"#r{r}"))
        # Three quiet rooms, then #r0 flooded since: its 100 lines are the newest of all,
        # and must not crowd the others' newest lines out.
        db.executemany(
            "INSERT INTO history (room, at, kind, nick, text) VALUES (?, ?, 'say', 'a', ?)",
            [(f"#r{r}", float(n), f"{n:04d}" + TEXT) for r in (1, 2, 3, 0) for n in range(100)])
    cost = line_cost(Said("#r0", "a", "0000" + TEXT))
    bound = 20 * cost + cost // 2  # room for 20 lines: 5 a room
    store = SQLiteStore(path, reactor, 100, history_memory=bound)
    tracemalloc.start()
    try:
        rooms = store.open()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    try:
        assert peak < 2 * bound, (peak, bound)  # the whole file is 20 times the bound
        kept = {room.name: [e.line.text[:4] for e in room.history] for room in rooms}
        newest = ["0095", "0096", "0097", "0098", "0099"]  # oldest first, as rooms keep them
        assert kept == {f"#r{r}": newest for r in range(4)}
        assert sum(line_cost(e.line) for room in rooms for e in room.history) <= bound
    finally:
        store._pool.stop()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT room, count(*), min(at) FROM history GROUP BY room"
                          ).fetchall() == [(f"#r{r}", 5, 95.0) for r in range(4)]


def test_a_file_within_the_bound_is_loaded_whole(tmp_path: Path) -> None:
    from twisted.internet import reactor

    path = str(tmp_path / "state.sqlite3")
    with sqlite3.connect(path) as db:
        SQLiteStore._migrate(db)
        db.execute("INSERT INTO rooms (key, name) VALUES ('#r', '#r')")
        db.executemany("INSERT INTO history (room, at, kind, nick, text) "
                       "VALUES ('#r', ?, 'say', 'a', ?)", [(float(n), TEXT) for n in range(3)])
    store = SQLiteStore(path, reactor, 100, history_memory=3 * COST)
    try:
        assert [len(room.history) for room in store.open()] == [3]
    finally:
        store._pool.stop()


# --- The attack over loopback, against a real twistd ---------------------------------------


def rss_bytes(pid: int) -> int:
    for row in Path(f"/proc/{pid}/status").read_text().splitlines():
        if row.startswith("VmRSS:"):
            return int(row.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def fill_rooms(port: int, prefix: str, connections: int, rooms: int, lines: int,
               deadline: float) -> None:
    """``connections`` clients at once each make ``rooms`` rooms with a topic and fill each
    with ``lines`` lines of 4,000 bytes (--max-line is 4096), reading what comes back; then
    waits until the daemon has handled every line (the reply to a last /history)."""
    text = b"z" * 4000 + b"\n"
    selector = selectors.DefaultSelector()
    for c in range(connections):
        sock = connect(port)
        read_until(sock, b"commands.")
        script = b"".join(b"/join #%s%d_%d\n/topic mine\n" % (prefix.encode(), c, r)
                          + text * lines for r in range(rooms)) + b"/history 1\n"
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE,
                          [memoryview(script), b""])
    waiting = connections
    while waiting:
        assert time.monotonic() < deadline, "the daemon did not take the lines in time"
        for key, events in selector.select(timeout=1):
            sock, state = key.fileobj, key.data
            assert isinstance(sock, socket.socket)
            if events & selectors.EVENT_WRITE and state[0]:
                state[0] = state[0][sock.send(state[0][:65536]):]
                if not state[0]:
                    selector.modify(sock, selectors.EVENT_READ, state)
            if events & selectors.EVENT_READ:
                chunk = sock.recv(65536)
                assert chunk, "the daemon closed a filling connection"
                state[1] = (state[1] + chunk)[-64:]
                if b"*** End of history." in state[1]:
                    selector.unregister(sock)
                    sock.close()
                    waiting -= 1
    selector.close()


@pytest.mark.slow
def test_filling_many_rooms_over_loopback_keeps_rss_near_the_bound(
    twistd: Callable[..., Twistd],
) -> None:
    """100 rooms of 100 lines of 4,000 bytes from ten connections: 43 MB of history
    without the bound. With --history-memory 4 MiB the daemon grows by about that."""
    bound = 4 * 1024 * 1024
    daemon = twistd(
        "chatd", "--listen", "tcp:0:interface=127.0.0.1", "--no-echo", "--state", "none",
        "--flood-rate", "0", "--max-per-ip", "0", "--connect-rate", "0",
        "--room-rate", "0", "--max-rooms", "0", "--history-memory", str(bound),
    )
    port = daemon.port
    assert daemon.process is not None
    try:
        deadline = time.monotonic() + 60
        # Warm up with the bound's worth of lines, so what is measured is the attack.
        fill_rooms(port, "warm", 2, 5, 100, deadline)
        before = rss_bytes(daemon.process.pid)
        fill_rooms(port, "f", 10, 10, 100, deadline)
        grown = rss_bytes(daemon.process.pid) - before
        watcher = connect(port)
        read_until(watcher, b"commands.")
        watcher.sendall(b"/join #f0_0\n/history\n")
        reply = read_until(watcher, b"*** End of history.").decode()
        watcher.close()
    finally:
        daemon.stop()
    print(f"RSS grew by {grown / 2**20:.1f} MiB while 43 MB of history was written")
    assert grown < bound + 4 * 1024 * 1024
    # What a user sees: a flooded room keeps its newest lines, about its share of the
    # bound (4 MiB among 111 rooms: 8 lines of 4,000 bytes); the older ones are gone.
    kept = int(reply.split("(last ")[1].split(" lines")[0])
    assert 1 <= kept <= 10


@pytest.mark.slow
def test_sighup_lowers_the_bound_and_the_oldest_lines_go(
    tmp_path: Path, twistd: Callable[..., Twistd]
) -> None:
    from tests.test_reload_e2e import Daemon, config_text

    daemon = Daemon(tmp_path, twistd)

    def settings(bound: int) -> str:
        extra = f"history-memory = {bound}\nflood-rate = 0.0\n"
        return config_text(daemon.state, "chatd", 4096, extra=extra)

    cost = LINE_OVERHEAD + sys.getsizeof("n" * 3999 + "0")
    daemon.write(settings(0))
    daemon.start()
    try:
        alice = connect(daemon.port)
        read_until(alice, b"commands.")
        alice.sendall(b"".join(b"%s%d\n" % (b"n" * 3999, n) for n in range(10))
                      + b"/history\n")
        assert b"(last 10 lines)" in read_until(alice, b"*** End of history.")
        daemon.write(settings(4 * cost))
        daemon.hangup()
        daemon.wait_for_log(f"history-memory changed from 0 to {4 * cost}")
        alice.sendall(b"/history\n")
        reply = read_until(alice, b"*** End of history.")
        assert b"(last 4 lines)" in reply
        assert [row[-1:] for row in reply.split(b"\r\n") if b"<guest1>" in row] == [
            b"6", b"7", b"8", b"9"]
        alice.close()
    finally:
        daemon.stop()
    # The state file forgot them too: a restart brings back the same four.
    with sqlite3.connect(daemon.state) as db:
        assert db.execute("SELECT count(*) FROM history").fetchone() == (4,)
    assert "Traceback" not in daemon.log()

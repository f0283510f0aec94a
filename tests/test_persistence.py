"""History that survives: a restart under SIGTERM, a SIGKILL mid-chat, and the cost of writing."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, reactor

from chatd.store import SQLiteStore
from tests.support import (
    RunningDaemon,
    Twistd,
    connect,
    connect_client,
    local_args,
    read_until,
    run_twistd,
)
from tests.test_store import damage

Start = Callable[..., Twistd]


def chatd_on(twistd: Start, state: Path) -> Twistd:
    """``twistd -n chatd`` from this venv on one state file, no flood limit."""
    return twistd("chatd", "--no-echo", "--state", str(state), "--flood-rate", "0",
                  "--listen", "tcp:0:interface=127.0.0.1")


@pytest.mark.slow
def test_history_and_topic_survive_a_restart(tmp_path: Path, twistd: Start) -> None:
    state = tmp_path / "chat.sqlite3"
    first = chatd_on(twistd, state)
    alice = connect(first.port)
    read_until(alice, b"Type /help")
    alice.sendall(b"/nick alice\n/join #Dev\n/topic release friday\nbefore the restart\n"
                  b"/me waves\n/join #lobby\nlobby line\n")
    read_until(alice, b"You are now in #lobby")
    log = first.stop(signal.SIGTERM)
    assert "Traceback" not in log, log

    second = chatd_on(twistd, state)
    bob = connect(second.port)
    seen = read_until(bob, b"End of history.").decode()
    assert "<alice> lobby line" in seen
    bob.sendall(b"/join #dev\n")
    seen = read_until(bob, b"End of history.").decode()
    assert "*** Topic of #Dev: release friday (set by alice)" in seen
    lines = [line for line in seen.split("\r\n") if line.startswith("[")]
    assert [line.split("] ", 1)[1] for line in lines] == ["<alice> before the restart",
                                                          "* alice waves"]
    bob.sendall(b"/rooms\n")
    assert b"#Dev (1 user): release friday" in read_until(bob, b"#lobby (0 users)")
    bob.close()
    assert "Traceback" not in second.stop(signal.SIGTERM)


@pytest.mark.slow
def test_sigkill_leaves_a_clean_database_with_all_but_the_last_second(
    tmp_path: Path, twistd: Start
) -> None:
    state = tmp_path / "chat.sqlite3"
    daemon = chatd_on(twistd, state)
    sender, listener = connect(daemon.port), connect(daemon.port)
    read_until(sender, b"Type /help")
    read_until(listener, b"Type /help")
    sent_at: list[float] = []
    # Steady chat (each line confirmed, then a short pause) until more than 100 lines are
    # over a second old, however slowly a loaded machine gets there.
    deadline = time.monotonic() + 60
    while len(sent_at) <= 100 or sent_at[100] >= time.monotonic() - 1.0:
        assert time.monotonic() < deadline, f"only {len(sent_at)} lines in 60 s"
        sender.sendall(f"line {len(sent_at)}\n".encode())
        read_until(listener, f"line {len(sent_at)}\r\n".encode())
        sent_at.append(time.monotonic())
        time.sleep(0.005)
    killed_at = time.monotonic()
    daemon.stop(signal.SIGKILL)

    with sqlite3.connect(state) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        texts = [text for (text,) in db.execute("SELECT text FROM history ORDER BY id")]
    # What is on disk is the newest lines written (the default --history 100 trims the
    # rest), consecutive and in order, up to at least what was said a second before.
    numbers = [int(text.removeprefix("line ")) for text in texts]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
    assert len(numbers) == min(100, numbers[-1] + 1)
    said_a_second_before = sum(1 for t in sent_at if t < killed_at - 1.0)
    assert said_a_second_before > 100  # the chat was steady enough for the check to mean much
    assert numbers[-1] >= said_a_second_before - 1, (numbers[-1], len(sent_at))


FLUSH_EVERY = 5  # probes: every fifth line is on its way while the store starts a commit


@defer.inlineCallbacks
def broadcast_latencies(args: list[str], lines: int = 150) -> Any:
    """Seconds from sending a line until the last of ten listeners has it, line by line.
    With a state file, the store is made to flush while every ``FLUSH_EVERY``-th line is on
    its way (besides its own timer), so a flush that held up the reactor would show."""
    daemon = RunningDaemon(local_args(*args, "--history", "1000", "--flood-rate", "0",
                                      "--max-per-ip", "0"))
    store = daemon.chat.store
    try:
        sender = yield connect_client(daemon.chat_port)
        listeners = yield defer.gatherResults(
            [connect_client(daemon.chat_port) for _ in range(10)]
        )
        latencies = []
        for i in range(lines):
            started = time.perf_counter()
            sender.send(f"latency probe {i}\n".encode())
            if isinstance(store, SQLiteStore) and i % FLUSH_EVERY == 0:
                # Runs before the reactor next reads or writes a socket: this line waits
                # for whatever the flush does on the reactor. The batch holds the lines
                # since the last flush.
                reactor.callLater(0, store.flush)
            yield defer.gatherResults([c.wait_for(f"probe {i}$") for c in listeners])
            latencies.append(time.perf_counter() - started)
        for client in (sender, *listeners):
            client.transport.loseConnection()
        return latencies
    finally:
        yield daemon.stop()


@pytest_twisted.inlineCallbacks
def test_writing_history_does_not_stall_broadcasts(tmp_path: Path) -> Any:
    off = yield broadcast_latencies(["--state", "none"])
    on = yield broadcast_latencies(["--state", str(tmp_path / "latency.sqlite3")])
    during_flush = on[::FLUSH_EVERY]
    off_median, on_median = statistics.median(off), statistics.median(on)
    print(f"broadcast to 10: median {off_median * 1e3:.2f} ms without persistence, "
          f"{on_median * 1e3:.2f} ms with, {statistics.median(during_flush) * 1e3:.2f} ms "
          f"while a flush starts; worst {max(off) * 1e3:.1f} / {max(on) * 1e3:.1f} ms")
    # Loose on purpose (a shared 2-core machine), but a flush that held the reactor for
    # 0.2 s would delay every one of the 30 lines sent as it starts.
    assert on_median < off_median * 3 + 0.005
    assert statistics.median(during_flush) < 0.1
    assert sorted(on)[int(len(on) * 0.95)] < 0.25  # no line waits for a disk write
    with sqlite3.connect(tmp_path / "latency.sqlite3") as db:
        assert db.execute("SELECT count(*) FROM history").fetchone() == (150,)


# --- A state file that cannot be used stops start-up with one line -----------------------

NOBODY = 65534  # root may write anything, so these tests run twistd as nobody when root


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory anyone may read but only its owner write, outside pytest's private tmp."""
    place = Path(tempfile.mkdtemp(prefix="chatd-test-"))
    place.chmod(0o755)
    yield place
    shutil.rmtree(place)


def start_refused(state: Path, twistd_args: Sequence[str] = (), **popen_args: Any) -> str:
    """Runs ``twistd -n chatd --state STATE``, which must exit at once; returns its output."""
    finished = run_twistd(
        [*twistd_args, "chatd", "--no-echo", "--state", str(state),
         "--listen", "tcp:0:interface=127.0.0.1"],
        state.parent, **popen_args,
    )
    output = finished.stdout
    assert finished.returncode != 0, output
    assert "Traceback" not in output, output
    return output


def test_a_state_file_that_is_not_a_database_is_a_usage_error(tmp_path: Path) -> None:
    state = tmp_path / "chat.sqlite3"
    state.write_bytes(b"these are my notes, not a database\n")
    output = start_refused(state)
    assert f"--state '{state}': not a SQLite database" in output
    assert state.read_bytes() == b"these are my notes, not a database\n"


def test_a_state_file_damaged_past_its_header_stops_startup_plainly(tmp_path: Path) -> None:
    state = tmp_path / "chat.sqlite3"
    state.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    output = start_refused(state)
    assert (f"chatd: cannot use the state file {state}: it is damaged (file is not a database); "
            f"move it aside, with its -wal file if there is one (mv {state} {state}.damaged), "
            "to start with an empty one\n") in output
    state.unlink()
    damage(state)  # a sound header and schema, garbage in the history's pages
    output = start_refused(state)
    [line] = [line.split("chatd: ", 1)[1] for line in output.splitlines() if "chatd: " in line]
    assert line.startswith(f"cannot use the state file {state}: it is damaged (")
    assert line.endswith(f"(mv {state} {state}.damaged), to start with an empty one")


def test_an_unwritable_state_file_stops_startup_plainly(shared_dir: Path) -> None:
    state = shared_dir / "chat.sqlite3"
    sqlite3.connect(state).close()
    state.chmod(0o444)
    if os.geteuid() != 0:
        output = start_refused(state)
        assert f"--state '{state}': not readable and writable by this user" in output
        return
    # Root may write anything; with --uid, twistd opens the state file after it drops root,
    # past option parsing, and the store itself must say so plainly.
    output = start_refused(state, ["--uid", str(NOBODY), "--gid", str(NOBODY)])
    assert (f"chatd: cannot use the state file {state}: attempt to write a readonly database"
            in output)

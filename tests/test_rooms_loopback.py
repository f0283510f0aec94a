"""Issue 5's commands over real loopback sockets, as an nc user would type them."""

from __future__ import annotations

import re
import time
from collections.abc import Generator
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task

from tests.support import WAIT_SECONDS, RunningDaemon, connect_client, local_args
from tests.test_commands import ERROR_CASES


@pytest.fixture
def daemon(tmp_path: Any) -> Generator[RunningDaemon, None, None]:
    motd = tmp_path / "motd.txt"
    motd.write_text("Welcome to the test server.\n")
    running = RunningDaemon(local_args("--history", "4", "--replay", "2", "--motd", str(motd)))
    yield running
    pytest_twisted.blockon(running.stop())


@defer.inlineCallbacks
def alice_and_bob(daemon: RunningDaemon) -> Any:
    alice = yield connect_client(daemon.chat_port)
    alice.send(b"/nick alice\n")
    yield alice.wait_for("now known as alice")
    bob = yield connect_client(daemon.chat_port)
    bob.send(b"/nick bob\n")
    yield alice.wait_for("now known as bob")
    yield bob.wait_for("now known as bob")
    return alice, bob


@defer.inlineCallbacks
def command(client: Any, line: bytes, last: str) -> Any:
    """Sends ``line`` and returns the lines received after it, up to the first matching
    ``last`` (support's wait_for would also match an older line)."""
    start = len(client.lines)
    client.send(line)
    pattern = re.compile(last)
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        for index, received in enumerate(client.lines[start:], start):
            if pattern.search(received):
                return client.lines[start:index + 1]
        if time.monotonic() > deadline:
            raise AssertionError(f"no line matching {last!r} after {line!r}: {client.lines}")
        yield task.deferLater(reactor, 0.005, lambda: None)


@pytest_twisted.inlineCallbacks
def test_motd_rooms_topic_history_and_who(daemon: RunningDaemon) -> Any:
    alice, bob = yield alice_and_bob(daemon)
    assert "*** | Welcome to the test server." in alice.lines
    alice.send(b"/join #ops\n/topic on call\nfirst\nsecond\n/me third\n")
    yield bob.wait_for("alice has left #lobby")
    got = yield command(bob, b"/join #OPS\n", "End of history")
    assert got[:3] == ["*** You are now in #ops (2 users)",
                       "*** Topic of #ops: on call (set by alice)",
                       "*** History of #ops (last 2 lines):"]
    assert [re.sub(r"^\[[\d: -]+\] ", "", line) for line in got[3:5]] == [
        "<alice> second", "* alice third"]
    yield alice.wait_for("bob has joined #ops")
    got = yield command(bob, b"/history\n", "End of history")
    assert got[0] == "*** History of #ops (last 3 lines):"
    got = yield command(alice, b"/away brb\n/who\n", "Users in")
    assert got == ["*** You are marked as away: brb", "*** Users in #ops (2): alice (away), bob"]
    got = yield command(alice, b"/rooms\n", r"#ops \(")
    assert got == ["*** Rooms (2):", "***   #lobby (0 users)", "***   #ops (2 users): on call"]
    got = yield command(alice, b"/back\n/who #lobby\n", "No one is in")
    assert got == ["*** You are no longer marked as away", "*** No one is in #lobby"]
    got = yield command(alice, b"/topic\n", "Topic")
    assert got == ["*** Topic of #ops: on call (set by alice)"]
    bob.send(b"/topic quiet night\n")
    assert (yield alice.wait_for("quiet night")) == (
        "*** bob set the topic of #ops to: quiet night")


@pytest_twisted.inlineCallbacks
def test_private_messages_away_ignore_and_timestamps(daemon: RunningDaemon) -> Any:
    alice, bob = yield alice_and_bob(daemon)
    bob.send(b"/away lunch\n")
    yield bob.wait_for("marked as away")
    got = yield command(alice, b"/msg bob hello\n", "is away")
    assert got == ["-> *bob* hello", "*** bob is away: lunch"]
    assert (yield bob.wait_for(r"^\*alice\*")) == "*alice* hello"
    got = yield command(bob, b"/reply hi\n", r"^-> ")
    assert got == ["-> *alice* hi"]
    assert (yield alice.wait_for(r"^\*bob\*")) == "*bob* hi"
    got = yield command(bob, b"/ignore alice\n/ignore\n", "Ignoring")
    assert got == ["*** You are now ignoring alice", "*** Ignoring (1): alice"]
    # The /who reply means the server has handled the three lines before it.
    yield command(alice, b"ignored line\n/msg bob ignored pm\n/me ignored action\n/who\n",
                  "Users in")
    got = yield command(bob, b"/unignore alice\n", "no longer ignoring")
    assert got == ["*** You are no longer ignoring alice"]
    alice.send(b"heard line\n")
    yield bob.wait_for("heard line")
    assert not any("ignored" in line for line in bob.lines)
    got = yield command(bob, b"/timestamps on\n", "Timestamps")
    assert re.fullmatch(r"\[\d\d:\d\d\] \*\*\* Timestamps are on", got[0])
    alice.send(b"stamped\n")
    assert re.fullmatch(r"\[\d\d:\d\d\] <alice> stamped", (yield bob.wait_for("stamped")))
    got = yield command(bob, b"/timestamps off\n", "Timestamps")
    assert got == ["*** Timestamps are off"]


@pytest_twisted.inlineCallbacks
@pytest.mark.parametrize(("line", "error"), ERROR_CASES)
def test_errors_over_loopback(daemon: RunningDaemon, line: bytes, error: str) -> Any:
    alice, bob = yield alice_and_bob(daemon)
    before = len(bob.lines)
    got = yield command(alice, line, r"^\*\*\* Error")
    assert got == [got[0]] and got[0].startswith(f"*** Error: {error}"), got
    # Nothing reached bob: the next thing he hears is alice's next line.
    alice.send(b"after the error\n")
    yield bob.wait_for("after the error")
    assert bob.lines[before:] == ["<alice> after the error"]

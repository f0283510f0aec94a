"""Whatever a client sends, the IRC front-end answers with well-formed lines and never
fails: Hypothesis drives a registered connection with commands and hostile parameters."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import defer
from twisted.logger import LogEvent, globalLogPublisher
from twisted.python import log

from chatd.irc.message import MAX_LINE, parse
from tests.support import take_lines
from tests.test_irc_protocol import MemoryIRC, send

COMMANDS = ["JOIN", "PART", "PRIVMSG", "NOTICE", "TOPIC", "NAMES", "LIST", "WHO", "WHOIS",
            "MODE", "KICK", "AWAY", "NICK", "USER", "PASS", "CAP", "PING", "PONG", "OPER",
            "HISTORY", "HELP", "ROOMS", "BAN", "FROB", "001", "USERHOST", "ISON"]
WORDS = ["#lobby", "#dev", "#", "bob", "alice", "chatd", ":", "::x", ",", "#a,#b", "0", "*", "$*",
         "\x01ACTION x\x01", "\x01VERSION\x01", "\x02\x0304,5", "+i", "b", "-x", "LS", "302",
         "REQ", "END", "é" * 30, "a b", "#" + "x" * 40, "\x00", "\u202e", "\x1b[2J"]
params = st.lists(st.sampled_from(WORDS) | st.text(max_size=12), max_size=5)


def line(command: str, words: list[str], trailing: bool) -> str:
    middles = [w.replace(" ", "").lstrip(":") or "x" for w in words[:-1]]
    last = [f":{words[-1]}" if trailing else (words[-1].replace(" ", "") or "y")] if words else []
    return " ".join([command, *middles, *last]).replace("\r", "").replace("\n", "")


lines = st.lists(st.builds(line, st.sampled_from(COMMANDS), params, st.booleans()),
                 min_size=1, max_size=12)


@pytest.fixture(scope="module", autouse=True)
def settled_heap() -> Iterator[None]:
    """The garbage of every earlier test collected now, and the survivors frozen out of later
    collections (so that collecting this module's garbage stays cheap). A failed Deferred
    that nobody handled logs "Unhandled error in Deferred" when it is collected, which for
    one caught in a reference cycle is whenever the collector next runs: before this, that
    could be inside ``logged_failures`` of any example here, and fail it for another test's
    failure (more likely under load, where earlier tests take other paths and allocate
    differently; the example then passed on its replay)."""
    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()


@contextmanager
def logged_failures() -> Iterator[list[LogEvent]]:
    """Every error this thread logs meanwhile (a handler's exception is logged, not raised),
    and only those: garbage from before is collected before watching starts, the garbage
    made meanwhile before it ends, and other threads' logs are theirs."""
    seen: list[LogEvent] = []
    me = threading.get_ident()

    def observe(event: LogEvent) -> None:
        failed = event.get("log_failure") is not None or event.get("isError")
        if failed and threading.get_ident() == me:
            seen.append(event)

    gc.collect()
    globalLogPublisher.addObserver(observe)
    try:
        yield seen
        gc.collect()
    finally:
        globalLogPublisher.removeObserver(observe)


@settings(max_examples=80, deadline=None)
@given(lines)
def test_any_commands_get_well_formed_answers_and_nothing_fails(sent: list[str]) -> None:
    chat = MemoryIRC()
    bob, bob_t = chat.line_user("bob")
    alice, alice_t = chat.irc_user("alice")
    with logged_failures() as failures:
        send(alice, *sent)
        send(bob, "hello after it all")
    for transport in (alice_t, bob_t):
        data = transport.value()
        assert data == b"" or data.endswith(b"\r\n")
        for raw in data.split(b"\r\n")[:-1]:
            assert len(raw) + 2 <= MAX_LINE or raw.startswith(b"@")
            if transport is alice_t:
                assert parse(raw) is not None, raw
    assert not failures, [e.get("log_failure") for e in failures]


def test_a_hostile_parameter_in_a_reply_becomes_a_star() -> None:
    chat = MemoryIRC()
    alice, alice_t = chat.irc_user("alice")
    with logged_failures() as failures:
        send(alice, "NICK ::x", "NICK :a b", "JOIN :a b,:c", "WHOIS :no body")
    assert not failures
    replies = [line.split(" ")[1:4] for line in take_lines(alice_t)]
    assert replies[0] == ["432", "alice", "*"]
    assert replies[1] == ["432", "alice", "*"]
    assert replies[2] == ["403", "alice", "*"]


def _drop_a_failed_deferred_in_a_cycle() -> None:
    """Leaves garbage that logs "Unhandled error in Deferred" only when the cyclic garbage
    collector runs (as an earlier test's leftovers may)."""
    d: defer.Deferred[None] = defer.Deferred()
    d.addErrback(lambda f: f)
    d.errback(ValueError("someone else's failure"))
    d.cycle = d  # type: ignore[attr-defined]


def test_the_watch_sees_its_own_failures_and_no_one_elses() -> None:
    _drop_a_failed_deferred_in_a_cycle()  # before watching: never seen
    with logged_failures() as failures:
        other = threading.Thread(target=lambda: log.err(ValueError("another thread's")))
        other.start()
        other.join(10)
    assert failures == []
    with logged_failures() as failures:
        _drop_a_failed_deferred_in_a_cycle()  # made while watching: seen, however late
        log.err(ValueError("ours"))
    logged = [f.value for e in failures if (f := e.get("log_failure") or e.get("failure"))]
    assert sorted(map(str, logged)) == ["ours", "someone else's failure"]

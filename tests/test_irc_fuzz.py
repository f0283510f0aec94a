"""Whatever a client sends, the IRC front-end answers with well-formed lines and never
fails: Hypothesis drives a registered connection with commands and hostile parameters."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.logger import LogEvent, globalLogPublisher

from chatd.irc.message import MAX_LINE, parse
from tests.support import take_lines
from tests.test_irc_protocol import MemoryIRC, send

COMMANDS = ["JOIN", "PART", "PRIVMSG", "NOTICE", "TOPIC", "NAMES", "LIST", "WHO", "WHOIS",
            "MODE", "KICK", "AWAY", "NICK", "USER", "PASS", "CAP", "PING", "PONG", "OPER",
            "HISTORY", "HELP", "ROOMS", "BAN", "FROB", "001", "USERHOST", "ISON"]
WORDS = ["#lobby", "#dev", "#", "bob", "alice", "chatd", ":", "::x", ",", "#a,#b", "0", "*",
         "\x01ACTION x\x01", "\x01VERSION\x01", "\x02\x0304,5", "+i", "b", "-x", "LS", "302",
         "REQ", "END", "é" * 30, "a b", "#" + "x" * 40, "\x00", "\u202e", "\x1b[2J"]
params = st.lists(st.sampled_from(WORDS) | st.text(max_size=12), max_size=5)


def line(command: str, words: list[str], trailing: bool) -> str:
    middles = [w.replace(" ", "").lstrip(":") or "x" for w in words[:-1]]
    last = [f":{words[-1]}" if trailing else (words[-1].replace(" ", "") or "y")] if words else []
    return " ".join([command, *middles, *last]).replace("\r", "").replace("\n", "")


lines = st.lists(st.builds(line, st.sampled_from(COMMANDS), params, st.booleans()),
                 min_size=1, max_size=12)


@contextmanager
def logged_failures() -> Iterator[list[LogEvent]]:
    """Every error logged meanwhile (a handler's exception is logged, not raised)."""
    seen: list[LogEvent] = []

    def observe(event: LogEvent) -> None:
        if event.get("log_failure") is not None or event.get("isError"):
            seen.append(event)

    globalLogPublisher.addObserver(observe)
    try:
        yield seen
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

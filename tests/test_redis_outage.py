"""What a cluster keeps of a Redis outage, and who it knows outside any room: real
redis-server, real twistd processes.

- Lines said on one process while it was cut off from Redis (its Redis user switched off,
  so the others stay) join the cluster's history when it is back: once, in order, after
  what was said meanwhile, for the other processes' users and for anyone who joins later;
  a topic set on both sides while apart: the later one wins.
- An IRC user registered on one process and in no room is known to the others: their nick
  is refused there, WHOIS and /msg reach them, and a SIGKILL of their process frees it.
"""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import pytest

from tests import redis_support
from tests.redis_support import (
    ChatdProcess,
    Chatter,
    IrcChatter,
    RedisServer,
    command,
    start_chatd,
)

chatd_processes = redis_support.chatd_processes
redis_server = redis_support.redis_server
pytestmark = pytest.mark.slow

FREED_WITHIN = 15.0  # seconds: the bound for a killed process's users and nicks
APART = ["<alice> apart one", "* alice apart two", "<alice> apart three"]


def cut_off(server: RedisServer, user: str, daemon: ChatdProcess, times: int) -> None:
    """Cuts ``daemon``, which logs in to Redis as ``user``, off from it: the others stay."""
    server_command(server, "ACL", "SETUSER", user, "off")
    server_command(server, "CLIENT", "KILL", "USER", user)
    deadline = time.monotonic() + 10
    while daemon.output().count("is unreachable") < times:
        assert time.monotonic() < deadline, daemon.output()
        time.sleep(0.02)


def let_back(server: RedisServer, user: str, daemon: ChatdProcess, times: int) -> None:
    server_command(server, "ACL", "SETUSER", user, "on")
    deadline = time.monotonic() + 20
    while daemon.output().count("Rejoined the cluster") < times:
        assert time.monotonic() < deadline, daemon.output()
        time.sleep(0.02)


def server_command(server: RedisServer, *words: str) -> None:
    reply = command(server.port, *words)
    assert reply.startswith((b"+OK", b":")), reply


def said(lines: list[str]) -> list[str]:
    """Chat lines without their time stamp."""
    return [re.sub(r"^\S+ \S+ (?=[<*])", "", line) for line in lines]


def test_lines_said_while_cut_off_join_the_history_once_in_order(
        chatd_processes: list[ChatdProcess], redis_server: RedisServer,
        tmp_path: Path) -> None:
    server_command(redis_server, "ACL", "SETUSER", "chatd-a", "on", ">secret", "~*", "&*",
                   "+@all")
    a = start_chatd(chatd_processes, redis_server, tmp_path, "a",
                    url=f"redis://chatd-a:secret@127.0.0.1:{redis_server.port}/0")
    b = start_chatd(chatd_processes, redis_server, tmp_path, "b")
    alice, amy = Chatter(a.port).rename("alice"), Chatter(a.port).rename("amy")
    bob = Chatter(b.port).rename("bob")
    bob.who_until(lambda reply: "alice" in reply and "amy" in reply)
    alice.say("before")
    bob.expect(r"^<alice> before$")
    cut_off(redis_server, "chatd-a", a, 1)
    bob.who_until(lambda reply: "alice" not in reply, seconds=FREED_WITHIN)
    alice.say("apart one")
    alice.say("/me apart two")
    alice.say("apart three")
    amy.expect(r"^<alice> apart three$")
    bob.say("meanwhile on b")
    # A topic set on both sides while apart: bob's first, alice's later, which wins.
    bob.say("/topic from b")
    bob.expect(r"bob set the topic of #lobby to: from b")
    time.sleep(0.05)
    alice.say("/topic from a")
    amy.expect(r"alice set the topic of #lobby to: from a")
    let_back(redis_server, "chatd-a", a, 1)
    # Not as live chat: one notice to the room, and the lines in the history, after what
    # was said in the cluster meanwhile.
    bob.expect(r"^\*\*\* 3 lines said in #lobby on a while it was cut off from the "
               r"cluster are now in the history$")
    bob.expect(r"alice set the topic of #lobby to: from a")
    assert not [line for line in bob.lines if re.match(r"^(<alice>|\* alice) apart", line)]
    expected = ["<alice> before", "<bob> meanwhile on b", *APART]
    assert said(bob.history()) == expected
    assert said(alice.history()) == expected
    # Someone arriving later, on the other process, is shown them too.
    carol = Chatter(b.port)
    carol.expect(r"<alice> apart three$")
    carol.say("/topic")
    carol.expect(r"^\*\*\* Topic of #lobby: from a \(set by alice\)$")
    # Cut off again, with nothing new said: nothing is appended twice.
    cut_off(redis_server, "chatd-a", a, 2)
    let_back(redis_server, "chatd-a", a, 2)
    bob.who_until(lambda reply: "alice" in reply)
    assert said(Chatter(b.port).history()) == expected
    assert said(Chatter(a.port).history()) == expected
    assert "Traceback" not in a.output() + b.output()


def test_an_irc_user_in_no_room_is_known_to_every_process(
        chatd_processes: list[ChatdProcess], redis_server: RedisServer,
        tmp_path: Path) -> None:
    redis = redis_server
    irc = ("--irc", "tcp:0:interface=127.0.0.1")
    a = start_chatd(chatd_processes, redis, tmp_path, "a", *irc)
    b = start_chatd(chatd_processes, redis, tmp_path, "b", *irc)
    ivy = IrcChatter(a.port_of("IRCFactory"), "ivy")  # registered; joins nothing
    # b hears of ivy: WHOIS from an IRC client on b, asked until it knows (asking takes
    # nothing). Not by trying the nick on b until refused: a try before b has heard of ivy
    # succeeds, and while it holds, ivy's own claim (late under load) loses to it by the
    # rule for a nick two processes gave out at once (chatd/cluster/member.py): ivy would
    # become a guest.
    ian = IrcChatter(b.port_of("IRCFactory"), "ian")
    deadline = time.monotonic() + 10
    while True:
        ian.say("WHOIS ivy")
        reply = ian.expect(r" 311 ian ivy ivy | 401 ian ivy ")
        ian.expect(r" 318 ian ivy :End of /WHOIS list\.")
        if " 311 " in reply:
            break
        assert time.monotonic() < deadline, ian.lines
        time.sleep(0.05)
    # On b: the nick is refused, the first time, and so is one that looks like it.
    bob = Chatter(b.port)
    bob.say("/nick Ivy")
    bob.expect(r'nickname "Ivy" is already taken')
    bob.say("/nick lvy")
    bob.expect(r'"lvy" looks too much like "ivy"')
    # /msg both ways.
    ian.say("PRIVMSG ivy :are you there")
    ivy.expect(r"^:ian!\S* PRIVMSG ivy :are you there$")
    bob.say("/msg ivy hello from b")
    ivy.expect(r"PRIVMSG ivy :hello from b$")
    ivy.say("PRIVMSG ian :here")
    ian.expect(r"^:ivy!\S* PRIVMSG ian :here$")
    # Their process dies: the nick is free on b within the bound.
    a.stop(signal.SIGKILL)
    killed = time.monotonic()
    while True:
        bob.say("/nick ivy")
        reply = bob.expect(r'nickname "ivy" is already taken|is now known as ivy$')
        if "known as" in reply:
            break
        assert time.monotonic() - killed < FREED_WITHIN, bob.lines
        time.sleep(0.5)
    ian.say(f"WHOIS {bob.nick}")  # bob was renamed: the old nick is unknown now
    ian.expect(rf" 401 ian {bob.nick} ")
    assert "Traceback" not in b.output()


def test_a_user_who_leaves_during_a_short_outage_is_gone_everywhere_after_it(
        chatd_processes: list[ChatdProcess], redis_server: RedisServer,
        tmp_path: Path) -> None:
    """Cut off for less than the heartbeat's bound (so not reaped): the process's users
    who left meanwhile leave the cluster when it is back, and their nicks are free."""
    server_command(redis_server, "ACL", "SETUSER", "chatd-a", "on", ">secret", "~*", "&*",
                   "+@all")
    a = start_chatd(chatd_processes, redis_server, tmp_path, "a",
                    url=f"redis://chatd-a:secret@127.0.0.1:{redis_server.port}/0")
    b = start_chatd(chatd_processes, redis_server, tmp_path, "b")
    alice = Chatter(a.port).rename("alice")
    bob = Chatter(b.port).rename("bob")
    bob.who_until(lambda reply: "alice" in reply)
    cut_off(redis_server, "chatd-a", a, 1)
    alice.say("/quit")
    alice.expect(r"Goodbye")
    let_back(redis_server, "chatd-a", a, 1)
    assert "given this process up" not in a.output()  # not reaped: a short outage
    bob.who_until(lambda reply: "alice" not in reply, seconds=5)
    Chatter(a.port).who_until(lambda reply: "alice" not in reply, seconds=5)
    bob.say("/nick alice")
    bob.expect(r"is now known as alice$")

"""Several real chatd processes (twistd subprocesses) on one real redis-server.

What issue 15 asks of a cluster, end to end: chat, nick collisions and private messages
across processes; history and topic seen from a process started later; the users of a
SIGKILLed process gone from /who within 15 s; and a process that keeps serving its own
users while Redis is stopped, and rejoins when it is back.
"""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import pytest

from tests import redis_support
from tests.redis_support import ChatdProcess, Chatter, RedisServer
from tests.redis_support import start_chatd as start

redis_server = redis_support.redis_server
chatd_processes = redis_support.chatd_processes
pytestmark = pytest.mark.slow

REAPED_WITHIN = 15.0  # seconds: the bound for a killed process's users


def test_chat_nicks_messages_history_and_topics_across(
        chatd_processes: list[ChatdProcess], redis_server: RedisServer, tmp_path: Path) -> None:
    a, b = (start(chatd_processes, redis_server, tmp_path, name) for name in ("a", "b"))
    alice = Chatter(a.port).rename("alice")
    bob = Chatter(b.port).rename("bob")
    alice.expect(r"bob has joined #lobby|guest\d+ is now known as bob")
    alice.say("hello from a")
    bob.expect(r"^<alice> hello from a$")
    bob.say("/me waves")
    alice.expect(r"^\* bob waves$")
    # One namespace: bob's process refuses alice's nick and its look-alike.
    bob.say("/nick Alice")
    bob.expect(r'nickname "Alice" is already taken')
    bob.say("/nick a1ice")
    bob.expect(r'"a1ice" looks too much like "alice"')
    # Private messages and replies cross too.
    alice.say("/msg bob psst")
    bob.expect(r"^\*alice\* psst$")
    bob.say("/reply hi back")
    alice.expect(r"^\*bob\* hi back$")
    bob.say("/topic cluster plans")
    alice.expect(r"bob set the topic of #lobby to: cluster plans")
    # A process started now takes in the history and the topic from Redis.
    c = start(chatd_processes, redis_server, tmp_path, "c")
    carol = Chatter(c.port)
    carol.expect(r"Topic of #lobby: cluster plans|topic.*cluster plans")
    carol.expect(r"<alice> hello from a")
    carol.who_until(lambda reply: "alice" in reply and "bob" in reply)


def test_a_killed_process_users_leave_within_15_seconds(
        chatd_processes: list[ChatdProcess], redis_server: RedisServer, tmp_path: Path) -> None:
    a, b = (start(chatd_processes, redis_server, tmp_path, name) for name in ("a", "b"))
    doomed = Chatter(a.port).rename("doomed")  # kept open: only the SIGKILL ends it
    bob = Chatter(b.port).rename("bob")
    bob.who_until(lambda reply: "doomed" in reply)
    a.stop(signal.SIGKILL)
    killed = time.monotonic()
    bob.expect(r"doomed has left #lobby \(their chatd process stopped answering\)",
               seconds=REAPED_WITHIN)
    assert time.monotonic() - killed < REAPED_WITHIN
    reply = bob.who_until(lambda reply: "doomed" not in reply, seconds=1)
    assert re.search(r"\(1\): bob$", reply), reply
    bob.rename("doomed")  # the nick is free again
    doomed.close()


def test_redis_stopped_each_process_serves_its_own_then_rejoins(
        chatd_processes: list[ChatdProcess], redis_server: RedisServer, tmp_path: Path) -> None:
    a, b = (start(chatd_processes, redis_server, tmp_path, name) for name in ("a", "b"))
    alice, amy = Chatter(a.port).rename("alice"), Chatter(a.port).rename("amy")
    bob = Chatter(b.port).rename("bob")
    bob.who_until(lambda reply: "alice" in reply and "amy" in reply)
    redis_server.stop()
    a.wait_for_log("is unreachable")
    alice.say("still here")
    amy.expect(r"^<alice> still here$")
    amy.say("/topic set while apart")
    alice.expect(r"amy set the topic of #lobby to: set while apart")
    time.sleep(1.0)  # several reconnection attempts: said once, and no traceback
    for daemon in (a, b):
        log = daemon.output()
        assert log.count("is unreachable") == 1, log
        assert "Traceback" not in log, log
    redis_server.start()
    a.wait_for_log("rejoining the cluster", seconds=15)
    bob.who_until(lambda reply: "alice" in reply and "amy" in reply)
    # The newer topic, set while apart, is the cluster's now (bob sees it change, or finds
    # it in the snapshot if his process rejoined after it was put back).
    deadline = time.monotonic() + 10
    while True:
        bob.say("/topic")
        if "set while apart" in bob.expect(r"[Tt]opic"):
            break
        assert time.monotonic() < deadline, bob.lines
        time.sleep(0.3)
    alice.say("back together")
    bob.expect(r"^<alice> back together$")
    assert "Traceback" not in a.output() + b.output()

"""Moderation across a cluster: real chatd processes (twistd subprocesses) on one real
redis-server. An operator on one process kicks, bans, mutes and unbans a user connected to
another, and every process (one started later too) holds the rule.

The operator connects from 127.0.0.1 and the user moderated from 127.0.0.2, so that a ban
of the user's address never touches the operator.
"""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import pytest

from chatd.passwd import hash_password
from tests import redis_support
from tests.irssi import Irssi
from tests.redis_support import ChatdProcess, Chatter, RedisServer, command
from tests.test_redis_outage import cut_off, let_back

redis_server = redis_support.redis_server
chatd_processes = redis_support.chatd_processes
pytestmark = pytest.mark.slow

PASSWORD = "opsecret"
CHEAP_HASH = hash_password(PASSWORD, n=2**4)
USER = "127.0.0.2"  # where the moderated users connect from


def start(started: list[ChatdProcess], server: RedisServer, tmp_path: Path,
          name: str, url: str = "", extra: str = "") -> ChatdProcess:
    directory = tmp_path / name
    directory.mkdir()
    config = directory / "chatd.toml"
    config.write_text(f"""
listen = ["tcp:0:interface=127.0.0.1"]
no-echo = true
server-name = "{name}"
redis = "{url or server.url}"
kick-rejoin-delay = 60.0
{extra}
[operators]
root = "{CHEAP_HASH}"
""")
    daemon = ChatdProcess(["--config", str(config)], directory)
    started.append(daemon)
    daemon.wait_for_log("Joined the cluster", seconds=20)
    return daemon


def op_on_a_and_bob_on_b(started: list[ChatdProcess], server: RedisServer, tmp_path: Path
                         ) -> tuple[ChatdProcess, ChatdProcess, Chatter, Chatter]:
    """Processes a and b; operator opal on a sees bob (from USER) on b."""
    a, b = (start(started, server, tmp_path, name) for name in ("a", "b"))
    op = operator(a.port)
    bob = Chatter(b.port, source=USER).rename("bob")
    op.who_until(lambda reply: "bob" in reply)
    return a, b, op, bob


def operator(port: int, nick: str = "opal") -> Chatter:
    op = Chatter(port).rename(nick)
    op.say(f"/oper root {PASSWORD}")
    op.expect(r"You are now an operator \(root\)")
    return op


def closed(chatter: Chatter, seconds: float = 10.0) -> None:
    """Waits until the server closes ``chatter``'s connection."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        chatter.sock.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            if not chatter.sock.recv(65536):
                return
        except (TimeoutError, ConnectionResetError):
            continue
    raise AssertionError(f"still connected after {seconds:g} s: {chatter.lines}")


def first_line(port: int, source: str = USER) -> str:
    """What a new connection from ``source`` is told first."""
    with socket.create_connection(("127.0.0.1", port), timeout=10,
                                  source_address=(source, 0)) as sock:
        data = b""
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    return data.split(b"\r\n")[0].decode("utf-8", "replace")


def eventually(check: object, what: str, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not callable(check) or not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {seconds:g} s")
        time.sleep(0.1)


def test_a_kick_on_one_process_removes_a_user_of_another(
        chatd_processes: list[ChatdProcess], redis_server: RedisServer, tmp_path: Path) -> None:
    a, b, op, bob = op_on_a_and_bob_on_b(chatd_processes, redis_server, tmp_path)
    carol = Chatter(b.port).rename("carol")
    op.who_until(lambda reply: "carol" in reply)
    op.say("/kick bob spamming")
    bob.expect(r"^\*\*\* You have been kicked by opal: spamming$")
    closed(bob)
    carol.expect(r"^\*\*\* bob has left #lobby \(kicked by opal: spamming\)$")
    op.expect(r"^\*\*\* bob has left #lobby \(kicked by opal: spamming\)$")
    op.who_until(lambda reply: "bob" not in reply)
    # Within the delay, the nick may not come back from that address, on either process.
    for daemon in (a, b):
        again = Chatter(daemon.port, source=USER)
        deadline = time.monotonic() + 10
        while True:  # "taken" until bob's Disconnected, from b, has reached a (under load)
            again.say("/nick bob")
            if "kicked" in again.expect(r"you were kicked from this server; you may reconnect "
                                        r"in \d+ s|nickname \"bob\" is already taken"):
                break
            assert time.monotonic() < deadline, again.lines
            time.sleep(0.1)
        closed(again)
    assert a.output().count("operator root kicked") == 1
    assert "operator root kicked" not in b.output()


def test_a_ban_on_one_process_cuts_off_and_refuses_everywhere_until_unbanned(
        chatd_processes: list[ChatdProcess], redis_server: RedisServer, tmp_path: Path) -> None:
    a, b, op, bob = op_on_a_and_bob_on_b(chatd_processes, redis_server, tmp_path)
    op.say("/ban bob 1h spam")
    op.expect(r"^\*\*\* Banned 127\.0\.0\.2/32 \(until ")
    bob.expect(r"^\*\*\* You have been banned by opal for 1h: spam$")
    closed(bob)
    for daemon in (a, b):
        assert first_line(daemon.port).startswith(
            "*** Error: you are banned from this server: spam (until ")
    # The cluster's bans, from the other process.
    other = operator(b.port, "otto")
    other.say("/bans")
    other.expect(r"^\*\*\* 127\.0\.0\.2/32 by root on .*: spam \(until ")
    other.say("/unban 127.0.0.2")
    other.expect(r"^\*\*\* Unbanned 127\.0\.0\.2/32\.$")
    eventually(lambda: first_line(a.port).startswith("*** Welcome"), "unbanned on a")
    assert first_line(b.port).startswith("*** Welcome")


def test_a_mute_on_one_process_silences_a_user_of_another(
        chatd_processes: list[ChatdProcess], redis_server: RedisServer, tmp_path: Path) -> None:
    _, b, op, bob = op_on_a_and_bob_on_b(chatd_processes, redis_server, tmp_path)
    carol = Chatter(b.port).rename("carol")
    op.who_until(lambda reply: "carol" in reply)
    op.say("/mute bob 10m")
    carol.expect(r"^\*\*\* bob has been muted by opal for 10m$")
    bob.say("can anyone hear me")
    bob.expect(r"^\*\*\* Error: you are muted for \S+ more; your line was not sent$")
    op.say("/unmute bob")
    bob.expect(r"^\*\*\* bob is no longer muted$")
    bob.say("free again")
    op.expect(r"^<bob> free again$")
    carol.expect(r"^<bob> free again$")
    assert not any("can anyone hear me" in line for line in op.lines + carol.lines)


def test_a_process_started_later_enforces_the_bans_mutes_and_kicks_in_force(
        chatd_processes: list[ChatdProcess], redis_server: RedisServer, tmp_path: Path) -> None:
    a = start(chatd_processes, redis_server, tmp_path, "a")
    op = operator(a.port)
    op.say("/ban 127.0.0.2 raid")
    op.expect(r"^\*\*\* Banned 127\.0\.0\.2/32 \(permanent\)\.$")
    op.say("/mute carla")
    op.expect(r"Error: no one called \"carla\" is here")
    carla = Chatter(a.port).rename("carla")
    op.say("/mute carla")
    carla.expect(r"carla has been muted by opal")
    carla.close()
    dave = Chatter(a.port, source="127.0.0.3").rename("dave")
    op.say("/kick dave")
    closed(dave)
    c = start(chatd_processes, redis_server, tmp_path, "c")
    assert first_line(c.port).startswith("*** Error: you are banned from this server: raid")
    # The kick is in the cluster's copy: dave is gone, and kept out for the delay.
    late_dave = Chatter(c.port, source="127.0.0.3")
    late_dave.who_until(lambda reply: "opal" in reply and "dave" not in reply, seconds=1)
    late_dave.say("/nick dave")
    late_dave.expect(r"Error: you were kicked from this server")
    late = operator(c.port, "otto")
    late.say("/mutes")
    late.expect(r"^\*\*\* carla by root on .* \(permanent\)$")
    carla = Chatter(c.port).rename("carla")
    carla.say("hello")
    carla.expect(r"Error: you are muted; your line was not sent")


def test_rules_set_while_redis_was_away_reach_the_cluster_when_it_is_back(
        chatd_processes: list[ChatdProcess], redis_server: RedisServer, tmp_path: Path) -> None:
    a, b = (start(chatd_processes, redis_server, tmp_path, name) for name in ("a", "b"))
    op = operator(a.port)
    redis_server.stop()
    a.wait_for_log("is unreachable")
    op.say("/ban 127.0.0.2 set while apart")
    op.expect(r"^\*\*\* Banned 127\.0\.0\.2/32 \(permanent\)\.$")
    assert first_line(a.port).startswith("*** Error: you are banned")
    assert first_line(b.port).startswith("*** Welcome")  # b could not know yet
    redis_server.start()
    b.wait_for_log("rejoining the cluster", seconds=15)
    eventually(lambda: first_line(b.port).startswith("*** Error: you are banned"),
               "b refuses the ban set on a while Redis was away", seconds=15)


def test_a_forced_rename_on_one_process_renames_a_user_of_another(
        chatd_processes: list[ChatdProcess], redis_server: RedisServer, tmp_path: Path) -> None:
    a, _, op, bob = op_on_a_and_bob_on_b(chatd_processes, redis_server, tmp_path)
    op.say("/rename bob robert")
    op.expect(r"^\*\*\* bob is now known as robert$")
    bob.expect(r"^\*\*\* bob is now known as robert$")
    bob.expect(r"^\*\*\* opal has renamed you to robert$")
    bob.say("still me")
    op.expect(r"^<robert> still me$")
    # The new nick is claimed in the cluster (by robert's process), and the old one is free.
    taker = Chatter(a.port)
    taker.say("/nick robert")
    taker.expect(r'nickname "robert" is already taken')
    eventually(lambda: b'"n":"robert"' in redis_get(redis_server, "chatd:nicks", "robert")
               and redis_get(redis_server, "chatd:nicks", "bob") == b"$-1",
               "robert claimed and bob released in Redis")
    taker.rename("bob")


def redis_get(server: RedisServer, key: str, field: str) -> bytes:
    """HGET KEY FIELD's raw reply (``$-1`` when there is none)."""
    words = ["HGET", key, field]
    request = f"*{len(words)}\r\n" + "".join(f"${len(w)}\r\n{w}\r\n" for w in words)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(request.encode())
        reply = b""
        while reply.count(b"\r\n") < (1 if reply.startswith(b"$-1") else 2):
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
    return reply.split(b"\r\n")[1] if not reply.startswith(b"$-1") else b"$-1"


def apart(server: RedisServer, tmp_path: Path, started: list[ChatdProcess]
          ) -> tuple[ChatdProcess, ChatdProcess]:
    """Processes a, which can be cut off alone (it logs in as the Redis user chatd-a), and b."""
    command(server.port, "ACL", "SETUSER", "chatd-a", "on", ">secret", "~*", "&*", "+@all")
    a = start(started, server, tmp_path, "a",
              url=f"redis://chatd-a:secret@127.0.0.1:{server.port}/0")
    return a, start(started, server, tmp_path, "b")


def test_a_ban_lifted_while_a_process_was_cut_off_is_not_put_back_by_it(
        chatd_processes: list[ChatdProcess], redis_server: RedisServer, tmp_path: Path) -> None:
    a, b = apart(redis_server, tmp_path, chatd_processes)
    opal, otto = operator(a.port), operator(b.port, "otto")
    opal.say("/ban 192.0.2.0/24 raid")
    opal.expect(r"Banned 192\.0\.2\.0/24")
    deadline = time.monotonic() + 10
    while True:  # b takes the ban in
        otto.say("/bans")
        if "by root" in otto.expect(r"^\*\*\* (No bans|192\.0\.2\.0/24 by root)"):
            break
        assert time.monotonic() < deadline, otto.lines
        time.sleep(0.1)
    cut_off(redis_server, "chatd-a", a, 1)
    otto.say("/unban 192.0.2.0/24")
    otto.expect(r"^\*\*\* Unbanned 192\.0\.2\.0/24\.$")
    let_back(redis_server, "chatd-a", a, 1)
    opal.say("back")  # published after whatever a put to the cluster on rejoining
    otto.expect(r"^<opal> back$")
    otto.say("/bans")
    otto.expect(r"^\*\*\* No bans are in force\.$")
    assert redis_get(redis_server, "chatd:bans", "192.0.2.0/24") == b"$-1"


def test_a_ban_by_nick_made_while_cut_off_spares_the_others_at_the_address_everywhere(
        chatd_processes: list[ChatdProcess], redis_server: RedisServer, tmp_path: Path) -> None:
    a, b = apart(redis_server, tmp_path, chatd_processes)
    opal = operator(a.port)
    bob = Chatter(a.port, source=USER).rename("bob")
    bea = Chatter(b.port, source=USER).rename("bea")  # same address, another process
    cut_off(redis_server, "chatd-a", a, 1)
    opal.say("/ban bob spam")
    opal.expect(r"^\*\*\* Banned 127\.0\.0\.2/32")
    closed(bob)
    let_back(redis_server, "chatd-a", a, 1)
    eventually(lambda: first_line(b.port).startswith("*** Error: you are banned"),
               "b refuses the ban set on a while Redis was away", seconds=15)
    bea.say("/who")
    bea.expect(r"^\*\*\* Users in #lobby")
    assert not [line for line in bea.lines if "banned" in line], bea.lines
    assert "Traceback" not in a.output() + b.output()


def shows(irssi: Irssi, pattern: str, seconds: float = 20.0) -> None:
    """Waits until irssi's screen shows ``pattern``."""
    deadline = time.monotonic() + seconds
    while not re.search(pattern, irssi.screen()):
        assert time.monotonic() < deadline, f"irssi never showed {pattern!r}:\n{irssi.screen()}"
        time.sleep(0.1)


def test_irssi_sees_kicks_made_on_another_process_as_kicks(
        chatd_processes: list[ChatdProcess], redis_server: RedisServer, tmp_path: Path) -> None:
    a = start(chatd_processes, redis_server, tmp_path, "a")
    b = start(chatd_processes, redis_server, tmp_path, "b",
              extra='irc = ["tcp:0:interface=127.0.0.1"]')
    ivy = Irssi(tmp_path / "irssi", b.port_of("IRCFactory"), "ivy")
    try:
        shows(ivy, r"Welcome to the b IRC network")
        ivy.type("/join #lobby")
        shows(ivy, r"ivy \S+ has joined #lobby")
        opal = operator(a.port)
        dave = Chatter(a.port, source=USER).rename("dave")
        opal.who_until(lambda reply: "ivy" in reply and "dave" in reply)
        opal.say("/kick dave spam")
        closed(dave)
        shows(ivy, r"dave was kicked from #lobby by opal \[spam\]")
        opal.say("/kick ivy bye")
        opal.expect(r"^\*\*\* ivy has left #lobby \(kicked by opal: bye\)$")
        shows(ivy, r"ivy was kicked from #lobby by opal \[bye\]")  # irssi says so of itself too
    finally:
        ivy.close()
    assert "Traceback" not in a.output() + b.output()


def test_a_user_kicked_while_their_process_was_cut_off_is_kicked_when_it_is_back(
        chatd_processes: list[ChatdProcess], redis_server: RedisServer, tmp_path: Path) -> None:
    a, b = apart(redis_server, tmp_path, chatd_processes)
    bob = Chatter(a.port, source=USER).rename("bob")
    opal = operator(b.port)
    opal.who_until(lambda reply: "bob" in reply)
    cut_off(redis_server, "chatd-a", a, 1)
    opal.say("/kick bob spam")  # b does not know yet that a is gone
    opal.expect(r"^\*\*\* bob has left #lobby \(kicked by opal: spam\)$")
    let_back(redis_server, "chatd-a", a, 1)
    bob.expect(r"^\*\*\* You have been kicked by an operator while this server was cut off from "
               r"the cluster$")
    closed(bob)
    opal.who_until(lambda reply: "bob" not in reply)
    assert "Traceback" not in a.output() + b.output()

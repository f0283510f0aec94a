"""SIGHUP over a live daemon: a real twistd process, clients that stay connected, a reload
that takes effect, and a broken file that changes nothing. Also bans over real sockets."""

from __future__ import annotations

import re
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from chatd.passwd import hash_password
from tests.support import Twistd, connect, read_until

pytestmark = pytest.mark.slow
CHEAP_HASH = hash_password("opsecret", n=2**4)


def config_text(state: Path, name: str, max_line: int, operators: str = "",
                extra: str = "") -> str:
    return f"""
listen = ["tcp:0:interface=127.0.0.1"]
no-echo = true
server-name = "{name}"
max-line = {max_line}
state = "{state}"
{extra}
[operators]
{operators}
"""


class Daemon:
    """``twistd -n chatd --config FILE``: the file can be rewritten, then SIGHUP sent."""

    def __init__(self, tmp_path: Path, twistd: Callable[..., Twistd]) -> None:
        self.state = tmp_path / "state.sqlite3"
        self.config = tmp_path / "chatd.toml"
        self._twistd = twistd
        self.running: Twistd | None = None

    def write(self, text: str) -> None:
        self.config.write_text(text)

    def start(self) -> None:
        if self.running is None:
            self.running = self._twistd("chatd", "--config", str(self.config))
        else:
            self.running.start()

    @property
    def port(self) -> int:
        assert self.running is not None
        return self.running.port

    def wait_for_log(self, needle: str) -> str:
        assert self.running is not None
        return self.running.wait_for_log(needle)

    def log(self) -> str:
        """Everything every run has logged."""
        assert self.running is not None
        return self.running.log.read_text()

    def hangup(self) -> None:
        assert self.running is not None
        self.running.send_signal(signal.SIGHUP)

    def stop(self) -> None:
        assert self.running is not None
        self.running.stop()


@pytest.fixture
def daemon(tmp_path: Path, twistd: Callable[..., Twistd]) -> Daemon:
    return Daemon(tmp_path, twistd)


def greeting_after_reload(port: int, expected: bytes) -> socket.socket:
    """A new connection, retried until the reload (asynchronous to the signal) shows."""
    deadline = time.monotonic() + 10
    while True:
        sock = connect(port)
        greeting = read_until(sock, b"commands.")
        if expected in greeting:
            return sock
        sock.close()
        if time.monotonic() > deadline:
            raise AssertionError(f"{expected!r} not in {greeting!r}")
        time.sleep(0.1)


def test_sighup_reloads_while_clients_stay_connected(daemon: Daemon) -> None:
    daemon.write(config_text(daemon.state, "before", 100))
    daemon.start()
    alice = connect(daemon.port)
    assert b"Welcome to before!" in read_until(alice, b"commands.")
    bob = connect(daemon.port)
    read_until(bob, b"commands.")

    daemon.write(config_text(daemon.state, "after", 50,
                             f'root = "{CHEAP_HASH}"'))
    daemon.hangup()
    carol = greeting_after_reload(daemon.port, b"Welcome to after!")
    log = daemon.wait_for_log("max-line changed from 100 to 50")
    assert "server-name changed from 'before' to 'after'" in log
    assert "operators changed" in log and CHEAP_HASH not in log

    # The connections made before the reload are still there and use the new settings.
    alice.sendall(b"still here\n")
    read_until(bob, b"<guest1> still here\r\n")
    alice.sendall(b"x" * 60 + b"\n")
    read_until(alice, b"line too long (the limit is 50 bytes)")
    alice.sendall(b"/oper root opsecret\n")
    read_until(alice, b"You are now an operator (root).")

    # A broken file: the old configuration stays, the log says why.
    daemon.write("max-line = oops\n")
    daemon.hangup()
    daemon.wait_for_log("Configuration not reloaded")
    bob.sendall(b"y" * 45 + b"\n")
    read_until(carol, b"<guest2> " + b"y" * 45)
    for sock in (alice, bob, carol):
        sock.close()
    assert "Traceback" not in daemon.log()


def test_sighup_reloads_motd_topic_and_limits(daemon: Daemon, tmp_path: Path) -> None:
    motd = tmp_path / "motd.txt"
    motd.write_text("first motd\n")

    def settings(topic: str, per_ip: int) -> str:
        extra = f'motd = "{motd}"\ntopic = "{topic}"\nmax-per-ip = {per_ip}\n'
        return config_text(daemon.state, "chatd", 4096, extra=extra)

    daemon.write(settings("first topic", 10))
    daemon.start()
    alice = connect(daemon.port)
    assert b"*** | first motd" in read_until(alice, b"first motd")
    bob = connect(daemon.port)
    assert b"Topic of #lobby: first topic" in read_until(bob, b"first topic")

    motd.write_text("second motd\n")
    daemon.write(settings("second topic", 3))
    daemon.hangup()
    # Everyone in the default room sees the new topic; nobody was dropped.
    read_until(alice, b"*** chatd set the topic of #lobby to: second topic\r\n")
    read_until(bob, b"*** chatd set the topic of #lobby to: second topic\r\n")
    log = daemon.wait_for_log("max-per-ip changed from 10 to 3")
    assert "motd-lines changed" in log and "topic changed" in log
    carol = connect(daemon.port)  # the third from this address: allowed
    assert b"*** | second motd" in read_until(carol, b"second motd")
    dave = connect(daemon.port)  # the fourth: over the new limit
    assert b"too many connections from your address (the limit is 3)" in read_until(
        dave, b"try again later")
    alice.sendall(b"still here\n")
    read_until(bob, b"<guest1> still here\r\n")
    for sock in (alice, bob, carol, dave):
        sock.close()
    assert "Traceback" not in daemon.log()


def test_ban_by_nick_holds_across_reconnect_and_restart(daemon: Daemon) -> None:
    daemon.write(config_text(daemon.state, "chatd", 4096,
                             f'root = "{CHEAP_HASH}"'))
    daemon.start()
    op = connect(daemon.port)
    read_until(op, b"commands.")
    op.sendall(b"/oper root opsecret\n")
    read_until(op, b"You are now an operator")
    # The abuser comes from another loopback address, so the ban does not hit the operator.
    abuser = socket.create_connection(("127.0.0.1", daemon.port), timeout=5,
                                      source_address=("127.0.0.2", 0))
    read_until(abuser, b"commands.")
    op.sendall(b"/ban guest2 1h spam\n")
    read_until(abuser, b"You have been banned by guest1 for 1h: spam")
    read_until(op, b"Banned 127.0.0.2/32")

    def refused() -> bytes:
        again = socket.create_connection(("127.0.0.1", daemon.port), timeout=5,
                                         source_address=("127.0.0.2", 0))
        data = read_until(again, b"\r\n")
        again.close()
        return data

    assert refused().startswith(b"*** Error: you are banned from this server: spam (until ")
    op.close()
    abuser.close()
    daemon.stop()
    daemon.start()  # a new process, listening on a new port: ``refused`` asks for it
    line = refused()
    assert line.startswith(b"*** Error: you are banned from this server: spam (until ")
    audit = daemon.log()
    assert "operator root banned" in audit and "[chatd.audit" in audit


def test_sighup_limits_reach_connections_made_before_it(daemon: Daemon) -> None:
    daemon.write(config_text(daemon.state, "chatd", 4096))
    daemon.start()
    alice = connect(daemon.port)
    read_until(alice, b"commands.")
    daemon.write(config_text(daemon.state, "chatd", 4096, extra=(
        "idle-timeout = 1.0\nflood-rate = 1.0\nflood-burst = 1\nflood-queue = 1\n")))
    daemon.hangup()
    daemon.wait_for_log("idle-timeout changed from 0.0 to 1.0")
    # alice connected when there was no flood limit and no idle timeout: now there are.
    alice.sendall(b"/who\n/who\n/who\n")
    read_until(alice, b"sending faster than 1 lines a second")
    read_until(alice, b"*** Idle for 1 seconds; disconnecting.")
    alice.close()


def _closed(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Everything ``sock`` receives until the server closes it."""
    sock.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        chunk = sock.recv(4096)
        if not chunk:
            return data
        data += chunk
    raise AssertionError(f"still open; got {data!r}")


def test_moderation_on_one_shared_address(daemon: Daemon) -> None:
    """Every client here comes from 127.0.0.1: a mute, a kick and a ban by nick hit their
    target only, never the operator; a kicked nick waits --kick-rejoin-delay (reloaded)."""
    daemon.write(config_text(daemon.state, "chatd", 4096,
                             f'root = "{CHEAP_HASH}"', "kick-rejoin-delay = 30.0"))
    daemon.start()
    op = connect(daemon.port)
    read_until(op, b"commands.")
    op.sendall(b"/oper root opsecret\n")
    read_until(op, b"You are now an operator")
    bob, carol = connect(daemon.port), connect(daemon.port)
    read_until(bob, b"commands.")
    read_until(carol, b"commands.")
    bob.sendall(b"/nick bob\n")
    carol.sendall(b"/nick carol\n")
    read_until(op, b"is now known as carol")

    op.sendall(b"/mute carol\n")
    read_until(carol, b"carol has been muted by guest1")
    op.sendall(b"op speaks\n")
    bob.sendall(b"bob speaks\n")
    read_until(carol, b"<bob> bob speaks")
    carol.sendall(b"carol speaks\n")
    read_until(carol, b"*** Error: you are muted; your line was not sent")

    op.sendall(b"/kick bob enough\n")
    assert b"*** You have been kicked by guest1: enough\r\n" in _closed(bob)
    back = connect(daemon.port)
    read_until(back, b"commands.")
    back.sendall(b"/nick bob\n")
    refused = _closed(back)
    assert re.search(rb"\*\*\* Error: you were kicked from this server; you may reconnect "
                     rb"in [0-9]+ seconds\r\n", refused), refused

    op.sendall(b"/ban carol 1h spam\n")
    assert b"*** You have been banned by guest1 for 1h: spam\r\n" in _closed(carol)
    read_until(op, b"Banned 127.0.0.1/32")
    op.sendall(b"/who\n")
    assert b"Users in #lobby (1): guest1" in read_until(op, b"Users in")  # op still here
    newcomer = connect(daemon.port)
    assert _closed(newcomer).startswith(b"*** Error: you are banned from this server: spam")
    op.sendall(b"/unban 127.0.0.1\n")
    read_until(op, b"Unbanned 127.0.0.1/32.")

    # A reload with --kick-rejoin-delay 0 lets the next kicked nick back at once.
    daemon.write(config_text(daemon.state, "chatd", 4096,
                             f'root = "{CHEAP_HASH}"', "kick-rejoin-delay = 0.0"))
    daemon.hangup()
    daemon.wait_for_log("kick-rejoin-delay changed from 30.0 to 0.0")
    dave = connect(daemon.port)
    read_until(dave, b"commands.")
    dave.sendall(b"/nick dave\n")
    read_until(op, b"is now known as dave")
    op.sendall(b"/kick dave\n")
    _closed(dave)
    again = connect(daemon.port)
    read_until(again, b"commands.")
    again.sendall(b"/nick dave\n")
    assert b"is now known as dave" in read_until(again, b"known as dave")
    for sock in (op, again):
        sock.close()
    assert "Traceback" not in daemon.log()

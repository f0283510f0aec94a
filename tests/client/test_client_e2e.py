"""End to end: the real ``chatd-client`` against a chat server on 127.0.0.1.

Terminal mode runs under a pseudo-terminal (pexpect); pipe mode and TLS run as
plain subprocesses.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pexpect
import pytest
from chatd_client_harness import (
    OPERATOR,
    OPERATOR_PASSWORD,
    ChatServer,
    Peer,
    StandInServer,
    client_command,
    client_env,
)

pytestmark = pytest.mark.slow  # real twistd, real terminals: `make test-fast` leaves them out

TIMEOUT = 10


def spawn_client(*args: str) -> pexpect.spawn:
    cmd = client_command()
    child = pexpect.spawn(
        cmd[0],
        [*cmd[1:], *args],
        env=client_env(),
        dimensions=(24, 100),
        encoding="utf-8",
        timeout=TIMEOUT,
    )
    return child


_CSI = r"(?:\x1b\[[0-9;?]*[A-Za-z])*"


def on_screen(text: str) -> str:
    """A pattern for text as the terminal draws it: escape sequences may come between."""
    return _CSI.join(re.escape(c) for c in text)


def run_pipe(
    *args: str, input: str = "", timeout: float = TIMEOUT
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*client_command(), *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=client_env(),
    )


def test_terminal_session(server: ChatServer, peer_factory: type[Peer]) -> None:
    port = str(server.port)
    alice = spawn_client("127.0.0.1", port, "--nick", "alice")
    try:
        alice.expect("Connected to 127.0.0.1")
        alice.expect("is now known as alice")
        alice.expect(r"Users in #lobby \(1\)")

        bob = peer_factory(server.port)
        bob.send("/nick bob")
        alice.expect("is now known as bob")

        # A half-typed line survives a message arriving: the message is printed
        # above, then the prompt is redrawn with the half-typed text.
        alice.send("half typ")
        alice.expect(on_screen("half typ"))
        bob.send("hello alice \x1b[2J\u009b")
        # The daemon strips ESC and the 8-bit CSI before anyone sees them (the client's own
        # visible rendering of controls is unit-tested in test_render).
        alice.expect(r"hello alice \[2J")
        alice.expect(on_screen("half typ"))  # the redrawn prompt still holds it
        alice.send("ed\r")
        assert bob.expect("half typed") == "<alice> half typed"
        alice.expect("half typed")  # our own line, echoed locally

        # Tab completion of a command; the server's answer shows up.
        alice.send("/wh\t")
        alice.expect(on_screen("/who"))
        alice.send("\r")
        alice.expect(r"Users in #lobby \(2\)")

        # Tab completion of a nick learned from the room.
        alice.send("hey b\t")
        alice.expect(on_screen("hey bob"))
        alice.send("\r")
        assert bob.expect("hey") == "<alice> hey bob"

        # The server restarts: the client says so, reconnects, asks for its nick.
        server.restart()
        alice.expect("Connection lost")
        alice.expect("Connected to 127.0.0.1")
        alice.expect("is now known as alice")

        alice.send("/quit\r")
        alice.expect(pexpect.EOF)
    finally:
        alice.close(force=True)
    assert alice.exitstatus == 0


@pytest.mark.parametrize("key", ["\x04", "\x03"], ids=["ctrl-d", "ctrl-c"])
def test_terminal_exits_on_ctrl_d_and_ctrl_c(
    server: ChatServer, peer_factory: type[Peer], key: str
) -> None:
    bob = peer_factory(server.port)
    bob.expect("Welcome")
    child = spawn_client("127.0.0.1", str(server.port), "--nick", "carol")
    try:
        child.expect("is now known as carol")
        child.send(key)
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    # A clean quit, not a dropped connection.
    assert "(quit)" in bob.expect("carol has left")


def test_pipe_mode(server: ChatServer, peer_factory: type[Peer]) -> None:
    bob = peer_factory(server.port)
    bob.expect("Welcome")
    proc = subprocess.Popen(
        [*client_command(), "127.0.0.1", str(server.port), "--nick", "pipey", "--linger", "1"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=client_env(),
    )
    assert proc.stdin is not None
    proc.stdin.write("hello from a pipe\n/who\n")
    proc.stdin.flush()
    assert bob.expect("hello from a pipe") == "<pipey> hello from a pipe"
    bob.send("evil \x1b]0;owned\x07 \u009b31m")
    out, err = proc.communicate("/me is done\n", timeout=TIMEOUT)
    assert proc.returncode == 0, err
    assert bob.expect("is done") == "* pipey is done"
    assert "(quit)" in bob.expect("pipey has left")
    assert "\x1b" not in out and "\x1b" not in err
    lines = out.splitlines()
    # bob never takes a nick: on this fresh server he is guest1.
    assert "*** Users in #lobby (2): guest1, pipey" in lines
    assert "<guest1> evil ]0;owned 31m" in lines  # the escapes cleaned out
    assert "hello from a pipe" not in out  # own lines are not echoed in pipe mode
    assert "Connected to 127.0.0.1" in err


def test_pipe_mode_without_server_fails() -> None:
    import socket

    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = run_pipe("127.0.0.1", str(port), input="anyone?\n")
    assert result.returncode == 1
    assert "Cannot connect" in result.stderr
    assert "1 line(s) not sent" in result.stderr


def test_tls_with_private_ca(tls_server: tuple[ChatServer, Path]) -> None:
    server, ca = tls_server
    result = run_pipe("127.0.0.1", str(server.port), "--cafile", str(ca), input="/who\n")
    assert result.returncode == 0, result.stderr
    assert "*** Welcome to chatd!" in result.stdout
    assert "*** Users in #lobby (1)" in result.stdout
    assert "(TLS)" in result.stderr


def test_tls_rejects_untrusted_certificate(tls_server: tuple[ChatServer, Path]) -> None:
    server, _ca = tls_server
    result = run_pipe("127.0.0.1", str(server.port), "--tls", input="/who\n")
    assert result.returncode == 1
    assert "Welcome" not in result.stdout
    assert "Cannot connect" in result.stderr or "Connection lost" in result.stderr


def test_tls_insecure_warns_and_connects(tls_server: tuple[ChatServer, Path]) -> None:
    server, _ca = tls_server
    result = run_pipe("127.0.0.1", str(server.port), "--insecure", input="/who\n")
    assert result.returncode == 0, result.stderr
    assert "WARNING: --insecure" in result.stderr
    assert "*** Users in #lobby (1)" in result.stdout


NOT_RECONNECTING = "not reconnecting. /reconnect or a restart of chatd-client brings you back."


def test_kicked_client_does_not_reconnect(
    operator_server: ChatServer, peer_factory: type[Peer]
) -> None:
    root = peer_factory(operator_server.port)
    root.expect("Welcome")
    root.send(f"/oper {OPERATOR} {OPERATOR_PASSWORD}")
    root.expect("You are now an operator")
    alice = spawn_client("127.0.0.1", str(operator_server.port), "--nick", "alice")
    try:
        alice.expect("is now known as alice")
        root.expect("is now known as alice")
        root.send("/kick alice stop spamming")
        alice.expect(r"\*\*\* You have been kicked by \S+: stop spamming")
        alice.expect("You were kicked: " + re.escape(NOT_RECONNECTING))
        # The old client was back in 0.5 s; give this one four times that to come back.
        assert alice.expect(["Reconnecting", "Connected to", pexpect.TIMEOUT], timeout=2) == 2
        alice.expect(on_screen("(offline) alice>"))
        # /reconnect tries again at once (the server may refuse a nick kicked so lately).
        alice.send("/reconnect\r")
        alice.expect("Reconnecting to 127.0.0.1")
        alice.expect(["is now known as alice", "you were kicked from this server"])
        alice.send("/quit\r")
        alice.expect(pexpect.EOF)
    finally:
        alice.close(force=True)


def test_banned_client_does_not_reconnect() -> None:
    ban = "*** Error: you are banned from this server: flooding (for good)"
    stand_in = StandInServer([ban])
    try:
        alice = spawn_client("127.0.0.1", str(stand_in.port), "--nick", "alice")
        try:
            alice.expect(re.escape(ban))
            alice.expect("You were banned: " + re.escape(NOT_RECONNECTING))
            assert alice.expect(["Reconnecting", pexpect.TIMEOUT], timeout=2) == 1
            assert stand_in.connections == 1
            alice.send("/reconnect\r")  # by hand it does try again
            alice.expect("Reconnecting to 127.0.0.1")
            alice.expect("You were banned: ")
            alice.send("\x04")
            alice.expect(pexpect.EOF)
        finally:
            alice.close(force=True)
        assert alice.exitstatus == 0
        assert stand_in.connections == 2
    finally:
        stand_in.close()


def test_client_comes_back_in_its_room_after_a_restart(
    server: ChatServer, peer_factory: type[Peer]
) -> None:
    alice = spawn_client("127.0.0.1", str(server.port), "--nick", "alice")
    try:
        alice.expect("is now known as alice")
        alice.send("/join #dev\r")
        alice.expect(r"You are now in #dev \(1 user\)")
        alice.send("/away lunch\r")
        alice.expect("You are marked as away: lunch")

        server.restart()
        alice.expect("Connection lost")
        alice.expect("Connected to 127.0.0.1")
        alice.expect(r"You are now in #dev \(1 user\)")
        alice.expect("You are marked as away: lunch")
        alice.expect(r"Users in #dev \(1\): alice \(away\)")  # the /who on connect

        bob = peer_factory(server.port)
        bob.expect("Welcome")
        bob.send("/who #dev")
        assert bob.expect("Users in #dev") == "*** Users in #dev (1): alice (away)"
        alice.send("/quit\r")
        alice.expect(pexpect.EOF)
    finally:
        alice.close(force=True)
    assert alice.exitstatus == 0


def test_version_is_chatds() -> None:
    import importlib.metadata

    result = run_pipe("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"chatd-client {importlib.metadata.version('chatd')}\n"

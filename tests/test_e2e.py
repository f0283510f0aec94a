"""End to end: install chatd into a fresh venv with `pip install .` and run real twistd."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import venv
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support import Twistd, connect, read_until, run_twistd

ROOT = Path(__file__).resolve().parent.parent
LOCAL = "interface=127.0.0.1"
# The first test here pays for a fresh venv (pip install from the tree): allow for it.
# Run whole on one worker under xdist (tests/conftest.py ONE_WORKER_MODULES): the module's
# tests share that venv, so it is built once.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with chatd installed from the source tree, not in editable mode: pip
    builds the wheel (in its own build environment, from pyproject.toml's build-system)
    and resolves and installs every dependency anew.

    The venv gets no pip of its own: the test venv's pip installs into it (``--python``),
    which saves bootstrapping one (ensurepip) that nothing here uses. ``--no-compile``
    skips byte-compiling every module of every dependency (all of Twisted's tests among
    them), which took most of this fixture's CPU time; instead one ``twistd chatd --help``
    compiles what chatd's start-up imports, even where PYTHONDONTWRITEBYTECODE is set, so
    that each daemon below does not compile it all again."""
    home = tmp_path_factory.mktemp("fresh-venv")
    venv.create(home, with_pip=False)
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(home / "bin" / "python"), "install",
         "-q", "--no-compile", str(ROOT)],
        check=True,
        cwd=home,
    )
    subprocess.run([str(home / "bin" / "twistd"), "chatd", "--help"], check=True, cwd=home,
                   stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONDONTWRITEBYTECODE": ""})
    return home


def chat_echo_and_udp(daemon: Twistd) -> None:
    """One chat line between two users, one TCP echo and one UDP echo, over loopback."""
    chat, echo_port, udp_port = daemon.wait_listening("chat", "echo", "echo-udp")
    alice = connect(chat)
    read_until(alice, b"Type /help")
    bob = connect(chat)
    read_until(bob, b"Type /help")
    read_until(alice, b"guest2 has joined")
    alice.sendall(b"/nick alice\nhello bob\n")
    assert b"<alice> hello bob\r\n" in read_until(bob, b"hello bob\r\n")
    for sock in (alice, bob):
        sock.close()

    echo = connect(echo_port)
    echo.sendall(b"\x00\xffecho me")
    assert read_until(echo, b"echo me") == b"\x00\xffecho me"
    echo.close()

    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.settimeout(5)
    udp.sendto(b"datagram", ("127.0.0.1", udp_port))
    assert udp.recvfrom(100)[0] == b"datagram"
    udp.close()


def test_twistd_help_lists_chatd(installed: Path, tmp_path: Path) -> None:
    out = subprocess.run(
        [str(installed / "bin" / "twistd"), "--help"], cwd=tmp_path, capture_output=True,
        check=True,
    ).stdout
    assert b"chatd" in out


def test_installed_copy_is_not_the_source_tree(installed: Path, tmp_path: Path) -> None:
    where = subprocess.run(
        [str(installed / "bin" / "python"), "-c", "import chatd; print(chatd.__file__)"],
        cwd=tmp_path, capture_output=True, check=True, text=True,
    ).stdout
    assert str(installed) in where


def test_chat_echo_and_sigterm_goodbye(
    installed: Path, twistd: Callable[..., Twistd],
) -> None:
    # Run from tmp_path, not the source tree: the installed copy must be what runs.
    daemon = twistd(
        "chatd", "--state", "none", "--listen", f"tcp:0:{LOCAL}", "--echo", f"tcp:0:{LOCAL}",
        "--echo-udp", f"udp:0:{LOCAL}", executable=installed / "bin" / "twistd",
    )
    chat_echo_and_udp(daemon)
    alice = connect(daemon.port)
    read_until(alice, b"Type /help")
    bob = connect(daemon.port)
    read_until(bob, b"Type /help")

    started = time.monotonic()
    daemon.send_signal(signal.SIGTERM)
    for client in (alice, bob):
        read_until(client, b"*** Server is shutting down. Goodbye.\r\n")
        client.settimeout(5)
        while client.recv(4096):
            pass  # the server closes the connection
    # twistd ends by re-raising the signal it stopped for, as systemd expects of a clean stop.
    assert daemon.process is not None
    assert daemon.process.wait(timeout=10) in (0, -signal.SIGTERM)
    assert time.monotonic() - started < 5
    log = daemon.output()
    assert "Traceback" not in log, log


def test_port_in_use_exits_non_zero_naming_the_endpoint(installed: Path, tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_twistd(
            ["chatd", "--no-echo", "--state", "none", "--listen", f"tcp:{port}:{LOCAL}"],
            tmp_path, installed / "bin" / "twistd",
        )
    assert result.returncode != 0
    output = result.stdout
    assert f"cannot listen on tcp:{port}:interface=127.0.0.1" in output
    assert "Traceback" not in output


def test_malformed_option_is_a_usage_error(installed: Path, tmp_path: Path) -> None:
    result = run_twistd(["chatd", "--echo-udp", "udp:seven"], tmp_path,
                        installed / "bin" / "twistd")
    assert result.returncode != 0
    assert "--echo-udp 'udp:seven': expected udp:PORT" in result.stdout
    assert "Traceback" not in result.stdout


def test_tac_serves_with_the_same_code(
    installed: Path, twistd: Callable[..., Twistd], tmp_path: Path
) -> None:
    """twistd -ny chatd.tac, the source tree's tac on the installed code, serves chat and
    echo: on free loopback ports from the file CHATD_CONFIG names, with its state file in
    a temporary directory, never the repository's."""
    config = tmp_path / "chatd.toml"
    config.write_text(
        f'listen = ["tcp:0:{LOCAL}"]\necho = ["tcp:0:{LOCAL}"]\n'
        f'echo-udp = ["udp:0:{LOCAL}"]\nstate = "{tmp_path / "tac.sqlite3"}"\n'
    )
    repository_state = ROOT / "chatd.sqlite3"
    existed = repository_state.exists()
    env = dict(os.environ, PYTHONPATH="", CHATD_CONFIG=str(config))
    daemon = twistd("-y", str(ROOT / "chatd.tac"), executable=installed / "bin" / "twistd",
                    env=env)
    chat_echo_and_udp(daemon)
    log = daemon.stop()
    assert "Traceback" not in log, log
    assert (tmp_path / "tac.sqlite3").exists()
    assert repository_state.exists() == existed

"""End to end: install chatd into a fresh venv with `pip install .` and run real twistd."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import venv
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import connect, free_port, read_until

Popen = subprocess.Popen[bytes]
ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow



@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with chatd installed from the source tree, not in editable mode."""
    home = tmp_path_factory.mktemp("fresh-venv")
    venv.create(home, with_pip=True)
    subprocess.run(
        [str(home / "bin" / "python"), "-m", "pip", "install", "-q", str(ROOT)],
        check=True,
        cwd=home,
    )
    return home




@pytest.fixture
def twistd(installed: Path, tmp_path: Path) -> Iterator[tuple[Popen, dict[str, int]]]:
    ports = {"chat": free_port(), "echo": free_port(), "udp": free_port()}
    process = subprocess.Popen(
        [
            str(installed / "bin" / "twistd"), "--pidfile=", "-n", "chatd",
            "--listen", f"tcp:{ports['chat']}:interface=127.0.0.1",
            "--echo", f"tcp:{ports['echo']}:interface=127.0.0.1",
            "--echo-udp", f"udp:{ports['udp']}:interface=127.0.0.1",
        ],
        cwd=tmp_path,  # not the source tree: the installed copy must be what runs
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    yield process, ports
    if process.poll() is None:
        process.kill()
        process.wait()


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
    twistd: tuple[Popen, dict[str, int]],
) -> None:
    process, ports = twistd
    alice = connect(ports["chat"])
    read_until(alice, b"Type /help")
    bob = connect(ports["chat"])
    read_until(bob, b"Type /help")
    read_until(alice, b"guest2 has joined")
    alice.sendall(b"/nick alice\nhello bob\n")
    assert b"<alice> hello bob\r\n" in read_until(bob, b"hello bob\r\n")

    echo = connect(ports["echo"])
    echo.sendall(b"\x00\xffecho me")
    assert read_until(echo, b"echo me") == b"\x00\xffecho me"
    echo.close()

    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.settimeout(5)
    udp.sendto(b"datagram", ("127.0.0.1", ports["udp"]))
    assert udp.recvfrom(100)[0] == b"datagram"
    udp.close()

    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    for client in (alice, bob):
        read_until(client, b"*** Server is shutting down. Goodbye.\r\n")
        client.settimeout(5)
        while client.recv(4096):
            pass  # the server closes the connection
    # twistd ends by re-raising the signal it stopped for, as systemd expects of a clean stop.
    assert process.wait(timeout=10) in (0, -signal.SIGTERM)
    assert time.monotonic() - started < 5
    log = process.stdout.read().decode() if process.stdout else ""
    assert "Traceback" not in log, log


def test_port_in_use_exits_non_zero_naming_the_endpoint(installed: Path, tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [str(installed / "bin" / "twistd"), "--pidfile=", "-n", "chatd", "--no-echo",
             "--listen", f"tcp:{port}:interface=127.0.0.1"],
            cwd=tmp_path, capture_output=True, text=True, timeout=30,
        )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert f"cannot listen on tcp:{port}:interface=127.0.0.1" in output
    assert "Traceback" not in output


def test_malformed_option_is_a_usage_error(installed: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [str(installed / "bin" / "twistd"), "-n", "chatd", "--echo-udp", "udp:seven"],
        cwd=tmp_path, capture_output=True, text=True, timeout=30,
    )
    assert result.returncode != 0
    assert "--echo-udp 'udp:seven': expected udp:PORT" in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_tac_runs_with_the_same_code(installed: Path) -> None:
    """twistd -ny chatd.tac from the repository root (the defaults may be busy here, so
    only check it gets as far as listening or a clean bind error, never a traceback)."""
    env = dict(os.environ, PYTHONPATH="")
    process = subprocess.Popen(
        [str(installed / "bin" / "twistd"), "--pidfile=", "-ny", "chatd.tac"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
    )
    output = b""
    try:
        deadline = time.monotonic() + 20
        assert process.stdout is not None
        os.set_blocking(process.stdout.fileno(), False)
        while time.monotonic() < deadline:
            output += process.stdout.read() or b""
            if b"starting on 7777" in output or process.poll() is not None:
                break
            time.sleep(0.1)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
        output += process.stdout.read() or b"" if process.stdout else b""
    text = output.decode()
    assert "Traceback" not in text, text
    assert "starting on 7777" in text or "cannot listen on tcp:7777" in text, text

"""Helpers for the client's end-to-end tests: a chat server, a peer, certificates.

The server is the real daemon, run by twistd from the same environment as the tests.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

from tests.support import Twistd
from tests.support import make_certificates as make_certificates  # for conftest.py

HERE = Path(__file__).parent


def client_command() -> list[str]:
    """The installed ``chatd-client`` script, or the module if it is not installed."""
    script = shutil.which("chatd-client", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "chatd.client.main"]


class ChatServer:
    """The real daemon, ``twistd -n chatd``, in a subprocess on 127.0.0.1 (tests.support's
    Twistd, the suite's one way to run it).

    The first start listens on a free port; ``restart`` keeps that port, so a client can
    reconnect to the same address.
    """

    def __init__(self, tls: tuple[Path, Path] | None = None) -> None:
        self.tls = tls
        self.port = 0
        self.workdir = Path(tempfile.mkdtemp(prefix="chatd-client-e2e-"))
        self.daemon: Twistd | None = None

    def command(self) -> list[str]:
        if self.tls:
            cert, key = self.tls
            listen = f"ssl:{self.port}:interface=127.0.0.1:privateKey={key}:certKey={cert}"
        else:
            listen = f"tcp:{self.port}:interface=127.0.0.1"
        return ["chatd", "--no-echo", "--state", "none", "--listen", listen]

    @property
    def log(self) -> Path:
        return self.workdir / "twistd.log"

    def start(self) -> None:
        self.daemon = Twistd(self.command(), self.workdir).start()
        self.port = self.daemon.port

    def stop(self) -> None:
        if self.daemon is not None:
            self.daemon.stop()
            self.daemon = None

    def restart(self) -> None:
        self.stop()
        self.start()


class Peer:
    """Another user, on a plain blocking socket."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buffer = b""

    def send(self, text: str) -> None:
        self.sock.sendall(text.encode("utf-8") + b"\r\n")

    def expect(self, text: str, timeout: float = 10.0) -> str:
        """Read until a line containing ``text`` arrives; return that line."""
        deadline = time.monotonic() + timeout
        while True:
            while b"\r\n" in self.buffer:
                raw, self.buffer = self.buffer.split(b"\r\n", 1)
                line = raw.decode("utf-8", "replace")
                if text in line:
                    return line
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"peer never saw {text!r}")
            self.sock.settimeout(remaining)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise AssertionError(f"connection closed before {text!r}")
            self.buffer += chunk

    def close(self) -> None:
        self.sock.close()


def client_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PROMPT_TOOLKIT_NO_CPR"] = "1"  # pexpect's pty does not answer cursor queries
    env["TERM"] = "xterm-256color"
    env.pop("NO_COLOR", None)
    return env

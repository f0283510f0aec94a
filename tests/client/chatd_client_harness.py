"""Helpers for the client's end-to-end tests: a chat server, a peer, certificates.

The server is the real daemon, run by twistd from the same environment as the tests.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

from chatd.passwd import hash_password
from tests.support import Twistd, start_on_a_named_port
from tests.support import make_certificates as make_certificates  # for conftest.py

HERE = Path(__file__).parent


def client_command() -> list[str]:
    """The installed ``chatd-client`` script, or the module if it is not installed."""
    script = shutil.which("chatd-client", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "chatd.client.main"]


# An operator for the daemon's configuration file; a cheap hash, since these tests check
# what operators do, not what guessing their password costs.
OPERATOR = "admin"
OPERATOR_PASSWORD = "opsecret"


class ChatServer:
    """The real daemon, ``twistd -n chatd``, in a subprocess on 127.0.0.1 (tests.support's
    Twistd, the suite's one way to run it).

    The first start listens on a free port; ``restart`` keeps that port, so a client can
    reconnect to the same address. With ``operators``, its configuration file lets
    ``/oper admin opsecret`` in.
    """

    def __init__(self, tls: tuple[Path, Path] | None = None, operators: bool = False) -> None:
        self.tls = tls
        self.port = 0
        self.workdir = Path(tempfile.mkdtemp(prefix="chatd-client-e2e-"))
        self.daemon: Twistd | None = None
        self.config: Path | None = None
        if operators:
            self.config = self.workdir / "chatd.toml"
            self.config.write_text(
                f'[operators]\n{OPERATOR} = "{hash_password(OPERATOR_PASSWORD, n=2**4)}"\n'
            )

    def command(self) -> list[str]:
        if self.tls:
            cert, key = self.tls
            listen = f"ssl:{self.port}:interface=127.0.0.1:privateKey={key}:certKey={cert}"
        else:
            listen = f"tcp:{self.port}:interface=127.0.0.1"
        config = ["--config", str(self.config)] if self.config else []
        return ["chatd", *config, "--no-echo", "--listen", listen]

    @property
    def log(self) -> Path:
        return self.workdir / "twistd.log"

    def start(self) -> None:
        self.daemon, (self.port,) = start_on_a_named_port(
            Twistd(self.command(), self.workdir).start, "chat")

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
        return self.lines_until(text, timeout)[-1]

    def lines_until(self, text: str, timeout: float = 10.0) -> list[str]:
        """Read until a line containing ``text`` arrives; return every line read, it last."""
        deadline = time.monotonic() + timeout
        lines: list[str] = []
        while True:
            while b"\r\n" in self.buffer:
                raw, self.buffer = self.buffer.split(b"\r\n", 1)
                lines.append(raw.decode("utf-8", "replace"))
                if text in lines[-1]:
                    return lines
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


class StandInServer:
    """A stand-in for the daemon: says ``lines`` to each connection, then closes it.

    It counts the connections, so a test can tell whether the client came back.
    """

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        self.connections = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)  # so that the thread notices close() soon
        self.port = int(self.sock.getsockname()[1])
        self.closing = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.closing.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            with conn:
                conn.sendall("".join(f"{line}\r\n" for line in self.lines).encode("utf-8"))
                # Close our side, then read until the client closes too: closing with
                # its lines unread would reset the connection, losing ours in flight.
                conn.shutdown(socket.SHUT_WR)
                conn.settimeout(5)
                try:
                    while conn.recv(4096):
                        pass
                except OSError:
                    pass

    def close(self) -> None:
        self.closing.set()
        self.thread.join(timeout=10)
        self.sock.close()


def client_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PROMPT_TOOLKIT_NO_CPR"] = "1"  # pexpect's pty does not answer cursor queries
    env["TERM"] = "xterm-256color"
    env.pop("NO_COLOR", None)
    return env

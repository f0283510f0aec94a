"""The real ``telnet`` program under tmux (issue 11, item 1): after ^C, telnet shows nothing
until its timing mark is answered; chatd answers it, so the next line someone says shows."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import connect, read_until

DEADLINE = 10.0


class Tmux:
    """A tmux server of our own (its own socket), running one window."""

    def __init__(self, socket: Path, command: str) -> None:
        self.base = ["tmux", "-S", str(socket)]
        subprocess.run([*self.base, "new-session", "-d", "-x", "100", "-y", "30", command],
                       check=True, env={**os.environ, "TERM": "xterm"})

    def keys(self, *keys: str) -> None:
        subprocess.run([*self.base, "send-keys", *keys], check=True)

    def screen(self) -> str:
        return subprocess.run([*self.base, "capture-pane", "-p"], check=True,
                              capture_output=True, text=True).stdout

    def wait_for(self, text: str) -> str:
        deadline = time.monotonic() + DEADLINE
        while True:
            screen = self.screen()
            if text in screen:
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not on the screen:\n{screen}")
            time.sleep(0.05)

    def kill(self) -> None:
        subprocess.run([*self.base, "kill-server"], check=False, capture_output=True)


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[list[Tmux]]:
    started: list[Tmux] = []
    yield started
    for session in started:
        session.kill()


def test_telnet_shows_what_others_say_after_ctrl_c(
    chatd_port: int, tmux: list[Tmux], tmp_path: Path
) -> None:
    for program in ("telnet", "tmux"):
        assert shutil.which(program), f"{program} is not installed (.ci/run installs it)"
    other = connect(chatd_port)
    try:
        read_until(other, b"*** Welcome")
        session = Tmux(tmp_path / "tmux.sock", f"telnet 127.0.0.1 {chatd_port}")
        tmux.append(session)
        session.wait_for("*** Welcome")
        session.keys("hello from telnet", "Enter")
        read_until(other, b"hello from telnet")
        session.keys("C-c")
        time.sleep(0.3)  # telnet has sent IP and DO TIMING-MARK and is discarding output
        other.sendall(b"seen after the interrupt\n")
        session.wait_for("seen after the interrupt")
        session.keys("/who", "Enter")  # and its own commands are answered too
        session.wait_for("*** Users in #lobby (2)")
    finally:
        other.close()

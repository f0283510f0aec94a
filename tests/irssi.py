"""The real irssi, driven under tmux: type into it, read its screen, with a deadline.

irssi gets a throwaway home directory (its config, logs and scripts stay there), so tests
never read or write a user's ~/.irssi. Every wait polls the captured screen until a
pattern shows or the deadline passes; a failure shows the whole screen.
"""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import time
from pathlib import Path

from twisted.internet import defer, reactor, task

DEADLINE = 20.0
_sessions = itertools.count(1)

# Only what a fresh irssi needs to talk to one server quietly: no other networks, no
# autoconnect elsewhere, a fixed real name, no logs.
_CONFIG = """\
servers = ( );
chatnets = { };
channels = ( );
settings = {
  core = {
    real_name = "chatd test";
    user_name = "{nick}";
    nick = "{nick}";
    settings_autosave = "no";
  };
  "fe-common/core" = {
    autolog = "no";
    beep_when_away = "no";
    beep_msg_level = "";
  };
  "fe-text" = { actlist_sort = "refnum"; };
  # irssi paces what it sends (2.2 s a command after a burst); a test need not wait.
  "irc/core" = { cmd_queue_speed = "0msec"; cmds_max_at_once = "100"; };
};
"""


class Irssi:
    """One irssi connected to 127.0.0.1:``port`` as ``nick``, in its own tmux session."""

    def __init__(self, home: Path, port: int, nick: str) -> None:
        home.mkdir(parents=True, exist_ok=True)
        (home / "config").write_text(_CONFIG.replace("{nick}", nick))
        self.session = f"chatd-irssi-{os.getpid()}-{next(_sessions)}"
        # A tmux server of its own (its socket in irssi's home), started with this
        # environment: a server shared with other tests (run in parallel) or with a user's
        # tmux would start irssi with the environment of whoever started that server, and
        # would end when the last of anyone's sessions ends.
        self.tmux = ["tmux", "-S", str(home / "tmux.sock")]
        env = {**os.environ, "TERM": "screen", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
        command = (f"irssi --home={home} --nick={nick} --connect=127.0.0.1 --port={port}")
        subprocess.run(
            [*self.tmux, "new-session", "-d", "-s", self.session, "-x", "200", "-y", "50",
             command],
            check=True, env=env,
        )

    def type(self, text: str) -> None:
        """Types ``text`` and presses Enter."""
        subprocess.run([*self.tmux, "send-keys", "-t", self.session, "-l", text], check=True)
        subprocess.run([*self.tmux, "send-keys", "-t", self.session, "Enter"], check=True)

    def screen(self) -> str:
        """What the current irssi window shows, with its scroll-back."""
        result = subprocess.run(
            [*self.tmux, "capture-pane", "-p", "-J", "-t", self.session, "-S", "-500"],
            capture_output=True, text=True, check=False,
        )
        return result.stdout

    def wait_for(self, pattern: str, deadline: float = DEADLINE) -> defer.Deferred[re.Match[str]]:
        """Fires with the first match of ``pattern`` on screen; fails after ``deadline`` s.

        Polls without blocking the reactor, so a daemon in the test's own process keeps
        serving irssi meanwhile."""
        regex = re.compile(pattern)
        end = time.monotonic() + deadline

        def poll() -> defer.Deferred[re.Match[str]] | re.Match[str]:
            screen = self.screen()
            found = regex.search(screen)
            if found is not None:
                return found
            if time.monotonic() > end:
                raise AssertionError(f"irssi never showed {pattern!r}; screen:\n{screen}")
            return task.deferLater(reactor, 0.1, poll)

        return defer.maybeDeferred(poll)

    def close(self) -> None:
        subprocess.run([*self.tmux, "kill-server"], check=False, capture_output=True)

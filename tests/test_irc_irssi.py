"""End to end: the real irssi (under tmux) and a line user in #lobby of a real daemon."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted

from tests.irssi import Irssi
from tests.support import LOCAL, RunningDaemon, connect_client, local_args

pytestmark = pytest.mark.slow


@pytest.fixture
def daemon() -> Iterator[RunningDaemon]:
    running = RunningDaemon(local_args("--irc", f"tcp:0:{LOCAL}"))
    yield running
    pytest_twisted.blockon(running.stop())


@pytest.fixture
def irssi(daemon: RunningDaemon, tmp_path: Path) -> Iterator[Irssi]:
    port = int(list(daemon.listeners())[-1].port.getHost().port)  # the --irc listener
    client = Irssi(tmp_path / "irssi", port, "alice")
    yield client
    client.close()


@pytest_twisted.inlineCallbacks
def test_irssi_and_an_nc_user_talk_in_lobby(daemon: RunningDaemon, irssi: Irssi) -> Any:
    yield irssi.wait_for(r"Welcome to the chatd IRC network")
    bob = yield connect_client(daemon.chat_port)
    bob.send(b"/nick bob\n")
    yield bob.wait_for("is now known as bob")
    irssi.type("/join #lobby")
    yield irssi.wait_for(r"alice \S+ has joined #lobby")
    yield bob.wait_for(r"^\*\*\* alice has joined #lobby$")
    bob.send(b"hello irssi, this is nc\n")
    yield irssi.wait_for(r"<\s?bob> hello irssi, this is nc")
    irssi.type("hello nc, this is irssi")
    yield bob.wait_for(r"^<alice> hello nc, this is irssi$")
    irssi.type("/me waves")
    yield bob.wait_for(r"^\* alice waves$")
    irssi.type("/quit see you")
    yield bob.wait_for(r"^\*\*\* alice has left #lobby \(see you\)$")

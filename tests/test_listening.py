"""Every listener logs where it is bound, in one form (README "Logs"): the only way to learn
a port given as 0, which tests and operators both use."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted
from twisted.logger import formatEvent, globalLogPublisher

from tests.support import RunningDaemon

LOCAL = "tcp:0:interface=127.0.0.1"


@pytest.fixture
def logged() -> Iterator[list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(seen.append)
    yield seen
    globalLogPublisher.removeObserver(seen.append)


@pytest_twisted.inlineCallbacks
def test_every_listener_logs_its_role_and_bound_address(logged: list[dict[str, Any]]) -> Any:
    daemon = RunningDaemon([
        "--state", "none", "--listen", LOCAL, "--listen", LOCAL, "--irc", LOCAL,
        "--web", LOCAL, "--echo", LOCAL, "--echo-udp", "udp:0:interface=127.0.0.1",
        "--metrics", LOCAL,
    ])
    try:
        bound = [(child.role, child.description, child.port.getHost())
                 for child in daemon.listeners() if child.port is not None]
        bound += [(child.listener.role, child.listener.description,
                   child.listener.port.getHost())
                  for child in daemon.top if hasattr(child, "listener")]
        lines = [formatEvent(e) for e in logged if e.get("event") == "chatd.listening"]
        expected = [
            f"listening: {role} {address.type.lower()} 127.0.0.1 port {address.port} "
            f"({description})" for role, description, address in bound
        ]
        assert sorted(lines) == sorted(expected)
        assert sorted(role for role, _, _ in bound) == [
            "chat", "chat", "echo", "echo-udp", "irc", "metrics", "web"]
        assert all(address.port != 0 for _, _, address in bound)
        assert all(re.fullmatch(r"listening: \S+ (tcp|udp) 127\.0\.0\.1 port \d+ \(.+\)", line)
                   for line in lines)
        ports = {e["role"]: e["port"] for e in logged if e.get("event") == "chatd.listening"}
        assert ports["echo-udp"] == next(a.port for r, _, a in bound if r == "echo-udp")
    finally:
        yield daemon.top.stopService()

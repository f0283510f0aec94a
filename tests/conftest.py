"""Fixtures shared by the whole suite; the helpers they use live in tests/support.py.

Every test runs under pytest-timeout (pyproject.toml): a test that hangs is ended with a
stack dump, however it hangs. Each wait inside a test has its own, shorter, deadline that
fails with a message first (tests/support.py: ``within``, ``until``, ``WAIT_SECONDS``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from tests.support import Twistd

# Speed is measured by `make bench`, never asserted in tests: Hypothesis's per-example
# deadline (200 ms) fails correct examples on a loaded runner (tests/client/test_client_wire.py
# did, once), so no property test has one.
settings.register_profile("chatd", deadline=None)
settings.load_profile("chatd")


@pytest.fixture
def twistd(tmp_path: Path) -> Iterator[Callable[..., Twistd]]:
    """Starts ``twistd -n ARGV...`` in ``tmp_path`` (or ``cwd=``); every daemon started is
    stopped (SIGTERM, then SIGKILL) when the test ends, whatever the test did.

    ``twistd("chatd", "--listen", "tcp:0:interface=127.0.0.1")`` returns the running
    ``Twistd``; its ``port`` is read from its log once it listens.
    """
    started: list[Twistd] = []

    def start(*argv: str, cwd: Path = tmp_path, **options: Any) -> Twistd:
        daemon = Twistd(argv, cwd, **options)
        started.append(daemon)
        return daemon.start()

    yield start
    for daemon in started:
        # Killed if SIGTERM was not enough: a test that needs a clean stop checks it itself.
        with contextlib.suppress(AssertionError):
            daemon.stop(seconds=5)



@pytest.fixture
def chatd_port(twistd: Callable[..., Twistd]) -> int:
    """The port of a ``twistd -n chatd`` of the test's own on 127.0.0.1: no echo, no state
    file, and no per-address limits (a test's clients all come from one address)."""
    return twistd("chatd", "--no-echo", "--state", "none", "--max-per-ip", "0",
                  "--connect-rate", "0", "--listen", "tcp:0:interface=127.0.0.1").port

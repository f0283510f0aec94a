"""Fixtures shared by the whole suite; the helpers they use live in tests/support.py.

Every test runs under pytest-timeout (pyproject.toml): a test that hangs is ended with a
stack dump, however it hangs. Each wait inside a test has its own, shorter, deadline that
fails with a message first (tests/support.py: ``within``, ``until``, ``WAIT_SECONDS``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import settings

from tests.support import Twistd
from tests.xdist_worker import pytest_configure as pytest_configure

if TYPE_CHECKING:
    from xdist.scheduler import LoadScopeScheduling

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


# --- Running in several processes (pytest-xdist; `make test`, docs/testing.md) ------------

# Modules whose tests share one costly module-scoped fixture: each runs whole on one worker,
# so that the fixture is built once, not once in every worker (at the same time, on the
# same two cores). pytest-xdist's own `--dist loadgroup` reads `xdist_group` marks through
# the node ids it rewrites on the workers, which pytest 9.2 no longer lets it do: it
# silently spreads a group over every worker. So `--dist loadgroup` is this one.
ONE_WORKER_MODULES = frozenset({
    "tests/test_e2e.py",  # a fresh venv with chatd pip-installed
    "tests/test_web_browser.py",  # one chromium
})


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> LoadScopeScheduling | None:
    """``--dist loadgroup``: each test is its own unit of work, handed to whichever worker
    is free (as ``--dist load``), but a module of ONE_WORKER_MODULES is one unit. Units
    go out largest first, so a module that holds one worker for long starts early rather
    than being the last thing the run waits for."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ModuleGroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return module if module in ONE_WORKER_MODULES else nodeid

    config.option.loadscopereorder = True
    return ModuleGroupScheduling(config, log)


"""What an xdist worker says when pytest-timeout ends a hung test reaches the run's output.

pytest-timeout (``timeout_method = "thread"``) writes every thread's stack to pytest's
terminal writer, then ends the process. In an xdist worker that writer's file is file
descriptor 1, which execnet points at /dev/null (it talks to the controller over copies of
stdin and stdout): the run said only "worker 'gw0' crashed", not where the test hung.
Here the worker's terminal writer writes to its stderr, which is the run's: pytest-timeout
suspends capturing before it writes. tests/conftest.py uses this, and
tests/test_suite.py copies this file whole as the conftest of a suite of its own.
"""

from __future__ import annotations

import sys

import pytest
from _pytest._io import TerminalWriter


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):  # an xdist worker, not the controller
        writer = TerminalWriter(sys.__stderr__)
        config.get_terminal_writer = lambda: writer  # type: ignore[method-assign]

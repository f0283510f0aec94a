"""The suite's own guards: a hung test is ended even when it ignores SIGINT, and a wait
with a deadline fails with a message instead of hanging."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer

from tests.support import until, within

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one-process", "xdist"])
def test_a_hung_test_that_ignores_sigint_is_ended(
        pytester: pytest.Pytester, workers: list[str]) -> None:
    """pytest-timeout with the suite's settings (read from pyproject.toml) ends a test that
    ignores SIGINT and SIGALRM and blocks in a C call, with a stack dump: in one process,
    and in an xdist worker (`make test`), whose dump tests/xdist_worker.py brings out."""
    pytester.makepyprojecttoml((ROOT / "pyproject.toml").read_text())
    pytester.makeconftest((ROOT / "tests" / "xdist_worker.py").read_text())
    pytester.makepyfile(
        test_hang="""
        import signal, threading

        def test_hangs():
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGALRM, signal.SIG_IGN)
            threading.Event().wait()  # forever, in C
        """
    )
    started = time.monotonic()
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-o", "timeout=2",
                                           *workers, timeout=60)
    assert time.monotonic() - started < 30
    assert result.ret != 0
    output = "\n".join(result.outlines + result.errlines)
    assert "+ Timeout +" in output, output
    assert "in test_hangs" in output, output  # the stack dump shows where it hung


@pytest_twisted.inlineCallbacks
def test_within_fails_a_deferred_that_never_fires_with_a_message() -> Any:
    with pytest.raises(AssertionError, match=r"the answer: not within 0.05 s"):
        yield within(defer.Deferred(), "the answer", 0.05)


@pytest_twisted.inlineCallbacks
def test_within_passes_a_result_or_failure_through() -> Any:
    assert (yield within(defer.succeed(42), "the answer")) == 42
    with pytest.raises(ZeroDivisionError):
        yield within(defer.fail(ZeroDivisionError()), "the answer")


@pytest_twisted.inlineCallbacks
def test_until_fails_a_condition_never_met_with_a_message() -> Any:
    with pytest.raises(AssertionError, match=r"never: not within 0.05 s"):
        yield until(lambda: False, lambda: "never", 0.05)

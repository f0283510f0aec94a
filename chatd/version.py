"""chatd's one version: the ``version`` of pyproject.toml, read from the installed metadata.

Everything that shows a version (``twistd chatd --version``, the start-up log line,
``chatd-client --version``, the greeting) reads it here, so a release changes one line.
"""

from __future__ import annotations

from importlib import metadata

try:
    VERSION = metadata.version("chatd")
except metadata.PackageNotFoundError:  # run from a source tree that was never installed
    VERSION = "0+unknown"


def describe() -> str:
    """``chatd 0.1.0 (Twisted 26.10.0, Python 3.11.2)``: what ``--version`` prints."""
    import platform

    import twisted

    return f"chatd {VERSION} (Twisted {twisted.__version__}, Python {platform.python_version()})"

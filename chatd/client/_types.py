"""Structural types for the Twisted objects the client uses.

Twisted's zope interfaces do not type-check as protocols without the mypy-zope
plugin, so the client names the few methods it needs here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet.defer import Deferred


class DelayedCall(Protocol):
    def active(self) -> bool: ...
    def cancel(self) -> None: ...


class Clock(Protocol):
    def seconds(self) -> float: ...
    def callLater(
        self, delay: float, callable: Callable[..., Any], *args: Any, **kw: Any
    ) -> DelayedCall: ...


class Endpoint(Protocol):
    def connect(self, protocolFactory: Any) -> Deferred[Any]: ...

"""The exceptions the chat core raises to refuse a request.

It lives on its own so that every layer (service, commands, moderation, front-ends) can
import it without importing the service.
"""

from __future__ import annotations


class ChatError(Exception):
    """A request the service refuses; the message is meant for the one who asked."""


class Refused(ChatError):
    """A request refused so that the connection ends: the message is said, then the
    connection closes, and ``reason`` is what the user's rooms see (a nickname kicked from
    this address moments ago, taken again)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason

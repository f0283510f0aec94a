"""The one exception the chat core raises to refuse a request.

It lives on its own so that every layer (service, commands, moderation, front-ends) can
import it without importing the service.
"""

from __future__ import annotations


class ChatError(Exception):
    """A request the service refuses; the message is meant for the one who asked."""

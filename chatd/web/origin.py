"""Which pages may open the chat socket: the page's own origin, and those named on the
command line with ``--web-origin``.

A browser sends ``Origin`` with every WebSocket handshake, and a page on another site can
open a socket to any address its visitor can reach. Checking it keeps a foreign page from
chatting through a visitor's browser (on a LAN, from inside it). Programs that are not
browsers send no ``Origin`` and are let in: they could forge one anyway.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}

Origin = tuple[str, str, int]  # scheme, host (lower case), port


class InvalidOrigin(ValueError):
    """Not a web origin such as ``https://chat.example.org:8443``."""


def parse_origin(text: str) -> Origin:
    """``scheme://host[:port]`` with nothing after it, as browsers send it."""
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError:
        raise InvalidOrigin(f"{text!r} is not an origin") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/") \
            or parts.query or parts.fragment or parts.username or parts.password:
        raise InvalidOrigin(
            f"{text!r} is not an origin: use http://HOST[:PORT] or https://HOST[:PORT]"
        )
    return scheme, parts.hostname.lower(), port if port is not None else DEFAULT_PORTS[scheme]


def own_origin(host_header: str, secure: bool) -> Origin | None:
    """The origin of the page this server served, from the handshake's ``Host``."""
    scheme = "https" if secure else "http"
    try:
        return parse_origin(f"{scheme}://{host_header}")
    except InvalidOrigin:
        return None


def origin_allowed(
    origin: str | None, host_header: str, secure: bool, others: Iterable[Origin] = ()
) -> bool:
    """Whether a handshake that sent ``Origin: origin`` (None: no header) may open a socket.

    ``null`` (sandboxed frames, ``file:`` pages) and anything unparsable are refused.
    """
    if origin is None:
        return True
    try:
        sent = parse_origin(origin)
    except InvalidOrigin:
        return False
    return sent == own_origin(host_header, secure) or sent in set(others)

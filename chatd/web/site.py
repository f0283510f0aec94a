"""The web front-end's resource tree: the chat page at ``/``, its two static files, and
the chat socket at ``/ws``.

The files are read from the package once, when the tree is built, so a wheel (or a zip)
serves them as well as a checkout, and nothing on disk is ever listed or guessed at.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from typing import Any

from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.web import http, pages, resource, server
from twisted.web.server import Request

from chatd.edge import admit
from chatd.limits import ConnectionLimits
from chatd.ratelog import RateLimitedLog

# No inline script or style, nothing from another origin, no frames, no plugins, no forms
# posting elsewhere. 'self' in connect-src covers ws:// and wss:// to this host.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    b"Content-Security-Policy": CONTENT_SECURITY_POLICY.encode(),
    b"X-Content-Type-Options": b"nosniff",
    b"Referrer-Policy": b"no-referrer",
    # The page is small; always fetching it means an upgrade shows at the next reload.
    b"Cache-Control": b"no-cache",
}
# The page's files: name under static/, the path it is served at, and its media type.
STATIC_FILES = (
    ("index.html", b"", b"text/html; charset=utf-8"),
    ("app.js", b"app.js", b"text/javascript; charset=utf-8"),
    ("style.css", b"style.css", b"text/css; charset=utf-8"),
    ("icon.svg", b"icon.svg", b"image/svg+xml"),
)


def read_static(name: str) -> bytes:
    return resources.files("chatd.web").joinpath("static", name).read_bytes()


class StaticFile(resource.Resource):
    """One file held in memory, served with the security headers."""

    isLeaf = True

    def __init__(self, body: bytes, media_type: bytes) -> None:
        super().__init__()
        self.body = body
        self.media_type = media_type

    def render_GET(self, request: Request) -> bytes:
        if request.postpath not in ([], [b""]):  # /app.js/anything is not a file
            request.setResponseCode(404)
            return b""
        for name, value in SECURITY_HEADERS.items():
            request.setHeader(name, value)
        request.setHeader(b"Content-Type", self.media_type)
        return self.body

    render_HEAD = render_GET


class Root(resource.Resource):
    """Its children are everything there is; any other path is a plain 404."""

    def getChild(self, path: bytes, request: Request) -> resource.IResource:
        # Resource's default 404 page is deprecated (it does not escape the path).
        return pages.notFound()


def build_root(socket: resource.IResource) -> resource.Resource:
    """``/`` (the page), its static files, and ``socket`` at ``/ws``."""
    root = Root()
    for name, path, media_type in STATIC_FILES:
        root.putChild(path, StaticFile(read_static(name), media_type))
    root.putChild(b"ws", socket)
    return root


# --- The HTTP side: counted connections, no request bodies, a short idle timeout -----------

HTTP_IDLE_TIMEOUT = 60.0  # seconds an HTTP connection may sit between requests
_TOO_LARGE = (b"HTTP/1.1 413 Content Too Large\r\nConnection: close\r\n"
              b"Content-Length: 0\r\n\r\n")


class CountedChannel(http.HTTPChannel):
    """An HTTP connection that counts against the connection limits until it closes, or
    until ``/ws`` takes it over (``take_release``), and that accepts no request body:
    nothing here takes one, and Twisted would spool any size of it to a temporary file."""

    def __init__(self) -> None:
        super().__init__()
        self.release: Callable[[], None] | None = None

    def take_release(self) -> Callable[[], None] | None:
        release, self.release = self.release, None
        return release

    def headerReceived(self, line: bytes) -> bool:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"transfer-encoding" or (name == b"content-length"
                                            and value.strip() not in (b"", b"0")):
            assert self.transport is not None
            self.transport.write(_TOO_LARGE)
            self.loseConnection()
            return False
        return bool(super().headerReceived(line))

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        super().connectionLost(reason)
        release = self.take_release()
        if release is not None:
            release()


class HttpRefusal(Protocol):
    """Tells a newcomer over a connection limit why, as an HTTP 503, and closes."""

    transport: Any

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def connectionMade(self) -> None:
        body = f"{self.reason}; try again later\n".encode()
        self.transport.write(
            b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        self.transport.loseConnection()


class WebSite(server.Site):
    """The page and the socket, with every connection counted against ``limits``."""

    protocol = CountedChannel  # type: ignore[assignment]  # plain HTTP/1.1: no HTTP/2

    def __init__(
        self,
        root: resource.IResource,
        limits: ConnectionLimits,
        rejections: RateLimitedLog,
        reactor: Any = None,
    ) -> None:
        super().__init__(root, timeout=HTTP_IDLE_TIMEOUT, reactor=reactor)
        self.limits = limits
        self.rejections = rejections
        self.noisy = False

    def buildProtocol(self, addr: Any) -> Protocol | None:  # type: ignore[override]
        # (a refusal is no HTTP channel, and our channel is not the HTTP/2-capable one)
        refusal = admit(self.limits, addr, self.rejections, "web connection refused")
        if refusal is not None:
            return HttpRefusal(refusal)
        channel = super().buildProtocol(addr)
        assert isinstance(channel, CountedChannel)
        channel.release = lambda: self.limits.release(addr)
        return channel

    def log(self, request: http.Request) -> None:
        """No access log: the chat service logs who connects, and a page load is not news."""

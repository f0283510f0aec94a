"""The web front-end's resource tree: the chat page at ``/``, its two static files, and
the chat socket at ``/ws``.

The files are read from the package once, when the tree is built, so a wheel (or a zip)
serves them as well as a checkout, and nothing on disk is ever listed or guessed at.
"""

from __future__ import annotations

from importlib import resources

from twisted.web import pages, resource
from twisted.web.server import Request

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

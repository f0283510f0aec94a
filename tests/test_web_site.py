"""The web front-end's resource tree: the page, its files, their headers, nothing else."""

from __future__ import annotations

import re

import pytest
from twisted.web import resource
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest

from chatd.web.site import CONTENT_SECURITY_POLICY, build_root, read_static


class Socket(resource.Resource):
    isLeaf = True

    def render_GET(self, request: DummyRequest) -> bytes:
        return b"the socket"


def get(path: bytes) -> tuple[int, bytes, DummyRequest]:
    root = build_root(Socket())
    request = DummyRequest(path.lstrip(b"/").split(b"/"))
    request.uri = path
    child = resource.getChildForRequest(root, request)
    body = child.render(request)
    if body is NOT_DONE_YET:  # written with request.write (twisted.web.pages does)
        body = b"".join(request.written)
    assert isinstance(body, bytes)
    return request.responseCode or 200, body, request


@pytest.mark.parametrize(("path", "name", "media"), [
    (b"/", "index.html", b"text/html; charset=utf-8"),
    (b"/app.js", "app.js", b"text/javascript; charset=utf-8"),
    (b"/style.css", "style.css", b"text/css; charset=utf-8"),
    (b"/icon.svg", "icon.svg", b"image/svg+xml"),
])
def test_the_page_and_its_files_are_served_with_the_security_headers(
    path: bytes, name: str, media: bytes
) -> None:
    code, body, request = get(path)
    assert code == 200
    assert body == read_static(name)
    headers = request.responseHeaders
    assert headers.getRawHeaders(b"content-type") == [media]
    assert headers.getRawHeaders(b"content-security-policy") == [CONTENT_SECURITY_POLICY.encode()]
    assert headers.getRawHeaders(b"x-content-type-options") == [b"nosniff"]


def test_the_policy_forbids_inline_script_and_other_origins() -> None:
    directives = dict(d.strip().split(" ", 1) for d in CONTENT_SECURITY_POLICY.split(";"))
    assert directives["default-src"] == "'none'"
    for name in ("script-src", "style-src", "connect-src"):
        assert directives[name] == "'self'"  # no 'unsafe-inline', no other host
    assert directives["frame-ancestors"] == "'none'"


def test_the_page_has_no_inline_script_or_style_and_loads_nothing_from_elsewhere() -> None:
    page = read_static("index.html").decode()
    assert re.findall(r"<script[^>]*>", page) == ['<script src="app.js" defer>']
    assert "<style" not in page and " style=" not in page and " on" not in page.lower()
    assert "//" not in page.replace("<!DOCTYPE html>", "")  # no URL with a host


def test_the_script_never_parses_text_as_html() -> None:
    script = read_static("app.js").decode()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(",
                 "new Function"):
        assert sink not in script


def test_the_socket_is_at_ws() -> None:
    code, body, _ = get(b"/ws")
    assert (code, body) == (200, b"the socket")


@pytest.mark.parametrize("path", [b"/index.html", b"/app.js/x", b"/static/app.js", b"/..",
                                  b"/nothing"])
def test_nothing_else_is_served(path: bytes) -> None:
    code, _, _ = get(path)
    assert code == 404

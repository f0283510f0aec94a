"""Which pages may open the chat socket."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.python import usage

from chatd.tap import Options
from chatd.web.origin import InvalidOrigin, origin_allowed, own_origin, parse_origin


def test_an_origin_is_scheme_host_and_port_with_the_default_port_filled_in() -> None:
    assert parse_origin("http://Chat.Example.org") == ("http", "chat.example.org", 80)
    assert parse_origin("https://chat.example.org") == ("https", "chat.example.org", 443)
    assert parse_origin("HTTP://127.0.0.1:8080") == ("http", "127.0.0.1", 8080)
    assert parse_origin("http://[::1]:8080") == ("http", "::1", 8080)


@pytest.mark.parametrize("text", [
    "null", "", "chat.example.org", "ftp://chat.example.org", "http://",
    "http://chat.example.org/path", "http://chat.example.org?q", "http://a@chat.example.org",
    "http://chat.example.org:99999", "http://chat.example.org:port", "file:///etc/passwd",
])
def test_what_is_not_an_origin(text: str) -> None:
    with pytest.raises(InvalidOrigin):
        parse_origin(text)


def test_the_page_own_origin_comes_from_the_host_it_was_asked_for() -> None:
    assert own_origin("127.0.0.1:8080", secure=False) == ("http", "127.0.0.1", 8080)
    assert own_origin("chat.example.org", secure=True) == ("https", "chat.example.org", 443)
    assert own_origin("bad host/x", secure=False) is None


def test_the_own_origin_is_allowed_and_a_foreign_one_is_not() -> None:
    assert origin_allowed("http://127.0.0.1:8080", "127.0.0.1:8080", secure=False)
    assert origin_allowed("http://localhost", "localhost:80", secure=False)
    assert not origin_allowed("http://evil.example", "127.0.0.1:8080", secure=False)
    # Same host, another port or scheme: another origin.
    assert not origin_allowed("http://127.0.0.1:8081", "127.0.0.1:8080", secure=False)
    assert not origin_allowed("http://127.0.0.1:8080", "127.0.0.1:8080", secure=True)
    assert not origin_allowed("null", "127.0.0.1:8080", secure=False)


def test_web_origin_adds_others() -> None:
    others = [parse_origin("https://chat.example.org")]
    assert origin_allowed("https://chat.example.org", "127.0.0.1:8080", False, others)
    assert origin_allowed("https://chat.example.org:443", "127.0.0.1:8080", False, others)
    assert not origin_allowed("http://chat.example.org", "127.0.0.1:8080", False, others)


def test_a_client_that_sends_no_origin_is_not_a_browser_and_is_let_in() -> None:
    assert origin_allowed(None, "127.0.0.1:8080", secure=False)


@given(st.text(max_size=60), st.text(max_size=40), st.booleans())
def test_the_check_never_raises_and_a_foreign_host_never_passes(
    origin: str, host: str, secure: bool
) -> None:
    allowed = origin_allowed(origin, host, secure)
    if allowed:
        assert parse_origin(origin) == own_origin(host, secure)


def test_web_origin_on_the_command_line_must_be_an_origin() -> None:
    with pytest.raises(usage.UsageError, match=re.escape("--web-origin: 'https://chat.example.org/x'")):
        Options().parseOptions(["--state", "none", "--web-origin", "https://chat.example.org/x"])
    options = Options()
    options.parseOptions(["--state", "none", "--web-origin", "https://Chat.example.org",
                          "--web-origin", "http://10.0.0.5:8080"])
    assert options.web_origins == [("https", "chat.example.org", 443),
                                   ("http", "10.0.0.5", 8080)]


def test_web_is_off_unless_given_and_takes_endpoints() -> None:
    options = Options()
    options.parseOptions(["--state", "none"])
    assert options.web_endpoints == []
    with pytest.raises(usage.UsageError, match=re.escape("--web 'nonsense:1'")):
        Options().parseOptions(["--state", "none", "--web", "nonsense:1"])

"""End to end in a real browser: Debian's chromium, driven by Playwright, on the page a
real twistd serves, beside an nc user on a plain socket.

Playwright's own browser download is never used: ``executable_path`` points at the system
chromium, which ``.ci/run`` installs. As root, chromium needs ``--no-sandbox``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from chatd.passwd import hash_password
from tests.support import Twistd, connect, read_until, start_on_a_named_port

CHROMIUM = "/usr/bin/chromium"
WAIT_MS = 10_000
# Run whole on one worker under xdist (tests/conftest.py ONE_WORKER_MODULES): the module's
# tests share one chromium.
pytestmark = pytest.mark.slow

CHEAP_HASH = hash_password("opsecret", n=2**4)
HOSTILE = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>'


class Daemon:
    """A real twistd running chatd with --listen and --web on loopback ports the system
    picks; a restart keeps the web port, since the page reconnects to its own address."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.chat_port = 0
        self.web_port = 0  # 0 until the first run is given one
        self.twistd: Twistd | None = None
        (directory / "motd.txt").write_text("Be kind.\n")
        (directory / "chatd.toml").write_text(f'[operators]\nroot = "{CHEAP_HASH}"\n')

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}/"

    def start(self) -> None:
        # A restart must listen on the port the first run was given (the one place a port
        # is named in advance), which another process may take in between.
        self.twistd, (self.chat_port, self.web_port) = start_on_a_named_port(
            Twistd(["chatd", "--no-echo", "--state", "none",
                    "--listen", "tcp:0:interface=127.0.0.1",
                    "--web", f"tcp:{self.web_port}:interface=127.0.0.1",
                    "--motd", "motd.txt", "--flood-rate", "0", "--config", "chatd.toml"],
                   self.directory).start,
            "chat", "web", seconds=WAIT_MS / 1000)

    def stop(self) -> None:
        if self.twistd is not None:
            self.twistd.stop(seconds=10)
        self.twistd = None


class NcUser:
    """A plain socket, as nc would be."""

    def __init__(self, port: int, nick: str) -> None:
        self.sock = connect(port)
        self.seen = read_until(self.sock, b"Type /help")
        self.say(f"/nick {nick}")
        self.expect(f"is now known as {nick}")

    def say(self, line: str) -> None:
        self.sock.sendall(line.encode() + b"\n")

    def expect(self, text: str) -> None:
        """Waits (with a deadline) for ``text`` in what arrived since the last expect."""
        needle = text.encode()
        if needle not in self.seen:
            self.seen += read_until(self.sock, needle)
        self.seen = self.seen[self.seen.index(needle) + len(needle):]

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox"] if os.geteuid() == 0 else [],
        )
        yield launched
        launched.close()


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    running = Daemon(tmp_path)
    running.start()
    yield running
    running.stop()


def open_page(browser: Browser, daemon: Daemon, **context: Any) -> tuple[Page, list[str]]:
    """A fresh page on the chat, and the list its console and page errors go to."""
    page = browser.new_context(**context).new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(daemon.url)
    expect(page.locator("#status")).to_have_text(f"Connected to 127.0.0.1:{daemon.web_port}",
                                                 timeout=WAIT_MS)
    return page, problems


def type_line(page: Page, line: str) -> None:
    page.keyboard.type(line)
    page.keyboard.press("Enter")


def test_a_browser_and_an_nc_user_chat(browser: Browser, daemon: Daemon, tmp_path: Path) -> None:
    nc = NcUser(daemon.chat_port, "ncuser")
    page, problems = open_page(browser, daemon, viewport={"width": 1100, "height": 640})
    log = page.locator("#log")
    # The same greeting and MOTD as nc, and the keyboard is in the message box.
    expect(log).to_contain_text("Welcome to chatd! You are guest", timeout=WAIT_MS)
    expect(log).to_contain_text("*** | Be kind.")
    assert page.evaluate("document.activeElement.id") == "box"

    type_line(page, "/nick webuser")
    nc.expect("is now known as webuser")
    expect(page.locator("#member-list")).to_contain_text("webuser", timeout=WAIT_MS)
    expect(page.locator("#member-list")).to_contain_text("ncuser")
    assert page.evaluate("localStorage.getItem('chatd.nick')") == "webuser"

    type_line(page, "hello from chromium")
    nc.expect("<webuser> hello from chromium")
    nc.say("hi webuser, welcome")
    mention = page.locator(".line.said.mention", has_text="hi webuser, welcome")
    expect(mention).to_have_count(1, timeout=WAIT_MS)
    nc.say("/msg webuser a private word")
    expect(page.locator(".line.private", has_text="a private word")).to_have_count(
        1, timeout=WAIT_MS)
    nc.say("/describe webuser waves")  # a private /me: the action form, in private
    expect(page.locator(".line.private", has_text="*ncuser* * ncuser waves")).to_have_count(
        1, timeout=WAIT_MS)

    # A hostile line shows as the text it is, and runs nothing.
    nc.say(HOSTILE)
    hostile = page.locator(".line.said .text", has_text="onerror")
    expect(hostile).to_have_text(HOSTILE, timeout=WAIT_MS)
    assert page.locator("#log img, #log script").count() == 0
    assert page.evaluate("window.pwned") is None

    nc.say("/topic the web front-end works")
    expect(page.locator("#topic")).to_have_text("#lobby: the web front-end works",
                                                timeout=WAIT_MS)
    shot = tmp_path / "web.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
    assert problems == []

    # The nick is remembered: a page opened later (same browser profile) takes it again.
    page.context.pages[0].close()
    nc.expect("webuser has left #lobby")
    again = page.context.new_page()
    again.goto(daemon.url)
    nc.expect("is now known as webuser")
    expect(again.locator("#member-list")).to_contain_text("webuser", timeout=WAIT_MS)
    nc.close()


def test_the_policy_stops_inline_script(browser: Browser, daemon: Daemon) -> None:
    page, _ = open_page(browser, daemon)
    blocked = page.evaluate("""() => new Promise((resolve) => {
        document.addEventListener("securitypolicyviolation",
                                  (e) => resolve(e.violatedDirective));
        const s = document.createElement("script");
        s.textContent = "window.inline = 1";
        document.body.append(s);
        setTimeout(() => resolve(window.inline === 1 ? "ran" : "silent"), 2000);
    })""")
    assert blocked.startswith("script-src")


def test_the_page_reconnects_after_a_restart_and_rejoins(
    browser: Browser, daemon: Daemon
) -> None:
    page, _ = open_page(browser, daemon)
    type_line(page, "/nick comeback")
    type_line(page, "/join #dev")
    expect(page.locator("#room-list [aria-current=true]")).to_contain_text("#dev",
                                                                          timeout=WAIT_MS)
    daemon.stop()
    expect(page.locator("#status")).to_contain_text("reconnecting in", timeout=WAIT_MS)
    expect(page.locator("#log")).to_contain_text("Disconnected from the server")
    daemon.start()
    expect(page.locator("#status")).to_have_text(
        f"Connected to 127.0.0.1:{daemon.web_port}", timeout=3 * WAIT_MS)
    nc = NcUser(daemon.chat_port, "watcher")
    deadline = time.monotonic() + WAIT_MS / 1000
    while True:
        nc.say("/who #dev")
        try:
            nc.expect("Users in #dev (1): comeback")
            break
        except (AssertionError, TimeoutError):
            assert time.monotonic() < deadline, "the page did not take its nick and room back"
    nc.close()


def test_a_phone_sized_screen_works_by_keyboard(browser: Browser, daemon: Daemon) -> None:
    page, problems = open_page(browser, daemon, viewport={"width": 375, "height": 667},
                               is_mobile=True, has_touch=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    expect(page.locator("#box")).to_be_visible()
    expect(page.locator("#rooms")).to_be_hidden()
    # Shift+Tab from the message box reaches the page's buttons; Enter opens the room list.
    page.locator("#show-rooms").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#rooms")).to_be_visible()
    expect(page.locator("#show-rooms")).to_have_attribute("aria-expanded", "true")
    page.keyboard.press("Tab")
    page.keyboard.press("Escape")
    assert page.evaluate("document.activeElement.id") == "box"
    type_line(page, "/rooms")
    expect(page.locator("#log")).to_contain_text("Rooms (1):", timeout=WAIT_MS)
    assert problems == []


def test_after_quit_the_page_stays_away_until_asked(browser: Browser, daemon: Daemon) -> None:
    nc = NcUser(daemon.chat_port, "watcher")
    page, problems = open_page(browser, daemon)
    type_line(page, "/nick leaver")
    nc.expect("is now known as leaver")
    other, other_problems = open_page(browser, daemon)
    type_line(other, "/join #dev")
    type_line(other, "/join #lobby")  # came and went: a part, not a quit
    expect(page.locator("#log")).to_contain_text("has left #lobby (joined #dev)",
                                                 timeout=WAIT_MS)
    type_line(page, "/quit see you")
    nc.expect("leaver has left #lobby (see you)")
    expect(other.locator("#log")).to_contain_text("*** leaver has quit (see you)",
                                                  timeout=WAIT_MS)
    expect(page.locator("#status")).to_have_text(
        "You left the chat. Press Enter to join again.", timeout=WAIT_MS)
    # A close frame with its reason arrived (a dropped connection is 1006 with none).
    expect(page.locator("#log")).to_contain_text("*** Disconnected from the server (quit)")
    page.wait_for_timeout(2500)  # longer than the first reconnection delay
    expect(page.locator("#status")).to_have_text("You left the chat. Press Enter to join again.")
    page.keyboard.press("Enter")
    nc.expect("is now known as leaver")  # back, under the remembered nick
    assert problems == [] and other_problems == []
    nc.close()


def test_a_kick_shows_on_the_page_and_it_stays_away(browser: Browser, daemon: Daemon) -> None:
    op = NcUser(daemon.chat_port, "opal")
    op.say("/oper root opsecret")
    op.expect("You are now an operator")
    kicked, problems = open_page(browser, daemon)
    type_line(kicked, "/nick webbob")
    op.expect("is now known as webbob")
    watcher, _ = open_page(browser, daemon)
    expect(watcher.locator("#member-list")).to_contain_text("webbob", timeout=WAIT_MS)
    op.say("/kick webbob spam")
    expect(watcher.locator(".line.left", has_text="webbob has left #lobby (kicked by opal: spam)")
           ).to_have_count(1, timeout=WAIT_MS)
    expect(watcher.locator("#member-list")).not_to_contain_text("webbob", timeout=WAIT_MS)
    expect(kicked.locator("#log")).to_contain_text("*** You have been kicked by opal: spam",
                                                   timeout=WAIT_MS)
    expect(kicked.locator("#status")).to_have_text(
        "You were kicked. Press Enter to join again.", timeout=WAIT_MS)
    kicked.wait_for_timeout(2500)  # longer than the first reconnection delay
    expect(kicked.locator("#status")).to_have_text("You were kicked. Press Enter to join again.")
    assert problems == []
    op.close()

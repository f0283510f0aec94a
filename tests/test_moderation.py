"""Operators and moderation over StringTransport with task.Clock: login, every command,
what the target and the room see, bans by nick and address, expiry, and persistence."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.testing import StringTransport
from twisted.logger import LogEvent, formatEvent, globalLogPublisher
from twisted.python.failure import Failure

from chatd import moderation
from chatd.moderator import Moderator
from chatd.operators import BASE_DELAY, FREE_FAILURES, LOGIN_FAILED, OperatorAuthenticator
from chatd.passwd import hash_password
from chatd.protocol import ChatProtocol
from chatd.service import ChatError
from chatd.store import IChatStore, SQLiteStore
from tests.support import MemoryChat, take_lines

PASSWORD = "hunter2"
CHEAP_HASH = hash_password(PASSWORD, n=2**4)


def at_once(check: Callable[[], bool]) -> defer.Deferred[bool]:
    return defer.maybeDeferred(check)


class ModeratedChat(MemoryChat):
    """MemoryChat with a moderator, and clients connecting from chosen addresses."""

    def __init__(self, store: IChatStore | None = None) -> None:
        super().__init__({"store": store})
        self.authenticator = OperatorAuthenticator(self.clock, {"root": CHEAP_HASH}, at_once)
        self.moderator = Moderator(self.service, self.clock, self.authenticator)
        self.factory.commands.moderator = self.moderator

    def join(self, host: str = "198.51.100.1") -> tuple[ChatProtocol, StringTransport]:
        """A client from ``host`` that got in; its greeting is already read."""
        proto, transport = self.join_raw(host)
        assert proto.user is not None, take_lines(transport)
        take_lines(transport)
        return proto, transport

    def join_raw(self, host: str) -> tuple[ChatProtocol, StringTransport]:
        """A connection attempt from ``host``, admitted or not, with nothing read."""
        self._next_port += 1
        peer: Any = (IPv6Address("TCP", host, self._next_port) if ":" in host
                     else IPv4Address("TCP", host, self._next_port))
        proto = self.factory.buildProtocol(peer)
        assert isinstance(proto, ChatProtocol)
        transport = StringTransport(peerAddress=peer)
        proto.makeConnection(transport)
        return proto, transport

    def operator(self, host: str = "192.0.2.1") -> tuple[ChatProtocol, StringTransport]:
        proto, transport = self.join(host)
        proto.dataReceived(f"/oper root {PASSWORD}\n".encode())
        assert take_lines(transport) == ["*** You are now an operator (root)."]
        return proto, transport


def say(proto: ChatProtocol, line: str) -> None:
    proto.dataReceived(line.encode() + b"\n")


@pytest.fixture
def chat() -> ModeratedChat:
    return ModeratedChat()


@pytest.fixture
def audit_log() -> Any:
    events: list[LogEvent] = []

    def observe(event: LogEvent) -> None:
        if event.get("log_namespace") == "chatd.audit":
            events.append(event)

    globalLogPublisher.addObserver(observe)
    yield lambda: [formatEvent(e) for e in events]
    globalLogPublisher.removeObserver(observe)


# --- Values -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "seconds"), [("10m", 600), ("2h", 7200), ("7d", 604800),
                                               ("90s", 90), ("1h30m", 5400), ("1W", 604800)])
def test_durations(text: str, seconds: int) -> None:
    assert moderation.parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text",
    ["", "10", "m", "10x", "0m", "-5m", "1h 30m", "99999w", "ten", "²m", "٣m", "1" * 5000 + "s"],
)
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        moderation.parse_duration(text)


@pytest.mark.parametrize(
    ("target", "inside", "outside"),
    [
        ("203.0.113.7", "203.0.113.7", "203.0.113.8"),
        ("203.0.113.0/24", "203.0.113.200", "203.0.114.1"),
        ("203.0.113.9/24", "203.0.113.1", "203.0.112.255"),  # host bits are forgiven
        ("2001:db8::1", "2001:db8::1", "2001:db8::2"),
        ("2001:db8::/32", "2001:db8:ffff::1", "2001:db9::1"),
        ("203.0.113.7", "::ffff:203.0.113.7", "::ffff:203.0.113.8"),  # dual-stack peers
        ("::ffff:203.0.113.0/120", "203.0.113.5", "203.0.114.5"),
    ],
)
def test_ban_matching(target: str, inside: str, outside: str) -> None:
    from twisted.internet.task import Clock

    bans = moderation.BanList(Clock())
    bans.add(moderation.Ban(moderation.parse_ban_target(target), "r", "op", 0.0, None))
    assert bans.match(inside) is not None
    assert bans.match(outside) is None


@pytest.mark.parametrize("text", ["bob", "203.0.113.300", "203.0.113.0/33", "::g", ""])
def test_bad_ban_targets(text: str) -> None:
    with pytest.raises(ValueError):
        moderation.parse_ban_target(text)


def test_peer_host() -> None:
    assert moderation.peer_host("203.0.113.7:4000") == "203.0.113.7"
    assert moderation.peer_host("::1:4000") == "::1"
    assert moderation.peer_host("::ffff:10.0.0.1:4000") == "10.0.0.1"
    assert moderation.peer_host("UNIXAddress") is None


# --- Operator login ------------------------------------------------------------------------


def test_oper_right_password(chat: ModeratedChat, audit_log: Any) -> None:
    chat.operator()
    assert any("operator root logged in" in line for line in audit_log())


@pytest.mark.parametrize("line", [f"/oper root {PASSWORD}x", f"/oper nobody {PASSWORD}"])
def test_oper_wrong_name_or_password_gives_one_error(chat: ModeratedChat, line: str,
                                                     audit_log: Any) -> None:
    a, ta = chat.join()
    say(a, line)
    assert take_lines(ta) == [f"*** Error: {LOGIN_FAILED}"]
    say(a, "/kick guest1")
    assert take_lines(ta) == ["*** Error: only operators can do that; see /oper"]
    assert any("failed /oper" in entry for entry in audit_log())
    assert PASSWORD not in "".join(audit_log())


@pytest.mark.parametrize("line", ["/oper", "/oper root"])
def test_oper_usage(chat: ModeratedChat, line: str) -> None:
    a, ta = chat.join()
    say(a, line)
    assert take_lines(ta) == ["*** Error: usage: /oper NAME PASSWORD"]


def test_repeated_failures_from_an_address_are_slowed_down(chat: ModeratedChat) -> None:
    a, ta = chat.join("203.0.113.50")
    for _ in range(FREE_FAILURES):
        say(a, "/oper root wrong")
        assert take_lines(ta) == [f"*** Error: {LOGIN_FAILED}"]
    say(a, f"/oper root {PASSWORD}")  # even the right password now waits
    assert take_lines(ta) == []
    say(a, "/who")  # this connection's next line waits for the check: replies stay in order
    assert take_lines(ta) == []
    same_address, ts = chat.join("203.0.113.50")
    say(same_address, "/oper root another-guess")
    assert take_lines(ts) == ["*** Error: an /oper attempt is already being checked; wait"]
    assert take_lines(ta) == ["*** guest2 has joined #lobby"]
    chat.clock.advance(BASE_DELAY - 0.1)
    assert take_lines(ta) == []
    chat.clock.advance(0.1)
    assert take_lines(ta) == [
        "*** You are now an operator (root).", "*** Users in #lobby (2): guest1, guest2"
    ]
    # Another address was never slowed down.
    b, tb = chat.join("203.0.113.51")
    say(b, f"/oper root {PASSWORD}")
    assert take_lines(tb) == ["*** You are now an operator (root)."]


def test_throttle_doubles_and_is_forgotten(chat: ModeratedChat) -> None:
    auth = chat.authenticator
    delays = []
    for _ in range(FREE_FAILURES + 2):
        delay = auth.delay_for("203.0.113.9")
        delays.append(delay)
        outcomes: list[Any] = []
        auth.login("203.0.113.9", "root", "wrong").addBoth(outcomes.append)
        if delay:
            chat.clock.advance(delay - 0.01)
            assert outcomes == []  # still held back
        chat.clock.advance(0.01)
        # Each attempt is answered once its delay is over, and it is a plain failed login.
        [outcome] = outcomes
        assert isinstance(outcome, Failure) and outcome.check(ChatError), outcome
        assert str(outcome.value) == LOGIN_FAILED
    assert delays == [0.0] * FREE_FAILURES + [BASE_DELAY, BASE_DELAY * 2]
    assert auth.delay_for("203.0.113.9") == BASE_DELAY * 4
    chat.clock.advance(16 * 60)
    assert auth.delay_for("203.0.113.9") == 0


def test_operator_list_is_reconfigurable(chat: ModeratedChat) -> None:
    chat.authenticator.reconfigure({"operators": {}})
    a, ta = chat.join()
    say(a, f"/oper root {PASSWORD}")
    assert take_lines(ta) == [f"*** Error: {LOGIN_FAILED}"]


# --- The commands -----------------------------------------------------------------------


def test_kick(chat: ModeratedChat, audit_log: Any) -> None:
    op, top = chat.operator()
    _bob, tb = chat.join()
    _, tc = chat.join("198.51.100.3")
    take_lines(top), take_lines(tb)
    say(op, "/kick guest2 spamming links")
    assert take_lines(tb) == ["*** You have been kicked by guest1: spamming links"]
    assert tb.disconnecting
    assert take_lines(tc) == ["*** guest2 has left #lobby (kicked by guest1: spamming links)"]
    assert take_lines(top) == ["*** guest2 has left #lobby (kicked by guest1: spamming links)"]
    assert "guest2" not in [u.nick for u in chat.service.users.values()]
    assert any("operator root kicked" in line and "guest2" in line for line in audit_log())


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ("/kick", "usage: /kick NICK [REASON]"),
        ("/kick nobody", 'no one called "nobody" is here'),
        ("/ban", "usage: " + "/ban NICK|ADDRESS|CIDR [DURATION] [REASON]"),
        ("/ban nobody", 'no one called "nobody" is here'),
        ("/unban 203.0.113.1", "203.0.113.1/32 is not banned; see /bans"),
        ("/unban nonsense", '"nonsense" is not an IP address or CIDR block'),
        ("/unban", "usage: /unban ADDRESS|CIDR"),
        ("/mute guest2 forever", '"forever" is not a duration like 10m, 2h or 7d'),
        ("/mute", "usage: /mute NICK [DURATION]"),
        ("/unmute guest2", '"guest2" is not muted'),
        ("/wall", "usage: /wall TEXT"),
        ("/rename guest2", "usage: /rename NICK NEWNICK"),
        ("/rename guest2 guest1", 'nickname "guest1" is already taken'),
        ("/rename guest2 9lives", None),
    ],
)
def test_operator_command_errors_go_to_the_operator_only(
    chat: ModeratedChat, line: str, error: str | None
) -> None:
    op, top = chat.operator()
    _, tb = chat.join()
    take_lines(top)
    say(op, line)
    replies = take_lines(top)
    assert len(replies) == 1 and replies[0].startswith("*** Error: ")
    if error is not None:
        assert replies == [f"*** Error: {error}"]
    assert take_lines(tb) == []


@pytest.mark.parametrize("line", ["/kick guest1", "/ban 203.0.113.1", "/unban 203.0.113.1",
                                  "/bans", "/mute guest1", "/unmute guest1", "/wall hi",
                                  "/rename guest1 x"])
def test_every_operator_command_refuses_non_operators(chat: ModeratedChat, line: str) -> None:
    a, ta = chat.join()
    _, tb = chat.join("198.51.100.2")
    take_lines(ta)
    say(a, line)
    assert take_lines(ta) == ["*** Error: only operators can do that; see /oper"]
    assert take_lines(tb) == []


def test_ban_by_nick_catches_a_reconnect_under_another_nick(chat: ModeratedChat) -> None:
    op, top = chat.operator()
    _, tb = chat.join("203.0.113.66")
    _, tc = chat.join("198.51.100.3")
    take_lines(top), take_lines(tb)
    say(op, "/ban guest2 2h flooding")
    assert take_lines(top)[-1] == (
        "*** Banned 203.0.113.66/32 (until 1970-01-01 02:00 UTC, 2h from now)."
    )
    assert take_lines(tb) == ["*** You have been banned by guest1 for 2h: flooding"]
    assert tb.disconnecting
    assert take_lines(tc) == ["*** guest2 has left #lobby (banned by guest1 for 2h: flooding)"]
    proto, again = chat.join_raw("203.0.113.66")
    assert take_lines(again) == [
        "*** Error: you are banned from this server: flooding "
        "(until 1970-01-01 02:00 UTC, 2h from now)"
    ]
    assert again.disconnecting and proto.user is None
    assert take_lines(tc) == []  # nobody saw a join


def test_ban_by_cidr_removes_everyone_inside_and_spares_the_rest(chat: ModeratedChat) -> None:
    op, _top = chat.operator("192.0.2.1")
    _, inside1 = chat.join("2001:db8::5")
    _, inside2 = chat.join("2001:db8:1::5")
    _, outside = chat.join("2001:db9::5")
    say(op, "/ban 2001:db8::/32 abuse from this network")
    assert inside1.disconnecting and inside2.disconnecting and not outside.disconnecting
    assert chat.join_raw("2001:db8:ff::1")[1].disconnecting
    assert not chat.join_raw("2001:db9::1")[1].disconnecting


def test_timed_ban_expires(chat: ModeratedChat) -> None:
    op, top = chat.operator()
    say(op, "/ban 203.0.113.0/24 10m cool off")
    assert chat.join_raw("203.0.113.4")[1].disconnecting
    chat.clock.advance(599)
    assert chat.join_raw("203.0.113.4")[1].disconnecting
    chat.clock.advance(1)
    _, t = chat.join_raw("203.0.113.4")
    assert not t.disconnecting
    assert take_lines(t)[0].startswith("*** Welcome")
    take_lines(top)
    say(op, "/bans")
    assert take_lines(top) == ["*** Bans (0):"]


def test_bans_lists_who_when_why_and_expiry_and_unban_lifts(chat: ModeratedChat) -> None:
    op, top = chat.operator()
    say(op, "/ban 203.0.113.7 spam")
    chat.clock.advance(60)
    say(op, "/ban 2001:db8::/48 7d probing")
    take_lines(top)
    say(op, "/bans")
    assert take_lines(top) == [
        "*** Bans (2):",
        "*** 203.0.113.7/32 by root on 1970-01-01 00:00 UTC: spam (permanent)",
        "*** 2001:db8::/48 by root on 1970-01-01 00:01 UTC: probing "
        "(until 1970-01-08 00:01 UTC, 7d from now)",
    ]
    say(op, "/unban 203.0.113.7")
    assert take_lines(top) == ["*** Unbanned 203.0.113.7/32."]
    assert not chat.join_raw("203.0.113.7")[1].disconnecting


def test_mute_refuses_lines_but_not_reading_and_follows_the_address(chat: ModeratedChat) -> None:
    op, top = chat.operator()
    bob, tb = chat.join("203.0.113.20")
    _, tc = chat.join("198.51.100.3")
    take_lines(top), take_lines(tb)
    say(op, "/mute guest2 10m")
    assert take_lines(tc) == ["*** guest2 has been muted by guest1 for 10m"]
    assert take_lines(tb) == ["*** guest2 has been muted by guest1 for 10m"]
    say(bob, "hello?")
    say(bob, "/me waves")
    say(bob, "//slash")
    assert take_lines(tb) == ["*** Error: you are muted for 10m more; your line was not sent"] * 3
    assert take_lines(tc) == []
    say(op, "hello all")
    assert take_lines(tb) == ["<guest1> hello all"]  # still reads
    say(bob, "/nick sneaky")
    bob2, tb2 = chat.join("203.0.113.20")  # reconnecting does not help either
    say(bob, "still me")
    say(bob2, "new me")
    assert take_lines(tb2)[-1].startswith("*** Error: you are muted")
    take_lines(tc)
    chat.clock.advance(600)
    say(bob, "free")
    assert take_lines(tc) == ["<sneaky> free"]


def test_mute_and_unmute_are_told_in_the_targets_room_and_to_the_operator(
    chat: ModeratedChat,
) -> None:
    op, top = chat.operator()
    bob, tb = chat.join("203.0.113.20")
    carol, tc = chat.join("198.51.100.3")
    dave, td = chat.join("198.51.100.4")
    say(bob, "/join #side")
    say(carol, "/join #side")
    say(dave, "/join #elsewhere")
    for transport in (top, tb, tc, td):
        take_lines(transport)
    say(op, "/mute guest2 10m")
    notice = "*** guest2 has been muted by guest1 for 10m"
    assert take_lines(tb) == [notice]
    assert take_lines(tc) == [notice]
    assert take_lines(top) == [notice]  # the operator is in #lobby, not #side
    assert take_lines(td) == []  # another room hears nothing of it
    say(op, "/unmute guest2")
    assert take_lines(tc) == ["*** guest2 is no longer muted"]
    assert take_lines(top) == ["*** guest2 is no longer muted"]
    assert take_lines(td) == []


def test_unmute_of_someone_who_left_is_told_to_the_operator_only(chat: ModeratedChat) -> None:
    op, top = chat.operator()
    bob, _ = chat.join("203.0.113.20")
    _, tc = chat.join("198.51.100.3")
    say(op, "/mute guest2")
    bob.transport.loseConnection()
    bob.connectionLost(None)  # type: ignore[arg-type]
    take_lines(top), take_lines(tc)
    say(op, "/unmute guest2")
    assert take_lines(top) == ["*** guest2 is no longer muted"]
    assert take_lines(tc) == []


def test_a_muted_user_cannot_send_private_messages(chat: ModeratedChat) -> None:
    op, top = chat.operator()
    bob, tb = chat.join("203.0.113.20")
    carol, tc = chat.join("198.51.100.3")
    say(carol, "/msg guest2 are you there?")
    take_lines(top), take_lines(tb), take_lines(tc)
    say(op, "/mute guest2")
    take_lines(top), take_lines(tb), take_lines(tc)
    say(bob, "/msg guest3 psst")
    say(bob, "/reply psst")
    say(bob, "/msg guest1 please unmute me")
    assert take_lines(tb) == ["*** Error: you are muted; your line was not sent"] * 3
    assert take_lines(tc) == []
    assert take_lines(top) == []
    say(carol, "/msg guest2 still reading?")  # a muted user still receives them
    assert take_lines(tb) == ["*guest3* still reading?"]


def test_unmute(chat: ModeratedChat) -> None:
    op, _top = chat.operator()
    bob, _tb = chat.join("203.0.113.20")
    _, tc = chat.join("198.51.100.3")
    say(op, "/mute guest2")
    take_lines(tc)
    say(op, "/unmute guest2")
    assert take_lines(tc) == ["*** guest2 is no longer muted"]
    say(bob, "thanks")
    assert take_lines(tc) == ["<guest2> thanks"]


def test_wall_reaches_everyone(chat: ModeratedChat, audit_log: Any) -> None:
    op, top = chat.operator()
    _, tb = chat.join()
    take_lines(top)
    say(op, "/wall restart in 5 minutes")
    assert take_lines(tb) == ["*** [wall from guest1] restart in 5 minutes"]
    assert take_lines(top) == ["*** [wall from guest1] restart in 5 minutes"]
    assert any("operator root sent a wall" in line for line in audit_log())


def test_rename(chat: ModeratedChat) -> None:
    op, top = chat.operator()
    bob, tb = chat.join()
    _, tc = chat.join("198.51.100.3")
    take_lines(top), take_lines(tb)
    say(op, "/rename guest2 Polite")
    assert take_lines(tc) == ["*** guest2 is now known as Polite"]
    assert take_lines(tb) == ["*** guest2 is now known as Polite",
                              "*** guest1 has renamed you to Polite"]
    say(bob, "hi")
    assert take_lines(tc) == ["<Polite> hi"]


# --- Persistence --------------------------------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_bans_and_mutes_survive_a_restart(tmp_path: Path) -> Any:
    from twisted.internet import reactor

    path = str(tmp_path / "state.sqlite3")

    def restarted(at: float = 0) -> ModeratedChat:
        chat = ModeratedChat(SQLiteStore(path, reactor, history_size=10))
        chat.clock.advance(at)
        chat.service.startService()
        return chat

    def stopped(chat: ModeratedChat) -> defer.Deferred[None]:
        """Stops the chat (which closes the store) without waiting for StringTransports,
        which never report their connections closed."""
        stopping = chat.service.stopService()
        chat.clock.advance(chat.service.shutdown_grace)
        return stopping

    first = restarted()
    op, _ = first.operator()
    say(op, "/ban 203.0.113.0/24 1h persistent trouble")
    say(op, "/ban 198.51.100.9 short")
    say(op, "/unban 198.51.100.9")
    first.join("192.0.2.77")
    say(op, "/mute guest2")
    first.join("192.0.2.78")
    say(op, "/mute guest3 30m")
    [banned] = first.moderator.bans.current()
    yield stopped(first)

    second = restarted()
    [restored] = second.moderator.bans.current()
    assert str(restored.network) == "203.0.113.0/24"
    assert (restored.reason, restored.by, restored.created, restored.expires) == (
        banned.reason, banned.by, banned.created, banned.expires)
    assert restored.reason == "persistent trouble"
    assert second.join_raw("203.0.113.1")[1].disconnecting
    quiet, tq = second.join("192.0.2.77")
    say(quiet, "am I free?")
    assert take_lines(tq) == ["*** Error: you are muted; your line was not sent"]
    yield stopped(second)

    # An hour later (by the stored clock) the ban has lifted itself.
    third = restarted()
    third.clock.advance(3600)
    assert not third.join_raw("203.0.113.1")[1].disconnecting
    yield stopped(third)

    # Started after both have expired: they are not taken in, and they leave the file.
    fourth = restarted(at=3601)
    assert not fourth.moderator.bans.current()
    yield stopped(fourth)
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("SELECT count(*) FROM bans").fetchone() == (0,)
        assert db.execute("SELECT nick FROM mutes").fetchall() == [("guest2",)]


@pytest.mark.parametrize(("seconds", "shown"), [
    (0.2, "1s"), (1, "1s"), (59.4, "59s"), (60, "1m"), (61, "1m1s"), (3600, "1h"),
    (3 * 3600 + 59, "3h59s"), (86400 + 3600 + 61, "1d1h"), (2 * 86400 + 60, "2d1m"),
])
def test_durations_show_at_most_two_units(seconds: float, shown: str) -> None:
    assert moderation.format_duration(seconds) == shown

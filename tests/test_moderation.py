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
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.testing import StringTransport
from twisted.logger import LogEvent, formatEvent, globalLogPublisher
from twisted.python.failure import Failure

from chatd import addresses
from chatd.errors import ChatError
from chatd.events import IEventBus
from chatd.moderation import rules as moderation
from chatd.moderation.moderator import Moderator
from chatd.moderation.operators import (
    BASE_DELAY,
    FREE_FAILURES,
    LOGIN_FAILED,
    OperatorAuthenticator,
)
from chatd.passwd import hash_password
from chatd.protocol import ChatProtocol
from chatd.store import IChatStore, SQLiteStore
from tests.support import MemoryChat, take_lines

PASSWORD = "hunter2"
CHEAP_HASH = hash_password(PASSWORD, n=2**4)


def at_once(check: Callable[[], bool]) -> defer.Deferred[bool]:
    return defer.maybeDeferred(check)


class ModeratedChat(MemoryChat):
    """MemoryChat with a moderator, and clients connecting from chosen addresses."""

    def __init__(self, store: IChatStore | None = None, bus: IEventBus | None = None) -> None:
        super().__init__({"store": store, "bus": bus})
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
    """The audit log, and the rate-limited log that failed /oper attempts go to."""
    events: list[LogEvent] = []

    def observe(event: LogEvent) -> None:
        if event.get("log_namespace") in ("chatd.audit", "chatd.ratelog.RateLimitedLog"):
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


@pytest.mark.parametrize(
    ("address", "described", "host"),
    [
        (IPv4Address("TCP", "203.0.113.7", 4000), "203.0.113.7:4000", "203.0.113.7"),
        (IPv6Address("TCP", "::1", 58148), "[::1]:58148", "::1"),
        (IPv6Address("TCP", "::ffff:10.0.0.1", 4000), "[::ffff:10.0.0.1]:4000", "10.0.0.1"),
        (UNIXAddress(None), "unix:", None),
        (UNIXAddress(b"/run/chatd.sock"), "unix:/run/chatd.sock", None),
    ],
)
def test_peers_are_described_for_the_log_and_parsed_back(
    address: Any, described: str, host: str | None
) -> None:
    assert addresses.describe_peer(address) == described
    assert addresses.peer_host(described) == host


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
        # A mistyped DURATION is refused, never taken as the reason of a permanent ban.
        ("/ban 203.0.113.7 10min spam", '"10min" is not a duration like 10m, 2h or 7d'),
        ("/ban 203.0.113.7 2", '"2" is not a duration like 10m, 2h or 7d'),
        ("/ban 203.0.113.7 0m", 'duration "0m" must be more than 0 and at most 10 years'),
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
    assert take_lines(top) == ["*** No bans are in force."]


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


def test_mute_refuses_lines_but_not_reading_and_follows_the_nick(chat: ModeratedChat) -> None:
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
    assert take_lines(tb) == [
        "*** Error: you are muted for 10m more; your nickname was not changed"
    ]
    bob.transport.loseConnection()
    bob.connectionLost(None)  # type: ignore[arg-type]
    bob2, tb2 = chat.join("203.0.113.20")  # back under a fresh guest name: a new person?
    say(bob2, "/nick guest2")  # under the muted nick, muted again
    take_lines(tc), take_lines(tb2)
    say(bob2, "new me")
    assert take_lines(tb2) == ["*** Error: you are muted for 10m more; your line was not sent"]
    assert take_lines(tc) == []
    chat.clock.advance(600)
    say(bob2, "free")
    assert take_lines(tc) == ["<guest2> free"]


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
        chat.moderator.startService()
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
    say(op, "/rename guest2 Renamed")  # the mute follows, and so does the store
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
    quiet, tq = second.join("192.0.2.77")  # guest1: another person, maybe
    say(quiet, "/nick Renamed")
    take_lines(tq)
    say(quiet, "am I free?")
    assert take_lines(tq) == ["*** Error: you are muted; your line was not sent"]
    say(quiet, "/quit")
    take_lines(tq)
    other, to = second.join("192.0.2.77")
    say(other, "/nick guest2")  # the nick it was muted under
    take_lines(to)
    say(other, "and me?")
    assert take_lines(to) == ["*** Error: you are muted; your line was not sent"]
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
        assert db.execute("SELECT count(*) FROM mutes").fetchone() == (1,)  # the lasting one


# --- A shared address (NAT, a LAN party, 127.0.0.1): a rule hits its target only ---------

SHARED = "127.0.0.1"


def test_mute_on_a_shared_address_mutes_that_user_only(chat: ModeratedChat) -> None:
    op, top = chat.operator(SHARED)
    bob, tb = chat.join(SHARED)
    carol, tc = chat.join(SHARED)
    say(op, "/mute guest3")
    take_lines(top), take_lines(tb), take_lines(tc)
    say(op, "still the operator")  # the operator who typed it is not muted
    say(bob, "still bob")  # nor is anyone else at the address
    assert take_lines(tc) == ["<guest1> still the operator", "<guest2> still bob"]
    take_lines(tb)
    say(carol, "and carol?")
    assert take_lines(tc) == ["*** Error: you are muted; your line was not sent"]
    assert take_lines(tb) == []
    # Whoever comes back from there under a nick the muted user had is muted again.
    carol.transport.loseConnection()
    carol.connectionLost(None)  # type: ignore[arg-type]
    again, ta = chat.join(SHARED)
    say(again, "/nick guest3")
    say(again, "it is me")
    assert take_lines(ta)[-1] == "*** Error: you are muted; your line was not sent"


def test_an_operator_is_never_muted_by_a_rule_they_set(chat: ModeratedChat) -> None:
    op, top = chat.operator(SHARED)
    bob, _tb = chat.join(SHARED)
    _, tc = chat.join("198.51.100.3")
    say(op, "/mute guest1")
    assert take_lines(top)[-1] == "*** Error: you cannot mute yourself"
    say(op, "/mute guest2")
    bob.transport.loseConnection()
    bob.connectionLost(None)  # type: ignore[arg-type]
    say(op, "/nick guest2")  # the operator takes the muted nick: their own rule
    take_lines(tc)
    say(op, "I can still talk")
    assert take_lines(tc) == ["<guest2> I can still talk"]
    chat.authenticator.reconfigure({"operators": {"root": CHEAP_HASH, "admin": CHEAP_HASH}})
    other, to = chat.join("192.0.2.9")  # another operator
    say(other, f"/oper admin {PASSWORD}")
    take_lines(to)
    say(other, "/mute guest2")  # a rule someone else set does hold the first one
    take_lines(top)
    say(op, "and now?")
    assert take_lines(top) == ["*** Error: you are muted; your line was not sent"]


def test_ban_by_nick_on_a_shared_address_disconnects_that_user_only(
    chat: ModeratedChat, audit_log: Any
) -> None:
    op, top = chat.operator(SHARED)
    _, tb = chat.join(SHARED)
    _, tc = chat.join(SHARED)
    _, td = chat.join(SHARED)
    take_lines(top), take_lines(tb), take_lines(tc)
    say(op, "/ban guest2 1h spam")
    assert take_lines(top) == [
        "*** guest2 has left #lobby (banned by guest1 for 1h: spam)",
        "*** Banned 127.0.0.1/32 (until 1970-01-01 01:00 UTC, 1h from now).",
        "*** 2 other users at 127.0.0.1 stayed connected; /ban 127.0.0.1 disconnects "
        "everyone there but you",
    ]
    assert take_lines(tb) == ["*** You have been banned by guest1 for 1h: spam"]
    assert tb.disconnecting
    assert not tc.disconnecting and not td.disconnecting and not top.disconnecting
    assert take_lines(tc) == ["*** guest2 has left #lobby (banned by guest1 for 1h: spam)"]
    proto, refused = chat.join_raw(SHARED)  # new connections from the address are refused
    assert refused.disconnecting and proto.user is None
    assert take_lines(refused)[0].startswith("*** Error: you are banned from this server: spam")
    assert any("disconnected=1" in line for line in audit_log())


def test_ban_by_address_disconnects_everyone_there_but_the_operator(chat: ModeratedChat) -> None:
    op, top = chat.operator(SHARED)
    _, tb = chat.join(SHARED)
    _, tc = chat.join(SHARED)
    _, elsewhere = chat.join("198.51.100.3")
    take_lines(top)
    say(op, "/ban 127.0.0.1 everyone out")
    assert tb.disconnecting and tc.disconnecting
    assert not top.disconnecting and not elsewhere.disconnecting
    assert take_lines(top)[-1] == "*** Banned 127.0.0.1/32 (permanent)."
    say(op, "/ban guest1")
    assert take_lines(top) == ["*** Error: you cannot ban yourself"]


# --- Kicks: the kicked nick stays out of that address for --kick-rejoin-delay ------------

KICKED_BACK = "*** Error: you were kicked from this server; you may reconnect in {} seconds"


def test_a_kicked_nick_is_refused_from_that_address_for_the_delay(chat: ModeratedChat) -> None:
    op, top = chat.operator(SHARED)
    alice, ta = chat.join(SHARED)
    say(alice, "/nick alice")
    _, tw = chat.join("198.51.100.3")
    take_lines(top), take_lines(ta)
    say(op, "/kick alice go away")
    assert take_lines(ta) == ["*** You have been kicked by guest1: go away"]
    assert ta.disconnecting
    take_lines(tw)
    # Back from the address: a guest is let in (someone else may share it) ...
    back, tb = chat.join(SHARED)
    chat.clock.advance(10)
    say(back, "/nick alice")  # ... but not under the kicked nick
    assert take_lines(tb) == [KICKED_BACK.format(20), "*** Goodbye."]
    assert tb.disconnecting
    back.connectionLost(None)  # type: ignore[arg-type]
    assert take_lines(tw) == ["*** guest4 has joined #lobby",
                              "*** guest4 has left #lobby (kicked a moment ago)"]
    # Another address may take the nick; so may this one once the delay is over.
    far, tf = chat.join("192.0.2.50")
    say(far, "/nick alice")
    assert take_lines(tf) == ["*** guest5 is now known as alice"]
    say(far, "/quit")
    far.connectionLost(None)  # type: ignore[arg-type]
    chat.clock.advance(20)
    late, tl = chat.join(SHARED)
    say(late, "/nick alice")
    assert take_lines(tl) == ["*** guest6 is now known as alice"]


def test_a_front_end_registering_the_kicked_nick_is_refused(chat: ModeratedChat) -> None:
    op, _ = chat.operator(SHARED)
    chat.join(SHARED)
    say(op, "/kick guest2")
    service = chat.service
    with pytest.raises(ChatError, match="you were kicked from this server; you may "
                                        "reconnect in 30 seconds"):
        service.register(object(), f"{SHARED}:5000", "guest2")  # type: ignore[arg-type]
    assert service.register(object(), "[::1]:5000", "guest2").nick == "guest2"  # type: ignore[arg-type]


def test_the_kick_rejoin_delay_reloads_and_zero_lets_them_back(chat: ModeratedChat) -> None:
    op, _ = chat.operator(SHARED)
    chat.moderator.reconfigure({"kick-rejoin-delay": 0.0, "ipv6-prefix": 64})
    alice, _ = chat.join(SHARED)
    say(alice, "/nick alice")
    say(op, "/kick alice")
    back, tb = chat.join(SHARED)
    say(back, "/nick alice")
    assert take_lines(tb) == ["*** guest3 is now known as alice"]
    chat.moderator.reconfigure({"kick-rejoin-delay": 5.5, "ipv6-prefix": 64})
    say(op, "/kick alice")
    again, ta = chat.join(SHARED)
    say(again, "/nick alice")
    assert take_lines(ta)[0] == KICKED_BACK.format(6)


def test_kick_yourself_is_refused(chat: ModeratedChat) -> None:
    op, top = chat.operator(SHARED)
    say(op, "/kick guest1")
    assert take_lines(top) == ["*** Error: you cannot kick yourself"]
    assert not top.disconnecting


# --- A muted user says nothing others see (issue 10, item 6) -----------------------------


def test_a_muted_user_changes_no_topic_nick_or_away_text_and_quits_without_reason(
    chat: ModeratedChat,
) -> None:
    op, top = chat.operator()
    spammer, ts = chat.join("203.0.113.20")
    carol, tc = chat.join("198.51.100.3")
    say(op, "/mute guest2")
    take_lines(top), take_lines(ts), take_lines(tc)
    say(spammer, "/topic visit evil.example")
    say(spammer, "/nick visit_evil_example")
    say(spammer, "/away visit evil.example")
    assert take_lines(ts) == [
        "*** Error: you are muted; the topic was not changed",
        "*** Error: you are muted; your nickname was not changed",
        "*** Error: you are muted; your away text was not set (/away alone still works)",
    ]
    assert take_lines(tc) == [] and take_lines(top) == []
    assert chat.service.rooms["#lobby"].topic == ""
    say(spammer, "/away")
    assert take_lines(ts) == ["*** You are marked as away: away"]
    say(carol, "/msg guest2 hi")
    assert take_lines(tc) == ["-> *guest2* hi", "*** guest2 is away: away"]
    say(spammer, "/quit visit evil.example")
    spammer.connectionLost(None)  # type: ignore[arg-type]
    assert take_lines(tc) == ["*** guest2 has left #lobby (quit)"]
    assert chat.service.shown_reason(chat.service.find_user("guest3"), "bye") == "bye"


# --- Rough edges (issue 11, item 7) --------------------------------------------------------


def test_unmute_under_the_old_nick_after_a_rename_tells_the_user(chat: ModeratedChat) -> None:
    op, top = chat.operator()
    bob, tb = chat.join("203.0.113.20")
    say(bob, "/join #side")
    say(op, "/mute guest2")
    say(op, "/rename guest2 robert")
    take_lines(top), take_lines(tb)
    say(bob, "renamed, still muted?")
    assert take_lines(tb) == ["*** Error: you are muted; your line was not sent"]
    say(op, "/unmute guest2")
    assert take_lines(tb) == ["*** robert is no longer muted"]
    assert take_lines(top) == ["*** robert is no longer muted"]
    say(bob, "free")
    assert take_lines(tb) == []  # said in #side, where nobody else is; no error
    say(op, "/unmute robert")
    assert take_lines(top) == ['*** Error: "robert" is not muted']


def test_unmute_under_the_new_nick_works_too(chat: ModeratedChat) -> None:
    op, top = chat.operator()
    _bob, tb = chat.join("203.0.113.20")
    say(op, "/mute guest2")
    say(op, "/rename guest2 robert")
    take_lines(top), take_lines(tb)
    say(op, "/unmute robert")
    assert take_lines(tb) == ["*** robert is no longer muted"]


# --- Guessing operator passwords from many addresses (issue 10, item 10) -----------------


def test_many_addresses_cannot_make_many_guesses(audit_log: Any) -> None:
    from twisted.internet.task import Clock

    from chatd.moderation.operators import CHECK_BURST, CHECK_RATE

    clock = Clock()
    checked: list[str] = []

    def verify(password: str, encoded: str) -> bool:
        checked.append(password)
        return False

    auth = OperatorAuthenticator(clock, {"root": CHEAP_HASH}, at_once, verify=verify)
    refused: list[str] = []
    attempts = 0
    # 100 addresses, 300 guesses, spread over 5 seconds (each address's third guess is
    # still free of the per-address delay).
    for step in range(300):
        address = f"10.0.{step % 100}.1"
        d = auth.login(address, "root", f"guess{step}")
        d.addErrback(lambda f: refused.append(str(f.value)))
        attempts += 1
        clock.advance(5 / 300)
    assert attempts == 300
    assert len(checked) <= CHECK_BURST + 5 * CHECK_RATE + 1
    assert len(refused) == 300
    assert refused.count("wrong operator name or password") == len(checked)
    assert "too many /oper attempts on this server; try again in 1 s" in refused
    # Logged through the rate-limited log: a line per check that failed (as far as its
    # limits allow) and one each time the checks run out, not one per guess.
    lines = audit_log()
    failed = [x for x in lines if "failed /oper" in x]
    assert 0 < len(failed) <= len(checked)
    exhausted = [x for x in lines if "/oper checks exhausted" in x]
    assert 1 <= len(exhausted) <= len(checked) - CHECK_BURST + 1  # once each time it runs dry
    assert len(lines) == len(failed) + len(exhausted)
    assert PASSWORD not in "".join(lines)


@pytest_twisted.inlineCallbacks
def test_an_ipv6_peer_is_logged_in_brackets_and_its_address_read_back() -> Any:
    from twisted.internet import endpoints, reactor

    from tests.support import LineClient, RunningDaemon

    logged: list[str] = []

    def observe(event: LogEvent) -> None:
        logged.append(formatEvent(event))

    daemon = RunningDaemon(["--listen", r"tcp6:0:interface=\:\:1", "--no-echo",
                            "--state", "none"])
    globalLogPublisher.addObserver(observe)
    try:
        endpoint = endpoints.TCP6ClientEndpoint(reactor, "::1", daemon.chat_port)
        client = yield endpoints.connectProtocol(endpoint, LineClient())
        yield client.wait_for(r"^\*\*\* Welcome")
        port = client.transport.getHost().port
        assert f"guest1 connected from [::1]:{port}" in logged
        assert daemon.chat.find_user("guest1").host == "::1"  # what bans and kicks use
        client.transport.loseConnection()
        yield client.wait_closed()
    finally:
        globalLogPublisher.removeObserver(observe)
        yield daemon.stop()


def test_ban_and_kick_by_nick_cover_an_ipv6_users_block(chat: ModeratedChat) -> None:
    """One IPv6 user usually holds a whole /64: a new address in it does not walk round
    a ban or a kick by nick. The block is --ipv6-prefix (reloadable)."""
    op, top = chat.operator()
    alice, _ = chat.join("2001:db8:0:1::5")
    say(alice, "/nick alice")
    _, neighbour = chat.join("2001:db8:0:1::6")
    take_lines(top)
    say(op, "/kick alice")
    back, tb = chat.join("2001:db8:0:1::ffff")
    say(back, "/nick alice")
    assert take_lines(tb)[0] == KICKED_BACK.format(30)
    back.connectionLost(None)  # type: ignore[arg-type]
    _, third = chat.join("2001:db8:0:1::7")
    _, elsewhere = chat.join("2001:db8:0:2::5")
    take_lines(top)
    say(op, "/ban guest3 spam")  # the neighbour, in the same /64
    assert take_lines(top)[-2:] == [
        "*** Banned 2001:db8:0:1::/64 (permanent).",
        "*** 1 other user at 2001:db8:0:1::/64 stayed connected; /ban 2001:db8:0:1::/64 "
        "disconnects everyone there but you",
    ]
    assert neighbour.disconnecting and not third.disconnecting and not elsewhere.disconnecting
    assert chat.join_raw("2001:db8:0:1::1234")[1].disconnecting
    assert not chat.join_raw("2001:db8:0:2::1234")[1].disconnecting
    chat.moderator.reconfigure({"kick-rejoin-delay": 30.0, "ipv6-prefix": 128})
    who, exact = chat.join("2001:db8:0:3::1")
    say(who, "/nick exact")
    say(op, "/ban exact")
    assert take_lines(top)[-1] == "*** Banned 2001:db8:0:3::1/128 (permanent)."
    assert exact.disconnecting


@pytest.mark.parametrize(("seconds", "shown"), [
    (0.2, "1s"), (1, "1s"), (59.4, "59s"), (60, "1m"), (61, "1m1s"), (3600, "1h"),
    (3 * 3600 + 59, "3h59s"), (86400 + 3600 + 61, "1d1h"), (2 * 86400 + 60, "2d1m"),
])
def test_durations_show_at_most_two_units(seconds: float, shown: str) -> None:
    assert moderation.format_duration(seconds) == shown

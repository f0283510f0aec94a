"""Moderation as events: a kick is one ``Kicked`` event, rendered per front-end (a line
user's "has left", an IRC KICK, a web ``kicked``), and bans, mutes, kicks and forced renames
made on one process act on another's users.

"Another process" here is a second chat service on the same ``LocalEventBus``: each applies
the other's events as it would from Redis (chatd/events.py), with its own clock, moderator
and users. tests/test_redis_moderation.py does the same with real processes and Redis.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from twisted.internet.testing import StringTransport

from chatd.errors import ChatError, Refused
from chatd.events import (
    Banned,
    Connected,
    Disconnected,
    Event,
    Joined,
    Kicked,
    LocalEventBus,
    Muted,
)
from chatd.irc.factory import IRCFactory
from chatd.irc.render import IRCFormatter
from chatd.text import nick_key
from chatd.web.json_wire import JSON_FORMATTER
from chatd.wire import LINE_FORMATTER
from tests.support import take_lines
from tests.test_irc_protocol import MemoryIRC, send
from tests.test_moderation import PASSWORD, ModeratedChat, say
from tests.test_moderation import audit_log as audit_log  # a fixture

KICK = Kicked("bob", "alice", "spam", "#dev #lobby")


# --- The event and its renderings ------------------------------------------------------------


def test_a_kick_renders_for_line_users_as_before() -> None:
    assert LINE_FORMATTER.format(KICK) == b"*** You have been kicked by alice: spam\r\n"
    room_copy = Kicked("bob", "alice", "spam", "#dev #lobby", room="#dev")
    assert LINE_FORMATTER.format(room_copy) == (
        b"*** bob has left #dev (kicked by alice: spam)\r\n")


def test_a_kick_renders_for_irc_as_kick() -> None:
    irc = IRCFormatter("chatd")
    room_copy = Kicked("bob", "alice", "spam", "#dev #lobby", room="#dev")
    assert irc.format(room_copy) == b":alice!alice@chatd KICK #dev bob :spam\r\n"
    assert irc.format(KICK).split(b"\r\n")[:-1] == [
        b":alice!alice@chatd KICK #dev bob :spam",
        b":alice!alice@chatd KICK #lobby bob :spam",
        b":chatd NOTICE * :You have been kicked by alice: spam",
    ]


def test_a_kick_renders_for_the_web_as_kicked() -> None:
    room_copy = Kicked("bob", "alice", "spam", "#dev #lobby", room="#dev")
    assert json.loads(JSON_FORMATTER.format(room_copy)) == {
        "type": "kicked", "room": "#dev", "nick": "bob", "by": "alice", "reason": "spam"}
    assert json.loads(JSON_FORMATTER.format(KICK))["rooms"] == ["#dev", "#lobby"]


# --- One process ------------------------------------------------------------------------------


@pytest.fixture
def irc() -> MemoryIRC:
    return MemoryIRC()


def oper(chat: MemoryIRC, nick: str) -> tuple[Any, StringTransport]:
    proto, transport = chat.irc_user(nick)
    send(proto, "OPER root hunter2")
    take_lines(transport)
    return proto, transport


def test_a_kick_is_one_event_and_the_user_leaves_every_room(irc: MemoryIRC) -> None:
    published: list[Event] = []
    irc.service.bus.subscribe(published.append)
    alice, alice_t = oper(irc, "alice")
    bob, bob_t = irc.irc_user("bob")
    carol, carol_t = irc.irc_user("carol")
    for proto in (alice, bob, carol):
        send(proto, "JOIN #lobby,#dev")
    take_lines(alice_t), take_lines(bob_t), take_lines(carol_t)
    del published[:]
    send(alice, "KICK #lobby bob :spam")
    # One kick, then (its delivery closing bob's connection) bob is gone; no Left.
    assert sorted(published, key=lambda e: isinstance(e, Disconnected)) == [
        Kicked("bob", "alice", "spam", "#dev #lobby", "127.0.0.1", 30.0), Disconnected("bob")]
    for room in irc.service.rooms.values():
        assert "bob" not in {u.nick for u in room.members}
    assert nick_key("bob") not in irc.service.users
    # IRC members see a KICK from each room they shared, never a QUIT.
    assert take_lines(carol_t) == [":alice!alice@chatd KICK #dev bob :spam",
                                   ":alice!alice@chatd KICK #lobby bob :spam"]
    assert take_lines(bob_t) == [":alice!alice@chatd KICK #dev bob :spam",
                                 ":alice!alice@chatd KICK #lobby bob :spam",
                                 ":chatd NOTICE * :You have been kicked by alice: spam"]
    assert bob_t.disconnecting


def test_the_irc_kick_command_is_the_moderators_kick(irc: MemoryIRC, audit_log: Any) -> None:
    alice, _ = oper(irc, "alice")
    bob, _ = irc.irc_user("bob")
    send(bob, "JOIN #lobby")
    send(alice, "JOIN #lobby")
    send(alice, "KICK #lobby bob :go")
    assert any("operator root kicked" in line and "bob" in line for line in audit_log())
    # The moderator's rejoin delay holds: bob may not come back at once.
    again, again_t = irc.irc_connect()
    send(again, "NICK bob", "USER bob 0 * :Bob")
    assert any("you were kicked from this server" in line for line in take_lines(again_t))


def test_line_users_see_what_they_saw_before(irc: MemoryIRC) -> None:
    alice, alice_t = oper(irc, "alice")
    _, bob_t = irc.line_user("bob")
    _, carol_t = irc.line_user("carol")
    send(alice, "JOIN #lobby")
    take_lines(alice_t), take_lines(bob_t), take_lines(carol_t)
    send(alice, "KICK #lobby bob :spam")
    assert take_lines(bob_t) == ["*** You have been kicked by alice: spam"]
    assert take_lines(carol_t) == ["*** bob has left #lobby (kicked by alice: spam)"]
    assert take_lines(alice_t) == [":alice!alice@chatd KICK #lobby bob :spam"]


# --- Two processes on one bus -----------------------------------------------------------------


class Pair:
    """Process A, with an operator, and process B, sharing one bus."""

    def __init__(self) -> None:
        bus = LocalEventBus()
        self.a = ModeratedChat(bus=bus)
        self.b = ModeratedChat(bus=bus)
        self.op, self.op_t = self.a.operator()
        say(self.op, "/nick opal")
        self.bob, self.bob_t = self.b.join("198.51.100.7")
        say(self.bob, "/nick bob")
        self.carol, self.carol_t = self.b.join("198.51.100.8")
        say(self.carol, "/nick carol")
        for transport in (self.op_t, self.bob_t, self.carol_t):
            take_lines(transport)

    def both(self) -> tuple[ModeratedChat, ModeratedChat]:
        return self.a, self.b


@pytest.fixture
def pair() -> Pair:
    return Pair()


def test_a_kick_reaches_a_user_of_another_process(pair: Pair, audit_log: Any) -> None:
    say(pair.op, "/kick bob spam")
    assert take_lines(pair.bob_t) == ["*** You have been kicked by opal: spam"]
    assert pair.bob_t.disconnecting
    assert take_lines(pair.carol_t) == ["*** bob has left #lobby (kicked by opal: spam)"]
    assert take_lines(pair.op_t) == ["*** bob has left #lobby (kicked by opal: spam)"]
    assert nick_key("bob") not in pair.b.service.users
    assert pair.a.service.remote.get("bob") is None
    assert "bob" not in pair.a.service.rooms["#lobby"].remote_members
    # The rejoin delay holds on both processes, from bob's address.
    for chat in pair.both():
        with pytest.raises(Refused):
            chat.moderator.check_nick("198.51.100.7", nick_key("bob"))
        chat.moderator.check_nick("198.51.100.9", nick_key("bob"))  # elsewhere: fine
    # One audit line, on the operator's process.
    assert len([line for line in audit_log() if "operator root kicked" in line]) == 1


def test_a_ban_by_nick_reaches_another_process(pair: Pair) -> None:
    say(pair.op, "/ban bob 1h spam")
    assert take_lines(pair.op_t)[-1].startswith("*** Banned 198.51.100.7/32 (until ")
    assert take_lines(pair.bob_t) == ["*** You have been banned by opal for 1h: spam"]
    assert pair.bob_t.disconnecting
    assert not pair.carol_t.disconnecting  # the same rule as one process: bob alone
    for chat in pair.both():
        with pytest.raises(ChatError, match="you are banned"):
            chat.moderator.check_admission("198.51.100.7:5000")
    say(pair.carol, "/oper root hunter2")
    take_lines(pair.carol_t)
    say(pair.carol, "/bans")
    lines = take_lines(pair.carol_t)
    assert lines[0] == "*** Bans (1):" and lines[1].startswith("*** 198.51.100.7/32 by root")
    # Expiring rules expire everywhere.
    for chat in pair.both():
        chat.clock.advance(3601)
        chat.moderator.check_admission("198.51.100.7:5000")


def test_a_ban_by_address_and_unban_reach_another_process(pair: Pair) -> None:
    say(pair.op, "/ban 198.51.100.0/24 raid")
    assert pair.bob_t.disconnecting and pair.carol_t.disconnecting
    assert take_lines(pair.bob_t) == ["*** You have been banned by opal for good: raid"]
    say(pair.op, "/unban 198.51.100.0/24")
    for chat in pair.both():
        chat.moderator.check_admission("198.51.100.7:5000")
        assert chat.moderator.bans.current() == []


def test_a_mute_and_unmute_reach_another_process(pair: Pair) -> None:
    say(pair.op, "/mute bob 10m")
    assert take_lines(pair.bob_t) == ["*** bob has been muted by opal for 10m"]
    say(pair.bob, "hello?")
    assert take_lines(pair.bob_t) == ["*** Error: you are muted for 10m more; your line was "
                                      "not sent"]
    say(pair.carol, "/oper root hunter2")
    take_lines(pair.carol_t)
    say(pair.carol, "/mutes")
    lines = take_lines(pair.carol_t)
    assert lines[0] == "*** Mutes (1):"
    assert lines[1].startswith("*** bob by root on ") and lines[1].endswith("(for 10m more)")
    say(pair.op, "/unmute bob")
    assert take_lines(pair.bob_t) == ["*** bob is no longer muted"]
    say(pair.bob, "free")
    assert take_lines(pair.carol_t)[-1] == "<bob> free"


def test_a_forced_rename_reaches_another_process(pair: Pair) -> None:
    say(pair.op, "/mute bob")
    say(pair.op, "/rename bob robert")
    assert pair.bob.user is not None and pair.bob.user.nick == "robert"
    lines = take_lines(pair.bob_t)
    assert "*** bob is now known as robert" in lines
    assert lines[-1] == "*** opal has renamed you to robert"
    assert pair.a.service.remote.get("robert") is not None
    # The mute followed the user to the new nick on both processes.
    say(pair.bob, "hi")
    assert take_lines(pair.bob_t)[-1].startswith("*** Error: you are muted")
    assert pair.a.moderator.mutes.match(nick_key("robert")) is not None


def test_connected_and_joined_carry_where_the_user_connects_from(pair: Pair) -> None:
    remote = pair.a.service.remote.get("bob")
    assert remote is not None and remote.where == "198.51.100.7"
    # Another process's user in no room (an IRC user who joined nothing), and one known
    # from a join alone (a snapshot's member, say).
    pair.a.service._received(Connected("dan", "elsewhere", where="203.0.113.9"))
    pair.a.service._received(Joined("#x", "erin", "elsewhere", where="203.0.113.10"))
    assert [pair.a.service.remote.by_key[nick].where for nick in ("dan", "erin")] == [
        "203.0.113.9", "203.0.113.10"]
    assert Joined("#a", "bob", where="1.2.3.4") == Joined("#a", "bob")  # never compared


def test_the_operator_is_spared_by_a_ban_of_their_own_address(pair: Pair) -> None:
    say(pair.op, "/ban 192.0.2.0/24 all of them")
    assert not pair.op_t.disconnecting


def test_an_irc_kick_of_a_member_on_another_process(pair: Pair) -> None:
    irc = IRCFactory(pair.a.service, pair.a.policy, commands=pair.a.factory.commands)
    alice, alice_t = pair.a.connect_to(irc)
    send(alice, "NICK alice", "USER alice 0 * :Alice", f"OPER root {PASSWORD}",
         "JOIN #lobby")
    take_lines(alice_t), take_lines(pair.bob_t)
    send(alice, "KICK #lobby bob :spam")
    assert take_lines(alice_t) == [":alice!alice@chatd KICK #lobby bob :spam"]
    assert take_lines(pair.bob_t) == ["*** You have been kicked by alice: spam"]
    assert pair.bob_t.disconnecting


# --- A rename in flight: the operator's process named the user by the nick they had -----------


def renamed_while_the_rule_was_on_its_way(pair: Pair) -> str:
    """bob renames himself on B; A made its event before it heard of it."""
    say(pair.bob, "/nick bobby")
    take_lines(pair.bob_t), take_lines(pair.carol_t)
    return pair.a.service.origin


def test_a_kick_made_before_the_user_renamed_still_kicks_them(pair: Pair) -> None:
    a = renamed_while_the_rule_was_on_its_way(pair)
    pair.b.service._received(Kicked("bob", "opal", "spam", "#lobby", "198.51.100.7",
                                    pair.b.clock.seconds() + 30, origin=a))
    assert "*** You have been kicked by opal: spam" in take_lines(pair.bob_t)
    assert pair.bob_t.disconnecting
    assert take_lines(pair.carol_t) == ["*** bobby has left #lobby (kicked by opal: spam)"]
    assert nick_key("bobby") not in pair.b.service.users


def test_a_ban_by_nick_made_before_the_user_renamed_still_disconnects_them(pair: Pair) -> None:
    a = renamed_while_the_rule_was_on_its_way(pair)
    pair.b.service._received(Banned("198.51.100.7/32", "spam", "root", "opal",
                                    pair.b.clock.seconds(), nick="bob", origin=a))
    assert pair.bob_t.disconnecting
    assert not pair.carol_t.disconnecting


def test_a_mute_made_before_the_user_renamed_still_mutes_them(pair: Pair) -> None:
    a = renamed_while_the_rule_was_on_its_way(pair)
    pair.b.service._received(Muted("bob", "bob", "198.51.100.7", "root",
                                   pair.b.clock.seconds(), origin=a))
    say(pair.bob, "can you hear me")
    assert take_lines(pair.bob_t)[-1].startswith("*** Error: you are muted")
    assert not [line for line in take_lines(pair.carol_t) if "can you hear me" in line]
    assert pair.a.moderator.mutes.match(nick_key("bobby")) is not None  # everywhere


def test_a_nick_given_up_and_taken_elsewhere_names_the_one_who_has_it_now(
        pair: Pair) -> None:
    """bob became bobby on B, and dan on A took "bob": a mute of "bob" is dan's alone."""
    renamed_while_the_rule_was_on_its_way(pair)
    dan, _ = pair.a.join("203.0.113.4")
    say(dan, "/nick bob")
    say(pair.op, "/mute bob")
    say(pair.bob, "still free")
    assert take_lines(pair.carol_t)[-1] == "<bobby> still free"
    assert pair.b.moderator.mutes.match(nick_key("bobby")) is None

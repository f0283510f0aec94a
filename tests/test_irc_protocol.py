"""The IRC front-end over StringTransport with task.Clock: registration, rooms, talk both
ways with line users, queries, operators, liveness and limits."""

from __future__ import annotations

import re

import pytest
from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from chatd.events import AwayChanged, Connected, Disconnected, Joined
from chatd.irc.factory import IRCFactory
from chatd.irc.message import MAX_LINE
from chatd.irc.protocol import IRCProtocol
from chatd.moderation.moderator import Moderator
from chatd.moderation.operators import OperatorAuthenticator
from chatd.passwd import hash_password
from chatd.protocol import ChatProtocol
from tests.support import MemoryChat, take_lines
from tests.test_fanout import CountingTransport

PASSWORD = "hunter2"


class MemoryIRC(MemoryChat):
    """MemoryChat (line users) plus an IRC front-end on the same service and clock."""

    def __init__(self, motd: tuple[str, ...] = (), **limits: object) -> None:
        super().__init__({"motd": motd}, **limits)
        self.authenticator = OperatorAuthenticator(
            self.clock, {"root": hash_password(PASSWORD, n=2**4)}, defer.maybeDeferred)
        self.factory.commands.moderator = Moderator(self.service, self.clock,
                                                    self.authenticator)
        self.irc = IRCFactory(self.service, self.policy, commands=self.factory.commands)

    def irc_connect(self) -> tuple[IRCProtocol, StringTransport]:
        proto, transport = self.connect_to(self.irc)
        assert isinstance(proto, IRCProtocol)
        return proto, transport

    def irc_user(self, nick: str) -> tuple[IRCProtocol, StringTransport]:
        """A registered IRC client; what registration sent is already read."""
        proto, transport = self.irc_connect()
        send(proto, f"NICK {nick}", f"USER {nick} 0 * :{nick.title()} Person")
        lines = take_lines(transport)
        assert lines[0] == f":chatd 001 {nick} :Welcome to the chatd IRC network " \
                           f"{nick}!{nick}@chatd", lines
        return proto, transport

    def bob_and_alice_in_lobby(
        self,
    ) -> tuple[ChatProtocol, StringTransport, IRCProtocol, StringTransport]:
        """Line user bob and IRC user alice in #lobby, with what they were sent read."""
        bob, bob_t = self.line_user("bob")
        alice, alice_t = self.irc_user("alice")
        send(alice, "JOIN #lobby")
        take_lines(alice_t)
        take_lines(bob_t)
        return bob, bob_t, alice, alice_t

    def line_user(self, nick: str) -> tuple[ChatProtocol, StringTransport]:
        proto, transport = self.connect()
        proto.dataReceived(f"/nick {nick}\n".encode())
        take_lines(transport)
        return proto, transport


def send(proto: IRCProtocol | ChatProtocol, *lines: str) -> None:
    proto.dataReceived("".join(line + "\r\n" for line in lines).encode())


@pytest.fixture
def chat() -> MemoryIRC:
    return MemoryIRC()


# --- Registration ------------------------------------------------------------------------------


def test_registration_burst(chat: MemoryIRC) -> None:
    chat.service.motd = ["Be nice."]
    proto, transport = chat.irc_connect()
    send(proto, "NICK alice", "USER alice 0 * :Alice Liddell")
    lines = take_lines(transport)
    assert [line.split(" ")[1] for line in lines[:4]] == ["001", "002", "003", "004"]
    isupport = " ".join(line for line in lines if " 005 " in line)
    for token in ("CHANTYPES=#", "NICKLEN=24", "CHANNELLEN=33", "TOPICLEN=300",
                  "CASEMAPPING=rfc7613", "NETWORK=chatd", "PREFIX=(o)@"):
        assert f" {token} " in isupport
    assert ":chatd 375 alice :- chatd Message of the day - " in lines
    assert ":chatd 372 alice :- Be nice." in lines
    assert ":chatd 376 alice :End of /MOTD command." in lines
    assert proto.user is not None and proto.user.nick == "alice"
    assert proto.user.rooms == {}  # registration is not presence: no room until JOIN


def test_no_motd_is_422(chat: MemoryIRC) -> None:
    proto, transport = chat.irc_connect()
    send(proto, "USER a 0 * :A", "NICK alice")  # either order
    assert ":chatd 422 alice :MOTD File is missing" in take_lines(transport)


def test_cap_negotiation_holds_registration_until_end(chat: MemoryIRC) -> None:
    proto, transport = chat.irc_connect()
    send(proto, "CAP LS 302", "NICK alice", "USER alice 0 * :Alice")
    assert take_lines(transport) == [":chatd CAP * LS :server-time"]
    assert proto.user is None
    send(proto, "CAP REQ :server-time")
    assert take_lines(transport) == [":chatd CAP alice ACK :server-time"]
    send(proto, "CAP END")
    assert take_lines(transport)[0].startswith(":chatd 001 alice ")
    assert proto.user is not None and proto.user.timestamps


def test_commands_before_registration_get_451(chat: MemoryIRC) -> None:
    proto, transport = chat.irc_connect()
    send(proto, "JOIN #lobby", "PING x")
    assert take_lines(transport) == [":chatd 451 * :You have not registered",
                                     ":chatd PONG chatd :x"]


def test_a_nick_anyone_holds_is_433_whatever_their_front_end(chat: MemoryIRC) -> None:
    chat.line_user("bob")
    chat.irc_user("carol")
    proto, transport = chat.irc_connect()
    send(proto, "NICK BOB", "NICK carol", "NICK chatd", "USER x 0 * :x")
    assert take_lines(transport) == [
        ':chatd 433 * BOB :nickname "BOB" is already taken',
        ':chatd 433 * carol :nickname "carol" is already taken',
        ':chatd 432 * chatd :nickname "chatd" is reserved',
    ]
    assert proto.user is None


def test_a_look_alike_of_a_nick_in_use_is_433(chat: MemoryIRC) -> None:
    chat.line_user("alice")
    proto, transport = chat.irc_connect()
    send(proto, "NICK AIice")  # capital i for the l
    assert take_lines(transport) == [
        ':chatd 433 * AIice :nickname "AIice" looks too much like "alice", who is here']


def test_a_nick_chatd_refuses_is_432(chat: MemoryIRC) -> None:
    proto, transport = chat.irc_connect()
    send(proto, "NICK 9lives", "NICK [away]")
    lines = take_lines(transport)
    assert lines[0].startswith(":chatd 432 * 9lives :invalid nickname")
    assert lines[1].startswith(":chatd 432 * [away] :invalid nickname")


def test_a_nick_taken_between_nick_and_user_is_433_at_registration(chat: MemoryIRC) -> None:
    proto, transport = chat.irc_connect()
    send(proto, "NICK dave")
    chat.line_user("dave")
    send(proto, "USER dave 0 * :Dave")
    assert take_lines(transport) == [':chatd 433 dave dave :nickname "dave" is already taken']
    send(proto, "NICK dave2")
    assert take_lines(transport)[0].startswith(":chatd 001 dave2 ")


def test_connections_share_the_ping_and_registration_timers(chat: MemoryIRC) -> None:
    """A connection's PING and registration deadlines are entries on the factory's two
    shared timers (chatd/idle.py), not a DelayedCall each (about 600 bytes a connection),
    and a lost connection leaves no deadline and no timer behind."""
    before = len(chat.clock.getDelayedCalls())
    clients = [chat.irc_connect()]
    with_one = len(chat.clock.getDelayedCalls())
    assert with_one > before  # the shared timers are set
    clients += [chat.irc_connect() for _ in range(9)]
    assert len(chat.clock.getDelayedCalls()) == with_one
    for i, (proto, _transport) in enumerate(clients[:5]):
        send(proto, f"NICK n{i}", f"USER n{i} 0 * :N")
    chat.clock.advance(chat.irc.ping_interval)  # the five unregistered closed, the rest pinged
    assert [take_lines(t)[-1] for _p, t in clients[:5]] == ["PING :chatd"] * 5
    for proto, _transport in clients[5:]:
        proto.connectionLost()  # closed: gone, with its edge's deadline to close by
    assert len(chat.clock.getDelayedCalls()) <= with_one
    for proto, _transport in clients[:5]:
        proto.connectionLost()
    assert len(chat.irc.ping_timers) == len(chat.irc.registration_timers) == 0
    assert len(chat.clock.getDelayedCalls()) == before


def test_registration_times_out(chat: MemoryIRC) -> None:
    proto, transport = chat.irc_connect()
    send(proto, "NICK slow")
    chat.clock.advance(chat.irc.registration_timeout)
    assert take_lines(transport) == ["ERROR :Closing Link: 127.0.0.1 (Registration timed out)"]
    assert transport.disconnecting


# --- Rooms and talk with line users -----------------------------------------------------------


def test_join_several_rooms_and_talk_with_line_users(chat: MemoryIRC) -> None:
    bob, bob_t = chat.line_user("bob")  # in #lobby, the line front-end's default room
    alice, alice_t = chat.irc_user("alice")
    send(alice, "JOIN #lobby,#dev")
    assert take_lines(alice_t) == [
        ":alice!alice@chatd JOIN :#lobby",
        ":chatd 353 alice = #lobby :alice bob",
        ":chatd 366 alice #lobby :End of /NAMES list.",
        ":alice!alice@chatd JOIN :#dev",
        ":chatd 353 alice = #dev :alice",
        ":chatd 366 alice #dev :End of /NAMES list.",
    ]
    assert take_lines(bob_t) == ["*** alice has joined #lobby"]
    send(bob, "hello from nc")
    assert take_lines(alice_t) == [":bob!bob@chatd PRIVMSG #lobby :hello from nc"]
    send(alice, "PRIVMSG #lobby :\x02hi\x02 \x0304bob\x03")
    assert take_lines(bob_t) == ["<alice> hi bob"]
    send(alice, "PRIVMSG #dev :nobody here but me")
    assert take_lines(bob_t) == []
    send(alice, "PRIVMSG #lobby :\x01ACTION waves\x01")
    assert take_lines(bob_t) == ["* alice waves"]
    send(bob, "/me waves back")
    assert take_lines(alice_t) == [":bob!bob@chatd PRIVMSG #lobby :\x01ACTION waves back\x01"]
    assert take_lines(alice_t) == []


def test_private_messages_cross_both_ways(chat: MemoryIRC) -> None:
    bob, bob_t = chat.line_user("bob")
    alice, alice_t = chat.irc_user("alice")
    send(alice, "PRIVMSG bob :psst")
    assert take_lines(bob_t) == ["*alice* psst"]
    send(bob, "/msg alice hi there")
    assert take_lines(alice_t) == [":bob!bob@chatd PRIVMSG alice :hi there"]
    send(bob, "/away lunch")
    send(alice, "PRIVMSG bob :still there?", "PRIVMSG nobody :hello")
    assert take_lines(alice_t) == [":chatd 301 alice bob :lunch",
                                   ":chatd 401 alice nobody :No such nick/channel"]


def test_a_private_action_stays_an_action_on_every_front_end(chat: MemoryIRC) -> None:
    bob, bob_t = chat.line_user("bob")
    alice, alice_t = chat.irc_user("alice")
    _carol, carol_t = chat.irc_user("carol")
    send(alice, "PRIVMSG bob :\x01ACTION waves \x02hi\x02\x01")
    assert take_lines(bob_t) == ["*alice* * alice waves hi"]
    send(alice, "PRIVMSG carol :\x01ACTION winks\x01")
    assert take_lines(carol_t) == [":alice!alice@chatd PRIVMSG carol :\x01ACTION winks\x01"]
    send(alice, "PRIVMSG carol :* alice winks")  # plain text that looks like one stays text
    assert take_lines(carol_t) == [":alice!alice@chatd PRIVMSG carol :* alice winks"]
    # A long one is split like any text, every piece an action.
    send(alice, "PRIVMSG carol :\x01ACTION " + "dances " * 69 + "\x01")
    pieces = take_lines(carol_t)
    assert len(pieces) == 2
    for piece in pieces:
        assert piece.startswith(":alice!alice@chatd PRIVMSG carol :\x01ACTION dances")
        assert piece.endswith("\x01")
    # A reply goes back as a plain private message.
    send(bob, "/reply hello")
    assert take_lines(alice_t) == [":bob!bob@chatd PRIVMSG alice :hello"]
    assert take_lines(bob_t) == ["-> *alice* hello"]
    send(bob, "/describe alice nods")  # a line user's private action, as IRC shows one
    assert take_lines(alice_t) == [":bob!bob@chatd PRIVMSG alice :\x01ACTION nods\x01"]
    assert take_lines(bob_t) == ["-> *alice* * bob nods"]


def test_an_irc_read_of_many_lines_fans_out_as_one_block() -> None:
    """A PRIVMSG run in one read is held and delivered as one block (chatd/fanout.py), as a
    line user's paste is: one pick of recipients and one write each, not one per line."""
    chat = MemoryIRC(flood_rate=0)
    peer = IPv4Address("TCP", "127.0.0.1", 41000)
    bob = chat.factory.buildProtocol(peer)
    bob_t = CountingTransport(peerAddress=peer)
    bob.makeConnection(bob_t)
    send(bob, "/nick bob")
    carol, carol_t = chat.irc_user("carol")
    alice, _ = chat.irc_user("alice")
    send(alice, "JOIN #lobby")
    send(carol, "JOIN #lobby")
    take_lines(bob_t)
    take_lines(carol_t)
    broadcasts = []
    real = chat.irc.broadcast
    chat.irc.broadcast = lambda data, clients: (broadcasts.append(data), real(data, clients))
    bob_t.writes = 0
    send(alice, *(f"PRIVMSG #lobby :line {i}" for i in range(50)),
         "PRIVMSG #lobby :\x01ACTION waves\x01", "PRIVMSG bob :psst")
    assert bob_t.writes == 2  # the run of 51 lines, then the private message
    assert take_lines(bob_t) == [*(f"<alice> line {i}" for i in range(50)), "* alice waves",
                                 "*alice* psst"]
    assert len(broadcasts) == 1  # carol's copy rendered once for the whole run
    assert take_lines(carol_t) == [
        *(f":alice!alice@chatd PRIVMSG #lobby :line {i}" for i in range(50)),
        ":alice!alice@chatd PRIVMSG #lobby :\x01ACTION waves\x01"]


def test_messages_to_rooms_one_is_not_in(chat: MemoryIRC) -> None:
    alice, alice_t = chat.irc_user("alice")
    send(alice, "PRIVMSG #lobby :hi", "NOTICE #lobby :hi", "PRIVMSG", "PRIVMSG #lobby")
    assert take_lines(alice_t) == [
        ":chatd 404 alice #lobby :Cannot send to channel (you are not in it)",
        ":chatd 411 alice :No recipient given (PRIVMSG)",
        ":chatd 412 alice :No text to send",
    ]


def test_part_quit_nick_and_topic_reach_line_users(chat: MemoryIRC) -> None:
    _bob, bob_t = chat.line_user("bob")
    alice, alice_t = chat.irc_user("alice")
    send(alice, "JOIN #lobby", "JOIN #dev")
    take_lines(alice_t)
    take_lines(bob_t)
    send(alice, "TOPIC #lobby :release day")
    assert take_lines(bob_t) == ["*** alice set the topic of #lobby to: release day"]
    assert take_lines(alice_t) == [":alice!alice@chatd TOPIC #lobby :release day"]
    send(alice, "NICK alicia")
    assert take_lines(bob_t) == ["*** alice is now known as alicia"]
    assert take_lines(alice_t) == [":alice!alice@chatd NICK :alicia"]
    send(alice, "PART #lobby :off to work")
    assert take_lines(bob_t) == ["*** alicia has left #lobby (off to work)"]
    assert take_lines(alice_t) == [":alicia!alicia@chatd PART #lobby :off to work"]
    send(alice, "JOIN #lobby")
    take_lines(bob_t)
    take_lines(alice_t)
    send(alice, "QUIT :bye now")
    assert take_lines(alice_t) == ["ERROR :Closing Link: 127.0.0.1 (Quit: bye now)"]
    alice.connectionLost()
    assert take_lines(bob_t) == ["*** alicia has left #lobby (bye now)"]


def test_line_users_events_reach_irc(chat: MemoryIRC) -> None:
    alice, alice_t = chat.irc_user("alice")
    send(alice, "JOIN #lobby")
    take_lines(alice_t)
    bob, _bob_t = chat.line_user("bob")
    assert take_lines(alice_t) == [":guest1!guest1@chatd JOIN :#lobby",
                                   ":guest1!guest1@chatd NICK :bob"]
    send(bob, "/topic new topic")
    assert take_lines(alice_t) == [":bob!bob@chatd TOPIC #lobby :new topic"]
    send(bob, "/join #dev")
    assert take_lines(alice_t) == [":bob!bob@chatd PART #lobby :joined #dev"]


def test_someone_who_disconnects_quits_on_irc_and_leaves_on_the_line(chat: MemoryIRC) -> None:
    bob, bob_t, alice, alice_t = chat.bob_and_alice_in_lobby()
    carol, _ = chat.irc_user("carol")
    send(carol, "JOIN #lobby,#dev")
    send(alice, "JOIN #dev")
    take_lines(alice_t)
    take_lines(bob_t)
    send(carol, "QUIT :gone")
    carol.connectionLost()
    # One QUIT per room alice shares with carol: her client shows the first.
    assert take_lines(alice_t) == [":carol!carol@chatd QUIT :gone"] * 2
    assert take_lines(bob_t) == ["*** carol has left #lobby (gone)"]
    send(bob, "/quit see you")
    bob.connectionLost()
    assert take_lines(alice_t) == [":bob!bob@chatd QUIT :see you"]


def test_nick_change_out_of_every_room_is_still_echoed(chat: MemoryIRC) -> None:
    alice, alice_t = chat.irc_user("alice")
    send(alice, "NICK alicia")
    assert take_lines(alice_t) == [":alice!alice@chatd NICK :alicia"]


def test_topic_on_join_and_on_request(chat: MemoryIRC) -> None:
    chat.clock.advance(1000)
    bob, _ = chat.line_user("bob")
    send(bob, "/topic release day")
    alice, alice_t = chat.irc_user("alice")
    send(alice, "JOIN #lobby")
    lines = take_lines(alice_t)
    assert lines[1:3] == [":chatd 332 alice #lobby :release day",
                          ":chatd 333 alice #lobby bob :1000"]
    send(alice, "JOIN #quiet", "TOPIC #quiet", "TOPIC #nowhere")
    lines = take_lines(alice_t)
    assert ":chatd 331 alice #quiet :No topic is set" in lines
    assert ":chatd 403 alice #nowhere :no such room #nowhere" in lines


def test_history_replay_on_join(chat: MemoryIRC) -> None:
    bob, _ = chat.line_user("bob")
    send(bob, "before you came")
    alice, alice_t = chat.irc_user("alice")
    send(alice, "JOIN #lobby")
    lines = take_lines(alice_t)
    assert lines[-3] == ":chatd NOTICE #lobby :History of #lobby (last 1 line):"
    assert re.fullmatch(r":chatd NOTICE #lobby :\[\d{4}-\d\d-\d\d \d\d:\d\d\] <bob> before you "
                        r"came", lines[-2])
    assert lines[-1] == ":chatd NOTICE #lobby :End of history."


def test_history_replay_with_server_time(chat: MemoryIRC) -> None:
    bob, _ = chat.line_user("bob")
    send(bob, "before you came")
    proto, transport = chat.irc_connect()
    send(proto, "CAP REQ server-time", "NICK alice", "USER alice 0 * :A", "CAP END",
         "JOIN #lobby")
    assert take_lines(transport)[-1] == (
        "@time=1970-01-01T00:00:00.000Z :bob!bob@chatd PRIVMSG #lobby :before you came")
    send(bob, "now")
    assert take_lines(transport) == [
        "@time=1970-01-01T00:00:00.000Z :bob!bob@chatd PRIVMSG #lobby :now"]


def test_names_list_who_and_whois(chat: MemoryIRC) -> None:
    bob, _ = chat.line_user("bob")
    send(bob, "/away lunch")
    alice, alice_t = chat.irc_user("alice")
    send(alice, "JOIN #lobby,#dev", "TOPIC #dev :the dev room")
    take_lines(alice_t)
    send(alice, "NAMES #lobby", "LIST")
    assert take_lines(alice_t) == [
        ":chatd 353 alice = #lobby :alice bob",
        ":chatd 366 alice #lobby :End of /NAMES list.",
        ":chatd 321 alice Channel :Users  Name",
        ":chatd 322 alice #dev 1 :[+n] the dev room",
        ":chatd 322 alice #lobby 2 :[+n] ",
        ":chatd 323 alice :End of /LIST",
    ]
    send(alice, "WHO #lobby")
    assert take_lines(alice_t) == [
        ":chatd 352 alice #lobby alice chatd chatd alice H :0 alice",
        ":chatd 352 alice #lobby bob chatd chatd bob G :0 bob",
        ":chatd 315 alice #lobby :End of /WHO list.",
    ]
    chat.clock.advance(42)
    send(alice, "WHOIS bob", "WHOIS nobody")
    assert take_lines(alice_t) == [
        ":chatd 311 alice bob bob chatd * :bob",
        ":chatd 319 alice bob :#lobby",
        ":chatd 312 alice bob chatd :chatd",
        ":chatd 301 alice bob :lunch",
        ":chatd 317 alice bob 42 :0 :seconds idle, signon time".replace(" :0 ", " 0 "),
        ":chatd 318 alice bob :End of /WHOIS list.",
        ":chatd 401 alice nobody :No such nick/channel",
        ":chatd 318 alice nobody :End of /WHOIS list.",
    ]


def test_who_whois_and_privmsg_reach_another_process_user_in_no_room(chat: MemoryIRC) -> None:
    elsewhere = "another-process"
    bus = chat.service.bus
    bus.publish(Connected("ivy", origin=elsewhere))
    bus.publish(Joined("#dev", "dan", origin=elsewhere))
    bus.publish(AwayChanged("dan", "lunch", origin=elsewhere))
    alice, alice_t = chat.irc_user("alice")
    send(alice, "WHO ivy", "WHOIS ivy", "WHOIS dan", "PRIVMSG ivy :hi")
    assert take_lines(alice_t) == [
        ":chatd 352 alice * ivy chatd chatd ivy H :0 ivy",
        ":chatd 315 alice ivy :End of /WHO list.",
        ":chatd 311 alice ivy ivy chatd * :ivy",  # in no room, idle time unknown here
        ":chatd 312 alice ivy chatd :chatd",
        ":chatd 318 alice ivy :End of /WHOIS list.",
        ":chatd 311 alice dan dan chatd * :dan",
        ":chatd 319 alice dan :#dev",
        ":chatd 312 alice dan chatd :chatd",
        ":chatd 301 alice dan :lunch",
        ":chatd 318 alice dan :End of /WHOIS list.",
    ]
    bus.publish(Disconnected("ivy", origin=elsewhere))
    send(alice, "WHOIS ivy")
    assert take_lines(alice_t)[0] == ":chatd 401 alice ivy :No such nick/channel"


def test_whois_idle_counts_from_the_last_line_said(chat: MemoryIRC) -> None:
    bob, _ = chat.line_user("bob")
    alice, alice_t = chat.irc_user("alice")
    chat.clock.advance(100)
    send(bob, "speaking now")
    chat.clock.advance(5)
    send(alice, "WHOIS bob")
    assert ":chatd 317 alice bob 5 0 :seconds idle, signon time" in take_lines(alice_t)


def test_mode_is_answered_and_changes_nothing(chat: MemoryIRC) -> None:
    alice, alice_t = chat.irc_user("alice")
    send(alice, "JOIN #lobby")
    take_lines(alice_t)
    send(alice, "MODE #lobby", "MODE #lobby b", "MODE #lobby +m", "MODE alice +i",
         "MODE alice", "MODE alice +o", "MODE bob")
    assert take_lines(alice_t) == [
        ":chatd 324 alice #lobby :+n",
        ":chatd 368 alice #lobby :End of channel ban list",
        ":chatd 482 alice #lobby :Channel modes cannot be changed",
        ":chatd 221 alice :+i",
        ":chatd 221 alice :+i",
        ":chatd 501 alice :Unknown MODE flag",
        ":chatd 502 alice :Cant change mode for other users",
    ]


def test_away_and_back(chat: MemoryIRC) -> None:
    alice, alice_t = chat.irc_user("alice")
    send(alice, "AWAY :gone fishing", "AWAY")
    assert take_lines(alice_t) == [":chatd 306 alice :You have been marked as being away",
                                   ":chatd 305 alice :You are no longer marked as being away"]
    assert alice.user is not None and alice.user.away is None


def test_ctcp_queries_are_answered_for_anyone(chat: MemoryIRC) -> None:
    chat.line_user("bob")
    alice, alice_t = chat.irc_user("alice")
    send(alice, "PRIVMSG bob :\x01VERSION\x01", "PRIVMSG bob :\x01PING 12345\x01")
    lines = take_lines(alice_t)
    assert lines[0].startswith(":bob!bob@chatd NOTICE alice :\x01VERSION chatd ")
    assert lines[1] == ":bob!bob@chatd NOTICE alice :\x01PING 12345\x01"


# --- Operators and chatd's own commands --------------------------------------------------------


def test_oper_then_kick(chat: MemoryIRC) -> None:
    _bob, bob_t = chat.line_user("bob")
    alice, alice_t = chat.irc_user("alice")
    send(alice, "JOIN #lobby", "KICK #lobby bob :spam")
    assert take_lines(alice_t)[-1] == ":chatd 482 alice #lobby :You're not a chatd operator"
    send(alice, "OPER root wrong")
    assert take_lines(alice_t) == [":chatd 464 alice :wrong operator name or password"]
    send(alice, f"OPER root {PASSWORD}")
    assert take_lines(alice_t) == [":chatd 381 alice :You are now an IRC operator",
                                   ":chatd NOTICE alice :You are now an operator (root)."]
    send(alice, "KICK #lobby bob :spam")
    assert "*** You have been kicked by alice: spam" in take_lines(bob_t)
    assert take_lines(alice_t) == [":alice!alice@chatd KICK #lobby bob :spam"]


def test_an_operators_mass_message_to_dollar_star_is_a_wall(chat: MemoryIRC) -> None:
    _bob, bob_t = chat.line_user("bob")
    alice, alice_t = chat.irc_user("alice")
    _carol, carol_t = chat.irc_user("carol")  # in no room: a wall reaches her all the same
    send(alice, "PRIVMSG $* :hello all", "NOTICE $* :hello all")
    assert take_lines(alice_t) == [
        ":chatd 481 alice :Permission Denied- You're not an IRC operator"]
    send(alice, f"OPER root {PASSWORD}")
    take_lines(alice_t)
    send(alice, "PRIVMSG $* :\x02maintenance\x02 at noon")
    assert take_lines(bob_t) == ["*** [wall from alice] maintenance at noon"]
    assert take_lines(carol_t) == [":chatd NOTICE * :[wall from alice] maintenance at noon"]
    send(alice, "NOTICE $CHATD :again")  # the server's own name is the other mask
    assert take_lines(bob_t) == ["*** [wall from alice] again"]
    send(alice, "PRIVMSG $*.example.org :x", "NOTICE $elsewhere :x", "PRIVMSG $* :\x02 \x02")
    assert take_lines(alice_t) == [
        ":chatd NOTICE * :[wall from alice] maintenance at noon",
        ":chatd NOTICE * :[wall from alice] again",
        ":chatd 415 alice $*.example.org :Bad Server/host mask"]
    assert take_lines(bob_t) == []


def test_chatd_commands_through_quote_and_the_service_nick(chat: MemoryIRC) -> None:
    bob, _ = chat.line_user("bob")
    send(bob, "an old line")
    alice, alice_t = chat.irc_user("alice")
    send(alice, "JOIN #lobby")
    take_lines(alice_t)
    send(alice, "HISTORY 1")
    lines = take_lines(alice_t)
    assert lines[0] == ":chatd!chatd@chatd NOTICE alice :History of #lobby (last 1 line):"
    send(alice, "PRIVMSG chatd :rooms")
    assert take_lines(alice_t)[0] == ":chatd!chatd@chatd NOTICE alice :Rooms (1):"
    send(alice, "PRIVMSG chatd :/join #elsewhere", "FROBNICATE", "BAN 1.2.3.4")
    assert take_lines(alice_t) == [
        ":chatd!chatd@chatd NOTICE alice :Error: use your IRC client's /join for that",
        ":chatd 421 alice FROBNICATE :Unknown command",
        ":chatd!chatd@chatd NOTICE alice :Error: only operators can do that; see /oper",
    ]


def test_a_chatd_command_on_your_room_names_the_room_when_you_are_in_several(
    chat: MemoryIRC,
) -> None:
    bob, bob_t = chat.line_user("bob")
    send(bob, "in the lobby", "/join #dev", "in dev")
    alice, alice_t = chat.irc_user("alice")
    send(alice, "HISTORY 1")
    assert take_lines(alice_t) == [
        ":chatd!chatd@chatd NOTICE alice :Error: you are not in any room; /join one"]
    send(alice, "JOIN #lobby")
    take_lines(alice_t)
    send(alice, "HISTORY 1")  # one room: no doubt which
    assert take_lines(alice_t)[1].endswith("<bob> in the lobby")
    send(alice, "JOIN #dev")  # #dev, joined last, is no longer taken for granted
    take_lines(alice_t)
    send(alice, "HISTORY 1", "PRIVMSG chatd :history")
    assert take_lines(alice_t) == 2 * [
        ":chatd!chatd@chatd NOTICE alice :Error: you are in 2 rooms (#dev, #lobby): name the "
        "room first, e.g. #dev"]
    send(alice, "HISTORY #LOBBY 1")
    lines = take_lines(alice_t)
    assert lines[0] == ":chatd!chatd@chatd NOTICE alice :History of #lobby (last 1 line):"
    assert lines[1].endswith("<bob> in the lobby")
    send(alice, "PRIVMSG chatd :history #dev")
    lines = take_lines(alice_t)
    assert lines[0] == ":chatd!chatd@chatd NOTICE alice :History of #dev (last 1 line):"
    assert lines[1].endswith("<bob> in dev")
    send(alice, "HISTORY #nowhere 1", "HISTORY #dev many")
    assert take_lines(alice_t) == [
        ":chatd!chatd@chatd NOTICE alice :Error: you are not in #nowhere",
        ":chatd!chatd@chatd NOTICE alice :Error: usage: /history [#ROOM] [N], N a whole "
        "number from 1 to 100"]
    assert take_lines(bob_t)  # bob saw alice come


# --- Liveness and limits -------------------------------------------------------------------------


def test_a_ping_timeout_longer_than_the_interval_is_waited_out(chat: MemoryIRC) -> None:
    """A PING's wait runs its course: a client that answers early is pinged again when it
    ends (not ping_interval after the answer), one that answers late ping_interval after."""
    chat.irc.ping_interval, chat.irc.ping_timeout = 10.0, 30.0
    early, early_t = chat.irc_user("early")
    late, late_t = chat.irc_user("late")
    chat.clock.advance(10)
    assert take_lines(early_t) == take_lines(late_t) == ["PING :chatd"]  # the wait ends at 40
    chat.clock.advance(5)
    send(early, "PONG :chatd")  # at 15: 15 + 10 is inside the wait
    chat.clock.advance(10)
    assert take_lines(early_t) == []
    chat.clock.advance(10)
    send(late, "PONG :chatd")  # at 35: 35 + 10 is past it
    chat.clock.advance(5)
    assert take_lines(early_t) == ["PING :chatd"]
    assert take_lines(late_t) == []
    chat.clock.advance(5)
    assert take_lines(late_t) == ["PING :chatd"]
    chat.clock.advance(25)
    assert take_lines(early_t) == [
        "ERROR :Closing Link: 127.0.0.1 (Ping timeout: 55 seconds)"]


def test_ping_pong_both_ways_and_ping_timeout(chat: MemoryIRC) -> None:
    _bob, bob_t = chat.line_user("bob")
    alice, alice_t = chat.irc_user("alice")
    send(alice, "JOIN #lobby", "PING :abc")
    assert take_lines(alice_t)[-1] == ":chatd PONG chatd :abc"
    chat.clock.advance(chat.irc.ping_interval)
    assert take_lines(alice_t) == ["PING :chatd"]
    send(alice, "PONG :chatd")
    chat.clock.advance(chat.irc.ping_interval - 1)
    assert take_lines(alice_t) == []  # the PONG reset the clock
    chat.clock.advance(1)
    assert take_lines(alice_t) == ["PING :chatd"]
    chat.clock.advance(chat.irc.ping_timeout)
    assert take_lines(alice_t) == [
        f"ERROR :Closing Link: 127.0.0.1 (Ping timeout: "
        f"{chat.irc.ping_interval + chat.irc.ping_timeout:.0f} seconds)"]
    assert alice_t.disconnecting
    alice.connectionLost()
    take_lines(bob_t)  # bob saw alice leave
    assert chat.service.users.keys() == {"bob"}


def test_an_over_long_line_is_417_and_the_connection_stays(chat: MemoryIRC) -> None:
    _bob, bob_t, alice, alice_t = chat.bob_and_alice_in_lobby()
    send(alice, "PRIVMSG #lobby :" + "x" * MAX_LINE, "PRIVMSG #lobby :after")
    assert take_lines(alice_t) == [":chatd 417 alice :Input line was too long"]
    assert take_lines(bob_t) == ["<alice> after"]
    longest = "PRIVMSG #lobby :" + "y" * (MAX_LINE - 2 - len("PRIVMSG #lobby :"))
    send(alice, longest)
    assert take_lines(bob_t) == ["<alice> " + "y" * (MAX_LINE - 2 - len("PRIVMSG #lobby :"))]
    send(alice, longest + "y")  # one byte more than IRC's 510 before the CRLF
    assert take_lines(alice_t) == [":chatd 417 alice :Input line was too long"]
    assert take_lines(bob_t) == []
    assert not alice_t.disconnecting


def test_tags_do_not_count_toward_the_512_bytes(chat: MemoryIRC) -> None:
    _bob, bob_t, alice, _alice_t = chat.bob_and_alice_in_lobby()
    send(alice, "@+example/tag=" + "t" * 4000 + " PRIVMSG #lobby :tagged")
    assert take_lines(bob_t) == ["<alice> tagged"]


def test_an_endless_line_is_dropped_without_holding_it(chat: MemoryIRC) -> None:
    _bob, bob_t, alice, alice_t = chat.bob_and_alice_in_lobby()
    for _ in range(10):
        alice.dataReceived(b"z" * 4000)
    assert len(alice._buffer) < 9000
    assert take_lines(alice_t) == [":chatd 417 alice :Input line was too long"]
    send(alice, " still the same endless line", "PRIVMSG #lobby :back to normal")
    assert take_lines(bob_t) == ["<alice> back to normal"]
    assert not alice_t.disconnecting


def test_lf_alone_and_blank_lines(chat: MemoryIRC) -> None:
    _bob, bob_t = chat.line_user("bob")
    alice, _alice_t = chat.irc_user("alice")
    alice.dataReceived(b"JOIN #lobby\n\r\n\nPRIVMSG #lobby :one\nPRIVMSG #lobby :tw")
    alice.dataReceived(b"o\r\n")
    assert take_lines(bob_t)[-2:] == ["<alice> one", "<alice> two"]


def test_flood_gate_holds_irc_lines_too() -> None:
    chat = MemoryIRC(flood_rate=1.0, flood_burst=2)
    _bob, bob_t = chat.line_user("bob")
    alice, _alice_t = chat.irc_user("alice")
    chat.clock.advance(10)
    send(alice, "JOIN #lobby")
    take_lines(bob_t)
    send(alice, *(f"PRIVMSG #lobby :line {i}" for i in range(4)))
    assert take_lines(bob_t) == ["<alice> line 0"]
    chat.clock.advance(1)
    assert take_lines(bob_t) == ["<alice> line 1"]


def test_a_banned_address_is_refused_at_registration(chat: MemoryIRC) -> None:
    op, op_t = chat.line_user("op")
    send(op, f"/oper root {PASSWORD}", "/ban 127.0.0.1 1h spam")
    take_lines(op_t)
    proto, transport = chat.irc_connect()
    send(proto, "NICK eve", "USER eve 0 * :Eve")
    lines = take_lines(transport)
    assert len(lines) == 1 and lines[0].startswith("ERROR :Closing Link: 127.0.0.1 (")
    assert "banned" in lines[0]
    assert transport.disconnecting and proto.user is None


def test_a_muted_irc_user_is_told_and_nobody_hears(chat: MemoryIRC) -> None:
    op, op_t = chat.line_user("op")
    alice, alice_t = chat.irc_user("alice")
    send(alice, "JOIN #lobby")
    send(op, f"/oper root {PASSWORD}", "/mute alice 10m")
    take_lines(alice_t)
    take_lines(op_t)
    send(alice, "PRIVMSG #lobby :can you hear me", "NOTICE #lobby :or me")
    lines = take_lines(alice_t)
    assert len(lines) == 1 and lines[0].startswith(":chatd 404 alice #lobby :you are muted")
    assert take_lines(op_t) == []


def test_a_muted_irc_user_changes_no_nick_or_away_text_and_quits_without_reason(
    chat: MemoryIRC,
) -> None:
    op, op_t = chat.line_user("op")
    alice, alice_t = chat.irc_user("alice")
    send(alice, "JOIN #lobby")
    send(op, f"/oper root {PASSWORD}", "/mute alice")
    take_lines(alice_t), take_lines(op_t)
    send(alice, "NICK evil_example", "AWAY :visit evil.example", "TOPIC #lobby :evil")
    lines = take_lines(alice_t)
    assert lines[:2] == [
        ":chatd NOTICE alice :you are muted; your nickname was not changed",
        ":chatd NOTICE alice :you are muted; your away text was not set "
        "(/away alone still works)",
    ]
    assert "the topic was not changed" in lines[2]
    assert take_lines(op_t) == []
    send(alice, "QUIT :visit evil.example")
    alice.connectionLost(None)  # type: ignore[arg-type]
    assert take_lines(op_t) == ["*** alice has left #lobby (Client Quit)"]


def test_a_kicked_nick_cannot_register_again_from_that_address(chat: MemoryIRC) -> None:
    op, _ = chat.line_user("op")
    alice, _ = chat.irc_user("alice")
    send(op, f"/oper root {PASSWORD}", "/kick alice")
    alice.connectionLost(None)  # type: ignore[arg-type]
    again, again_t = chat.irc_connect()  # the same address, 127.0.0.1
    send(again, "NICK alice", "USER alice 0 * :Alice")
    lines = take_lines(again_t)
    assert lines[-1].startswith("ERROR :Closing Link: 127.0.0.1 (you were kicked from this "
                                "server; you may reconnect in 30 seconds")
    assert again.user is None
    bob, bob_t = chat.irc_user("bob")  # another nick from there is let in
    send(bob, "NICK alice")
    assert take_lines(bob_t)[-1].startswith("ERROR :Closing Link: 127.0.0.1 (you were kicked")


def test_a_reload_reaches_live_irc_connections(chat: MemoryIRC) -> None:
    bob, bob_t, alice, alice_t = chat.bob_and_alice_in_lobby()
    chat.policy.flood_rate, chat.policy.flood_burst = 1.0, 1
    chat.irc.policy_changed()
    chat.clock.advance(10)
    send(alice, "PRIVMSG #lobby :one", "PRIVMSG #lobby :two")
    assert take_lines(bob_t) == ["<alice> one"]
    chat.service.server_name = "Our Chat"
    send(bob, "renamed server")
    assert take_lines(alice_t)[-1] == ":bob!bob@Our-Chat PRIVMSG #lobby :renamed server"


# --- A speaker's held lines and their own IRC commands in one read ------------------------


def test_lines_held_before_a_nick_change_in_the_same_read_are_not_sent_back_to_the_speaker(
    chat: MemoryIRC,
) -> None:
    # The run of lines is held for the read (chatd/fanout.py); NICK must deliver it first, as
    # the command table does for /commands: delivered after the rename, the speaker was no
    # longer found under the run's nick and got their own lines back.
    _bob, bob_t, alice, alice_t = chat.bob_and_alice_in_lobby()
    send(alice, "PRIVMSG #lobby :one", "PRIVMSG #lobby :two", "NICK alicia",
         "PRIVMSG #lobby :three")
    assert take_lines(alice_t) == [":alice!alice@chatd NICK :alicia"]
    assert take_lines(bob_t) == ["<alice> one", "<alice> two",
                                 "*** alice is now known as alicia", "<alicia> three"]


def test_lines_held_before_a_kick_in_the_same_read_reach_the_kicked_user_first(
    chat: MemoryIRC,
) -> None:
    _bob, bob_t = chat.line_user("bob")
    alice, alice_t = chat.irc_user("alice")
    send(alice, f"OPER root {PASSWORD}", "JOIN #lobby")
    take_lines(alice_t)
    take_lines(bob_t)
    send(alice, "PRIVMSG #lobby :last words for bob", "KICK #lobby bob :spam")
    lines = take_lines(bob_t)
    assert lines[0] == "<alice> last words for bob", lines
    assert "*** You have been kicked by alice: spam" in lines

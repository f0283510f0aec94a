"""IRCv3 capability negotiation."""

from __future__ import annotations

from chatd.irc.caps import CapNegotiation
from chatd.irc.message import Message


def cap(sub: str, text: str, nick: str = "*") -> Message:
    return Message("CAP", (nick, sub, text), "srv")


def test_ls_lists_server_time_and_holds_registration() -> None:
    caps = CapNegotiation()
    assert caps.handle(["LS", "302"], "srv", "*", registered=False) == [cap("LS", "server-time")]
    assert caps.negotiating and caps.version == 302
    assert caps.handle(["END"], "srv", "*", registered=False) == []
    assert not caps.negotiating


def test_ls_302_shows_values() -> None:
    caps = CapNegotiation({"server-time": None, "x/demo": "1,2"})
    assert caps.handle(["LS", "302"], "srv", "*", False) == [cap("LS", "server-time x/demo=1,2")]
    old = CapNegotiation({"server-time": None, "x/demo": "1,2"})
    assert old.handle(["LS"], "srv", "*", False) == [cap("LS", "server-time x/demo")]


def test_req_is_all_or_nothing() -> None:
    caps = CapNegotiation()
    assert caps.handle(["REQ", "server-time sasl"], "srv", "*", False) == [
        cap("NAK", "server-time sasl")]
    assert caps.enabled == set()
    assert caps.negotiating  # a REQ alone also holds registration back
    assert caps.handle(["REQ", "server-time"], "srv", "*", False) == [cap("ACK", "server-time")]
    assert caps.enabled == {"server-time"}
    assert caps.handle(["LIST"], "srv", "*", False) == [cap("LIST", "server-time")]
    assert caps.handle(["req", "-server-time"], "srv", "*", False) == [
        cap("ACK", "-server-time")]
    assert caps.enabled == set()
    assert caps.handle(["REQ", ""], "srv", "*", False) == [cap("NAK", "")]


def test_after_registration_cap_does_not_hold_anything() -> None:
    caps = CapNegotiation()
    assert caps.handle(["LS", "302"], "srv", "alice", registered=True) == [
        cap("LS", "server-time", "alice")]
    assert not caps.negotiating


def test_unknown_and_missing_subcommands() -> None:
    caps = CapNegotiation()
    assert caps.handle(["FROB"], "srv", "*", False) == [
        Message("410", ("*", "FROB", "Invalid CAP command"), "srv")]
    assert caps.handle([], "srv", "*", False) == [
        Message("461", ("*", "CAP", "Not enough parameters"), "srv")]

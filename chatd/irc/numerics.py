"""The server's numeric replies (https://modern.ircdocs.horse/#numerics), built from plain
values so the front-end decides what to say and this module only how IRC says it.

Every reply is ``:server CODE target params...``, ``target`` being the client's nick (``*``
before it has one). Replies that list things (NAMES, ISUPPORT) are split so that no line
passes IRC's 512 bytes.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence

from chatd.irc.message import MAX_LINE, Message, is_middle, serialize

RPL_WELCOME = "001"
RPL_YOURHOST = "002"
RPL_CREATED = "003"
RPL_MYINFO = "004"
RPL_ISUPPORT = "005"
RPL_UMODEIS = "221"
RPL_AWAY = "301"
RPL_UNAWAY = "305"
RPL_NOWAWAY = "306"
RPL_WHOISUSER = "311"
RPL_WHOISSERVER = "312"
RPL_WHOISOPERATOR = "313"
RPL_ENDOFWHO = "315"
RPL_WHOISIDLE = "317"
RPL_ENDOFWHOIS = "318"
RPL_WHOISCHANNELS = "319"
RPL_LISTSTART = "321"
RPL_LIST = "322"
RPL_LISTEND = "323"
RPL_CHANNELMODEIS = "324"
RPL_NOTOPIC = "331"
RPL_TOPIC = "332"
RPL_TOPICWHOTIME = "333"
RPL_WHOREPLY = "352"
RPL_NAMREPLY = "353"
RPL_ENDOFNAMES = "366"
RPL_ENDOFBANLIST = "368"
RPL_MOTD = "372"
RPL_MOTDSTART = "375"
RPL_ENDOFMOTD = "376"
RPL_YOUREOPER = "381"
ERR_NOSUCHNICK = "401"
ERR_NOSUCHCHANNEL = "403"
ERR_CANNOTSENDTOCHAN = "404"
ERR_INVALIDCAPCMD = "410"
ERR_NORECIPIENT = "411"
ERR_NOTEXTTOSEND = "412"
ERR_BADMASK = "415"
ERR_INPUTTOOLONG = "417"
ERR_UNKNOWNCOMMAND = "421"
ERR_NOMOTD = "422"
ERR_NONICKNAMEGIVEN = "431"
ERR_ERRONEUSNICKNAME = "432"
ERR_NICKNAMEINUSE = "433"
ERR_USERNOTINCHANNEL = "441"
ERR_NOTONCHANNEL = "442"
ERR_NOTREGISTERED = "451"
ERR_NEEDMOREPARAMS = "461"
ERR_ALREADYREGISTERED = "462"
ERR_PASSWDMISMATCH = "464"
ERR_YOUREBANNEDCREEP = "465"
ERR_UNKNOWNMODE = "472"
ERR_NOPRIVILEGES = "481"
ERR_CHANOPRIVSNEEDED = "482"
ERR_NOOPERHOST = "491"
ERR_UMODEUNKNOWNFLAG = "501"
ERR_USERSDONTMATCH = "502"

# What MODE shows, and all it can show: every room is +n (only members talk in it; +t is
# not claimed, as any member may set a topic), every user +i (WHO lists no one by mask).
CHANNEL_MODES = "+n"
USER_MODES = "+i"


def reply(server: str, code: str, target: str, *params: str) -> Message:
    """``:server CODE target params... :text``. A word that no line can carry where it
    stands (a client's ``:x`` or ``a b`` echoed back) is shown as ``*``."""
    if not params:
        return Message(code, (target,), server)
    *words, text = params
    return Message(code, (target, *(w if is_middle(w) else "*" for w in words), text), server)


def welcome(server: str, nick: str, network: str, version: str, created: float,
            mask: str) -> list[Message]:
    """001-004: the first lines a registered client receives."""
    return [
        reply(server, RPL_WELCOME, nick, f"Welcome to the {network} IRC network {mask}"),
        reply(server, RPL_YOURHOST, nick, f"Your host is {server}, running version {version}"),
        reply(server, RPL_CREATED, nick,
              "This server was created " + time.strftime("%Y-%m-%d %H:%M:%S UTC",
                                                         time.gmtime(created))),
        reply(server, RPL_MYINFO, nick, server, version, USER_MODES.lstrip("+"),
              CHANNEL_MODES.lstrip("+")),
    ]


# ISUPPORT lines carry at most 13 tokens (modern.ircdocs: clients accept more, older do not).
_ISUPPORT_PER_LINE = 13


def isupport(server: str, nick: str, tokens: Mapping[str, str | None]) -> list[Message]:
    """005 lines: ``TOKEN=value`` (or ``TOKEN``) ``... :are supported by this server``."""
    items = [name if value is None else f"{name}={value}" for name, value in tokens.items()]
    return [
        reply(server, RPL_ISUPPORT, nick, *items[i:i + _ISUPPORT_PER_LINE],
              "are supported by this server")
        for i in range(0, len(items), _ISUPPORT_PER_LINE)
    ]


def motd(server: str, nick: str, lines: Sequence[str]) -> list[Message]:
    """375, a 372 per line, 376; or 422 when there is no MOTD."""
    if not lines:
        return [reply(server, ERR_NOMOTD, nick, "MOTD File is missing")]
    return [
        reply(server, RPL_MOTDSTART, nick, f"- {server} Message of the day - "),
        *(reply(server, RPL_MOTD, nick, f"- {line}") for line in lines),
        reply(server, RPL_ENDOFMOTD, nick, "End of /MOTD command."),
    ]


def topic(server: str, nick: str, channel: str, text: str, by: str,
          at: float) -> list[Message]:
    """332 and 333 for a room with a topic; 331 for one without."""
    if not text:
        return [reply(server, RPL_NOTOPIC, nick, channel, "No topic is set")]
    return [
        reply(server, RPL_TOPIC, nick, channel, text),
        reply(server, RPL_TOPICWHOTIME, nick, channel, by or server, str(int(at))),
    ]


def names(server: str, nick: str, channel: str, members: Iterable[str]) -> list[Message]:
    """353 lines (``=`` public room) holding as many names as fit, then 366."""
    lines = [reply(server, RPL_NAMREPLY, nick, "=", channel, name)
             for name in _packed(server, RPL_NAMREPLY, (nick, "=", channel), members)]
    return [*lines, reply(server, RPL_ENDOFNAMES, nick, channel, "End of /NAMES list.")]


def _packed(server: str, code: str, params: Sequence[str], words: Iterable[str]) -> list[str]:
    """``words`` joined by spaces into as few trailing parameters as fit after ``params``."""
    # An empty last parameter serialises as " :" and the line ending: the rest is room.
    room = MAX_LINE - len(serialize(reply(server, code, *params, "")))
    packed: list[str] = []
    current = ""
    for word in words:
        candidate = f"{current} {word}" if current else word
        if current and len(candidate.encode("utf-8")) > room:
            packed.append(current)
            candidate = word
        current = candidate
    if current:
        packed.append(current)
    return packed


def list_rooms(server: str, nick: str,
               rooms: Iterable[tuple[str, int, str]]) -> list[Message]:
    """321, a 322 per (room, members, topic), 323."""
    return [
        reply(server, RPL_LISTSTART, nick, "Channel", "Users  Name"),
        *(reply(server, RPL_LIST, nick, name, str(count), f"[{CHANNEL_MODES}] {text}")
          for name, count, text in rooms),
        reply(server, RPL_LISTEND, nick, "End of /LIST"),
    ]


def who_reply(server: str, nick: str, channel: str, user: str, host: str, who: str,
              away: bool, operator: bool, realname: str) -> Message:
    """352: ``channel user host server nick flags :hopcount realname``."""
    flags = ("G" if away else "H") + ("*" if operator else "")
    return reply(server, RPL_WHOREPLY, nick, channel, user, host, server, who, flags,
                 f"0 {realname}")


def end_of_who(server: str, nick: str, mask: str) -> Message:
    return reply(server, RPL_ENDOFWHO, nick, mask, "End of /WHO list.")


def whois(server: str, nick: str, who: str, user: str, host: str, realname: str,
          channels: Sequence[str], away: str | None, operator: bool, idle: int | None,
          signon: float | None) -> list[Message]:
    """311, 319 (when in rooms), 312, 301 (when away), 313 (operators), 317 (unless idle is
    None: another process's user), 318."""
    lines = [reply(server, RPL_WHOISUSER, nick, who, user, host, "*", realname)]
    lines += [reply(server, RPL_WHOISCHANNELS, nick, who, text)
              for text in _packed(server, RPL_WHOISCHANNELS, (nick, who), channels)]
    lines.append(reply(server, RPL_WHOISSERVER, nick, who, server, "chatd"))
    if away is not None:
        lines.append(reply(server, RPL_AWAY, nick, who, away))
    if operator:
        lines.append(reply(server, RPL_WHOISOPERATOR, nick, who, "is an IRC operator"))
    if idle is not None and signon is not None:
        lines.append(reply(server, RPL_WHOISIDLE, nick, who, str(max(idle, 0)),
                           str(int(signon)), "seconds idle, signon time"))
    lines.append(reply(server, RPL_ENDOFWHOIS, nick, who, "End of /WHOIS list."))
    return lines


def channel_mode(server: str, nick: str, channel: str) -> Message:
    """324: the room's modes, which are fixed."""
    return reply(server, RPL_CHANNELMODEIS, nick, channel, CHANNEL_MODES)

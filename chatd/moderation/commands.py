"""Operator slash commands: parsing only; the moderator does the work and the auditing."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet import defer

from chatd.commands import CommandList, CommandTable, Session
from chatd.errors import ChatError
from chatd.moderation.rules import parse_duration
from chatd.stats import stats_lines

if TYPE_CHECKING:
    from chatd.moderation.moderator import Moderator
    from chatd.service import User

OPERATOR_COMMANDS = CommandList()
command = OPERATOR_COMMANDS.command


def _moderator(table: CommandTable) -> Moderator:
    moderator = table.moderator
    if moderator is None:
        raise ChatError("this server has no operators")
    return moderator


def _words(args: str, count: int, usage: str) -> list[str]:
    """The first ``count`` words of ``args`` (all required) and the rest, possibly empty."""
    words = args.split(None, count)
    if len(words) < count:
        raise ChatError(f"usage: {usage}")
    return words + [""] * (count + 1 - len(words))


def _duration(text: str) -> int:
    try:
        return parse_duration(text)
    except ValueError as e:
        raise ChatError(str(e)) from None


def _duration_and_rest(text: str) -> tuple[int | None, str]:
    """An optional leading DURATION, then the rest (a reason). A first word that starts
    with a digit is meant as the DURATION: if it is not one (``10min``), it is refused
    rather than taken as the reason of a permanent ban."""
    first, _, rest = text.partition(" ")
    if first[:1].isascii() and first[:1].isdigit():
        return _duration(first), rest.strip()
    return None, text


@command("oper", "/oper NAME PASSWORD", "become an operator")
def _oper(
    table: CommandTable, session: Session, user: User, args: str
) -> defer.Deferred[Any]:
    # The password check runs in a thread; the front-end holds later lines until it is done.
    return _moderator(table).oper(user, args, session.notice, session.error)


@command("kick", "/kick NICK [REASON]", "(operators) disconnect someone")
def _kick(table: CommandTable, session: Session, user: User, args: str) -> None:
    nick, reason = _words(args, 1, "/kick NICK [REASON]")
    _moderator(table).kick(user, nick, reason)


BAN_USAGE = "/ban NICK|ADDRESS|CIDR [DURATION] [REASON]"


@command("ban", BAN_USAGE, "(operators) ban an address, or a user's address; 10m, 2h, 7d")
def _ban(table: CommandTable, session: Session, user: User, args: str) -> None:
    what, rest = _words(args, 1, BAN_USAGE)
    seconds, reason = _duration_and_rest(rest)
    for line in _moderator(table).ban(user, what, seconds, reason):
        session.notice(line)


@command("unban", "/unban ADDRESS|CIDR", "(operators) lift a ban")
def _unban(table: CommandTable, session: Session, user: User, args: str) -> None:
    what, rest = _words(args, 1, "/unban ADDRESS|CIDR")
    if rest:
        raise ChatError("usage: /unban ADDRESS|CIDR")
    session.notice(_moderator(table).unban(user, what))


@command("stats", "/stats", "(operators) uptime, connections, messages/s, memory, store")
def _stats(table: CommandTable, session: Session, user: User, args: str) -> None:
    _moderator(table).require_operator(user)
    if table.stats is None:
        raise ChatError("this server keeps no statistics")
    for line in stats_lines(table.stats.snapshot()):
        session.notice(line)


@command("bans", "/bans", "(operators) list bans: who, when, why, until when")
def _bans(table: CommandTable, session: Session, user: User, args: str) -> None:
    for line in _moderator(table).list_bans(user):
        session.notice(line)


@command("mutes", "/mutes", "(operators) list mutes: who, by whom, when, until when")
def _mutes(table: CommandTable, session: Session, user: User, args: str) -> None:
    for line in _moderator(table).list_mutes(user):
        session.notice(line)


@command("mute", "/mute NICK [DURATION]", "(operators) refuse someone's lines")
def _mute(table: CommandTable, session: Session, user: User, args: str) -> None:
    nick, rest = _words(args, 1, "/mute NICK [DURATION]")
    _moderator(table).mute(user, nick, _duration(rest) if rest else None)


@command("unmute", "/unmute NICK", "(operators) let someone talk again")
def _unmute(table: CommandTable, session: Session, user: User, args: str) -> None:
    nick, rest = _words(args, 1, "/unmute NICK")
    if rest:
        raise ChatError("usage: /unmute NICK")
    _moderator(table).unmute(user, nick)


@command("wall", "/wall TEXT", "(operators) a notice to everyone")
def _wall(table: CommandTable, session: Session, user: User, args: str) -> None:
    if not args:
        raise ChatError("usage: /wall TEXT")
    _moderator(table).wall(user, args)


@command("rename", "/rename NICK NEWNICK", "(operators) change someone's nickname")
def _rename(table: CommandTable, session: Session, user: User, args: str) -> None:
    nick, new, rest = _words(args, 2, "/rename NICK NEWNICK")
    if rest:
        raise ChatError("usage: /rename NICK NEWNICK")
    _moderator(table).force_rename(user, nick, new)

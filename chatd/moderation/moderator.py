"""What operators do to the chat: kick, ban, mute, wall and rename, announced and audited.

The ``Moderator`` sits beside the chat service: it holds the bans, mutes and recent kicks
in force, tells the service whom to refuse at connect, whose lines to refuse and which
nicknames to refuse from where, keeps bans and mutes in the store (its typed methods), and
writes every operator action to the ``chatd.audit`` log. It acts on users only through the
service's methods (``find_anyone``, ``notice``, ``remove``, ``force_rename``): it never
touches a connection or a table itself.

Every rule and kick is an event (chatd/events.py: ``Kicked``, ``Banned``, ``Unbanned``,
``Muted``, ``Unmuted``), published through the chat service and taken in by ``apply``
whichever process made it: with ``--redis`` an operator on one process bans, mutes, kicks
or renames a user connected to another, and every process refuses the same addresses,
nicknames and lines. The operator's process writes the audit line; the others do not.

On a shared address (NAT, a LAN party, every test client on 127.0.0.1) a rule made against
one user hits that user only: ``/mute NICK`` mutes the nicknames, ``/ban NICK`` refuses new
connections from the address but disconnects that user alone, ``/kick`` refuses the nick
from that address for ``--kick-rejoin-delay`` seconds. For an IPv6 user "that address" is
their ``--ipv6-prefix`` block (a /64 by default), which one person usually holds whole.
``/ban ADDRESS|CIDR`` is the explicit way to remove everyone there. The operator's own
connection is never hit by a rule they set.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from twisted.application import service
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime

from chatd import addresses
from chatd.addresses import DEFAULT_IPV6_PREFIX, count_key, peer_host
from chatd.commands import plural
from chatd.errors import ChatError, Refused
from chatd.events import (
    Announcement,
    Banned,
    Kicked,
    Muted,
    RoomNotice,
    RuleEvent,
    Unbanned,
    Unmuted,
)
from chatd.moderation.operators import OperatorAuthenticator
from chatd.moderation.rules import (
    Ban,
    BanList,
    Mute,
    MuteList,
    RecentKicks,
    audit_action,
    format_duration,
    format_time,
    parse_ban_target,
)
from chatd.remote import RemoteUser
from chatd.service import ChatService, User
from chatd.text import InvalidNickname, nick_key, normalize_nick

DEFAULT_KICK_REJOIN_DELAY = 30.0


class Moderator(service.Service):
    """Bans, mutes, kicks and operator actions for one chat service."""

    reloadable_options = frozenset({"kick-rejoin-delay", "ipv6-prefix"})

    def __init__(
        self,
        chat: ChatService,
        clock: IReactorTime,
        authenticator: OperatorAuthenticator,
        kick_rejoin_delay: float = DEFAULT_KICK_REJOIN_DELAY,
        ipv6_prefix: int = DEFAULT_IPV6_PREFIX,
    ) -> None:
        self.setName("moderation")
        self.chat = chat
        self.clock = clock
        self.authenticator = authenticator
        self.kick_rejoin_delay = kick_rejoin_delay
        # An IPv6 user usually holds a whole block: a ban or kick by nick covers it.
        self.ipv6_prefix = ipv6_prefix
        # The chat service's store: one writer on the state file, opened by the chat service.
        self.store = chat.store
        self.bans = BanList(clock)
        self.mutes = MuteList(clock)
        self.kicks = RecentKicks(clock)
        chat.admission_checks.append(self.check_admission)
        chat.speech_checks.append(self.check_speech)
        chat.nick_checks.append(self.check_nick)
        chat.rules = self

    def reconfigure(self, options: Mapping[str, Any]) -> None:
        self.kick_rejoin_delay = options["kick-rejoin-delay"]
        self.ipv6_prefix = options["ipv6-prefix"]

    def _where(self, host: str | None) -> str | None:
        """Where a user connects from, as a rule by nick keys it: the IPv4 address, or the
        IPv6 address's ``--ipv6-prefix`` block."""
        return None if host is None else count_key(host, self.ipv6_prefix)

    def startService(self) -> None:
        """Takes in the saved bans and mutes still in force (the chat service, started
        first, has opened the store); the expired ones are deleted."""
        super().startService()
        now = self.clock.seconds()
        saved = self.store.load_moderation()
        for ban in saved.bans:
            if ban.active(now):
                self.bans.add(ban)
            else:
                self.store.delete_ban(str(ban.network))
        for mute in saved.mutes:
            if mute.active(now):
                self.mutes.add(mute)
            else:
                self.store.delete_mute(mute.key)

    # --- Checks the chat service runs --------------------------------------------------------

    def check_admission(self, peer: str) -> None:
        ban = self.bans.match(peer_host(peer))
        if ban is not None:
            raise ChatError(f"you are banned from this server: {ban.reason} "
                            f"({ban.expiry(self.clock.seconds())})")

    def check_speech(self, user: User) -> str | None:
        mute = self.mutes.match(user.key)
        if mute is None or user.operator == mute.by:  # never silenced by one's own rule
            return None
        return f"you are muted{mute.remaining(self.clock.seconds())}"

    def check_nick(self, host: str | None, key: str) -> None:
        left = self.kicks.seconds_left(self._where(host), key)
        if left:
            raise Refused(f"you were kicked from this server; you may reconnect in "
                          f"{plural(left, 'second')}", "kicked a moment ago")

    # --- Becoming an operator ----------------------------------------------------------------

    def oper(self, user: User, args: str, reply: Callable[[str], None],
             fail: Callable[[str], None]) -> defer.Deferred[Any]:
        """Fires once the check is over and its reply has been given."""
        name, _, password = args.partition(" ")
        if not name or not password:
            raise ChatError("usage: /oper NAME PASSWORD")
        address = self._where(user.host) or user.peer  # an IPv6 user's whole block

        def granted(operator: str) -> None:
            if self.chat.is_connected(user):
                user.operator = operator
                reply(f"You are now an operator ({operator}).")

        def refused(failure: Any) -> None:
            failure.trap(ChatError)
            if self.chat.is_connected(user):
                fail(str(failure.value))

        return self.authenticator.login(address, name, password).addCallbacks(granted, refused)

    def require_operator(self, user: User) -> str:
        """The operator name of ``user``, or ChatError telling them they are not one."""
        return self._operator(user)

    @staticmethod
    def _operator(user: User) -> str:
        if user.operator is None:
            raise ChatError("only operators can do that; see /oper")
        return user.operator

    def _target(self, op: User, nick: str, verb: str) -> User | RemoteUser:
        """The user an operator names, on this process or another, never the operator."""
        target = self.chat.find_anyone(nick)
        if target is op:
            raise ChatError(f"you cannot {verb} yourself")
        return target

    def _where_of(self, user: User | RemoteUser) -> str | None:
        """Where a user connects from, as rules by nick key it; None when not IP."""
        if isinstance(user, RemoteUser):
            return user.where or None
        return self._where(user.host)

    # --- Rules as events (chatd.service.RuleKeeper) -----------------------------------------

    def apply(self, event: RuleEvent | Kicked) -> None:
        """Takes in a rule or a kick, made by an operator of this process or another."""
        if isinstance(event, Kicked):
            if event.until:
                self.kicks.add_until(event.where or None, nick_key(event.nick), event.until)
        elif isinstance(event, Banned):
            ban = ban_of(event)
            if ban is not None:
                self.bans.add(ban)
                self.store.save_ban(ban)
        elif isinstance(event, Unbanned):
            try:
                network = parse_ban_target(event.network)
            except ValueError:
                return
            self.bans.remove(network)
            self.store.delete_ban(str(network))
        elif isinstance(event, Muted):
            mute = mute_of(event)
            self.mutes.add(mute)
            self.store.save_mute(mute)
        else:
            self.mutes.remove(event.key)
            self.store.delete_mute(event.key)

    def deliver(self, event: RuleEvent) -> None:
        """A ban disconnects this process's users it covers (but its operator), or the one
        user it names; a mute of a user of this process who has renamed themselves since
        the operator named them follows them to their nick now."""
        if isinstance(event, Muted):
            self._follow_rename(event)
        if not isinstance(event, Banned):
            return
        ban = ban_of(event)
        if ban is None:
            return
        if event.nick:  # the user it names, under their nick now (chatd/former_nicks.py)
            hit = [u for u in [self.chat.holder(event.nick)] if u is not None]
        else:
            hit = [u for u in self.chat.connected()
                   if u.key != nick_key(event.op) and covers(ban, u.host)]
        length = ("for good" if ban.expires is None
                  else f"for {format_duration(ban.expires - ban.created)}")
        for user in hit:
            self.chat.remove(user, f"banned by {event.op} {length}: {event.reason}")

    def _follow_rename(self, event: Muted) -> None:
        """The user a mute names renamed themselves while it was on its way from another
        process: it covers their new nick too, on every process (as after a /rename)."""
        user = self.chat.holder(event.key)
        mute = self.mutes.match(event.key)
        if user is not None and mute is not None and not mute.covers(user.key):
            self.chat.publish(muted_event(mute.renamed(user.key), self.chat.origin))

    def in_force(self) -> list[Banned | Muted]:
        """The bans and mutes in force here, as the events that make them."""
        return ([banned_event(b, self.chat.origin) for b in self.bans.current()]
                + [muted_event(m, self.chat.origin) for m in self.mutes.current()])

    # --- Operator actions --------------------------------------------------------------------

    def kick(self, op: User, nick: str, reason: str) -> None:
        operator = self._operator(op)
        target = self._target(op, nick, "kick")
        reason = reason or "no reason given"
        where = self._where_of(target)
        delay = self.kick_rejoin_delay
        rooms = " ".join(r.name for r in self.chat.rooms_of(target))
        self.chat.publish(Kicked(target.nick, op.nick, reason, rooms, where or "",
                                 self.clock.seconds() + delay if delay > 0 else 0.0,
                                 origin=self.chat.origin))
        audit_action(operator, "kicked", nick=target.nick,
                     peer=target.peer if isinstance(target, User) else where, reason=reason)

    def ban(self, op: User, what: str, seconds: int | None, reason: str) -> list[str]:
        """Bans an address or block (everyone there but ``op`` is disconnected), or a user's
        address when ``what`` is a nickname (that user alone is disconnected). Returns the
        lines to tell the operator."""
        operator = self._operator(op)
        reason = reason or "no reason given"
        target: User | RemoteUser | None = None
        try:
            network = parse_ban_target(what)
        except ValueError:
            target = self._target(op, what, "ban")
            where = self._where_of(target)
            if where is None:
                raise ChatError(f"{target.nick} has no IP address to ban") from None
            network = parse_ban_target(where)
        now = self.clock.seconds()
        ban = Ban(network, reason, operator, now, None if seconds is None else now + seconds)
        # This process's users it covers, counted before the ban disconnects them.
        covered = [u for u in self.chat.connected() if u is not op and covers(ban, u.host)]
        removed = len(covered) if target is None else 1
        self.chat.publish(banned_event(ban, self.chat.origin, op.nick,
                                       "" if target is None else target.nick))
        audit_action(operator, "banned", target=str(network),
                     nick=None if target is None else target.nick, reason=reason,
                     expiry=ban.expiry(now), disconnected=removed)
        lines = [f"Banned {network} ({ban.expiry(now)})."]
        others = [u for u in covered if u is not target]
        if target is not None and others:
            place = network.network_address if network.num_addresses == 1 else network
            lines.append(f"{plural(len(others), 'other user')} at {place} stayed "
                         f"connected; /ban {place} disconnects everyone there but you")
        return lines

    def unban(self, op: User, what: str) -> str:
        operator = self._operator(op)
        try:
            network = parse_ban_target(what)
        except ValueError as e:
            raise ChatError(str(e)) from None
        if network not in {b.network for b in self.bans.current()}:
            raise ChatError(f"{network} is not banned; see /bans")
        self.chat.publish(Unbanned(str(network), origin=self.chat.origin))
        audit_action(operator, "unbanned", target=str(network))
        return f"Unbanned {network}."

    def list_bans(self, op: User) -> list[str]:
        self._operator(op)
        now = self.clock.seconds()
        bans = self.bans.current()
        if not bans:
            return ["No bans are in force."]
        lines = [f"Bans ({len(bans)}):"]
        lines += [f"{b.network} by {b.by} on {format_time(b.created)}: {b.reason} "
                  f"({b.expiry(now)})" for b in bans]
        return lines

    def list_mutes(self, op: User) -> list[str]:
        self._operator(op)
        now = self.clock.seconds()
        mutes = self.mutes.current()
        if not mutes:
            return ["No mutes are in force."]
        lines = [f"Mutes ({len(mutes)}):"]
        lines += [f"{m.nick} by {m.by} on {format_time(m.created)} "
                  f"({'permanent' if m.expires is None else m.remaining(now).strip()})"
                  for m in mutes]
        return lines

    def mute(self, op: User, nick: str, seconds: int | None) -> None:
        operator = self._operator(op)
        target = self._target(op, nick, "mute")
        now = self.clock.seconds()
        host = target.host if isinstance(target, User) else target.where or None
        mute = Mute(target.key, target.nick, host, operator, now,
                    None if seconds is None else now + seconds)
        self.chat.publish(muted_event(mute, self.chat.origin))
        audit_action(operator, "muted", nick=target.nick,
                     peer=target.peer if isinstance(target, User) else host,
                     duration=format_duration(seconds) if seconds else "permanent")
        length = "" if seconds is None else f" for {format_duration(seconds)}"
        self._announce(op, target, f"{target.nick} has been muted by {op.nick}{length}")

    def unmute(self, op: User, nick: str) -> None:
        """Lifts the mute covering ``nick``: the nick it was made under or one the user was
        given since by /rename. The user is told wherever they are, under any nick."""
        operator = self._operator(op)
        try:
            key = nick_key(normalize_nick(nick))
        except InvalidNickname as e:
            raise ChatError(str(e)) from None
        mute = self.mutes.match(key)
        if mute is None:
            raise ChatError(f'"{nick}" is not muted')
        self.chat.publish(Unmuted(mute.key, origin=self.chat.origin))
        audit_action(operator, "unmuted", nick=nick)
        online: list[User | RemoteUser] = [u for u in self.chat.connected()
                                           if mute.covers(u.key)]
        online += [u for u in self.chat.remote.by_key.values() if mute.covers(u.key)]
        self._announce(op, online[0] if online else None,
                       f"{online[0].nick if online else mute.nick} is no longer muted")

    def _announce(self, op: User, target: User | RemoteUser | None, text: str) -> None:
        """Tells the target's rooms (where it happened), the target if in none, and the
        operator if in none of those."""
        rooms = [] if target is None else self.chat.rooms_of(target)
        for room in rooms:
            self.chat.publish(RoomNotice(room.name, text, origin=self.chat.origin))
        if target is not None and not rooms:
            self.chat.tell(target, text)
        if not any(op in room.members for room in rooms):
            self.chat.notice(op, text)

    def wall(self, op: User, text: str) -> None:
        operator = self._operator(op)
        audit_action(operator, "sent a wall", text=text)
        self.chat.publish(Announcement(f"[wall from {op.nick}] {text}", self.chat.origin))

    def force_rename(self, op: User, nick: str, new: str) -> None:
        operator = self._operator(op)
        target = self.chat.find_anyone(nick)
        old = target.nick
        renamed = self.chat.force_rename(target, new)  # "old is now known as new"
        mute = self.mutes.match(nick_key(old))
        if mute is not None:  # the mute follows the user to the new nick
            self.chat.publish(muted_event(mute.renamed(nick_key(renamed)), self.chat.origin))
        self.chat.tell(target, f"{op.nick} has renamed you to {renamed}")
        audit_action(operator, "renamed", nick=old, new=renamed)


def covers(ban: Ban, host: str | None) -> bool:
    """Whether ``ban`` covers the address ``host``."""
    if host is None:
        return False
    try:
        return addresses.ip_address(host) in ban.network
    except ValueError:
        return False


def banned_event(ban: Ban, origin: str, op: str = "", nick: str = "") -> Banned:
    return Banned(str(ban.network), ban.reason, ban.by, op, ban.created,
                  0.0 if ban.expires is None else ban.expires, nick, origin=origin)


def ban_of(event: Banned) -> Ban | None:
    """The ban a ``Banned`` event makes; None if its network is not one (a rogue event)."""
    try:
        network = parse_ban_target(event.network)
    except ValueError:
        return None
    return Ban(network, event.reason, event.by, event.created, event.expires or None)


def muted_event(mute: Mute, origin: str) -> Muted:
    return Muted(mute.key, mute.nick, mute.host or "", mute.by, mute.created,
                 0.0 if mute.expires is None else mute.expires, " ".join(sorted(mute.keys)),
                 origin=origin)


def mute_of(event: Muted) -> Mute:
    return Mute(event.key, event.nick, event.host or None, event.by, event.created,
                event.expires or None, frozenset(event.keys.split()))

"""The cluster's copy of the chat in Redis, and the Lua scripts that change it.

Every chatd process keeps its own copy of the chat (chatd/service.py) and changes it only
from events. Redis keeps one more copy, for the processes that start (or come back) later:
each event is applied to it *and* published in the same Lua script, so the copy and the
channel never disagree, and every event gets the next number of ``seq``. A process that
(re)joins subscribes first, then reads a snapshot that says which ``seq`` it is current to,
and drops the events it buffered meanwhile up to that number: nothing is missed, nothing is
applied twice.

Keys (``P`` is the prefix, ``chatd:``; ``nk`` a nick_key, ``rk`` a room_key)::

    P seq                counter: the number of the last event published
    P guests             counter: the last guest number reserved (blocks, by INCRBY)
    P events             pub/sub channel: "SEQ ORIGIN JSON-EVENT" (chatd/cluster/codec.py);
                         the origin up front lets a process skip its own without decoding
    P procs              zset: process origin -> last heartbeat (Redis's clock, ms)
    P nicks              hash: nk -> {"o": origin, "n": nick, "s": skeleton}  (the claims)
    P skeletons          hash: nick_skeleton -> nk  (no two nicks that look alike)
    P owned:ORIGIN       set: the nks a process holds (what to free when it dies)
    P rooms              set: every rk with a room hash
    P room:RK            hash: name, topic, topic_by, topic_at
    P members:RK         hash: nk -> nick  (presence: who is in the room, any process)
    P in:NK              set: the rks a user is in (what to leave when their process dies)
    P history:RK         list: the room's last --history lines, as encoded events (LTRIM)
    P away               hash: nk -> the reason, for users marked away
    P backfilled:ORIGIN  string: the number of the last part of that process's outage
                         backlog appended to history (chatd/cluster/backlog.py); expires a
                         day after it was last set
    P where              hash: nk -> where the user connects from (``Connected.where``), for
                         an operator's ban or kick by nick on another process
    P bans               hash: network -> the encoded ``Banned`` event in force
    P mutes              hash: nk -> the encoded ``Muted`` event in force
    P kicks              hash: "WHERE NK" -> until when a kicked nick may not come back

A process cut off from Redis keeps its users' lines (chatd/cluster/backlog.py). When it
rejoins, it offers its topics with ``topic-if-newer``, which Redis takes only if newer
than its own, then appends the lines to history with BACKFILL, which publishes each as a
``Backfilled`` event (history only, not live chat) and forgets a room nobody is in now
that has no topic, before it reads the snapshot.

Bans, mutes and kick delays that have run out are pruned (by Redis's clock) when the next
one is set; every process also drops them from its own copy at their time.

Nick claims are atomic: ``claim`` checks the nick_key and the skeleton and takes both in
one script, so two processes asking for "alice" and "\u0430lice" (a Cyrillic a) at once get one
"ok" and one refusal. Folding and skeletons are computed in Python (chatd/text.py), the
same functions a single process uses; Lua only compares the strings.

Presence is kept alive by heartbeats: every ``HEARTBEAT`` seconds each process sets its
score in ``procs`` to Redis's own clock (so the processes' clocks need not agree), and reaps
every process whose score is older than ``PROCESS_TTL``: its users leave their rooms (a
``Left`` event each, with the dead process as origin, so everyone applies it), and their
nicks are freed (a ``Disconnected`` each: a user in no room is known to every process from
registration, chatd/remote.py). A process that was reaped while it was cut off from Redis
finds its score gone at its next heartbeat and announces its users again.

Scripts build key names from the prefix, so this works with one Redis (or a primary with
replicas), not with Redis Cluster's sharding.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer

from chatd.cluster.link import RedisLink

PREFIX = "chatd:"
HEARTBEAT = 2.0  # seconds between heartbeats
PROCESS_TTL = 10.0  # seconds without a heartbeat before a process's users are gone
REAPED_REASON = "their chatd process stopped answering"
SHUTDOWN_REASON = "their chatd process is shutting down"
# Said of a user who left while their process was cut off from Redis (their own process's
# users saw their real reason then).
GONE_REASON = "left while their chatd process was cut off"

# A room is forgotten, with its history, when nobody is in it and it has no topic: the rule
# of a single process (Room.worth_keeping), so the rooms anyone may make do not pile up in
# Redis. KEYS[1] is the hash of the room never forgotten (the process's --default-room).
_FORGET_IF_EMPTY = """
local function forget_if_empty(P, rk)
  if P..'room:'..rk ~= KEYS[1]
     and redis.call('HLEN', P..'members:'..rk) == 0
     and (redis.call('HGET', P..'room:'..rk, 'topic') or '') == '' then
    redis.call('DEL', P..'room:'..rk, P..'history:'..rk)
    redis.call('SREM', P..'rooms', rk)
  end
end
local function publish(P, origin, payload)
  local seq = redis.call('INCR', P..'seq')
  redis.call('PUBLISH', P..'events', seq..' '..origin..' '..payload)
  return seq
end
local function release(P, origin, nk)
  local entry = redis.call('HGET', P..'nicks', nk)
  if not entry then return end
  local held = cjson.decode(entry)
  if held.o ~= origin then return end
  redis.call('HDEL', P..'nicks', nk)
  redis.call('HDEL', P..'away', nk)
  redis.call('HDEL', P..'where', nk)
  if redis.call('HGET', P..'skeletons', held.s) == nk then
    redis.call('HDEL', P..'skeletons', held.s)
  end
  redis.call('SREM', P..'owned:'..origin, nk)
end
-- Every user of process o leaves every room (a Left event each, as o's), their nicks are
-- freed (a Disconnected each); then o is forgotten.
local function gone(P, o, nk, reason)
  local entry = redis.call('HGET', P..'nicks', nk)
  local nick = entry and cjson.decode(entry).n or nk
  for _, rk in ipairs(redis.call('SMEMBERS', P..'in:'..nk)) do
    redis.call('HDEL', P..'members:'..rk, nk)
    local name = redis.call('HGET', P..'room:'..rk, 'name') or rk
    forget_if_empty(P, rk)
    publish(P, o, cjson.encode({type = 'Left', room = name, nick = nick, reason = reason,
                                origin = o, quit = true}))
  end
  redis.call('DEL', P..'in:'..nk)
  release(P, o, nk)
  publish(P, o, cjson.encode({type = 'Disconnected', nick = nick, origin = o}))
end
local function depart(P, o, reason)
  for _, nk in ipairs(redis.call('SMEMBERS', P..'owned:'..o)) do gone(P, o, nk, reason) end
  redis.call('DEL', P..'owned:'..o)
  redis.call('ZREM', P..'procs', o)
end
"""

# Drops the fields of hash P..name whose end (ends(value), seconds since the epoch; 0 for
# never) is past, by Redis's clock.
_PRUNE = """
local function prune(P, name, ends)
  local now = tonumber(redis.call('TIME')[1])
  local all = redis.call('HGETALL', P..name)
  for i = 1, #all, 2 do
    local at = tonumber(ends(all[i + 1])) or 0
    if at > 0 and at < now then redis.call('HDEL', P..name, all[i]) end
  end
end
local function expires(payload)
  local ok, rule = pcall(cjson.decode, payload)
  return ok and type(rule) == 'table' and rule.expires or 0
end
local function itself(value) return value end
"""

# ARGV: prefix, then for each event, in order, EVENT_STRIDE values: its payload, kind and
# origin, and the kind's arguments padded to five. Returns each event's seq, or 0 for a
# join-again of someone already there, or a topic-if-newer no newer than the room's (nothing
# published).
EVENT_STRIDE = 8
APPLY = _FORGET_IF_EMPTY + _PRUNE + """
local function apply_one(P, payload, kind, origin, a)
  if kind == 'line' then
    local rk, name, keep = a[1], a[2], tonumber(a[3])
    redis.call('HSETNX', P..'room:'..rk, 'name', name)
    redis.call('SADD', P..'rooms', rk)
    if keep > 0 then
      redis.call('RPUSH', P..'history:'..rk, payload)
      redis.call('LTRIM', P..'history:'..rk, -keep, -1)
    end
  elseif kind == 'join' or kind == 'join-again' then
    local rk, name, nk, nick = a[1], a[2], a[3], a[4]
    redis.call('HSETNX', P..'room:'..rk, 'name', name)
    redis.call('SADD', P..'rooms', rk)
    local added = redis.call('HSET', P..'members:'..rk, nk, nick)
    redis.call('SADD', P..'in:'..nk, rk)
    if a[5] ~= '' then redis.call('HSET', P..'where', nk, a[5]) end
    if kind == 'join-again' and added == 0 then return 0 end
  elseif kind == 'leave' then
    local rk, nk = a[1], a[2]
    redis.call('HDEL', P..'members:'..rk, nk)
    redis.call('SREM', P..'in:'..nk, rk)
    forget_if_empty(P, rk)
  elseif kind == 'rename' then
    local old, new, nick = a[1], a[2], a[3]
    for _, rk in ipairs(redis.call('SMEMBERS', P..'in:'..old)) do
      redis.call('HDEL', P..'members:'..rk, old)
      redis.call('HSET', P..'members:'..rk, new, nick)
    end
    if old ~= new and redis.call('EXISTS', P..'in:'..old) == 1 then
      redis.call('RENAME', P..'in:'..old, P..'in:'..new)
    end
    local where = redis.call('HGET', P..'where', old)
    if where and old ~= new then
      redis.call('HDEL', P..'where', old)
      redis.call('HSET', P..'where', new, where)
    end
  elseif kind == 'connected' then
    local entry = redis.call('HGET', P..'nicks', a[1])
    if a[2] ~= '' and (not entry or cjson.decode(entry).o == origin) then
      redis.call('HSET', P..'where', a[1], a[2])
    end
  elseif kind == 'kick' then
    -- The user leaves every room; their process releases the nick when it lets them go.
    local nk, where, untl = a[1], a[2], tonumber(a[3]) or 0
    for _, rk in ipairs(redis.call('SMEMBERS', P..'in:'..nk)) do
      redis.call('HDEL', P..'members:'..rk, nk)
      forget_if_empty(P, rk)
    end
    redis.call('DEL', P..'in:'..nk)
    if untl > 0 then redis.call('HSET', P..'kicks', where..' '..nk, a[3]) end
    prune(P, 'kicks', itself)
  elseif kind == 'ban' or kind == 'mute' then
    redis.call('HSET', P..kind..'s', a[1], payload)
    prune(P, kind..'s', expires)
  elseif kind == 'unban' or kind == 'unmute' then
    redis.call('HDEL', P..string.sub(kind, 3)..'s', a[1])
  elseif kind == 'away' then
    if a[2] == '' then
      redis.call('HDEL', P..'away', a[1])
    else
      redis.call('HSET', P..'away', a[1], a[2])
    end
  elseif kind == 'topic' or kind == 'topic-if-newer' then
    local rk = a[1]
    if kind == 'topic-if-newer' and tonumber(a[5]) <=
        tonumber(redis.call('HGET', P..'room:'..rk, 'topic_at') or '0') then
      return 0
    end
    redis.call('HSET', P..'room:'..rk, 'name', a[2], 'topic', a[3], 'topic_by', a[4],
               'topic_at', a[5])
    redis.call('SADD', P..'rooms', rk)
    forget_if_empty(P, rk)
  end
  return publish(P, origin, payload)
end
local P = ARGV[1]
local seqs = {}
for i = 2, #ARGV, 8 do
  seqs[#seqs + 1] = apply_one(P, ARGV[i], ARGV[i + 1], ARGV[i + 2],
                              {ARGV[i + 3], ARGV[i + 4], ARGV[i + 5], ARGV[i + 6], ARGV[i + 7]})
end
return seqs
"""

# ARGV: prefix, origin, nk, nick, skeleton, old nk ('' for a new user).
# Returns {'ok', 1 if the claim is new, 0 if this process held it already}, {'taken', nick}
# or {'looks', nick}.
CLAIM = _FORGET_IF_EMPTY + """
local P, origin, nk, nick, skeleton, old = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local entry = redis.call('HGET', P..'nicks', nk)
if entry then
  local held = cjson.decode(entry)
  if held.o ~= origin then return {'taken', held.n} end
  if old == '' and held.n == nick then return {'ok', 0} end
end
local holder = redis.call('HGET', P..'skeletons', skeleton)
if holder and holder ~= nk and holder ~= old then
  local other = redis.call('HGET', P..'nicks', holder)
  if other then return {'looks', cjson.decode(other).n} end
end
if old ~= '' and old ~= nk then release(P, origin, old) end
redis.call('HSET', P..'nicks', nk, cjson.encode({o = origin, n = nick, s = skeleton}))
redis.call('HSET', P..'skeletons', skeleton, nk)
redis.call('SADD', P..'owned:'..origin, nk)
return {'ok', 1}
"""

# ARGV: prefix, origin, nk.
RELEASE = _FORGET_IF_EMPTY + """
release(ARGV[1], ARGV[2], ARGV[3])
return 1
"""

# ARGV: prefix, origin, ttl (ms), reason. Returns {1 if this process was still known, 0 if
# it had been reaped (or is new), the number of processes reaped now}.
HEARTBEAT_SCRIPT = _FORGET_IF_EMPTY + """
local P, origin, ttl, reason = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local known = redis.call('ZSCORE', P..'procs', origin) and 1 or 0
redis.call('ZADD', P..'procs', now, origin)
local dead = redis.call('ZRANGEBYSCORE', P..'procs', '-inf', now - ttl)
for _, o in ipairs(dead) do depart(P, o, reason) end
return {known, #dead}
"""

# ARGV: prefix, origin, reason: a process leaves the cluster (it is stopping).
DEPART = _FORGET_IF_EMPTY + """
depart(ARGV[1], ARGV[2], ARGV[3])
return 1
"""

# ARGV: prefix, origin, reason, then the nks of the users origin has now. Every other user
# the cluster holds for origin leaves (as ``depart`` does for all of them): those who went
# while origin was cut off from Redis, for less than PROCESS_TTL (so it was not reaped),
# whose leaving never reached Redis. Returns how many went.
DEPART_GONE = _FORGET_IF_EMPTY + """
local P, origin, reason = ARGV[1], ARGV[2], ARGV[3]
local here = {}
for i = 4, #ARGV do here[ARGV[i]] = true end
local count = 0
for _, nk in ipairs(redis.call('SMEMBERS', P..'owned:'..origin)) do
  if not here[nk] then
    gone(P, origin, nk, reason)
    count = count + 1
  end
end
return count
"""

# ARGV: prefix, origin, the number of this part of its backlog, keep (--history), then per
# line: rk, room name, the line as history keeps it (Said or Acted), the Backfilled event to
# publish. The lines a process said while it was cut off from Redis, appended to their
# rooms' history in one go; ``backfilled:ORIGIN`` keeps the number of the last part taken
# in, so a part sent again (its answer was lost with the connection) is not appended twice.
# A room nobody is in now and without a topic is then forgotten with its history, by the
# rule of a leave (the rejoining process has announced its users, and offered its topics,
# first), so what anyone said in rooms they made and left while cut off does not pile up.
# It outlives the process by a day (BACKFILL_MARK_TTL), so a process reaped while its answer
# was lost does not append it twice either. Returns how many lines were added (0: this
# part was in already).
BACKFILL_MARK_TTL = 86_400  # seconds
BACKFILL = _FORGET_IF_EMPTY + """
local P, origin, part, keep = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local mark = P..'backfilled:'..origin
if part <= tonumber(redis.call('GET', mark) or '0') then return 0 end
redis.call('SET', mark, part, 'EX', """ + str(BACKFILL_MARK_TTL) + """)
for i = 5, #ARGV, 4 do
  local rk = ARGV[i]
  redis.call('HSETNX', P..'room:'..rk, 'name', ARGV[i + 1])
  redis.call('SADD', P..'rooms', rk)
  if keep > 0 then
    redis.call('RPUSH', P..'history:'..rk, ARGV[i + 2])
    redis.call('LTRIM', P..'history:'..rk, -keep, -1)
  end
  publish(P, origin, ARGV[i + 3])
end
-- A room emptied since (nobody in it, no topic) goes with its history, as on a leave.
for i = 5, #ARGV, 4 do forget_if_empty(P, ARGV[i]) end
return (#ARGV - 4) / 4
"""

# ARGV: prefix. Everything a (re)joining process needs, and the seq it is current to.
SNAPSHOT = """
local P = ARGV[1]
local rooms = {}
for _, rk in ipairs(redis.call('SMEMBERS', P..'rooms')) do
  local r = redis.call('HMGET', P..'room:'..rk, 'name', 'topic', 'topic_by', 'topic_at')
  rooms[#rooms + 1] = {rk, r[1] or rk, r[2] or '', r[3] or '', r[4] or '0',
                       redis.call('HGETALL', P..'members:'..rk),
                       redis.call('LRANGE', P..'history:'..rk, 0, -1)}
end
return {redis.call('GET', P..'seq') or '0', rooms, redis.call('HGETALL', P..'away'),
        redis.call('HGETALL', P..'nicks'), redis.call('HGETALL', P..'where'),
        redis.call('HVALS', P..'bans'), redis.call('HVALS', P..'mutes'),
        redis.call('HGETALL', P..'kicks')}
"""


@dataclass(frozen=True)
class SnapshotRoom:
    key: str
    name: str
    topic: str
    topic_by: str
    topic_at: float
    members: dict[str, str]  # nk -> nick, every process's
    history: list[bytes]  # encoded events, oldest first


@dataclass(frozen=True)
class Snapshot:
    seq: int
    rooms: list[SnapshotRoom]
    away: dict[str, str]  # nk -> reason
    claims: dict[str, tuple[str, str]]  # nk -> (origin, nick): every registered user
    where: dict[str, str]  # nk -> where they connect from
    rules: list[bytes]  # encoded Banned and Muted events in force (or run out lately)
    kicks: dict[str, str]  # "WHERE NK" -> until


class ClaimRefused(Exception):
    """Another process's user holds the nick, or one that looks like it; says who."""

    def __init__(self, why: str, holder: str) -> None:
        super().__init__(why, holder)
        self.why = why  # "taken" or "looks"
        self.holder = holder


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _pairs(flat: Sequence[Any]) -> dict[str, str]:
    return {_text(flat[i]): _text(flat[i + 1]) for i in range(0, len(flat) - 1, 2)}


class ClusterState:
    """Typed calls on the scripts above, over one ``RedisLink``."""

    def __init__(self, link: RedisLink, prefix: str = PREFIX, kept_room: str = "") -> None:
        self.link = link
        self.prefix = prefix
        self._keys = [f"{prefix}room:{kept_room}"]  # KEYS[1] of every script

    @property
    def channel(self) -> str:
        return f"{self.prefix}events"

    def apply(self, payload: bytes, origin: str, kind: str,
              *args: str | float | int) -> defer.Deferred[int]:
        """Applies an event to the copy in Redis and publishes it; fires with its seq."""
        d = self.apply_many([(payload, origin, kind, args)])
        return d.addCallback(lambda seqs: seqs[0])

    def apply_many(self, events: Sequence[tuple[bytes, str, str, Sequence[str | float | int]]]
                   ) -> defer.Deferred[list[int]]:
        """Applies and publishes several events, in order, in one script call; fires with
        their seqs (0 for a join-again that changed nothing)."""
        argv: list[Any] = [self.prefix]
        for payload, origin, kind, args in events:
            argv += [payload, kind, origin, *args, *[""] * (EVENT_STRIDE - 3 - len(args))]
        d = self.link.call(APPLY, self._keys, argv)
        return d.addCallback(lambda seqs: [int(seq) for seq in seqs])

    def claim(self, origin: str, nk: str, nick: str, skeleton: str,
              old: str = "") -> defer.Deferred[bool]:
        """Takes ``nick`` for a user of ``origin`` (freeing ``old``, their previous nk);
        fires with whether the claim is new (False: ``origin`` held it already), or fails
        with ClaimRefused when someone elsewhere has it or a look-alike."""

        def answer(reply: list[Any]) -> bool:
            if _text(reply[0]) != "ok":
                raise ClaimRefused(_text(reply[0]), _text(reply[1]))
            return _text(reply[1]) == "1"

        d = self.link.call(CLAIM, self._keys, [self.prefix, origin, nk, nick, skeleton, old])
        return d.addCallback(answer)

    def release(self, origin: str, nk: str) -> defer.Deferred[Any]:
        return self.link.call(RELEASE, self._keys, [self.prefix, origin, nk])

    def heartbeat(self, origin: str, ttl: float = PROCESS_TTL) -> defer.Deferred[bool]:
        """Says this process is alive and reaps the dead; fires with whether this process
        was still known (False: its users must be announced again)."""
        d = self.link.call(HEARTBEAT_SCRIPT, self._keys,
                           [self.prefix, origin, int(ttl * 1000), REAPED_REASON])
        return d.addCallback(lambda reply: int(reply[0]) == 1)

    def reserve_guests(self, count: int) -> defer.Deferred[int]:
        """Reserves ``count`` guest numbers for one process; fires with the last of them."""
        return self.link.command("INCRBY", f"{self.prefix}guests", count).addCallback(int)

    def depart(self, origin: str, reason: str) -> defer.Deferred[Any]:
        """Takes every user of ``origin`` out of the cluster at once (it is stopping)."""
        return self.link.call(DEPART, self._keys, [self.prefix, origin, reason])

    def depart_gone(self, origin: str, reason: str, here: Sequence[str]) -> defer.Deferred[int]:
        """Takes out of the cluster every user it holds for ``origin`` but those of ``here``
        (nks); fires with how many went."""
        d = self.link.call(DEPART_GONE, self._keys, [self.prefix, origin, reason, *here])
        return d.addCallback(int)

    def backfill(self, origin: str, part: int, keep: int,
                 lines: Sequence[tuple[str, str, bytes, bytes]]) -> defer.Deferred[int]:
        """Appends part ``part`` of ``origin``'s outage backlog (rk, room name, the line's
        payload, the Backfilled event's payload each) to history and publishes each line's
        Backfilled; fires with how many were added (0: this part was added before)."""
        argv: list[Any] = [self.prefix, origin, part, keep]
        for line in lines:
            argv += line
        return self.link.call(BACKFILL, self._keys, argv).addCallback(int)

    def snapshot(self) -> defer.Deferred[Snapshot]:
        def parse(reply: list[Any]) -> Snapshot:
            seq, rooms, away, claims, where, bans, mutes, kicks = reply
            return Snapshot(
                seq=int(seq),
                rooms=[SnapshotRoom(_text(rk), _text(name), _text(topic), _text(by),
                                    _float(at), _pairs(members), list(history))
                       for rk, name, topic, by, at, members, history in rooms],
                away=_pairs(away),
                claims={nk: _claim_holder(entry) for nk, entry in _pairs(claims).items()},
                where=_pairs(where),
                rules=[*bans, *mutes],
                kicks=_pairs(kicks),
            )

        return self.link.call(SNAPSHOT, self._keys, [self.prefix]).addCallback(parse)


def _claim_holder(entry: str) -> tuple[str, str]:
    """(origin, nick) from a claim's JSON in ``nicks``; ("", "") if it is not one."""
    try:
        held = json.loads(entry)
        return str(held["o"]), str(held["n"])
    except (ValueError, TypeError, KeyError):
        return "", ""


def _float(value: Any) -> float:
    try:
        number = float(_text(value))
    except ValueError:
        return 0.0
    return number if math.isfinite(number) else 0.0

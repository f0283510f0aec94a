"""Telnet at the byte level: negotiation is removed from the input and politely answered.

chatd speaks plain lines; a ``telnet`` client sends commands in the same stream (RFC 854).
The filter removes them, answers what must be answered, and never walks the bytes of a read
one at a time in Python: it jumps from one IAC to the next with ``bytes.find``, so plain text
and an endless subnegotiation both cost a C-speed scan. A subnegotiation's content is never
kept, however long it runs.

Answers:

- ``IAC DO TIMING-MARK`` -> ``IAC WILL TIMING-MARK``, placed after the input that came before
  it (RFC 860). telnet's ^C sends ``IAC IP IAC DO TIMING-MARK`` and then shows nothing until
  the mark is answered: without this, a user who pressed ^C would see nothing more.
- any other ``DO x`` -> ``WONT x``; ``WILL x`` -> ``DONT x`` (RFC 854: we support no option).
  ``WONT``/``DONT`` are never answered, and each refusal is sent at most once per option, so
  two parties refusing each other cannot loop and a peer cannot make us repeat ourselves.
- ``IAC AYT`` -> a short line saying we are here.
- ``IAC IP``, ``AO``, ``BRK`` and every other two-byte command are swallowed.
- ``IAC IAC`` is a literal 0xFF data byte.
"""

from __future__ import annotations

import re

IAC = 0xFF
DONT, DO, WONT, WILL, SB = 0xFE, 0xFD, 0xFC, 0xFB, 0xFA
AYT = 0xF6  # are you there
SE = 0xF0
TIMING_MARK = 6

AYT_REPLY = b"\r\n[chatd: yes]\r\n"
_IAC = b"\xff"
# Runs a crafted stream can repeat endlessly, each consumed by one C-level match instead of
# one Python step per command: the content of a subnegotiation up to IAC SE (IAC IAC and any
# other IAC pair inside it included), and commands that need neither output nor an answer
# (WONT/DONT x and the two-byte commands but AYT, SB and IAC).
_SUB_CONTENT = re.compile(rb"(?:[^\xff]+|\xff[^\xf0])*")
_SILENT_RUN = re.compile(rb"(?:\xff(?:[\xf0-\xf5\xf7-\xf9]|[\xfc\xfe][\x00-\xff]))+")
_LITERAL_RUN = re.compile(rb"(?:\xff\xff)+")

# Filter states: plain data, after IAC, after IAC <verb> (waiting for the option byte), inside
# IAC SB ..., and after an IAC inside a subnegotiation.
_DATA, _COMMAND, _OPTION, _SUB, _SUB_IAC = range(5)

Chunk = tuple[bytes, bytes]  # (clean input, reply to write once that input is handled)


class TelnetFilter:
    """Removes telnet commands from a byte stream, across reads, and says what to answer.

    ``feed`` returns ordered ``(input, reply)`` pairs: handle ``input``, then write ``reply``
    (``b""`` when there is nothing to write). ``discarded`` counts every byte swallowed so far
    (commands, options, subnegotiation content, the escaping half of ``IAC IAC``), so the edge
    can charge them against the sender's flood allowance: ``discarded`` plus the clean bytes
    returned always equals the bytes fed.
    """

    __slots__ = ("_refused", "_state", "_verb", "discarded")

    def __init__(self) -> None:
        self._state = _DATA
        self._verb = 0  # the WILL/WONT/DO/DONT waiting for its option byte
        # (verb sent, option): at most 512; a set from the first refusal (most peers, nc
        # for one, never negotiate, and an empty set costs 216 bytes).
        self._refused: set[tuple[int, int]] | frozenset[tuple[int, int]] = frozenset()
        self.discarded = 0

    def feed(self, data: bytes) -> list[Chunk]:
        if self._state == _DATA and data.find(_IAC) < 0:
            return [(data, b"")]  # the common case: no telnet at all, no per-byte work
        return self._filter(data)

    def _filter(self, data: bytes) -> list[Chunk]:
        chunks: list[Chunk] = []
        pieces: list[bytes] = []  # clean input since the last reply
        state = self._state
        at = 0
        end = len(data)
        kept = 0
        while at < end:
            if state == _DATA:
                found = data.find(_IAC, at)
                if found < 0:
                    pieces.append(data[at:])
                    kept += end - at
                    break
                if found > at:
                    pieces.append(data[at:found])
                    kept += found - at
                at = found
                run = _SILENT_RUN.match(data, at) or _LITERAL_RUN.match(data, at)
                if run is not None:
                    at = run.end()
                    if run.re is _LITERAL_RUN:
                        pieces.append(_IAC * ((at - found) // 2))
                        kept += (at - found) // 2
                    continue
                at += 1
                state = _COMMAND
                continue
            if state == _SUB:
                # Dropped, never kept: content up to IAC SE, or a lone IAC at the end.
                at = _SUB_CONTENT.match(data, at).end()  # type: ignore[union-attr]
                if at < end:
                    at += 1
                    state = _SUB_IAC
                continue
            byte = data[at]
            at += 1
            if state == _COMMAND:
                if byte == IAC:  # an escaped 0xFF data byte
                    pieces.append(_IAC)
                    kept += 1
                    state = _DATA
                elif WILL <= byte <= DONT:
                    self._verb = byte
                    state = _OPTION
                elif byte == SB:
                    state = _SUB
                else:
                    state = _DATA
                    if byte == AYT:
                        self._reply(chunks, pieces, AYT_REPLY)
                        pieces = []
                    # IP, AO, BRK, NOP, GA, EC, EL, DM and anything unknown: swallowed
            elif state == _OPTION:
                state = _DATA
                reply = self._answer(self._verb, byte)
                if reply:
                    self._reply(chunks, pieces, reply)
                    pieces = []
            else:  # _SUB_IAC: IAC SE ends the subnegotiation; IAC IAC is content
                state = _DATA if byte == SE else _SUB
        self._state = state
        self.discarded += end - kept
        if pieces or not chunks:
            chunks.append((b"".join(pieces), b""))
        return chunks

    @staticmethod
    def _reply(chunks: list[Chunk], pieces: list[bytes], reply: bytes) -> None:
        """Queues ``reply`` after the input gathered so far (joined onto the last reply)."""
        if not pieces and chunks:
            last_input, last_reply = chunks[-1]
            chunks[-1] = (last_input, last_reply + reply)
        else:
            chunks.append((b"".join(pieces), reply))

    def _answer(self, verb: int, option: int) -> bytes:
        if verb == DO and option == TIMING_MARK:
            return bytes((IAC, WILL, TIMING_MARK))  # every time: one per ^C
        if verb == DO:
            refusal = WONT
        elif verb == WILL:
            refusal = DONT
        else:
            return b""  # WONT and DONT are acknowledgements: answering them could loop
        if (refusal, option) in self._refused:
            return b""
        if not isinstance(self._refused, set):
            self._refused = set()
        self._refused.add((refusal, option))
        return bytes((IAC, refusal, option))

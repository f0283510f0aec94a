"""The line front-end's pre-filter: telnet negotiation out, every line ending made LF.

Pure (bytes in, bytes out, no transport): the line protocol feeds what a read brings
through ``LineInput.feed`` and hands the result to ``LineReceiver`` (delimiter LF), in
slices of at most ``SLICE`` bytes so that LineReceiver's split-per-line stays linear.

Chat clients end lines with LF (``nc``), CRLF (telnet) or a lone CR (some raw clients). A
CR becomes LF, so a CRLF becomes LF plus an empty line when it is split across reads, and
empty lines are ignored: no state is needed for it.
"""

from __future__ import annotations

from chatd.telnet import TelnetFilter

# LineReceiver copies its whole buffer once per line; fed at most this much at a time, a
# 256 KiB read of short lines costs 256 KiB of copying instead of 256 KiB x lines.
SLICE = 4096


def normalize_line_endings(data: bytes) -> bytes:
    if b"\r" in data:
        return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return data


class LineInput:
    """Telnet filtering and line-ending normalisation, across reads."""

    __slots__ = ("telnet",)

    def __init__(self) -> None:
        self.telnet = TelnetFilter()

    @property
    def discarded(self) -> int:
        return self.telnet.discarded

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        """(input with LF line endings, reply for the peer once that input is handled)."""
        return [(normalize_line_endings(clean), reply) for clean, reply in self.telnet.feed(data)]

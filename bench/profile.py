"""py-spy profiles of a Python server during a scenario, and their top lines (issue 16).

``python -m bench --profile DIR`` records every run of a scenario against chatd with
``py-spy record --format raw`` (collapsed stacks: one ``frame;frame;... count`` line per
distinct stack) into DIR and prints the functions that hold the most samples, by
their own time and including what they call.  py-spy is the ``bench`` extra; it
samples from the generator's core.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import TracebackType

RATE = 250  # samples per second
_LINE_NO = re.compile(r":\d+\)$")


def py_spy() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


class Recording:
    """``with Recording(pid, path):`` samples ``pid`` into ``path`` while the block runs."""

    def __init__(self, pid: int, path: Path) -> None:
        exe = py_spy()
        if exe is None:
            raise OSError("py-spy is not installed (pip install py-spy; the bench extra)")
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [exe, "record", "--pid", str(pid), "--rate", str(RATE), "--format", "raw",
             "--output", str(path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip

    def __enter__(self) -> Recording:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # py-spy writes its output when interrupted, as on Ctrl-C.
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def _frame(raw: str) -> tuple[str, str]:
    """``name (path/to/file.py:123)`` -> (``name (file.py)``, ``path/to/file.py``)."""
    name, _, where = raw.partition(" (")
    path = _LINE_NO.sub("", where.rstrip(")") + ")").rstrip(")")
    return (f"{name} ({Path(path).name})" if path else name), path


def top_lines(path: Path, n: int = 12) -> list[str]:
    """The reactor thread's functions with the most samples: own time (the leaf frame),
    and for chatd's own functions, time including what they call.  Other threads (the
    SQLite writer) are counted apart."""
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = other = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        k = int(count)
        frames = [_frame(f) for f in stack.split(";") if f]
        if not frames:
            continue
        if frames[0][0].startswith(("Thread._bootstrap", "_bootstrap ")):  # not the reactor
            other += k
            continue
        total += k
        own[frames[-1][0]] += k
        for name in {name for name, where in frames if "chatd/" in where}:
            incl[name] += k
    if not total:
        return [f"{path.name}: no samples"]
    out = [f"{path.name}: {total} reactor-thread samples at {RATE}/s "
           f"({other} in other threads), idle time not sampled", "  own time:"]  # fmt: skip
    out += [f"    {100 * c / total:5.1f}%  {f}" for f, c in own.most_common(n)]
    out += ["  chatd functions, including callees:"]
    out += [f"    {100 * c / total:5.1f}%  {f}" for f, c in incl.most_common(n)]
    return out

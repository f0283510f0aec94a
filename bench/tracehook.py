"""``python -m bench.tracehook <twistd arguments>``: twistd with tracemalloc on.

Each SIGUSR2 writes a tracemalloc snapshot to ``$BENCH_SNAPSHOT_DIR/<n>.snap`` (n = 1,
2, ...), taken in the reactor thread between two bytecodes, so ``bench/memory.py`` can
compare the daemon before and after it holds many idle clients.  Only for measuring:
tracing makes every allocation slower.
"""

from __future__ import annotations

import os
import signal
import sys
import tracemalloc
from pathlib import Path
from types import FrameType


def main() -> None:
    out = Path(os.environ["BENCH_SNAPSHOT_DIR"])
    tracemalloc.start(int(os.environ.get("BENCH_TRACE_FRAMES", "1")))
    taken = 0

    def snapshot(signum: int, frame: FrameType | None) -> None:
        nonlocal taken
        taken += 1
        path = out / f"{taken}.snap"
        tracemalloc.take_snapshot().dump(str(path) + ".tmp")
        os.replace(str(path) + ".tmp", path)  # whole files only

    signal.signal(signal.SIGUSR2, snapshot)
    from twisted.scripts.twistd import run

    sys.argv = ["twistd", *sys.argv[1:]]
    run()


if __name__ == "__main__":
    main()

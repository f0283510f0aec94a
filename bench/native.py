"""The native load generator (``bench/gen``, Go): find or build it, run one scenario.

The hot loops (burst, closed loop, paced, scale) run in ``benchgen``, one process per
scenario run on the generator's core (it inherits the harness's CPU affinity); it
prints one JSON object of figures, under the same names the Python generator uses.
``make bench`` builds it; running ``python -m bench`` directly builds it when the Go
sources are newer than the binary.  The binary lives in the git-ignored ``bench/bin``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from bench.swarm import GenTimeout
from bench.sysutil import CLK_TCK

GEN_DIR = Path(__file__).resolve().parent / "gen"
BINARY = Path(__file__).resolve().parent / "bin" / "benchgen"
INSTALL_HINT = "install Go (Debian: apt-get install golang-go; `make bench` does it as root)"
TIMED_OUT = 3  # benchgen's exit status for a bounded loop that ran out of time


class NativeMissing(Exception):
    """The native generator is not built and cannot be built here."""


def binary() -> Path:
    """The built generator, rebuilt first if a Go source is newer."""
    sources = [*GEN_DIR.glob("*.go"), GEN_DIR / "go.mod"]
    newest = max(p.stat().st_mtime for p in sources)
    if BINARY.exists() and BINARY.stat().st_mtime >= newest:
        return BINARY
    go = shutil.which("go")
    if go is None:
        raise NativeMissing(f"the native load generator needs Go: {INSTALL_HINT}")
    BINARY.parent.mkdir(exist_ok=True)
    done = subprocess.run([go, "build", "-o", str(BINARY), "."], cwd=GEN_DIR,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    if done.returncode != 0:
        raise NativeMissing(f"go build failed in {GEN_DIR}:\n{done.stderr}")
    return BINARY


Flags = dict[str, str | int | float]


def run(scenario: str, flags: Flags, limit: float) -> dict[str, float]:
    """Run ``benchgen <scenario>`` for at most ``limit`` seconds; its figures."""
    cmd = [str(binary()), scenario, "-clk-tck", str(CLK_TCK), "-limit", str(limit)]
    for name, val in flags.items():
        cmd += [f"-{name}", str(val)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=limit + 30,
                              env=dict(os.environ, GOMAXPROCS="1"))  # fmt: skip
    except subprocess.TimeoutExpired:
        raise GenTimeout(f"benchgen {scenario}: no answer within {limit + 30:.0f}s") from None
    if done.returncode == TIMED_OUT:
        raise GenTimeout(done.stderr.strip() or f"benchgen {scenario} ran out of time")
    if done.returncode != 0:
        raise OSError(f"benchgen {scenario} exited {done.returncode}: {done.stderr.strip()}")
    figures: dict[str, float] = {k: float(v) for k, v in json.loads(done.stdout).items()}
    return figures

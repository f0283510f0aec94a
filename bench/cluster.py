"""One chatd process against two on the same Redis (issue 15): ``python -m bench.cluster``.

Three set-ups, the same room of receivers and senders (bench/scenarios.py: burst fan-out
and closed loop), all on 127.0.0.1:

- ``single``: one chatd, no Redis (``--state none``): the baseline.
- ``redis-1``: one chatd with ``--redis``: what the bus costs (every event goes through a
  Lua script and back through the channel, and is skipped as the process's own).
- ``redis-2``: two chatd processes with ``--redis`` sharing one port
  (``--listen reuseport:PORT``): the kernel spreads the clients over them, so most lines
  cross Redis to reach half the room.

chatd processes are pinned one per core (taskset); Redis and the generator are not pinned:
on a two-core machine they share the cores with the servers, which the CPU columns show.
Every loop is bounded in count and time, as in bench/scenarios.py.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench import scenarios
from bench.report import md_table
from bench.servers import Running, Skip, _popen, _wait_port
from bench.swarm import CHAT
from bench.sysutil import cpu_seconds, free_port

SETUPS = ["single", "redis-1", "redis-2"]


class Cluster(Running):
    """Several chatd processes (and a redis-server) seen by the scenarios as one server."""

    others: list[subprocess.Popen[bytes]]

    def pids(self) -> list[int]:
        return [self.pid, *(p.pid for p in self.others)]

    def stop(self) -> None:
        for proc in self.others:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.others:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        super().stop()


def _redis(tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    server = shutil.which("redis-server")
    if server is None:
        raise Skip("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    proc = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
         "no", "--dir", str(tmp)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_port(port, proc, "redis-server")
    return proc, port


def start(setup: str) -> Cluster:
    twistd = shutil.which("twistd", path=str(Path(sys.executable).parent)) or "twistd"
    tmp = Path(tempfile.mkdtemp(prefix=f"bench-{setup}-"))
    port = free_port()
    processes = 2 if setup == "redis-2" else 1
    listen = f"reuseport:{port}:interface=127.0.0.1" if processes > 1 else \
        f"tcp:{port}:interface=127.0.0.1"
    base = [twistd, "-n", "--pidfile=", "chatd", "--listen", listen, "--no-echo",
            "--state", "none", "--flood-rate", "0", "--max-per-ip", "0"]
    redis = None
    if setup != "single":
        redis, redis_port = _redis(tmp)
        base += ["--redis", f"redis://127.0.0.1:{redis_port}/0"]
    procs = []
    for core in range(processes):
        directory = tmp / f"chatd{core}"
        directory.mkdir()
        procs.append(_popen(base, core, directory, f"chatd{core}"))
    _wait_port(port, procs[0], setup)
    time.sleep(1.0 if redis else 0.2)  # every process listening, and in the cluster
    cluster = Cluster(setup, procs[0], procs[0].pid, CHAT, port, tmp=tmp)
    cluster.others = procs[1:] + ([redis] if redis else [])
    return cluster


def measure(setup: str, scenario: Callable[[Running, scenarios.Sizes], dict[str, float]],
            sizes: scenarios.Sizes, runs: int) -> dict[str, float]:
    results = []
    for _ in range(runs):
        cluster = start(setup)
        try:
            pids = cluster.pids()
            before = [cpu_seconds(p) for p in pids]
            t0 = time.monotonic()
            figures = scenario(cluster, sizes)
            wall = time.monotonic() - t0
            used = [cpu_seconds(p) - b for p, b in zip(pids, before, strict=True)]
            figures["servers_cpu_pct"] = 100 * sum(used[:-1] if setup != "single"
                                                   else used) / wall
            figures["redis_cpu_pct"] = 100 * used[-1] / wall if setup != "single" else 0.0
            results.append(figures)
        finally:
            cluster.stop()
    return {k: statistics.median(r[k] for r in results) for k in results[0]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.cluster", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="small sizes, one run")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args(argv)
    sizes = scenarios.Sizes.quick() if args.quick else scenarios.Sizes()
    runs = 1 if args.quick else args.runs
    print(f"chatd cluster benchmark: {os.cpu_count()} cores, {sizes.receivers} receivers, "
          f"{sizes.senders} senders, {runs} run(s) per figure (median)", flush=True)
    rows = [["set-up", "burst deliveries/s", "lost", "closed-loop msgs/s", "p50 ms", "p99 ms",
             "chatd CPU % (burst)", "redis CPU % (burst)"]]
    for setup in SETUPS:
        try:
            burst = measure(setup, scenarios.burst, sizes, runs)
            closed = measure(setup, scenarios.closed_loop, sizes, runs)
        except Skip as e:
            print(f"{setup}: skipped ({e})", flush=True)
            continue
        rows.append([setup, f"{burst['deliveries_per_s']:,.0f}", f"{burst['lost']:.0f}",
                     f"{closed['msgs_per_s']:,.0f}", f"{closed['last_p50_ms']:.1f}",
                     f"{closed['last_p99_ms']:.1f}", f"{burst['servers_cpu_pct']:.0f}",
                     f"{burst['redis_cpu_pct']:.0f}"])
        print(f"{setup}: {rows[-1][1:]}", flush=True)
    print()
    print(md_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())


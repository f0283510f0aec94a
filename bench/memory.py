"""``python -m bench.memory``: where chatd's memory per idle connection goes (issue 16).

Starts chatd under ``bench.tracehook`` (tracemalloc on), takes a snapshot, connects
``--conns`` idle clients with the native generator (``benchgen hold``, all in the one
room), lets them settle, takes a second snapshot, and prints the allocation sites that
grew, per connection, beside the daemon's RSS growth per connection and the server CPU
time its connect phase took per connection.  ``--untraced`` runs chatd as shipped
(RSS and CPU only: tracing makes every allocation slower and costs memory of its own);
``--profile FILE`` records the connect phase with py-spy.  Clients only connect to
127.0.0.1; the run is bounded by ``--timeout``.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
import tracemalloc
from contextlib import nullcontext
from pathlib import Path

from bench import native, profile, servers
from bench.swarm import GenTimeout
from bench.sysutil import CLK_TCK, cpu_seconds, raise_nofile, rss_kib


def _snapshot(server: servers.Running, n: int, timeout: float = 60) -> tracemalloc.Snapshot:
    server.proc.send_signal(signal.SIGUSR2)
    path = server.tmp / f"{n}.snap"
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline or server.proc.poll() is not None:
            raise GenTimeout(f"no tracemalloc snapshot {path} within {timeout:.0f}s")
        time.sleep(0.1)
    return tracemalloc.Snapshot.load(str(path))


def _hold(server: servers.Running, conns: int, timeout: float) -> subprocess.Popen[str]:
    """benchgen holding ``conns`` idle clients; returns once they are in."""
    assert server.proto is not None
    cmd = [str(native.binary()), "hold", "-port", str(server.port), "-proto", server.proto,
           "-server-pid", str(server.pid), "-clk-tck", str(CLK_TCK), "-conns", str(conns),
           "-inflight", "256", "-timeout", str(timeout), "-limit", str(timeout + 600)]  # fmt: skip
    gen = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                           env=dict(os.environ, GOMAXPROCS="1"))  # fmt: skip
    assert gen.stdout is not None
    ready, _, _ = select.select([gen.stdout], [], [], timeout + 60)
    if not ready:
        gen.kill()
        raise GenTimeout(f"benchgen hold: not ready within {timeout + 60:.0f}s")
    line = gen.stdout.readline()
    if not line:
        raise GenTimeout(f"benchgen hold exited {gen.wait()} before its clients were in")
    got = json.loads(line)
    print(f"{got['connections']:,.0f} of {conns:,} clients in after {got['connect_s']:.1f}s")
    return gen


def _broadcasts(server: servers.Running, conns: int, count: int, record: Path | None,
                top: int) -> None:
    """One sender says ``count`` lines, 0.5 s apart, to the room of ``conns`` idle clients;
    prints the server's CPU time per broadcast and per recipient (less its idle CPU over
    as long)."""
    sender = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    try:
        sender.recv(65536)  # the greeting
        time.sleep(1.0)
        idle0 = cpu_seconds(server.pid)
        time.sleep(count * 0.5)
        idle = cpu_seconds(server.pid) - idle0
        recording = profile.Recording(server.pid, record) if record else nullcontext()
        with recording:
            cpu0 = cpu_seconds(server.pid)
            for k in range(count):
                sender.sendall(b"broadcast %d to everyone in the room\n" % k)
                time.sleep(0.5)
            cpu = cpu_seconds(server.pid) - cpu0 - idle
        print(f"{count} broadcasts to {conns:,}: server CPU {cpu:.2f} s (idle {idle:.2f} s "
              f"taken off): {cpu / count * 1e3:.0f} ms per broadcast, "
              f"{cpu / count / conns * 1e6:.2f} us per recipient")
        if record:
            for line in profile.top_lines(record, top):
                print(line)
    finally:
        sender.close()


def report(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, conns: int,
           top: int, key: str) -> list[str]:  # fmt: skip
    stats = after.compare_to(before, key)
    grown = sum(s.size_diff for s in stats)
    out = [f"traced Python memory grew {grown / 1024:,.0f} KiB: "
           f"{grown / conns:,.0f} bytes per connection; top sites by {key}:"]  # fmt: skip
    for s in stats[:top]:
        where = s.traceback.format(limit=4) if key == "traceback" else [str(s.traceback)]
        site = " <- ".join(w.strip() for w in where if w.strip())
        out.append(f"  {s.size_diff / conns:8.1f} B/conn  {s.count_diff / conns:6.2f} "
                   f"blocks/conn  {site}")  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__)
    ap.add_argument("--conns", type=int, default=10000)
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--key", choices=["lineno", "filename", "traceback"], default="lineno")
    ap.add_argument("--frames", type=int, default=1, help="frames kept per allocation")
    ap.add_argument("--timeout", type=float, default=180, help="seconds allowed to connect")
    ap.add_argument("--server-core", type=int, default=0)
    ap.add_argument("--gen-core", type=int, default=1)
    ap.add_argument("--untraced", action="store_true",
                    help="no tracemalloc: RSS and connect CPU per connection only")
    ap.add_argument("--profile", type=Path, help="py-spy the connect phase into this file")
    ap.add_argument("--broadcasts", type=int, default=0,
                    help="then this many one-line broadcasts to everyone: CPU per recipient")
    ap.add_argument("--broadcast-profile", type=Path,
                    help="py-spy the broadcasts into this file")
    ap.add_argument("--peer", choices=["asyncio", "twisted-floor"],
                    help="measure this peer instead of chatd (implies --untraced)")
    args = ap.parse_args(argv)
    raise_nofile()
    if (os.cpu_count() or 1) > max(args.server_core, args.gen_core):
        os.sched_setaffinity(0, {args.gen_core})
    os.environ["BENCH_TRACE_FRAMES"] = str(max(args.frames, 4 if args.key == "traceback" else 1))
    traced = not (args.untraced or args.peer)
    if args.peer == "asyncio":
        server = servers.start_asyncio(args.server_core)
    elif args.peer == "twisted-floor":
        server = servers.start_twisted_floor(args.server_core)
    else:
        server = servers.start_chatd(args.server_core, traced=traced)
    gen: subprocess.Popen[str] | None = None
    try:
        time.sleep(1.0)
        rss0 = rss_kib(server.pid)
        before = _snapshot(server, 1) if traced else None
        cpu0 = cpu_seconds(server.pid)
        recording = (profile.Recording(server.pid, args.profile) if args.profile
                     else nullcontext())  # fmt: skip
        with recording:
            gen = _hold(server, args.conns, args.timeout)
        cpu1 = cpu_seconds(server.pid)
        time.sleep(2.0)
        rss1 = rss_kib(server.pid)
        print(f"server CPU in the connect phase: {cpu1 - cpu0:.2f} s, "
              f"{(cpu1 - cpu0) / args.conns * 1e6:.0f} us per connection")
        print(f"RSS {rss0 / 1024:,.1f} -> {rss1 / 1024:,.1f} MiB: "
              f"{(rss1 - rss0) / args.conns:.2f} KiB per connection"
              + (" (tracemalloc's own bookkeeping included)" if traced else ""))
        if before is not None:
            after = _snapshot(server, 2)
            for line in report(before, after, args.conns, args.top, args.key):
                print(line)
        if args.profile:
            for line in profile.top_lines(args.profile, args.top):
                print(line)
        if args.broadcasts:
            _broadcasts(server, args.conns, args.broadcasts, args.broadcast_profile, args.top)
    finally:
        if gen is not None:
            if gen.stdin is not None:
                gen.stdin.close()
            try:
                gen.wait(30)
            except subprocess.TimeoutExpired:
                gen.kill()
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The five scenarios of issue 4, each measured once per call (the runner takes medians).

Every loop here is bounded in count and in time, talks to 127.0.0.1 only and stops by
itself.  Each function returns plain figures (``dict[str, float]``) plus the generator's
and the server's CPU use over the measured interval, so the report can show which side
was the bottleneck.  The chat scenarios (1-4) run in the native generator (``bench/gen``,
issue 16) by default; ``Sizes.generator = "python"`` runs the Python loops below instead,
which stay as the reference the native one was checked against.  Echo (5) is Python:
its few large streams cost the generator little.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import select
import socket
import statistics
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection

from bench import native
from bench.servers import BLOCKS, Running
from bench.swarm import CHAT, Conn, GenTimeout, Swarm
from bench.sysutil import cpu_seconds, raise_nofile, rss_kib, self_cpu_seconds

LINE_TEXT = 100  # bytes of text per chat line, as the issue says
NATIVE, PYTHON = "native", "python"  # load generators


@dataclass
class Sizes:
    receivers: int = 200
    senders: int = 4
    burst_lines: int = 2000
    closed_msgs: int = 1000
    paced_rate: float = 50.0
    paced_seconds: float = 5.0
    scale_conns: int = 19000
    scale_procs: int = 4
    scale_broadcasts: int = 20
    scale_timeout: float = 180.0
    scale_runs: int = 1
    echo_mib: int = 64
    echo_rtts: int = 20000
    echo_udp: int = 20000
    # The burst against the trivial block server, which proves the generator's
    # ceiling, is longer: at 25M deliveries/s the usual 1.6M would last 64 ms.
    ceiling_lines: int = 20000
    generator: str = NATIVE

    @classmethod
    def quick(cls) -> Sizes:
        return cls(burst_lines=500, closed_msgs=200, paced_seconds=2.0, scale_conns=4000,
                   scale_broadcasts=8, scale_timeout=60.0, echo_mib=8, echo_rtts=5000,
                   echo_udp=5000)  # fmt: skip


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, round(q / 100 * (len(s) - 1)))]


def _stamp(extra: bytes = b"") -> bytes:
    """A chat line's text: a monotonic-clock stamp, padded to LINE_TEXT bytes."""
    head = b"@@" + str(time.monotonic_ns()).encode() + b" " + extra
    return head + b"x" * max(0, LINE_TEXT - len(head))


class _Meter:
    """CPU use of the generator (this process) and the server over an interval."""

    def __init__(self, server: Running) -> None:
        self.pid = server.pid
        self.t0 = time.monotonic()
        self.g0 = self_cpu_seconds()
        self.s0 = cpu_seconds(self.pid)

    def done(self, out: dict[str, float]) -> dict[str, float]:
        wall = max(time.monotonic() - self.t0, 1e-9)
        out["gen_cpu_s"] = self_cpu_seconds() - self.g0
        out["server_cpu_s"] = cpu_seconds(self.pid) - self.s0
        out["gen_cpu_pct"] = 100 * out["gen_cpu_s"] / wall
        out["server_cpu_pct"] = 100 * out["server_cpu_s"] / wall
        return out


def _room(server: Running, sz: Sizes) -> tuple[Swarm, list[Conn], list[Conn]]:
    """Receivers and senders registered, joined, and past every welcome/join line."""
    assert server.proto is not None
    sw = Swarm(server.proto, server.port)
    recv = sw.open(sz.receivers, "r", 60, inflight=server.inflight)
    send = sw.open(sz.senders, "s", 60, inflight=server.inflight)
    if len(recv) < sz.receivers or len(send) < sz.senders:
        sw.close()
        raise GenTimeout(f"only {len(recv)} receivers and {len(send)} senders registered")
    sw.say(send[0], b"SYNC-ROOM")
    sw.expect_marker(recv + send[1:], b"SYNC-ROOM", 60)
    sw.drain(0.05)
    return sw, recv, send


def _native(scenario: str, server: Running, sz: Sizes, limit: float,
            extra: native.Flags) -> dict[str, float]:  # fmt: skip
    """One run of a chat scenario in the native generator."""
    assert server.proto is not None
    flags: native.Flags = {"port": server.port, "proto": server.proto,
                           "server-pid": server.pid, "inflight": server.inflight,
                           "receivers": sz.receivers, "senders": sz.senders,
                           "line-text": LINE_TEXT, **extra}  # fmt: skip
    return native.run(scenario, flags, limit)


# ------------------------------------------------------------------ 1. burst fan-out
def burst(server: Running, sz: Sizes) -> dict[str, float]:
    lines = sz.ceiling_lines if server.name == BLOCKS else sz.burst_lines
    if sz.generator == NATIVE:
        return _native("burst", server, sz, 300, {"lines": lines})
    sw, recv, send = _room(server, sz)
    try:
        expected = sz.senders * lines
        sw.start_counting(recv)
        texts = [_stamp() for _ in range(lines)]
        meter = _Meter(server)
        t0 = time.monotonic_ns()
        for s in send:
            sw.say_many(s, texts)
        with contextlib.suppress(GenTimeout):
            sw.run_until(lambda: all(c.lines >= expected for c in recv), 120, "burst")
        got = sum(min(c.lines, expected) for c in recv)
        last = max(c.mark_ns for c in recv)
        wall = max(last - t0, 1) / 1e9
        out = meter.done({
            "deliveries_per_s": got / wall,
            "lost": float(expected * len(recv) - got),
            "seconds": wall,
        })  # fmt: skip
        # As the native generator does: per CPU second of each side.
        for side in ("gen", "server"):
            if out[f"{side}_cpu_s"] > 0:
                out[f"deliveries_per_{side}_cpu_s"] = got / out[f"{side}_cpu_s"]
        return out
    finally:
        sw.close()


# ------------------------------------------------------------------ 2. closed loop
def closed_loop(server: Running, sz: Sizes) -> dict[str, float]:
    if sz.generator == NATIVE:
        return _native("closed", server, sz, 300, {"msgs": sz.closed_msgs})
    sw, recv, send = _room(server, sz)
    sender = send[0]
    try:
        for c in recv:
            c.lines = 0
        rset = {c.fd for c in recv}
        state = {"target": 0, "left": 0, "last": 0}

        def handler(c: Conn, data: bytes, now: int) -> None:
            if c.fd in rset:
                before = c.lines
                c.lines += data.count(b"\n")
                if before < state["target"] <= c.lines:
                    state["left"] -= 1
                    state["last"] = now

        sw.set_handler(handler)
        times: list[float] = []
        meter = _Meter(server)
        t_start = time.monotonic()
        deadline = t_start + 120
        for i in range(1, sz.closed_msgs + 1):
            state["target"], state["left"] = i, len(recv)
            t0 = time.monotonic_ns()
            sw.say(sender, _stamp())
            while state["left"] > 0:
                if time.monotonic() > deadline:
                    raise GenTimeout(f"closed loop: message {i} not delivered to all")
                sw.poll(0.01)
            times.append((state["last"] - t0) / 1e6)
        wall = time.monotonic() - t_start
        return meter.done({
            "msgs_per_s": len(times) / wall,
            "last_p50_ms": _pct(times, 50),
            "last_p99_ms": _pct(times, 99),
        })  # fmt: skip
    finally:
        sw.close()


# ------------------------------------------------------------------ 3. paced
def paced(server: Running, sz: Sizes) -> dict[str, float]:
    if sz.generator == NATIVE:
        return _native("paced", server, sz, 120 + sz.paced_seconds,
                       {"rate": sz.paced_rate, "seconds": sz.paced_seconds})  # fmt: skip
    sw, recv, send = _room(server, sz)
    try:
        lat: list[int] = []
        for c in recv + send:
            c.lines = 0
            c.buf = b""
        sw.start_latency(lat)
        per_sender = int(sz.paced_rate * sz.paced_seconds)
        interval = 1.0 / sz.paced_rate
        meter = _Meter(server)
        start = time.monotonic()
        # Senders are staggered evenly inside each interval.
        offsets = [interval * k / len(send) for k in range(len(send))]
        sent = 0
        for n in range(per_sender):
            for k, s in enumerate(send):
                due = start + n * interval + offsets[k]
                while (wait := due - time.monotonic()) > 0:
                    sw.poll(min(wait, 0.005))
                sw.say(s, _stamp())
                sent += 1
        expected = per_sender * len(send) * len(recv) + per_sender * len(send) * (len(send) - 1)
        end = time.monotonic() + 10
        while len(lat) < expected and time.monotonic() < end:
            sw.poll(0.01)
        ms = [x / 1e6 for x in lat]
        return meter.done({
            "p50_ms": _pct(ms, 50),
            "p99_ms": _pct(ms, 99),
            "lost": float(expected - len(lat)),
        })  # fmt: skip
    finally:
        sw.close()


# ------------------------------------------------------------------ 4. scale
def _scale_worker(pipe: Connection, proto: str, port: int, n: int, prefix: str,
                  inflight: int, timeout: float) -> None:  # fmt: skip
    raise_nofile()
    sw = Swarm(proto, port, join=(proto == CHAT))
    t0 = time.monotonic()
    try:
        conns = sw.open(n, prefix, timeout, inflight=inflight)
    except GenTimeout:
        conns = [c for c in sw.conns.values() if c.state == 3]
    pipe.send(("ready", len(conns), time.monotonic() - t0))
    cpu0 = self_cpu_seconds()
    try:
        while True:
            cmd = pipe.recv()
            if cmd[0] == "mark":
                marker: bytes = cmd[1]
                pipe.send(("armed",))
                alive = [c for c in conns if c.state != 4]
                try:
                    last = sw.expect_marker(alive, marker, cmd[2])
                    pipe.send(("seen", last, len(alive)))
                except GenTimeout:
                    pipe.send(("timeout", 0, len(alive)))
            elif cmd[0] == "cpu":
                pipe.send(("cpu", self_cpu_seconds() - cpu0))
            else:
                break
    finally:
        sw.close()
        pipe.close()


def scale(server: Running, sz: Sizes, progress: object = None) -> dict[str, float]:
    """Fill the server with idle clients, then broadcast to all of them (the Python
    generator spreads the clients over ``scale_procs`` processes)."""
    assert server.proto is not None
    if sz.generator == NATIVE:
        # One native process holds every client; it keeps as many handshakes in flight
        # as the Python generator's processes did together.
        extra: native.Flags = {"conns": sz.scale_conns, "broadcasts": sz.scale_broadcasts,
                               "timeout": sz.scale_timeout,
                               "inflight": server.inflight * max(1, sz.scale_procs)}  # fmt: skip
        if server.mass_target:
            extra["mass-target"] = server.mass_target.decode()
        return _native("scale", server, sz, sz.scale_timeout + 300, extra)
    ctx = mp.get_context("fork")
    rss0 = rss_kib(server.pid)
    procs = max(1, sz.scale_procs)
    share = [sz.scale_conns // procs + (1 if i < sz.scale_conns % procs else 0)
             for i in range(procs)]  # fmt: skip
    pipes: list[Connection] = []
    workers = []
    t0 = time.monotonic()
    for i, n in enumerate(share):
        a, b = ctx.Pipe()
        p = ctx.Process(target=_scale_worker, daemon=True,
                        args=(b, server.proto, server.port, n, f"i{i}x",
                              server.inflight, sz.scale_timeout))  # fmt: skip
        p.start()
        pipes.append(a)
        workers.append(p)
    sw = Swarm(server.proto, server.port, join=(server.proto == CHAT))
    try:
        connected = 0
        for a in pipes:
            if not a.poll(sz.scale_timeout + 30):
                raise GenTimeout("a scale worker did not report")
            _, n, _secs = a.recv()
            connected += n
        connect_s = time.monotonic() - t0
        (sender,) = sw.open(1, "op", 30, inflight=1)
        if server.mass_target:
            sw.send(sender, b"OPER bench bench\r\n")
        sw.drain(1.0)
        # Settle: everyone has seen a first marker (join notices are behind us).
        lat: list[float] = []
        reached: list[float] = []
        rss = rss_kib(server.pid)
        meter = _Meter(server)
        for k in range(sz.scale_broadcasts + 1):
            marker = f"BCAST{k}-".encode()
            for a in pipes:
                a.send(("mark", marker, 60.0))
            for a in pipes:
                a.recv()  # armed
            time.sleep(0.05)
            t_send = time.monotonic_ns()
            text = b"@@" + str(t_send).encode() + b" " + marker
            if server.mass_target:
                sw.send(sender, b"PRIVMSG " + server.mass_target + b" :" + text + b"\r\n")
            else:
                sw.say(sender, text)
            lasts: list[int] = []
            ok = 0
            while len(lasts) < len(pipes):
                for a in pipes:
                    if a.poll(0.001):
                        kind, last, alive = a.recv()
                        lasts.append(last)
                        ok += alive if kind == "seen" else 0
                sw.poll(0)
            if k == 0:
                rss = rss_kib(server.pid)  # after the first broadcast: buffers touched
                continue
            lat.append((max(lasts) - t_send) / 1e6)
            reached.append(ok)
            sw.drain(max(0.0, t_send / 1e9 + 0.25 - time.monotonic()))  # 4 broadcasts/s
        out = meter.done({
            "connections": float(min(reached) if reached else 0),
            "connect_s": connect_s,
            "wanted": float(sz.scale_conns),
            "bcast_ms": statistics.median(lat) if lat else float("nan"),
            "bcast_p99_ms": _pct(lat, 99),
            "rss_kib_per_conn": (rss - rss0) / max(connected, 1),
            "rss_mib": rss / 1024,
        })  # fmt: skip
        for a in pipes:
            a.send(("cpu",))
        out["workers_cpu_s"] = sum(a.recv()[1] for a in pipes)
        return out
    finally:
        for a in pipes:
            with contextlib.suppress(OSError):
                a.send(("quit",))
        for p in workers:
            p.join(10)
            if p.is_alive():
                p.kill()
        sw.close()


# ------------------------------------------------------------------ 5. echo
def echo_stream(server: Running, sz: Sizes, conns: int = 4) -> dict[str, float]:
    """Four connections streaming through TCP echo; MiB/s of data echoed back."""
    chunk = b"e" * 65536
    total = sz.echo_mib * 1048576
    window = 1 << 20
    ep = select.epoll()
    socks: dict[int, socket.socket] = {}
    sent: dict[int, int] = {}
    got: dict[int, int] = {}
    for _ in range(conns):
        s = socket.create_connection(("127.0.0.1", server.echo_port), timeout=5)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        socks[s.fileno()] = s
        sent[s.fileno()] = got[s.fileno()] = 0
        ep.register(s.fileno(), select.EPOLLIN | select.EPOLLOUT)
    meter = _Meter(server)
    t0 = time.monotonic()
    deadline = t0 + 120
    try:
        while any(v < total for v in got.values()):
            if time.monotonic() > deadline:
                break
            for fd, ev in ep.poll(0.05):
                s = socks[fd]
                if ev & select.EPOLLIN:
                    try:
                        data = s.recv(1 << 18)
                    except BlockingIOError:
                        data = None
                    if data == b"":
                        raise GenTimeout("echo server closed a stream")
                    if data:
                        got[fd] += len(data)
                if ev & select.EPOLLOUT:
                    if sent[fd] < total and sent[fd] - got[fd] < window:
                        with contextlib.suppress(BlockingIOError):
                            sent[fd] += s.send(chunk[: min(len(chunk), total - sent[fd])])
                    if sent[fd] >= total or sent[fd] - got[fd] >= window:
                        ep.modify(fd, select.EPOLLIN)
                elif sent[fd] < total and sent[fd] - got[fd] < window:
                    ep.modify(fd, select.EPOLLIN | select.EPOLLOUT)
        wall = time.monotonic() - t0
        return meter.done({"mib_per_s": sum(got.values()) / 1048576 / wall})
    finally:
        for s in socks.values():
            s.close()
        ep.close()


def echo_rtt(server: Running, sz: Sizes) -> dict[str, float]:
    """One connection, 64-byte request, wait for the whole echo, repeat."""
    msg = os.urandom(32).hex().encode()  # 64 bytes
    with socket.create_connection(("127.0.0.1", server.echo_port), timeout=5) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        meter = _Meter(server)
        t0 = time.monotonic()
        deadline = t0 + 60
        n = 0
        while n < sz.echo_rtts and time.monotonic() < deadline:
            s.sendall(msg)
            need = len(msg)
            while need:
                data = s.recv(need)
                if not data:
                    raise GenTimeout("echo server closed the connection")
                need -= len(data)
            n += 1
        return meter.done({"rtt_per_s": n / (time.monotonic() - t0)})


def echo_udp(server: Running, sz: Sizes, window: int = 32) -> dict[str, float]:
    """UDP echo with up to ``window`` datagrams in flight; echoed datagrams per second."""
    msg = b"u" * 64
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("127.0.0.1", server.echo_udp_port))
        s.setblocking(False)
        meter = _Meter(server)
        t0 = time.monotonic()
        deadline = t0 + 20
        sent = got = lost = inflight = 0
        while got + lost < sz.echo_udp and time.monotonic() < deadline:
            while inflight < window and sent < sz.echo_udp:
                try:
                    s.send(msg)
                except BlockingIOError:
                    break
                sent += 1
                inflight += 1
            r, _, _ = select.select([s], [], [], 0.1)
            if not r:  # the rest of the window was dropped
                lost += inflight
                inflight = 0
                continue
            while True:
                try:
                    s.recv(2048)
                except (BlockingIOError, ConnectionRefusedError):
                    break
                got += 1
                inflight -= 1
        wall = time.monotonic() - t0
        return meter.done({"dgrams_per_s": got / wall, "lost": float(lost)})

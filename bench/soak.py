"""Soak: a few minutes of normal and abusive clients against a real twistd on 127.0.0.1.

    .venv/bin/python bench/soak.py [--duration SECONDS] [--interval SECONDS]

Starts ``twistd -n chatd`` on free loopback ports with its default limits and runs, side
by side: people chatting; readers that never read; flooders; a client sending an endless
line; a client sending hostile bytes (escapes, telnet negotiation, broken UTF-8); a
connection flood from one address; clients that reset mid-broadcast; a TCP echo client
that never reads and a UDP echo spammer; and the attacks of issue 10: a history hog asking
for 49 ``/history`` and never reading (item 1), room makers from five addresses (item 2),
connect-then-``/quit <4 KB>`` loops (item 3), connections streaming an unterminated telnet
``IAC SB`` (item 8) and connection churn from one address (item 14). Each kind connects
from its own 127.0.x.y address so the per-address limits apply to abusers and not to
everyone. It prints the daemon's RSS, log size and state file size every interval, then
stops it with SIGTERM and counts errors in its log, and checks that no chatter ever received
a control character. Exits non-zero if anything went wrong. Not part of ``make test``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

FORBIDDEN = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u2028\u2029]")
HOSTILE = [
    b"\x1b[2J\x1b[H", b"\x1b]0;owned\x07", b"\xff\xfb\x01\xff\xfd\x03", b"\xc2\x9b31m",
    "\u202eevil".encode(), b"\xed\xa0\x80", b"\xff\xfa\x18\x00xterm\xff\xf0", b"\x07\x08\x7f",
]


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def file_kib(path: Path) -> float:
    try:
        return path.stat().st_size / 1024
    except OSError:
        return 0.0


class Stats:
    def __init__(self) -> None:
        self.lines_received = 0
        self.forbidden = 0
        self.refused = 0
        self.cut_off = 0
        self.connections = 0
        self.rooms_refused = 0
        self.churned = 0


def quietly(task: asyncio.Task[Any]) -> asyncio.Task[Any]:
    """A reading task whose end (a reset, a broken pipe: abusers are cut off) is expected."""
    task.add_done_callback(lambda t: t.cancelled() or t.exception())
    return task


async def open_from(source: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))


async def chatter(n: int, port: int, stats: Stats, stop: asyncio.Event) -> None:
    """A person: says something every second or two and reads everything. Chatter 0
    talks a lot (3 kB lines, 8 a second), so output piles up for those who never read."""
    while not stop.is_set():
        try:
            reader, writer = await open_from(f"127.0.0.{10 + n}", port)
        except OSError:
            await asyncio.sleep(1)
            continue
        stats.connections += 1

        async def read(reader: asyncio.StreamReader) -> None:
            while line := await reader.readline():
                text = line.decode("utf-8")  # raises on invalid UTF-8: a failure
                stats.lines_received += 1
                if FORBIDDEN.search(text.rstrip("\r\n")):
                    stats.forbidden += 1
                    print(f"forbidden character reached chatter {n}: {text!r}")

        reading = quietly(asyncio.create_task(read(reader)))
        try:
            while not stop.is_set() and not reading.done():
                if n == 0:  # the talkative one: long lines, just under the flood rate
                    writer.write(b"%.1f %s\n" % (time.time(), b"talk " * 600))
                    await asyncio.sleep(0.125)
                else:
                    writer.write(f"hello from chatter {n} at {time.time():.1f}\n".encode())
                    await asyncio.sleep(random.uniform(0.5, 2))
                await writer.drain()
        except OSError:
            pass
        reading.cancel()
        writer.close()


async def never_read(source: str, port: int, request: bytes, stats: Stats,
                     stop: asyncio.Event) -> None:
    """One connection with a 4 KiB receive buffer that sends ``request`` and never reads,
    until chatd cuts it off (counted) or the soak ends."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.bind((source, 0))
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        stats.connections += 1
        if request:
            sock.send(request)
        while not stop.is_set():
            await asyncio.sleep(1)
            # Peek without consuming: an RST shows up as an error.
            try:
                sock.recv(1, socket.MSG_PEEK)
            except BlockingIOError:
                continue
            except OSError:
                stats.cut_off += 1
                break
    except OSError:
        stats.cut_off += 1
    finally:
        sock.close()


async def stalled_reader(n: int, port: int, stats: Stats, stop: asyncio.Event) -> None:
    """Connects and never reads; gets cut off, comes back."""
    while not stop.is_set():
        await never_read(f"127.0.1.{n}", port, b"", stats, stop)


async def flooder(n: int, port: int, stats: Stats, stop: asyncio.Event) -> None:
    """Sends lines as fast as it can; gets disconnected for flooding, comes back."""
    while not stop.is_set():
        try:
            reader, writer = await open_from(f"127.0.2.{n}", port)
            stats.connections += 1
            drain = quietly(asyncio.create_task(reader.read(-1)))
            while not stop.is_set() and not drain.done():
                writer.write(b"flood flood flood\n" * 200)
                await writer.drain()
                await asyncio.sleep(0.01)
            stats.cut_off += drain.done()
            drain.cancel()
            writer.close()
        except OSError:
            stats.cut_off += 1
        await asyncio.sleep(0.5)


async def endless_line(port: int, stats: Stats, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            reader, writer = await open_from("127.0.3.1", port)
            stats.connections += 1
            drain = quietly(asyncio.create_task(reader.read(-1)))
            while not stop.is_set() and not drain.done():
                writer.write(b"A" * 65536)
                await writer.drain()
                await asyncio.sleep(0.05)
            drain.cancel()
            writer.close()
        except OSError:
            await asyncio.sleep(0.5)


async def hostile_bytes(port: int, stats: Stats, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            reader, writer = await open_from("127.0.3.2", port)
            stats.connections += 1
            drain = quietly(asyncio.create_task(reader.read(-1)))
            while not stop.is_set() and not drain.done():
                chunk = b"".join(random.choice(HOSTILE) for _ in range(5))
                writer.write(chunk + os.urandom(8) + b"\n")
                await writer.drain()
                await asyncio.sleep(0.3)
            drain.cancel()
            writer.close()
        except OSError:
            await asyncio.sleep(0.5)


async def connection_flood(port: int, stats: Stats, stop: asyncio.Event) -> None:
    """Opens 15 connections from one address at once, again and again."""
    while not stop.is_set():
        opened = []
        for _ in range(15):
            try:
                reader, writer = await open_from("127.0.4.1", port)
            except OSError:
                continue
            opened.append((reader, writer))
        for reader, _ in opened:
            try:
                first = await asyncio.wait_for(reader.readline(), 5)
            except (TimeoutError, OSError):
                continue
            if b"too many connections" in first:
                stats.refused += 1
        for _, writer in opened:
            writer.close()
        await asyncio.sleep(1)


async def resetter(port: int, stats: Stats, stop: asyncio.Event) -> None:
    """Joins, reads a little of the broadcast, then resets the connection."""
    while not stop.is_set():
        try:
            reader, writer = await open_from("127.0.5.1", port)
            stats.connections += 1
            await asyncio.wait_for(reader.readline(), 5)
            await asyncio.sleep(random.uniform(0.1, 1))
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        except (OSError, TimeoutError):
            pass
        await asyncio.sleep(0.2)


async def echo_abuse(echo_port: int, udp_port: int, stop: asyncio.Event) -> None:
    """A TCP echo client that never reads, and a UDP spammer with oversized datagrams."""
    sock = socket.socket()
    sock.bind(("127.0.6.1", 0))
    sock.setblocking(False)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.6.2", 0))
    udp.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", echo_port))
        payload = b"e" * 65536
        while not stop.is_set():
            with contextlib.suppress(OSError):  # BlockingIOError too: it does not read
                sock.send(payload)
            for size in (10, 1400, 9000):
                with contextlib.suppress(OSError):
                    udp.sendto(b"u" * size, ("127.0.0.1", udp_port))
            try:
                while udp.recv(65536):
                    pass
            except OSError:
                pass
            await asyncio.sleep(0.01)
    except OSError:
        pass
    finally:
        sock.close()
        udp.close()


async def history_hog(port: int, stats: Stats, stop: asyncio.Event) -> None:
    """Item 1: a 4 KiB receive buffer, 49 /history of the talkative lobby, never reads."""
    while not stop.is_set():
        await never_read("127.0.7.1", port, b"/history 100\n" * 49, stats, stop)
        await asyncio.sleep(0.5)


async def room_maker(n: int, port: int, stats: Stats, stop: asyncio.Event) -> None:
    """Item 2: a new room with a topic and a 3 KB line, as fast as it is let."""
    room = 0
    while not stop.is_set():
        try:
            reader, writer = await open_from(f"127.0.8.{n}", port)
            stats.connections += 1

            async def read(reader: asyncio.StreamReader) -> None:
                while line := await reader.readline():
                    stats.rooms_refused += b"cannot create" in line

            reading = quietly(asyncio.create_task(read(reader)))
            while not stop.is_set() and not reading.done():
                room += 1
                writer.write(f"/join #soak{n}x{room}\n/topic mine\n{'r' * 3000}\n".encode())
                await writer.drain()
                await asyncio.sleep(0.3)  # 10 lines a second: within the flood rate
            reading.cancel()
            writer.close()
        except OSError:
            await asyncio.sleep(0.5)


async def quitter(port: int, stats: Stats, stop: asyncio.Event) -> None:
    """Item 3: connect, /quit with a 4 KB reason, again and again."""
    reason = "q" * 4000
    while not stop.is_set():
        try:
            reader, writer = await open_from("127.0.9.1", port)
            stats.connections += 1
            await asyncio.wait_for(reader.readline(), 5)
            writer.write(f"/quit {reason}\n".encode())
            await asyncio.wait_for(reader.read(-1), 5)
            writer.close()
        except (OSError, TimeoutError):
            await asyncio.sleep(0.1)


async def subnegotiation(n: int, port: int, stats: Stats, stop: asyncio.Event) -> None:
    """Item 8: IAC SB and then endless bytes without IAC SE or a newline."""
    chunk = b"s" * 65536
    while not stop.is_set():
        try:
            reader, writer = await open_from(f"127.0.10.{n}", port)
            stats.connections += 1
            drain = quietly(asyncio.create_task(reader.read(-1)))
            writer.write(b"\xff\xfa")
            while not stop.is_set() and not drain.done():
                writer.write(chunk)
                await writer.drain()
                await asyncio.sleep(0.005)
            stats.cut_off += drain.done()
            drain.cancel()
            writer.close()
        except OSError:
            await asyncio.sleep(0.5)


async def churn(port: int, stats: Stats, stop: asyncio.Event) -> None:
    """Item 14: connect and close from one address as fast as the loop goes."""
    while not stop.is_set():
        try:
            reader, writer = await open_from("127.0.11.1", port)
            stats.churned += 1
            first = await asyncio.wait_for(reader.readline(), 5)
            stats.refused += b"too many" in first
            writer.close()
        except (OSError, TimeoutError):
            await asyncio.sleep(0.01)


async def soak(duration: float, interval: float, pid: int, ports: dict[str, int],
               workdir: Path) -> tuple[Stats, list[tuple[float, int]]]:
    stats = Stats()
    stop = asyncio.Event()
    chat = ports["chat"]
    tasks = [
        *(asyncio.create_task(chatter(n, chat, stats, stop)) for n in range(20)),
        *(asyncio.create_task(stalled_reader(n, chat, stats, stop)) for n in range(1, 3)),
        *(asyncio.create_task(flooder(n, chat, stats, stop)) for n in range(1, 3)),
        asyncio.create_task(endless_line(chat, stats, stop)),
        asyncio.create_task(hostile_bytes(chat, stats, stop)),
        asyncio.create_task(connection_flood(chat, stats, stop)),
        asyncio.create_task(resetter(chat, stats, stop)),
        asyncio.create_task(echo_abuse(ports["echo"], ports["udp"], stop)),
        asyncio.create_task(history_hog(chat, stats, stop)),
        *(asyncio.create_task(room_maker(n, chat, stats, stop)) for n in range(1, 6)),
        asyncio.create_task(quitter(chat, stats, stop)),
        *(asyncio.create_task(subnegotiation(n, chat, stats, stop)) for n in range(1, 5)),
        asyncio.create_task(churn(chat, stats, stop)),
    ]
    samples: list[tuple[float, int]] = []
    started = time.monotonic()
    print(f"{'seconds':>8} {'RSS MiB':>8} {'log KiB':>8} {'state KiB':>9} {'lines in':>10} "
          f"{'cut off':>8} {'refused':>8} {'churned':>8} {'no room':>8}")
    while (elapsed := time.monotonic() - started) < duration:
        rss = rss_kib(pid)
        samples.append((elapsed, rss))
        print(f"{elapsed:8.0f} {rss / 1024:8.1f} {file_kib(workdir / 'twistd.log'):8.0f} "
              f"{file_kib(workdir / 'chatd.sqlite3'):9.0f} {stats.lines_received:10d} "
              f"{stats.cut_off:8d} {stats.refused:8d} {stats.churned:8d} "
              f"{stats.rooms_refused:8d}", flush=True)
        await asyncio.sleep(interval)
    samples.append((time.monotonic() - started, rss_kib(pid)))
    stop.set()
    await asyncio.sleep(1)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return stats, samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=180)
    parser.add_argument("--interval", type=float, default=10)
    args = parser.parse_args()

    ports = {"chat": free_port(), "echo": free_port(), "udp": free_port(socket.SOCK_DGRAM)}
    workdir = Path(tempfile.mkdtemp(prefix="chatd-soak-"))
    log_path = workdir / "twistd.log"
    twistd = Path(sys.executable).parent / "twistd"
    with log_path.open("wb") as log:
        daemon = subprocess.Popen(
            [str(twistd), "--pidfile=", "-n", "chatd",
             "--listen", f"tcp:{ports['chat']}:interface=127.0.0.1",
             "--echo", f"tcp:{ports['echo']}:interface=127.0.0.1",
             "--echo-udp", f"udp:{ports['udp']}:interface=127.0.0.1"],
            cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", ports["chat"]), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.1)
            stats, samples = asyncio.run(
                soak(args.duration, args.interval, daemon.pid, ports, workdir))
            stopping = time.monotonic()
            daemon.send_signal(signal.SIGTERM)
            code = daemon.wait(timeout=30)
            stop_seconds = time.monotonic() - stopping
        finally:
            if daemon.poll() is None:
                daemon.kill()
    text = log_path.read_text(errors="replace")
    errors = [line for line in text.splitlines()
              if "Traceback" in line or "Unhandled" in line or "[-] Error" in line]
    settled = [rss for t, rss in samples if t >= min(60.0, args.duration / 3)]
    growth = (max(settled) - min(settled)) / 1024 if settled else 0.0
    log_kib = file_kib(log_path)
    print(f"\nlog: {log_path} ({len(text.splitlines())} lines, {log_kib:.0f} KiB; "
          f"state file {file_kib(workdir / 'chatd.sqlite3'):.0f} KiB)")
    print(f"connections made: {stats.connections}; lines received by chatters: "
          f"{stats.lines_received}; forbidden characters seen: {stats.forbidden}")
    print(f"abusers cut off: {stats.cut_off}; connections refused per address: {stats.refused}; "
          f"churn connections tried: {stats.churned}; rooms refused: {stats.rooms_refused}")
    print(f"RSS after warm-up: {min(settled) / 1024:.1f} to {max(settled) / 1024:.1f} MiB "
          f"(spread {growth:.1f} MiB)" if settled else "RSS: too short to say")
    print(f"SIGTERM to exit: {stop_seconds:.2f} s, exit status {code}")
    print(f"errors in the log: {len(errors)}")
    for line in errors[:20]:
        print("  " + line)
    failed = errors or stats.forbidden or stop_seconds >= 5 or growth > 50
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""The results table (terminal and Markdown), the target check, and the PNG chart."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

CHATD = "chatd"
CHATD_IRC = "chatd-irc"  # chatd over IRC, on the load ngircd and InspIRCd get
BLOCKS = "blocks"  # the trivial block server: shown, never a peer to beat
PYTHON_PEERS = ("threaded", "asyncio")


@dataclass(frozen=True)
class Row:
    label: str
    scenario: str
    field: str
    higher_better: bool | None  # None: informational, no ratio
    digits: int = 0


ROWS = [
    Row("1. Burst fan-out: deliveries/s", "burst", "deliveries_per_s", True),
    Row("1. Burst: lines lost", "burst", "lost", None),
    Row("1. Burst: generator CPU %", "burst", "gen_cpu_pct", None),
    Row("1. Burst: server CPU %", "burst", "server_cpu_pct", None),
    Row("1. Burst: deliveries per server CPU s", "burst", "deliveries_per_server_cpu_s", None),
    Row("1. Burst: deliveries per generator CPU s", "burst", "deliveries_per_gen_cpu_s", None),
    Row("1. Burst: lines per read (generator)", "burst", "lines_per_read", None, 1),
    Row("1. Burst: load average (1 min)", "burst", "load1", None, 2),
    Row("2. Closed loop: messages/s", "closed", "msgs_per_s", True),
    Row("2. Closed loop: to last receiver p50 ms", "closed", "last_p50_ms", False, 2),
    Row("2. Closed loop: to last receiver p99 ms", "closed", "last_p99_ms", False, 2),
    Row("2. Closed loop: generator CPU %", "closed", "gen_cpu_pct", None),
    Row("2. Closed loop: load average (1 min)", "closed", "load1", None, 2),
    Row("3. Paced 4x50/s: latency p50 ms", "paced", "p50_ms", False, 2),
    Row("3. Paced 4x50/s: latency p99 ms", "paced", "p99_ms", False, 2),
    Row("3. Paced: load average (1 min)", "paced", "load1", None, 2),
    Row("4. Scale: idle connections reached", "scale", "connections", True),
    Row("4. Scale: connect phase s", "scale", "connect_s", False, 1),
    Row("4. Scale: broadcast to last p50 ms", "scale", "bcast_ms", False, 1),
    Row("4. Scale: broadcast to last p99 ms", "scale", "bcast_p99_ms", False, 1),
    Row("4. Scale: server KiB per connection", "scale", "rss_kib_per_conn", False, 2),
    Row("4. Scale: load average (1 min)", "scale", "load1", None, 2),
    Row("5. Echo TCP stream MiB/s (4 conns)", "echo_stream", "mib_per_s", True, 1),
    Row("5. Echo 64-byte round trips/s", "echo_rtt", "rtt_per_s", True),
    Row("5. Echo UDP datagrams/s", "echo_udp", "dgrams_per_s", True),
]

Results = dict[str, dict[str, dict[str, float]]]  # server -> scenario -> field -> median


def value(res: Results, server: str, row: Row) -> float | None:
    v = res.get(server, {}).get(row.scenario, {}).get(row.field)
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else v


def fmt(v: float | None, digits: int) -> str:
    if v is None:
        return "-"
    if digits == 0:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


def ratio(res: Results, servers: list[str], row: Row) -> float | None:
    """chatd's advantage over the best peer: >1 means chatd is better on this row."""
    if row.higher_better is None:
        return None
    mine = value(res, CHATD, row)
    peers = [v for s in servers if not _not_peer(s) and (v := value(res, s, row)) is not None]
    if mine is None or not peers:
        return None
    if row.higher_better:
        best = max(peers)
        return mine / best if best else None
    best = min(peers)
    return best / mine if mine else None


def table(res: Results, servers: list[str]) -> list[list[str]]:
    head = ["scenario", *servers, "chatd / best peer"]
    rows = [head]
    for row in ROWS:
        if all(value(res, s, row) is None for s in servers):
            continue
        r = ratio(res, servers, row)
        rows.append([row.label, *(fmt(value(res, s, row), row.digits) for s in servers),
                     "-" if r is None else f"{r:.2f}x"])  # fmt: skip
    return rows


def text_table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for n, r in enumerate(rows):
        cells = [r[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)
        ]
        out.append("  ".join(cells))
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def md_table(rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" + "--:|" * (len(rows[0]) - 1)]
    out += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(out)


def _get(res: Results, server: str, scenario: str, field: str) -> float | None:
    return value(res, server, Row("", scenario, field, None))


def _not_peer(server: str) -> bool:
    return server.startswith(CHATD) or server == BLOCKS


def _best(res: Results, scenario: str, field: str, peers: tuple[str, ...] | None,
          higher: bool) -> tuple[str, float] | None:  # fmt: skip
    """The best peer's figure (and its name) on one field, or None if none ran it."""
    got = [(s, v) for s in res
           if not _not_peer(s) and (peers is None or s in peers)
           and (v := _get(res, s, scenario, field)) is not None]  # fmt: skip
    if not got:
        return None
    return (max if higher else min)(got, key=lambda sv: sv[1])


def targets(res: Results) -> list[str]:
    """Issue 16's targets, each judged on this run's figures: chatd's, then the same ones
    for chatd over IRC (its IRC peers ngircd and InspIRCd get the identical load)."""
    lines: list[str] = []
    server = CHATD

    def judge(name: str, mine: float | None, goal: float | None, higher: bool, unit: str) -> None:
        if server != CHATD:
            name = f"{server}: {name}"
        if mine is None or goal is None:
            lines.append(f"- {name}: not measured (a server or scenario was skipped)")
            return
        ok = mine >= goal if higher else mine <= goal
        gap = (mine / goal - 1) * 100 if goal else 0.0
        verdict = "met" if ok else "NOT met"
        lines.append(f"- {name}: {verdict} ({server} {mine:,.2f} vs {goal:,.2f} {unit}, "
                     f"{gap:+.0f}%)")

    def scaled(best: tuple[str, float] | None, k: float) -> float | None:
        return None if best is None else k * best[1]

    ngircd_burst = _get(res, "ngircd", "burst", "deliveries_per_s")
    best_closed = _best(res, "closed", "msgs_per_s", None, True)
    best_connect = _best(res, "scale", "connect_s", ("asyncio",), False)
    for server in (CHATD, CHATD_IRC):
        judge("Burst deliveries/s >= 3x ngircd", _get(res, server, "burst", "deliveries_per_s"),
              None if ngircd_burst is None else 3 * ngircd_burst, True, "lines/s")  # fmt: skip
        judge("Closed-loop messages/s >= 1.1x best peer "
              f"({best_closed[0] if best_closed else '-'})",
              _get(res, server, "closed", "msgs_per_s"), scaled(best_closed, 1.1), True,
              "msgs/s")  # fmt: skip
        judge("Paced p99 <= ngircd", _get(res, server, "paced", "p99_ms"),
              _get(res, "ngircd", "paced", "p99_ms"), False, "ms")  # fmt: skip
        judge("Scale: every client reached", _get(res, server, "scale", "connections"),
              _get(res, server, "scale", "wanted"), True, "connections")  # fmt: skip
        judge("Scale: connect phase <= asyncio's", _get(res, server, "scale", "connect_s"),
              scaled(best_connect, 1.0), False, "s")  # fmt: skip
        judge("Scale: broadcast reaches the last client in <= 100 ms (p99)",
              _get(res, server, "scale", "bcast_p99_ms"), 100.0, False, "ms")  # fmt: skip
        judge("Scale: <= 1.5 KiB per idle connection",
              _get(res, server, "scale", "rss_kib_per_conn"), 1.5, False, "KiB")  # fmt: skip
    server = CHATD
    xin = _get(res, "xinetd", "echo_stream", "mib_per_s")
    mine_echo = _get(res, CHATD, "echo_stream", "mib_per_s")
    judge("Echo streaming >= 3x xinetd", mine_echo, None if xin is None else 3 * xin, True,
          "MiB/s")  # fmt: skip
    best_py = _best(res, "echo_stream", "mib_per_s", PYTHON_PEERS, True)
    judge("Echo streaming >= the best Python peer", mine_echo, scaled(best_py, 1.0), True,
          "MiB/s")  # fmt: skip
    return lines


def ceiling(res: Results) -> str:
    """The generator's own limit: the burst against the trivial block server."""
    b = res.get(BLOCKS, {}).get("burst")
    if b:
        per_cpu = b.get("deliveries_per_gen_cpu_s")
        gen, srv = b.get("gen_cpu_pct", 0.0), b.get("server_cpu_pct", 0.0)
        return (f"Generator ceiling: against the trivial block server (bench/gen/blocks.go) "
                f"the burst reached {b['deliveries_per_s']:,.0f} deliveries/s with the "
                f"generator's core {gen:.0f}% busy (server {srv:.0f}%); it counted "
                + (f"{per_cpu:,.0f}" if per_cpu else "-")
                + " deliveries per second of its own CPU, which is what it can count on "
                "its one core. Every server measured below that rate was measured, not "
                "the generator.")  # fmt: skip
    best, best_rate = None, 0.0
    for server, scen in res.items():
        if _not_peer(server):
            continue
        rate = scen.get("burst", {}).get("deliveries_per_s", 0.0)
        if rate > best_rate:
            best, best_rate = server, rate
    if best is None:
        return "Generator ceiling: not measured (no block server or peer ran the burst)."
    gen = res[best]["burst"].get("gen_cpu_pct", 0.0)
    srv = res[best]["burst"].get("server_cpu_pct", 0.0)
    est = best_rate / (gen / 100) if gen > 0 else float("inf")
    return (f"Generator ceiling (no block server in this run): against the fastest peer "
            f"({best}) the burst reached {best_rate:,.0f} deliveries/s with the "
            f"generator's core {gen:.0f}% busy (server {srv:.0f}%); at 100% of its core "
            f"the generator would count about {est:,.0f} deliveries/s.")  # fmt: skip


def chart(res: Results, servers: list[str], path: Path) -> bool:
    """Grouped bars, each row scaled so the best server = 1.0 (higher is better); the
    block server is left out (it is the generator's ceiling, not a server to compare)."""
    servers = [s for s in servers if s != BLOCKS]
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    rows = [r for r in ROWS if r.higher_better is not None
            and any(value(res, s, r) is not None for s in servers)]  # fmt: skip
    if not rows:
        return False
    fig, ax = plt.subplots(figsize=(12, 0.55 * len(rows) * len(servers) / 3 + 2.5))
    h = 0.8 / len(servers)
    for i, s in enumerate(servers):
        ys, ws = [], []
        for j, r in enumerate(rows):
            vals = [v for t in servers if (v := value(res, t, r)) is not None and v > 0]
            v = value(res, s, r)
            if v is None or v <= 0 or not vals:
                continue
            score = v / max(vals) if r.higher_better else min(vals) / v
            ys.append(j + i * h)
            ws.append(score)
        ax.barh(ys, ws, height=h, label=s)
    ax.set_yticks([j + 0.4 - h / 2 for j in range(len(rows))])
    ax.set_yticklabels([r.label for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel("relative to the best server on each row (1.0 = best; higher is better)")
    ax.legend(loc="lower right")
    ax.set_title("chatd and its peers, one run on one machine")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


BEGIN = "<!-- bench:begin (generated by `make bench`; edit outside these markers) -->"
END = "<!-- bench:end -->"


def write_docs(path: Path, generated: str, begin: str = BEGIN, end: str = END) -> None:
    """Replace the generated block (between ``begin`` and ``end``) of docs/benchmarks.md,
    keeping hand-written text; bench/cluster.py has a block of its own."""
    block = f"{begin}\n{generated.rstrip()}\n{end}"
    if path.exists():
        text = path.read_text()
        if begin in text and end in text:
            text = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _m: block, text,
                          flags=re.S)  # fmt: skip
            path.write_text(text)
            return
        path.write_text(text.rstrip() + "\n\n" + block + "\n")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("# Benchmarks\n\n" + block + "\n")

"""``python -m bench``: start each server, run the scenarios, print and write the table.

Servers are pinned to one core and the generator (this process and its workers) to
another with ``taskset``/``sched_setaffinity``; every figure is the median of
``--runs`` runs.  ``--quick`` shrinks every size for a fast smoke run.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from bench import native, profile, report, scenarios, servers
from bench.scenarios import NATIVE, PYTHON, Sizes
from bench.servers import BLOCKS, Running, Skip
from bench.swarm import GenTimeout
from bench.sysutil import machine_description, raise_nofile

CHAT_SERVERS = ["chatd", "chatd-state-none", "chatd-irc", "threaded", "asyncio", "ngircd",
                "inspircd", "blocks"]
ECHO_SERVERS = ["chatd", "xinetd", "asyncio", "threaded"]
ALL_SCENARIOS = ["burst", "closed", "paced", "scale", "echo"]
ROOT = Path(__file__).resolve().parent.parent


def log(msg: str) -> None:
    print(msg, flush=True)


def starter(name: str, core: int, nofile: int) -> Callable[[], Running]:
    table: dict[str, Callable[[], Running]] = {
        "chatd": lambda: servers.start_chatd(core),
        "chatd-state-none": lambda: servers.start_chatd(core, state="none"),
        "chatd-irc": lambda: servers.start_chatd(core, irc=True),
        "threaded": lambda: servers.start_threaded(core),
        "asyncio": lambda: servers.start_asyncio(core),
        "ngircd": lambda: servers.start_ngircd(core),
        "inspircd": lambda: servers.start_inspircd(core, nofile),
        "xinetd": lambda: servers.start_xinetd(core),
        BLOCKS: lambda: servers.start_blocks(core),
    }
    return table[name]


def _summary(scenario: str, r: dict[str, float]) -> str:
    keys = {
        "burst": ("deliveries_per_s", "lost"),
        "closed": ("msgs_per_s", "last_p50_ms", "last_p99_ms"),
        "paced": ("p50_ms", "p99_ms", "lost"),
        "scale": ("connections", "connect_s", "bcast_ms", "bcast_p99_ms", "rss_kib_per_conn"),
        "echo_stream": ("mib_per_s",),
        "echo_rtt": ("rtt_per_s",),
        "echo_udp": ("dgrams_per_s", "lost"),
    }[scenario]
    parts = [f"{k}={r[k]:,.2f}" for k in keys if k in r]
    parts.append(f"gen cpu {r.get('gen_cpu_pct', 0):.0f}%")
    parts.append(f"server cpu {r.get('server_cpu_pct', 0):.0f}%")
    parts.append(f"load {r.get('load1', 0):.2f}")
    return ", ".join(parts)


def load_average() -> str:
    """The machine's load, recorded with every run: other work shares these cores."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    keys = {k for r in runs for k in r}
    return {k: statistics.median([r[k] for r in runs if k in r]) for k in sorted(keys)}


Plan = list[tuple[str, Callable[..., dict[str, float]], bool]]


def measure(
    name: str,
    start: Callable[[], Running],
    plan: Plan,
    runs: int,
    sz: Sizes,
    profile_dir: Path | None = None,
) -> dict[str, dict[str, float]]:
    """Run each scenario ``runs`` times; a scenario marked fresh gets a new server per run.
    With ``profile_dir``, chatd's runs (every scenario) are recorded with py-spy there."""
    out: dict[str, dict[str, float]] = {}
    shared: Running | None = None
    try:
        for scen, fn, fresh in plan:
            got: list[dict[str, float]] = []
            n_runs = sz.scale_runs if fresh else runs
            for i in range(n_runs):
                srv = None
                try:
                    if fresh:
                        srv = start()
                    else:
                        if shared is None:
                            shared = start()
                        srv = shared
                    if srv.proc.poll() is not None:
                        raise Skip(f"{name} died (exit {srv.proc.returncode})")
                    if profile_dir is not None and name.startswith("chatd"):
                        raw = profile_dir / f"{name}-{scen}-{i + 1}.txt"
                        with profile.Recording(srv.pid, raw):
                            r = fn(srv, sz)
                        for line in profile.top_lines(raw):
                            log(f"  [{name}] {line}")
                    else:
                        r = fn(srv, sz)
                    r["load1"] = os.getloadavg()[0]
                    got.append(r)
                    log(f"  [{name}] {scen} run {i + 1}/{n_runs}: {_summary(scen, r)}")
                except (GenTimeout, OSError, EOFError) as e:
                    log(f"  [{name}] {scen} run {i + 1}/{n_runs}: FAILED: {e}")
                    if os.environ.get("BENCH_DEBUG"):
                        traceback.print_exc()
                    if shared is not None and shared.proc.poll() is not None:
                        shared = None
                finally:
                    if fresh and srv is not None:
                        srv.stop()
            if got:
                out[scen] = median_of(got)
    finally:
        if shared is not None:
            shared.stop()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="small sizes, one run: a smoke test")
    ap.add_argument("--runs", type=int, default=None, help="runs per figure (median); default 3")
    ap.add_argument(
        "--servers",
        default=",".join(dict.fromkeys(CHAT_SERVERS + ECHO_SERVERS)),
        help="comma-separated subset of: chatd,chatd-state-none,chatd-irc (chatd over IRC, "
        "on the IRC load),threaded,asyncio,ngircd,inspircd,xinetd,blocks (the trivial block "
        "server: the generator's ceiling)",
    )
    ap.add_argument(
        "--scenarios",
        default=",".join(ALL_SCENARIOS),
        help="comma-separated subset of: " + ",".join(ALL_SCENARIOS),
    )
    ap.add_argument("--gen", choices=[NATIVE, PYTHON], default=NATIVE,
                    help="load generator for the chat scenarios (native: bench/gen, Go)")
    ap.add_argument("--server-core", type=int, default=0)
    ap.add_argument("--gen-core", type=int, default=1)
    ap.add_argument("--receivers", type=int)
    ap.add_argument("--burst-lines", type=int)
    ap.add_argument("--closed-msgs", type=int)
    ap.add_argument("--paced-seconds", type=float)
    ap.add_argument("--scale-conns", type=int)
    ap.add_argument("--scale-procs", type=int)
    ap.add_argument("--scale-timeout", type=float, help="seconds allowed to connect (180)")
    ap.add_argument("--scale-runs", type=int, help="fresh-server scale runs (1)")
    ap.add_argument("--echo-mib", type=int)
    ap.add_argument(
        "--docs",
        type=Path,
        default=ROOT / "docs" / "benchmarks.md",
        help="Markdown page to update (generated block only)",
    )
    ap.add_argument("--no-docs", action="store_true", help="print only; leave docs/ alone")
    ap.add_argument("--profile", type=Path, metavar="DIR",
                    help="record chatd's runs with py-spy into DIR; print the top lines")
    args = ap.parse_args(argv)  # fmt: skip

    sz = Sizes.quick() if args.quick else Sizes()
    for field in ("receivers", "burst_lines", "closed_msgs", "paced_seconds", "scale_conns",
                  "scale_procs", "scale_timeout", "scale_runs", "echo_mib"):  # fmt: skip
        if getattr(args, field) is not None:
            setattr(sz, field, getattr(args, field))
    sz.generator = args.gen
    runs = args.runs or (1 if args.quick else 3)
    wanted = [s.strip() for s in args.servers.split(",") if s.strip()]
    scens = [s.strip() for s in args.scenarios.split(",") if s.strip()]

    # SIGTERM (a stopped make, a CI timeout) unwinds like Ctrl-C, so servers and
    # generator processes are stopped by the finally blocks.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    nofile = raise_nofile()
    ncpu = os.cpu_count() or 1
    if ncpu > max(args.server_core, args.gen_core):
        os.sched_setaffinity(0, {args.gen_core})
    else:
        log(f"note: only {ncpu} core(s); server and generator share them")
    if sz.generator == NATIVE and set(scens) & {"burst", "closed", "paced", "scale"}:
        try:
            log(f"native generator: {native.binary()}")
        except native.NativeMissing as e:
            log(f"error: {e}")
            return 2
    machine = machine_description()
    log("chatd benchmark harness (issues 4 and 16)")
    for k, v in machine.items():
        log(f"  {k:9} {v}")
    log(f"  pinning   server on core {args.server_core}, generator on core {args.gen_core}")
    log(f"  sizes     {sz}; runs={runs}")
    log(f"  load      {load_average()} (1, 5, 15 min) at the start")
    if nofile < sz.scale_conns + 500 and "scale" in scens:
        log(f"note: RLIMIT_NOFILE is {nofile}; scale clients are split over processes")

    chat_plan: Plan = []
    if "burst" in scens:
        chat_plan.append(("burst", scenarios.burst, False))
    if "closed" in scens:
        chat_plan.append(("closed", scenarios.closed_loop, False))
    if "paced" in scens:
        chat_plan.append(("paced", scenarios.paced, False))
    if "scale" in scens:
        chat_plan.append(("scale", scenarios.scale, True))
    echo_plan: Plan = []
    if "echo" in scens:
        echo_plan = [("echo_stream", scenarios.echo_stream, False),
                     ("echo_rtt", scenarios.echo_rtt, False)]  # fmt: skip

    start_load = load_average()
    results: report.Results = {}
    skipped: dict[str, str] = {}
    t_all = time.monotonic()
    for name in wanted:
        start = starter(name, args.server_core, nofile)
        plan = list(chat_plan if name in CHAT_SERVERS else [])
        if name == BLOCKS:  # the generator's ceiling: burst, closed and paced only
            plan = [p for p in plan if p[0] != "scale"]
        if name in ECHO_SERVERS:
            plan += echo_plan
            if "echo" in scens and name != "threaded":
                plan.append(("echo_udp", scenarios.echo_udp, False))
        if not plan:
            continue
        log(f"== {name}")
        try:
            probe = start()  # fail fast (and say why) if it cannot run here
            probe.stop()
        except Skip as e:
            skipped[name] = str(e)
            log(f"  SKIPPED: {e}")
            continue
        t0 = time.monotonic()
        results[name] = measure(name, start, plan, runs, sz, args.profile)
        log(f"  [{name}] done in {time.monotonic() - t0:.0f}s")

    shown = [s for s in wanted if s in results]
    rows = report.table(results, shown)
    log("")
    log(report.text_table(rows))
    log("")
    for line in report.targets(results):
        log(line)
    log(report.ceiling(results))
    for name, why in skipped.items():
        log(f"skipped {name}: {why}")
    end_load = load_average()
    log(f"load average {end_load} (1, 5, 15 min) at the end")
    log(f"total time {time.monotonic() - t_all:.0f}s")

    res_dir = ROOT / "bench" / "results"
    res_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (res_dir / f"{stamp}.json").write_text(json.dumps(
        {"machine": machine, "sizes": vars(sz), "runs": runs, "results": results,
         "load_start": start_load, "load_end": end_load,
         "skipped": skipped}, indent=1))  # fmt: skip

    if not args.no_docs:
        png = args.docs.parent / "benchmarks.png"
        has_chart = report.chart(results, shown, png)
        procs = ("one generator process" if sz.generator == NATIVE
                 else f"over {sz.scale_procs} generator processes")  # fmt: skip
        gen = [f"Measured {time.strftime('%Y-%m-%d %H:%M %Z')} with "
               f"`python -m bench{' --quick' if args.quick else ''}"
               f"{' --gen python' if sz.generator == PYTHON else ''}`; every figure is the "
               f"median of {runs} run(s). Sizes: {sz.receivers} receivers, {sz.senders} "
               f"senders, {sz.burst_lines} burst lines each, {sz.closed_msgs} closed-loop "
               f"messages, {sz.paced_seconds:g}s paced, {sz.scale_conns} scale connections "
               f"({procs}), {sz.echo_mib} MiB per echo stream. Load generator: "
               f"{sz.generator}. Load average (1, 5, 15 min): "
               f"{start_load} at the start, {end_load} at the end.",
               "", "### Machine", "", "| | |", "|---|---|"]  # fmt: skip
        gen += [f"| {k} | {v} |" for k, v in machine.items()]
        gen += ["| pinning | server on core "
                f"{args.server_core}, generator on core {args.gen_core} |", ""]  # fmt: skip
        gen += ["### Results", "", "Ratio column: chatd's figure over the best peer's "
                "(for times and memory, the best peer's over chatd's), so above 1.00x "
                "means chatd is ahead.", "", report.md_table(rows), ""]  # fmt: skip
        if has_chart:
            gen += [f"![chart](./{png.name})", ""]
        gen += ["### Targets (issue 16)", "", *report.targets(results), "",
                report.ceiling(results), ""]  # fmt: skip
        if skipped:
            gen += ["### Skipped", ""] + [f"- {k}: {v}" for k, v in skipped.items()]
        report.write_docs(args.docs, "\n".join(gen))
        log(f"wrote {args.docs}" + (f" and {png}" if has_chart else " (no matplotlib: no chart)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

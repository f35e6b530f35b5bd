"""rawprobe's benchmark suite: ``python -m benchmarks [--quick] [--only N ...]`` as root.

Runs every scenario for rawprobe and for each installed peer (bpftrace, bcc's trace, perf,
strace), prints the tables as it goes, and writes them with the host's description to
``benchmarks/RESULTS.md`` (``--results``) and, for machines, to ``--json``.

Scenarios: 1 cost per hit, 2 lossless event rate (and record), 3 start-up, 4 many probes, 5
symbol resolution, 6 memory, 7 system calls, 8 following a command (and what it costs other
processes). Every number is a median of repeats, and every ratio compares numbers taken in the
same run. ``--quick`` takes fewer and shorter samples (a smoke run, about a minute); its
numbers are noisier. A goal is met, missed, or inconclusive when the figures cannot tell (a
peer limited by the target rather than by itself, or unlike itself in earlier full runs:
peer-history.json, which full runs update).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from . import (
    scenario_cost,
    scenario_follow,
    scenario_memory,
    scenario_probes,
    scenario_rate,
    scenario_startup,
    scenario_symbols,
    scenario_syscalls,
)
from ._harness import (
    ROOT,
    Context,
    ScenarioResult,
    Stage,
    bcc_kernel_source,
    find_peers,
    tool_version,
)
from .common import BUILD, build_loop, build_many, host_description

SCENARIOS: dict[int, Callable[[Context], ScenarioResult]] = {
    1: scenario_cost.run,
    2: scenario_rate.run,
    3: scenario_startup.run,
    4: scenario_probes.run,
    5: scenario_symbols.run,
    6: scenario_memory.run,
    7: scenario_syscalls.run,
    8: scenario_follow.run,
}


def _host_lines(peers: dict[str, str]) -> list[str]:
    lines = [f"- Host: {host_description()}"]
    try:
        with open("/proc/meminfo") as meminfo:
            memory = next(line.split(":")[1].strip() for line in meminfo
                          if line.startswith("MemTotal"))
        lines.append(f"- Memory: {memory}")
    except (OSError, StopIteration):
        pass
    libbpf = "unknown"
    try:
        from rawprobe._sys.libbpf import libbpf as load_libbpf

        major, minor = load_libbpf().version
        libbpf = f"{major}.{minor}"
    except Exception:
        pass
    lines.append(f"- rawprobe: {_git_describe()}, libbpf {libbpf}")
    versions = {
        "bpftrace": [peers.get("bpftrace", ""), "--version"],
        "perf": [peers.get("perf", ""), "--version"],
    }
    for name, path in peers.items():
        version = tool_version(versions[name]) if name in versions else _package_version(path)
        lines.append(f"- {name}: {path} ({version})")
    return lines


def _package_version(path: str) -> str:
    try:
        owner = subprocess.run(["dpkg", "-S", path], capture_output=True, text=True,
                               timeout=10).stdout.split(":")[0]
        version = subprocess.run(["dpkg-query", "-W", "-f=${Version}", owner],
                                 capture_output=True, text=True, timeout=10).stdout
        return f"{owner} {version}" if owner and version else "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def _git_describe() -> str:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%h %s"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "rawprobe"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return f"commit {out}" + (" (rawprobe/ modified)" if dirty else "")
    except (OSError, subprocess.TimeoutExpired):
        return "unknown commit"


_DEFAULT_RESULTS = Path(__file__).parent / "RESULTS.md"


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.2f} (1 min), {five:.2f} (5 min)"


def _terminate(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt  # unwinds every `with Spawned(...)`: no tracer is left behind


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: fewer, shorter samples (about a minute)")
    parser.add_argument("--only", type=int, action="append", choices=sorted(SCENARIOS),
                        metavar="N", help="run only scenario N (repeatable)")
    parser.add_argument("--peers", default=None,
                        help="comma-separated peers to compare with (bpftrace, bcc-trace, "
                        "bcc-funccount, perf, strace; 'none' for none); default: every "
                        "installed one")
    parser.add_argument("--slow-peers", action="store_true",
                        help="also measure bpftrace with 1,000 probes (its detach takes "
                        "minutes)")
    parser.add_argument("--results", type=Path, default=_DEFAULT_RESULTS,
                        help="where to write the Markdown results (default: %(default)s)")
    parser.add_argument("--json", type=Path, help="also write the numbers as JSON here")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error("run as root: the benchmarks plant uprobes")
    # Started in the background by a shell, this process ignores SIGINT, and so would every
    # process it starts: the tracers are stopped with SIGINT, as a user stops them.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _terminate)
    wanted = None if args.peers is None else [p for p in args.peers.split(",") if p != "none"]
    peers = find_peers(wanted)
    numbers = args.only or sorted(SCENARIOS)
    started = time.monotonic()
    load_before = _load()
    workdir = Path(tempfile.mkdtemp(prefix="rawprobe-bench-"))
    results: list[ScenarioResult] = []
    try:
        # Private copies of the targets: a peer that does not filter by process (bpftrace
        # -p counts every process running the probed file) must not count another run's.
        targets = workdir / "targets"
        targets.mkdir()
        loop, many = targets / "loop", targets / "many"
        shutil.copy2(build_loop(), loop)
        shutil.copy2(build_many(), many)
        ctx = Context(quick=args.quick, peers=peers, slow_peers=args.slow_peers,
                      workdir=workdir, stage=Stage(workdir / "stage"), loop=loop, many=many)
        if any(peer.startswith("bcc") for peer in peers):
            ctx.bcc_source, note = bcc_kernel_source(BUILD)
            if note:
                ctx.host_notes.append(note)
            if note and ctx.bcc_source is None:
                for peer in [p for p in peers if p.startswith("bcc")]:
                    del peers[peer]
        print(host_description(), "| peers:", ", ".join(peers) or "none",
              "| quick" if args.quick else "", file=sys.stderr, flush=True)
        for number in numbers:
            print(f"scenario {number} ...", file=sys.stderr, flush=True)
            scenario_started = time.monotonic()
            try:
                result = SCENARIOS[number](ctx)
            except Exception as error:
                traceback.print_exc()
                result = ScenarioResult(number, f"scenario {number}", "", error=repr(error))
            result.seconds = time.monotonic() - scenario_started
            results.append(result)
            for table in result.tables:
                print("\n" + table.text(), flush=True)
            for goal in result.goals:
                print(f"  goal: {goal.text}: {goal.measured} -> {goal.status}", flush=True)
            print(flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.monotonic() - started
    host_notes = ctx.host_notes if "ctx" in locals() else []
    if "ctx" in locals() and not args.quick and args.results == _DEFAULT_RESULTS:
        ctx.history.save()  # the peers' figures of full runs, to judge the next ones by
    header = [
        "# rawprobe benchmark results",
        "",
        f"Written by `python -m benchmarks{' --quick' if args.quick else ''}"
        f"{' --slow-peers' if args.slow_peers else ''}` on "
        f"{datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}, in {elapsed:.0f} s. "
        "Every figure is a median of repeats; every ratio compares figures from this run.",
        "",
        *_host_lines(peers),
        f"- Python: {platform.python_implementation()} {platform.python_version()} "
        f"({sys.executable})",
        f"- Load average: {load_before} before, {_load()} after (the host is shared: other "
        "jobs add noise)",
        *[f"- {note}" for note in host_notes],
        "",
        "## Goals",
        "",
        "| scenario | goal | measured | status |",
        "|---|---|---|---|",
    ]
    for result in results:
        for goal in result.goals:
            header.append(f"| {result.number} | {goal.text} | {goal.measured} | "
                          f"**{goal.status}** |")
    text = "\n".join(header) + "\n\n" + "\n".join(r.markdown() for r in results)
    args.results.write_text(text)
    print(f"wrote {args.results} ({elapsed:.0f} s)", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps({
            "quick": args.quick, "seconds": elapsed, "peers": peers,
            "scenarios": {str(r.number): {"title": r.title, "numbers": r.numbers,
                                          "error": r.error, "seconds": r.seconds,
                                          "goals": [g.__dict__ for g in r.goals]}
                          for r in results},
        }, indent=1))
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())

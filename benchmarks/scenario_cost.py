"""Scenario 1: what one probe hit costs the traced program.

The ``loop`` target calls one function N times flat out and reports its own loop time; it
starts only once its function is probed, so each tracer is timed from the moment its probe is
in place. Cost per hit = (median traced loop time - median untraced loop time) / N, on two
cheap probe sites (a 5-byte NOP, which 6.18 optimizes into a call, and ``push %rbp``, which the
kernel emulates), so the BPF side of each tracer is what differs.

Tracers, one probe each, following the target's pid:
- floor, rawprobe: rawprobe's empty program ``rp_empty`` on a perf-event uprobe (_floor.py);
- floor, bpftrace: ``uprobe:... {}``;
- rawprobe ``--count`` (counted in the kernel) and bpftrace ``@ = count()``;
- rawprobe ``--stats a`` (count, sum, min and max of an argument, in the kernel) and
  bpftrace ``@ = stats(arg0)`` (count and sum: bpftrace's stats() keeps no min and max);
- rawprobe ``--span`` from the function's entry to its return, as a histogram, and
  bpftrace's ``@start[tid] = nsecs`` at the entry, ``hist(nsecs - @start[tid])`` and
  ``delete`` at the return: a span costs two hits (the uretprobe's is the dearer), and the
  figure is per call;
- rawprobe streaming two integer arguments (``--json -o /dev/null``) and bpftrace
  ``printf("%d %d\\n", arg0, arg1)`` (to a file). Both get buffers that hold every record of a
  run (rawprobe ``--ring-size``, bpftrace ``BPFTRACE_PERF_RB_PAGES``): a record that does not
  fit is dropped early and costs less, which would flatter whoever loses the most.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from ._harness import (
    Context,
    Goal,
    LoopRun,
    LoopTarget,
    MeasurementError,
    ScenarioResult,
    Spawned,
    Table,
    bpftrace_account,
    goal_status,
    median,
    wait_idle,
)

SITES = {"nop5": "hit_nop5", "push": "hit"}
RECORD_BYTES = {"rawprobe": 72, "bpftrace": 40}  # one record, framing included


def _power_of_two_at_least(value: int) -> int:
    size = 1
    while size < value:
        size <<= 1
    return size


class Launch:
    """How to start one tracer on the target, and how to read its accounting afterwards."""

    def __init__(self, name: str, peer: str | None, streaming: bool,
                 start: Callable[[Context, Path, str, int, int, Path], Spawned],
                 account: Callable[[Spawned, Path], tuple[int, int]] | None = None) -> None:
        self.name = name
        self.peer = peer  # None: rawprobe
        self.streaming = streaming
        self.start = start
        self.account = account


def _rawprobe_summary(tracer: Spawned, _output: Path) -> tuple[int, int]:
    """(events delivered, events lost) from rawprobe's summary line on stderr."""
    match = re.search(r"rawprobe: (\d+) events?, (\d+) lost", tracer.stderr_text)
    if not match:
        raise MeasurementError(f"no summary from rawprobe: {tracer.stderr_text[-500:]}")
    return int(match.group(1)), int(match.group(2))


def launches(ctx: Context) -> list[Launch]:
    stage = ctx.stage
    bpftrace = ctx.peers.get("bpftrace")
    result = [
        Launch("floor: rawprobe rp_empty", None, False,
               lambda c, loop, fn, pid, n, out: Spawned(
                   stage.script("_floor.py", str(loop), fn, str(pid)), env=stage.env(),
                   cwd=stage.directory)),
        Launch("rawprobe --count", None, False,
               lambda c, loop, fn, pid, n, out: Spawned(
                   stage.argv("attach", "--count", "-p", str(pid), f"p:{loop}:{fn}"),
                   env=stage.env(), cwd=stage.directory, stdout=None)),
        Launch("rawprobe --stats", None, False,
               lambda c, loop, fn, pid, n, out: Spawned(
                   stage.argv("attach", "--stats", "a", "-p", str(pid),
                              f"p:{loop}:{fn} a=%di:s64"),
                   env=stage.env(), cwd=stage.directory, stdout=None)),
        Launch("rawprobe --span", None, False,
               lambda c, loop, fn, pid, n, out: Spawned(
                   stage.argv("attach", "--hist", "latency", "-p", str(pid), "--span",
                              f"p:{loop}:{fn}", f"r:{loop}:{fn}"),
                   env=stage.env(), cwd=stage.directory, stdout=None)),
        Launch("rawprobe --json -o /dev/null", None, True,
               lambda c, loop, fn, pid, n, out: Spawned(
                   stage.argv("attach", "--json", "-o", "/dev/null", "--ring-size",
                              str(_power_of_two_at_least(2 * n * RECORD_BYTES["rawprobe"])),
                              "-p", str(pid), f"p:{loop}:{fn} a=%di:s64 b=%si:s64"),
                   env=stage.env(), cwd=stage.directory, stdout=None),
               _rawprobe_summary),
    ]
    if bpftrace:
        def bt(program: str, streaming: bool = False) -> Callable[..., Spawned]:
            def start(c: Context, loop: Path, fn: str, pid: int, n: int, out: Path) -> Spawned:
                pages = _power_of_two_at_least(2 * n * RECORD_BYTES["bpftrace"] // 4096)
                env = None
                if streaming:
                    import os

                    env = {**os.environ, "BPFTRACE_PERF_RB_PAGES": str(pages)}
                script = (program.format(loop=loop, fn=fn) if program.startswith("uprobe:")
                          else f"uprobe:{loop}:{fn} {program}")
                return Spawned([bpftrace, "-p", str(pid), "-e", script],
                               env=env, stdout=out, stderr="pipe")
            return start

        result[1:1] = [Launch("floor: bpftrace {}", "bpftrace", False, bt("{}"))]
        result += [
            Launch("bpftrace @ = count()", "bpftrace", False, bt("{ @ = count(); }")),
            Launch("bpftrace @ = stats()", "bpftrace", False,
                   bt("{ @ = stats((int64)arg0); }")),
            Launch("bpftrace @start, hist()", "bpftrace", False, bt(
                "uprobe:{loop}:{fn} {{ @start[tid] = nsecs; }} "
                "uretprobe:{loop}:{fn} /@start[tid]/ {{ @ = hist(nsecs - @start[tid]); "
                "delete(@start[tid]); }}")),
            Launch("bpftrace printf", "bpftrace", True,
                   bt('{ printf("%d %d\\n", arg0, arg1); }', streaming=True), bpftrace_account),
        ]
    return result


def _session(ctx: Context, launch: Launch, mode: str, calls: int, runs: int
             ) -> tuple[list[LoopRun], str]:
    """``runs`` runs of the target under one tracer session: (its reports, accounting note).

    A streaming tracer is given time to catch up (it goes idle) before each next run, so
    every run starts with an empty buffer and a reader that keeps pace.
    """
    output = ctx.scratch("cost-") / "out"
    reports = []
    with LoopTarget(ctx.loop, calls, 0, mode, wait=True, runs=runs) as target, \
            launch.start(ctx, ctx.loop, SITES[mode], target.pid, calls, output) as tracer:
        for index in range(runs):
            if index:
                target.next_run()
            reports.append(target.result(120, tracer))
            if launch.streaming:
                wait_idle(tracer.pid, quiet=0.25, timeout=120)
        tracer.stop()
        note = ""
        if launch.account is not None:
            delivered, lost = launch.account(tracer, output)
            note = f"{delivered:,} delivered, {lost:,} lost"
            if delivered != calls * runs and not lost:
                note += f" (of {calls * runs:,} calls)"
    return reports, note


def run(ctx: Context) -> ScenarioResult:
    result = ScenarioResult(1, "Cost per probe hit", __doc__.split("\n\n", 1)[1].strip())
    calls = 100_000 if ctx.quick else 200_000
    runs = 3 if ctx.quick else 5
    rounds = 1 if ctx.quick else 2
    modes = list(SITES)
    tracers = launches(ctx)
    untraced: dict[str, list[float]] = {mode: [] for mode in modes}
    traced: dict[tuple[str, str], list[float]] = {}
    notes: dict[tuple[str, str], str] = {}
    for round_number in range(rounds):
        for mode in modes:
            with LoopTarget(ctx.loop, calls, 0, mode, wait=False, runs=runs) as target:
                for index in range(runs):
                    if index:
                        target.next_run()
                    untraced[mode].append(target.result(60).cpu_ns)
            for launch in tracers:
                ctx.log(f"cost: round {round_number + 1}/{rounds}, {mode}, {launch.name}")
                try:
                    reports, note = _session(ctx, launch, mode, calls, runs)
                except MeasurementError as error:
                    notes[(launch.name, mode)] = f"failed: {error}"
                    continue
                traced.setdefault((launch.name, mode), []).extend(r.cpu_ns for r in reports)
                if note:
                    notes[(launch.name, mode)] = note
    per_hit: dict[tuple[str, str], float] = {}
    for (name, mode), times in traced.items():
        per_hit[(name, mode)] = (median(times) - median(untraced[mode])) / calls
    samples = rounds * runs
    table = Table(f"ns per hit (CPU time of the target's loop, {calls:,} calls a run, median "
                  f"of {samples} runs in {rounds} session(s); untraced loop subtracted)",
                  ["tracer", *[f"{m} site" for m in modes], "notes"])
    table.add("untraced loop (ns per call)",
              *[f"{median(untraced[m]) / calls:.1f}" for m in modes], "")
    for launch in tracers:
        cells = [f"{per_hit[(launch.name, m)]:.0f}" if (launch.name, m) in per_hit else "-"
                 for m in modes]
        note = "; ".join(f"{m}: {notes[(launch.name, m)]}" for m in modes
                         if (launch.name, m) in notes)
        table.add(launch.name, *cells, note)
    result.tables.append(table)

    pairs = [("rawprobe --count", "bpftrace @ = count()", 1.1),
             ("rawprobe --stats", "bpftrace @ = stats()", 1.1),
             ("rawprobe --span", "bpftrace @start, hist()", 1.1),
             ("rawprobe --json -o /dev/null", "bpftrace printf", 1.0),
             ("floor: rawprobe rp_empty", "floor: bpftrace {}", None)]
    verbs = {"rawprobe --count": "--count", "rawprobe --stats": "--stats",
             "rawprobe --span": "--span (per call: entry and return)",
             "rawprobe --json -o /dev/null": "streaming (two integers, --json)"}
    ratios = Table("ratios, rawprobe / bpftrace, per hit (same run)",
                   ["pair", *[f"{m} site" for m in modes]])
    for ours, theirs, limit in pairs:
        values = [per_hit.get((ours, m), float("nan")) / per_hit.get((theirs, m), float("nan"))
                  for m in modes]
        ratios.add(f"{ours} / {theirs}", *[f"{v:.2f}x" if v == v else "-" for v in values])
        for mode, value in zip(modes, values, strict=True):
            key = ours.split()[1] if ours.startswith("rawprobe") else "floor"
            result.numbers[f"per_hit_ns.rawprobe_{key}.{mode}"] = per_hit.get((ours, mode),
                                                                               float("nan"))
            if value == value:
                result.numbers[f"ratio.{key}.{mode}"] = value
        if limit is None:
            continue
        measured = ", ".join(f"{m}: {v:.2f}x" if v == v else f"{m}: -"
                             for m, v in zip(modes, values, strict=True))
        known = [v for v in values if v == v]
        ok = None if len(known) < len(values) else all(v <= limit for v in known)
        verb = verbs[ours]
        result.goals.append(Goal(f"{verb} <= {limit}x {theirs} per hit", measured,
                                 goal_status(ok)))
    if "bpftrace" in ctx.peers:
        result.tables.append(ratios)
    for mode in modes:
        floor = per_hit.get(("floor: rawprobe rp_empty", mode))
        if floor is None:
            continue
        above = ", ".join(
            f"{launch.name} {per_hit[(launch.name, mode)] - floor:+.0f}"
            for launch in tracers if (launch.name, mode) in per_hit and "floor" not in
            launch.name)
        result.notes.append(f"{mode} site, ns above rawprobe's floor ({floor:.0f} ns): {above}")
    result.notes.append("A run's loop time is measured by the target itself from the moment "
                        "its probe is in; tracers run on the other CPU meanwhile.")
    return result

"""Scenario 8: following a command (``attach -- COMMAND``), and what it costs everyone else.

1. Cost per hit when the tracer starts the command itself: the ``loop`` target, started by
   each tracer, calls ``hit_nop5`` N times flat out and reports its own loop's CPU time (the
   untraced loop's is subtracted): ``rawprobe attach --count -o /dev/null 'p:loop:hit_nop5'
   -- loop N`` and ``bpftrace -c 'loop N' -e 'uprobe:loop:hit_nop5 { @ = count(); }'``.
2. A bystander: another ``loop`` process, which no tracer started, calls the same function
   flat out while a traced command runs (slowly, 1,000 calls a second, leaving it the CPU).
   Its CPU time per call, less the untraced loop's, is what tracing the command costs a
   process outside it. Shown for rawprobe ``attach -- COMMAND``, bpftrace ``-c``, and for
   reference a host-wide rawprobe ``attach`` (the way ``-- COMMAND`` used to follow a
   command: every process running the code took the breakpoint).
"""

from __future__ import annotations

import re
import time

from ._harness import (
    Context,
    Goal,
    LoopTarget,
    MeasurementError,
    ScenarioResult,
    Spawned,
    Table,
    goal_status,
    median,
    parse_loop,
)

FUNCTION, MODE = "hit_nop5", "nop5"


def _loop_argv(ctx: Context, calls: int, rate: int) -> list[str]:
    return [str(ctx.loop), str(calls), str(rate), MODE, "now"]


def _rawprobe(ctx: Context, command: list[str]) -> Spawned:
    return Spawned(ctx.stage.argv("attach", "--count", "-o", "/dev/null",
                                  f"p:{ctx.loop}:{FUNCTION}", "--", *command),
                   env=ctx.stage.env(), cwd=ctx.stage.directory, stdout="pipe",
                   stderr="pipe")


def _bpftrace(ctx: Context, command: list[str]) -> Spawned:
    return Spawned([ctx.peers["bpftrace"], "-c", " ".join(command), "-e",
                    f"uprobe:{ctx.loop}:{FUNCTION} {{ @ = count(); }}"],
                   stdout="pipe", stderr="pipe")


def _per_hit_run(tracer: Spawned, calls: int) -> float:
    """The traced command's loop CPU time (ns) from the tracer's output."""
    line = tracer.out.wait_for(lambda text: "elapsed_ns=" in text, 120)
    if line is None:
        tracer.stop()
        raise MeasurementError(f"{tracer.argv[0]}: the command never reported: "
                               f"{tracer.stderr_text[-300:]}")
    report = parse_loop(line[line.index("elapsed_ns="):])
    tracer.wait(60)
    tracer.stop()
    if report.calls != calls:
        raise MeasurementError(f"the command made {report.calls} calls, not {calls}")
    return report.cpu_ns


def _ready(tracer: Spawned, pattern: str, timeout: float = 60) -> None:
    """Wait for ``pattern`` on the tracer's stderr (rawprobe) or stdout (bpftrace)."""
    reader = tracer.out if pattern == "Attaching" else tracer.err
    assert reader is not None
    if reader.wait_for(lambda text: re.search(pattern, text) is not None, timeout) is None:
        tracer.stop()
        raise MeasurementError(f"{tracer.argv[0]} never became ready: "
                               f"{tracer.stderr_text[-300:]}")
    time.sleep(0.2)  # bpftrace attaches after it says so


def _bystander(ctx: Context, calls: int) -> float:
    """A loop no tracer started: CPU ns per call, flat out."""
    with LoopTarget(ctx.loop, calls, 0, MODE, wait=False) as target:
        report = target.result(120)
    return report.cpu_ns / report.calls


def run(ctx: Context) -> ScenarioResult:
    result = ScenarioResult(8, "Following a command, and what it costs everyone else",
                            __doc__.split("\n\n", 1)[1].strip())
    calls = 100_000 if ctx.quick else 200_000
    runs = 3 if ctx.quick else 8
    bystander_calls = 500_000 if ctx.quick else 2_000_000
    bpftrace = "bpftrace" in ctx.peers

    untraced = []
    for _ in range(runs):
        with LoopTarget(ctx.loop, calls, 0, MODE, wait=False) as target:
            untraced.append(target.result(60).cpu_ns)
    launches = [("rawprobe attach --count -- COMMAND", _rawprobe)]
    if bpftrace:
        launches.append(("bpftrace @ = count() -c COMMAND", _bpftrace))
    traced: dict[str, list[float]] = {}
    failures: dict[str, str] = {}
    for index in range(runs):  # interleaved, so host noise falls on both alike
        for name, launch in launches:
            ctx.log(f"follow: {name} ({index + 1}/{runs})")
            try:
                tracer = launch(ctx, _loop_argv(ctx, calls, 0))
                with tracer:
                    traced.setdefault(name, []).append(_per_hit_run(tracer, calls))
            except MeasurementError as error:
                failures[name] = str(error)
    per_hit = {name: (median(times) - median(untraced)) / calls
               for name, times in traced.items()}
    table = Table(f"ns per hit, the tracer starting the command ({calls:,} calls flat out, "
                  f"median of {runs} runs; untraced loop subtracted)", ["tracer", "nop5 site"])
    table.add("untraced loop (ns per call)", f"{median(untraced) / calls:.1f}")
    for name, _launch in launches:
        table.add(name, f"{per_hit[name]:.0f}" if name in per_hit else
                  f"failed: {failures.get(name, '')[:100]}")
        if name in per_hit:
            result.numbers[f"per_hit_ns.{name.split()[0]}_command"] = per_hit[name]
    result.tables.append(table)
    ours = per_hit.get("rawprobe attach --count -- COMMAND")
    theirs = per_hit.get("bpftrace @ = count() -c COMMAND")
    result.goals.append(Goal(
        "-- COMMAND: --count per hit <= 1.1x bpftrace -c",
        f"{ours / theirs:.2f}x ({ours:.0f} ns vs {theirs:.0f} ns)" if ours and theirs else "-",
        goal_status(None if not (ours and theirs) else ours <= 1.1 * theirs)))

    # The bystander.
    repeats = 2 if ctx.quick else 5
    alone = [_bystander(ctx, bystander_calls) for _ in range(repeats)]
    seconds = 4.0 if ctx.quick else 8.0
    slow = _loop_argv(ctx, int(1000 * seconds), 1000)
    bystanders: dict[str, list[float]] = {}
    settings = [("rawprobe attach -- COMMAND", lambda: _rawprobe(ctx, slow),
                 r"rawprobe: tracing")]
    if bpftrace:
        settings.append(("bpftrace -c COMMAND", lambda: _bpftrace(ctx, slow), r"Attaching"))
    settings.append(("rawprobe attach, host-wide (for reference)", lambda: Spawned(
        ctx.stage.argv("attach", "--count", "-o", "/dev/null", "--duration", str(seconds),
                       f"p:{ctx.loop}:{FUNCTION}"),
        env=ctx.stage.env(), cwd=ctx.stage.directory, stdout="pipe", stderr="pipe"),
        r"rawprobe: tracing"))
    for name, start, ready in settings:
        ctx.log(f"follow: bystander while {name}")
        try:
            with start() as tracer:
                _ready(tracer, ready)
                bystanders[name] = [_bystander(ctx, bystander_calls) for _ in range(repeats)]
                tracer.stop()
        except MeasurementError as error:
            failures[name] = str(error)
    base = median(alone)
    table = Table(f"a bystander's CPU time per call ({bystander_calls:,} calls flat out, "
                  f"median of {repeats}) while a traced command runs",
                  ["while", "ns per call", "extra ns per call"])
    table.add("nothing traced", f"{base:.1f}", "")
    extra: dict[str, float] = {}
    for name, _start, _ready_text in settings:
        if name not in bystanders:
            table.add(name, "failed", failures.get(name, "")[:120])
            continue
        value = median(bystanders[name])
        extra[name] = value - base
        table.add(name, f"{value:.1f}", f"{value - base:+.1f}")
        result.numbers[f"bystander_extra_ns.{name.split()[0]}"
                       f"{'_hostwide' if 'host-wide' in name else ''}"] = value - base
    result.tables.append(table)
    ours_extra = extra.get("rawprobe attach -- COMMAND")
    reference = extra.get("rawprobe attach, host-wide (for reference)")
    result.goals.append(Goal(
        "-- COMMAND: a bystander running the probed code pays <= 2 ns per call",
        "-" if ours_extra is None else f"{ours_extra:+.1f} ns per call"
        + ("" if reference is None else f" (host-wide probes cost it {reference:+.0f} ns)"),
        goal_status(None if ours_extra is None else ours_extra <= 2.0)))
    for name, why in failures.items():
        result.notes.append(f"{name} failed: {why[:300]}")
    return result

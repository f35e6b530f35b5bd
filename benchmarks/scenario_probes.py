"""Scenario 4: attaching and detaching many probes at once.

The ``many`` target has 1,000 functions ``fn000`` ... ``fn999`` and watches the first N of them:
it reports (CLOCK_MONOTONIC) when all N carry a breakpoint, and when none does any more. Each
tracer counts calls to them with one wildcard, following the target's pid:
``rawprobe attach --count 'p:many:fn0*'`` and bpftrace ``uprobe:many:fn0* { @ = count(); }``
(N = 10: ``fn00*``, 100: ``fn0*``, 1,000: ``fn*``). Attach = launch -> all N probed (start-up,
symbol resolution, loading, planting). Detach = SIGINT -> the tracer has exited (the target's
own "all unprobed" time is shown too). The library figures are a ``Tracer`` in this process:
``add()`` + ``start()``, then ``close()``.

rawprobe puts a file's probes on one uprobe_multi link (Linux 6.6+); bpftrace 0.17 opens one
perf event per probe, and removing each costs an RCU grace period. rawprobe's tracefs backend
defines the probes in one write to uprobe_events, sites that read alike sharing one kernel
event (whose removal costs a grace period however many sites it has). bpftrace is measured up to
100 probes unless ``--slow-peers``; its 1,000-probe detach is extrapolated from its per-probe
cost between 10 and 100, and labelled so.
"""

from __future__ import annotations

import os
import signal
import time

from ._harness import (
    Context,
    Goal,
    MeasurementError,
    ScenarioResult,
    Spawned,
    Table,
    goal_status,
    median,
)

GLOBS = {10: "fn00*", 100: "fn0*", 1000: "fn*"}


class ManyTarget(Spawned):
    def __init__(self, ctx: Context, count: int) -> None:
        super().__init__([str(ctx.many), str(count)], stdout="pipe", stderr="pipe")
        self.exit_signal = signal.SIGTERM
        if self.out.readline(10) != f"watching {count}":
            self.stop(signal.SIGKILL)
            raise MeasurementError("the many target did not start")

    def stamp(self, name: str, timeout: float, tracer: Spawned | None = None) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.out.readline(0.2)
            if line is not None and line.startswith(name + "="):
                return int(line.split("=")[1])
            if self.out.closed or (tracer is not None and not tracer.running()):
                break
        why = tracer.stderr_text[-300:] if tracer is not None and not tracer.running() else ""
        raise MeasurementError(f"the target never reported {name} {why}")


def _tracer_run(ctx: Context, count: int, launch: list[str], env: dict[str, str] | None,
                cwd: str | None, timeout: float) -> tuple[float, float, float]:
    """(attach s, detach-to-exit s, detach-to-unprobed s) of one command-line tracer run."""
    with ManyTarget(ctx, count) as target:
        argv = [arg.replace("{pid}", str(target.pid)) for arg in launch]
        with Spawned(argv, env=env, cwd=cwd, stdout=None) as tracer:
            probed = target.stamp("probed_ns", timeout, tracer)
            attach = (probed - tracer.started_ns) / 1e9
            signalled = time.monotonic_ns()
            status = tracer.stop(signal.SIGINT, timeout=timeout)
            exited = time.monotonic_ns()
            unprobed = target.stamp("unprobed_ns", 30)
            if status not in (0, -signal.SIGINT, 130):
                raise MeasurementError(f"{argv[0]} exited with {status}: "
                                       f"{tracer.stderr_text[-300:]}")
    return attach, (exited - signalled) / 1e9, (unprobed - signalled) / 1e9


def _library_run(ctx: Context, count: int) -> tuple[float, float]:
    from rawprobe._probe.aggregations import AggregationSpec
    from rawprobe._tracer import Tracer

    with ManyTarget(ctx, count) as target:
        started = time.perf_counter()
        tracer = Tracer(pid=target.pid, aggregation=AggregationSpec("count"))
        try:
            tracer.add(f"p:{ctx.many}:{GLOBS[count]}")
            tracer.start()
            attached = time.perf_counter()
            target.stamp("probed_ns", 30)
            closing = time.perf_counter()
        finally:
            tracer.close()
        closed = time.perf_counter()
        target.stamp("unprobed_ns", 30)
    return attached - started, closed - closing


def run(ctx: Context) -> ScenarioResult:
    result = ScenarioResult(4, "Many probes: attach and detach", __doc__.split("\n\n", 1)[1]
                            .strip())
    repeats = 1 if ctx.quick else 3
    sizes = [10, 100, 1000]
    bpftrace = ctx.peers.get("bpftrace")
    bpftrace_sizes = [10] if ctx.quick else [10, 100]
    if ctx.slow_peers:
        bpftrace_sizes = sizes
    figures: dict[tuple[str, int], list[tuple[float, ...]]] = {}
    failures: dict[str, str] = {}
    for count in sizes:
        for repeat in range(repeats):
            ctx.log(f"probes: rawprobe, {count} probes ({repeat + 1})")
            try:
                figures.setdefault(("rawprobe CLI", count), []).append(_tracer_run(
                    ctx, count, ctx.stage.argv("attach", "--count", "-p", "{pid}",
                                               f"p:{ctx.many}:{GLOBS[count]}"),
                    ctx.stage.env(), str(ctx.stage.directory), 60))
                figures.setdefault(("rawprobe library", count), []).append(
                    _library_run(ctx, count))
                ctx.log(f"probes: rawprobe --backend tracefs, {count} probes ({repeat + 1})")
                figures.setdefault(("rawprobe CLI, tracefs", count), []).append(_tracer_run(
                    ctx, count, ctx.stage.argv("attach", "--backend", "tracefs", "--count",
                                               "-p", "{pid}", f"p:{ctx.many}:{GLOBS[count]}"),
                    ctx.stage.env(), str(ctx.stage.directory), 300))
            except MeasurementError as error:
                failures[f"rawprobe, {count}"] = str(error)
        if bpftrace and count in bpftrace_sizes:
            env = {**os.environ, "BPFTRACE_MAX_PROBES": "4096", "BPFTRACE_MAX_BPF_PROGS": "4096"}
            for repeat in range(1 if count >= 100 else repeats):
                ctx.log(f"probes: bpftrace, {count} probes ({repeat + 1})")
                try:
                    figures.setdefault(("bpftrace", count), []).append(_tracer_run(
                        ctx, count, [bpftrace, "-p", "{pid}", "-e",
                                     f"uprobe:{ctx.many}:{GLOBS[count]} {{ @ = count(); }}"],
                        env, None, 600))
                except MeasurementError as error:
                    failures[f"bpftrace, {count}"] = str(error)

    def cell(name: str, count: int, index: int) -> float | None:
        values = figures.get((name, count))
        return median([v[index] for v in values]) if values else None

    table = Table("seconds (median)", ["tracer", "probes", "attach", "detach", "total",
                                       "detach to unprobed", "vs bpftrace (total)"])
    for name in ("rawprobe CLI", "rawprobe library", "rawprobe CLI, tracefs", "bpftrace"):
        for count in sizes:
            attach, detach = cell(name, count, 0), cell(name, count, 1)
            if attach is None or detach is None:
                continue
            unprobed = cell(name, count, 2) if name != "rawprobe library" else None
            bt_attach, bt_detach = cell("bpftrace", count, 0), cell("bpftrace", count, 1)
            versus = ""
            if name != "bpftrace" and bt_attach is not None and bt_detach is not None:
                versus = f"{(attach + detach) / (bt_attach + bt_detach):.3f}x"
            table.add(name, count, f"{attach:.3f}", f"{detach:.3f}", f"{attach + detach:.3f}",
                      "" if unprobed is None else f"{unprobed:.3f}", versus)
            key = name.replace(",", "").replace(" ", "_")
            result.numbers[f"attach_s.{key}.{count}"] = attach
            result.numbers[f"detach_s.{key}.{count}"] = detach
    per_probe = None
    if cell("bpftrace", 100, 1) is not None and cell("bpftrace", 10, 1) is not None:
        per_probe = (cell("bpftrace", 100, 1) - cell("bpftrace", 10, 1)) / 90  # type: ignore[operator]
        attach_per = (cell("bpftrace", 100, 0) - cell("bpftrace", 10, 0)) / 90  # type: ignore[operator]
        if ("bpftrace", 1000) not in figures:
            detach = cell("bpftrace", 100, 1) + 900 * per_probe  # type: ignore[operator]
            attach = cell("bpftrace", 100, 0) + 900 * attach_per  # type: ignore[operator]
            table.add("bpftrace (EXTRAPOLATED)", 1000, f"~{attach:.1f}", f"~{detach:.1f}",
                      f"~{attach + detach:.1f}", "", "")
            result.numbers["detach_s.bpftrace_extrapolated.1000"] = detach
        result.notes.append(f"bpftrace's detach costs {per_probe * 1000:.0f} ms per probe "
                            f"(between 10 and 100 probes); its attach {attach_per * 1000:.1f} ms "
                            "per probe.")
    for name, why in failures.items():
        table.add(name, "", "failed", "", "", "", why[:150])
    result.tables.append(table)

    cli = (cell("rawprobe CLI", 1000, 0), cell("rawprobe CLI", 1000, 1))
    library = (cell("rawprobe library", 1000, 0), cell("rawprobe library", 1000, 1))
    if None not in cli:
        total = cli[0] + cli[1]  # type: ignore[operator]
        lib_total = library[0] + library[1] if None not in library else float("nan")  # type: ignore[operator]
        result.goals.append(Goal("attach + detach of 1,000 probes <= 1 s",
                                 f"CLI {total:.2f} s (library {lib_total:.2f} s)",
                                 goal_status(total <= 1.0)))
    tracefs = (cell("rawprobe CLI, tracefs", 1000, 0), cell("rawprobe CLI, tracefs", 1000, 1))
    result.goals.append(Goal(
        "tracefs backend: attach + detach of 1,000 probes in seconds (<= 5 s)",
        "-" if None in tracefs else
        f"{tracefs[0] + tracefs[1]:.2f} s (attach {tracefs[0]:.2f} s, detach {tracefs[1]:.2f} s)",  # type: ignore[operator]
        goal_status(None if None in tracefs else tracefs[0] + tracefs[1] <= 5.0)))  # type: ignore[operator]
    slower, attach_slower = [], []
    compared = 0
    for count in sizes:
        ours = cell("rawprobe CLI", count, 0), cell("rawprobe CLI", count, 1)
        theirs = cell("bpftrace", count, 0), cell("bpftrace", count, 1)
        if None in ours or None in theirs:
            continue
        compared += 1
        mine, peer = ours[0] + ours[1], theirs[0] + theirs[1]  # type: ignore[operator]
        if mine > peer:
            slower.append(f"{count}: {mine:.3f} s vs {peer:.3f} s")
        if ours[0] > theirs[0]:  # type: ignore[operator]
            attach_slower.append(f"{count} probes ({ours[0]:.3f} s vs {theirs[0]:.3f} s)")
    result.goals.append(Goal("attach + detach never slower than bpftrace at any size (CLI, "
                             "measured sizes)",
                             "; ".join(slower) if slower else f"faster at {compared} size(s)",
                             goal_status(None if not compared else not slower)))
    if attach_slower:
        result.notes.append("Attach alone is slower than bpftrace's at "
                            + ", ".join(attach_slower) + ": rawprobe's start-up (Python, "
                            "symbols, loading its object) is in the attach figure.")
    return result

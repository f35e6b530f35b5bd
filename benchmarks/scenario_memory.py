"""Scenario 6: memory.

1. Peak resident memory (VmHWM) of each streaming tracer during its best lossless run of
   scenario 2 (read just before it was stopped). Without scenario 2 in the same run, one run
   at 100,000 events/s for each.
2. A :class:`rawprobe.Tracer` started and closed again and again in this process, on a
   running ``loop`` target: each cycle adds ``p:loop:hit a=%di:s64 b=%si:s64`` (a perf-event
   uprobe), and every other cycle ``p:loop:hit_nop5`` too (then both go on one uprobe_multi
   link), starts, and closes. Open descriptors and RSS before (after 20 warm-up cycles), half-way
   and after; descriptors must not grow, nor RSS over the second half.
"""

from __future__ import annotations

import gc
import os
import time

from ._harness import (
    Context,
    Goal,
    LoopTarget,
    ScenarioResult,
    Table,
    fd_count,
    goal_status,
    median,
    status_kib,
)


def run(ctx: Context) -> ScenarioResult:
    from rawprobe._tracer import Tracer

    from . import scenario_rate

    result = ScenarioResult(6, "Memory", __doc__.split("\n\n", 1)[1].strip())
    peaks = ctx.shared.get("lossless")
    table = Table("peak RSS while streaming", ["tracer", "events/s", "peak RSS"])
    if peaks:
        for name, (rate, peak) in peaks.items():
            table.add(name, f"{rate:,.0f}", f"{peak / 1024:.1f} MiB")
            result.numbers[f"streaming_rss_mib.{name}"] = peak / 1024
    else:
        for streamer in scenario_rate.streamers(ctx):
            ctx.log(f"memory: {streamer.name} at 100,000/s")
            trial = scenario_rate.trial(ctx, streamer, 100_000, 0.5 if ctx.quick else 2.0)
            table.add(streamer.name, "100,000" + ("" if trial.lossless else " (lossy)"),
                      f"{trial.peak_rss_kib / 1024:.1f} MiB")
            result.numbers[f"streaming_rss_mib.{streamer.name}"] = trial.peak_rss_kib / 1024
    result.tables.append(table)

    cycles = 40 if ctx.quick else 1000
    warm_up = 20
    me = os.getpid()
    starts, closes = [], []
    with LoopTarget(ctx.loop, 0, 1000, "push", wait=False) as target:

        def cycle(index: int) -> None:
            tracer = Tracer(pid=target.pid)
            try:
                tracer.add(f"p:{ctx.loop}:hit a=%di:s64 b=%si:s64")
                if index % 2:
                    tracer.add(f"p:{ctx.loop}:hit_nop5")
                started = time.perf_counter()
                tracer.start()
                tracer.poll(0)
                starts.append(time.perf_counter() - started)
            finally:
                started = time.perf_counter()
                tracer.close()
                closes.append(time.perf_counter() - started)

        for index in range(warm_up):
            cycle(index)
        gc.collect()
        fds_before, rss_before = fd_count(), status_kib(me, "VmRSS")
        began = time.perf_counter()
        for index in range(cycles):
            if index % 100 == 99:
                ctx.log(f"memory: cycle {index + 1}/{cycles}")
            if index == cycles // 2:
                gc.collect()
                rss_middle = status_kib(me, "VmRSS")
            cycle(index)
        seconds = time.perf_counter() - began
        gc.collect()
        fds_after, rss_after = fd_count(), status_kib(me, "VmRSS")
    cycles_table = Table(f"{cycles:,} start/close cycles of a Tracer in one process",
                         ["", "before", "after", "growth"])
    cycles_table.add("open descriptors", fds_before, fds_after, fds_after - fds_before)
    cycles_table.add("RSS (MiB)", f"{rss_before / 1024:.1f}", f"{rss_after / 1024:.1f}",
                     f"{(rss_after - rss_before) / 1024:+.1f}")
    cycles_table.add("seconds per cycle (median start / close)",
                     f"{median(starts):.3f}", f"{median(closes):.3f}",
                     f"total {seconds:.0f} s")
    result.tables.append(cycles_table)
    result.numbers["cycles.fd_growth"] = fds_after - fds_before
    result.numbers["cycles.rss_growth_mib"] = (rss_after - rss_before) / 1024
    # RSS moves by pages as Python's allocator settles; a leak grows with the cycles, so the
    # second half's slope is what tells.
    slope = (rss_after - rss_middle) / (cycles - cycles // 2)
    result.numbers["cycles.rss_kib_per_cycle"] = slope
    result.goals.append(Goal(
        f"no growth over {cycles:,} attach/detach cycles (descriptors, RSS)",
        f"descriptors {fds_after - fds_before:+d}, RSS {(rss_after - rss_before) / 1024:+.1f} "
        f"MiB overall, {slope:+.2f} KiB per cycle over the second half",
        goal_status(fds_after == fds_before and slope < 1.0)))
    return result

"""Scenario 7: what tracing every system call costs the traced program.

The workload is ``dd if=/dev/zero of=/dev/null bs=1 count=N``: 2N system calls (a one-byte
read and write each), flat out. dd is started held at a gate (a tiny program blocked reading
its stdin, which then execs dd), each tracer is attached to that process with ``-p`` and given
time to be in place, the gate is opened, and the benchmark (dd's parent) takes dd's elapsed
time from the gate's opening to its exit, and its CPU time (wait4's rusage). A tracer's cost is
its median time less the untraced median; runs of all tracers are interleaved, round after
round, so a busy moment on the shared host falls on all of them.

Tracers, each attached to dd alone:
- rawprobe ``syscalls -p PID``: calls, errors and time per system call, summed in the kernel;
- rawprobe ``attach --json -o FILE -p PID 'sys:*'``: every call streamed to a file, with a
  ring buffer big enough for the whole run (128 MiB), and with the default one (8 MiB), where
  what does not fit is lost and counted: delivered + lost must equal the calls made;
- ``strace -f -c -p PID`` (ptrace: two stops per call), ``perf trace -s -p PID`` (perf
  tracepoint events), and bpftrace counting calls by number on ``raw_syscalls:sys_enter``
  (``/pid == PID/ { @[args->id] = count(); }``), the cheapest thing a BPF tracer can do per call.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ._harness import (
    Context,
    Goal,
    MeasurementError,
    ScenarioResult,
    Spawned,
    Table,
    goal_status,
    median,
    wait_idle,
)
from .common import build_c

GATE_SOURCE = r"""
#include <unistd.h>
/* Blocks until a byte arrives on stdin, then runs its arguments in its own place. */
int main(int argc, char **argv) {
    char byte;
    if (argc < 2 || read(0, &byte, 1) != 1)
        return 126;
    execvp(argv[1], argv + 1);
    return 127;
}
"""


@dataclass
class Run:
    """One run of the workload: dd's elapsed and CPU time, in seconds."""

    elapsed: float
    cpu: float


class Gated:
    """dd held at the gate; :meth:`release` opens it and waits for dd to end."""

    def __init__(self, gate: Path, count: int) -> None:
        read_end, self._write_end = os.pipe()
        devnull = os.open(os.devnull, os.O_RDWR)
        self.pid = os.fork()
        if self.pid == 0:  # the child: stdin is the gate's pipe, the rest /dev/null
            try:
                os.dup2(read_end, 0)
                os.dup2(devnull, 1)
                os.dup2(devnull, 2)
                os.setsid()
                os.execv(str(gate), [str(gate), "dd", "if=/dev/zero", "of=/dev/null", "bs=1",
                                     f"count={count}"])
            finally:
                os._exit(127)
        os.close(read_end)
        os.close(devnull)
        self.done = False

    def release(self, timeout: float) -> Run:
        started = time.monotonic()
        os.write(self._write_end, b"x")
        os.close(self._write_end)
        deadline = started + timeout
        while True:
            pid, status, usage = os.wait4(self.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGKILL)
                os.wait4(self.pid, 0)
                self.done = True
                raise MeasurementError(f"dd did not end within {timeout:.0f} s")
            time.sleep(0.002)
        self.done = True
        if os.waitstatus_to_exitcode(status) != 0:
            raise MeasurementError(f"dd failed: status {os.waitstatus_to_exitcode(status)}")
        return Run(time.monotonic() - started, usage.ru_utime + usage.ru_stime)

    def close(self) -> None:
        if not self.done:
            os.close(self._write_end)
            os.kill(self.pid, signal.SIGKILL)
            os.wait4(self.pid, 0)
            self.done = True


@dataclass
class Launch:
    """One tracer: how to start it on a pid, when it is in place, what it reports."""

    name: str
    start: Callable[[int, Path], Spawned] | None  # None: untraced
    ready: Callable[[Spawned], bool] = lambda tracer: True
    settle: float = 0.0  # seconds to wait after ready (tools that say nothing when ready)
    account: Callable[[Spawned, Path], str] | None = None
    timeout: float = 120.0


def _line_on(stream: str, predicate: Callable[[str], bool]) -> Callable[[Spawned], bool]:
    def ready(tracer: Spawned) -> bool:
        reader = tracer.err if stream == "stderr" else tracer.out
        assert reader is not None
        return reader.wait_for(predicate, 60) is not None
    return ready


def _streamed(tracer: Spawned, _output: Path) -> str:
    match = re.search(r"rawprobe: (\d+) events?, (\d+) lost", tracer.stderr_text)
    if not match:
        raise MeasurementError(f"no summary from rawprobe: {tracer.stderr_text[-300:]}")
    return f"{match.group(1)} {match.group(2)}"


def _summed(tracer: Spawned, _output: Path) -> str:
    """The total calls of ``rawprobe syscalls``' table (its last 'total' line)."""
    for line in reversed(tracer.stdout_rest):
        fields = line.split()
        if fields and fields[-1] == "total":
            return fields[3]
    raise MeasurementError(f"no table from rawprobe syscalls: {tracer.stderr_text[-300:]}")


def launches(ctx: Context, count: int) -> list[Launch]:
    stage = ctx.stage
    ring = 128 << 20

    def rawprobe(*args: str) -> Callable[[int, Path], Spawned]:
        return lambda pid, out: Spawned(
            stage.argv(*[arg.replace("PID", str(pid)).replace("OUT", str(out)) for arg in args]),
            env=stage.env(), cwd=stage.directory, stdout="pipe")

    tracing = _line_on("stderr", lambda line: line.startswith("rawprobe: tracing"))
    result = [
        Launch("untraced", None),
        Launch("rawprobe syscalls", rawprobe("syscalls", "-p", "PID"), tracing,
               account=_summed),
        Launch("rawprobe attach --json 'sys:*' (128 MiB ring)",
               rawprobe("attach", "--json", "-o", "OUT", "--ring-size", str(ring), "-p", "PID",
                        "sys:*"), tracing, account=_streamed),
        Launch("rawprobe attach --json 'sys:*' (default 8 MiB ring)",
               rawprobe("attach", "--json", "-o", "OUT", "-p", "PID", "sys:*"), tracing,
               account=_streamed),
    ]
    bpftrace = ctx.peers.get("bpftrace")
    if bpftrace:
        program = ("tracepoint:raw_syscalls:sys_enter /pid == PID/ "
                   "{ @[args->id] = count(); }")
        result.append(Launch(
            "bpftrace count on raw_syscalls:sys_enter",
            lambda pid, out: Spawned([bpftrace, "-e", program.replace("PID", str(pid))],
                                     stdout="pipe", stderr="pipe"),
            _line_on("stdout", lambda line: line.startswith("Attaching"))))
    perf = ctx.peers.get("perf")
    if perf:
        result.append(Launch("perf trace -s", lambda pid, out: Spawned(
            [perf, "trace", "-s", "-o", str(out), "-p", str(pid)], stdout="pipe",
            stderr="pipe"), settle=3.0, timeout=600))
    strace = ctx.peers.get("strace")
    if strace:
        result.append(Launch("strace -f -c", lambda pid, out: Spawned(
            [strace, "-f", "-c", "-o", str(out), "-p", str(pid)], stdout="pipe", stderr="pipe"),
            _line_on("stderr", lambda line: "attached" in line), timeout=600))
    return result


def _one(ctx: Context, gate: Path, launch: Launch, count: int) -> tuple[Run, str]:
    output = ctx.scratch("syscalls-") / "out"
    gated = Gated(gate, count)
    try:
        if launch.start is None:
            return gated.release(launch.timeout), ""
        with launch.start(gated.pid, output) as tracer:
            if not launch.ready(tracer):
                tracer.stop()
                raise MeasurementError(f"{launch.name} did not start: "
                                       f"{tracer.stderr_text.strip()[-300:]}")
            time.sleep(launch.settle or 0.2)
            run = gated.release(launch.timeout)
            wait_idle(tracer.pid, quiet=0.3, timeout=300)  # let a streaming reader catch up
            tracer.stop(signal.SIGINT, timeout=300)
            note = launch.account(tracer, output) if launch.account else ""
        return run, note
    finally:
        gated.close()


def run(ctx: Context) -> ScenarioResult:
    result = ScenarioResult(7, "System calls: every call of a busy program",
                            __doc__.split("\n\n", 1)[1].strip())
    count = 20_000 if ctx.quick else 300_000
    rounds = 2 if ctx.quick else 5
    gate = build_c(GATE_SOURCE, "gate")
    tracers = launches(ctx, count)
    runs: dict[str, list[Run]] = {launch.name: [] for launch in tracers}
    notes: dict[str, list[str]] = {launch.name: [] for launch in tracers}
    for round_number in range(rounds):
        for launch in tracers:
            # strace and perf trace take tens of seconds a run: fewer rounds of them.
            if launch.timeout > 120 and round_number >= max(1, rounds - 2):
                continue
            ctx.log(f"syscalls: round {round_number + 1}/{rounds}, {launch.name}")
            try:
                measured, note = _one(ctx, gate, launch, count)
            except MeasurementError as error:
                notes[launch.name].append(f"failed: {error}")
                continue
            runs[launch.name].append(measured)
            if note:
                notes[launch.name].append(note)
    base_elapsed = median([r.elapsed for r in runs["untraced"]])
    base_cpu = median([r.cpu for r in runs["untraced"]])
    added: dict[str, float] = {}
    table = Table(f"dd bs=1 count={count:,} ({2 * count:,} system calls): dd's time, median of "
                  f"up to {rounds} runs", ["tracer", "runs", "elapsed s", "slowdown",
                                           "added s", "cpu s", "notes"])
    summary_total = None
    for launch in tracers:
        measured = runs[launch.name]
        if not measured:
            table.add(launch.name, 0, "-", "-", "-", "-", "; ".join(notes[launch.name]))
            continue
        elapsed = median([r.elapsed for r in measured])
        cpu = median([r.cpu for r in measured])
        added[launch.name] = elapsed - base_elapsed
        note = notes[launch.name]
        if launch.name == "rawprobe syscalls" and note:
            summary_total = int(note[-1])
            note = [f"{summary_total:,} calls counted"]
        elif launch.account is _streamed:
            pairs = [tuple(int(n) for n in text.split()) for text in note if " " in text]
            note = [f"{d:,} delivered, {lo:,} lost" for d, lo in pairs[-1:]]
            result.numbers[f"lost.{'large' if '128' in launch.name else 'default'}"] = (
                pairs[-1][1] if pairs else float("nan"))
            if pairs and summary_total is not None:
                # Every call ends in a record but exit_group, which the totals leave out.
                exact = all(d + lo == summary_total + 1 for d, lo in pairs)
                note.append("every call accounted for" if exact else
                            f"{pairs[-1][0] + pairs[-1][1]:,} != {summary_total + 1:,} calls")
                result.numbers[f"accounted.{'large' if '128' in launch.name else 'default'}"] = (
                    float(exact))
        table.add(launch.name, len(measured), f"{elapsed:.3f}",
                  f"{elapsed / base_elapsed:.1f}x" if base_elapsed else "-",
                  f"{elapsed - base_elapsed:+.3f}", f"{cpu:.3f}", "; ".join(note))
        key = re.sub(r"[^a-z0-9]+", "_", launch.name.lower()).strip("_")
        result.numbers[f"elapsed_s.{key}"] = elapsed
        result.numbers[f"cpu_s.{key}"] = cpu
    result.tables.append(table)
    result.numbers["cpu_s.untraced_base"] = base_cpu

    summary = added.get("rawprobe syscalls")
    bpftrace = added.get("bpftrace count on raw_syscalls:sys_enter")
    strace = added.get("strace -f -c")
    ratio_bt = summary / bpftrace if summary is not None and bpftrace else None
    ratio_st = strace / summary if summary and strace is not None else None
    if ratio_bt is not None:
        result.numbers["ratio.summary_over_bpftrace"] = ratio_bt
    if ratio_st is not None:
        result.numbers["ratio.strace_over_summary"] = ratio_st
    result.goals.append(Goal(
        "rawprobe syscalls adds at most 1.3x bpftrace's cost (time added to dd)",
        f"{ratio_bt:.2f}x ({summary:+.3f} s vs {bpftrace:+.3f} s)" if ratio_bt is not None
        else "-", goal_status(None if ratio_bt is None else ratio_bt <= 1.3)))
    result.goals.append(Goal(
        "rawprobe syscalls adds at least 20x less than strace -f -c",
        f"{ratio_st:.0f}x less ({summary:+.3f} s vs {strace:+.3f} s)" if ratio_st is not None
        else "-", goal_status(None if ratio_st is None else ratio_st >= 20)))
    large = result.numbers.get("lost.large")
    exact = [result.numbers.get(f"accounted.{which}") for which in ("large", "default")]
    known = None if large is None or large != large or None in exact else (
        large == 0 and all(exact))
    result.goals.append(Goal(
        "streaming every call loses nothing at dd's rate (or reports exactly what it lost)",
        f"128 MiB ring: {large:.0f} lost; every call delivered or counted lost: "
        f"{'yes' if all(exact) else 'no'}" if known is not None else "-",
        goal_status(known)))
    result.notes.append(
        "Elapsed is from the gate's opening to dd's exit, as its parent sees it; cpu is dd's "
        "own user + system time. The host is shared: only medians of interleaved runs are "
        "compared.")
    return result

"""Scenario 3: start-up, from launching a tracer to its first event line.

A ``loop`` target is already running, calling ``hit(i, 7)`` 1,000 times a second (sleeping in
between, so it leaves the CPUs to the tracer). Each tracer is launched on it (``-p PID``,
printing both arguments as text, on a pseudo-terminal as a user would see it), and timed from
its launch to the first line that shows an event. perf needs two commands, ``perf probe -a``
then ``perf trace``: both are timed, and the probe is deleted afterwards (untimed).

Warm: the median of several runs after a discarded one (the page cache holds the tools' files,
rawprobe's symbol cache is filled, its modules are byte-compiled as pip installs them).

Cold, for rawprobe and bpftrace: before each run, the tools' own files are dropped from the
page cache with posix_fadvise(DONTNEED) - for rawprobe the staged package, the Python
interpreter and its standard library, the virtual environment (construct, pyelftools),
libbpf, libelf and libz; for bpftrace its binary and every library it loads (LLVM, clang,
bcc) - except pages mapped by running processes (libc, for one, stays). rawprobe's symbol
cache starts empty, and its own package has no bytecode (PYTHONDONTWRITEBYTECODE, a fresh
copy): its first run after a source install. Dependencies keep their bytecode (pip wrote it).
Nothing else on the host is dropped: the page cache is shared with other users.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable

from ._harness import (
    Context,
    Goal,
    LoopTarget,
    ScenarioResult,
    Spawned,
    Stage,
    Table,
    evict_from_page_cache,
    goal_status,
    median,
    shared_libraries,
)

EVENT = "hit"


def _first_event(tracer: Spawned, is_event: Callable[[str], bool], timeout: float = 20
                 ) -> float | None:
    """Seconds from the tracer's launch to its first event line (None: none came)."""
    line = tracer.out.wait_for(is_event, timeout)
    return None if line is None else time.monotonic() - tracer.started


def _rawprobe_files(stage: Stage) -> list[str]:
    paths = [str(stage.directory / "rawprobe"), os.path.realpath(sys.executable),
             sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"]]
    library = sysconfig.get_config_var("LDLIBRARY")
    libdir = sysconfig.get_config_var("LIBDIR")
    if library and libdir:
        paths.append(os.path.join(libdir, library))
    for name in ("libbpf.so.1", "libelf.so.1", "libz.so.1"):
        for directory in ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/usr/lib64"):
            if os.path.exists(os.path.join(directory, name)):
                paths.append(os.path.realpath(os.path.join(directory, name)))
                break
    return paths


def run(ctx: Context) -> ScenarioResult:
    result = ScenarioResult(3, "Start-up to the first event", __doc__.split("\n\n", 1)[1].strip())
    repeats = 2 if ctx.quick else 5
    peer_repeats = 1 if ctx.quick else 3
    cold_repeats = 1 if ctx.quick else 3
    times: dict[str, list[float]] = {}
    failures: dict[str, str] = {}
    word = f"p:{ctx.loop}:{EVENT} a=%di:s64 b=%si:s64"
    cold_stage = Stage(ctx.workdir / "cold-stage", compiled=False)
    bpftrace = ctx.peers.get("bpftrace")
    bpftrace_files = [bpftrace, *shared_libraries(bpftrace)] if bpftrace else []

    with LoopTarget(ctx.loop, 0, 1000, "push", wait=False) as target:
        pid = str(target.pid)

        def measure(name: str, launch: Callable[[], Spawned], is_event: Callable[[str], bool],
                    count: int, warm_up: bool = True, before: Callable[[], None] | None = None,
                    extra: Callable[[], float] | None = None,
                    after: Callable[[], None] | None = None) -> None:
            for index in range(count + (1 if warm_up else 0)):
                ctx.log(f"startup: {name} ({index + 1})")
                if before is not None:
                    before()
                spent = extra() if extra is not None else 0.0
                with launch() as tracer:
                    seconds = _first_event(tracer, is_event)
                    # SIGTERM: bcc's tools miss SIGINT while events flow (the interrupt is
                    # raised in a ctypes callback, which swallows it).
                    tracer.stop(signal.SIGTERM if name.startswith("bcc") else signal.SIGINT)
                if after is not None:
                    after()
                if seconds is None:
                    failures[name] = tracer.stderr_text.strip()[-300:] or "no event line"
                    return
                if index or not warm_up:
                    times.setdefault(name, []).append(seconds + spent)

        rawprobe_event = lambda line: f" {EVENT}: " in line  # noqa: E731
        measure("rawprobe (warm)",
                lambda: Spawned(ctx.stage.argv("attach", "-p", pid, word), env=ctx.stage.env(),
                                cwd=ctx.stage.directory, stdout="pty"),
                rawprobe_event, repeats)

        def cold_rawprobe() -> None:
            cache = ctx.scratch("cold-cache-")
            cold_env.update(RAWPROBE_CACHE_DIR=str(cache))
            evict_from_page_cache([*_rawprobe_files(cold_stage), str(ctx.loop)])

        cold_env = cold_stage.env(PYTHONDONTWRITEBYTECODE="1")
        measure("rawprobe (cold)",
                lambda: Spawned(cold_stage.argv("attach", "-p", pid, word), env=cold_env,
                                cwd=cold_stage.directory, stdout="pty"),
                rawprobe_event, cold_repeats, warm_up=False, before=cold_rawprobe)

        if bpftrace:
            program = f'uprobe:{ctx.loop}:{EVENT} {{ printf("%d %d\\n", arg0, arg1); }}'

            def launch_bpftrace() -> Spawned:
                return Spawned([bpftrace, "-p", pid, "-e", program], stdout="pty")

            digits = lambda line: line[:1].isdigit()  # noqa: E731
            measure("bpftrace (warm)", launch_bpftrace, digits, repeats)
            measure("bpftrace (cold)", launch_bpftrace, digits, cold_repeats, warm_up=False,
                    before=lambda: evict_from_page_cache([*bpftrace_files, str(ctx.loop)]))

        # The whole run to the first event and out: launch -> exit, every probe removed.
        def whole(name: str, argv: list[str], env: dict[str, str] | None,
                  cwd: str | None) -> None:
            for index in range(repeats + 1):
                ctx.log(f"startup: {name} ({index + 1})")
                with Spawned(argv, env=env, cwd=cwd, stdout="pty") as tracer:
                    status = tracer.wait(30)
                    seconds = time.monotonic() - tracer.started
                    tracer.stop()
                if status is None or status != 0:
                    failures[name] = tracer.stderr_text.strip()[-300:] or f"status {status}"
                    return
                if index:
                    whole_times.setdefault(name, []).append(seconds)

        whole_times: dict[str, list[float]] = {}
        whole("rawprobe attach -n 1", ctx.stage.argv("attach", "-n", "1", "-p", pid, word),
              ctx.stage.env(), str(ctx.stage.directory))
        if bpftrace:
            whole("bpftrace printf + exit()", [bpftrace, "-p", pid, "-e",
                  f'uprobe:{ctx.loop}:{EVENT} {{ printf("%d %d\\n", arg0, arg1); exit(); }}'],
                  None, None)
        if "bcc-trace" in ctx.peers:
            measure("bcc trace (warm)",
                    lambda: Spawned([ctx.peers["bcc-trace"], "-p", pid,
                                     f'{ctx.loop}:{EVENT} "%d %d", arg1, arg2'],
                                    stdout="pty", env=ctx.peer_env("bcc-trace")),
                    lambda line: f" {EVENT} " in line, peer_repeats)
        if "perf" in ctx.peers:
            perf = ctx.peers["perf"]
            event = f"rpbench:{EVENT}_{os.getpid()}"

            def perf_probe() -> float:
                started = time.monotonic()
                subprocess.run([perf, "probe", "-q", "-x", str(ctx.loop), "-a",
                                f"{event}={EVENT} a=%di:s64 b=%si:s64"],
                               check=True, capture_output=True)
                return time.monotonic() - started

            def perf_delete() -> None:
                subprocess.run([perf, "probe", "-q", "-d", event], capture_output=True)

            try:
                measure("perf probe + perf trace (warm)",
                        # perf trace prints its events on stderr.
                        lambda: Spawned([perf, "trace", "--no-syscalls", "-e", event, "-p", pid],
                                        stdout="pty", stderr="stdout"),
                        lambda line: event in line, peer_repeats, extra=perf_probe,
                        after=perf_delete)
            except subprocess.CalledProcessError as error:
                failures["perf probe + perf trace (warm)"] = str(error)
            finally:
                perf_delete()

    table = Table("seconds from launch to the first event line (median)",
                  ["tracer", "seconds", "runs", "rawprobe / this"])
    ours_warm = median(times.get("rawprobe (warm)", []))
    ours_cold = median(times.get("rawprobe (cold)", []))
    for name, values in times.items():
        mine = ours_cold if "cold" in name else ours_warm
        table.add(name, f"{median(values):.3f}", len(values),
                  "" if name.startswith("rawprobe") else f"{mine / median(values):.2f}x")
    for name, why in failures.items():
        table.add(name, "failed", 0, why.replace("\n", " ")[:120])
    result.tables.append(table)
    for name, values in times.items():
        result.numbers[f"startup_s.{name.split(' (')[0].replace(' ', '_')}."
                       f"{'cold' if 'cold' in name else 'warm'}"] = median(values)
    bt_warm = median(times.get("bpftrace (warm)", []))
    bt_cold = median(times.get("bpftrace (cold)", []))
    known = bool(times.get("bpftrace (warm)")) and bool(times.get("rawprobe (warm)"))
    unusual = ctx.history.check("startup_s.bpftrace.warm", bt_warm) if known and not \
        ctx.quick else ""
    warm_status = goal_status(ours_warm <= bt_warm if known else None)
    if unusual and warm_status == "met":
        warm_status = "inconclusive"
    result.goals.append(Goal(
        "warm start-up to the first event <= 1.0x bpftrace",
        (f"{ours_warm / bt_warm:.2f}x ({ours_warm:.3f} s vs {bt_warm:.3f} s)"
         + (f"; bpftrace {unusual}" if unusual else "")) if known else "-", warm_status))
    known = bool(times.get("bpftrace (cold)")) and bool(times.get("rawprobe (cold)"))
    result.goals.append(Goal(
        "cold first run <= 2x bpftrace (cold as described above)",
        f"{ours_cold / bt_cold:.2f}x ({ours_cold:.3f} s vs {bt_cold:.3f} s)" if known else "-",
        goal_status(ours_cold <= 2 * bt_cold if known else None)))
    whole_table = Table("seconds from launch to exit, the first event printed and every probe "
                        "removed (warm, median)", ["tracer", "seconds", "runs"])
    for name, values in whole_times.items():
        whole_table.add(name, f"{median(values):.3f}", len(values))
        result.numbers[f"whole_run_s.{name.split()[0]}"] = median(values)
    if whole_times:
        result.tables.append(whole_table)
    ours_whole = median(whole_times.get("rawprobe attach -n 1", []))
    theirs_whole = median(whole_times.get("bpftrace printf + exit()", []))
    known = ours_whole == ours_whole and theirs_whole == theirs_whole
    result.goals.append(Goal(
        "whole attach -n 1 run <= bpftrace's (first event, then exit)",
        f"{ours_whole:.3f} s vs {theirs_whole:.3f} s" if known else "-",
        goal_status(ours_whole <= theirs_whole if known else None)))
    python_start = []
    for _ in range(3):
        started = time.monotonic()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        python_start.append(time.monotonic() - started)
    result.notes.append(f"For reference, `python -c pass` takes {median(python_start):.3f} s "
                        "here.")
    return result

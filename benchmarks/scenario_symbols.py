"""Scenario 5: symbol resolution.

``malloc`` in libc, resolved to a file offset by ``rawprobe._symbols.resolve_location`` in a
fresh Python process (the child of bench_symbols.py): cold with an empty symbol cache, warm
with the cache the cold run wrote. Each gives the whole process's time, the import of
``rawprobe._symbols``, and the call alone. In-process: the call again after dropping the
in-memory index (read back from the disk cache), and with the index in memory. Whole commands
for comparison: ``rawprobe resolve libc:malloc``, ``bpftrace -l 'uprobe:LIBC:malloc'`` and
``perf probe -x LIBC -F malloc``.

Listing: every function of the largest probe-able ELF under /usr/lib, /usr/bin and
/usr/lib/debug (libc in --quick), cold and warm, next to ``perf probe -F --filter='*'`` and
``bpftrace -l 'uprobe:FILE:*'``.
"""

from __future__ import annotations

import os
import subprocess
import time

from ._harness import Context, Goal, ScenarioResult, Table, goal_status, median
from .bench_symbols import LIBC_CANDIDATES, _child, in_process_resolution, largest_elf


def _process_seconds(argv: list[str], env: dict[str, str] | None = None,
                     cwd: str | None = None) -> tuple[float, int, int]:
    """(seconds, exit status, lines printed) of one command."""
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd, timeout=300)
    return time.perf_counter() - started, done.returncode, len(done.stdout.splitlines())


def run(ctx: Context) -> ScenarioResult:
    result = ScenarioResult(5, "Symbol resolution", __doc__.split("\n\n", 1)[1].strip())
    repeats = 2 if ctx.quick else 5
    libc = next((path for path in LIBC_CANDIDATES if os.path.exists(path)), None)
    if libc is None:
        result.error = "no libc found"
        return result
    stage = ctx.stage
    cwd = str(stage.directory)
    table = Table(f"resolving malloc in {libc} (milliseconds, median of {repeats})",
                  ["how", "whole process", "import", "call"])
    cold, warm = [], []
    for _ in range(repeats):
        env = stage.env(RAWPROBE_CACHE_DIR=str(ctx.scratch("symbols-cache-")))
        cold.append(_child(["resolve", libc, "malloc"], env, cwd))
        warm.append(_child(["resolve", libc, "malloc"], env, cwd))
    for label, runs in (("cold (fresh process, empty cache)", cold),
                        ("warm (fresh process, cache present)", warm)):
        table.add(label, *[f"{median([run[i] for run in runs]) * 1000:.1f}" for i in range(3)])
    result.numbers["resolve_ms.cold_call"] = median([run[2] for run in cold]) * 1000
    result.numbers["resolve_ms.warm_call"] = median([run[2] for run in warm]) * 1000

    disk, memory = in_process_resolution(libc, str(ctx.scratch("symbols-inprocess-")), 50)
    table.add("warm, in process, index read from the disk cache", "", "",
              f"{median(disk) * 1000:.2f}")
    table.add("warm, in process, index in memory", "", "", f"{median(memory) * 1000:.3f}")
    result.numbers["resolve_ms.inprocess_disk"] = median(disk) * 1000

    commands = {"rawprobe resolve libc:malloc (warm cache)":
                (stage.argv("resolve", "libc:malloc"), stage.env(), str(stage.directory))}
    if "bpftrace" in ctx.peers:
        commands["bpftrace -l 'uprobe:LIBC:malloc'"] = (
            [ctx.peers["bpftrace"], "-l", f"uprobe:{libc}:malloc"], None, None)
    if "perf" in ctx.peers:
        commands["perf probe -x LIBC -F malloc"] = (
            [ctx.peers["perf"], "probe", "-x", libc, "-F", "malloc"], None, None)
    for label, (argv, env, cwd) in commands.items():
        _process_seconds(argv, env, cwd)  # warm up
        seconds = [_process_seconds(argv, env, cwd)[0] for _ in range(repeats)]
        table.add(label, f"{median(seconds) * 1000:.1f}", "", "")
        result.numbers[f"resolve_command_ms.{label.split()[0]}"] = median(seconds) * 1000
    result.tables.append(table)
    warm_call = result.numbers["resolve_ms.warm_call"]
    result.goals.append(Goal(
        "warm resolution <= 5 ms (fresh process, cache present: the call)",
        f"{warm_call:.2f} ms (in process, from the disk cache: "
        f"{result.numbers['resolve_ms.inprocess_disk']:.2f} ms)",
        goal_status(warm_call <= 5.0)))

    if ctx.quick:
        target, size, found_in = libc, os.path.getsize(libc), 0.0
    else:
        started = time.perf_counter()
        target, size = largest_elf()
        found_in = time.perf_counter() - started
    runs = 1 if ctx.quick else 3
    cold_list, warm_list = [], []
    for _ in range(runs):
        env = stage.env(RAWPROBE_CACHE_DIR=str(ctx.scratch("symbols-list-")))
        cold_list.append(_child(["list", target], env, cwd))
        warm_list.append(_child(["list", target], env, cwd))
    found = f"; found in {found_in:.1f} s" if found_in else ""
    listing = Table(f"listing every function of {target} ({size / 2**20:.1f} MiB, "
                    f"{cold_list[0][3]:,} functions{found}; seconds, median of {runs})",
                    ["how", "whole process", "import", "call", "names"])
    for label, values in (("rawprobe, cold (empty cache)", cold_list),
                          ("rawprobe, warm (cache present)", warm_list)):
        listing.add(label, *[f"{median([v[i] for v in values]):.3f}" for i in range(3)],
                    f"{values[0][3]:,}")
    result.numbers["list_s.cold"] = median([v[0] for v in cold_list])
    result.numbers["list_s.warm"] = median([v[0] for v in warm_list])
    peers = {}
    if "perf" in ctx.peers:
        peers["perf probe -F --filter='*'"] = [ctx.peers["perf"], "probe", "-x", target, "-F",
                                               "--filter=*"]
    if "bpftrace" in ctx.peers:
        peers["bpftrace -l 'uprobe:FILE:*'"] = [ctx.peers["bpftrace"], "-l",
                                                f"uprobe:{target}:*"]
    for label, argv in peers.items():
        samples = [_process_seconds(argv) for _ in range(runs)]
        status = samples[-1][1]
        listing.add(label, f"{median([s[0] for s in samples]):.3f}" if status == 0 else
                    f"failed ({status})", "", "", f"{samples[-1][2]:,}")
    result.tables.append(listing)
    return result

"""Benchmark of the symbol resolver: cold and warm resolution, and listing a very large ELF.

Run as ``python benchmarks/bench_symbols.py [--repeat N] [--target FILE]``. Every "fresh
process" figure is a new Python interpreter, timed from outside (whole process) and inside
(import of ``rawprobe._symbols`` + the call). Cold runs use an empty cache directory; warm runs
reuse the one the cold run filled. Compiled bytecode is allowed (as in any installed package)
even when ``PYTHONDONTWRITEBYTECODE`` is set in the caller's environment; the numbers without it
are printed too, since a first run after installation pays them once.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LIBC_CANDIDATES = ("/lib/x86_64-linux-gnu/libc.so.6", "/lib64/libc.so.6", "/usr/lib/libc.so.6")
SEARCH_ROOTS = ("/usr/lib", "/usr/bin", "/usr/lib/debug")

CHILD = r"""
import sys, time
started = time.perf_counter()
# The package imports its modules on first use of a name: importing the names is the import.
from rawprobe._symbols import list_functions, resolve_location
imported = time.perf_counter()
if sys.argv[1] == "resolve":
    result = resolve_location(sys.argv[2], sys.argv[3])
else:
    result = list_functions(sys.argv[2])
done = time.perf_counter()
print(imported - started, done - imported, len(result), "elftools" in sys.modules)
"""


def _environment(cache_dir: str, bytecode: bool) -> dict[str, str]:
    env = {**os.environ, "RAWPROBE_CACHE_DIR": cache_dir, "PYTHONPATH": str(REPO)}
    if bytecode:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    else:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env["PYTHONPYCACHEPREFIX"] = tempfile.mkdtemp(prefix="rawprobe-nopyc-")
    return env


def _child(argv: list[str], env: dict[str, str], cwd: str | None = None
           ) -> tuple[float, float, float, int, bool]:
    """(process wall time, import time, call time, result length, pyelftools imported).

    ``cwd``: where the child runs; with ``python -c`` it comes first on ``sys.path``, so it
    decides which rawprobe is imported when it holds one.
    """
    started = time.perf_counter()
    output = subprocess.run(
        [sys.executable, "-c", CHILD, *argv], env=env, capture_output=True, text=True, check=True,
        cwd=cwd,
    ).stdout.split()
    wall = time.perf_counter() - started
    return wall, float(output[0]), float(output[1]), int(output[2]), output[3] == "True"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:8.2f} ms"


def _report(label: str, runs: list[tuple[float, float, float, int, bool]]) -> None:
    wall = statistics.median(run[0] for run in runs)
    imported = statistics.median(run[1] for run in runs)
    call = statistics.median(run[2] for run in runs)
    elftools = "yes" if any(run[4] for run in runs) else "no"
    print(
        f"  {label:<44} process {_ms(wall)} | import {_ms(imported)} | call {_ms(call)} "
        f"| pyelftools imported: {elftools}"
    )


def _python_startup(env: dict[str, str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], env=env, check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def in_process_resolution(libc: str, cache_dir: str, runs: int) -> tuple[list[float], list[float]]:
    """Seconds of ``resolve_location(libc, "malloc")`` in this process, ``runs`` times each:
    with the index read back from the disk cache in ``cache_dir``, and with it in memory."""
    from rawprobe._symbols import clear_memory, resolve_location

    os.environ["RAWPROBE_CACHE_DIR"] = cache_dir
    try:
        resolve_location(libc, "malloc")  # fills the cache
        disk, memory = [], []
        for _ in range(runs):
            clear_memory()
            started = time.perf_counter()
            resolve_location(libc, "malloc")
            disk.append(time.perf_counter() - started)
            started = time.perf_counter()
            resolve_location(libc, "malloc")
            memory.append(time.perf_counter() - started)
    finally:
        del os.environ["RAWPROBE_CACHE_DIR"]
    return disk, memory


def bench_resolution(libc: str, repeat: int) -> None:
    print(f"\nResolving malloc in {libc} (median of {repeat})")
    for bytecode in (True, False):
        note = "with bytecode" if bytecode else "no bytecode (first run after install)"
        print(f" {note}:")
        cold_runs, warm_runs = [], []
        for _ in range(repeat):
            cache_dir = tempfile.mkdtemp(prefix="rawprobe-bench-")
            env = _environment(cache_dir, bytecode)
            if bytecode:
                _child(["resolve", libc, "malloc"], {**env, "RAWPROBE_CACHE_DIR": ""})  # .pyc
            cold_runs.append(_child(["resolve", libc, "malloc"], env))
            warm_runs.append(_child(["resolve", libc, "malloc"], env))
            shutil.rmtree(cache_dir, ignore_errors=True)
        _report("cold (fresh process, empty cache)", cold_runs)
        _report("warm (fresh process, cache present)", warm_runs)
        print(
            f"  {'python -c pass, for reference':<44} process {_ms(_python_startup(env, repeat))}"
        )

    sys.path.insert(0, str(REPO))
    cache_dir = tempfile.mkdtemp(prefix="rawprobe-bench-")
    samples_disk, samples_memory = in_process_resolution(libc, cache_dir, max(repeat, 50))
    print(" in-process (median of 50):")
    for label, samples in (
        ("warm, index read from the disk cache", samples_disk),
        ("warm, index already in memory", samples_memory),
    ):
        print(f"  {label:<44} call    {_ms(statistics.median(samples))}")
    shutil.rmtree(cache_dir, ignore_errors=True)


def _is_probeable_elf(path: str) -> bool:
    try:
        with open(path, "rb") as stream:
            head = stream.read(20)
    except OSError:
        return False
    # 64-bit little-endian x86_64 (EM_X86_64 = 62) executable or shared object.
    return (
        head[:4] == b"\x7fELF"
        and head[4] == 2
        and head[5] == 1
        and int.from_bytes(head[16:18], "little") in (2, 3)
        and int.from_bytes(head[18:20], "little") == 62
    )


def largest_elf(roots: tuple[str, ...] = SEARCH_ROOTS) -> tuple[str, int]:
    """The largest probe-able ELF file under ``roots`` (symbolic links not followed)."""
    sizes: list[tuple[int, str]] = []
    stack = [root for root in roots if os.path.isdir(root)]
    seen: set[str] = set()
    while stack:
        directory = stack.pop()
        if directory in seen:
            continue
        seen.add(directory)
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif entry.is_file(follow_symlinks=False):
                    sizes.append((entry.stat(follow_symlinks=False).st_size, entry.path))
            except OSError:
                continue
    for size, path in sorted(sizes, reverse=True):
        if _is_probeable_elf(path):
            return path, size
    raise SystemExit("no ELF file found")


def bench_listing(target: str | None, repeat: int) -> None:
    if target is None:
        started = time.perf_counter()
        target, size = largest_elf()
        print(
            f"\nLargest ELF under {', '.join(SEARCH_ROOTS)}: {target} ({size / 2**20:.1f} MiB;"
            f" found in {time.perf_counter() - started:.1f} s)"
        )
    else:
        print(f"\nListing {target}")
    runs = max(1, min(repeat, 3))
    cold_runs, warm_runs = [], []
    for _ in range(runs):
        cache_dir = tempfile.mkdtemp(prefix="rawprobe-bench-")
        env = _environment(cache_dir, True)
        cold_runs.append(_child(["list", target], env))
        warm_runs.append(_child(["list", target], env))
        shutil.rmtree(cache_dir, ignore_errors=True)
    print(f" every function ({cold_runs[0][3]} functions; median of {runs}):")
    _report("cold list (fresh process, empty cache)", cold_runs)
    _report("warm list (fresh process, cache present)", warm_runs)
    perf = shutil.which("perf") or ("/usr/bin/perf" if os.path.exists("/usr/bin/perf") else None)
    if perf is None:
        print("  perf is not installed: no peer figure")
        return
    for label, argv in (
        ("perf probe -F (default filter)", [perf, "probe", "-x", target, "-F"]),
        ("perf probe -F --filter='*'", [perf, "probe", "-x", target, "-F", "--filter=*"]),
    ):
        times, lines = [], 0
        for _ in range(runs):
            started = time.perf_counter()
            completed = subprocess.run(argv, capture_output=True, text=True)
            times.append(time.perf_counter() - started)
            lines = len(completed.stdout.splitlines())
        if completed.returncode != 0:
            print(f"  {label}: failed ({completed.stderr.strip()[:80]})")
            continue
        print(f"  {label:<44} process {_ms(statistics.median(times))} | {lines} names")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeat", type=int, default=5, help="runs per figure (median)")
    parser.add_argument("--target", help="ELF file to list (default: the largest on the host)")
    parser.add_argument("--libc", help="libc to resolve malloc in")
    args = parser.parse_args()
    libc = args.libc or next((p for p in LIBC_CANDIDATES if os.path.exists(p)), None)
    print(f"rawprobe symbol resolver benchmark; python {sys.version.split()[0]}")
    if libc is None:
        print("no libc found: skipping the resolution figures")
    else:
        bench_resolution(libc, args.repeat)
    bench_listing(args.target, args.repeat)


if __name__ == "__main__":
    main()

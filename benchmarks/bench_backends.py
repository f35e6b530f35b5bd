"""What one probe hit costs with each backend, in one run, as ratios.

A program calls a noinline function N times in a tight loop (common.build_loop()). It runs
untraced, then as the command of a Tracer with the BPF backend, then with the tracefs backend,
the same probe word each time (two integer arguments). For each it prints:

- the traced program's run time and the cost per hit it added (run time minus the untraced
  run time, over the hits): what the probed program pays;
- events delivered and lost, and the reader's CPU time per delivered event: what rawprobe pays.

The program's run time is taken from its release (the end of Tracer.start()) to its exit, seen
by a thread waiting on a pidfd, so the reader's own work does not blur it.

Run as root: python benchmarks/bench_backends.py [CALLS] [WORD]
(WORD uses {loop} for the target's path; default: 'p:{loop}:hit a=%di:s64 b=%si:s64'.)
"""

from __future__ import annotations

import os
import resource
import select
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import build_loop, host_description

from rawprobe._tracer import Tracer

DEFAULT_WORD = "p:{loop}:hit a=%di:s64 b=%si:s64"


@dataclass
class Result:
    name: str
    seconds: float
    hits: int
    delivered: int
    lost: int
    reader_cpu: float


def untraced(loop: Path, calls: int, repeat: int = 3) -> float:
    """The best of a few untraced runs, in seconds."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run([str(loop), str(calls)], check=True)
        best = min(best, time.perf_counter() - started)
    return best


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def traced(loop: Path, calls: int, word: str, backend: str) -> Result:
    with Tracer(command=[str(loop), str(calls)], backend=backend) as tracer:
        tracer.add(word.format(loop=loop))
        tracer.start()
        released = time.perf_counter()
        pid = tracer.command_pid
        assert pid is not None
        ended: list[float] = []
        pidfd = os.pidfd_open(pid)

        def wait_exit() -> None:
            select.select([pidfd], [], [])
            ended.append(time.perf_counter())

        waiter = threading.Thread(target=wait_exit, daemon=True)
        waiter.start()
        cpu = _cpu()
        delivered = sum(1 for _event in tracer.events())
        cpu = _cpu() - cpu
        waiter.join()
        os.close(pidfd)
        stats = tracer.stats()
    return Result(backend, ended[0] - released, stats.hits, delivered, stats.lost, cpu)


def main() -> None:
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    word = sys.argv[2] if len(sys.argv) > 2 else DEFAULT_WORD
    loop = build_loop()
    print(host_description())
    print(f"target: {calls:,} calls of a noinline function; probe: {word.format(loop='LOOP')}")
    base = untraced(loop, calls)
    print(f"untraced: {base * 1e3:9.1f} ms ({base / calls * 1e9:.1f} ns per call)")
    results = [traced(loop, calls, word, backend) for backend in ("bpf", "tracefs")]
    print(f"{'backend':8} {'run ms':>9} {'ns/hit added':>13} {'hits':>10} {'delivered':>10} "
          f"{'lost':>9} {'reader us/event':>16}")
    for r in results:
        added = (r.seconds - base) / max(r.hits, 1) * 1e9
        reader = r.reader_cpu / max(r.delivered, 1) * 1e6
        print(f"{r.name:8} {r.seconds * 1e3:9.1f} {added:13.0f} {r.hits:10,} {r.delivered:10,} "
              f"{r.lost:9,} {reader:16.2f}")
    bpf, tracefs = results

    def per_hit(r: Result) -> float:
        return (r.seconds - base) / max(r.hits, 1)

    def reader(r: Result) -> float:
        return r.reader_cpu / max(r.delivered, 1)

    print(f"tracefs / bpf: cost per hit x{per_hit(tracefs) / per_hit(bpf):.2f}, "
          f"run time x{tracefs.seconds / bpf.seconds:.2f}, "
          f"reader CPU per event x{reader(tracefs) / reader(bpf):.2f}, "
          f"delivered x{tracefs.delivered / max(bpf.delivered, 1):.2f}")

if __name__ == "__main__":
    main()

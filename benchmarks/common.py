"""Shared by the benchmark scripts: building the target program and reporting numbers."""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
from pathlib import Path

BUILD = Path(os.environ.get("RAWPROBE_BENCH_BUILD", "/tmp/rawprobe-bench-build"))

# A noinline function called in a tight loop. `hit` starts with `push %rbp` (frame pointers
# kept), an instruction the kernel emulates instead of single-stepping, so a probe on it costs
# the trap and the BPF program, not a single-step on top.
LOOP_SOURCE = r"""
#include <stdlib.h>
#include <time.h>
__attribute__((noinline)) long hit(long a, long b) { asm volatile("" ::: "memory"); return a + b; }
int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    long rate = argc > 2 ? atol(argv[2]) : 0; /* calls per second, 0: as fast as possible */
    long sum = 0;
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (long i = 0; i < n; i++) {
        sum += hit(i, 7);
        if (rate && (i & 1023) == 1023) {
            for (;;) {
                clock_gettime(CLOCK_MONOTONIC, &now);
                double elapsed = (now.tv_sec - start.tv_sec) + (now.tv_nsec - start.tv_nsec) / 1e9;
                if (elapsed * rate >= i) break;
            }
        }
    }
    return sum == 42;
}
"""


def build_loop() -> Path:
    """Compile the loop target (cached by content)."""
    key = hashlib.sha256(LOOP_SOURCE.encode()).hexdigest()[:12]
    out = BUILD / key / "loop"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        src = out.parent / "loop.c"
        src.write_text(LOOP_SOURCE)
        subprocess.run(["gcc", "-O2", "-fno-omit-frame-pointer", "-o", str(out), str(src)],
                       check=True)
    return out


def host_description() -> str:
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"Linux {platform.release()}, {os.cpu_count()} CPUs ({cpu}), "
        f"Python {platform.python_version()}"
    )

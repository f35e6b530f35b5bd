"""Shared by the benchmark scripts: building the target program and reporting numbers."""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
from pathlib import Path

BUILD = Path(os.environ.get("RAWPROBE_BENCH_BUILD", "/tmp/rawprobe-bench-build"))

# Functions called in a tight loop. They start with `push %rbp`, an instruction the kernel
# emulates instead of single-stepping (or, hit_nop5, with a 5-byte NOP, which 6.18 turns into
# a call to its uprobe trampoline), so a probe on them costs the trap and the BPF program, not a
# single-step on top.
LOOP_SOURCE = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
/* Written in assembly so the first instruction is exactly what the probe site needs. */
long hit(long a, long b);          /* push %rbp: emulated by the kernel */
long hit_nop5(long a, long b);     /* a 5-byte NOP: the kernel's optimized uprobe (6.18) */
long hit_str(long a, long b, long c, const char *s);
asm(".text\n"
    ".globl hit\n.type hit,@function\nhit:\n"
    "  push %rbp\n  mov %rsp,%rbp\n  lea (%rdi,%rsi,1),%rax\n  pop %rbp\n  ret\n"
    ".size hit, .-hit\n"
    ".globl hit_nop5\n.type hit_nop5,@function\nhit_nop5:\n"
    "  .byte 0x0f,0x1f,0x44,0x00,0x00\n  lea (%rdi,%rsi,1),%rax\n  ret\n"
    ".size hit_nop5, .-hit_nop5\n"
    ".globl hit_str\n.type hit_str,@function\nhit_str:\n"
    "  push %rbp\n  mov %rsp,%rbp\n  lea (%rdi,%rsi,1),%rax\n  add %rdx,%rax\n"
    "  movsbq (%rcx),%rdx\n  add %rdx,%rax\n  pop %rbp\n  ret\n"
    ".size hit_str, .-hit_str\n");
static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}
/* loop N [RATE [str|nop5]]: call hit (or hit_str, hit_nop5) N times, at RATE calls/s (0: flat
 * out); prints the loop's own elapsed time so tracers' costs show in the traced program. */
int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    long rate = argc > 2 ? atol(argv[2]) : 0;
    int with_string = argc > 3 && strcmp(argv[3], "str") == 0;
    int nop5 = argc > 3 && strcmp(argv[3], "nop5") == 0;
    static const char *words[] = {"GET /index.html", "POST /api/v1/items", "DELETE /x"};
    long sum = 0;
    double start = now();
    for (long i = 0; i < n; i++) {
        sum += with_string ? hit_str(i, 7, -i, words[i % 3]) : nop5 ? hit_nop5(i, 7) : hit(i, 7);
        if (rate && (i & 255) == 255)
            while ((now() - start) * rate < i)
                ;
    }
    printf("elapsed_ns=%.0f\n", (now() - start) * 1e9);
    return sum == 42;
}
"""


def build_loop() -> Path:
    """Compile the loop target (cached by content)."""
    flags = ["-O2"]
    key = hashlib.sha256("\0".join([LOOP_SOURCE, *flags]).encode()).hexdigest()[:12]
    out = BUILD / key / "loop"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        src = out.parent / "loop.c"
        src.write_text(LOOP_SOURCE)
        subprocess.run(["gcc", *flags, "-o", str(out), str(src)], check=True)
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

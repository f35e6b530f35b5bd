"""Shared by the benchmark scripts: the target programs, and the host they run on.

Two targets, both compiled once per source text (cached under ``$RAWPROBE_BENCH_BUILD``):

- ``loop`` calls one small function N times, flat out or at a given rate, and prints how long
  its loop took. The functions are written in assembly so that the probed instruction is
  exactly what a benchmark needs (see ``LOOP_SOURCE``). With ``wait`` the loop starts only once
  the function is probed: the program watches its own first instruction byte, which the kernel
  overwrites with a breakpoint when a uprobe goes in. So every tracer is timed from the moment
  its probe is really in place, however the tracer reports (or fails to report) readiness.
- ``many`` has 1,000 functions ``fn000`` ... ``fn999`` and watches the first COUNT of them the
  same way, printing when all are probed and when all are unprobed again: attach and detach
  times that do not depend on what a tracer prints.
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
from pathlib import Path

BUILD = Path(os.environ.get("RAWPROBE_BENCH_BUILD", "/tmp/rawprobe-bench-build"))

# The functions called in the loop. `hit` and `hit_str` start with `push %rbp`, which the
# kernel emulates instead of single-stepping (arch/x86/kernel/uprobes.c, push_setup_xol_ops);
# `hit_nop5` starts with a 5-byte NOP, which 6.18 rewrites into a call to its uprobe trampoline
# after the first hit (the "optimized uprobe"). A probe on them costs the trap and the BPF
# program, without the ~5 µs single-step a general instruction needs.
LOOP_SOURCE = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
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
static double cpu_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}
static void sleep_until(double when) {
    struct timespec t = {(time_t)when, (long)((when - (time_t)when) * 1e9)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, NULL))
        ;
}
/* loop N [RATE [push|nop5|str [wait|now [LINGER_MS [RUNS]]]]]
 *   Calls hit (push), hit_nop5 (nop5) or hit_str (str) N times (0: for ever), at RATE calls/s
 *   (0: flat out), and prints the loop's own elapsed time and the CPU time its thread used
 *   meanwhile (probe hits are charged to it, as system time), so a tracer's cost shows in the
 *   traced program. Rates up to 20,000/s sleep between calls; higher ones spin every 64 calls.
 *   wait: start only once the function's first byte has been replaced by a breakpoint (it is
 *   probed), and 50 ms more, printing "waiting" first; give up after 60 s (exit status 3).
 *   LINGER_MS: stay alive that long after the last run (a tracer following the pid keeps
 *   running until it has read everything).
 *   RUNS: do it that many times, reading a line from stdin before each run after the first. */
static long run(long n, long rate, const char *mode) {
    static const char *words[] = {"GET /index.html", "POST /api/v1/items", "DELETE /x"};
    int with_string = strcmp(mode, "str") == 0;
    int nop5 = strcmp(mode, "nop5") == 0;
    int sleeping = rate > 0 && rate <= 20000;
    long sum = 0;
    double start = now(), cpu_start = cpu_now();
    for (long i = 0; n == 0 || i < n; i++) {
        sum += with_string ? hit_str(i, 7, -i, words[i % 3]) : nop5 ? hit_nop5(i, 7) : hit(i, 7);
        if (sleeping)
            sleep_until(start + (double)(i + 1) / rate);
        else if (rate && (i & 63) == 63)
            while ((now() - start) * rate < i)
                ;
    }
    double elapsed = now() - start, cpu = cpu_now() - cpu_start;
    printf("elapsed_ns=%.0f cpu_ns=%.0f calls=%ld\n", elapsed * 1e9, cpu * 1e9, n);
    fflush(stdout);
    return sum;
}
int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    long rate = argc > 2 ? atol(argv[2]) : 0;
    const char *mode = argc > 3 ? argv[3] : "push";
    int wait = argc > 4 && strcmp(argv[4], "wait") == 0;
    long linger_ms = argc > 5 ? atol(argv[5]) : 0;
    long runs = argc > 6 ? atol(argv[6]) : 1;
    const volatile unsigned char *site = strcmp(mode, "str") == 0    ? (void *)hit_str
                                         : strcmp(mode, "nop5") == 0 ? (void *)hit_nop5
                                                                     : (void *)hit;
    unsigned char original = strcmp(mode, "nop5") == 0 ? 0x0f : 0x55;
    if (wait) {
        printf("waiting\n");
        fflush(stdout);
        double give_up = now() + 60;
        while (*site == original) {
            if (now() > give_up) {
                fprintf(stderr, "loop: never probed\n");
                return 3;
            }
            usleep(200);
        }
        /* The breakpoint goes in when the uprobe is registered, which may be a moment
         * before the tracer's BPF program is attached to it. */
        usleep(50000);
    }
    long sum = 0;
    char go[16];
    for (long r = 0; r < runs; r++) {
        if (r && !fgets(go, sizeof go, stdin))
            break;
        sum += run(n, rate, mode);
    }
    if (linger_ms)
        usleep(linger_ms * 1000);
    return sum == 42;
}
"""

MANY_FUNCTIONS = 1000


def many_source(count: int = MANY_FUNCTIONS) -> str:
    """C source of the ``many`` target: ``fn000`` ... and a main that watches them."""
    width = len(str(count - 1))
    names = [f"fn{i:0{width}d}" for i in range(count)]
    functions = [
        f'__attribute__((noinline)) long {name}(long v) {{ asm volatile(""); return v + {i}; }}'
        for i, name in enumerate(names)
    ]
    return "\n".join([
        "#include <stdio.h>", "#include <stdlib.h>", "#include <time.h>", "#include <unistd.h>",
        *functions,
        "static long (*const fns[])(long) = {" + ", ".join(names) + "};",
        r"""
static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}
/* How many of the first `count` functions have their first byte changed (a breakpoint). */
static int probed(const unsigned char *original, int count) {
    int changed = 0;
    for (int i = 0; i < count; i++)
        changed += *(const volatile unsigned char *)fns[i] != original[i];
    return changed;
}
/* many COUNT: print "watching", then probed_ns=T once the first COUNT functions are all
 * probed, then unprobed_ns=T once none is (CLOCK_MONOTONIC, as Python's time.monotonic_ns).
 * Gives up after 600 s. */
int main(int argc, char **argv) {
    int count = argc > 1 ? atoi(argv[1]) : 1;
    int total = sizeof fns / sizeof fns[0];
    if (count > total) count = total;
    unsigned char *original = malloc(total);
    long sum = 0;
    for (int i = 0; i < total; i++) {
        original[i] = *(const unsigned char *)fns[i];
        sum += fns[i](i);
    }
    printf("watching %d\n", count);
    fflush(stdout);
    long long give_up = now_ns() + 600000000000LL;
    while (probed(original, count) < count && now_ns() < give_up)
        usleep(200);
    printf("probed_ns=%lld\n", now_ns());
    fflush(stdout);
    while (probed(original, count) > 0 && now_ns() < give_up)
        usleep(200);
    printf("unprobed_ns=%lld\n", now_ns());
    return sum == 42;
}
""",
    ])


def build_c(source: str, name: str, flags: tuple[str, ...] = ("-O2",)) -> Path:
    """Compile C source text into an executable, cached by content."""
    key = hashlib.sha256("\0".join([source, *flags]).encode()).hexdigest()[:12]
    out = BUILD / key / name
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        src = out.parent / f"{name}.c"
        src.write_text(source)
        partial = out.parent / f"{name}.partial"
        subprocess.run(["gcc", *flags, "-o", str(partial), str(src)], check=True)
        partial.rename(out)
    return out


def build_loop() -> Path:
    """The ``loop`` target (see ``LOOP_SOURCE``)."""
    return build_c(LOOP_SOURCE, "loop")


def build_many(count: int = MANY_FUNCTIONS) -> Path:
    """The ``many`` target with ``count`` functions (see :func:`many_source`)."""
    return build_c(many_source(count), "many", ("-O1",))


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def host_description() -> str:
    return (
        f"Linux {platform.release()}, {os.cpu_count()} CPUs ({cpu_model()}), "
        f"Python {platform.python_version()}"
    )

"""attach -- COMMAND follows the command and everything it starts with uprobes of their own:
every hit in the process tree is counted, a process outside it running the same code keeps
its code untouched (no breakpoint, no trap), and nothing rawprobe's own child runs before the
exec is traced. With more probes than that way takes, the host-wide probes and the in-kernel
process filter still count the same."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from helpers import build_c, run_rawprobe

FORKER = r"""
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/wait.h>
__attribute__((noinline)) long target(long v) { asm volatile(""); return v + 1; }
__attribute__((noinline)) long other(long v) { asm volatile(""); return v + 2; }
int main(int argc, char **argv) {
    int n = atoi(argv[1]), kids = atoi(argv[2]), pause_ms = argc > 3 ? atoi(argv[3]) : 0;
    long s = 0;
    for (int i = 0; i < n; i++) s += target(i);
    for (int k = 0; k < kids; k++) {
        pid_t p = fork();
        if (p == 0) {
            for (int i = 0; i < n; i++) s += target(i);
            pid_t q = fork();  /* a grandchild, after its parent's calls */
            if (q == 0) { for (int i = 0; i < n; i++) s += target(i); _exit(0); }
            waitpid(q, 0, 0);
            _exit(0);
        }
        waitpid(p, 0, 0);
    }
    usleep(pause_ms * 1000);
    for (int i = 0; i < n; i++) s += target(i) + other(i);
    return s == 42;
}
"""

# Watches its own copy of target(): prints "probed" if its first byte ever changes (a
# breakpoint), else "untouched", after SECONDS.
BYSTANDER = r"""
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
__attribute__((noinline)) long target(long v) { asm volatile(""); return v + 1; }
int main(int argc, char **argv) {
    const volatile unsigned char *site = (const void *)target;
    unsigned char first = *site;
    long s = 0;
    printf("ready\n");
    fflush(stdout);
    for (int i = 0; i < atoi(argv[1]) * 1000; i++) {
        s += target(i);
        if (*site != first) { printf("probed\n"); return 0; }
        usleep(1000);
    }
    printf("untouched\n");
    return s == 42;
}
"""


@pytest.fixture(scope="module")
def forker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # One file for both programs: the bystander maps the very file the command probes.
    return build_c(FORKER, name="forker", flags=("-O1",))


def test_every_process_of_the_tree_is_counted(forker: Path) -> None:
    result = run_rawprobe("-v", "attach", "--count", f"p:{forker}:target", "--",
                          str(forker), "1000", "3", check_status=0)
    assert "uprobes of its own" in result.stderr
    # the command before and after its children, 3 children, 3 grandchildren
    assert "rawprobe: 8000 hits, 0 lost" in result.stderr, result.stderr


def test_a_process_outside_the_tree_is_not_touched() -> None:
    bystander = build_c(BYSTANDER, name="bystander", flags=("-O1",))
    watcher = subprocess.Popen([str(bystander), "3"], stdout=subprocess.PIPE, text=True)
    try:
        assert watcher.stdout is not None and watcher.stdout.readline().strip() == "ready"
        result = run_rawprobe("attach", "--count", f"p:{bystander}:target", "--",
                              str(bystander), "1", check_status=0)
        # The command (the same program) is probed from its first instruction on.
        assert "rawprobe: 1000 hits, 0 lost" in result.stderr, result.stderr
        assert watcher.stdout.readline().strip() == "untouched"
    finally:
        watcher.kill()
        watcher.wait()


def test_nothing_before_the_exec_is_traced() -> None:
    # malloc is called by rawprobe's own child (Python) between fork and exec: none of it
    # may show up, only the command's.
    result = run_rawprobe("attach", "p:libc:malloc", "--", "/bin/true", check_status=0)
    comms = {line.split()[1] for line in result.stdout.splitlines() if line.strip()}
    assert comms <= {"true"}, result.stdout


def test_many_probes_fall_back_to_the_process_filter(forker: Path) -> None:
    words = [f"p:{forker}:target"] + [f"p:n{i} {forker}:target" for i in range(16)]
    result = run_rawprobe("-v", "attach", "--count", *words, "--", str(forker), "100", "1",
                          check_status=0)
    assert "process tree" in result.stderr
    assert "rawprobe: 6800 hits, 0 lost" in result.stderr, result.stderr  # 17 x 400

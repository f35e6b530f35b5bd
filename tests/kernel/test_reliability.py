"""Reliability: the traced program is unchanged, every exit path cleans up, nothing leaks.

Long forms (millions of calls, 60 s of load, 1,000 attach/detach cycles) run with
RAWPROBE_LONG_TESTS=1; CI runs the shorter ones below, which check the same properties.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from helpers import Background, bpf_link_ids_of, build_c, existing_bpf_link_ids, run_rawprobe

import rawprobe

LONG = os.environ.get("RAWPROBE_LONG_TESTS") == "1"

CHECKSUM = r"""
#include <stdio.h>
#include <stdlib.h>
#include <sys/sdt.h>
__attribute__((noinline)) long mix(long a, const char *s) {
    long h = a * 1099511628211L;
    for (const char *p = s; *p; p++) h = (h ^ *p) * 16777619L;
    DTRACE_PROBE2(chk, mixed, a, h);
    return h;
}
int main(int argc, char **argv) {
    long n = atol(argv[1]), sum = 0;
    static const char *words[] = {"alpha", "beta", "gamma", "a somewhat longer string"};
    for (long i = 0; i < n; i++) sum += mix(i, words[i & 3]);
    printf("%ld\n", sum);
    return 0;
}
"""

MODES = {
    "entry, return and a string": ["p:{p}:mix a=%di:s64 s=+0(%si):string",
                                   "r:{p}:mix h=$retval:s64"],
    "stacks, counted": ["--count", "--stack", "p:{p}:mix"],
    "a filter": ["--filter", 's ~ "al*" && a > 10', "p:{p}:mix a=%di:s64 s=+0(%si):string"],
    "a histogram": ["--hist", "a", "p:{p}:mix a=%di:s64"],
    "USDT": ["usdt:{p}:chk:mixed"],
}


@pytest.fixture(scope="module")
def checksum_program() -> Path:
    return build_c(CHECKSUM, name="checksum", flags=("-O1", "-fno-omit-frame-pointer"))


@pytest.mark.parametrize("mode", sorted(MODES))
def test_traced_program_computes_the_same(checksum_program: Path, mode: str) -> None:
    calls = "3000000" if LONG else "300000"
    expected = subprocess.run([str(checksum_program), calls], capture_output=True, text=True,
                              check=True).stdout
    args = [a.format(p=checksum_program) for a in MODES[mode]]
    result = run_rawprobe("attach", "-o", "/dev/null", *args, "--", str(checksum_program),
                          calls, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected  # the command's own output, untouched by tracing


def private_program(program: Path, directory: Path, name: str = "target") -> Path:
    copy = directory / name
    shutil.copy(program, copy)
    return copy


LOOPER = r"""
#include <unistd.h>
__attribute__((noinline)) int tick(int i) { asm volatile("" ::: "memory"); return i; }
int main(void) { for (int i = 0; i < 100000; i++) { tick(i); usleep(1000); } return 0; }
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_signals_end_the_run_and_remove_everything(tmp_path: Path, sig: int) -> None:
    program = private_program(build_c(LOOPER, name="looper", flags=("-O1",)), tmp_path)
    target = subprocess.Popen([str(program)])
    try:
        tracer = Background("attach", "-p", str(target.pid), f"p:{program}:tick i=%di:s32",
                            f"r:{program}:tick")
        tracer.ready()
        links = bpf_link_ids_of(tracer.proc.pid)
        assert links
        time.sleep(0.3)
        status, out, err = tracer.finish(sig)
    finally:
        target.kill()
    assert status == 0, err
    assert out.count(" tick: i=") >= 2
    assert " events, 0 lost" in err
    assert not links & existing_bpf_link_ids()


def test_sigkill_leaves_nothing_in_the_kernel(tmp_path: Path) -> None:
    program = private_program(build_c(LOOPER, name="looper", flags=("-O1",)), tmp_path)
    target = subprocess.Popen([str(program)])
    try:
        tracer = Background("attach", "-p", str(target.pid), f"p:{program}:tick")
        tracer.ready()
        links = bpf_link_ids_of(tracer.proc.pid)
        tracer.proc.kill()
        tracer.proc.wait(timeout=10)
        time.sleep(0.2)
    finally:
        target.kill()
    # The kernel frees a process's links, programs and maps with its descriptors.
    assert links and not links & existing_bpf_link_ids()


def test_the_traced_command_dying(tmp_path: Path) -> None:
    result = run_rawprobe("attach", "p:libc:getpid", "--", "sh", "-c", "kill -9 $$")
    assert result.returncode == 0, result.stderr
    assert "the command was killed by SIGKILL" in result.stderr


def test_the_traced_binary_deleted_and_replaced_while_traced(tmp_path: Path) -> None:
    source = build_c(LOOPER, name="looper", flags=("-O1",))
    program = private_program(source, tmp_path)
    target = subprocess.Popen([str(program)])
    try:
        tracer = Background("attach", "-p", str(target.pid), f"p:{program}:tick i=%di:s32")
        tracer.ready()
        time.sleep(0.2)
        program.unlink()  # the process keeps running its (now nameless) file
        time.sleep(0.2)
        shutil.copy(source, program)  # and a new file takes the name
        time.sleep(0.2)
        assert target.poll() is None
        links = bpf_link_ids_of(tracer.proc.pid)
        status, out, err = tracer.finish(signal.SIGINT)
    finally:
        target.kill()
    assert status == 0, err
    ticks = [int(line.rsplit("=", 1)[1]) for line in out.splitlines() if " tick: " in line]
    assert len(ticks) > 3 and ticks == sorted(ticks)  # still traced after the unlink
    assert not links & existing_bpf_link_ids()


def test_rawprobe_does_not_trace_itself(tmp_path: Path) -> None:
    # Host-wide on a function rawprobe itself calls for every event it handles: without
    # excluding itself this would feed on its own output.
    tracer = Background("attach", "--json", "p:libc:malloc size=%di:u64", "--duration", "1")
    tracer.ready()
    status, out, err = tracer.finish()
    assert status == 0, err
    own = f'"pid":{tracer.proc.pid},'
    assert own not in out


def test_no_leaks_over_many_attach_detach_cycles(tmp_path: Path) -> None:
    program = private_program(build_c(LOOPER, name="looper", flags=("-O1",)), tmp_path)
    cycles = 1000 if LONG else 60

    def cycle() -> None:
        with rawprobe.Tracer(backend="bpf") as tracer:
            tracer.add(f"p:{program}:tick")
            tracer.add(f"r:{program}:tick")
            tracer.start()

    for _ in range(5):
        cycle()  # warm caches
    fds_before = len(os.listdir("/proc/self/fd"))
    rss_before = _rss_kib()
    for _ in range(cycles):
        cycle()
    assert len(os.listdir("/proc/self/fd")) == fds_before
    assert bpf_link_ids_of(os.getpid()) == set()
    assert _rss_kib() - rss_before < 8 * 1024, "memory grew over attach/detach cycles"


def _rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


BUSY = r"""
#include <pthread.h>
#include <stdlib.h>
#define F(n) __attribute__((noinline)) long f##n(long v) { asm volatile(""); return v + n; }
F(0) F(1) F(2) F(3) F(4) F(5) F(6) F(7) F(8) F(9)
static volatile int stop;
static void *work(void *arg) {
    long s = 0;
    while (!stop) s += f0(s) + f1(s) + f2(s) + f3(s) + f4(s) + f5(s) + f6(s) + f7(s) + f8(s)
                       + f9(s);
    return (void *)s;
}
int main(int argc, char **argv) {
    pthread_t a, b;
    pthread_create(&a, 0, work, 0); pthread_create(&b, 0, work, 0);
    sleep(atoi(argv[1])); stop = 1;
    pthread_join(a, 0); pthread_join(b, 0);
    return 0;
}
"""


def test_load_many_probes_on_busy_threads() -> None:
    # 100 probes (10 functions, 10 probes each) on two busy threads, counted in the kernel.
    program = build_c(BUSY.replace("#include <stdlib.h>", "#include <stdlib.h>\n#include "
                                   "<unistd.h>"), name="busy", flags=("-O1", "-pthread"))
    seconds = "60" if LONG else "3"
    words = [f"p:n{i}_{k} {program}:f{i}" for i in range(10) for k in range(10)]
    with rawprobe.Tracer(command=[str(program), seconds],
                         aggregation=rawprobe.AggregationSpec("count")) as tracer:
        for word in words:
            tracer.add(word)
        tracer.start()
        fds = len(os.listdir("/proc/self/fd"))
        rss = _rss_kib()
        tracer.run()
        counts = tracer.aggregates().as_dict()
        stats = tracer.stats()
        assert len(os.listdir("/proc/self/fd")) <= fds  # nothing opened per event or per read
        assert _rss_kib() - rss < 4 * 1024
    assert tracer.command_status == 0
    assert stats.lost == 0 and len(counts) == 100
    per_function = {i: {counts[(f"n{i}_{k}", None)] for k in range(10)} for i in range(10)}
    # Every probe on one function counted every call of it: all ten agree.
    assert all(len(values) == 1 and values.pop() > 1000 for values in per_function.values())


def test_nothing_pinned_or_left_writable(tmp_path: Path) -> None:
    # rawprobe pins nothing in bpffs, and what it writes is its user's only.
    program = private_program(build_c(LOOPER, name="looper", flags=("-O1",)), tmp_path)
    bpffs = Path("/sys/fs/bpf")
    before = set(bpffs.rglob("*")) if bpffs.is_dir() else set()
    output = tmp_path / "out.json"
    target = subprocess.Popen([str(program)])
    try:
        result = run_rawprobe("attach", "--json", "-o", str(output), "-p", str(target.pid),
                              f"p:{program}:tick", "--duration", "0.3")
    finally:
        target.kill()
    assert result.returncode == 0, result.stderr
    after = set(bpffs.rglob("*")) if bpffs.is_dir() else set()
    assert after == before
    assert output.stat().st_mode & 0o077 == 0

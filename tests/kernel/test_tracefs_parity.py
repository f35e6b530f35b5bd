"""The same probe words through both backends give the same events.

Each scenario runs ``rawprobe attach`` with ``--backend bpf`` and with ``--backend tracefs`` and
compares what they print, minus what must differ between two runs: timestamps, CPUs, and process
ids (replaced by the order in which they first appear). The targets keep every string they pass
in memory they have already touched: the BPF backend cannot fault pages in
(``bpf_probe_read_user()`` runs where page faults are not allowed) and reports a string in a
never-read ``.rodata`` page as unreadable, where the kernel's uprobe tracer reads it.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import ROOT, Background, build_c, run_rawprobe

from rawprobe._tracefs import find_tracefs, owner_alive, parse_group

BACKENDS = ("bpf", "tracefs")

TARGET_SOURCE = r"""
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct inner { int id; const char *label; };
struct rec {
    long id; unsigned flags; short s; signed char c; unsigned char bits;
    struct inner *in; const char *name; unsigned arr[4]; const char *strs[2];
};

__attribute__((noinline)) long handle(struct rec *r, long neg, unsigned long big,
                                      const char *str, char ch, void *bad)
{
    asm volatile("" ::: "memory");
    return r ? r->id * 2 : -1;
}

__attribute__((noinline)) const char *name_of(int i)
{
    static char buf[32];
    snprintf(buf, sizeof buf, "name-%d", i);
    return buf;
}

static int calls = 1, pause_ms;

static void run(long base)
{
    char label[] = "inner-label", name[] = "record-name", s0[] = "zero", s1[] = "one";
    char str[] = "a string argument";
    struct inner in = {7, label};
    struct rec r = {42, 0xdeadbeef, -3, -4, 0xb5, &in, name, {1, 2, 3, 4}, {s0, s1}};
    for (int i = 0; i < calls; i++) {
        r.id = base + i;
        handle(&r, -1 - i, (1UL << 63) | i, str, 'x', (void *)16);
        name_of(i);
    }
    handle(NULL, 0, 0, NULL, 'y', NULL);
}

static void *worker(void *arg) { run((long)arg); return NULL; }
static void *early(void *arg) { usleep(pause_ms * 1000 + 100000); run((long)arg); return NULL; }

/* target [CALLS [PAUSE_MS [THREADS_BEFORE [THREADS_AFTER]]]]: threads started before the
   pause run once it is over, the others one after the other after the main thread's run. */
int main(int argc, char **argv)
{
    calls = argc > 1 ? atoi(argv[1]) : 1;
    pause_ms = argc > 2 ? atoi(argv[2]) : 0;
    int before = argc > 3 ? atoi(argv[3]) : 0, after = argc > 4 ? atoi(argv[4]) : 0;
    pthread_t t[16];
    int n = 0;
    for (int i = 0; i < before && n < 16; i++, n++)
        pthread_create(&t[n], NULL, early, (void *)(long)(100 * (n + 1)));
    if (pause_ms) usleep(pause_ms * 1000);
    run(42);
    for (int i = 0; i < after && n < 16; i++, n++) {
        pthread_create(&t[n], NULL, worker, (void *)(long)(100 * (n + 1)));
        pthread_join(t[n], NULL);
    }
    for (int i = 0; i < before; i++) pthread_join(t[i], NULL);
    return 0;
}
"""

RICH = (
    "p:{prog}:handle id=+0(%di):s64 flags=+8(%di):x32 s=+12(%di):s16 c=+14(%di):s8 "
    "bits=+15(%di):b3@2/8 inner=+0(+16(%di)):s32 label=+0(+8(+16(%di))):string "
    "name=+0(+24(%di)):string arr=+32(%di):u32[4] strs=+48(%di):string[2] neg=%si:s64 "
    "big=%dx:u64 str=%cx:string ch=%r8:char bad=+0(%r9):u64 badstr=%r9:string "
    "who=$comm imm=\\42:s32 k=\\\"const\" raw=%si"
)
RETURNS = ("r:{prog}:handle ret=$retval:s64", "r:{prog}:name_of s=$retval:string")


@pytest.fixture(scope="module")
def target() -> str:
    return str(build_c(TARGET_SOURCE, name="target", flags=("-O0", "-g", "-pthread")))


def leftover_groups() -> list[str]:
    """tracefs groups of rawprobe runs whose process is gone."""
    root = find_tracefs()
    with open(f"{root}/uprobe_events") as file:
        groups = {line.split()[0].split(":", 1)[1].split("/")[0]
                  for line in file if line.strip()}
    left = []
    for group in groups:
        owner = parse_group(group)
        if owner is not None and owner_alive(owner)[0] is False:
            left.append(group)
    return left


_TIME = re.compile(r"^\d\d:\d\d:\d\d\.\d{6} ")


class _Ids:
    """Process and thread ids, replaced by the order they first appear in."""

    def __init__(self) -> None:
        self.seen: dict[int, int] = {}

    def __call__(self, pid: int) -> int:
        return self.seen.setdefault(pid, len(self.seen))


def normalize_text(stdout: str) -> list[str]:
    ids = _Ids()
    rows = []
    for line in stdout.splitlines():
        if not line.strip():
            continue
        line = _TIME.sub("", line)
        comm, pids, rest = line.split(" ", 2)
        pid, tid = pids.split("/")
        rows.append(f"{comm} {ids(int(pid))}/{ids(int(tid))} {rest}")
    return rows


def normalize_json(stdout: str) -> list[dict[str, Any]]:
    ids = _Ids()
    rows = []
    for line in stdout.splitlines():
        obj = json.loads(line)
        if "summary" not in obj:
            assert isinstance(obj.pop("ts_ns"), int) and isinstance(obj.pop("cpu"), int)
            obj["pid"], obj["tid"] = ids(obj["pid"]), ids(obj["tid"])
        rows.append(obj)
    return rows


def run_both(*args: str, normalize: Callable[[str], Any] = normalize_text,
             status: int = 0) -> Any:
    """Run attach on both backends; return the normalized output (asserted equal)."""
    outputs = []
    for backend in BACKENDS:
        split = args.index("--") if "--" in args else len(args)
        argv = ["attach", "--backend", backend, *args[:split], *args[split:]]
        result = run_rawprobe(*argv, check_status=status)
        outputs.append((normalize(result.stdout), result.stderr))
    (bpf, bpf_err), (tracefs, tracefs_err) = outputs
    assert bpf == tracefs, f"bpf:\n{bpf}\ntracefs:\n{tracefs}\n{bpf_err}\n{tracefs_err}"
    summary = [line for line in bpf_err.splitlines() if " events, " in line]
    assert summary == [line for line in tracefs_err.splitlines() if " events, " in line]
    assert leftover_groups() == []
    return bpf


def test_entry_and_return_ints(add_program: Path) -> None:
    prog = str(add_program)
    rows = run_both(f"p:{prog}:add a=%di:s32 b=%si:s32", f"r:{prog}:add ret=$retval:s32",
                    "--", prog, "2")
    assert rows == ["main 0/0 add: a=1 b=2", "main 0/0 add__return: ret=3",
                    "main 0/0 add: a=2 b=2", "main 0/0 add__return: ret=4"]


def test_aliases_and_kernel_spelling(add_program: Path) -> None:
    prog = str(add_program)
    rows = run_both(f"p:first {prog}:add a=arg0:s32 b=$arg2:u8", f"{prog}:add%return retval",
                    "--", prog)
    assert rows == ["main 0/0 first: a=1 b=2", "main 0/0 add__return: arg1=0x3"]


def test_every_kind_of_fetch_arg(target: str) -> None:
    words = [RICH.format(prog=target), *(w.format(prog=target) for w in RETURNS)]
    rows = run_both("--json", *words, "--", target, "2", normalize=normalize_json)
    entry, ret, name, *rest = rows
    assert entry["args"] == {
        "id": 42, "flags": "0xdeadbeef", "s": -3, "c": -4, "bits": 5, "inner": 7,
        "label": "inner-label", "name": "record-name", "arr": [1, 2, 3, 4],
        "strs": ["zero", "one"], "neg": -1, "big": 2**63, "str": "a string argument",
        "ch": "x", "bad": None, "badstr": None, "who": "target", "imm": 42, "k": "const",
        "raw": hex(2**64 - 1),
    }
    assert entry["faults"] == ["bad", "badstr"]
    assert ret["args"] == {"ret": 84} and name["args"] == {"s": "name-0"}
    null_call = rest[-3]
    assert null_call["args"]["id"] is None and null_call["args"]["strs"] == [None, None]
    assert rows[-1]["summary"]["events"] == 8


def test_strings_cut_at_string_size(target: str) -> None:
    word = (f"p:{target}:handle label=+0(+8(+16(%di))):string str=%cx:string "
            "strs=+48(%di):string[2] who=$comm")
    rows = run_both("--json", "--string-size", "5", word, "--", target,
                    normalize=normalize_json)
    assert rows[0]["args"] == {"label": "inne", "str": "a st", "strs": ["zero", "one"],
                               "who": "target"}
    # "zero" fits in 5 bytes with its NUL: only longer strings count as cut.
    assert rows[0]["truncated"] == ["label", "str"]


def test_pid_with_threads_started_before_and_after(target: str) -> None:
    word = f"p:{target}:handle id=+0(%di):s64 label=+0(+8(+16(%di))):string"
    outputs = []
    for backend in BACKENDS:
        proc = subprocess.Popen([target, "1", "1200", "2", "2"])
        try:
            tracer = Background("attach", "--backend", backend, "-p", str(proc.pid), word)
            tracer.ready()
            proc.wait(timeout=20)
            status, out, err = tracer.finish(timeout=30)
        finally:
            proc.kill()
        assert status == 0, err
        rows = [_TIME.sub("", line).split(" ", 2) for line in out.splitlines() if line]
        assert all(pids.split("/")[0] == str(proc.pid) for _comm, pids, _rest in rows)
        # Threads run concurrently: compare what each thread did, not the interleaving.
        by_thread: dict[str, list[str]] = {}
        for _comm, pids, rest in rows:
            by_thread.setdefault(pids.split("/")[1], []).append(rest)
        outputs.append(sorted(by_thread.values()))
    assert outputs[0] == outputs[1]
    assert len(outputs[1]) == 5  # the main thread, two started before, two after
    assert leftover_groups() == []


def test_command_and_its_children(add_program: Path) -> None:
    prog = str(add_program)
    rows = run_both(f"p:{prog}:add a=%di:s32", "--", "sh", "-c",
                    f"{prog} 1; {prog} 2; ( {prog} 1 ) & wait")
    assert [row.split(" ", 2)[2] for row in rows] == ["add: a=1", "add: a=1", "add: a=2",
                                                      "add: a=1"]
    assert len({row.split()[1] for row in rows}) == 3  # three processes


def private_copy(program: Path, directory: Path) -> str:
    """A copy of ``program`` no one else runs (the build cache is shared between test runs,
    and a host-wide probe sees every process running the file)."""
    copy = directory / program.name
    shutil.copy2(program, copy)
    return str(copy)


def test_host_wide(add_program: Path, tmp_path: Path) -> None:
    prog = private_copy(add_program, tmp_path)
    outputs = []
    for backend in BACKENDS:
        tracer = Background("attach", "--backend", backend, "--json",
                            f"p:{prog}:add a=%di:s32 b=%si:s32", "--duration", "20")
        tracer.ready()
        subprocess.run([prog, "2"], check=True)
        subprocess.run([prog, "1"], check=True)
        time.sleep(0.2)
        status, out, err = tracer.finish(signal.SIGINT)
        assert status == 0, err
        outputs.append(normalize_json(out))
    assert outputs[0] == outputs[1]
    assert [row["args"]["a"] for row in outputs[1][:-1]] == [1, 2, 1]
    assert outputs[1][-1]["summary"]["events"] == 3
    assert leftover_groups() == []


def test_output_file_and_max_events(add_program: Path, tmp_path: Path) -> None:
    prog = str(add_program)
    contents = []
    for backend in BACKENDS:
        out = tmp_path / f"{backend}.txt"
        run_rawprobe("attach", "--backend", backend, "-o", str(out), "-n", "2",
                     f"p:{prog}:add a=%di:s32", "--", prog, "5", check_status=0)
        assert out.stat().st_mode & 0o777 == 0o600
        contents.append(normalize_text(out.read_text()))
    assert contents[0] == contents[1] == ["main 0/0 add: a=1", "main 0/0 add: a=2"]
    assert leftover_groups() == []


def test_a_command_does_not_see_other_processes(add_program: Path, tmp_path: Path) -> None:
    prog = private_copy(add_program, tmp_path)
    for backend in BACKENDS:
        other = subprocess.Popen([prog, "3", "300"])
        try:
            result = run_rawprobe("attach", "--backend", backend, f"p:{prog}:add a=%di:s32",
                                  "--", "sh", "-c", "sleep 0.8", check_status=0)
        finally:
            other.wait(timeout=10)
        assert result.stdout == "" and "0 events, 0 lost" in result.stderr
    assert leftover_groups() == []


def test_filters_and_aggregations(add_program: Path) -> None:
    # tracefs filters and aggregates in user space; the results must be the kernel's.
    prog = str(add_program)
    word = f"p:{prog}:add a=%di:s32 b=%si:s32"
    filtered = run_both("--filter", "a >= 3 && b == 2 || a == 1", word, "--", prog, "6")
    assert [row.split(": ", 1)[1] for row in filtered] == [
        "a=1 b=2", "a=3 b=2", "a=4 b=2", "a=5 b=2", "a=6 b=2"]
    def lines(out: str) -> list[Any]:
        return [json.loads(line) for line in out.splitlines()]

    counts = run_both("--json", "--count", "--by", "a", word, "--", prog, "4", normalize=lines)
    assert sorted(row["key"] for row in counts[0]["counts"]) == [1, 2, 3, 4]
    assert counts[1]["summary"]["hits"] == 4
    hist = run_both("--json", "--hist", "a", word, "--", prog, "5", normalize=lines)
    assert [b["count"] for b in hist[0]["hist"][0]["buckets"]] == [1, 2, 2]
    latency = run_both("--json", "--hist", "latency", f"p:{prog}:add", "--", prog, "3",
                       normalize=lambda out: json.loads(out.splitlines()[0])["hist"][0]["event"])
    assert latency == "add"


def test_auto_falls_back_to_tracefs_without_libbpf(add_program: Path) -> None:
    unshare = shutil.which("unshare")
    libbpf = Path("/usr/lib/x86_64-linux-gnu/libbpf.so.1")
    if unshare is None or not libbpf.exists():
        pytest.skip("needs unshare and the Debian libbpf path")
    prog = str(add_program)
    script = (f"mount --bind /dev/null {libbpf} && exec {sys.executable} -m rawprobe attach "
              f"'p:{prog}:add a=%di:s32' -- {prog} 2")
    result = subprocess.run([unshare, "--mount", "--propagation", "private", "sh", "-c",
                             script], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "using the tracefs backend" in result.stderr and "libbpf" in result.stderr
    assert [line.split(": ", 1)[1] for line in result.stdout.splitlines()] == ["a=1", "a=2"]

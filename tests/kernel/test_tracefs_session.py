"""The tracefs backend on a real kernel: definitions in uprobe_events, removed on every way out."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import time
from pathlib import Path

from helpers import Background, build_c, run_rawprobe
from test_tracefs_parity import leftover_groups, private_copy

from rawprobe._tracefs import find_tracefs, parse_definitions, parse_group
from rawprobe._tracer import Tracer


def our_definitions(pid: int) -> list[str]:
    with open(f"{find_tracefs()}/uprobe_events") as file:
        return [line.strip() for line in file
                if (owner := parse_group(line[2:].split("/", 1)[0])) is not None
                and owner.pid == pid]


def test_definitions_while_running_and_gone_after_sigterm(add_program: Path,
                                                           tmp_path: Path) -> None:
    prog = private_copy(add_program, tmp_path)
    tracer = Background("attach", "--backend", "tracefs", f"p:{prog}:add a=%di:s32",
                        f"r:{prog}:add ret=$retval:s32 p=$retval:string")
    tracer.ready()
    lines = our_definitions(tracer.proc.pid)
    definitions = parse_definitions("\n".join(lines))
    assert [(d.event, d.retprobe) for d in definitions] == [("add", False),
                                                            ("add__return", True)]
    assert definitions[0].args == "a=%di:s32 rawprobe_comm=$comm"
    assert definitions[1].args == "ret=%ax:s32 p=+0(%ax):string rawprobe_comm=$comm"
    # The kernel is handed the very file rawprobe opened and resolved: /proc/self/fd/N of
    # rawprobe, which names the program.
    fd_path = definitions[0].path
    assert fd_path.startswith("/proc/self/fd/")
    assert os.readlink(fd_path.replace("self", str(tracer.proc.pid))) == prog
    owner = parse_group(definitions[0].group)
    assert owner is not None and owner.pid == tracer.proc.pid
    assert owner.pid_namespace == os.stat("/proc/self/ns/pid").st_ino
    subprocess.run([prog], check=True)
    time.sleep(0.2)
    status, out, err = tracer.finish(signal.SIGTERM)
    assert status == 0, err
    assert out.splitlines()[1].endswith("add__return: ret=3 p=(fault)")
    assert our_definitions(tracer.proc.pid) == []


def test_a_refused_definition_removes_the_ones_before_it(add_program: Path) -> None:
    prog = str(add_program)
    # Two probes at one place with different semaphores: the kernel refuses the second
    # (kernel/events/uprobes.c, reference counter offset mismatch).
    # (--force: rawprobe itself refuses a reference counter no USDT note names.)
    result = run_rawprobe("attach", "--backend", "tracefs", "--force", f"p:{prog}:add a=%di",
                          f"p:second {prog}:add(0x3010) b=%si", "--", prog)
    assert result.returncode == 2, result.stderr
    assert "the kernel refused the uprobe_events definition" in result.stderr
    assert "Traceback" not in result.stderr
    assert leftover_groups() == []


def test_fetch_args_the_kernel_cannot_express_plant_nothing(add_program: Path) -> None:
    prog = str(add_program)
    deep = "+1000000(" * 6 + "%di" + ")" * 6
    result = run_rawprobe("attach", "--backend", "tracefs", f"p:{prog}:add a=%di",
                          f"p:deep {prog}:add v={deep}:u64", "--", prog)
    assert result.returncode == 2
    assert "at most 63 characters" in result.stderr and "--backend bpf" in result.stderr
    assert leftover_groups() == []


LOUD_SOURCE = r"""
#include <stdlib.h>
#include <string.h>
__attribute__((noinline)) int put(const char *s) { asm volatile("" ::: "memory"); return s[0]; }
int main(int argc, char **argv) {
    char big[2048];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    int n = argc > 1 ? atoi(argv[1]) : 1, sum = 0;
    for (int i = 0; i < n; i++) sum += put(big);
    return sum == 0;
}
"""


def test_lost_samples_are_counted() -> None:
    prog = str(build_c(LOUD_SOURCE, name="loud", flags=("-O0",)))
    # 2 KiB samples, 64 KiB per CPU, 100000 calls as fast as they come: the buffers overflow.
    result = run_rawprobe("attach", "--backend", "tracefs", "--json", "--ring-size", "4096",
                          f"p:{prog}:put s=%di:string", "--", prog, "100000",
                          check_status=0, timeout=120)
    summary = [line for line in result.stdout.splitlines() if line.startswith('{"summary"')]
    import json

    counts = json.loads(summary[0])["summary"]
    assert counts["lost"] > 0
    assert counts["events"] + counts["lost"] == counts["hits"] == 100000
    assert "the ring buffer was full" in result.stderr


def test_the_finalizer_removes_definitions_of_a_forgotten_tracer(add_program: Path) -> None:
    tracer = Tracer(backend="tracefs", command=[str(add_program)])
    tracer.add(f"p:{add_program}:add a=%di:s32")
    tracer.start()
    assert len(our_definitions(os.getpid())) == 1
    events = list(tracer.events(timeout=10))
    assert [e.values for e in events] == [(1,)] and events[0].comm == "main"
    del tracer, events
    gc.collect()
    assert our_definitions(os.getpid()) == []


def test_two_sessions_in_one_process_use_two_groups(add_program: Path) -> None:
    with Tracer(backend="tracefs") as first, Tracer(backend="tracefs") as second:
        first.add(f"p:{add_program}:add a=%di:s32")
        second.add(f"p:{add_program}:add b=%si:s32")
        first.start()
        second.start()
        groups = {d.group for d in parse_definitions("\n".join(our_definitions(os.getpid())))}
        assert len(groups) == 2
    assert our_definitions(os.getpid()) == []

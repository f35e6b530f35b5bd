"""tp: and sys: probes on the kernel: fields, filters, aggregations, stacks, processes, and
uprobes and system calls in one stream."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import Background, build_c, run_rawprobe

import rawprobe

pytestmark = pytest.mark.kernel

CALLS = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

__attribute__((noinline)) int mark(int i) { return i * 2; }

/* The system call instruction itself here (libc's wrappers keep no frame pointer). */
__attribute__((noinline)) void caller_of_getppid(void) {
    long ret;
    asm volatile("syscall" : "=a"(ret) : "a"(SYS_getppid) : "rcx", "r11", "memory");
}

/* argv[1]: rounds; argv[2]: failing opens per round; argv[3]: sleep (ms) before exiting. */
int main(int argc, char **argv) {
    int rounds = atoi(argv[1]), failing = atoi(argv[2]), pause_ms = atoi(argv[3]);
    char line[32];
    for (int i = 0; i < rounds; i++) {
        int n = snprintf(line, sizeof line, "line %d\n", mark(i));
        write(1, line, n);
        for (int j = 0; j < failing; j++)
            open("/nonexistent/rawprobe", O_RDONLY);
        caller_of_getppid();
    }
    struct timespec pause = {pause_ms / 1000, (pause_ms % 1000) * 1000000L};
    nanosleep(&pause, NULL);
    return 0;
}
"""


@pytest.fixture(scope="module")
def calls() -> Path:
    return build_c(CALLS, name="calls", flags=("-O0", "-g", "-fno-omit-frame-pointer"))


def json_events(*args: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    result = run_rawprobe("attach", "--json", *args, check_status=0)
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return lines[:-1], lines[-1]["summary"]


# -- tracepoints ------------------------------------------------------------------------------


def test_tracepoint_fields_come_from_its_format_file() -> None:
    events, summary = json_events("tp:sched:sched_process_exec", "--", "sh", "-c",
                                  "/bin/true; ls / >/dev/null")
    assert summary["lost"] == 0
    assert [event["args"]["filename"] for event in events] == ["/usr/bin/sh", "/bin/true",
                                                                "/usr/bin/ls"]
    for event in events:
        assert event["event"] == "sched_process_exec"
        assert event["args"]["pid"] == event["pid"] == event["args"]["old_pid"]


def test_tracepoint_char_array_and_named_fields() -> None:
    events, _ = json_events("tp:sched:sched_process_exit comm who=pid", "--", "/bin/true")
    assert [(event["args"]["comm"], event["args"]["who"]) for event in events] == [
        ("true", events[0]["pid"])]


def test_tracepoint_user_string_and_filter() -> None:
    events, summary = json_events("tp:syscalls:sys_enter_openat filename:string flags",
                                  "--filter", 'filename == "/etc/hostname"',
                                  "--", "cat", "/etc/hostname")
    assert [(event["args"]["filename"], event["args"]["flags"]) for event in events] == [
        ("/etc/hostname", os.O_RDONLY)]
    assert summary["filtered"] > 0


def test_tracepoint_count_by_comm() -> None:
    result = run_rawprobe("attach", "--json", "--count", "--by", "comm",
                          "tp:sched:sched_process_exec", "--", "sh", "-c",
                          "ls / >/dev/null; cat /etc/hostname >/dev/null", check_status=0)
    counts = json.loads(result.stdout.splitlines()[0])["counts"]
    assert {row["key"]: row["count"] for row in counts} == {"sh": 1, "ls": 1, "cat": 1}


def test_tracepoint_unknown_names_are_refused_with_suggestions() -> None:
    result = run_rawprobe("attach", "tp:sched:sched_proces_exec", "--", "true", check_status=2)
    assert "sched_process_exec" in result.stderr
    result = run_rawprobe("attach", "tp:sched:sched_process_exec nosuchfield", "--", "true",
                          check_status=2)
    assert "has no field 'nosuchfield'" in result.stderr
    result = run_rawprobe("attach", "--hist", "latency", "tp:sched:sched_process_exec", "--",
                          "true", check_status=2)
    assert "no duration" in result.stderr


# -- system calls -----------------------------------------------------------------------------


def test_system_call_filter_count_and_histogram(calls: Path) -> None:
    result = run_rawprobe("attach", "--json", "--count", "sys:openat", "--filter",
                          'ret == -2 && filename == "/nonexistent/rawprobe"', "--",
                          str(calls), "5", "3", "0", check_status=0)
    counts = json.loads(result.stdout.splitlines()[-2])["counts"]
    assert counts == [{"event": "openat", "count": 15}]
    result = run_rawprobe("attach", "--json", "--hist", "latency", "sys:getppid", "--",
                          str(calls), "7", "0", "0", check_status=0)
    (hist,) = json.loads(result.stdout.splitlines()[-2])["hist"]
    assert hist["event"] == "getppid"
    assert sum(bucket["count"] for bucket in hist["buckets"]) == 7
    result = run_rawprobe("attach", "--json", "--count", "--by", "count", "sys:write", "--",
                          str(calls), "3", "0", "0", check_status=0)
    counts = json.loads(result.stdout.splitlines()[-2])["counts"]
    assert {row["key"]: row["count"] for row in counts} == {7: 3}


def test_system_call_user_stack(calls: Path) -> None:
    events, _ = json_events("--stack", "sys:getppid", "--", str(calls), "1", "0", "300")
    (event,) = events
    assert any(frame.startswith("caller_of_getppid+") for frame in event["stack"])
    assert any(frame.startswith("main+") for frame in event["stack"])


def test_uprobes_and_system_calls_in_one_stream(calls: Path) -> None:
    events, summary = json_events(f"p:{calls}:mark i=%di:s32", "sys:write", "sys:getppid",
                                  "--", str(calls), "4", "0", "0")
    names = [event["event"] for event in events]
    assert names == ["mark", "write", "getppid"] * 4
    for round_number in range(4):
        mark, write, _ = events[3 * round_number : 3 * round_number + 3]
        assert mark["args"]["i"] == round_number
        assert write["args"]["buf"] == f"line {2 * round_number}\n"
    assert [event["ts_ns"] for event in events] == sorted(event["ts_ns"] for event in events)
    assert summary["lost"] == 0


def test_pid_traces_only_that_process(calls: Path) -> None:
    target = subprocess.Popen([str(calls), "1", "0", "3000"], stdout=subprocess.DEVNULL)
    other = subprocess.Popen(["sh", "-c", "for i in 1 2 3 4 5 6; do sleep 0.2; done"])
    try:
        time.sleep(0.2)
        tracer = Background("attach", "--json", "-p", str(target.pid), "sys:*",
                            "--duration", "1.5")
        tracer.ready()
        status, out, err = tracer.finish()
        assert status == 0, err
        pids = {json.loads(line)["pid"] for line in out.splitlines()[:-1]}
        assert pids <= {target.pid}
    finally:
        for process in (target, other):
            process.kill()
            process.wait()


def test_tracefs_backend_refuses_kernel_probes() -> None:
    result = run_rawprobe("attach", "--backend", "tracefs", "sys:openat", "--", "true",
                          check_status=2)
    assert "--backend bpf" in result.stderr


def test_unknown_system_call_is_refused_with_suggestions() -> None:
    result = run_rawprobe("attach", "sys:opnat", "--", "true", check_status=2)
    assert "openat" in result.stderr
    result = run_rawprobe("attach", "sys:open", "sys:open*", "--", "true", check_status=2)
    assert "both named 'open'" in result.stderr


# -- rawprobe syscalls, list, the library ----------------------------------------------------


def syscalls_json(*args: str) -> dict[str, Any]:
    result = run_rawprobe("syscalls", "--json", *args, check_status=0)
    return json.loads(result.stdout.splitlines()[-2])  # type: ignore[no-any-return]


def test_syscalls_failed_min_duration_and_by_pid(calls: Path) -> None:
    table = syscalls_json("--failed", "--", str(calls), "4", "2", "0")
    rows = {row["syscall"]: (row["calls"], row["errors"]) for row in table["syscalls"]}
    assert rows["openat"] == (8, 8)  # and the loader's failures (access of ld.so.preload)
    assert all(calls == errors for calls, errors in rows.values())
    table = syscalls_json("--min-duration", "100ms", "--", str(calls), "2", "0", "200")
    assert [(row["syscall"], row["calls"]) for row in table["syscalls"]] == [("clock_nanosleep", 1)]
    assert table["syscalls"][0]["total_ns"] >= 200_000_000
    table = syscalls_json("--by", "pid", "getppid", "--", "sh", "-c",
                          f"{calls} 2 0 0; {calls} 3 0 0")
    per_pid = {row["pid"]: row["calls"] for row in table["syscalls"]}
    assert sorted(per_pid.values())[-2:] == [2, 3]  # and the shell's own, if it asks
    assert len(per_pid) >= 2


def test_syscalls_table_and_histograms(calls: Path) -> None:
    result = run_rawprobe("syscalls", "--hist", "getppid", "write", "--", str(calls), "6", "0",
                          "0", check_status=0)
    assert "% time     seconds  usecs/call     calls    errors syscall" in result.stdout
    assert any(line.split()[-2:] == ["6", "getppid"] for line in result.stdout.splitlines())
    assert "@getppid (ns):" in result.stdout


def test_library_syscall_totals(calls: Path) -> None:
    spec = rawprobe.AggregationSpec("syscalls")
    with rawprobe.Tracer(command=[str(calls), "5", "1", "0"], aggregation=spec) as tracer:
        tracer.add("sys:open*")
        tracer.add("sys:getppid")
        tracer.run(30)
        table = tracer.aggregates()
    assert isinstance(table, rawprobe.SyscallTable)
    rows = {row.syscall: row for row in table.total().rows()}
    assert (rows["getppid"].calls, rows["getppid"].errors) == (5, 0)
    assert rows["openat"].errors == 5


def test_list_syscalls_and_tracepoints() -> None:
    result = run_rawprobe("list", "--syscalls", "--json", "openat", check_status=0)
    (entry,) = json.loads(result.stdout)
    assert entry["name"] == "openat" and entry["number"] is not None
    assert [arg["name"] for arg in entry["args"]] == ["dfd", "filename", "flags", "mode"]
    result = run_rawprobe("list", "--tracepoints", "sched:sched_process_e*", check_status=0)
    assert "sched:sched_process_exec  (__data_loc char[] filename, pid_t pid, pid_t old_pid)" in (
        result.stdout)
    run_rawprobe("list", check_status=2)

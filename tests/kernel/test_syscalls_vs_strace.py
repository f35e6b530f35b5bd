"""sys: probes and ``rawprobe syscalls`` against strace.

For deterministic programs (one of the tests' own, and ``ls``, ``cat``, ``sh -c``), the
sequence of system call names and return values rawprobe records for each process equals the
one ``strace -f`` writes, and the per-system-call counts of ``rawprobe syscalls`` equal
``strace -f -c``'s, children included. Both run with address randomization off (``setarch
-R``), so the addresses mmap and brk return are the same in both runs; process ids, which are
not, are compared by the order in which the processes appear.

The argument values of openat, read, write, mmap, clone, clone3 and execve equal what a test
program knows it passed; the strings it passes lie in pages of a file it mapped and never
touched, a megabyte apart (beyond the kernel's fault-around), so the kernel is the first to
read them (rawprobe reads them at exit, execve's at entry and, failing that, from the new
program's stack).
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from helpers import build_c, rawprobe_argv, require_tool, run_rawprobe

from rawprobe._syscalls import errno_number
from rawprobe._syscalls._constants import KERNEL_INTERNAL_ERRNOS

pytestmark = pytest.mark.kernel

# Pages of the data file the program maps, a megabyte apart.
SPACING = 1 << 20
ARGS_PROGRAM = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define SPACING (1 << 20)
extern char **environ;

/* argv[1]: a file holding, SPACING bytes apart, the path to open, the bytes to write, the
 * program to run and its two arguments (16 bytes apart). It is mapped and never touched.
 * argv[2]: a file to write to (the kernel reads what is written to a file; /dev/null would
 * not even look at it). */
int main(int argc, char **argv) {
    int data = open(argv[1], O_RDONLY | O_CLOEXEC);
    char *page = mmap(NULL, 4 * SPACING, PROT_READ, MAP_PRIVATE, data, 0);
    int fd = syscall(SYS_openat, AT_FDCWD, page, O_RDONLY | O_CLOEXEC);
    char buf[64];
    long got = syscall(SYS_read, fd, buf, sizeof buf);
    int null = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    long put = syscall(SYS_write, null, page + SPACING, 11);
    void *map = (void *)syscall(SYS_mmap, NULL, 3 * 4096, PROT_READ | PROT_WRITE,
                                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    long child = syscall(SYS_clone, SIGCHLD, 0, NULL, NULL, 0);
    if (child == 0)
        _exit(3);
    waitpid(child, NULL, 0);
    struct clone_args args;
    memset(&args, 0, sizeof args);
    args.exit_signal = SIGCHLD;
    long child3 = syscall(SYS_clone3, &args, sizeof args);
    if (child3 == 0)
        _exit(4);
    waitpid(child3, NULL, 0);
    printf("fd %d\nread %ld\nbuf %p\nnull %d\nwrite %ld\nmap %p\nclone %ld\nclone3 %ld\n",
           fd, got, (void *)buf, null, put, map, child, child3);
    fflush(stdout);
    char *exec_argv[] = {page + 3 * SPACING, page + 3 * SPACING + 16, NULL};
    syscall(SYS_execve, page + 2 * SPACING, exec_argv, environ);
    return 1;
}
"""

# Every process's calls in one order, children included, and nothing left to chance.
SEQUENCE_PROGRAM = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    char buf[32];
    int fd = open(argv[1], O_RDONLY);
    read(fd, buf, sizeof buf);
    lseek(fd, 0, SEEK_SET);
    close(fd);
    open("/nonexistent/file", O_RDONLY);
    access(argv[1], R_OK);
    mkdir("/proc/forbidden", 0700);
    pid_t child = fork();
    if (child == 0) {
        write(1, "child\n", 6);
        execl("/bin/cat", "cat", argv[1], (char *)NULL);
        _exit(127);
    }
    waitpid(child, NULL, 0);
    getppid();
    write(1, "done\n", 5);
    return 0;
}
"""


@pytest.fixture(scope="module")
def setarch() -> list[str]:
    path = require_tool("setarch")
    return [path, "-R"]


def _data_file(directory: Path, target: Path) -> Path:
    """The file ARGS_PROGRAM maps: its strings SPACING bytes apart, the rest a hole."""
    path = directory / "strings.bin"
    with open(path, "wb") as file:
        for index, text in enumerate([str(target).encode(), b"hello world",
                                      b"/bin/true", b"true".ljust(16, b"\0") + b"arg-one"]):
            file.seek(index * SPACING)
            file.write(text + b"\0")
        file.truncate(4 * SPACING)
    return path


# -- rawprobe's records and strace's lines, as (name, return value) per process ---------------


def rawprobe_calls(argv: Sequence[str], tmp_path: Path, prefix: Sequence[str] = ()
                   ) -> list[dict[str, Any]]:
    """Run ``argv`` under ``rawprobe attach --json 'sys:*'``; the records, in order."""
    out = tmp_path / "rawprobe.jsonl"
    result = subprocess.run([*prefix, *rawprobe_argv("attach", "--json", "-o", str(out),
                                                      "--ring-size", str(32 << 20), "sys:*",
                                                      "--", *argv)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    summary = records.pop()["summary"]
    assert summary["lost"] == 0, summary
    return records


_STRACE_LINE = re.compile(r"(\d+)\s+(.*)$")
_CALL = re.compile(r"([a-z0-9_]+)\(")
_RESUMED = re.compile(r"<\.\.\. ([a-z0-9_]+) resumed>")
_RETURN = re.compile(r"\)\s+= (\?|0x[0-9a-f]+|-?\d+)(?: ([A-Z_0-9]+))?")


def _strace_return(text: str) -> int | None:
    matches = list(_RETURN.finditer(text))
    assert matches, text
    match = matches[-1]
    value, name = match.group(1), match.group(2)
    if value == "?" and name is None:
        return None
    if name is not None:
        internal = {entry[0]: number for number, entry in KERNEL_INTERNAL_ERRNOS.items()}
        return -(internal[name] if name in internal else errno_number(name))
    return int(value, 0)


def strace_calls(argv: Sequence[str], tmp_path: Path, prefix: Sequence[str] = ()
                 ) -> list[tuple[int, str, int | None]]:
    """Run ``argv`` under ``strace -f``; (pid, name, return value) of each call, in order."""
    strace = require_tool("strace")
    out = tmp_path / "strace.txt"
    result = subprocess.run([*prefix, strace, "-f", "-qq", "-o", str(out), *argv],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    calls: list[tuple[int, str, int | None]] = []
    pending: dict[int, tuple[int, str]] = {}  # pid -> (index in calls, name) unfinished
    for line in out.read_text().splitlines():
        match = _STRACE_LINE.match(line)
        if not match:
            continue
        pid, rest = int(match.group(1)), match.group(2)
        if rest.startswith(("---", "+++")):
            continue
        resumed = _RESUMED.match(rest)
        if resumed:
            index, name = pending.pop(pid)
            calls[index] = (pid, name, _strace_return(rest))
            continue
        call = _CALL.match(rest)
        assert call, line
        if rest.endswith("<unfinished ...>"):
            pending[pid] = (len(calls), call.group(1))
            calls.append((pid, call.group(1), None))
        else:
            calls.append((pid, call.group(1), _strace_return(rest)))
    return calls


def by_process(calls: Sequence[tuple[int, str, int | None]]) -> list[list[tuple[str, Any]]]:
    """Per process, in order of first appearance: (name, return value), with process ids
    among the return values replaced by that process's place (they differ between runs), and
    getppid's value left out (the parent of the first is the tracer).

    Where a signal arrives depends on timing (a shell's SIGCHLD comes before or during its
    wait4), so the signal handler's return and calls the signal interrupted (to be restarted,
    -ERESTART*) are left out of both sides.
    """
    restarted = {-number for number in KERNEL_INTERNAL_ERRNOS}
    calls = [call for call in calls if call[1] != "rt_sigreturn" and call[2] not in restarted]
    order: list[int] = []
    for pid, _name, _ret in calls:
        if pid not in order:
            order.append(pid)
    sequences: list[list[tuple[str, Any]]] = [[] for _ in order]
    for pid, name, ret in calls:
        value: Any = ret
        if ret in order:
            value = f"pid{order.index(ret)}"
        if name == "getppid" and order.index(pid) == 0:
            value = "parent"
        sequences[order.index(pid)].append((name, value))
    return sequences


def _ours(records: list[dict[str, Any]]) -> list[tuple[int, str, int | None]]:
    return [(record["pid"], record["event"], record["ret"]) for record in records]


def _compare(argv: Sequence[str], tmp_path: Path, setarch: list[str]) -> None:
    theirs = by_process(strace_calls(argv, tmp_path, setarch))
    ours = by_process(_ours(rawprobe_calls(argv, tmp_path, setarch)))
    assert len(ours) == len(theirs)
    for index, (mine, strace) in enumerate(zip(ours, theirs, strict=True)):
        assert mine == strace, f"process {index} of {argv}"


# -- the tests ----------------------------------------------------------------------------------


def test_sequence_of_a_test_program_with_a_child(tmp_path: Path, setarch: list[str]) -> None:
    program = build_c(SEQUENCE_PROGRAM, name="sequence", flags=("-O1",))
    target = tmp_path / "input.txt"
    target.write_text("some input for the program\n")
    _compare([str(program), str(target)], tmp_path, setarch)


@pytest.mark.parametrize("argv", [["ls", "-a", "/"], ["cat", "/etc/hostname"],
                                  ["sh", "-c", "cat /etc/hostname; ls / >/dev/null"]],
                         ids=["ls", "cat", "sh-c"])
def test_sequence_of_common_commands(argv: list[str], tmp_path: Path, setarch: list[str]
                                     ) -> None:
    _compare(argv, tmp_path, setarch)


def _strace_counts(argv: Sequence[str], tmp_path: Path) -> dict[str, tuple[int, int]]:
    strace = require_tool("strace")
    out = tmp_path / "strace-c.txt"
    subprocess.run([strace, "-f", "-c", "-o", str(out), *argv], capture_output=True,
                   check=True, timeout=120)
    counts = {}
    for line in out.read_text().splitlines():
        fields = line.split()
        if len(fields) < 5 or not fields[0][0].isdigit() or fields[-1] == "total":
            continue
        errors = int(fields[4]) if len(fields) == 6 else 0
        counts[fields[-1]] = (int(fields[3]), errors)
    return counts


@pytest.mark.parametrize("argv", [["sh", "-c", "cat /etc/hostname; ls / >/dev/null"],
                                  ["ls", "-l", "/usr"]], ids=["sh-c", "ls"])
def test_counts_equal_strace_c(argv: list[str], tmp_path: Path) -> None:
    theirs = _strace_counts(argv, tmp_path)
    result = run_rawprobe("syscalls", "--json", "--", *argv, check_status=0)
    table, summary = (json.loads(line) for line in result.stdout.splitlines()[-2:])
    assert summary["summary"]["lost"] == 0
    ours = {row["syscall"]: (row["calls"], row["errors"]) for row in table["syscalls"]}
    assert ours == theirs
    assert table["total"]["calls"] == sum(calls for calls, _errors in theirs.values())


def test_counts_of_the_dd_workload(tmp_path: Path) -> None:
    argv = ["dd", "if=/dev/zero", "of=/dev/null", "bs=1", "count=20000"]
    theirs = _strace_counts(argv, tmp_path)
    result = run_rawprobe("syscalls", "--json", "--", *argv, check_status=0)
    table = json.loads(result.stdout.splitlines()[-2])
    ours = {row["syscall"]: (row["calls"], row["errors"]) for row in table["syscalls"]}
    assert ours == theirs
    assert ours["read"] == (20003, 0) and ours["write"] == (20003, 0)


def test_argument_values_equal_what_the_program_passed(tmp_path: Path) -> None:
    program = build_c(ARGS_PROGRAM, name="arguments", flags=("-O1",))
    target = tmp_path / "hello.txt"
    target.write_text("the contents of the file that is read\n")
    data = _data_file(tmp_path, target)
    out = tmp_path / "events.jsonl"
    result = run_rawprobe("attach", "--json", "-o", str(out),
                          "sys:openat", "sys:read", "sys:write", "sys:mmap", "sys:clone",
                          "sys:clone3", "sys:execve", "--", str(program), str(data),
                          str(tmp_path / "written"), check_status=0)
    said = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    records = [json.loads(line) for line in out.read_text().splitlines()][:-1]
    main = records[0]["pid"]

    def one(name: str, **match: Any) -> dict[str, Any]:
        found = [r for r in records if r["event"] == name and r["pid"] == main
                 and all(r["args"].get(key) == value for key, value in match.items())]
        assert len(found) == 1, (name, match, [r for r in records if r["event"] == name])
        assert "faults" not in found[0], found[0]
        return found[0]

    opened = one("openat", filename=str(target))
    # mode is whatever the register held: the program passed none (strace leaves it out).
    assert {**opened["args"], "mode": None} == {"dfd": -100, "filename": str(target),
                                                "flags": "O_RDONLY|O_CLOEXEC", "mode": None}
    assert opened["ret"] == int(said["fd"])
    read = one("read", fd=int(said["fd"]))
    assert read["args"] == {"fd": int(said["fd"]), "buf": target.read_text(), "count": 64}
    assert read["ret"] == int(said["read"]) == len(target.read_text())
    written = one("write", buf="hello world")
    assert written["args"] == {"fd": int(said["null"]), "buf": "hello world", "count": 11}
    assert written["ret"] == int(said["write"]) == 11
    (mapped,) = [r for r in records if r["event"] == "mmap" and r["ret"] == int(said["map"], 16)]
    assert mapped["args"] == {"addr": "NULL", "len": 12288, "prot": "PROT_READ|PROT_WRITE",
                              "flags": "MAP_PRIVATE|MAP_ANONYMOUS", "fd": -1, "off": "0"}
    cloned = one("clone", clone_flags="SIGCHLD")
    assert cloned["args"] == {"clone_flags": "SIGCHLD", "newsp": "NULL", "parent_tidptr": "NULL",
                              "child_tidptr": "NULL", "tls": "NULL"}
    assert cloned["ret"] == int(said["clone"])
    cloned3 = one("clone3")
    assert cloned3["args"]["size"] == 88
    assert cloned3["args"]["uargs"] == {"flags": 0, "pidfd": 0, "child_tid": 0, "parent_tid": 0,
                                        "exit_signal": 17, "stack": 0, "stack_size": 0, "tls": 0,
                                        "set_tid": 0, "set_tid_size": 0, "cgroup": 0}
    assert cloned3["ret"] == int(said["clone3"])
    execs = [r for r in records if r["event"] == "execve" and r["pid"] == main]
    assert execs[-1]["args"]["filename"] == "/bin/true"
    assert execs[-1]["args"]["argv"] == ["true", "arg-one"]
    assert execs[-1]["ret"] == 0 and "faults" not in execs[-1]


def test_text_lines_read_like_strace(tmp_path: Path) -> None:
    program = build_c(ARGS_PROGRAM, name="arguments", flags=("-O1",))
    target = tmp_path / "hello.txt"
    target.write_text("hello\n")
    data = _data_file(tmp_path, target)
    result = run_rawprobe("attach", "sys:openat", "sys:write", "sys:exit_group", "--",
                          str(program), str(data), str(tmp_path / "written"), check_status=0)
    lines = result.stdout.splitlines()
    assert any(re.search(rf' openat\(AT_FDCWD, "{re.escape(str(target))}", '
                         r"O_RDONLY\|O_CLOEXEC\) = \d+ <\d+\.\d{6}>$", line) for line in lines)
    assert any(re.search(r' write\(\d+, "hello world", 11\) = 11 <\d+\.\d{6}>$', line)
               for line in lines)
    assert any(line.endswith("exit_group(0) = ? <0.000000>") for line in lines)

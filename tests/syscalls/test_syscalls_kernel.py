"""The tables and the catalogue against the running kernel: its tracefs and its BTF."""

from __future__ import annotations

import os
import re
import subprocess

import pytest
from helpers import build_c, require_kernel_tracing, require_tool, skip_or_fail

from rawprobe._errors import KernelFeatureError
from rawprobe._syscalls import (
    SyscallCatalog,
    c_type,
    find_tracefs_events,
    list_tracepoints,
    load_catalog,
    read_tracepoint,
    syscall_name_for_event,
)
from rawprobe._syscalls._ctypes import _SCALARS

pytestmark = pytest.mark.kernel

# Calls each system call number given on its command line with six -1 arguments, once a byte
# arrives on stdin (so the test can point tracefs at its pid first).
CALL_BY_NUMBER = r"""
#include <stdlib.h>
#include <unistd.h>
#include <sys/syscall.h>
int main(int argc, char **argv) {
    char go;
    if (read(0, &go, 1) != 1) return 1;
    for (int i = 1; i < argc; i++) syscall(atol(argv[i]), -1L, -1L, -1L, -1L, -1L, -1L);
    return 0;
}
"""
# System calls for which six -1 arguments only earn an error (EBADF, EFAULT, EINVAL) or do
# nothing that outlives the process.
HARMLESS = (
    "read", "write", "close", "fstat", "stat", "lstat", "lseek", "mprotect", "munmap", "brk",
    "ioctl", "pread64", "pwrite64", "readv", "writev", "access", "pipe", "select", "sched_yield",
    "mremap", "msync", "mincore", "madvise", "dup", "dup2", "nanosleep", "getitimer", "getpid",
    "sendfile", "socket", "connect", "accept", "shutdown", "bind", "listen", "getsockname",
    "uname", "fcntl", "flock", "fsync", "fdatasync", "truncate", "ftruncate", "getdents",
    "getcwd", "chdir", "fchdir", "rename", "mkdir", "rmdir", "creat", "link", "unlink",
    "symlink", "readlink", "chmod", "fchmod", "chown", "fchown", "lchown", "umask",
    "gettimeofday", "getrlimit", "getrusage", "sysinfo", "times", "getuid", "getgid", "geteuid",
    "getegid", "getppid", "getpgrp", "statfs", "fstatfs", "getpriority", "sched_getparam",
    "openat", "mkdirat", "newfstatat", "unlinkat", "renameat", "readlinkat", "fchmodat",
    "faccessat", "utimensat", "epoll_create", "epoll_ctl", "dup3", "pipe2", "inotify_init1",
    "getrandom", "memfd_create", "statx", "close_range", "gettid", "time", "clock_gettime",
    "umount2", "faccessat2", "openat2",
)


@pytest.fixture(scope="module")
def catalog() -> SyscallCatalog:
    require_kernel_tracing()
    try:
        return load_catalog()
    except KernelFeatureError as error:
        skip_or_fail(str(error))
        raise AssertionError("unreachable") from error


def test_every_argument_type_is_known(catalog: SyscallCatalog) -> None:
    unknown = {(name, arg.name, arg.c_type.spelling) for name in catalog.names()
               for arg in catalog.lookup(name).args or () if not arg.c_type.known}
    assert not unknown, f"add these C types to rawprobe/_syscalls/_ctypes.py: {unknown}"


def test_every_kernel_syscall_event_has_a_name(catalog: SyscallCatalog) -> None:
    numbers = catalog.numbers
    events = {sig.event for sig in catalog.signatures.values() if sig.event}
    named = {syscall_name_for_event(event, numbers) for event in events}
    # Only system calls newer than the headers lack a number; the common ones must resolve.
    for name in ("read", "openat", "stat", "fstat", "lstat", "uname", "sendfile", "umount2",
                 "newfstatat", "pread64", "clone", "execve", "exit_group"):
        assert name in named and catalog.lookup(name).number == numbers.by_name[name]


def test_numbers_agree_with_the_kernels_own(catalog: SyscallCatalog) -> None:
    """Run system calls by number; tracefs says, for each, which one the kernel ran."""
    instances = find_tracefs_events().parent / "instances"
    if not instances.is_dir():
        skip_or_fail("tracefs has no instances directory")
    instance = instances / f"rawprobe_sysnr_{os.getpid()}"
    names = [name for name in HARMLESS if catalog.lookup(name).traceable]
    numbers = [catalog.numbers.by_name[name] for name in names]
    program = build_c(CALL_BY_NUMBER, name="call_by_number")
    instance.mkdir()
    try:
        (instance / "options" / "fields").write_text("1")  # prints __syscall_nr
        process = subprocess.Popen([str(program), *map(str, numbers)], stdin=subprocess.PIPE)
        (instance / "set_event_pid").write_text(str(process.pid))
        (instance / "events" / "syscalls" / "enable").write_text("1")
        process.communicate(b"x", timeout=30)
        (instance / "events" / "syscalls" / "enable").write_text("0")
        trace = (instance / "trace").read_text()
    finally:
        instance.rmdir()
    seen: dict[int, str] = {}
    for match in re.finditer(r"sys_enter_(\w+): __syscall_nr=0x[0-9a-f]+ \((\d+)\)", trace):
        seen[int(match.group(2))] = match.group(1)
    missing = [name for name, number in zip(names, numbers, strict=True) if number not in seen]
    assert not missing, f"no trace of {missing}"
    wrong = {number: (catalog.numbers.by_number.get(number), event)
             for number, event in seen.items()
             if syscall_name_for_event(event, catalog.numbers)
             != catalog.numbers.by_number.get(number, event)}
    assert not wrong, f"table name vs kernel event for these numbers: {wrong}"


def test_typedef_sizes_agree_with_btf() -> None:
    """The hand-kept C type table against the kernel's BTF (bpftool's C dump)."""
    require_kernel_tracing()
    bpftool = require_tool("bpftool")
    dump = subprocess.run([bpftool, "btf", "dump", "file", "/sys/kernel/btf/vmlinux", "format",
                           "c"], capture_output=True, text=True, check=True).stdout
    typedefs = {m.group(2): m.group(1) for m in
                re.finditer(r"^typedef ([\w ]+?) (\w+);$", dump, re.M)}
    base_types = {"char": (1, True), "signed char": (1, True), "unsigned char": (1, False),
                  "short int": (2, True), "short unsigned int": (2, False), "int": (4, True),
                  "unsigned int": (4, False), "long int": (8, True),
                  "long unsigned int": (8, False), "long long int": (8, True),
                  "long long unsigned int": (8, False), "_Bool": (1, False)}
    checked = 0
    for name, expected in _SCALARS.items():
        if name not in typedefs:
            continue
        target = name
        while target in typedefs:
            target = typedefs[target]
        assert base_types[target] == expected, f"{name} is {target} in BTF"
        assert (c_type(name).size, c_type(name).signed) == expected
        checked += 1
    assert checked >= 25


def test_tracepoints_of_this_kernel() -> None:
    require_kernel_tracing()
    try:
        switch = read_tracepoint("sched", "sched_switch")
    except KernelFeatureError as error:
        skip_or_fail(str(error))
        return
    assert {"prev_comm", "prev_pid", "next_comm", "next_pid"} <= {f.name for f in switch.fields}
    assert next(f for f in switch.fields if f.name == "prev_comm").is_string
    listed = list_tracepoints("syscalls:sys_enter_openat")
    assert [entry.name for entry in listed] == ["syscalls:sys_enter_openat"]
    assert [name for name, _ in listed[0].fields] == ["__syscall_nr", "dfd", "filename", "flags",
                                                      "mode"]

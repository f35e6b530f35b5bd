"""The formatter against strace itself.

A small C program makes system calls with a spread of flags, modes and strings. strace runs it
twice: once as usual, once with ``-X raw`` (every named constant as a number, strings still
read). Each raw line gives the values the BPF side would capture; the formatter's rendering of
them must equal what strace wrote in the usual run, argument by argument, for every argument
rawprobe decodes (strace's structures such as ``{st_mode=...}`` are left out: rawprobe writes
their addresses).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from helpers import build_c, require_kernel_tracing, require_tool, skip_or_fail

from rawprobe._errors import KernelFeatureError
from rawprobe._syscalls import (
    SyscallCatalog,
    UserBytes,
    errno_number,
    format_syscall,
    load_catalog,
)
from rawprobe._syscalls._format import ArgValue

pytestmark = pytest.mark.kernel

PROGRAM = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2 || chdir(argv[1]) != 0) return 2;
    write(-1, "rawprobe-strace-start", 21);
    int fd = openat(AT_FDCWD, ".", O_RDONLY|O_NONBLOCK|O_CLOEXEC|O_DIRECTORY);
    close(fd);
    fd = open("out.txt", O_WRONLY|O_CREAT|O_TRUNC|O_APPEND|O_SYNC|O_NOFOLLOW, 0640);
    write(fd, "hello\n\t\"q\\\x01\x7f\xff" "0x", 16);
    write(fd, "\x01" "7\x01" "8\x1b[0m\r\v\f\a\b\xc3\xa9", 16);
    lseek(fd, 0, SEEK_SET);
    lseek(fd, 5, SEEK_END);
    fcntl(fd, F_GETFD);
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    fcntl(fd, F_SETFL, O_NONBLOCK|O_APPEND);
    close(fcntl(fd, F_DUPFD_CLOEXEC, 10));
    close(fd);
    openat(AT_FDCWD, "/nonexistent/x", O_RDONLY);
    close(syscall(SYS_openat, AT_FDCWD, ".", O_RDWR|O_TMPFILE|0x20000000, 0600));
    syscall(SYS_openat, -1, NULL, O_RDONLY);
    syscall(SYS_openat, AT_FDCWD, "a\nb\"", O_RDONLY|O_NOATIME|O_DSYNC|O_EXCL|O_NOCTTY);
    syscall(SYS_openat, AT_FDCWD, "sync", O_WRONLY|O_CREAT|O_EXCL|O_DIRECT|O_LARGEFILE, 0);
    access("out.txt", R_OK|W_OK);
    access(".", F_OK);
    access("/nope", X_OK);
    faccessat(AT_FDCWD, "/etc", R_OK|X_OK, AT_EACCESS);
    void *p = mmap(NULL, 8192, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0);
    mprotect(p, 4096, PROT_NONE);
    mprotect(p, 4096, PROT_READ|PROT_EXEC);
    munmap(p, 8192);
    mmap(NULL, 4096, PROT_READ|PROT_EXEC, MAP_SHARED|MAP_FIXED_NOREPLACE|MAP_POPULATE, -1, 0x3000);
    mmap((void *)0x10000, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS|MAP_HUGETLB|(21 << 26), -1, 0);
    mmap(NULL, 4096, PROT_WRITE,
         MAP_PRIVATE|MAP_ANONYMOUS|MAP_32BIT|MAP_STACK|MAP_NORESERVE, -1, 0);
    kill(-1234567, SIGTERM);
    kill(-1234567, 0);
    syscall(SYS_kill, -1234567, 40);
    syscall(SYS_tgkill, -1234567, -1234567, SIGUSR1);
    close(socket(AF_INET, SOCK_STREAM|SOCK_CLOEXEC, 0));
    close(socket(AF_UNIX, SOCK_DGRAM|SOCK_NONBLOCK, 0));
    close(socket(AF_NETLINK, SOCK_RAW|SOCK_CLOEXEC|SOCK_NONBLOCK, 0));
    umask(022);
    mkdir("d", 0755);
    rmdir("d");
    chmod("none", 04755);
    fchmodat(AT_FDCWD, "none", 0600, 0);
    char buf[64];
    fd = open("out.txt", O_RDONLY);
    read(fd, buf, 64);
    read(fd, buf, 0);
    close(fd);
    syscall(SYS_read, 99, NULL, 10);
    unlinkat(AT_FDCWD, "out.txt", 0);
    unlinkat(AT_FDCWD, "none", AT_REMOVEDIR);
    int pipe_fds[2];
    pipe2(pipe_fds, O_CLOEXEC|O_NONBLOCK);
    dup3(pipe_fds[0], 20, O_CLOEXEC);
    close(20);
    int tid = 0;
    long child = syscall(SYS_clone, CLONE_CHILD_SETTID|SIGCHLD, NULL, NULL, &tid, 0);
    if (child == 0) _exit(0);
    wait4(-1, NULL, __WALL, NULL);
    madvise(NULL, 0, MADV_DONTNEED);
    write(1, "abcdefghijklmnopqrstuvwxyz0123456789ABCDEF", 42);
    return 0;
}
"""

_LINE = re.compile(r"^(?P<name>\w+)\((?P<args>.*)\)\s+= (?P<ret>.*)$")
_ADDRESS = re.compile(r"0x[0-9a-f]{8,}")
_ESCAPES = {"n": 10, "t": 9, "r": 13, "v": 11, "f": 12, '"': 34, "\\": 92}


def split_arguments(text: str) -> list[str]:
    """strace's argument list cut at its top-level commas."""
    parts, depth, current, index = [], 0, "", 0
    while index < len(text):
        char = text[index]
        if char == '"':
            end = index + 1
            while text[end] != '"':
                end += 2 if text[end] == "\\" else 1
            current += text[index:end + 1]
            index = end + 1
            continue
        if char in "[{(":
            depth += 1
        elif char in "]})":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
        index += 1
    if current.strip():
        parts.append(current.strip())
    return parts


def unquote(token: str) -> UserBytes:
    """A strace string token (``"a\\n"...``) back to the bytes it shows."""
    truncated = token.endswith("...")
    body = token[1:token.rindex('"')]
    data, index = bytearray(), 0
    while index < len(body):
        if body[index] != "\\":
            data.append(ord(body[index]))
            index += 1
            continue
        escape = body[index + 1]
        if escape in _ESCAPES:
            data.append(_ESCAPES[escape])
            index += 2
        elif escape == "x":
            data.append(int(body[index + 2:index + 4], 16))
            index += 4
        else:
            digits = re.match(r"[0-7]{1,3}", body[index + 1:])
            assert digits is not None, token
            data.append(int(digits.group(0), 8))
            index += 1 + len(digits.group(0))
    return UserBytes(bytes(data), truncated)


def raw_value(token: str) -> ArgValue | str:
    """What the BPF side would have captured for a ``strace -X raw`` argument; the string
    ``skip`` for a structure strace read and rawprobe does not."""
    token = token.split("=", 1)[1] if re.match(r"^\w+=", token) else token
    if token.startswith('"'):
        return unquote(token)
    if token == "NULL":
        return 0
    if token.startswith(("{", "[", "~[")):
        return "skip"
    value = 0
    for part in token.split("|"):
        value |= int(part, 8) if re.fullmatch(r"0[0-7]+", part) else int(part, 0)
    return value


def return_value(text: str) -> int | None:
    if text.startswith("?"):
        return None
    first, *rest = text.split()
    if first == "-1":
        number = errno_number(rest[0])
        assert number is not None, text
        return -number
    return int(first, 8) if re.fullmatch(r"0[0-7]+", first) else int(first, 0)


def strace_lines(log: Path) -> list[re.Match[str]]:
    lines = log.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if "rawprobe-strace-start" in line)
    matches = []
    for line in lines[start + 1:]:
        match = _LINE.match(line)
        if match and match.group("name") != "exit_group":
            matches.append(match)
    return matches


@pytest.fixture(scope="module")
def catalog() -> SyscallCatalog:
    require_kernel_tracing()
    try:
        return load_catalog()
    except KernelFeatureError as error:
        skip_or_fail(str(error))
        raise AssertionError("unreachable") from error


def test_formatter_writes_what_strace_writes(catalog: SyscallCatalog, tmp_path: Path) -> None:
    strace = require_tool("strace")
    setarch = require_tool("setarch")
    program = build_c(PROGRAM, name="syscall_spread", flags=("-O0",))
    logs = {}
    for style in ("decoded", "raw"):
        workdir = tmp_path / style
        workdir.mkdir()
        log = tmp_path / f"{style}.log"
        style_flags = ["-X", "raw"] if style == "raw" else []
        subprocess.run([setarch, "-R", strace, *style_flags, "-o", str(log), str(program),
                        str(workdir)], check=True, stdout=subprocess.DEVNULL, timeout=60)
        logs[style] = strace_lines(log)
    decoded, raw = logs["decoded"], logs["raw"]
    assert [m.group("name") for m in decoded] == [m.group("name") for m in raw]
    assert len(decoded) > 50
    differences = []
    for want, have in zip(decoded, raw, strict=True):
        signature = catalog.lookup(want.group("name"))
        raw_tokens = split_arguments(have.group("args"))
        values = [raw_value(token) for token in raw_tokens]
        if signature.name == "clone":
            names = {"child_stack": "newsp", "flags": "clone_flags",
                     "child_tidptr": "child_tidptr", "parent_tid": "parent_tidptr"}
            by_name = {names[token.split("=")[0]]: value
                       for token, value in zip(raw_tokens, values, strict=True)}
            args: list[ArgValue] | dict[str, ArgValue] = {
                key: value for key, value in by_name.items() if value != "skip"}
        else:
            args = [0 if value == "skip" else value for value in values]
        ours = format_syscall(signature, args, return_value(want.group("ret")))
        mine = _LINE.match(ours)
        assert mine is not None, ours
        expected_args = split_arguments(want.group("args"))
        my_args = split_arguments(mine.group("args"))
        for index, expected in enumerate(expected_args):
            if index < len(values) and values[index] == "skip":
                continue
            got = my_args[index] if index < len(my_args) else "<missing>"
            if _ADDRESS.sub("ADDR", got) != _ADDRESS.sub("ADDR", expected):
                differences.append(f"{want.group(0)}\n    arg {index}: rawprobe {got}")
        if len(my_args) != len(expected_args):
            differences.append(f"{want.group(0)}\n    rawprobe: {ours}")
        if _ADDRESS.sub("ADDR", mine.group("ret")) != _ADDRESS.sub("ADDR", want.group("ret")):
            differences.append(f"{want.group(0)}\n    return: rawprobe {mine.group('ret')}")
    assert not differences, "\n".join(differences)

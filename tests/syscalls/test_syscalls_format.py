"""The strace-like formatter, flag sets and the strace -c summary, on plain values."""

from __future__ import annotations

import json

import pytest

from rawprobe._syscalls import (
    Display,
    SyscallSignature,
    SyscallSummary,
    UserBytes,
    errno_description,
    errno_name,
    errno_number,
    format_duration,
    format_return,
    format_syscall,
    quote_bytes,
    signature_from_fields,
    split_return,
    syscall_record,
)
from rawprobe._syscalls._flags import render_bits, render_named, render_octal, render_signal

# Prototypes as Linux 6.18's tracefs shows them (events/syscalls/sys_enter_*/format).
PROTOTYPES: dict[str, list[tuple[str, str]]] = {
    "openat": [("int", "dfd"), ("const char *", "filename"), ("int", "flags"),
               ("umode_t", "mode")],
    "open": [("const char *", "filename"), ("int", "flags"), ("umode_t", "mode")],
    "read": [("unsigned int", "fd"), ("char *", "buf"), ("size_t", "count")],
    "write": [("unsigned int", "fd"), ("const char *", "buf"), ("size_t", "count")],
    "close": [("unsigned int", "fd")],
    "mmap": [("unsigned long", "addr"), ("unsigned long", "len"), ("unsigned long", "prot"),
             ("unsigned long", "flags"), ("unsigned long", "fd"), ("unsigned long", "off")],
    "access": [("const char *", "filename"), ("int", "mode")],
    "kill": [("pid_t", "pid"), ("int", "sig")],
    "clone": [("unsigned long", "clone_flags"), ("unsigned long", "newsp"),
              ("int *", "parent_tidptr"), ("int *", "child_tidptr"), ("unsigned long", "tls")],
    "fcntl": [("unsigned int", "fd"), ("unsigned int", "cmd"), ("unsigned long", "arg")],
    "mknodat": [("int", "dfd"), ("const char *", "filename"), ("umode_t", "mode"),
                ("unsigned int", "dev")],
    "socket": [("int", "family"), ("int", "type"), ("int", "protocol")],
    "umask": [("int", "mask")],
    "exit_group": [("int", "error_code")],
    "execve": [("const char *", "filename"), ("const char *const *", "argv"),
               ("const char *const *", "envp")],
    "brk": [("unsigned long", "brk")],
    "mount": [("char *", "dev_name"), ("char *", "dir_name"), ("char *", "type"),
              ("unsigned long", "flags"), ("void *", "data")],
    "getcwd": [("char *", "buf"), ("unsigned long", "size")],
    "unshare": [("unsigned long", "unshare_flags")],
}
AT_FDCWD_ZERO_EXTENDED = 0xFFFFFF9C
AT_FDCWD_SIGN_EXTENDED = 0xFFFFFFFFFFFFFF9C


def sig(name: str) -> SyscallSignature:
    return signature_from_fields(name, PROTOTYPES[name])


def line(name: str, args: list[object], ret: int | None, duration_ns: int | None = None) -> str:
    return format_syscall(sig(name), args, ret, duration_ns, machine="x86_64")  # type: ignore[arg-type]


# -- the brief's own examples ------------------------------------------------------------------

def test_openat_as_strace_writes_it() -> None:
    assert line("openat", [AT_FDCWD_ZERO_EXTENDED, b"/etc/hostname", 0o2000000, 0], 3, 12_345) \
        == 'openat(AT_FDCWD, "/etc/hostname", O_RDONLY|O_CLOEXEC) = 3 <0.000012>'


def test_failure_with_errno_name_and_text() -> None:
    assert line("openat", [AT_FDCWD_SIGN_EXTENDED, b"/nonexistent", 0, 0], -2) == \
        'openat(AT_FDCWD, "/nonexistent", O_RDONLY) = -1 ENOENT (No such file or directory)'
    assert errno_name(2) == "ENOENT" and errno_number("ENOENT") == 2
    assert split_return(-2) == (None, 2) and split_return(2**64 - 2) == (None, 2)
    assert split_return(-4096) == (-4096, None) and split_return(3) == (3, None)


def test_unknown_flag_bits_in_hex() -> None:
    flags = 0o2 | 0o20200000 | 0x20000000  # O_RDWR|O_TMPFILE|bit 29
    assert line("openat", [AT_FDCWD_ZERO_EXTENDED, b"/tmp", flags, 0o600], 3) == \
        'openat(AT_FDCWD, "/tmp", O_RDWR|O_TMPFILE|0x20000000, 0600) = 3'


# -- arguments -------------------------------------------------------------------------------

def test_mode_only_with_o_creat_or_o_tmpfile() -> None:
    assert line("open", [b"f", 0o1101, 0o644], 3) == 'open("f", O_WRONLY|O_CREAT|O_TRUNC, 0644) = 3'
    assert line("open", [b"f", 0o1001, 0o644], 3) == 'open("f", O_WRONLY|O_TRUNC) = 3'


def test_open_flags_in_straces_order() -> None:
    flags = 0o4000 | 0o2000000 | 0o200000  # O_NONBLOCK|O_CLOEXEC|O_DIRECTORY
    assert line("openat", [AT_FDCWD_ZERO_EXTENDED, b".", flags, 0], 3) == \
        'openat(AT_FDCWD, ".", O_RDONLY|O_NONBLOCK|O_CLOEXEC|O_DIRECTORY) = 3'
    # O_SYNC (__O_SYNC|O_DSYNC) claims its bits before O_DSYNC does.
    assert render_named(Display.OPEN_FLAGS, 0o4010001, "x86_64") == "O_WRONLY|O_SYNC"
    assert render_named(Display.OPEN_FLAGS, 0o10001, "x86_64") == "O_WRONLY|O_DSYNC"


def test_aarch64_flag_values() -> None:
    assert render_named(Display.OPEN_FLAGS, 0o40000, "aarch64") == "O_RDONLY|O_DIRECTORY"
    assert render_named(Display.OPEN_FLAGS, 0o40000, "x86_64") == "O_RDONLY|O_DIRECT"


def test_descriptors_are_ints_whatever_the_prototype_says() -> None:
    assert line("close", [0xFFFFFFFF], -9) == "close(-1) = -1 EBADF (Bad file descriptor)"
    assert line("mmap", [0, 8192, 3, 0x22, 0xFFFFFFFFFFFFFFFF, 0], 0x7F95_7771_4000) == \
        "mmap(NULL, 8192, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7f9577714000"


def test_mmap_fields() -> None:
    flags = 0x2 | 0x20 | 0x40000 | (21 << 26)
    assert line("mmap", [0x10000, 4096, 0, flags, 0xFFFFFFFF, 0x3000], -12) == (
        "mmap(0x10000, 4096, PROT_NONE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_HUGETLB|21<<MAP_HUGE_SHIFT,"
        " -1, 0x3000) = -1 ENOMEM (Cannot allocate memory)")


def test_access_modes() -> None:
    assert line("access", [b"/etc/passwd", 6], 0) == 'access("/etc/passwd", R_OK|W_OK) = 0'
    assert line("access", [b"/etc/passwd", 0], 0) == 'access("/etc/passwd", F_OK) = 0'


def test_signals() -> None:
    assert line("kill", [1234, 15], 0) == "kill(1234, SIGTERM) = 0"
    assert line("kill", [(-5) & 0xFFFFFFFF, 0], 0) == "kill(-5, 0) = 0"
    assert render_signal(34, "x86_64") == "SIGRT_2"
    assert render_signal(65, "x86_64") == "65"


def test_clone_named_arguments() -> None:
    flags = 0x01000000 | 0x00200000 | 17  # CLONE_CHILD_SETTID|CLONE_CHILD_CLEARTID|SIGCHLD
    assert line("clone", [flags, 0, 0, 0x7F00_0000_1A10, 0], 42) == (
        "clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD, "
        "child_tidptr=0x7f0000001a10) = 42")
    assert line("unshare", [0x20000 | 0x80], 0) == "unshare(CLONE_NEWTIME|CLONE_NEWNS) = 0"


def test_fcntl_third_argument_by_command() -> None:
    assert line("fcntl", [3, 1, 0], 1) == "fcntl(3, F_GETFD) = 1"
    assert line("fcntl", [3, 2, 1], 0) == "fcntl(3, F_SETFD, FD_CLOEXEC) = 0"
    assert line("fcntl", [3, 4, 0o4000], 0) == "fcntl(3, F_SETFL, O_RDONLY|O_NONBLOCK) = 0"
    assert line("fcntl", [3, 1030, 10], 11) == "fcntl(3, F_DUPFD_CLOEXEC, 10) = 11"


def test_file_modes_and_umask() -> None:
    assert line("mknodat", [AT_FDCWD_ZERO_EXTENDED, b"p", 0o10644, 0], 0) == \
        'mknodat(AT_FDCWD, "p", S_IFIFO|0644, 0) = 0'
    assert line("umask", [0o22], 0o77) == "umask(022) = 077"
    assert render_octal(0) == "000" and render_octal(0o4755) == "04755"


def test_sockets() -> None:
    assert line("socket", [2, 0x80001, 0], 3) == \
        "socket(AF_INET, SOCK_STREAM|SOCK_CLOEXEC, IPPROTO_IP) = 3"
    assert line("socket", [10, 3, 255], 3) == "socket(AF_INET6, SOCK_RAW, IPPROTO_RAW) = 3"
    assert line("socket", [16, 3, 0], 3) == "socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE) = 3"
    assert line("socket", [1, 0x802, 0], 4) == "socket(AF_UNIX, SOCK_DGRAM|SOCK_NONBLOCK, 0) = 4"


def test_no_return() -> None:
    assert line("exit_group", [0], None) == "exit_group(0) = ?"
    assert format_return(sig("exit_group"), 0) == "?"


def test_pointer_returns_and_null_arguments() -> None:
    assert line("brk", [0], 0x5555_5555_9000) == "brk(NULL) = 0x555555559000"


def test_restart_errors_after_a_signal() -> None:
    assert line("read", [0, 0x7FFC_0000_0000, 10], -512) == \
        "read(0, 0x7ffc00000000, 10) = ? ERESTARTSYS (To be restarted if SA_RESTART is set)"


def test_unknown_errno() -> None:
    assert format_return("read", -600) == "-1 ERRNO_600 (Unknown error 600)"
    assert errno_description(2) == "No such file or directory"


# -- strings ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("data", "quoted"), [
    (b"hello\n", r'"hello\n"'),
    (b'\t"q\\', r'"\t\"q\\"'),
    (b"\x017", r'"\0017"'),  # an octal digit follows: three digits
    (b"\x018", r'"\18"'),  # 8 is no octal digit
    (b"\x1b[0m\r\v\f\a\b", r'"\33[0m\r\v\f\7\10"'),
    (b"\xc3\xa9t\0", r'"\303\251t\0"'),
    (b"\x7f\xff0", r'"\177\3770"'),
    (b"", '""'),
    (b"a'b?", "\"a'b?\""),
])
def test_quote_bytes_like_strace(data: bytes, quoted: str) -> None:
    assert quote_bytes(data) == quoted


def test_buffers_cut_at_the_string_limit_paths_not() -> None:
    text = b"abcdefghijklmnopqrstuvwxyz0123456789ABCDEF"
    assert line("write", [1, text, 42], 42) == \
        'write(1, "abcdefghijklmnopqrstuvwxyz012345"..., 42) = 42'
    assert line("write", [1, text[:32], 32], 32) == \
        'write(1, "abcdefghijklmnopqrstuvwxyz012345", 32) = 32'
    long_path = b"/" + b"d" * 100
    assert f'"{long_path.decode()}"' in line("openat", [AT_FDCWD_ZERO_EXTENDED, long_path, 0, 0], 3)
    assert line("openat", [AT_FDCWD_ZERO_EXTENDED, UserBytes(b"/very/lo", True), 0, 0], 3) == \
        'openat(AT_FDCWD, "/very/lo"..., O_RDONLY) = 3'


def test_faults_and_unread_pointers() -> None:
    assert line("openat", [AT_FDCWD_ZERO_EXTENDED, None, 0, 0], -14) == \
        "openat(AT_FDCWD, (fault), O_RDONLY) = -1 EFAULT (Bad address)"
    assert line("openat", [AT_FDCWD_ZERO_EXTENDED, 0, 0, 0], -14) == \
        "openat(AT_FDCWD, NULL, O_RDONLY) = -1 EFAULT (Bad address)"
    assert line("read", [99, 0, 10], -9) == "read(99, NULL, 10) = -1 EBADF (Bad file descriptor)"


def test_argv_and_envp() -> None:
    assert line("execve", [b"/bin/true", [b"/bin/true", "a b", None], 0x7FFF_0000_0010], 0) == \
        'execve("/bin/true", ["/bin/true", "a b", (fault)], 0x7fff00000010) = 0'


def test_strings_among_char_pointers_by_name() -> None:
    mount, getcwd = sig("mount"), sig("getcwd")
    assert [a.display for a in mount.args or ()][:3] == [Display.STRING] * 3
    assert getcwd.args is not None and getcwd.args[0].display is Display.POINTER


def test_arguments_by_name_and_missing_ones() -> None:
    assert format_syscall(sig("kill"), {"pid": 1, "sig": 9}, 0) == "kill(1, SIGKILL) = 0"
    assert format_syscall(sig("kill"), {"pid": 1}, 0) == "kill(1, ?) = 0"


def test_unknown_signature_shows_registers() -> None:
    unknown = SyscallSignature("syscall_999", 999, None, None)
    assert format_syscall(unknown, [1, 0xFFFFFFFFFFFFFFFF], -38) == \
        "syscall_999(0x1, 0xffffffffffffffff) = -1 ENOSYS (Function not implemented)"


def test_duration() -> None:
    assert format_duration(0) == "<0.000000>"
    assert format_duration(1_234_567_999) == "<1.234567>"


def test_render_bits_composites_and_zero() -> None:
    flags = [("A", 1), ("B", 2), ("AB", 3), ("C", 8)]
    assert render_bits(0, flags, zero="NONE") == "NONE"
    assert render_bits(3 | 8 | 0x40, flags) == "AB|C|0x40"


# -- JSON --------------------------------------------------------------------------------------

def test_record_is_json_ready() -> None:
    record = syscall_record(sig("openat"), [AT_FDCWD_ZERO_EXTENDED, b"/etc/hostname",
                                            0o2000000, 0], 3, 12_000, machine="x86_64")
    assert record == {"syscall": "openat", "ret": 3, "errno": None, "duration_ns": 12_000,
                      "args": {"dfd": -100, "filename": "/etc/hostname",
                               "flags": "O_RDONLY|O_CLOEXEC", "mode": "000"}}
    json.dumps(record)


def test_record_of_a_failure_with_a_fault() -> None:
    record = syscall_record(sig("openat"), [AT_FDCWD_ZERO_EXTENDED, None, 0, 0], -2, 5,
                            machine="x86_64")
    assert record["errno"] == "ENOENT" and record["ret"] == -2
    assert record["args"]["filename"] is None and record["faults"] == ["filename"]
    cut = syscall_record(sig("write"), [1, UserBytes(b"\xffab", True), 9], 9, machine="x86_64")
    assert cut["args"]["buf"] == "\\xffab" and cut["truncated"] == ["buf"]
    assert syscall_record(sig("exit_group"), [0], None)["ret"] is None


# -- the strace -c summary -----------------------------------------------------------------------

def test_summary_table_like_strace_c() -> None:
    summary = SyscallSummary()
    for index in range(8):
        summary.add("openat", -2 if index < 2 else 3, 155_000 // 8 + (155_000 % 8 if index == 0
                                                                        else 0), 257)
    summary.add("write", 1, 69_000, 1)
    summary.add("write", 1, 70_000, 1)
    summary.add("getpid", 10, 3_000, 39)
    summary.add("brk", 0, 0, 12)
    summary.add("umask", 0o22, 3_000, 95)
    assert summary.render().splitlines() == [
        "% time     seconds  usecs/call     calls    errors syscall",
        "------ ----------- ----------- --------- --------- ----------------",
        " 51.67    0.000155          19         8         2 openat",
        " 46.33    0.000139          69         2           write",
        "  1.00    0.000003           3         1           getpid",
        "  1.00    0.000003           3         1           umask",
        "  0.00    0.000000           0         1           brk",
        "------ ----------- ----------- --------- --------- ----------------",
        "100.00    0.000300          23        13         2 total",
    ]
    assert summary.as_dict()["total"] == {"syscall": "total", "calls": 13, "errors": 2,
                                          "total_ns": 300_000}


def test_empty_summary() -> None:
    assert SyscallSummary().render().splitlines()[-1].split() == ["0.00", "0.000000", "0", "0",
                                                                  "total"]

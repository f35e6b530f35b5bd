"""The catalogue on a tracefs tree made here (no kernel needed), and bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from rawprobe._errors import KernelFeatureError, UsageError
from rawprobe._syscalls import (
    Capture,
    Display,
    c_type,
    classify_argument,
    event_name_for,
    list_tracepoints,
    load_catalog,
    read_tracepoint,
    syscall_name_for_event,
    syscall_numbers,
    to_declared,
)

COMMON = """\
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

"""


def _event(root: Path, group: str, name: str, event_id: int, fields: list[tuple[str, int]]) -> None:
    directory = root / "events" / group / name
    directory.mkdir(parents=True)
    lines = [f"\tfield:{decl};\toffset:{8 + 8 * i};\tsize:{size};\tsigned:0;"
             for i, (decl, size) in enumerate(fields)]
    (directory / "format").write_text(f"name: {name}\nID: {event_id}\nformat:\n{COMMON}"
                                      + "\n".join(lines) + "\n\nprint fmt: \"\"\n")


def _syscall(root: Path, event: str, event_id: int, args: list[str]) -> None:
    _event(root, "syscalls", f"sys_enter_{event}", event_id,
           [("int __syscall_nr", 4), *((arg, 8) for arg in args)])
    _event(root, "syscalls", f"sys_exit_{event}", event_id + 1,
           [("int __syscall_nr", 4), ("long ret", 8)])


@pytest.fixture
def tracefs(tmp_path: Path) -> Path:
    _syscall(tmp_path, "openat", 700, ["int dfd", "const char * filename", "int flags",
                                       "umode_t mode"])
    _syscall(tmp_path, "newstat", 710, ["const char * filename", "struct stat * statbuf"])
    _syscall(tmp_path, "umount", 720, ["char * name", "int flags"])
    _syscall(tmp_path, "open", 730, ["const char * filename", "int flags", "umode_t mode"])
    _syscall(tmp_path, "mseal", 740, ["unsigned long start", "size_t len", "unsigned long flags"])
    _event(tmp_path, "sched", "sched_switch", 300, [("char prev_comm[16]", 16),
                                                   ("pid_t prev_pid", 4)])
    _event(tmp_path, "sched", "sched_wakeup", 301, [("__data_loc char[] name", 4)])
    return tmp_path


def test_catalogue_names_and_numbers(tracefs: Path) -> None:
    catalog = load_catalog(tracefs, machine="x86_64")
    assert catalog.names() == ["mseal", "open", "openat", "stat", "umount2"]
    openat = catalog.lookup("openat")
    assert (openat.number, openat.event, openat.enter_event_id, openat.exit_event_id) == \
        (257, "openat", 700, 701)
    assert [(a.name, a.display, a.capture) for a in openat.args or ()] == [
        ("dfd", Display.DIRFD, Capture.VALUE), ("filename", Display.STRING, Capture.STRING),
        ("flags", Display.OPEN_FLAGS, Capture.VALUE), ("mode", Display.OCTAL, Capture.VALUE)]
    # The headers' names, with the entry points' names accepted too.
    assert catalog.lookup("newstat") is catalog.lookup("stat")
    assert catalog.lookup("stat").event == "newstat"
    assert catalog.lookup("umount2").event == "umount"
    # Newer than the headers: listed, no number.
    assert catalog.lookup("mseal").number is None
    # In the headers, not in this kernel.
    assert not catalog.lookup("read").traceable
    assert catalog.by_number(257).name == "openat"
    assert catalog.by_number(100_000).name == "syscall_100000"


def test_unknown_syscall_suggests_close_names(tracefs: Path) -> None:
    catalog = load_catalog(tracefs, machine="x86_64")
    with pytest.raises(UsageError, match="did you mean openat, open"):
        catalog.lookup("opnat")
    with pytest.raises(UsageError, match="rawprobe list --syscalls"):
        catalog.lookup("zzzzzz")


def test_globs(tracefs: Path) -> None:
    catalog = load_catalog(tracefs, machine="x86_64")
    assert [s.name for s in catalog.select(["open*", "stat", "openat"])] == \
        ["open", "openat", "stat"]
    with pytest.raises(UsageError, match="no system call matches 'read\\*'"):
        catalog.select(["read*"])
    listing = catalog.listing("open*")
    assert [entry["name"] for entry in listing] == ["open", "openat"]
    assert listing[1]["args"][1] == {"name": "filename", "type": "const char *", "size": 8,
                                     "signed": False, "display": "string", "capture": "string"}


def test_argument_lookup(tracefs: Path) -> None:
    openat = load_catalog(tracefs, machine="x86_64").lookup("openat")
    assert openat.argument("flags").index == 2
    with pytest.raises(UsageError, match=r"has no argument 'flag'.*dfd, filename, flags, mode"):
        openat.argument("flag")


def test_catalogue_without_tracefs() -> None:
    catalog = load_catalog(machine="aarch64", read_tracefs=False)
    assert catalog.lookup("openat").number == 56 and catalog.lookup("openat").args is None


def test_missing_tracefs(tmp_path: Path) -> None:
    with pytest.raises(KernelFeatureError, match="mount -t tracefs nodev"):
        load_catalog(tmp_path / "nothing")
    (tmp_path / "events").mkdir()
    with pytest.raises(KernelFeatureError, match="CONFIG_FTRACE_SYSCALLS"):
        load_catalog(tmp_path)


def test_unknown_architecture() -> None:
    with pytest.raises(KernelFeatureError, match="no system call tables for the riscv64"):
        syscall_numbers("riscv64")


def test_tracepoints(tracefs: Path) -> None:
    switch = read_tracepoint("sched", "sched_switch", tracefs)
    assert (switch.id, [f.name for f in switch.fields]) == (300, ["prev_comm", "prev_pid"])
    assert switch.fields[0].is_string and switch.fields[0].c_type == "char[16]"
    assert not switch.fields[1].is_string
    assert read_tracepoint("sched", "sched_wakeup", tracefs).fields[0].is_string
    assert switch.select_fields(["prev_pid"]) == (switch.fields[1],)
    with pytest.raises(UsageError, match="did you mean prev_pid"):
        switch.select_fields(["prev_pdi"])
    with pytest.raises(UsageError, match="no tracepoint group 'schd'; did you mean sched"):
        read_tracepoint("schd", "sched_switch", tracefs)
    with pytest.raises(UsageError, match="did you mean sched_switch"):
        read_tracepoint("sched", "sched_swich", tracefs)
    with pytest.raises(UsageError):
        read_tracepoint("sched", "../syscalls/sys_enter_open", tracefs)
    names = [entry.name for entry in list_tracepoints("sched:*", tracefs)]
    assert names == ["sched:sched_switch", "sched:sched_wakeup"]
    assert list_tracepoints("sched:sched_switch", tracefs)[0].as_dict() == {
        "name": "sched:sched_switch",
        "fields": [{"name": "prev_comm", "type": "char[16]"},
                   {"name": "prev_pid", "type": "pid_t"}]}


def test_event_names() -> None:
    numbers = syscall_numbers("x86_64")
    events = ["newstat", "newfstat", "newfstatat", "umount", "sendfile64", "pread64", "mseal"]
    assert [syscall_name_for_event(e, numbers) for e in events] == \
        ["stat", "fstat", "newfstatat", "umount2", "sendfile", "pread64", "mseal"]
    assert event_name_for("stat", events) == "newstat"
    assert event_name_for("sendfile", events) == "sendfile64"
    assert event_name_for("read", events) is None


@pytest.mark.parametrize(("spelling", "size", "signed"), [
    ("int", 4, True), ("unsigned int", 4, False), ("unsigned", 4, False), ("umode_t", 2, False),
    ("const clockid_t", 4, True), ("size_t", 8, False), ("loff_t", 8, True),
    ("const char *const *", 8, False), ("const enum landlock_rule_type", 4, True),
    ("cap_user_header_t", 8, False), ("const cap_user_data_t", 8, False), ("uid_t", 4, False),
])
def test_c_types(spelling: str, size: int, signed: bool) -> None:
    assert (c_type(spelling).size, c_type(spelling).signed) == (size, signed)


def test_declared_values() -> None:
    assert to_declared(0xFFFFFF9C, 4, True) == -100
    assert to_declared(0xFFFFFFFFFFFFFF9C, 4, True) == -100
    assert to_declared(0x1_0000_01A4, 2, False) == 0o644
    assert not c_type("struct_t_we_do_not_know").known


@pytest.mark.parametrize(("syscall", "name", "spelling", "display", "capture"), [
    ("write", "buf", "const char *", Display.BUFFER, Capture.BUFFER_IN),
    ("read", "buf", "char *", Display.BUFFER, Capture.BUFFER_OUT),
    ("readlink", "path", "const char *", Display.STRING, Capture.STRING),
    ("umount", "name", "char *", Display.STRING, Capture.STRING),
    ("getcwd", "buf", "char *", Display.POINTER, Capture.VALUE),
    ("newuname", "name", "struct new_utsname *", Display.POINTER, Capture.VALUE),
    ("mmap", "fd", "unsigned long", Display.FD, Capture.VALUE),
    ("renameat2", "olddfd", "int", Display.DIRFD, Capture.VALUE),
    ("tgkill", "sig", "int", Display.SIGNAL, Capture.VALUE),
    ("mprotect", "start", "unsigned long", Display.POINTER, Capture.VALUE),
    ("mkdir", "mode", "umode_t", Display.OCTAL, Capture.VALUE),
    ("flock", "cmd", "unsigned int", Display.INT, Capture.VALUE),
    ("inotify_init1", "flags", "int", Display.HEX, Capture.VALUE),
])
def test_classification(syscall: str, name: str, spelling: str, display: Display,
                        capture: Capture) -> None:
    decoder = classify_argument(syscall, name, spelling)
    assert (decoder.display, decoder.capture) == (display, capture)
    if capture is Capture.BUFFER_IN:
        assert decoder.length_argument == "count"

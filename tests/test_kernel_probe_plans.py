"""Kernel-side probes, pure: the words, system call layouts decoded from plain bytes, their
strace-like text and JSON, and the strace -c table of totals. No kernel involved."""

from __future__ import annotations

import json
import struct
from typing import Any

import pytest

from rawprobe import EventFormatter, ProbeSyntaxError, parse_probe
from rawprobe._bpf.records import Decoder
from rawprobe._errors import FetchArgError, UsageError
from rawprobe._output.tables import aggregate_results
from rawprobe._plan import abi
from rawprobe._plan.kernel import SyscallLayout, filter_names, syscall_events
from rawprobe._plan.session import AggregateCell, Plan, PlannedEvent, SyscallTotal
from rawprobe._probe.aggregations import AggregationSpec, HistSpec
from rawprobe._probe.fetchargs import EventField
from rawprobe._probe.filters import parse_filter
from rawprobe._syscalls import SyscallCatalog, signature_from_fields, syscall_numbers
from rawprobe.cli._syscalls import parse_duration

# -- words ------------------------------------------------------------------------------------


def test_system_call_words() -> None:
    spec = parse_probe("sys:openat")
    assert (spec.kind, spec.location, spec.fetchargs, spec.kernel) == ("sys", "openat", (), True)
    assert parse_probe("sys:open*").location == "open*"
    assert parse_probe("sys:*").location == "*"
    with pytest.raises(ProbeSyntaxError, match="takes no fields"):
        parse_probe("sys:openat filename")
    with pytest.raises(ProbeSyntaxError, match="sys:NAME"):
        parse_probe("sys:a/b")


def test_tracepoint_words() -> None:
    spec = parse_probe("tp:syscalls:sys_enter_openat filename:string flags who=pid:s32")
    assert (spec.kind, spec.target, spec.location) == ("tp", "syscalls", "sys_enter_openat")
    names = [(arg.name, arg.source, arg.type.name, arg.typed) for arg in spec.fetchargs]
    assert names == [("filename", EventField("filename"), "string", True),
                     ("flags", EventField("flags"), "x64", False),
                     ("who", EventField("pid"), "s32", True)]
    assert parse_probe("tp:sched:sched_*").location == "sched_*"
    with pytest.raises(ProbeSyntaxError, match="tp:GROUP:EVENT"):
        parse_probe("tp:sched")
    with pytest.raises(ProbeSyntaxError, match="tp:GROUP:EVENT"):
        parse_probe("tp:sch*:x")
    with pytest.raises(ProbeSyntaxError, match="used twice"):
        parse_probe("tp:sched:x a a")
    with pytest.raises(FetchArgError, match="does not apply to a tracepoint field"):
        parse_probe("tp:sched:x a:symbol")


def test_filter_names() -> None:
    assert filter_names(None) == set()
    assert filter_names(parse_filter('ret < 0 && (filename ~ "/etc*" || !(fd == 3))')) == {
        "ret", "filename", "fd"}


@pytest.mark.parametrize(("text", "ns"), [("10ms", 10_000_000), ("250us", 250_000),
                                           ("2s", 2_000_000_000), ("5", 5_000_000),
                                           ("1.5ms", 1_500_000), ("40ns", 40)])
def test_durations(text: str, ns: int) -> None:
    assert parse_duration(text) == ns


# -- system call layouts on plain bytes -------------------------------------------------------

OPENAT = [("int", "dfd"), ("const char *", "filename"), ("int", "flags"), ("umode_t", "mode")]
WRITE = [("unsigned int", "fd"), ("const char *", "buf"), ("size_t", "count")]
EXECVE = [("const char *", "filename"), ("const char *const *", "argv"),
          ("const char *const *", "envp")]


def catalog() -> SyscallCatalog:
    numbers = syscall_numbers("x86_64")
    signatures = {name: signature_from_fields(name, fields, numbers.by_name[name])
                  for name, fields in (("openat", OPENAT), ("write", WRITE),
                                       ("execve", EXECVE), ("exit_group",
                                                            [("int", "error_code")]))}
    return SyscallCatalog("x86_64", numbers, signatures, from_tracefs=True)


def layout_of(name: str, string_size: int = 256) -> SyscallLayout:
    (event,), _warnings = syscall_events(parse_probe(f"sys:{name}"), catalog(),
                                         string_size=string_size, stack=False)
    assert isinstance(event.layout, SyscallLayout)
    return event.layout


def record(layout: SyscallLayout, values: dict[str, Any], *, faults: int = 0,
           truncated: int = 0, pid: int = 42) -> bytes:
    """A record as the BPF side writes it, framed as the ring buffer frames it."""
    body = bytearray(layout.fixed_size)
    body[: abi.HEADER.sizeof()] = abi.HEADER.build({
        "ts_ns": 1_000, "pid": pid, "tid": pid, "event_id": 0, "cpu": 1, "faults": faults,
        "truncated": truncated, "comm": b"prog".ljust(16, b"\0")})
    for field, capture in zip(layout.fields, layout.captures, strict=True):
        value = values[field.name]
        if capture == "value":
            fmt = {1: "b", 2: "h", 4: "i", 8: "q"}[field.type.size]
            fmt = fmt if field.type.signed else fmt.upper()
            struct.pack_into("<" + fmt, body, field.offset, value)
            continue
        data = value if isinstance(value, bytes) else value.encode() + b"\0"
        struct.pack_into("<I", body, field.offset, (len(data) << 16) | len(body))
        body += data
    length = len(body)
    body += b"\0" * (-len(body) % 8)
    return struct.pack("<II", length, 0) + bytes(body)


def decode(layout: SyscallLayout, chunk: bytes) -> Any:
    events, consumed = Decoder([layout]).decode_chunk(chunk)
    assert consumed == len(chunk)
    (event,) = events
    return event


def test_openat_record_decodes_and_reads_like_strace() -> None:
    layout = layout_of("openat")
    assert layout.names == ("dfd", "filename", "flags", "mode", "ret", "duration_ns")
    event = decode(layout, record(layout, {"dfd": -100, "filename": "/etc/hostname",
                                           "flags": 0o2000000, "mode": 0, "ret": 3,
                                           "duration_ns": 12_345}))
    assert event.args == {"dfd": -100, "filename": "/etc/hostname", "flags": 0o2000000,
                          "mode": 0, "ret": 3, "duration_ns": 12_345}
    formatter = EventFormatter()
    assert formatter.text(event).endswith(
        ' prog 42/42 openat(AT_FDCWD, "/etc/hostname", O_RDONLY|O_CLOEXEC) = 3 <0.000012>')
    line = json.loads(formatter.json(event))
    assert line["event"] == "openat" and line["pid"] == 42 and line["comm"] == "prog"
    assert line["args"] == {"dfd": -100, "filename": "/etc/hostname",
                            "flags": "O_RDONLY|O_CLOEXEC", "mode": "000"}
    assert (line["ret"], line["errno"], line["duration_ns"]) == (3, None, 12_345)
    assert formatter.lines([event], as_json=False) == formatter.text(event) + "\n"


def test_failure_fault_and_cut_strings() -> None:
    layout = layout_of("openat", string_size=8)
    chunk = record(layout, {"dfd": -100, "filename": b"", "flags": 0, "mode": 0, "ret": -2,
                            "duration_ns": 1}, faults=1 << 1)
    event = decode(layout, chunk)
    assert event.args["filename"] is None
    text = EventFormatter().text(event)
    assert text.endswith("openat(AT_FDCWD, (fault), O_RDONLY) = -1 ENOENT (No such file or "
                         "directory) <0.000000>")
    line = json.loads(EventFormatter().json(event))
    assert line["faults"] == ["filename"] and line["errno"] == "ENOENT" and line["ret"] == -2
    chunk = record(layout, {"dfd": 3, "filename": "/very/lo", "flags": 0, "mode": 0,
                            "ret": 4, "duration_ns": 1}, truncated=1 << 1)
    event = decode(layout, chunk)
    assert EventFormatter().text(event).endswith('openat(3, "/very/lo"..., O_RDONLY) = 4 '
                                                 "<0.000000>")
    assert json.loads(EventFormatter().json(event))["truncated"] == ["filename"]


def test_buffers_keep_their_bytes_and_argv_its_strings() -> None:
    layout = layout_of("write")
    assert layout.captures == ("value", "buffer", "value", "value", "value")
    event = decode(layout, record(layout, {"fd": 1, "buf": b"a\0\xffb\n", "count": 5,
                                           "ret": 5, "duration_ns": 2_000}))
    assert event.args["buf"] == b"a\0\xffb\n"
    assert EventFormatter().text(event).endswith(r'write(1, "a\0\377b\n", 5) = 5 <0.000002>')
    layout = layout_of("execve")
    event = decode(layout, record(layout, {"filename": "/bin/true", "argv": b"true\0-x\0",
                                           "envp": 0x7FF0, "ret": 0, "duration_ns": 5}))
    assert event.args["argv"] == ("true", "-x")
    assert EventFormatter().text(event).endswith(
        'execve("/bin/true", ["true", "-x"], 0x7ff0) = 0 <0.000000>')


def test_a_call_that_does_not_return() -> None:
    layout = layout_of("exit_group")
    event = decode(layout, record(layout, {"error_code": 3, "ret": 0, "duration_ns": 0}))
    assert EventFormatter().text(event).endswith("exit_group(3) = ? <0.000000>")
    assert json.loads(EventFormatter().json(event))["ret"] is None


def test_layouts_of_one_shape_are_shared_under_each_name() -> None:
    numbers = syscall_numbers("x86_64")
    signatures = {name: signature_from_fields(name, [("unsigned int", "fd")],
                                              numbers.by_name[name])
                  for name in ("close", "fsync", "fdatasync")}
    events, _ = syscall_events(parse_probe("sys:f*"), SyscallCatalog(
        "x86_64", numbers, signatures, True), string_size=64, stack=False)
    assert [event.name for event in events] == ["fdatasync", "fsync"]
    assert [event.layout.event for event in events] == ["fdatasync", "fsync"]
    assert [event.layout.syscall.name for event in events] == ["fdatasync", "fsync"]
    with pytest.raises(UsageError, match="no system call"):
        syscall_events(parse_probe("sys:nothing*"), SyscallCatalog(
            "x86_64", numbers, signatures, True), string_size=64, stack=False)


# -- totals -----------------------------------------------------------------------------------


def _plan(by: str | None, hist: bool) -> Plan:
    names = ("write", "openat")
    events = []
    for event_id, name in enumerate(names):
        events.append(PlannedEvent(event_id, 0, f"sys:{name}", "", 0, False, 0, (),
                                   layout_of(name), kind="syscall", syscall_nr=event_id,
                                   key_decoder=(lambda data: int.from_bytes(data[:4], "little"))
                                   if by else None))
    spec = AggregationSpec("syscalls", by=by, hist=HistSpec("latency") if hist else None)
    return Plan(tuple(events), (), spec)


def test_totals_become_strace_tables() -> None:
    plan = _plan(None, hist=True)
    totals = [SyscallTotal(0, 0, 10, 0, 5_000), SyscallTotal(1, 0, 4, 2, 20_000)]
    cells = [AggregateCell(1, -1, 11, b"", 4)]
    table = aggregate_results(plan, cells, lambda *_: (), totals)
    text = str(table)
    assert text.splitlines()[2].split() == ["80.00", "0.000020", "5", "4", "2", "openat"]
    assert "@openat (ns):" in text
    data = table.to_dict()  # type: ignore[union-attr]
    assert data["total"] == {"syscall": "total", "calls": 14, "errors": 2, "total_ns": 25_000}
    assert data["hist"][0]["buckets"] == [{"low": 1024, "high": 2048, "count": 4}]


def test_totals_by_process() -> None:
    plan = _plan("pid", hist=False)
    totals = [SyscallTotal(0, 7, 1, 0, 1_000), SyscallTotal(0, 9, 2, 0, 1_000)]
    table = aggregate_results(plan, [], lambda *_: (), totals)
    assert [section.splitlines()[0] for section in str(table).split("\n\n")] == ["pid 7",
                                                                                   "pid 9"]
    rows = table.to_dict()["syscalls"]  # type: ignore[union-attr]
    assert [(row["pid"], row["calls"]) for row in rows] == [(7, 1), (9, 2)]

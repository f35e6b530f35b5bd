"""The tracefs backend's pure parts: rendering probe words in kernel syntax, parsing what tracefs
shows (definitions, format files, error_log), framing perf records, decoding samples. No root."""

from __future__ import annotations

import mmap
import os
import struct
from pathlib import Path
from typing import Any

import pytest

from rawprobe import FetchArgError, UsageError
from rawprobe._host.cpus import parse_cpu_list
from rawprobe._host.perfbuf import PerfBuffer, buffer_size, split_perf_records
from rawprobe._host.tracefs import kernel_error
from rawprobe._plan.compile import compile_fetchargs
from rawprobe._plan.events import RecordLayout
from rawprobe._plan.session import PlannedEvent
from rawprobe._probe.fetchargs import Deref, ProbeRelative, Register, UsdtArgument
from rawprobe._probe.words import parse_probe
from rawprobe._sys.perf import PERF_RECORD_LOST, PERF_RECORD_SAMPLE
from rawprobe._tracefs import (
    KernelProbe,
    definition_line,
    parse_definition,
    parse_definitions,
    parse_format,
    parse_group,
    render_probe,
)
from rawprobe._tracefs._decode import SampleDecoder
from rawprobe._tracefs._render import event_names

FIXTURES = Path(__file__).parent / "fixtures"


def render(word: str, file_offset: int = 0x1159, **kwargs: Any) -> KernelProbe:
    spec = parse_probe(word)
    compiled = compile_fetchargs(spec.fetchargs, word=word, retprobe=spec.retprobe,
                                 probe_file_offset=file_offset)
    return render_probe(spec.fetchargs, compiled.fields, retprobe=spec.retprobe,
                        file_offset=file_offset, word=word, **kwargs)


def bodies(probe: KernelProbe) -> list[str]:
    return [arg.text for arg in probe.args]


# -- rendering --------------------------------------------------------------------------------


def test_registers_aliases_and_args_become_abi_registers() -> None:
    texts = bodies(render("p:/bin/true:main a=%di:s32 b=arg1:u64 c=$arg3"))
    assert texts == ["a=%di:s32", "b=%si:u64", "c=%dx:x64", "rawprobe_comm=$comm"]


def test_default_names_are_kept() -> None:
    probe = render("p:/bin/true:main %di +8(%si):u32")
    assert bodies(probe)[:3] == ["arg1=%di:x64", "arg2=+8(%si):u32", "arg2_fault=+11(%si):string"]


def test_string_on_a_value_reads_what_it_points_to() -> None:
    probe = render("r:/bin/bash:readline line=$retval:string p=%di:str")
    assert bodies(probe)[:2] == ["line=+0(%ax):string", "p=+0(%di):string"]


def test_string_on_memory_reads_the_string_there() -> None:
    probe = render("p:/bin/true:main s=+8(%di):string t=+0(+16(%si)):string")
    assert bodies(probe)[:2] == ["s=+8(%di):string", "t=+0(+16(%si)):string"]


def test_memory_ints_get_a_fault_check_on_their_last_byte() -> None:
    probe = render("p:/bin/true:main x=-8(+16(%di)):s32 y=@0x1000:u64 z=@+0x3030:u8[4]")
    assert bodies(probe)[:6] == [
        "x=-8(+16(%di)):s32", "x_fault=-5(+16(%di)):string",
        "y=@0x1000:u64", "y_fault=@0x1007:string",
        "z=@+0x3030:u8[4]", "z_fault=@+0x3033:string",
    ]


def test_stack_entries() -> None:
    probe = render("p:/bin/true:main a=$stack2:s32 b=$stack c=$stack1:string")
    assert bodies(probe)[:4] == ["a=$stack2:s32", "a_fault=+19($stack):string", "b=$stack:x64",
                                 "c=+8($stack):string"]


def test_string_arrays_become_one_argument_per_element() -> None:
    probe = render("p:/bin/true:main argv=+0(%si):string[3]")
    assert bodies(probe)[:3] == ["argv_0=+0(+0(%si)):string", "argv_1=+0(+8(%si)):string",
                                 "argv_2=+0(+16(%si)):string"]
    assert [a.element for a in probe.args[:3]] == [0, 1, 2]


def test_types() -> None:
    probe = render("p:/bin/true:main c=+0(%di):char[2] b=+4(%di):b3@2/16 s=%si:symbol "
                   "x=+8(%di):x16")
    texts = bodies(probe)
    assert "c=+0(%di):char[2]" in texts
    assert "b=+4(%di):b3@2/16" in texts
    assert "s=%si:x64" in texts  # a user address printed as a kernel symbol means nothing
    assert "x=+8(%di):x16" in texts


def test_constants_comm_and_immediates() -> None:
    probe = render('p:/bin/true:main k=\\"hello" i=\\-5:s32 c=$comm')
    # The string constant is filled in user space: the uprobe tracer cannot copy it.
    assert bodies(probe) == ["i=\\-5:s32", "c=$comm", "rawprobe_comm=$comm"]


def test_reserved_and_clashing_names_are_replaced() -> None:
    probe = render("p:/bin/true:main common_pid=%di rp0=%si x=+0(%dx):u8 x_fault=%cx")
    names = [a.name for a in probe.args]
    assert "common_pid" not in names
    assert names[1] == "rp0"  # a user's own name is kept
    assert len(set(names)) == len(names)
    assert names[4] == "x_fault"  # the user's field keeps its name; x's check gets another
    assert names[3] != "x_fault"


def test_too_long_for_the_kernel_is_refused_clearly() -> None:
    word = ("p:/bin/true:main v=+1000000(+1000000(+1000000(+1000000(+1000000(+1000000(%di)))))"
            "):u64")
    with pytest.raises(FetchArgError, match="at most 63 characters"):
        render(word)


def test_usdt_operands() -> None:
    word = "usdt:/bin/true:prov:name a=$arg1 b=$arg2 c=$arg3"
    spec = parse_probe(word)
    usdt = (
        UsdtArgument(4, True, Register("di"), "-4@%edi"),
        UsdtArgument(8, False, Deref(16, Register("bp")), "8@16(%rbp)"),
        UsdtArgument(4, False, Deref(0, ProbeRelative(0x2000)), "4@counter(%rip)"),
    )
    compiled = compile_fetchargs(spec.fetchargs, word=word, probe_file_offset=0x1000,
                                 usdt_args=usdt)
    probe = render_probe(spec.fetchargs, compiled.fields, retprobe=False, file_offset=0x1000,
                         usdt_args=usdt, word=word)
    assert bodies(probe)[:5] == ["a=%di:s32", "b=+16(%bp):u64", "b_fault=+23(%bp):string",
                                 "c=@+0x3000:u32", "c_fault=@+0x3003:string"]
    with pytest.raises(FetchArgError, match="needs a USDT probe"):
        render_probe(spec.fetchargs, compiled.fields, retprobe=False, file_offset=0x1000,
                     word=word)


def test_definition_line() -> None:
    probe = render("r:/bin/bash:readline line=$retval:string")
    line = definition_line("r", "rawprobe_1_2_0", "readline__return", "/bin/bash", 0x8d000,
                           0, probe)
    assert line == ("r:rawprobe_1_2_0/readline__return /bin/bash:0x8d000 "
                    "line=+0(%ax):string rawprobe_comm=$comm")
    assert definition_line("p", "g", "e", "/x", 0x10, 0x2000, probe).startswith(
        "p:g/e /x:0x10(0x2000) ")
    with pytest.raises(UsageError, match="whitespace"):
        definition_line("p", "g", "e", "/a b", 0x10, 0, probe)


def test_event_names_are_unique_and_short_enough() -> None:
    def planned(name: str) -> PlannedEvent:
        compiled = compile_fetchargs(())
        return PlannedEvent(0, 0, "/x", "/x", 0, False, 0, (), RecordLayout(name, compiled))

    names = event_names([planned("a"), planned("a"), planned("b"), planned("a"),
                          planned("x" * 80), planned("x" * 80)])
    assert names[:4] == ["a", "a_1", "b", "a_2"]
    assert all(len(n) < 64 for n in names) and names[4] != names[5]


# -- what tracefs shows -----------------------------------------------------------------------


def test_parse_definitions() -> None:
    text = (
        "p:probe_main/add /root/main:0x0000000000000536 %di %si\n"
        "r:rawprobe_42_99_0/add__return /tmp/a b/main:0x0000000000001149 ret=%ax:s32\n"
        "p:uprobes/sem /usr/bin/python3:0x00000000001ba2c0(0x5c8d38) arg1=%di\n"
        "p:kprobes/vfs vfs_read+0\n"
    )
    defs = parse_definitions(text)
    assert [(d.group, d.event, d.retprobe) for d in defs] == [
        ("probe_main", "add", False), ("uprobes", "sem", False)]
    assert defs[0].path == "/root/main" and defs[0].file_offset == 0x536
    assert defs[0].args == "%di %si"
    assert defs[1].ref_ctr_offset == 0x5c8d38
    ret = parse_definition("r:rawprobe_42_99_0/add__return /tmp/ab/main:0x1149 ret=%ax:s32")
    assert ret is not None and ret.retprobe and ret.file_offset == 0x1149


def test_kernel_error_picks_the_entry_for_our_command() -> None:
    log = (
        "[ 1321.6] trace_uprobe: error: Unknown type is specified\n"
        "  Command: p:other/h /x:0x1 a=%di:s31\n"
        "                              ^\n"
        "[ 1656.4] trace_uprobe: error: Argument expression is too long\n"
        "  Command: p:mine/e /x:0x1 a=+1(%di)\n"
        "                           ^\n"
    )
    reason = kernel_error(log, "p:mine/e /x:0x1 a=+1(%di)")
    assert reason is not None and reason.startswith("Argument expression is too long\n")
    assert reason.endswith("^")
    assert kernel_error(log, "p:none/e /x:0x1") is None


def test_parse_format_of_a_real_event() -> None:
    fmt = parse_format((FIXTURES / "tracefs_format_fn.txt").read_text())
    assert fmt.name == "fn" and fmt.id == 2326
    assert fmt.field("common_type").offset == 0
    a = fmt.field("a")
    assert (a.offset, a.size, a.signed, a.data_loc) == (16, 8, True, False)
    nm = fmt.field("nm")
    assert nm.data_loc and nm.count is None and nm.size == 4
    ch = fmt.field("ch")
    assert (ch.offset, ch.size, ch.count, ch.element_size) == (48, 3, 3, 1)
    g = fmt.field("g")
    assert g.offset == 55  # packed: no alignment
    strings = parse_format(
        "name: e\nID: 7\nformat:\n"
        "\tfield:__data_loc char[][2] ss;\toffset:69;\tsize:8;\tsigned:1;\n"
    ).field("ss")
    assert strings.data_loc and strings.count == 2


def test_parse_group() -> None:
    assert parse_group("rawprobe_4026531836_4242_123456_0") == (4026531836, 4242, 123456)
    assert parse_group("rawprobe_4242_123456_0") == (None, 4242, 123456)  # before namespaces
    assert parse_group("rawprobe_4242") is None
    assert parse_group("rawprobetest_1_2_3") is None
    assert parse_group("probe_main") is None


def test_cpu_lists_and_buffer_sizes() -> None:
    assert parse_cpu_list("0-3,5,7-8\n") == [0, 1, 2, 3, 5, 7, 8]
    assert parse_cpu_list("0") == [0]
    page = mmap.PAGESIZE
    assert buffer_size(8 << 20, 2) == 4 << 20
    assert buffer_size(8 << 20, 3) == 2 << 20  # a power of two
    assert buffer_size(page, 64) == 64 << 10  # at least 64 KiB


# -- perf records -----------------------------------------------------------------------------


def perf_record(record_type: int, body: bytes) -> bytes:
    size = 8 + len(body)
    padded = body + b"\0" * (-size % 8)
    return struct.pack("<IHH", record_type, 0, size + (-size % 8)) + padded


def test_split_perf_records() -> None:
    sample = perf_record(PERF_RECORD_SAMPLE, b"x" * 30)
    lost = perf_record(PERF_RECORD_LOST, struct.pack("<QQ", 1, 17))
    other = perf_record(3, b"comm....")
    chunk = sample + lost + other + sample
    samples, lost_count, consumed = split_perf_records(chunk)
    assert samples == [0, len(sample) + len(lost) + len(other)]
    assert lost_count == 17 and consumed == len(chunk)
    # A record cut short ends the framing before it.
    samples, _lost, consumed = split_perf_records(chunk[:-4])
    assert consumed == len(chunk) - len(sample) and len(samples) == 1


def test_perf_buffer_reads_across_the_wrap() -> None:
    page = mmap.PAGESIZE
    fd = os.memfd_create("perfbuf-test")
    try:
        os.ftruncate(fd, 2 * page)
        buffer = PerfBuffer(fd, page)
        view = mmap.mmap(fd, 2 * page)
        tail = page - 8  # 8 bytes before the end of the data area, so the read wraps
        data = bytes(range(24))
        view[page + tail : 2 * page] = data[:8]
        view[page : page + 16] = data[8:]
        struct.pack_into("<QQ", view, 1024, 2 * page + tail + 24, 2 * page + tail)
        assert buffer.pending() == 24
        assert buffer.read() == data
        buffer.consume(24)
        assert buffer.pending() == 0 and buffer.read() == b""
        assert struct.unpack_from("<Q", view, 1032)[0] == 2 * page + tail + 24
        view.close()
        buffer.close()
    finally:
        os.close(fd)


# -- decoding samples -------------------------------------------------------------------------

WORD = ("p:/tmp/rpx/t:fn a=+0(%di):s64 nm=+14(%di):string arr=+0(%si):string[2] s=%dx:string "
        "x=%cx:s32 ch=+14(%di):char[3] g=@+0x3030:x64 com=$comm st=$stack1 im=\\-5:s32 "
        "k=\\\"hey\" bits=+8(%di):b4@1/32 sym=%di:symbol arr8=+14(%di):u8[4] common_pid=%ax")

FAULT = object()  # a dynamic field whose string read faulted: length 0
CHAIN = object()  # a dereference failed before the string: the kernel's pre-filled data_loc
NO_ROOM = object()  # the event's string data already filled its page: nothing was stored


def kernel_record(fmt_text: str, probe: KernelProbe, values: dict[str, Any]) -> bytes:
    """Lay out a record as the kernel would (store_trace_args(), trace_probe_tmpl.h)."""
    fmt = parse_format(fmt_text)
    end = max(f.offset + f.size for f in fmt.fields)
    record = bytearray(end)
    struct.pack_into("<HBBi", record, 0, fmt.id, 0, 0, 1234)
    dynamic = bytearray()
    for arg in probe.args:
        field = fmt.field(arg.name)
        default: Any = b"t" if arg.dynamic else (0,) * field.count if field.count else 0
        value = values.get(arg.name, default)
        if arg.dynamic:
            offset = end + len(dynamic)
            if value is FAULT or value is NO_ROOM:
                loc = offset
            elif value is CHAIN:
                loc = (99 << 16) | offset  # the remaining space, not a length
            else:
                loc = ((len(value) + 1) << 16) | offset
                dynamic += value + b"\0"
            struct.pack_into("<I", record, field.offset, loc)
        elif field.count:
            struct.pack_into(f"<{field.count}B", record, field.offset, *value)
        else:
            code = {1: "B", 2: "H", 4: "I", 8: "Q"}[field.size]
            struct.pack_into("<" + (code.lower() if field.signed else code), record,
                             field.offset, value)
    return bytes(record + dynamic)


def decoder_for(word: str, string_size: int = 256) -> tuple[SampleDecoder, KernelProbe, str]:
    spec = parse_probe(word)
    compiled = compile_fetchargs(spec.fetchargs, word=word, probe_file_offset=0x1159,
                                 string_size=string_size)
    layout = RecordLayout("fn", compiled)
    probe = render_probe(spec.fetchargs, compiled.fields, retprobe=False, file_offset=0x1159,
                         word=word)
    fmt_text = (FIXTURES / "tracefs_format_fn.txt").read_text()
    return SampleDecoder(0, layout, probe, parse_format(fmt_text), string_size), probe, fmt_text


def test_the_fixture_matches_what_rawprobe_renders() -> None:
    _decoder, probe, fmt_text = decoder_for(WORD)
    fmt = parse_format(fmt_text)
    assert [f.name for f in fmt.fields[5:]] == [a.name for a in probe.args]


def test_decode_values_of_every_kind() -> None:
    decoder, probe, fmt_text = decoder_for(WORD)
    record = kernel_record(fmt_text, probe, {
        "a": -5, "nm": b"abcdefg", "arr_0": b"alpha", "arr_1": b"", "s": b"hello", "x": -1,
        "ch": (97, 98, 99), "g": 0x1122334455667788, "com": b"t", "st": 7, "im": -5,
        "bits": 5, "sym": 0x55550000, "arr8": (1, 2, 3, 4), "rp0": 9,
        "rawprobe_comm": b"main",
    })
    chunk = b"\0" * 36 + record
    values, faults, truncated, comm = decoder.decode(chunk, 36)
    assert values == (-5, "abcdefg", ("alpha", ""), "hello", -1, ("a", "b", "c"),
                      0x1122334455667788, "t", 7, -5, "hey", 5, 0x55550000, (1, 2, 3, 4), 9)
    assert (faults, truncated, comm) == (0, 0, b"main")


def test_decode_faults_like_the_bpf_backend() -> None:
    decoder, probe, fmt_text = decoder_for(WORD)
    fields = decoder.layout.fields
    record = kernel_record(fmt_text, probe, {
        "a_fault": FAULT,  # the int's memory was unreadable: a is 0 but means nothing
        "nm": CHAIN, "arr_0": b"alpha", "arr_1": FAULT, "s": CHAIN,
        "ch_fault": CHAIN, "rawprobe_comm": b"main",
    })
    values, faults, _truncated, _comm = decoder.decode(record, 0)
    names = [f.name for f in fields]
    assert values[names.index("a")] is None
    assert values[names.index("nm")] is None
    assert values[names.index("arr")] == ("alpha", None)
    assert values[names.index("s")] is None
    assert values[names.index("ch")] is None
    expected = 0
    for name in ("a", "nm", "s", "ch"):
        expected |= 1 << fields[names.index(name)].slots[0]
    expected |= 1 << fields[names.index("arr")].slots[1]
    assert faults == expected
    event_layout = decoder.layout
    assert event_layout.fault_names(faults) == ["a", "nm", "arr", "s", "ch"]


def test_decode_cuts_strings_at_string_size() -> None:
    decoder, probe, fmt_text = decoder_for(WORD, string_size=4)
    record = kernel_record(fmt_text, probe, {"nm": b"abcdefg", "s": b"abc", "arr_0": b"ab",
                                             "com": b"longcomm"})
    values, _faults, truncated, _comm = decoder.decode(record, 0)
    fields = decoder.layout.fields
    names = [f.name for f in fields]
    # 4 bytes keep 3 characters and the NUL, as in BPF: a string of exactly 3 fits, a longer
    # one is cut. A comm is never cut.
    assert values[names.index("nm")] == "abc" and values[names.index("s")] == "abc"
    assert values[names.index("arr")][0] == "ab"
    assert values[names.index("com")] == "longcomm"
    cut = {fields[names.index("nm")].slots[0]}
    assert truncated == sum(1 << slot for slot in cut)


def test_decode_rejects_a_format_that_does_not_match() -> None:
    from rawprobe._errors import KernelFeatureError

    word = "p:/tmp/rpx/t:fn a=+0(%di):s32"  # the fixture's a is 8 bytes
    spec = parse_probe(word)
    compiled = compile_fetchargs(spec.fetchargs, word=word)
    probe = render_probe(spec.fetchargs, compiled.fields, retprobe=False, file_offset=0,
                         word=word)
    fmt = parse_format((FIXTURES / "tracefs_format_fn.txt").read_text())
    with pytest.raises(KernelFeatureError, match="not 4"):
        SampleDecoder(0, RecordLayout("fn", compiled), probe, fmt, 256)


def test_decode_strings_cut_by_the_kernels_one_page_limit() -> None:
    decoder, probe, fmt_text = decoder_for(WORD, string_size=3000)
    fmt = parse_format(fmt_text)
    end = fmt.field("a").offset + mmap.PAGESIZE  # where the kernel's room ends
    fixed_end = max(f.offset + f.size for f in fmt.fields)
    # a_fault (2 bytes) comes first; nm then fills the page exactly, as fetch_store_string()
    # does with a string longer than the room left; every later string finds no room.
    nm = b"x" * (end - fixed_end - 2 - 1)
    values = {"a_fault": b"t", "nm": nm}
    later = False
    for arg in probe.args:
        if arg.name == "nm":
            later = True
        elif later and arg.dynamic:
            values[arg.name] = NO_ROOM
    record = kernel_record(fmt_text, probe, values)
    got, faults, truncated, comm = decoder.decode(record, 0)
    fields = decoder.layout.fields
    names = [f.name for f in fields]
    assert got[names.index("nm")] == nm[:2999].decode()
    assert got[names.index("s")] == "" and got[names.index("arr")] == ("", "")
    # An integer whose check found no room was read all the same: not a fault.
    assert got[names.index("ch")] == ("\0", "\0", "\0") and faults == 0
    cut = {fields[names.index(n)].slots[0] for n in ("nm", "s", "com")}
    cut |= set(fields[names.index("arr")].slots)
    assert truncated == sum(1 << slot for slot in cut)
    assert comm == b""

"""Planning probe words that name the debug information (no kernel needed: the planner opens
files and decides, nothing is planted).

Where each word's probes go (past the prologue, at each inlined copy, at a line's addresses),
what each probe reads (kernel fetch-args only, typed from DWARF), and what is refused or left
out, and why.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from dwarf_programs import PROGRAM, Build, build, marker_line
from test_dwarf_perf import Elf, perf_definitions

import rawprobe._dwarf as dwarf
from rawprobe._errors import SymbolNotFoundError, UsageError
from rawprobe._plan.planner import Planner
from rawprobe._plan.session import PlannedEvent
from rawprobe._probe.aggregations import AggregationSpec, parse_hist
from rawprobe._probe.fetchargs import DebugVariable, FileOffset, Register
from rawprobe._tracefs._render import render_probe

O0 = Build("gcc", "-O0")
O2 = Build("gcc", "-O2")


def plan(*words: str, **options: object) -> tuple[Planner, list[PlannedEvent]]:
    planner = Planner(**options)  # type: ignore[arg-type]
    try:
        for word in words:
            planner.add(word)
    finally:
        planner.release_files()
    return planner, planner.events


def fetch_texts(event: PlannedEvent) -> dict[str, str]:
    """Each field's source and type, to compare with the kernel's spelling."""
    return {arg.name: f"{arg.source}:{arg.type.name}" for arg in event.fetchargs}


def test_a_probe_reading_locals_goes_where_perf_puts_it() -> None:
    path = build(O0)
    elf = Elf(str(path))
    info = dwarf.open_debug_info(str(path))
    assert info is not None
    add = info.functions("add", inlined=False)[0]
    assert add.prologue_skipped
    _, (plain,) = plan(f"p:{path}:add")
    _, (with_vars,) = plan(f"p:{path}:add a b")
    _, (with_global,) = plan(f"p:{path}:add @counter")
    assert plain.file_offset == elf.file_offset(add.entry_address)
    assert with_global.file_offset == plain.file_offset  # globals need no frame
    ((offset, args),), _ = perf_definitions(str(path), "add a b")
    assert with_vars.file_offset == offset
    assert [(arg.name, arg.type.name) for arg in with_vars.fetchargs] == [("a", "s32"),
                                                                           ("b", "s32")]
    assert not any(isinstance(arg.source, DebugVariable) for arg in with_vars.fetchargs)
    assert with_vars.layout.event == "add"
    # The kernel's own spelling of it is perf's.
    kernel = render_probe(with_vars.fetchargs, with_vars.layout.fields, retprobe=False,
                          file_offset=with_vars.file_offset)
    assert [arg.body for arg in kernel.args if arg.role == "value"] == \
        [f"{fetch}:{kind}" for _, fetch, kind in args]


def test_latency_times_from_the_entry_while_reading_past_the_prologue() -> None:
    path = build(O0)
    info = dwarf.open_debug_info(str(path))
    assert info is not None
    add = info.functions("add", inlined=False)[0]
    elf = Elf(str(path))
    _, events = plan(f"p:{path}:add a", aggregation=AggregationSpec(
        "hist", hist=parse_hist("latency")))
    entry, ret = events
    assert (entry.role, ret.role) == ("start", "end")
    assert entry.file_offset == elf.file_offset(add.probe_address)
    assert ret.file_offset == elf.file_offset(add.entry_address) and ret.retprobe


def test_params_and_vars_expand_into_fields() -> None:
    path = build(O0)
    _, (params,) = plan(f"p:{path}:scalars $params")
    assert [arg.name for arg in params.fetchargs] == ["u", "c", "uc", "s", "l", "p"]
    assert [arg.type.name for arg in params.fetchargs] == ["u32", "s8", "u8", "s16", "s64",
                                                           "x64"]
    # A field the word names itself wins over the expansion's.
    _, (mixed,) = plan(f"p:{path}:scalars c=c:x $params")
    assert [arg.name for arg in mixed.fetchargs] == ["c", "u", "uc", "s", "l", "p"]
    assert mixed.fetchargs[0].type.name == "x8"
    _, (local_vars,) = plan(f"p:{path}:main.c:{marker_line('loop_add')} $vars")
    assert {"n", "total", "i", "sq"} <= {arg.name for arg in local_vars.fetchargs}


def test_an_inlined_function_is_probed_at_each_copy() -> None:
    path = build(O0)
    info = dwarf.open_debug_info(str(path))
    assert info is not None
    copies = [copy for copy in info.functions("square") if copy.inlined]
    assert copies
    elf = Elf(str(path))
    _, events = plan(f"p:{path}:square v")
    assert sorted(event.file_offset for event in events) == \
        sorted(elf.file_offset(copy.entry_address) for copy in copies)
    assert {event.layout.event for event in events} == {"square"}
    for event, copy in zip(sorted(events, key=lambda e: e.file_offset),
                           sorted(copies, key=lambda c: c.entry_address), strict=True):
        compiled = info.compile("v", copy.entry_address, function="square")
        assert fetch_texts(event)["v"].endswith(f":{compiled.type}")
    # Without the debug information's help the symbol table has no square at all.
    with pytest.raises(SymbolNotFoundError):
        plan(f"p:{path}:squarez v")


def test_a_site_where_a_variable_cannot_be_read_is_left_out_or_refused() -> None:
    path = build(O2)
    # total is optimized out at sum_squares' entry: the only site, so the error says where
    # it can be read.
    with pytest.raises(dwarf.NotAvailableError, match="readable at 0x"):
        plan(f"p:{path}:sum_squares total")
    # In a glob, functions without a variable of that name are left out, with a warning.
    planner, events = plan(f"p:{path}:s* n")
    assert {event.layout.event for event in events} == {"sum_squares"}
    assert any("left out" in warning and "strings" in warning
               for warning in planner.warnings), planner.warnings


def test_return_values_are_typed_from_dwarf(tmp_path: Path) -> None:
    path = build(O0)
    _, (ret,) = plan(f"r:{path}:add $retval")
    (arg,) = ret.fetchargs
    assert (arg.name, arg.source, arg.type.name) == ("arg1", Register("ax"), "s32")
    _, (typed,) = plan(f"r:{path}:add r=$retval:u16")
    assert typed.fetchargs[0].type.name == "u16"
    _, (chain,) = plan(f"r:{path}:globals $retval @counter")
    assert chain.fetchargs[0].type.name == "s32"
    assert chain.fetchargs[1].source == FileOffset(chain.fetchargs[1].source.offset)  # type: ignore[union-attr]
    # A file without debug information: the kernel's $retval, untyped (x64).
    stripped = tmp_path / "stripped"
    shutil.copy(path, stripped)
    import subprocess

    subprocess.run(["strip", "--strip-debug", str(stripped)], check=True)
    _, (bare,) = plan(f"r:{stripped}:add $retval")
    assert (bare.fetchargs[0].source, bare.fetchargs[0].type.name) == (Register("ax"), "x64")
    with pytest.raises(dwarf.NoDebugInfoError, match="rebuild it with -g"):
        plan(f"r:{stripped}:add $retval @counter")
    # Locals are gone by the time a function returns.
    with pytest.raises(dwarf.DwarfError, match="return probe"):
        plan(f"r:{path}:add a")


def test_source_lines_are_named_after_their_function() -> None:
    path = build(O0)
    line = marker_line("loop_add")
    _, events = plan(f"p:{path}:main.c:{line} i total")
    assert {event.layout.event for event in events} == {f"sum_squares_L{line}"}
    info = dwarf.open_debug_info(str(path))
    assert info is not None
    relative = line - (info.functions("sum_squares")[0].decl_line or 0)
    _, relative_events = plan(f"p:{path}:sum_squares:{relative} i")
    assert {event.layout.event for event in relative_events} == {f"sum_squares_L{relative}"}
    assert [e.file_offset for e in relative_events] == [e.file_offset for e in events]
    with pytest.raises(UsageError, match="source line"):
        plan(f"p:{path}:main.c:{line} i", aggregation=AggregationSpec(
            "hist", hist=parse_hist("latency")))
    with pytest.raises(dwarf.LineNotFoundError, match=r"try main\.c:"):
        plan(f"p:{path}:main.c:1")


def test_a_changed_file_is_not_read_for_another(tmp_path: Path) -> None:
    from rawprobe._host.files import TargetFile
    from rawprobe._symbols import TargetChangedError

    copy = tmp_path / "main"
    shutil.copy(build(O0), copy)
    target = TargetFile(str(copy))
    try:
        assert dwarf.require_debug_info(str(copy), expect_key=target.key) is not None
        other = tmp_path / "other"
        shutil.copy(build(O2), other)
        other.rename(copy)
        with pytest.raises(TargetChangedError):
            dwarf.require_debug_info(str(copy), expect_key=target.key)
    finally:
        target.close()


def test_the_program_source_is_what_the_tests_think() -> None:
    assert "LINE:loop_add" in PROGRAM.splitlines()[marker_line("loop_add") - 1]


def test_bpf_refuses_globals_at_returns_on_kernels_without_func_ip(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """bpf_get_func_ip() in uprobes came with uprobe_multi links (Linux 6.6): without them,
    the BPF backend refuses a return probe reading @+N before loading anything, and says to
    use tracefs (which --backend auto then does)."""
    from rawprobe._bpf import session as bpf_session
    from rawprobe._errors import KernelFeatureError

    class Missing:
        @staticmethod
        def available() -> bool:
            return False

    path = build(O0)
    planner, _ = plan(f"r:{path}:globals $retval @counter", f"p:{path}:globals @counter")
    monkeypatch.setattr(bpf_session, "UPROBE_MULTI", Missing)
    with pytest.raises(KernelFeatureError, match="--backend tracefs"):
        bpf_session._check_return_file_offsets(planner.plan())
    entry_only = Planner()
    entry_only.add(f"p:{path}:globals @counter")
    entry_only.release_files()
    bpf_session._check_return_file_offsets(entry_only.plan())

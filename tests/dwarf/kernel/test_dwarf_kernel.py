"""What the kernel reads with rawprobe's compiled fetch-args, next to perf probe's definitions.

Each test plants uprobe_events definitions in a group of its own (helpers.KernelTracer), runs
the program, and compares the events: rawprobe's values must be the ones the program holds
(dwarf_programs.EXPECTED_VALUES), and perf's definition of the same expression, where perf
writes one the uprobe tracer takes, must read the same value — except perf's known misreading
of DWARF 4 bitfields, which is checked to be wrong while rawprobe's is right.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from dwarf_programs import (
    BUILDS,
    EXPECTED_VALUES,
    PROGRAM,
    Build,
    build,
    build_params,
    marker_line,
)
from helpers import KernelTracer, build_c, require_tool

import rawprobe._dwarf as dwarf

_ARG = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)')


def file_offset(path: Path, address: int) -> int:
    from elftools.elf.elffile import ELFFile

    with open(path, "rb") as stream:
        for segment in ELFFile(stream).iter_segments():
            if segment["p_type"] == "PT_LOAD" and \
                    segment["p_vaddr"] <= address < segment["p_vaddr"] + segment["p_memsz"]:
                return int(address - segment["p_vaddr"] + segment["p_offset"])
    raise AssertionError(hex(address))


def values(arguments: str) -> dict[str, str]:
    return dict(_ARG.findall(arguments))


def number(text: str) -> int | str:
    """A kernel-formatted value as a number (``0xfa`` and ``250`` alike), strings as they are."""
    try:
        return int(text, 0)
    except ValueError:
        return text


def definition(event: str, path: Path, address: int, args: list[str], kind: str = "p") -> str:
    return f"{kind}:{event} {path}:{file_offset(path, address):#x} {' '.join(args)}"


def perf_arguments(path: Path, function: str, expressions: list[str]) -> dict[str, str]:
    """perf probe's fetch-args (``FETCHARG:TYPE``) for the expressions it accepts and writes in
    a form the uprobe tracer takes (not ``@sym``, which only kprobes take)."""

    def ask(batch: list[str]) -> list[str] | None:
        done = subprocess.run([require_tool("perf"), "probe", "-x", str(path), "-D",
                               " ".join([function, *(e.lstrip("@") for e in batch)])],
                              capture_output=True, text=True, timeout=60)
        for line in done.stdout.splitlines():
            if line.startswith("p:"):
                return [arg.split("=", 1)[1] for arg in line.split(" ")[2:]]
        return None

    found = ask(expressions)  # one perf run when it takes them all
    pairs = zip(expressions, found, strict=True) if found is not None else (
        (expression, (ask([expression]) or [None])[0]) for expression in expressions)
    return {expression: fetch for expression, fetch in pairs
            if fetch is not None and not re.search(r"@[A-Za-z_]", fetch)}


@pytest.mark.parametrize("spec", build_params())
def test_values_match_the_program_and_perf(spec: Build) -> None:
    path = build(spec)
    info = dwarf.open_debug_info(str(path))
    assert info is not None
    definitions = []
    theirs: dict[str, dict[str, str]] = {}  # perf event → {its arg name: our expression}
    for function, expected in EXPECTED_VALUES.items():
        address = info.functions(function, inlined=False)[0].probe_address
        args = []
        for index, expression in enumerate(expected):
            text, _, cast = expression.partition(":")
            compiled = info.compile(text, address, cast=cast or None)
            args.append(f"v{index}={compiled.fetcharg}:{compiled.type}")
        definitions.append(definition(f"rp_{function}", path, address, args))
        perf_args = []
        names: dict[str, str] = {}
        for index, (expression, fetch) in enumerate(perf_arguments(
                path, function, list(expected)).items()):
            perf_args.append(f"w{index}={fetch}")
            names[f"w{index}"] = expression
        if perf_args:
            definitions.append(definition(f"pf_{function}", path, address, perf_args))
            theirs[f"pf_{function}"] = names
    with KernelTracer(definitions) as tracer:
        subprocess.run([str(path)], check=True, capture_output=True, timeout=30)
        events = tracer.lines()
    seen: dict[str, dict[str, str]] = {}
    for event, arguments in events:
        seen.setdefault(event, values(arguments))
    misread_bitfields = 0
    for function, expected in EXPECTED_VALUES.items():
        ours = seen[f"rp_{function}"]
        for index, (expression, value) in enumerate(expected.items()):
            assert ours[f"v{index}"] == value, (spec.label, function, expression, ours)
        for name, expression in theirs.get(f"pf_{function}", {}).items():
            their_value = seen[f"pf_{function}"][name]
            if number(their_value) != number(expected[expression]):
                # perf takes DW_AT_bit_offset, counted from the most significant bit, for the
                # kernel's offset from the least significant one.
                assert "->" in expression and spec.dwarf == "4", (function, expression,
                                                                   their_value)
                misread_bitfields += 1
    if spec.dwarf == "4" and spec.compiler == "gcc":
        assert misread_bitfields


def loop_counters(info: dwarf.DebugInfo) -> list[tuple[int, dwarf.CompiledVariable]]:
    """Where a line of the loop in sum_squares starts with its counter ``i`` readable."""
    for marker in ("loop_add", "loop_body"):
        try:
            found = info.line_addresses("main.c", marker_line(marker))
        except dwarf.LineNotFoundError:
            continue
        usable = []
        for line_address in found:
            try:
                compiled = info.compile("i", line_address.address, function=line_address.function)
            except dwarf.NotAvailableError:
                continue
            usable.append((line_address.address, compiled))
        if usable:
            return usable
    return []


# clang-19 at -O1 and -O2 turns the loop into a closed form: no iteration is left to probe.
_LOOPING = [spec for spec in BUILDS if spec.compiler == "gcc" or spec.level == "-O0"]


@pytest.mark.parametrize("spec", [pytest.param(spec, id=spec.label) for spec in BUILDS
                                  if spec not in _LOOPING])
def test_a_loop_folded_away_has_no_counter(spec: Build) -> None:
    info = dwarf.open_debug_info(str(build(spec)))
    assert info is not None
    assert loop_counters(info) == []


@pytest.mark.parametrize("spec", [pytest.param(spec, id=spec.label) for spec in _LOOPING])
def test_loop_locals_change_every_iteration(spec: Build) -> None:
    path = build(spec)
    info = dwarf.open_debug_info(str(path))
    assert info is not None
    usable = loop_counters(info)
    assert usable, "no line of the loop"
    address, compiled = usable[0]
    with KernelTracer([definition("rp_loop", path, address,
                                  [f"i={compiled.fetcharg}:{compiled.type}"])]) as tracer:
        subprocess.run([str(path)], check=True, capture_output=True, timeout=30)
        events = tracer.lines()
    assert [values(arguments)["i"] for _, arguments in events] == ["0", "1", "2", "3"]


@pytest.mark.parametrize("spec", build_params())
def test_structs_on_mains_stack(spec: Build) -> None:
    """Locals of main, some of them struct members and bitfields on the stack, read at a
    line after they are set — through a frame base perf cannot evaluate in clang's builds."""
    path = build(spec)
    info = dwarf.open_debug_info(str(path))
    assert info is not None
    expected = {"in.x": "7", "o.tag": "3", "o.in->y": "8", "b.mid": "17", "buf:string": '"xyz"',
                "arr[2]": "3", "o.name:string": '"hello"'}
    (line_address, *_) = info.line_addresses("main.c", marker_line("main_deep"))
    args, wanted = [], {}
    for index, expression in enumerate(expected):
        text, _, cast = expression.partition(":")
        try:
            compiled = info.compile(text, line_address.address, cast=cast or None,
                                    function=line_address.function)
        except dwarf.NotAvailableError:
            assert spec.level != "-O0", expression
            continue
        args.append(f"v{index}={compiled.fetcharg}:{compiled.type}")
        wanted[f"v{index}"] = expected[expression]
    assert wanted, "nothing of main's readable"
    with KernelTracer([definition("rp_main", path, line_address.address, args)]) as tracer:
        subprocess.run([str(path)], check=True, capture_output=True, timeout=30)
        events = tracer.lines()
    assert len(events) == 1
    got = values(events[0][1])
    assert {name: got[name] for name in wanted} == wanted


@pytest.mark.parametrize("spec", build_params())
def test_return_values(spec: Build) -> None:
    path = build(spec)
    info = dwarf.open_debug_info(str(path))
    assert info is not None
    results = {"add": "3", "globals": "105", "chain": "100"}
    definitions = []
    for function in results:
        entry = info.functions(function, inlined=False)[0].entry_address
        compiled = info.compile("$retval", entry, retprobe=True)
        counter = info.compile("@counter", entry, retprobe=True)
        definitions.append(definition(f"rp_{function}", path, entry, [
            f"r={compiled.fetcharg}:{compiled.type}", f"c={counter.fetcharg}:{counter.type}"],
            kind="r"))
    with KernelTracer(definitions) as tracer:
        subprocess.run([str(path)], check=True, capture_output=True, timeout=30)
        events = tracer.lines()
    got = {event: values(arguments) for event, arguments in events}
    assert {function: got[f"rp_{function}"]["r"] for function in results} == results
    assert all(got[f"rp_{function}"]["c"] == "5" for function in results)


def test_globals_in_a_position_dependent_executable() -> None:
    """``@+N`` is relative to where the kernel finds the probed file, in a non-PIE too."""
    path = build_c(PROGRAM, name="nopie", flags=("-O1", "-g", "-no-pie", "-fno-pie"))
    info = dwarf.open_debug_info(str(path))
    assert info is not None
    address = info.functions("globals", inlined=False)[0].probe_address
    args = []
    for index, (expression, cast) in enumerate([("@counter", None), ("@config.limit", None),
                                               ("@config.label", "string"),
                                               ("@config.table[3]", None)]):
        compiled = info.compile(expression, address, cast=cast)
        args.append(f"v{index}={compiled.fetcharg}:{compiled.type}")
    with KernelTracer([definition("rp_nopie", path, address, args)]) as tracer:
        subprocess.run([str(path)], check=True, capture_output=True, timeout=30)
        events = tracer.lines()
    assert values(events[0][1]) == {"v0": "5", "v1": "100", "v2": '"cfg"', "v3": "40"}


@pytest.mark.parametrize("spec", [Build("gcc", "-O0"), Build("clang-19", "-O2")],
                         ids=lambda spec: spec.label)
def test_enums_unions_bools(spec: Build) -> None:
    from test_dwarf_programs import TYPES_PROGRAM

    path = build(spec, TYPES_PROGRAM, name="types")
    info = dwarf.open_debug_info(str(path))
    assert info is not None
    address = info.functions("types", inlined=False)[0].probe_address
    expected = {"c": "5", "g": "-1", "t->a": "1", "t->u": "2", "flag": "1", "n": "9",
                "limit": "42"}
    args = []
    for index, expression in enumerate(expected):
        compiled = info.compile(expression, address)
        args.append(f"v{index}={compiled.fetcharg}:{compiled.type}")
    with KernelTracer([definition("rp_types", path, address, args)]) as tracer:
        subprocess.run([str(path)], capture_output=True, timeout=30)
        events = tracer.lines()
    got = values(events[0][1])
    assert [got[f"v{index}"] for index in range(len(expected))] == list(expected.values())

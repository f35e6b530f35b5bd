"""Differential tests: the DWARF reader against perf probe, on the same files.

``perf probe -x BIN -V FUNC`` lists the variables readable at a function probe;
``perf probe -x BIN -D 'FUNC EXPR...'`` prints the uprobe_events definition it would write. For
every function of the test program, built every way, rawprobe must list the same variables,
put the probe at the same address and read each expression with the same fetch-arg, except
where perf is known to fall short — and each exception is checked, not assumed:

- perf types unsigned integers ``x`` (hex), rawprobe ``u``: same width, same bits; perf leaves
  arrays untyped (the kernel's default, their first 8 bytes), rawprobe reads their elements;
- perf writes a global as ``@sym+off``, which the kernel's uprobe tracer does not take;
  rawprobe writes the ``@+N`` it does take, and N must be that symbol's address in the kernel's
  file-offset terms;
- perf 6.1 cannot read bitfields described by ``DW_AT_data_bit_offset`` (DWARF 4 and 5 from
  gcc 12 and clang), and misplaces those described by ``DW_AT_bit_offset`` (it takes the
  big-endian bit number for a little-endian one); rawprobe's values are checked by the kernel
  in kernel/test_dwarf_kernel.py;
- perf cannot evaluate a frame base of more than one operation (clang's ``main``), nor find the
  frame address in a separate debug file (whose ``.eh_frame`` is empty), so it omits stack
  variables there; rawprobe reads them through the probed file's ``.eh_frame``.
"""

from __future__ import annotations

import re
import subprocess
import time

import pytest
from dwarf_programs import EXPECTED_VALUES, FUNCTIONS, Build, build, build_params, marker_line
from elftools.elf.elffile import ELFFile
from helpers import require_tool, skip_or_fail

import rawprobe._dwarf as dwarf

LIBC = "/lib/x86_64-linux-gnu/libc.so.6"


def perf(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_tool("perf"), "probe", *args], capture_output=True, text=True,
                          timeout=60)


def perf_variables(path: str, function: str) -> dict[tuple[str, int], set[str]]:
    """``perf probe -V``: {(function, offset): {"TYPE\\tNAME", ...}}."""
    result: dict[tuple[str, int], set[str]] = {}
    current: tuple[str, int] | None = None
    for line in perf("-x", path, "-V", function).stdout.splitlines():
        match = re.fullmatch(r"\t@<(.+)\+(\d+)>", line)
        if match:
            current = (match.group(1), int(match.group(2)))
            result[current] = set()
        elif line.startswith("\t\t") and current is not None and "No matched" not in line:
            result[current].add(line[2:])
    return result


def perf_definitions(path: str, spec: str) -> tuple[list[tuple[int, list[tuple[str, str, str]]]],
                                                     str]:
    """``perf probe -D``: [(file offset, [(name, fetch-arg, type)])], and perf's stderr."""
    done = perf("-x", path, "-D", spec)
    definitions = []
    for line in done.stdout.splitlines():
        if not line.startswith(("p:", "r:")):
            continue
        _, place, *args = line.split(" ")
        offset = int(place.rsplit(":", 1)[1], 16)
        parsed = []
        for arg in args:
            name, _, rest = arg.partition("=")
            fetch, _, kind = rest.rpartition(":") if ":" in rest else (rest, "", "")
            parsed.append((name, fetch, kind))
        definitions.append((offset, parsed))
    return definitions, done.stderr


class Elf:
    """Symbols and segments of a file, to translate perf's spellings into rawprobe's."""

    def __init__(self, path: str) -> None:
        with open(path, "rb") as stream:
            elf = ELFFile(stream)
            self.segments = [(s["p_vaddr"], s["p_memsz"], s["p_offset"])
                             for s in elf.iter_segments() if s["p_type"] == "PT_LOAD"]
            symtab = elf.get_section_by_name(".symtab")
            self.symbols = {sym.name: sym["st_value"] for sym in symtab.iter_symbols()} \
                if symtab is not None else {}

    def delta(self, address: int) -> int:
        for vaddr, size, offset in self.segments:
            if vaddr <= address < vaddr + size:
                return int(vaddr - offset)
        raise AssertionError(hex(address))

    def file_offset(self, address: int) -> int:
        return address - self.delta(address)

    def globals_as_rawprobe(self, fetch: str, probe_address: int) -> str:
        """perf's ``@config+8`` as the ``@+N`` rawprobe writes for a probe at that address."""
        def replace(match: re.Match[str]) -> str:
            address = self.symbols[match.group(1)] + int(match.group(2))
            return f"@+{address - self.delta(probe_address):#x}"

        return re.sub(r"@([A-Za-z_]\w*)\+(\d+)", replace, fetch)


def same_type(perf_type: str, ours: str) -> bool:
    """perf says ``x`` where rawprobe says ``u`` (tools/perf/util/probe-finder.c,
    convert_variable_type: unsigned types are shown in hex when the kernel has ``x``), and
    gives no type where it finds no ``DW_AT_byte_size`` (arrays; clang's pointers), so the
    kernel reads 8 bytes as ``x64``, where rawprobe reads an array's elements."""
    return perf_type == ours or (perf_type.startswith("x") and ours == "u" + perf_type[1:]) or \
        (perf_type == "" and (ours.endswith("]") or ours == "x64"))


@pytest.mark.parametrize("spec", build_params())
def test_available_variables_match_perf(spec: Build) -> None:
    path = str(build(spec))
    info = dwarf.open_debug_info(path)
    assert info is not None
    compared = 0
    for function in FUNCTIONS:
        theirs = perf_variables(path, function)
        try:
            instances = info.functions(function)
        except dwarf.FunctionNotFoundError:
            assert not theirs, (function, theirs)
            continue
        ours: dict[int, dict[str, dwarf.Variable]] = {}
        for instance in instances:
            ours[instance.entry_address] = {
                v.perf_text: v for v in info.variables_at(instance.entry_address,
                                                          function=instance.name)}
        for (label, offset), their_set in theirs.items():
            address = info.functions(label, inlined=False)[0].entry_address + offset
            assert address in ours, (function, label, offset)
            our_set = {text for text, v in ours.pop(address).items() if v.available}
            for extra in our_set - their_set:
                # Only stack variables under a frame base perf cannot evaluate.
                variable = next(v for v in info.variables_at(address, function=function)
                                if v.perf_text == extra)
                assert variable.location.startswith("DW_OP_fbreg"), (function, extra)
                assert frame_base_ops(info, address) > 1, (function, extra)
            assert their_set <= our_set, (spec.label, function, their_set - our_set)
            compared += 1
        # Instances perf does not list have nothing readable at their entry.
        for variables in ours.values():
            assert not any(v.available for v in variables.values()), (function, variables)
    assert compared >= len(FUNCTIONS) - 2


def frame_base_ops(info: dwarf.DebugInfo, address: int) -> int:
    """How many operations the frame base of the function at ``address`` has."""
    function = info._scope_at(address).real_function
    attribute = function.die.attributes["DW_AT_frame_base"]
    return len(function.unit.expr_parser.parse_expr(attribute.value))


def perf_expression(expression: str) -> str:
    """perf finds globals by their bare name; ``@name`` is rawprobe's (and SystemTap's)."""
    return expression.lstrip("@")


@pytest.mark.parametrize("spec", build_params())
def test_fetchargs_match_perf(spec: Build) -> None:
    path = str(build(spec))
    info = dwarf.open_debug_info(path)
    assert info is not None
    elf = Elf(path)
    bitfields_perf_misplaces = 0
    for function, values in EXPECTED_VALUES.items():
        instance = info.functions(function, inlined=False)[0]
        expressions = [*values, "$vars"]
        definitions, _ = perf_definitions(path, " ".join(
            [function, *(perf_expression(e) for e in expressions)]))
        if definitions:
            (offset, args), = definitions
            singles = {e: (offset, [arg])
                       for e, arg in zip(values, args[:len(values)], strict=True)}
            vars_args = args[len(values):]
        else:
            singles = {}
            for expression in values:
                found, error = perf_definitions(path, f"{function} {perf_expression(expression)}")
                singles[expression] = found[0] if found else (None, [error])  # type: ignore[assignment]
            found, _ = perf_definitions(path, f"{function} $vars")
            vars_args = found[0][1] if found else []
        for expression in values:
            text, _, cast = expression.partition(":")
            offset, args = singles[expression]
            if offset is None:
                # perf refused: so must rawprobe, but for bitfields, which perf 6.1 cannot read
                # when described by DW_AT_data_bit_offset.
                error = str(args[0])
                if "->" in text and text.split("->")[-1] in ("low", "mid", "neg", "flag"):
                    assert "Failed to get the offset of" in error, error
                    info.compile(text, instance.probe_address, cast=cast or None)
                    continue
                with pytest.raises(dwarf.DwarfError):
                    info.compile(text, instance.probe_address, cast=cast or None)
                continue
            assert offset == elf.file_offset(instance.probe_address), (function, spec.label)
            ours = info.compile(text, instance.probe_address, cast=cast or None)
            (_, their_fetch, their_type), = args
            their_fetch = elf.globals_as_rawprobe(their_fetch, instance.probe_address)
            if their_type.startswith("b") and (their_fetch, their_type) != (ours.fetcharg,
                                                                             ours.type):
                # perf takes DW_AT_bit_offset (counted from the most significant bit) for the
                # kernel's bit offset (counted from the least): checked in the kernel tests.
                assert spec.dwarf == "4" and spec.compiler == "gcc", (expression, args)
                bitfields_perf_misplaces += 1
                continue
            assert their_fetch == ours.fetcharg, (spec.label, function, expression, args, ours)
            assert same_type(their_type, ours.type), (spec.label, function, expression, ours)
        # $vars: the same variables, read the same way.
        expected = [(v.name, info.compile(v.name, instance.probe_address))
                    for v in info.vars(instance.probe_address)]
        assert [name for name, _ in expected] == [name for name, _, _ in vars_args], function
        for (_, ours), (_, fetch, kind) in zip(expected, vars_args, strict=True):
            assert elf.globals_as_rawprobe(fetch, instance.probe_address) == ours.fetcharg
            assert same_type(kind, ours.type)
    if spec.dwarf == "4" and spec.compiler == "gcc":
        assert bitfields_perf_misplaces


@pytest.mark.parametrize("spec", build_params())
@pytest.mark.parametrize("marker", ["loop_body", "loop_add", "main_deep"])
def test_source_lines_match_perf(spec: Build, marker: str) -> None:
    path = str(build(spec))
    info = dwarf.open_debug_info(path)
    assert info is not None
    elf = Elf(path)
    line = marker_line(marker)
    expressions = ["in.x", "o.tag"] if marker == "main_deep" else ["i", "total"]
    definitions, error = perf_definitions(path, f"main.c:{line} {' '.join(expressions)}")
    try:
        ours = info.line_addresses("main.c", line)
    except dwarf.LineNotFoundError:
        assert not definitions, definitions
        return
    if not definitions and not error:
        # perf crashed (it does on some of clang's line tables): rawprobe answers alone.
        for found in ours:
            for expression in expressions:
                try:
                    info.compile(expression, found.address, function=found.function)
                except dwarf.NotAvailableError as refusal:
                    assert "cannot be read" in str(refusal)
        return
    if not definitions:
        if "don't support this variable location" in error:
            # clang's main has a frame base of three operations, which perf cannot evaluate.
            assert marker == "main_deep" and spec.compiler == "clang-19", error
            for found in ours:
                for expression in expressions:
                    info.compile(expression, found.address, function=found.function)
            return
        # perf refuses a line when one of its addresses starts another line too; rawprobe
        # leaves those addresses out and probes the others.
        assert "sharing the address" in error or "Failed to find" in error, error
        return
    assert [elf.file_offset(found.address) for found in ours] == [o for o, _ in definitions]
    for found, (_, args) in zip(ours, definitions, strict=True):
        for expression, (_, fetch, kind) in zip(expressions, args, strict=True):
            compiled = info.compile(expression, found.address, function=found.function)
            assert (compiled.fetcharg, compiled.type) == (fetch, kind), (expression, found)


# -- libc, with its debug file from libc6-dbg ----------------------------------------------

def libc_info() -> dwarf.DebugInfo:
    info = dwarf.open_debug_info(LIBC)
    if info is None:
        skip_or_fail("no debug information for libc (install libc6-dbg)")
        raise AssertionError("unreachable")
    return info


LIBC_FUNCTIONS = ["malloc", "free", "calloc", "realloc", "_IO_fgets", "getenv", "qsort_r",
                  "__libc_open64", "fopen", "strtol"]


@pytest.mark.parametrize("function", LIBC_FUNCTIONS)
def test_libc_available_variables_match_perf(function: str) -> None:
    info = libc_info()
    theirs = perf_variables(LIBC, function)
    (instance,) = info.functions(function, inlined=False)
    ours = {v.perf_text: v for v in info.variables_at(instance.entry_address,
                                                      function=instance.name) if v.available}
    (their_set,) = theirs.values()
    assert their_set <= set(ours), their_set - set(ours)
    for extra in set(ours) - their_set:
        # perf reads the debug file, whose .eh_frame is SHT_NOBITS: without the frame address
        # it cannot read stack variables. rawprobe takes .eh_frame from libc.so.6 itself.
        assert info.source == "build-id" and ours[extra].location.startswith("DW_OP_fbreg")


LIBC_EXPRESSIONS = {
    "malloc": ["bytes"],
    "_IO_fgets": ["buf", "n", "fp->_flags", "fp->_chain->_fileno", "fp->_IO_read_ptr"],
    "getenv": ["name:string"],
    "__libc_open64": ["file:string", "oflag"],
}


@pytest.mark.parametrize("function", sorted(LIBC_EXPRESSIONS))
def test_libc_fetchargs_match_perf(function: str) -> None:
    info = libc_info()
    (instance,) = info.functions(function, inlined=False)
    expressions = LIBC_EXPRESSIONS[function]
    definitions, error = perf_definitions(LIBC, " ".join([instance.name, *expressions]))
    assert definitions, error
    (offset, args), = definitions
    assert offset == Elf(LIBC).file_offset(instance.probe_address)
    for expression, (_, fetch, kind) in zip(expressions, args, strict=True):
        text, _, cast = expression.partition(":")
        ours = info.compile(text, instance.probe_address, cast=cast or None)
        assert ours.fetcharg == fetch and same_type(kind, ours.type), (expression, ours)


def test_libc_resolve_speed(capsys: pytest.CaptureFixture[str]) -> None:
    """Cold: read libc's debug file and resolve malloc's ``bytes``. Warm: a new member chain
    in an already read unit (no compile cache involved) must take under 10 ms."""
    libc_info()
    dwarf.clear_cache()
    start = time.perf_counter()
    info = dwarf.open_debug_info(LIBC)
    assert info is not None
    opened = time.perf_counter()
    malloc = info.functions("malloc", inlined=False)[0]
    assert info.compile("bytes", malloc.probe_address).fetcharg == "%di"
    cold = time.perf_counter()
    fgets = info.functions("_IO_fgets", inlined=False)[0]
    info.compile("n", fgets.probe_address)  # reads the unit of _IO_fgets
    warm_start = time.perf_counter()
    chain = info.compile("fp->_chain->_fileno", fgets.probe_address)
    warm = time.perf_counter() - warm_start
    assert chain.fetcharg == "+112(+104(%dx))"
    repeat_start = time.perf_counter()
    info.compile("fp->_chain->_fileno", fgets.probe_address)
    repeat = time.perf_counter() - repeat_start
    with capsys.disabled():
        print(f"\nlibc: open {opened - start:.3f} s, malloc bytes cold {cold - start:.3f} s, "
              f"warm chain {warm * 1000:.2f} ms, repeated {repeat * 1e6:.0f} us")
    assert warm < 0.010
    assert cold - start < 5


def test_libc_inlined_copies_are_found_everywhere() -> None:
    """Reading every unit once (the name index) finds copies of a function inlined in other
    units; timed, since it is the one slow question on a big library."""
    info = libc_info()
    start = time.perf_counter()
    copies = [i for i in info.functions("checked_request2size") if i.inlined]
    elapsed = time.perf_counter() - start
    assert copies and all(c.caller for c in copies)
    assert {c.caller for c in copies} >= {"_int_malloc"} or len(copies) > 1
    print(f"libc name index: {elapsed:.1f} s, {len(copies)} inlined copies")


@pytest.mark.parametrize("function", ["_int_malloc", "_IO_fgets", "__libc_malloc"])
def test_libc_params_and_vars_match_perf(function: str) -> None:
    """``$params``/``$vars``: the same variables in the same order, read the same way; a
    static local perf writes as ``@name+0`` (for kprobes) is the ``@+N`` of its symbol."""
    info = libc_info()
    (instance,) = info.functions(function, inlined=False)
    elf = Elf(LIBC)
    elf.symbols = Elf(info.debug_path).symbols  # libc.so.6 itself has no .symtab
    for special, ours in (("$params", info.params(instance.probe_address)),
                          ("$vars", info.vars(instance.probe_address))):
        definitions, error = perf_definitions(LIBC, f"{function} {special}")
        assert definitions, error
        (_, args), = definitions
        assert [v.name for v in ours] == [name for name, _, _ in args]
        for variable, (_, fetch, kind) in zip(ours, args, strict=True):
            compiled = info.compile(variable.name, instance.probe_address)
            static = re.fullmatch(r"@(\w+)\+0", fetch)
            if static and static.group(1) not in elf.symbols:
                # A static local: its symbol is __PRETTY_FUNCTION__.0, one of many, so perf's
                # @__PRETTY_FUNCTION__ names nothing. rawprobe's N is its DW_OP_addr's.
                address = int(variable.location.split()[1], 0)
                assert variable.location.startswith("DW_OP_addr ")
                assert compiled.fetcharg == \
                    f"@+{address - elf.delta(instance.probe_address):#x}"
                continue
            assert elf.globals_as_rawprobe(fetch, instance.probe_address) == compiled.fetcharg
            assert same_type(kind, compiled.type)

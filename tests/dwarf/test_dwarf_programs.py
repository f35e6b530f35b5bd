"""The DWARF reader on programs built here with gcc and clang-19, at -O0, -O1 and -O2.

These tests need no kernel: they check what the reader says against what the build must
contain (the symbol table, the source) and against its own other answers. Agreement with perf
probe is in test_dwarf_perf.py; the values the kernel reads are in kernel/.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from dwarf_programs import FUNCTIONS, PROGRAM, Build, build, build_params, marker_line
from elftools.elf.elffile import ELFFile
from helpers import build_c, require_tool

import rawprobe._dwarf as dwarf
from rawprobe._errors import NotElfError, UsageError


def elf_symbol(path: Path, name: str) -> int:
    with open(path, "rb") as stream:
        symtab = ELFFile(stream).get_section_by_name(".symtab")
        for symbol in symtab.iter_symbols():
            if symbol.name == name:
                return int(symbol["st_value"])
    raise AssertionError(f"no symbol {name} in {path}")


def segment_delta(path: Path, address: int) -> int:
    """p_vaddr - p_offset of the PT_LOAD segment holding ``address``."""
    with open(path, "rb") as stream:
        for segment in ELFFile(stream).iter_segments():
            if segment["p_type"] == "PT_LOAD" and \
                    segment["p_vaddr"] <= address < segment["p_vaddr"] + segment["p_memsz"]:
                return int(segment["p_vaddr"] - segment["p_offset"])
    raise AssertionError(f"{address:#x} in no segment")


@pytest.fixture(params=build_params())
def program(request: pytest.FixtureRequest) -> tuple[Build, Path, dwarf.DebugInfo]:
    spec: Build = request.param
    path = build(spec)
    info = dwarf.open_debug_info(str(path))
    assert info is not None
    return spec, path, info


def entry_probe(info: dwarf.DebugInfo, name: str) -> int:
    return info.functions(name, inlined=False)[0].probe_address


def test_out_of_line_functions_are_where_their_symbols_are(program) -> None:  # type: ignore[no-untyped-def]
    spec, path, info = program
    for name in FUNCTIONS:
        if name == "square":
            continue
        (instance,) = info.functions(name, inlined=False)
        assert instance.entry_address == elf_symbol(path, name), name
        assert not instance.inlined and instance.caller is None
        assert instance.decl_file is not None and instance.decl_file.endswith("main.c")
        assert instance.ranges[0][0] <= instance.probe_address < instance.ranges[0][1]
        assert info.function_at(instance.entry_address + 1) == instance
    assert {i.name for i in info.functions("s*", inlined=False)} == \
        {"scalars", "strings", "sum_squares"}
    add = info.functions("add", inlined=False)[0]
    assert add.decl_line == next(n for n, line in enumerate(PROGRAM.splitlines(), 1)
                                 if "int add(int a" in line)
    # perf probe skips the prologue where it takes the unit for unoptimized (gcc -O0, and
    # clang's DWARF 5 at any level: see Unit.optimized); gcc's optimized units keep the entry.
    if spec.compiler == "gcc" and spec.level != "-O0":
        assert add.probe_address == add.entry_address
    if spec.level == "-O0":
        assert add.probe_address > add.entry_address


def test_inlined_copies_have_their_own_variables(program) -> None:  # type: ignore[no-untyped-def]
    spec, _, info = program
    try:
        copies = [i for i in info.functions("square") if i.inlined]
    except dwarf.FunctionNotFoundError:
        # clang -O1/-O2 turn the loop into a closed form: no code of square is left.
        assert spec.compiler == "clang-19" and spec.level != "-O0"
        return
    assert copies, "square is always_inline, so it has inlined copies"
    for copy in copies:
        assert copy.caller == "sum_squares"
        assert copy.call_line == marker_line("loop_body")
        assert copy.probe_address == copy.entry_address
        names = [v.name for v in info.variables_at(copy.entry_address, function="square")]
        assert names[0] == "v" and "r" in names
        assert "total" not in names  # the caller's variables are not in square's scope
        assert copy in info.inlined_at(copy.entry_address)
        assert info.function_at(copy.entry_address).name == "sum_squares"  # type: ignore[union-attr]
    with pytest.raises(dwarf.FunctionNotFoundError, match="inlined copies only"):
        info.functions("square", inlined=False)


def test_parameters_of_add(program) -> None:  # type: ignore[no-untyped-def]
    _, _, info = program
    address = entry_probe(info, "add")
    variables = info.variables_at(address)
    assert [(v.name, v.kind, v.type_text, v.available) for v in variables] == [
        ("a", "parameter", "int", True), ("b", "parameter", "int", True)]
    assert [v.name for v in info.params(address)] == ["a", "b"]
    assert [v.perf_text for v in info.vars(address)] == ["int\ta", "int\tb"]


KERNEL_TYPES = {
    "add": {"a": "s32", "b": "s32"},
    "scalars": {"u": "u32", "c": "s8", "uc": "u8", "s": "s16", "l": "s64", "p": "x64"},
    "deep": {"o": "x64", "o->in->x": "s32", "o->in->y": "s64", "o->tag": "s32",
             "o->name:string": "string", "o->name": "s8[16]", "o->name[1]": "s8"},
    "strings": {"s:string": "string", "buf:string": "string", "s": "x64", "s[2]": "s8"},
    "arrays": {"arr[3]": "s64", "@config.table": "s32[4]", "@config.table[2]": "s32",
               "@config.label:string": "string", "n:x": "x32", "arr:u": "u64"},
    "bitfields": {"b->low": "b3@0/8", "b->mid": "b5@3/8", "b->neg": "b4@0/8",
                  "b->flag": "b1@4/8", "b->low:u8": "u8"},
    "globals": {"@counter": "s32", "counter": "s32", "@config.limit": "s32"},
    "chain": {"n->next->next->value": "s32"},
}


def test_compiled_types(program) -> None:  # type: ignore[no-untyped-def]
    _, _, info = program
    for function, expected in KERNEL_TYPES.items():
        address = entry_probe(info, function)
        for text, kernel_type in expected.items():
            expression, _, cast = text.partition(":")
            compiled = info.compile(expression, address, cast=cast or None)
            assert compiled.type == kernel_type, (function, text, compiled)
            assert compiled.expression == expression and compiled.address == address
    deep = info.compile("o->in->x", entry_probe(info, "deep"))
    assert deep.dereferences >= 2 and deep.fetcharg.startswith("+0(+0(")
    assert deep.type_text == "int" and deep.name == "x"
    assert deep.text == f"x={deep.fetcharg}:s32"
    string = info.compile("s", entry_probe(info, "strings"), cast="string")
    assert string.fetcharg.startswith("+0(") and string.type_text == "const char *"


def test_bitfields_byte_offsets(program) -> None:  # type: ignore[no-untyped-def]
    _, _, info = program
    address = entry_probe(info, "bitfields")
    low = info.compile("b->low", address).fetcharg
    neg = info.compile("b->neg", address).fetcharg
    flag = info.compile("b->flag", address).fetcharg
    # low/mid share byte 0; neg (bits 8-11) is in byte 1, flag (bit 12) too.
    assert low.startswith("+0(") and neg.startswith("+1(") and flag.startswith("+1(")
    assert info.compile("b->mid", address).fetcharg == low


def test_globals_use_the_kernels_file_offset_form(program) -> None:  # type: ignore[no-untyped-def]
    _, path, info = program
    address = entry_probe(info, "globals")
    delta = segment_delta(path, address)
    counter = info.compile("@counter", address)
    assert counter.fetcharg == f"@+{elf_symbol(path, 'counter') - delta:#x}"
    assert counter.dereferences == 1
    label = info.compile("@config.label", address, cast="string")
    assert label.fetcharg == f"+0(@+{elf_symbol(path, 'config') + 8 - delta:#x})"
    # A bare name that is not a local falls back to the unit's globals, as in perf probe.
    assert info.compile("config.limit", address).fetcharg == \
        f"@+{elf_symbol(path, 'config') - delta:#x}"
    hidden = info.compile("@hidden_total", address)  # a file-static variable
    assert hidden.fetcharg == f"@+{elf_symbol(path, 'hidden_total') - delta:#x}"


def test_return_values(program) -> None:  # type: ignore[no-untyped-def]
    _, _, info = program
    add = info.functions("add", inlined=False)[0]
    result = info.compile("$retval", add.entry_address, retprobe=True)
    assert (result.fetcharg, result.type) == ("$retval", "s32")
    assert info.compile("$retval", info.functions("scalars", inlined=False)[0].entry_address,
                        retprobe=True).type == "s64"
    assert info.compile("@counter", add.entry_address, retprobe=True).type == "s32"
    with pytest.raises(dwarf.DwarfError, match="return probe"):
        info.compile("$retval", add.entry_address)
    with pytest.raises(dwarf.DwarfError, match="gone by then"):
        info.compile("a", add.entry_address, retprobe=True)
    with pytest.raises(dwarf.DwarfError, match="function's entry"):
        info.compile("$retval", add.entry_address + 1, retprobe=True)


def test_chains_deeper_than_eight_reads_are_refused(program) -> None:  # type: ignore[no-untyped-def]
    _, _, info = program
    address = entry_probe(info, "chain")
    # n is in a register when optimized, on the stack at -O0: one read more.
    nexts = 8 - info.compile("n->value", address).dereferences
    eight = info.compile("n" + "->next" * nexts + "->value", address)
    assert eight.dereferences == 8
    with pytest.raises(dwarf.TypeMismatchError, match="at most 8"):
        info.compile("n" + "->next" * (nexts + 1) + "->value", address)


@pytest.mark.parametrize(
    ("function", "expression", "error", "words"),
    [
        ("add", "aa", dwarf.VariableNotFoundError, "did you mean a"),
        ("add", "zzz", dwarf.VariableNotFoundError, "@zzz"),
        ("add", "a->x", dwarf.TypeMismatchError, "is int, not a struct"),
        ("add", "a[1]", dwarf.TypeMismatchError, "not an array or a pointer"),
        ("add", "a:string", dwarf.TypeMismatchError, "char pointer"),
        ("add", "a:float", dwarf.TypeMismatchError, "not a kernel type"),
        ("deep", "o.in", dwarf.TypeMismatchError, "write o->in"),
        ("deep", "o->inn", dwarf.TypeMismatchError, "did you mean in"),
        ("deep", "o->in->x->y", dwarf.TypeMismatchError, "is int, not a struct"),
        ("deep", "o->in->x.y", dwarf.TypeMismatchError, "is int, not a struct"),
        ("deep", "o->name[16]", dwarf.TypeMismatchError, "past the end"),
        ("deep", "*o", dwarf.ExpressionSyntaxError, "variable name"),
        ("bitfields", "b->low.x", dwarf.TypeMismatchError, "bitfield"),
        ("bitfields", "b", dwarf.TypeMismatchError, None),
        ("globals", "@nosuch", dwarf.VariableNotFoundError, "@nosuch"),
        ("globals", "@config", dwarf.TypeMismatchError, "name a member (@config.limit"),
        ("scalars", "p->x", dwarf.TypeMismatchError, "points to void"),
    ],
)
def test_errors_say_what_to_do(
    function: str, expression: str, error: type[Exception], words: str | None
) -> None:
    info = dwarf.open_debug_info(str(build(Build("gcc", "-O0"))))
    assert info is not None
    address = entry_probe(info, function)
    expr, _, cast = expression.partition(":")
    if words is None:  # the control: it compiles
        info.compile(expr, address, cast=cast or None)
        return
    with pytest.raises(error, match=words.replace("(", r"\(")) as caught:
        info.compile(expr, address, cast=cast or None)
    assert isinstance(caught.value, UsageError)


def test_unavailable_variables_name_where_they_are_readable(program) -> None:  # type: ignore[no-untyped-def]
    spec, _, info = program
    checked = 0
    for name in FUNCTIONS:
        try:
            instances = info.functions(name)
        except dwarf.FunctionNotFoundError:
            continue  # square, all gone in clang's optimized builds
        for instance in instances:
            address = instance.probe_address
            for variable in info.variables_at(address, function=instance.name):
                if variable.available:
                    compiled = info.compile(variable.name, address, function=instance.name,
                                            cast="x64")
                    assert compiled.fetcharg
                    continue
                assert variable.reason
                with pytest.raises(dwarf.NotAvailableError) as caught:
                    info.compile(variable.name, address, function=instance.name)
                assert caught.value.reason == variable.reason
                assert caught.value.available_ranges == variable.available_ranges
                for low, _ in variable.available_ranges[:3]:
                    # Where the error says it is readable, it is.
                    info.compile(variable.name, low, function=instance.name, cast="x64")
                    checked += 1
    if spec.level != "-O0":
        assert checked, "optimized builds have variables readable only part of the time"


def test_source_lines(program) -> None:  # type: ignore[no-untyped-def]
    spec, _, info = program
    line = marker_line("loop_add")
    sum_squares = info.functions("sum_squares", inlined=False)[0]
    try:
        addresses = info.line_addresses("main.c", line)
    except dwarf.LineNotFoundError as error:
        assert spec.level != "-O0", error  # unoptimized code has every line
        assert "main.c:" in str(error) and "try" in str(error)
        return
    assert addresses
    for found in addresses:
        assert found.line == line and found.file.endswith("/main.c")
        assert found.function == "sum_squares"
        assert any(low <= found.address < high for low, high in sum_squares.ranges)
        names = {v.name for v in info.vars(found.address, function="sum_squares")}
        assert "total" in names or spec.level != "-O0"
    relative = line - (sum_squares.decl_line or 0)
    assert info.function_line("sum_squares", relative) == addresses
    lines = {source.line: source for source in info.lines("sum_squares")}
    assert line in lines and set(lines[line].addresses) >= {a.address for a in addresses}
    assert min(lines) >= (sum_squares.decl_line or 0)
    assert all(source.file.endswith("/main.c") for source in lines.values())


def test_lines_that_cannot_be_probed() -> None:
    info = dwarf.open_debug_info(str(build(Build("gcc", "-O0"))))
    assert info is not None
    with pytest.raises(dwarf.LineNotFoundError, match="no source file"):
        info.line_addresses("nosuch.c", 3)
    with pytest.raises(dwarf.LineNotFoundError, match="no code"):
        info.line_addresses("main.c", 2)  # #include
    with pytest.raises(dwarf.LineNotFoundError, match="has no code in add"):
        info.function_line("add", 40)
    with pytest.raises(dwarf.FunctionNotFoundError, match="did you mean add"):
        info.functions("addd")


def test_separate_debug_files(tmp_path: Path) -> None:
    objcopy = require_tool("objcopy")
    original = build(Build("gcc", "-O2"))
    root = tmp_path / "debug"
    stripped = tmp_path / "main"
    debug_file = tmp_path / "main.debug"
    subprocess.run([objcopy, "--only-keep-debug", str(original), str(debug_file)], check=True)
    subprocess.run([objcopy, "--strip-debug", str(original), str(stripped)], check=True)
    assert dwarf.open_debug_info(str(stripped), debug_root=str(root)) is None
    with pytest.raises(dwarf.NoDebugInfoError, match="debug package"):
        dwarf.require_debug_info(str(stripped), debug_root=str(root))

    with open(original, "rb") as stream:
        build_id = next(note for section in ELFFile(stream).iter_sections()
                        if section["sh_type"] == "SHT_NOTE" for note in section.iter_notes()
                        if note["n_type"] == "NT_GNU_BUILD_ID")["n_desc"]
    by_id = root / ".build-id" / build_id[:2] / f"{build_id[2:]}.debug"
    by_id.parent.mkdir(parents=True)
    shutil.copy(debug_file, by_id)
    os.utime(stripped)  # a new identity: the cached "no debug information" is not reused
    info = dwarf.open_debug_info(str(stripped), debug_root=str(root))
    assert info is not None and info.source == "build-id" and info.debug_path == str(by_id)
    address = info.functions("add", inlined=False)[0].probe_address
    assert info.compile("a", address).fetcharg == "%di"
    # Globals: the number comes from the probed file's segments, the debug file's are NOBITS.
    assert info.compile("@counter", address).fetcharg == \
        f"@+{elf_symbol(original, 'counter') - segment_delta(original, address):#x}"

    linked = tmp_path / "linked"
    shutil.copy(debug_file, tmp_path / "linked.debug")
    subprocess.run([objcopy, f"--add-gnu-debuglink={tmp_path / 'linked.debug'}", str(stripped),
                    str(linked)], check=True)
    info = dwarf.open_debug_info(str(linked), debug_root=str(tmp_path / "empty"))
    assert info is not None and info.source == "debuglink"
    # A debug file whose CRC does not match is not used.
    (tmp_path / "linked.debug").write_bytes(debug_file.read_bytes() + b"\0")
    os.utime(linked)
    assert dwarf.open_debug_info(str(linked), debug_root=str(tmp_path / "empty")) is None


def test_files_are_read_once_per_identity(tmp_path: Path) -> None:
    path = tmp_path / "main"
    shutil.copy(build(Build("gcc", "-O0")), path)
    first = dwarf.open_debug_info(str(path))
    assert first is not None and dwarf.open_debug_info(str(path)) is first
    os.utime(path, ns=(1, 1))
    assert dwarf.open_debug_info(str(path)) is not first


def test_bad_files(tmp_path: Path) -> None:
    (tmp_path / "text").write_text("not an ELF file\n")
    with pytest.raises(NotElfError):
        dwarf.open_debug_info(str(tmp_path / "text"))
    with pytest.raises(UsageError, match="no such file"):
        dwarf.open_debug_info(str(tmp_path / "missing"))
    with pytest.raises(NotElfError, match="directory"):
        dwarf.open_debug_info(str(tmp_path))
    good = dwarf.open_debug_info(str(build(Build("gcc", "-O0"))))
    assert good is not None
    with pytest.raises(dwarf.FunctionNotFoundError, match="containing address 0x10"):
        good.variables_at(0x10)
    with pytest.raises(dwarf.FunctionNotFoundError, match="belongs to add"):
        good.compile("a", good.functions("add")[0].probe_address, function="main")
    no_dwarf = build_c("int main(void) { return 0; }\n", name="nodwarf", flags=("-O2",))
    assert dwarf.open_debug_info(str(no_dwarf), debug_root=str(tmp_path)) is None
    # Truncated debug information: an error that says so, never a traceback.
    broken = tmp_path / "broken"
    data = bytearray(build(Build("gcc", "-O0")).read_bytes())
    with open(build(Build("gcc", "-O0")), "rb") as stream:
        section = ELFFile(stream).get_section_by_name(".debug_info")
        start, size = section["sh_offset"], section["sh_size"]
    data[start + 11: start + size] = b"\xff" * (size - 11)
    broken.write_bytes(bytes(data))
    info = dwarf.open_debug_info(str(broken))
    with pytest.raises(UsageError):
        assert info is not None
        info.functions("add")


def test_name_index_agrees_with_a_full_walk(program) -> None:  # type: ignore[no-untyped-def]
    """The fast pass over .debug_info (_scan) finds what reading every DIE finds."""
    from rawprobe._dwarf._unit import die_name, linkage_name

    _, _, info = program
    walked = set()
    globals_walked = set()
    for unit in info._iter_units():
        for tree in unit.trees():
            for scope in tree.walk():
                if scope.kind != "block":
                    for name in {die_name(scope.die), linkage_name(scope.die)} - {None}:
                        walked.add((name, scope.die.offset, scope.kind))
        for name, dies in unit.globals().items():
            globals_walked |= {(name, die.offset) for die in dies}
    index = info._functions.scanned()
    assert {(name, die, kind) for name, refs in index.functions.items()
            for _, die, kind, _ in refs} == walked
    assert {(name, die) for name, refs in index.variables.items()
            for _, die, _ in refs} == globals_walked
    assert not index.skipped_units and not index.unresolved
    for unit in info._iter_units():
        stmt_list, comp_dir = index.units[unit.cu.cu_offset]
        assert stmt_list == unit.top.attributes["DW_AT_stmt_list"].value
        assert comp_dir == unit.top.attributes["DW_AT_comp_dir"].value.decode()


def test_globals_of_other_units(tmp_path: Path) -> None:
    gcc = require_tool("gcc")
    (tmp_path / "a.c").write_text(
        "int shared = 42;\nlong only_here[3] = {1, 2, 3};\n"
        "struct pair { int x, y; } pair = {7, 8};\n")
    (tmp_path / "b.c").write_text(
        "extern int shared;\n"
        "__attribute__((noinline)) int use(int k) { return shared + k; }\n"
        "int main(void) { return use(1) == 0; }\n")
    path = tmp_path / "two"
    subprocess.run([gcc, "-O2", "-g", "-o", str(path), str(tmp_path / "a.c"),
                    str(tmp_path / "b.c")], check=True)
    info = dwarf.open_debug_info(str(path))
    assert info is not None
    address = info.functions("use", inlined=False)[0].probe_address
    delta = segment_delta(path, address)
    # Declared in use's unit (found through the symbol), and not declared there at all.
    assert info.compile("@shared", address).fetcharg == f"@+{elf_symbol(path, 'shared') - delta:#x}"
    assert info.compile("@only_here[2]", address).fetcharg == \
        f"@+{elf_symbol(path, 'only_here') + 16 - delta:#x}"
    assert info.compile("@pair.y", address).type == "s32"
    with pytest.raises(dwarf.VariableNotFoundError, match="@only_her"):
        info.compile("only_her", address)


TYPES_PROGRAM = r"""
enum color { RED, GREEN = 5 };
enum sign { MINUS = -1, PLUS = 1 };
typedef struct { int a; union { int u; float f; }; } thing_t;
typedef unsigned long size_type;
static const int limit = 42;
__attribute__((noinline)) int types(enum color c, enum sign g, const volatile thing_t *t,
                                    double d, _Bool flag, size_type n, int (*fn)(int),
                                    thing_t byval) {
    return c + g + t->a + t->u + (int)d + flag + (int)n + (fn != 0) + byval.a + limit;
}
static int twice(int v) { return 2 * v; }
int main(void) {
    thing_t t = { 1, { 2 } };
    return types(GREEN, MINUS, &t, 2.5, 1, 9, twice, t);
}
"""


@pytest.mark.parametrize("spec", [Build("gcc", "-O0"), Build("clang-19", "-O2")],
                         ids=lambda spec: spec.label)
def test_types(spec: Build) -> None:
    info = dwarf.open_debug_info(str(build(spec, TYPES_PROGRAM, name="types")))
    assert info is not None
    address = entry_probe(info, "types")
    expected = {"c": "u32", "g": "s32", "t->a": "s32", "t->u": "s32", "flag": "u8",
                "n": "u64", "fn": "x64", "t->f:x32": "x32", "c:x": "x32", "g:u": "u32"}
    for text, kernel_type in expected.items():
        expression, _, cast = text.partition(":")
        assert info.compile(expression, address, cast=cast or None).type == kernel_type, text
    by_name = {v.name: v for v in info.variables_at(address)}
    assert by_name["t"].type_text == "const volatile thing_t *"
    assert by_name["t"].perf_type_text == "thing_t*"
    assert by_name["fn"].type_text == "int (*)(int)"
    assert by_name["fn"].perf_type_text == "(function_type)*"
    assert by_name["n"].type_text == "size_type"
    with pytest.raises(dwarf.DwarfError, match="floating-point"):
        info.compile("t->f", address)
    with pytest.raises(dwarf.DwarfError, match="floating-point"):
        info.compile("d", address)  # in %xmm0 when optimized, a double on the stack if not
    with pytest.raises(dwarf.TypeMismatchError, match="char pointer"):
        info.compile("t", address, cast="string")
    with pytest.raises(dwarf.DwarfError, match=r"name a member|not in memory|pieces"):
        info.compile("byval", address)
    # Kept in .rodata, or folded into a constant the debug information records
    # (DW_AT_const_value, read as an immediate).
    assert info.compile("limit", address).fetcharg in (
        "\\42", f"@+{elf_symbol(info.path, 'limit') - segment_delta(info.path, address):#x}"
        if spec.level == "-O0" else "\\42")
    if spec.level == "-O0":
        assert info.compile("byval.a", address).type == "s32"
        assert info.compile("byval", address, cast="x64").fetcharg.endswith("(%bp)")

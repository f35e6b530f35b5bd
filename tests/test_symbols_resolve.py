"""Symbol → file offset resolution on compiled fixture programs, checked against readelf and perf.

The oracle offsets are computed here from ``readelf -Ws`` and ``readelf -lW`` output (value -
p_vaddr + p_offset of the executable PT_LOAD), independently of rawprobe, and compared with
``perf probe -D``, which prints the uprobe definition perf itself would create.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from fixtures_symbols import (
    NOPIE_FLAGS,
    PIE_FLAGS,
    SHARED_FLAGS,
    OracleFunction,
    perf_offsets,
    readelf_functions,
)
from fixtures_symbols.programs import (
    C_LIBRARY,
    C_PROGRAM,
    CPP_PROGRAM,
    FAKE_GO_PROGRAM,
    VERSION_SCRIPT,
    VERSIONED_LIBRARY,
    c_program_using_library,
)
from helpers import CompileC

from rawprobe import (
    NotElfError,
    SymbolNotFoundError,
    TargetNotFoundError,
    UsageError,
    check_locations,
)
from rawprobe._plan.insn import instruction_starts
from rawprobe._symbols import (
    AmbiguousLocationError,
    CorruptElfError,
    LocationError,
    NoSymbolsError,
    OffsetMismatchError,
    Symbol,
    UndefinedSymbolError,
    UnsupportedElfError,
    describe_target,
    list_functions,
    resolve_location,
    resolve_one,
)

pytestmark = pytest.mark.usefixtures("private_symbol_cache")


@pytest.fixture(scope="session")
def nopie(compile_c: CompileC) -> Path:
    return compile_c(C_PROGRAM, name="nopie", flags=NOPIE_FLAGS)


@pytest.fixture(scope="session")
def pie(compile_c: CompileC) -> Path:
    return compile_c(C_PROGRAM, name="pie", flags=PIE_FLAGS)


@pytest.fixture(scope="session")
def shared(compile_c: CompileC) -> Path:
    return compile_c(C_LIBRARY, name="libfixture", flags=SHARED_FLAGS, suffix=".so")


@pytest.fixture(scope="session")
def cpp(compile_c: CompileC) -> Path:
    return compile_c(CPP_PROGRAM, name="cart", flags=PIE_FLAGS, cxx=True)


@pytest.fixture(scope="session")
def versioned(compile_c: CompileC, tmp_path_factory: pytest.TempPathFactory) -> Path:
    script = tmp_path_factory.getbasetemp() / "versions.map"
    script.write_text(VERSION_SCRIPT)
    # The script's path is outside the cache key; the source and other flags decide the build.
    return compile_c(
        VERSIONED_LIBRARY + f"/* {script} */",
        name="libversioned",
        flags=(*SHARED_FLAGS, f"-Wl,--version-script={script}"),
        suffix=".so",
    )


@pytest.fixture(scope="session")
def program_with_library(compile_c: CompileC, shared: Path) -> Path:
    return compile_c(
        c_program_using_library(),
        name="uses_library",
        flags=(*PIE_FLAGS, "-Wl,--no-as-needed", str(shared), f"-Wl,-rpath,{shared.parent}"),
    )


def _assert_matches_oracle(symbols: list[Symbol], oracle: list[OracleFunction]) -> None:
    """Every oracle function is listed at its address with its offset, and nothing else is."""
    by_address = {sym.address: sym for sym in symbols}
    assert len(by_address) == len(symbols), "one Symbol per address"
    for function in oracle:
        sym = by_address.get(function.address)
        assert sym is not None, f"{function.name} at {function.address:#x} missing"
        assert sym.file_offset == function.file_offset, function
        names = {sym.name, *(alias.split("@")[0] for alias in sym.aliases)}
        assert function.name in names, (function, sym)
    assert set(by_address) == {function.address for function in oracle}


@pytest.mark.parametrize("variant", ["nopie", "pie", "shared", "cpp", "versioned"])
def test_every_function_agrees_with_readelf(variant: str, request: pytest.FixtureRequest) -> None:
    binary: Path = request.getfixturevalue(variant)
    _assert_matches_oracle(list_functions(str(binary)), readelf_functions(binary))


@pytest.mark.parametrize("variant", ["nopie", "pie", "shared"])
def test_offsets_agree_with_perf_probe(variant: str, request: pytest.FixtureRequest) -> None:
    if shutil.which("perf") is None and not Path("/usr/bin/perf").exists():
        pytest.skip("perf is not installed")
    binary: Path = request.getfixturevalue(variant)
    names = (
        ["add", "main", "real_work", "helper"]
        if variant != "shared"
        else ["lib_add", "lib_call", "lib_static"]
    )
    expected = perf_offsets(binary, names)
    if not expected:
        pytest.skip("perf probe -D printed nothing here")
    for name, offset in expected.items():
        assert resolve_one(str(binary), name).file_offset == offset, name


def test_nopie_offsets_differ_from_addresses(nopie: Path) -> None:
    # In a non-PIE executable the text is linked at 0x400000+; the offset is not the address.
    location = resolve_one(str(nopie), "add")
    assert location.address >= 0x400000
    derivation = location.derivation
    assert derivation is not None
    assert location.file_offset == location.address - derivation.segment_vaddr + (
        derivation.segment_offset
    )
    assert derivation.agrees is True
    assert derivation.section_name == ".text"
    assert derivation.section_file_offset == location.file_offset


def test_static_function_comes_from_symtab(nopie: Path) -> None:
    location = resolve_one(str(nopie), "helper")
    assert location.source == "symtab"
    assert location.kind == "func"


def test_aliases_are_listed_together(nopie: Path) -> None:
    (sym,) = [s for s in list_functions(str(nopie)) if s.name == "real_work"]
    assert {"alias_work", "weak_work"} <= set(sym.aliases)
    for name in ("alias_work", "weak_work"):
        location = resolve_one(str(nopie), name)
        assert location.file_offset == sym.file_offset
        assert "real_work" in location.aliases


def test_ifunc_is_flagged(nopie: Path) -> None:
    location = resolve_one(str(nopie), "chooser")
    assert location.kind == "ifunc"
    assert location.warning and "GNU indirect function" in location.warning
    (sym,) = list_functions(str(nopie), "chooser")
    assert sym.kind == "ifunc" and sym.warning


def test_symbol_plus_offset(nopie: Path) -> None:
    start = resolve_one(str(nopie), "add")
    inside = resolve_one(str(nopie), "add+0x4")
    assert inside.file_offset == start.file_offset + 4
    assert inside.symbol_offset == 4 and inside.symbol == "add"
    assert resolve_one(str(nopie), "add+4").file_offset == start.file_offset + 4
    with pytest.raises(LocationError, match="past its end"):
        resolve_one(str(nopie), f"add+{start.size}")
    forced = resolve_one(str(nopie), f"add+{start.size}", force=True)
    assert forced.warning and "forced" in forced.warning


def test_raw_offsets(nopie: Path) -> None:
    start = resolve_one(str(nopie), "add")
    by_offset = resolve_one(str(nopie), hex(start.file_offset))
    assert by_offset.symbol == "add" and by_offset.source == "offset"
    assert by_offset.address == start.address
    assert resolve_one(str(nopie), str(start.file_offset)).file_offset == start.file_offset
    # Inside the function: fine where an instruction starts, refused in the middle of one.
    code = nopie.read_bytes()[start.file_offset : start.file_offset + start.size]
    starts = instruction_starts(code, 0, len(code))
    inside = starts[1]
    middle = next(o + 1 for o in starts if o + 1 not in starts)
    at_instruction = resolve_one(str(nopie), hex(start.file_offset + inside))
    assert at_instruction.symbol == "add" and at_instruction.symbol_offset == inside
    assert check_locations(str(nopie), [at_instruction]) == [None]
    # Resolution says where the offset is; attach's verdict refuses the middle of one.
    middle_location = resolve_one(str(nopie), hex(start.file_offset + middle))
    assert middle_location.symbol == "add" and middle_location.symbol_offset == middle
    (refusal,) = check_locations(str(nopie), [middle_location])
    assert refusal is not None and "middle of an instruction of add" in refusal
    with pytest.raises(LocationError, match="no executable segment"):
        resolve_one(str(nopie), "0x0")
    with pytest.raises(LocationError, match="no executable segment"):
        resolve_one(str(nopie), "0x0", force=True)


def test_globs_give_one_location_per_function(nopie: Path) -> None:
    locations = resolve_location(str(nopie), "*_work")
    # real_work, alias_work and weak_work are one function.
    assert len(locations) == 1
    assert {loc.symbol for loc in resolve_location(str(nopie), "[ah]*")} >= {"add", "helper"}
    with pytest.raises(AmbiguousLocationError, match="matches"):
        resolve_one(str(nopie), "[ah]*")
    assert [s.name for s in list_functions(str(nopie), "a*")] == ["add"] or {
        s.name for s in list_functions(str(nopie), "a*")
    } <= {"add", "alias_work"}


def test_unknown_symbol_suggests_close_names(nopie: Path) -> None:
    with pytest.raises(SymbolNotFoundError) as caught:
        resolve_location(str(nopie), "ad")
    assert "add" in caught.value.suggestions
    assert caught.value.exit_status == 2
    with pytest.raises(SymbolNotFoundError, match="rawprobe list"):
        resolve_location(str(nopie), "zzzzzzzzzz")


def test_undefined_symbol_points_at_the_library(
    nopie: Path, program_with_library: Path, shared: Path
) -> None:
    with pytest.raises(UndefinedSymbolError) as caught:
        resolve_location(str(nopie), "printf")
    assert caught.value.defined_in is not None
    assert "libc.so" in caught.value.defined_in
    with pytest.raises(UndefinedSymbolError) as caught:
        resolve_location(str(program_with_library), "lib_add")
    assert caught.value.defined_in == str(shared)
    assert f"{shared}:lib_add" in str(caught.value)


def test_shared_library(shared: Path) -> None:
    location = resolve_one(str(shared), "lib_add")
    assert location.source == "dynsym"
    assert resolve_one(str(shared), "lib_static").source == "symtab"


def test_versioned_symbols(versioned: Path) -> None:
    path = str(versioned)
    oracle = {(f.name, f.version): f for f in readelf_functions(versioned)}
    new, old = oracle[("parse", "VERS_2.0")], oracle[("parse", "VERS_1.0")]
    default = resolve_one(path, "parse")
    assert default.file_offset == new.file_offset
    assert default.version == "VERS_2.0" and default.default_version
    assert default.versioned_name == "parse@@VERS_2.0"
    assert resolve_one(path, "parse@@VERS_2.0").file_offset == new.file_offset
    assert resolve_one(path, "parse@VERS_2.0").file_offset == new.file_offset
    compat = resolve_one(path, "parse@VERS_1.0")
    assert compat.file_offset == old.file_offset and not compat.default_version
    with pytest.raises(LocationError, match=r"parse@@VERS_2\.0"):
        resolve_one(path, "parse@@VERS_1.0")
    with pytest.raises(LocationError, match="no such version"):
        resolve_one(path, "parse@VERS_9")
    assert resolve_one(path, "stable@@VERS_1.0").symbol == "stable"
    listed = {s.versioned_name for s in list_functions(path, "parse*")}
    assert {"parse@@VERS_2.0", "parse@VERS_1.0"} <= listed | {
        alias for s in list_functions(path, "parse*") for alias in s.aliases
    }


def test_cplusplus_names(cpp: Path) -> None:
    path = str(cpp)
    both = resolve_location(path, "shop::Cart::total")
    assert len(both) == 2  # the two overloads
    one = resolve_one(path, "shop::Cart::total(int) const")
    assert one.symbol == "_ZNK4shop4Cart5totalEi"
    assert one.demangled == "shop::Cart::total(int) const"
    assert resolve_one(path, "_ZNK4shop4Cart5totalEi").file_offset == one.file_offset
    assert one.file_offset in {loc.file_offset for loc in both}
    with pytest.raises(AmbiguousLocationError):
        resolve_one(path, "shop::Cart::total")
    assert resolve_one(path, "shop::(anonymous namespace)::hidden(int)").symbol == (
        "_ZN4shop12_GLOBAL__N_16hiddenEi"
    )
    assert resolve_one(path, "int shop::twice<int>(int)").symbol == "_ZN4shop5twiceIiEET_S1_"
    assert resolve_one(path, "shop::twice<int>").symbol == "_ZN4shop5twiceIiEET_S1_"
    assert resolve_one(path, "shop::Cart::operator+=(int)").kind == "func"
    glob = {loc.demangled for loc in resolve_location(path, "shop::Cart::*")}
    assert "shop::Cart::make()" in glob
    # Demangled names are what c++filt prints.
    symbols = [s for s in list_functions(path) if s.name.startswith("_Z")]
    filtered = subprocess.run(
        ["c++filt"],
        input="\n".join(s.name for s in symbols),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    for sym, expected in zip(symbols, filtered, strict=True):
        assert sym.demangled in (expected, None), sym.name
        assert sym.demangled is not None, f"{sym.name} was not demangled"


def test_go_programs_refuse_return_probes(compile_c: CompileC) -> None:
    fake_go = str(compile_c(FAKE_GO_PROGRAM, name="fakego", flags=PIE_FLAGS))
    assert describe_target(fake_go).is_go
    assert resolve_one(fake_go, "handler").symbol == "handler"  # entry probes are fine
    # Resolving describes; attach's verdict (check_locations, as the planner decides) refuses.
    handler = resolve_location(fake_go, "handler")
    assert check_locations(fake_go, handler) == [None]
    (refusal,) = check_locations(fake_go, handler, retprobe=True)
    assert refusal is not None and "Go program" in refusal


def test_real_go_binary_if_present() -> None:
    candidates = [Path("/usr/lib/google-cloud-sdk/bin/anthoscli")]
    found = next((p for p in candidates if p.exists()), None)
    if found is None:
        pytest.skip("no Go binary on this host")
    assert describe_target(str(found)).is_go


def test_c_program_is_not_go(nopie: Path) -> None:
    info = describe_target(str(nopie))
    assert not info.is_go
    assert info.build_id and info.function_count >= 5
    assert check_locations(str(nopie), [resolve_one(str(nopie), "add")], retprobe=True) == [None]


def _patched(binary: Path, tmp_path: Path, edits: dict[int, bytes], name: str = "patched") -> str:
    data = bytearray(binary.read_bytes())
    for offset, value in edits.items():
        data[offset : offset + len(value)] = value
    target = tmp_path / name
    target.write_bytes(bytes(data))
    return str(target)


def _text_section_header(binary: Path) -> int:
    """File offset of the .text section header (Elf64_Shdr) of a 64-bit little-endian ELF."""
    data = binary.read_bytes()
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    (shentsize, shnum, shstrndx) = struct.unpack_from("<HHH", data, 0x3A)
    (strtab_offset,) = struct.unpack_from("<Q", data, shoff + shstrndx * shentsize + 24)
    for index in range(shnum):
        header = shoff + index * shentsize
        (name_offset,) = struct.unpack_from("<I", data, header)
        end = data.index(b"\0", strtab_offset + name_offset)
        if data[strtab_offset + name_offset : end] == b".text":
            return header
    raise AssertionError("no .text")


def test_section_and_segment_disagreement_is_refused(nopie: Path, tmp_path: Path) -> None:
    header = _text_section_header(nopie)
    (sh_offset,) = struct.unpack_from("<Q", nopie.read_bytes(), header + 24)
    bad = _patched(nopie, tmp_path, {header + 24: struct.pack("<Q", sh_offset + 0x10)})
    with pytest.raises(OffsetMismatchError, match="contradict"):
        resolve_location(bad, "add")
    forced = resolve_one(bad, "add", force=True)
    good = resolve_one(str(nopie), "add")
    assert forced.file_offset == good.file_offset  # the program headers win
    assert forced.derivation is not None and forced.derivation.agrees is False
    assert forced.warning and "forced" in forced.warning
    (listed,) = list_functions(bad, "add")
    assert listed.warning and "disagree" in listed.warning


def test_not_elf_files(tmp_path: Path) -> None:
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    with pytest.raises(NotElfError, match="script"):
        resolve_location(str(script), "main")
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    with pytest.raises(NotElfError):
        list_functions(str(empty))
    with pytest.raises(NotElfError, match="directory"):
        list_functions(str(tmp_path))
    with pytest.raises(TargetNotFoundError):
        list_functions(str(tmp_path / "missing"))


def test_truncated_and_corrupt_elf(nopie: Path, tmp_path: Path) -> None:
    data = nopie.read_bytes()
    for length in (10, 63, 200, len(data) // 2, len(data) - 1):
        cut = tmp_path / f"cut{length}"
        cut.write_bytes(data[:length])
        with pytest.raises(CorruptElfError) as caught:
            list_functions(str(cut))
        assert caught.value.exit_status == 2
        assert "truncated" in str(caught.value) or "damaged" in str(caught.value)


def test_foreign_and_32bit_elf(nopie: Path, tmp_path: Path) -> None:
    arm = _patched(nopie, tmp_path, {18: struct.pack("<H", 183)}, "arm64")
    with pytest.raises(UnsupportedElfError, match="aarch64"):
        list_functions(arm)
    riscv = _patched(nopie, tmp_path, {18: struct.pack("<H", 243)}, "riscv")
    with pytest.raises(UnsupportedElfError, match="RISC-V"):
        list_functions(riscv)
    elf32 = tmp_path / "elf32"
    elf32.write_bytes(
        b"\x7fELF\x01\x01\x01" + b"\0" * 9 + struct.pack("<HHI", 2, 3, 1) + b"\0" * 32
    )
    with pytest.raises(UnsupportedElfError, match="32-bit"):
        list_functions(str(elf32))
    relocatable = _patched(nopie, tmp_path, {16: struct.pack("<H", 1)}, "object")
    with pytest.raises(UnsupportedElfError, match="object file"):
        list_functions(relocatable)


def test_fully_stripped_binary_explains_itself(nopie: Path, tmp_path: Path) -> None:
    stripped = tmp_path / "stripped"
    subprocess.run(["strip", "--strip-all", "-o", str(stripped), str(nopie)], check=True)
    # Nothing is exported from an executable: no symbols at all.
    with pytest.raises(NoSymbolsError, match="debug"):
        resolve_location(str(stripped), "add", debug_root=str(tmp_path / "nowhere"))


def test_bad_locations(nopie: Path) -> None:
    with pytest.raises(UsageError, match="empty"):
        resolve_location(str(nopie), "  ")
    with pytest.raises(SymbolNotFoundError):
        resolve_location(str(nopie), "add+banana")


def test_no_section_headers_uses_the_dynamic_segment(shared: Path, tmp_path: Path) -> None:
    # As sstrip leaves a library: no section headers at all, only the program headers.
    headerless = _patched(
        shared, tmp_path, {0x28: struct.pack("<Q", 0), 0x3A: struct.pack("<HHH", 0, 0, 0)}
    )
    names = {sym.name for sym in list_functions(headerless)}
    assert names == {"lib_add", "lib_call"}
    location = resolve_one(headerless, "lib_add")
    assert location.file_offset == resolve_one(str(shared), "lib_add").file_offset
    assert location.derivation is not None and location.derivation.agrees is None

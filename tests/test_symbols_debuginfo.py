"""Stripped binaries: symbols from .gnu_debuglink files, build-id debug files and MiniDebugInfo.

Debug files give addresses; the file offsets must still come from the stripped file's own
segments, so every offset is checked against readelf arithmetic on the *stripped* file.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from fixtures_symbols import (
    PIE_FLAGS,
    SHARED_FLAGS,
    add_minidebuginfo,
    build_id_of,
    perf_offsets,
    readelf_functions,
    split_debuglink,
    strip_to_build_id_root,
)
from fixtures_symbols.programs import C_LIBRARY, C_PROGRAM
from helpers import CompileC, run_rawprobe, skip_or_fail

from rawprobe._symbols import (
    NoSymbolsError,
    clear_memory,
    describe_target,
    list_functions,
    resolve_one,
)

pytestmark = pytest.mark.usefixtures("private_symbol_cache")

LIBC = Path("/lib/x86_64-linux-gnu/libc.so.6")


@pytest.fixture(scope="module")
def program(compile_c: CompileC) -> Path:
    return compile_c(C_PROGRAM, name="debugme", flags=PIE_FLAGS)


@pytest.fixture(scope="module")
def library(compile_c: CompileC) -> Path:
    return compile_c(C_LIBRARY, name="libdebugme", flags=SHARED_FLAGS, suffix=".so")


def _check_offsets(stripped: Path, debug: Path, source: str) -> None:
    """All the debug file's functions are listed, from ``source``, at the stripped file's
    offsets."""
    oracle = readelf_functions(stripped, symbols_from=debug)
    symbols = {sym.address: sym for sym in list_functions(str(stripped), debug_root="/nonexistent")}
    for function in oracle:
        sym = symbols[function.address]
        assert sym.file_offset == function.file_offset
    helper = resolve_one(str(stripped), "helper", debug_root="/nonexistent")
    assert helper.source == source


@pytest.mark.parametrize("subdir", ["", ".debug"])
def test_debuglink_next_to_binary(program: Path, tmp_path: Path, subdir: str) -> None:
    stripped, debug = split_debuglink(program, tmp_path, subdir)
    assert (
        "helper" not in subprocess.run(["nm", str(stripped)], capture_output=True, text=True).stdout
    )
    _check_offsets(stripped, debug, "debuglink")
    info = describe_target(str(stripped), debug_root="/nonexistent")
    assert ("debuglink", str(debug)) in info.debug_sources


def test_debuglink_under_debug_root(program: Path, tmp_path: Path) -> None:
    stripped, debug = split_debuglink(program, tmp_path / "bin")
    root = tmp_path / "root"
    # DEBUGDIR + the binary's own directory + the link's name (GDB's third place).
    moved = root / str(stripped.parent).lstrip("/") / debug.name
    moved.parent.mkdir(parents=True)
    debug.rename(moved)
    location = resolve_one(str(stripped), "helper", debug_root=str(root))
    assert location.source == "debuglink"
    assert location.file_offset == resolve_one(str(program), "helper").file_offset


def test_debuglink_with_wrong_crc_is_ignored(program: Path, tmp_path: Path) -> None:
    stripped, debug = split_debuglink(program, tmp_path)
    with debug.open("ab") as stream:
        stream.write(b"\0")  # a different file now: its CRC-32 no longer matches
    with pytest.raises(NoSymbolsError):
        resolve_one(str(stripped), "helper", debug_root="/nonexistent")


def test_build_id_debug_file(program: Path, library: Path, tmp_path: Path) -> None:
    for binary in (program, library):
        stripped, root = strip_to_build_id_root(binary, tmp_path / binary.name)
        build_id = build_id_of(stripped)
        debug = root / ".build-id" / build_id[:2] / f"{build_id[2:]}.debug"
        oracle = readelf_functions(stripped, symbols_from=debug)
        symbols = {sym.address: sym for sym in list_functions(str(stripped), debug_root=str(root))}
        assert {f.address for f in oracle} == set(symbols)
        for function in oracle:
            assert symbols[function.address].file_offset == function.file_offset
        name = "helper" if binary is program else "lib_static"
        location = resolve_one(str(stripped), name, debug_root=str(root))
        assert location.source == "build-id"
        # The environment variable selects the root as well.
        clear_memory()
        import os

        os.environ["RAWPROBE_DEBUG_ROOT"] = str(root)
        try:
            assert resolve_one(str(stripped), name).source == "build-id"
        finally:
            del os.environ["RAWPROBE_DEBUG_ROOT"]


def test_build_id_file_of_another_build_is_rejected(
    program: Path, compile_c: CompileC, tmp_path: Path
) -> None:
    stripped, root = strip_to_build_id_root(program, tmp_path)
    build_id = build_id_of(stripped)
    other = compile_c(C_PROGRAM + "\n/* another build */\n", name="other", flags=PIE_FLAGS)
    impostor = root / ".build-id" / build_id[:2] / f"{build_id[2:]}.debug"
    subprocess.run(["objcopy", "--only-keep-debug", str(other), str(impostor)], check=True)
    with pytest.raises(NoSymbolsError):
        resolve_one(str(stripped), "helper", debug_root=str(root))


def test_minidebuginfo(program: Path, tmp_path: Path) -> None:
    if shutil.which("xz") is None:
        pytest.skip("xz is not installed")
    stripped = add_minidebuginfo(program, tmp_path)
    location = resolve_one(str(stripped), "helper", debug_root="/nonexistent")
    assert location.source == "minidebuginfo"
    assert location.file_offset == resolve_one(str(program), "helper").file_offset
    info = describe_target(str(stripped), debug_root="/nonexistent")
    assert info.debug_sources[0][0] == "minidebuginfo"
    # A function the dynamic symbol table exports is reported from there, not from the
    # MiniDebugInfo (which omits it, as Fedora's tooling does).
    assert resolve_one(str(stripped), "main", debug_root="/nonexistent").source in (
        "minidebuginfo",
        "dynsym",
    )


def test_debug_file_installed_later_invalidates_the_cache(program: Path, tmp_path: Path) -> None:
    stripped, root = strip_to_build_id_root(program, tmp_path)
    build_id = build_id_of(stripped)
    debug = root / ".build-id" / build_id[:2] / f"{build_id[2:]}.debug"
    hidden = tmp_path / "aside.debug"
    debug.rename(hidden)
    with pytest.raises(NoSymbolsError):
        resolve_one(str(stripped), "helper", debug_root=str(root))
    hidden.rename(debug)  # "the debug package was installed"
    clear_memory()  # a new process: only the disk cache remains
    assert resolve_one(str(stripped), "helper", debug_root=str(root)).source == "build-id"


@pytest.fixture(scope="module")
def libc_debug() -> Path:
    if not LIBC.exists():
        pytest.skip("no /lib/x86_64-linux-gnu/libc.so.6")
    build_id = build_id_of(LIBC)
    debug = Path("/usr/lib/debug/.build-id") / build_id[:2] / f"{build_id[2:]}.debug"
    if not debug.exists():
        pytest.skip("libc6-dbg is not installed for this libc")
    return debug


def test_host_libc_with_libc6_dbg(libc_debug: Path) -> None:
    oracle = readelf_functions(LIBC, symbols_from=libc_debug) + readelf_functions(LIBC)
    symbols = {sym.address: sym for sym in list_functions(str(LIBC))}
    assert {f.address for f in oracle} == set(symbols)
    for function in oracle:
        assert symbols[function.address].file_offset == function.file_offset, function
    malloc = resolve_one(str(LIBC), "malloc")
    assert malloc.source == "dynsym" and "build-id" in malloc.sources
    assert malloc.versioned_name == "malloc@@GLIBC_2.2.5"
    assert "__libc_malloc@@GLIBC_2.2.5" in malloc.aliases
    internal = resolve_one(str(LIBC), "_int_malloc")
    assert internal.source == "build-id"
    memcpy = resolve_one(str(LIBC), "memcpy")
    assert memcpy.kind == "ifunc" and memcpy.version == "GLIBC_2.14"
    assert memcpy.warning and "__memcpy_avx_unaligned" in memcpy.warning
    old_memcpy = resolve_one(str(LIBC), "memcpy@GLIBC_2.2.5")
    assert old_memcpy.file_offset != memcpy.file_offset
    if shutil.which("perf") or Path("/usr/bin/perf").exists():
        expected = perf_offsets(LIBC, ["malloc", "free", "_int_malloc"])
        for name, offset in expected.items():
            assert resolve_one(str(LIBC), name).file_offset == offset, name


# -- debug files that are not files ------------------------------------------------------------
# A .gnu_debuglink name and a build-id path are chosen by whoever can write next to the binary
# or into a debug root: a FIFO there blocked the open forever, and /dev/zero was read without
# end. Each must be skipped at once (and said so at -v), and the search must go on.


def _plant(kind: str, path: Path) -> None:
    import os
    import stat

    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev-zero":
        if os.geteuid() != 0:
            skip_or_fail("a device node needs root (CAP_MKNOD)")
        os.mknod(path, stat.S_IFCHR | 0o644, os.makedev(1, 5))  # /dev/zero's own numbers
    elif kind == "symlink-to-dev-zero":
        path.symlink_to("/dev/zero")
    elif kind == "symlink-to-fifo":
        os.mkfifo(path.with_name(path.name + ".fifo"))
        path.symlink_to(path.name + ".fifo")
    else:
        raise AssertionError(kind)


_HOSTILE = ["fifo", "dev-zero", "symlink-to-dev-zero", "symlink-to-fifo"]


def _list_verbose(target: Path, debug_root: str, tmp_path: Path, status: int = 0) -> str:
    import os

    env = {**os.environ, "RAWPROBE_DEBUG_ROOT": debug_root,
           "RAWPROBE_CACHE_DIR": str(tmp_path / "cache")}
    result = run_rawprobe("-v", "list", "--json", str(target), timeout=30, env=env)
    assert result.returncode == status, result.stderr
    return result.stdout + "\n" + result.stderr


@pytest.mark.parametrize("kind", _HOSTILE)
def test_debuglink_that_is_not_a_file_is_skipped(program: Path, tmp_path: Path,
                                                 kind: str) -> None:
    import json

    stripped, debug = split_debuglink(program, tmp_path, ".debug")
    hostile = stripped.parent / debug.name  # the first place the link is looked for
    _plant(kind, hostile)
    output = _list_verbose(stripped, "/nonexistent", tmp_path)
    symbols = {entry["name"]: entry for entry in json.loads(output.split("\n", 1)[0])}
    assert symbols["helper"]["source"] == "debuglink"  # found at the next place, .debug/
    assert f"debug link {hostile} not used" in output and "not a regular file" in output


@pytest.mark.parametrize("kind", _HOSTILE)
def test_build_id_file_that_is_not_a_file_is_skipped(program: Path, tmp_path: Path,
                                                     kind: str) -> None:
    import json

    stripped, _debug = split_debuglink(program, tmp_path / "bin")
    build_id = build_id_of(stripped)
    root = tmp_path / "root"
    hostile = root / ".build-id" / build_id[:2] / f"{build_id[2:]}.debug"
    _plant(kind, hostile)
    output = _list_verbose(stripped, str(root), tmp_path)
    symbols = {entry["name"]: entry for entry in json.loads(output.split("\n", 1)[0])}
    assert symbols["helper"]["source"] == "debuglink"
    assert f"build-id debug file {hostile} not used" in output
    assert "not a regular file" in output


def test_debuglink_of_another_build_is_logged(program: Path, tmp_path: Path) -> None:
    stripped, debug = split_debuglink(program, tmp_path)
    with debug.open("ab") as stream:
        stream.write(b"\0")
    output = _list_verbose(stripped, "/nonexistent", tmp_path, status=1)  # no functions left
    assert f"debug link {debug} not used: its CRC-32" in output


@pytest.mark.parametrize("kind", _HOSTILE)
def test_dwarf_debug_file_that_is_not_a_file_is_skipped(program: Path, tmp_path: Path,
                                                        kind: str) -> None:
    import subprocess
    import sys

    stripped, debug = split_debuglink(program, tmp_path, ".debug")
    _plant(kind, stripped.parent / debug.name)
    code = ("import sys; from rawprobe._dwarf import open_debug_info; "
            "info = open_debug_info(sys.argv[1], '/nonexistent'); print(info.source)")
    result = subprocess.run([sys.executable, "-c", code, str(stripped)], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "debuglink"

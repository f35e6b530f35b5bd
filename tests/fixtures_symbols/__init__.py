"""Helpers for the symbol-resolver tests: fixture programs, debug-info surgery, and oracles.

The oracles are deliberately independent of rawprobe: they parse ``readelf`` output and do the
segment arithmetic themselves, or ask ``perf probe`` for its uprobe definition.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "OracleFunction",
    "add_minidebuginfo",
    "build_id_of",
    "perf_offsets",
    "readelf_functions",
    "readelf_load_segments",
    "split_debuglink",
    "strip_to_build_id_root",
]

_LOAD = re.compile(
    r"^\s*LOAD\s+(0x[0-9a-f]+)\s+(0x[0-9a-f]+)\s+(0x[0-9a-f]+)\s+(0x[0-9a-f]+)\s+"
    r"(0x[0-9a-f]+)\s+([RWE ]+?)\s+(0x[0-9a-f]+)\s*$"
)


@dataclass(frozen=True)
class OracleFunction:
    """A function symbol as readelf shows it, with the file offset computed from readelf -l."""

    name: str
    version: str
    address: int
    size: int
    kind: str
    file_offset: int


def _run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def readelf_load_segments(path: Path | str) -> list[tuple[int, int, int, bool]]:
    """(p_offset, p_vaddr, p_filesz, executable) of each PT_LOAD, from ``readelf -lW``."""
    segments = []
    for line in _run("readelf", "-lW", str(path)).splitlines():
        match = _LOAD.match(line)
        if match:
            offset, vaddr, _paddr, filesz, _memsz, flags, _align = match.groups()
            segments.append((int(offset, 16), int(vaddr, 16), int(filesz, 16), "E" in flags))
    return segments


def readelf_functions(
    path: Path | str, symbols_from: Path | str | None = None
) -> list[OracleFunction]:
    """Defined FUNC/IFUNC symbols (``readelf -Ws``) with their file offsets in ``path``.

    Args:
        path: The probed file (its segments give the offsets).
        symbols_from: Another file whose symbol tables to read (a debug file), or None.
    """
    segments = readelf_load_segments(path)
    functions = []
    for line in _run("readelf", "-Ws", str(symbols_from or path)).splitlines():
        fields = line.split(None, 7)
        if len(fields) < 8 or not fields[0].endswith(":") or fields[3] not in ("FUNC", "IFUNC"):
            continue
        if fields[6] == "UND":
            continue
        address = int(fields[1], 16)
        size = int(fields[2], 16) if fields[2].startswith("0x") else int(fields[2])
        spelled = fields[7].split(" (")[0]
        name, _, version = spelled.partition("@")
        version = version.lstrip("@")
        for offset, vaddr, filesz, executable in segments:
            if executable and vaddr <= address < vaddr + filesz:
                functions.append(
                    OracleFunction(
                        name, version, address, size, fields[3].lower(), address - vaddr + offset
                    )
                )
                break
    return functions


def perf_offsets(path: Path | str, names: list[str]) -> dict[str, int]:
    """The file offset ``perf probe`` would plant a uprobe at, per function name.

    ``perf probe -D`` prints the uprobe_events definition without creating it.
    """
    perf = shutil.which("perf") or "/usr/bin/perf"
    argv = [perf, "probe", "-x", str(path)]
    for name in names:
        argv += ["-D", name]
    result = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "LC_ALL": "C"})
    offsets = {}
    for line in result.stdout.splitlines():
        # p:probe_main/add /path/main:0x1147
        match = re.match(r"^[pr]:\S+/(\S+) \S+:(0x[0-9a-f]+)$", line.strip())
        if match:
            offsets[match.group(1)] = int(match.group(2), 16)
    return offsets


def build_id_of(path: Path | str) -> str:
    """The GNU build-id of a file, from ``readelf -n``."""
    match = re.search(r"Build ID: ([0-9a-f]+)", _run("readelf", "-n", str(path)))
    assert match, f"{path} has no build-id"
    return match.group(1)


def split_debuglink(binary: Path, out_dir: Path, debug_subdir: str = "") -> tuple[Path, Path]:
    """Strip ``binary`` into ``out_dir`` with its symbols in a separate file linked by
    ``.gnu_debuglink`` (the way dh_strip/find-debuginfo do it).

    Returns:
        (stripped binary, debug file); the debug file is next to the binary, or in
        ``debug_subdir`` below it.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    stripped = out_dir / binary.name
    debug_dir = out_dir / debug_subdir if debug_subdir else out_dir
    debug_dir.mkdir(parents=True, exist_ok=True)
    debug = debug_dir / (binary.name + ".debug")
    _run("objcopy", "--only-keep-debug", str(binary), str(debug))
    _run("objcopy", "--strip-all", f"--add-gnu-debuglink={debug}", str(binary), str(stripped))
    return stripped, debug


def strip_to_build_id_root(binary: Path, out_dir: Path) -> tuple[Path, Path]:
    """Strip ``binary`` into ``out_dir/bin`` and put its debug file at
    ``out_dir/debug/.build-id/xx/yyyy.debug`` (no debug link).

    Returns:
        (stripped binary, debug root).
    """
    build_id = build_id_of(binary)
    root = out_dir / "debug"
    target = root / ".build-id" / build_id[:2] / (build_id[2:] + ".debug")
    target.parent.mkdir(parents=True, exist_ok=True)
    _run("objcopy", "--only-keep-debug", str(binary), str(target))
    (out_dir / "bin").mkdir(parents=True, exist_ok=True)
    stripped = out_dir / "bin" / binary.name
    _run("objcopy", "--strip-all", str(binary), str(stripped))
    return stripped, root


def add_minidebuginfo(binary: Path, out_dir: Path) -> Path:
    """Make a stripped copy of ``binary`` carrying MiniDebugInfo, as Fedora's find-debuginfo
    does (GDB manual, "MiniDebugInfo"): the function symbols not already in .dynsym, in an
    xz-compressed ELF in the section .gnu_debugdata."""
    out_dir.mkdir(parents=True, exist_ok=True)
    work = out_dir / (binary.name + ".work")
    work.mkdir(exist_ok=True)
    dynamic = {
        line.split()[0]
        for line in _run("nm", "-D", "--format=posix", "--defined-only", str(binary)).splitlines()
        if line.strip()
    }
    functions = {
        fields[0]
        for fields in (
            line.split()
            for line in _run("nm", "--format=posix", "--defined-only", str(binary)).splitlines()
        )
        if len(fields) >= 2 and fields[1] in ("T", "t")
    }
    keep = work / "keep_symbols"
    keep.write_text("".join(name + "\n" for name in sorted(functions - dynamic)))
    debug = work / "debug"
    mini = work / "mini_debuginfo"
    _run("objcopy", "--only-keep-debug", str(binary), str(debug))
    _run(
        "objcopy",
        "-S",
        "--remove-section",
        ".gdb_index",
        "--remove-section",
        ".comment",
        f"--keep-symbols={keep}",
        str(debug),
        str(mini),
    )
    stripped = out_dir / binary.name
    _run("strip", "--strip-all", "-R", ".comment", "-o", str(stripped), str(binary))
    _run("xz", "--force", "--keep", str(mini))
    _run("objcopy", f"--add-section=.gnu_debugdata={mini}.xz", str(stripped))
    return stripped


# Compiler flags of the fixture variants. -O0 and noinline keep every function a function;
# --build-id is explicit because the debug-file tests depend on it.
NOPIE_FLAGS = ("-O0", "-g", "-fno-pie", "-no-pie", "-Wl,--build-id")
PIE_FLAGS = ("-O0", "-g", "-fPIE", "-pie", "-Wl,--build-id")
SHARED_FLAGS = ("-O0", "-g", "-fPIC", "-shared", "-Wl,--build-id")

__all__ += ["NOPIE_FLAGS", "PIE_FLAGS", "SHARED_FLAGS"]

"""Resolved offsets fire for real: uprobes planted through tracefs at what the resolver returns.

These tests use the kernel's own ``uprobe_events`` interface (Documentation/trace/uprobetracer.rst)
rather than rawprobe's attach machinery, so they test the resolver alone. Events are recorded
in a private tracing instance, so other users of the global trace buffer are not disturbed, and
every definition is removed again.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures_symbols import (
    NOPIE_FLAGS,
    PIE_FLAGS,
    SHARED_FLAGS,
    add_minidebuginfo,
    split_debuglink,
    strip_to_build_id_root,
)
from fixtures_symbols.programs import (
    C_LIBRARY,
    C_PROGRAM,
    CPP_PROGRAM,
    VERSION_SCRIPT,
    VERSIONED_LIBRARY,
    c_program_using_library,
)
from helpers import CompileC, require_kernel_tracing

from rawprobe._symbols import Location, find_target, resolve_one

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("private_symbol_cache")]

TRACEFS = Path("/sys/kernel/tracing")


class TracefsUprobes:
    """Uprobe events defined through uprobe_events and recorded in a private instance."""

    def __init__(self) -> None:
        self.group = f"rawprobetest_{os.getpid()}"
        self.instance = TRACEFS / "instances" / self.group
        self.events: list[str] = []
        self.instance.mkdir(exist_ok=True)

    @staticmethod
    def _command(text: str) -> None:
        # O_APPEND without O_TRUNC: truncating uprobe_events deletes everyone's uprobes. (Not
        # open(..., "a"): Python seeks to the end on open, which tracefs refuses.)
        fd = os.open(TRACEFS / "uprobe_events", os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)

    def add(self, event: str, location: Location) -> None:
        self._command(f"p:{self.group}/{event} {location.path}:{location.file_offset:#x}\n")
        self.events.append(event)
        (self.instance / "events" / self.group / event / "enable").write_text("1\n")

    def hits(self, pid: int) -> dict[str, int]:
        counts = {event: 0 for event in self.events}
        pattern = re.compile(rf"-{pid}\s+\[\d+\].*?\s(\S+):\s+\(0x")
        for line in (self.instance / "trace").read_text().splitlines():
            match = pattern.search(line)
            if match and match.group(1) in counts:
                counts[match.group(1)] += 1
        return counts

    def close(self) -> None:
        for event in self.events:
            enable = self.instance / "events" / self.group / event / "enable"
            if enable.exists():
                enable.write_text("0\n")
        for event in self.events:
            # One already gone must not keep the others from being removed.
            with contextlib.suppress(OSError):
                self._command(f"-:{self.group}/{event}\n")
        with contextlib.suppress(OSError):
            self.instance.rmdir()


@pytest.fixture()
def uprobes() -> Iterator[TracefsUprobes]:
    require_kernel_tracing()
    if not (TRACEFS / "uprobe_events").exists():
        subprocess.run(["mount", "-t", "tracefs", "nodev", str(TRACEFS)], check=False)
    if not (TRACEFS / "uprobe_events").exists():
        pytest.skip("tracefs with uprobe_events is not available")
    probes = TracefsUprobes()
    try:
        yield probes
    finally:
        probes.close()


def _run(uprobes: TracefsUprobes, argv: list[str]) -> dict[str, int]:
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, stderr = process.communicate(timeout=20)
    assert process.returncode == 0, stderr
    return uprobes.hits(process.pid)


def _second_instruction(binary: Path, function: str) -> int:
    """Offset of the second instruction of ``function``, from objdump (an instruction boundary
    that is not the function's start)."""
    listing = subprocess.run(
        ["objdump", "-d", f"--disassemble={function}", "--no-show-raw-insn", str(binary)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    addresses = [int(m.group(1), 16) for m in re.finditer(r"^\s+([0-9a-f]+):\s", listing, re.M)]
    assert len(addresses) >= 2, listing
    return addresses[1] - addresses[0]


@pytest.mark.parametrize("flags", [NOPIE_FLAGS, PIE_FLAGS], ids=["no-pie", "pie"])
def test_executable_functions_fire(
    uprobes: TracefsUprobes, compile_c: CompileC, flags: tuple[str, ...]
) -> None:
    binary = compile_c(C_PROGRAM, name="fire", flags=flags)
    path = str(binary)
    second = _second_instruction(binary, "add")
    uprobes.add("add", resolve_one(path, "add"))
    uprobes.add("helper", resolve_one(path, "helper"))
    uprobes.add("inside", resolve_one(path, f"add+{second}"))
    uprobes.add("by_offset", resolve_one(path, hex(resolve_one(path, "alias_work").file_offset)))
    uprobes.add("resolver", resolve_one(path, "chooser"))
    counts = _run(uprobes, [path])
    assert counts["add"] == 1 and counts["helper"] == 1 and counts["inside"] == 1
    assert counts["by_offset"] == 1
    # The IFUNC symbol is the resolver: it runs when the dynamic linker binds chooser.
    assert counts["resolver"] >= 1


def test_shared_library_functions_fire(uprobes: TracefsUprobes, compile_c: CompileC) -> None:
    library = compile_c(C_LIBRARY, name="libfixture", flags=SHARED_FLAGS, suffix=".so")
    program = compile_c(
        c_program_using_library(),
        name="uses_library",
        flags=(*PIE_FLAGS, "-Wl,--no-as-needed", str(library), f"-Wl,-rpath,{library.parent}"),
    )
    uprobes.add("lib_call", resolve_one(str(library), "lib_call"))
    uprobes.add("lib_static", resolve_one(str(library), "lib_static"))
    counts = _run(uprobes, [str(program)])
    assert counts == {"lib_call": 1, "lib_static": 1}


def test_separate_debug_info_fires(
    uprobes: TracefsUprobes, compile_c: CompileC, tmp_path: Path
) -> None:
    program = compile_c(C_PROGRAM, name="fire", flags=PIE_FLAGS)
    linked, _debug = split_debuglink(program, tmp_path / "debuglink")
    by_build_id, root = strip_to_build_id_root(program, tmp_path / "buildid")
    mini = add_minidebuginfo(program, tmp_path / "mini")
    cases = {
        "debuglink": (linked, resolve_one(str(linked), "helper", debug_root="/nonexistent")),
        "buildid": (by_build_id, resolve_one(str(by_build_id), "helper", debug_root=str(root))),
        "mini": (mini, resolve_one(str(mini), "helper", debug_root="/nonexistent")),
    }
    for event, (_binary, location) in cases.items():
        assert location.source in ("debuglink", "build-id", "minidebuginfo")
        uprobes.add(event, location)
    for event, (binary, _location) in cases.items():
        assert _run(uprobes, [str(binary)])[event] == 1


def test_cplusplus_method_fires(uprobes: TracefsUprobes, compile_c: CompileC) -> None:
    binary = compile_c(CPP_PROGRAM, name="cart", flags=PIE_FLAGS, cxx=True)
    uprobes.add("total_int", resolve_one(str(binary), "shop::Cart::total(int) const"))
    uprobes.add("total_double", resolve_one(str(binary), "shop::Cart::total(double) const"))
    uprobes.add("hidden", resolve_one(str(binary), "shop::(anonymous namespace)::hidden(int)"))
    counts = _run(uprobes, [str(binary)])
    assert counts == {"total_int": 1, "total_double": 1, "hidden": 1}


def test_default_symbol_version_fires(
    uprobes: TracefsUprobes, compile_c: CompileC, tmp_path_factory: pytest.TempPathFactory
) -> None:
    script = tmp_path_factory.getbasetemp() / "versions.map"
    script.write_text(VERSION_SCRIPT)
    library = compile_c(
        VERSIONED_LIBRARY + f"/* {script} */",
        name="libversioned",
        flags=(*SHARED_FLAGS, f"-Wl,--version-script={script}"),
        suffix=".so",
    )
    program = compile_c(
        'int parse(const char *s);\nint main(void) { return parse("a") == 0; }\n',
        name="uses_versioned",
        flags=(*PIE_FLAGS, "-Wl,--no-as-needed", str(library), f"-Wl,-rpath,{library.parent}"),
    )
    uprobes.add("default", resolve_one(str(library), "parse"))
    uprobes.add("compat", resolve_one(str(library), "parse@VERS_1.0"))
    # A program linked today binds the default version; the compatibility one stays idle.
    assert _run(uprobes, [str(program)]) == {"default": 1, "compat": 0}


def test_host_libc_internal_function_fires(uprobes: TracefsUprobes, compile_c: CompileC) -> None:
    libc = find_target("libc")
    try:
        internal = resolve_one(libc, "_int_malloc")
    except Exception:
        pytest.skip("libc6-dbg is not installed for this libc")
    program = compile_c(
        "#include <stdlib.h>\nint main(void) { void *p = malloc(100000); free(p); return 0; }\n",
        name="mallocs",
        flags=PIE_FLAGS,
    )
    uprobes.add("int_malloc", internal)
    uprobes.add("malloc", resolve_one(libc, "malloc"))
    counts = _run(uprobes, [str(program)])
    assert counts["malloc"] >= 1 and counts["int_malloc"] >= 1

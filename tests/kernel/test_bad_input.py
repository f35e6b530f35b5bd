"""Bad input to attach: a clear message, exit status 2, no traceback, nothing attached."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from helpers import ADD_SOURCE, ROOT, build_c, require_tool, run_rawprobe, skip_or_fail


def assert_clean_usage_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("rawprobe: error: ") or "usage:" in result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


def test_missing_file() -> None:
    result = run_rawprobe("attach", "p:/no/such/prog:main", "--", "true")
    assert_clean_usage_error(result, "/no/such/prog", "no such file")


def test_not_an_elf_file(tmp_path: Path) -> None:
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    result = run_rawprobe("attach", f"p:{script}:main")
    assert_clean_usage_error(result, "not an ELF file")


def test_unknown_symbol_suggests_close_names(add_program: Path) -> None:
    result = run_rawprobe("attach", f"p:{add_program}:ad")
    assert_clean_usage_error(result, "no function 'ad'", "did you mean", "add")


@pytest.mark.parametrize(
    ("word", "needle"),
    [
        ("p:", "missing :LOCATION"),
        ("justaword", "is not TARGET:LOCATION"),
        ("p:{prog}:add a=%nope", "unknown register %nope"),
        ("p:{prog}:add a=%di:s31", "unknown type 's31'"),
        ("p:{prog}:add r=$retval", "$retval is only available on return probes"),
    ],
)
def test_malformed_probe_words(add_program: Path, word: str, needle: str) -> None:
    result = run_rawprobe("attach", word.format(prog=add_program))
    assert_clean_usage_error(result, needle)
    assert "^" in result.stderr or "is not TARGET" in result.stderr  # the column is shown


def test_without_privileges_names_the_capability(add_program: Path) -> None:
    setpriv = require_tool("setpriv")
    nobody = 65534
    # The unprivileged user must be able to read the program and run this interpreter.
    directory = Path(tempfile.mkdtemp(prefix="rawprobe-nobody-"))
    os.chmod(directory, 0o755)
    target = directory / "main"
    shutil.copy(add_program, target)
    try:
        check_unprivileged_run(setpriv, nobody, target)
    finally:
        shutil.rmtree(directory)


def check_unprivileged_run(setpriv: str, nobody: int, target: Path) -> None:
    probe = subprocess.run(
        [setpriv, f"--reuid={nobody}", f"--regid={nobody}", "--clear-groups",
         sys.executable, "-c", "import rawprobe"],
        capture_output=True, text=True, cwd=ROOT,
    )
    if probe.returncode != 0:
        skip_or_fail(f"user nobody cannot run this interpreter: {probe.stderr.strip()}")
    result = subprocess.run(
        [setpriv, f"--reuid={nobody}", f"--regid={nobody}", "--clear-groups",
         "--inh-caps=-all", sys.executable, "-m", "rawprobe", "attach",
         f"p:{target}:add a=%di:s32", "--", str(target)],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )
    assert_clean_usage_error(result, "CAP_PERFMON", "CAP_BPF")


def test_missing_libbpf_names_the_package(add_program: Path) -> None:
    unshare = require_tool("unshare")
    libbpf = Path("/usr/lib/x86_64-linux-gnu/libbpf.so.1")
    if not libbpf.exists():
        skip_or_fail(f"{libbpf} is not where this test hides it from")
    # Hide the library in a private mount namespace, as on a host without libbpf1.
    script = (
        f"mount --bind /dev/null {libbpf} && "
        f"exec {sys.executable} -m rawprobe attach --backend bpf 'p:{add_program}:add' -- "
        f"{add_program}"
    )
    result = subprocess.run([unshare, "--mount", "--propagation", "private", "sh", "-c", script],
                            capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert_clean_usage_error(result, "libbpf.so.1", "libbpf1")


def test_pid_that_does_not_map_the_target(add_program: Path) -> None:
    # A process that never maps the file: the probe would never fire there.
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        result = run_rawprobe("attach", "-p", str(sleeper.pid), f"p:{add_program}:add")
        assert_clean_usage_error(result, "not mapped by process", "--force")
        forced = run_rawprobe("attach", "--force", "-p", str(sleeper.pid),
                              f"p:{add_program}:add", "--duration", "0.2")
        assert forced.returncode == 0, forced.stderr
    finally:
        sleeper.kill()


def test_more_probes_than_descriptors_allowed(tmp_path: Path) -> None:
    # Each probe on its own file takes a perf event descriptor; with the hard limit as low as
    # the soft one there is no room, and the error names the limit.
    programs = []
    for index in range(12):
        copy = tmp_path / f"prog{index}"
        shutil.copy(build_c(ADD_SOURCE, name="main", flags=("-O0", "-g")), copy)
        programs.append(copy)
    words = " ".join(f"'p:a{index} {program}:add'" for index, program in enumerate(programs))
    script = f"ulimit -n 24 && exec {sys.executable} -m rawprobe attach {words} --duration 0.1"
    result = subprocess.run(["sh", "-c", script], capture_output=True, text=True, cwd=ROOT,
                            timeout=60)
    assert_clean_usage_error(result, "out of file descriptors", "RLIMIT_NOFILE", "ulimit -n")


def test_mid_instruction_offsets_are_refused(add_program: Path) -> None:
    from rawprobe._plan.insn import instruction_starts
    from rawprobe._symbols import resolve_one

    start = resolve_one(str(add_program), "add")
    code = add_program.read_bytes()[start.file_offset : start.file_offset + start.size]
    starts = instruction_starts(code, 0, len(code))
    middle = next(offset + 1 for offset in starts if offset + 1 not in starts)
    raw_offset = start.file_offset + middle
    for word in (f"p:{add_program}:add+{middle}", f"p:{add_program}:{raw_offset:#x}"):
        result = run_rawprobe("attach", word, "--", str(add_program))
        assert_clean_usage_error(result, "instruction")
    # At an instruction inside the function, the probe is planted and fires.
    result = run_rawprobe("attach", f"p:{add_program}:add+{starts[1]}", "--", str(add_program),
                          check_status=0)
    assert "1 event, 0 lost" in result.stderr

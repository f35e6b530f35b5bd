"""``-v``: what rawprobe does, said as it does it (which backend, which symbol sources and debug
files, which BPF programs, uprobe_multi links or perf events, and where each probe went)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

from helpers import Background, run_rawprobe

from rawprobe._symbols import resolve_one
from rawprobe._sys.features import UPROBE_MULTI


def test_verbose_attach_with_bpf(add_program: Path, tmp_path: Path) -> None:
    prog = str(add_program)
    add = resolve_one(prog, "add").file_offset
    main = resolve_one(prog, "main").file_offset
    # Host-wide (no command: a command's probes are its own, below).
    tracer = Background("-v", "attach", "--backend", "bpf", f"p:{prog}:add a=%di:s32",
                        f"p:{prog}:main", f"r:{prog}:add",
                        env={**os.environ, "RAWPROBE_CACHE_DIR": str(tmp_path / "cache")})
    tracer.ready()
    subprocess.run([prog, "2"], check=True, capture_output=True)
    status, _out, log = tracer.finish(signal.SIGINT)
    assert status == 0, log
    assert f"symbols of {prog}: " in log and "separate debug information: none" in log
    assert f"add: an entry probe at add ({prog}:{add:#x})" in log
    assert f"main: an entry probe at main ({prog}:{main:#x})" in log
    assert f"add__return: a return probe at add ({prog}:{add:#x})" in log
    assert "backend: bpf" in log
    programs = re.search(r"BPF programs loaded: (.*)", log)
    assert programs is not None and "rp_return" in programs.group(1), log
    # A file's probes go on uprobe_multi links where the kernel has them (one per kind, even
    # for a single probe: removing it costs one grace period for all), else on perf events.
    if UPROBE_MULTI.available():
        assert f"2 uprobes on a uprobe_multi link (rp_entry_multi) in {prog}: " in log, log
        assert f"1 uretprobes on a uprobe_multi link (rp_return_multi) in {prog}: " \
            f"add__return {add:#x}" in log, log
        assert "rp_entry_multi" in programs.group(1)
    else:
        assert f"uretprobe on a perf event: add__return {prog}:{add:#x}" in log, log


def test_verbose_attach_follows_a_command_with_probes_of_its_own(add_program: Path) -> None:
    prog = str(add_program)
    result = run_rawprobe("-v", "attach", "--backend", "bpf", f"p:{prog}:add a=%di:s32",
                          f"r:{prog}:add", "--", prog, "2")
    assert result.returncode == 0, result.stderr
    assert "following the command with uprobes of its own" in result.stderr, result.stderr
    # One tracefs uprobe event per probe, opened on the command.
    assert len(re.findall(r"uprobe_events: [pr]:rawprobe_\S+ /proc/self/fd/\d+:0x",
                          result.stderr)) == 2, result.stderr


def test_verbose_attach_with_tracefs(add_program: Path) -> None:
    prog = str(add_program)
    result = run_rawprobe("-v", "attach", "--backend", "tracefs", f"p:{prog}:add a=%di:s32",
                          "--", prog, "2")
    assert result.returncode == 0, result.stderr
    assert re.search(r"uprobe_events: p:rawprobe_\d+_\d+_\d+_\d+/add /proc/self/fd/\d+:0x[0-9a-f]+ "
                     r"a=%di:s32", result.stderr), result.stderr
    assert "backend: tracefs" in result.stderr


def test_verbose_list(add_program: Path, tmp_path: Path) -> None:
    env = {**os.environ, "RAWPROBE_CACHE_DIR": str(tmp_path / "cache")}
    first = run_rawprobe("-v", "list", str(add_program), env=env)
    again = run_rawprobe("-v", "list", str(add_program), env=env)
    assert f"symbols of {add_program}: " in first.stderr and "read from the file" in first.stderr
    assert "from the symbol cache" in again.stderr, again.stderr

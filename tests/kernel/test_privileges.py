"""Privileges, as the kernel judges them: capabilities, never the user id.

rawprobe runs here under credentials set by setpriv(1): root with no capabilities at all (a
container that dropped them), and the unprivileged user nobody with exactly the capabilities
given. strace(1) watches every bpf(), perf_event_open() and openat() call: a refusal must
come before any of them touches the kernel's tracing machinery.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import ROOT, require_tool, skip_or_fail

NOBODY = 65534
# uid 0, but exec grants it nothing: only the capabilities named are kept.
_ROOT_WITHOUT = ["--securebits=+noroot,+noroot_locked,+no_setuid_fixup,+no_setuid_fixup_locked"]


def _credentials(user: str, caps: str) -> list[str]:
    setpriv = require_tool("setpriv")
    keep = "-all" + "".join(f",+{cap}" for cap in caps.split(",") if cap)
    argv = [setpriv]
    if user == "root":
        argv += [*_ROOT_WITHOUT, f"--bounding-set={keep}"]
    else:
        argv += [f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    return [*argv, f"--inh-caps={keep}", f"--ambient-caps={keep}"]


@pytest.fixture(scope="module")
def public_program(add_program: Path) -> Iterator[Path]:
    """The add program where user nobody can read it."""
    directory = Path(tempfile.mkdtemp(prefix="rawprobe-privileges-"))
    os.chmod(directory, 0o755)
    target = directory / "main"
    shutil.copy(add_program, target)
    try:
        yield target
    finally:
        shutil.rmtree(directory)


def _run(user: str, caps: str, *args: str,
         tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], str]:
    """rawprobe under those credentials, traced by strace; (result, strace's log)."""
    strace = require_tool("strace")
    prefix = _credentials(user, caps)
    if user != "root":
        probe = subprocess.run([*prefix, sys.executable, "-c", "import rawprobe"],
                               capture_output=True, text=True, cwd=ROOT)
        if probe.returncode != 0:
            skip_or_fail(f"user nobody cannot run this interpreter: {probe.stderr.strip()}")
    log = tmp_path / "strace.log"
    env = {**os.environ, "RAWPROBE_CACHE_DIR": ""}
    result = subprocess.run(
        [strace, "-f", "-qq", "-e", "trace=bpf,perf_event_open,openat", "-o", str(log),
         *prefix, sys.executable, "-m", "rawprobe", *args],
        capture_output=True, text=True, cwd=ROOT, timeout=120, env=env)
    return result, log.read_text()


def _assert_nothing_touched(result: subprocess.CompletedProcess[str], log: str,
                            *needles: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("rawprobe: error: "), result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr
    calls = [line for line in log.splitlines()
             if " bpf(" in line or " perf_event_open(" in line
             or ("uprobe_events" in line and "O_WRONLY" in line)]
    assert not calls, "\n".join(calls)


@pytest.mark.parametrize("backend", ["auto", "bpf"])
def test_root_without_capabilities_loads_nothing(public_program: Path, tmp_path: Path,
                                                 backend: str) -> None:
    result, log = _run("root", "", "attach", "--backend", backend, f"p:{public_program}:add",
                       "--", str(public_program), tmp_path=tmp_path)
    _assert_nothing_touched(result, log, "CAP_BPF", "CAP_PERFMON", "runs as root but without")


def test_root_without_capabilities_writes_no_tracefs_definition(public_program: Path,
                                                                tmp_path: Path) -> None:
    paranoid = int(Path("/proc/sys/kernel/perf_event_paranoid").read_text())
    if paranoid == -1:
        skip_or_fail("kernel.perf_event_paranoid is -1: raw samples need no capability here")
    result, log = _run("root", "", "attach", "--backend", "tracefs", f"p:{public_program}:add",
                       "--", str(public_program), tmp_path=tmp_path)
    _assert_nothing_touched(result, log, "CAP_PERFMON", "kernel.perf_event_paranoid=-1")


@pytest.mark.parametrize("backend", ["auto", "bpf"])
def test_user_without_bpf_capability_loads_nothing(public_program: Path, tmp_path: Path,
                                                   backend: str) -> None:
    result, log = _run("nobody", "perfmon", "attach", "--backend", backend,
                       f"p:{public_program}:add", "--", str(public_program), tmp_path=tmp_path)
    _assert_nothing_touched(result, log, "lacks CAP_BPF", "setcap cap_bpf")


@pytest.mark.parametrize("user", ["nobody", "root"])
def test_perfmon_and_bpf_trace_without_sys_admin(public_program: Path, tmp_path: Path,
                                                 user: str) -> None:
    # This kernel's uprobe PMU wants CAP_SYS_ADMIN (perf_uprobe_event_init); a uprobe_multi
    # link wants only what loading the program did. So even a single probe goes on one.
    from rawprobe._sys.features import UPROBE_MULTI

    if not UPROBE_MULTI.available():
        skip_or_fail("no uprobe_multi links (Linux 6.6+): CAP_SYS_ADMIN is needed here")
    result, _log = _run(user, "perfmon,bpf", "-v", "attach", "--json", f"p:{public_program}:add",
                       "--", str(public_program), "3", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    events = [line for line in result.stdout.splitlines() if '"event":"add"' in line]
    assert len(events) == 3, result.stdout + result.stderr
    assert "1 uprobes on a uprobe_multi link" in result.stderr, result.stderr


def test_refusals_name_what_the_kernel_demands(monkeypatch: pytest.MonkeyPatch) -> None:
    from rawprobe._host import privileges
    from rawprobe._sys import features

    def refuse(name: str) -> None:
        raise features.SysCallError(13, name)

    everything = (1 << privileges.CAP_BPF) | (1 << privileges.CAP_PERFMON)
    perf = features.Feature("perf-uprobe", "", (4, 17), lambda: refuse("perf_event_open"))
    multi = features.Feature("uprobe-multi-link", "", (6, 6), lambda: refuse("link_create"))
    monkeypatch.setattr(features, "PERF_UPROBE", perf)
    monkeypatch.setattr(features, "UPROBE_MULTI_LINK", multi)
    refusal = privileges.bpf_refusal(everything)
    assert refusal is not None and refusal.capability == "CAP_SYS_ADMIN"
    assert "perf_uprobe_event_init" in str(refusal) and "uprobe_multi" in str(refusal)
    # CAP_SYS_ADMIN may always: the kernel is not even asked.
    assert privileges.bpf_refusal(1 << privileges.CAP_SYS_ADMIN) is None
    allowed = features.Feature("uprobe-multi-link", "", (6, 6), lambda: None)
    monkeypatch.setattr(features, "UPROBE_MULTI_LINK", allowed)
    assert privileges.bpf_refusal(everything) is None


def _tracefs_closed_to_others() -> None:
    from rawprobe._tracefs import find_tracefs

    root = find_tracefs()
    if os.stat(root).st_mode & 0o005:
        skip_or_fail(f"tracefs at {root} is open to other users: nothing is hidden from nobody")


def test_unprivileged_doctor_tells_unreadable_from_unmounted(tmp_path: Path) -> None:
    _tracefs_closed_to_others()
    result, _log = _run("nobody", "", "doctor", tmp_path=tmp_path)
    assert "not mounted" not in result.stdout, result.stdout
    assert "tracefs is mounted at" in result.stdout and "may not read it" in result.stdout


@pytest.mark.parametrize("json_output", [False, True])
def test_unprivileged_probes_does_not_claim_none_are_active(tmp_path: Path,
                                                            json_output: bool) -> None:
    _tracefs_closed_to_others()
    args = ["probes", "--json"] if json_output else ["probes"]
    result, _log = _run("nobody", "", *args, tmp_path=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "no uprobes are active" not in result.stderr
    assert "tracefs is mounted at" in result.stderr and "not mounted" not in result.stderr
    assert "run rawprobe as root to see every uprobe" in result.stderr
    assert "Traceback" not in result.stderr
    clean, _log = _run("nobody", "", "probes", "--clean", tmp_path=tmp_path)
    assert clean.returncode == 2 and "may not read it" in clean.stderr, clean.stderr


def test_tracefs_buffers_that_cannot_be_locked_are_refused_before_any_definition(
        public_program: Path, tmp_path: Path) -> None:
    # Root with what the tracefs backend needs but CAP_IPC_LOCK, a 64 KiB locked-memory limit,
    # and a ring larger than perf_event_mlock_kb allows: mapping the buffers fails, and must
    # fail before uprobe_events is written.
    strace = require_tool("strace")
    prlimit = require_tool("prlimit")
    log = tmp_path / "strace.log"
    result = subprocess.run(
        [strace, "-f", "-qq", "-e", "trace=openat", "-o", str(log), prlimit,
         "--memlock=65536", *_credentials("root", "sys_admin,perfmon,dac_override"),
         sys.executable, "-m", "rawprobe", "attach", "--backend", "tracefs", "--ring-size",
         str(64 << 20), f"p:{public_program}:add", "--duration", "1"],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
        env={**os.environ, "RAWPROBE_CACHE_DIR": ""})
    assert result.returncode == 2, result.stdout + result.stderr
    assert "not allowed to map" in result.stderr and "perf_event_mlock_kb" in result.stderr
    writes = [line for line in log.read_text().splitlines()
              if "uprobe_events" in line and "O_WRONLY" in line]
    assert not writes, "\n".join(writes)

"""rawprobe probes on a real host: probes planted by perf probe, bpftrace, rawprobe's two backends
and a uprobe_multi link all show up, with their owners where the kernel shows them; --clean
removes what a killed rawprobe left."""

from __future__ import annotations

import contextlib
import json
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from helpers import Background, require_tool, run_rawprobe
from test_tracefs_parity import leftover_groups, private_copy

from rawprobe._symbols import list_functions
from rawprobe._tracefs import find_tracefs, parse_definitions, parse_group


def probes_json() -> list[dict[str, Any]]:
    result = run_rawprobe("probes", "--json", check_status=0)
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


def groups_of(pid: int) -> list[str]:
    with open(f"{find_tracefs()}/uprobe_events") as file:
        return sorted({d.group for d in parse_definitions(file.read())
                       if (owner := parse_group(d.group)) is not None and owner.pid == pid})


def wait_for_line(proc: subprocess.Popen[str], needle: str, timeout: float = 30) -> None:
    assert proc.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        if not selector.select(deadline - time.monotonic()):
            continue
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if needle in line:
            return
    proc.kill()
    raise AssertionError(f"never saw {needle!r}: {''.join(seen)}")


def test_clean_removes_what_a_killed_rawprobe_left(add_program: Path, tmp_path: Path) -> None:
    prog = private_copy(add_program, tmp_path)
    killed = Background("attach", "--backend", "tracefs", f"p:{prog}:add a=%di:s32",
                        f"r:{prog}:add")
    alive = Background("attach", "--backend", "tracefs", f"p:{prog}:add b=%si:s32")
    try:
        killed.ready()
        alive.ready()
        killed.proc.send_signal(signal.SIGKILL)
        killed.proc.wait(timeout=10)
        left = groups_of(killed.proc.pid)
        assert len(left) == 1, "SIGKILL gives no chance to clean up: the definitions stay"
        rows = [r for r in probes_json() if r["group"] == left[0]]
        assert sorted((r["event"], r["retprobe"], r["stale"], r["pid"]) for r in rows) == [
            ("add", False, True, None), ("add__return", True, True, None)]
        # The kernel kept /proc/self/fd/N of a process that is gone: no file to name, and
        # nothing to misname.
        assert {r["symbol"] for r in rows} == {None}
        assert all(r["path"].startswith("/proc/self/fd/") for r in rows)
        live = [r for r in probes_json() if r["group"] in groups_of(alive.proc.pid)]
        assert [(r["path"], r["symbol"]) for r in live] == [(prog, "add")]

        result = run_rawprobe("probes", "--clean", check_status=0)
        # (Runs elsewhere on the host may have left groups of their own: only ours count.)
        ours = [line for line in result.stdout.splitlines() if left[0] in line]
        assert sorted(ours) == sorted([f"removed {left[0]}/add",
                                       f"removed {left[0]}/add__return"])
        assert groups_of(killed.proc.pid) == []
        # The live rawprobe's probe is untouched, and still works.
        assert len(groups_of(alive.proc.pid)) == 1
        again = run_rawprobe("probes", "--clean", "--json", check_status=0)
        report = json.loads(again.stdout)
        assert report["removed"] == []
        assert {"group": groups_of(alive.proc.pid)[0], "event": "add",
                "pid": alive.proc.pid} in report["kept"]
        subprocess.run([prog], check=True)
        time.sleep(0.2)
        status, out, err = alive.finish(signal.SIGINT)
        assert status == 0, err
        assert out.strip().endswith("add: b=2")
    finally:
        for background in (killed, alive):
            if background.proc.poll() is None:
                background.proc.kill()
                background.proc.wait()
        run_rawprobe("probes", "--clean")
    assert groups_of(alive.proc.pid) == [] and leftover_groups() == []


def _groups() -> set[str]:
    with open(f"{find_tracefs()}/uprobe_events") as file:
        return {d.group for d in parse_definitions(file.read())}


def _children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(field) for field in text.split()]


def test_clean_keeps_a_run_in_another_pid_namespace(add_program: Path, tmp_path: Path) -> None:
    # A run inside a container is pid 1 (say) of its own PID namespace: from the host, that
    # pid names another process, or none. Its group must be kept while it runs, and removed
    # once it is killed and its namespace is gone.
    unshare = require_tool("unshare")
    prog = private_copy(add_program, tmp_path)
    before = _groups()
    run = subprocess.Popen(
        [unshare, "--pid", "--fork", "--mount-proc", sys.executable, "-m", "rawprobe", "attach",
         "--backend", "tracefs", f"p:{prog}:add a=%di:s32"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    inner: int | None = None
    try:
        assert run.stderr is not None
        selector = selectors.DefaultSelector()
        selector.register(run.stderr, selectors.EVENT_READ)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and selector.select(deadline - time.monotonic()):
            line = run.stderr.readline()
            if not line or line.startswith("rawprobe: tracing"):
                break
        (inner,) = _children(run.pid)  # rawprobe, as the host sees it
        namespace = os.stat(f"/proc/{inner}/ns/pid").st_ino
        groups = {group for group in _groups() - before
                  if re.fullmatch(r"rawprobe_(\d+_)?1_\d+_\d+", group)}
        assert len(groups) == 1, groups
        (group,) = groups

        # (--clean exits 1 when another run's leftovers are busy: only this group counts here.)
        report = json.loads(run_rawprobe("probes", "--clean", "--json").stdout)
        assert {"group": group, "event": "add", "pid": inner} in report["kept"]
        assert all(entry["group"] != group for entry in report["removed"])
        rows = [r for r in probes_json() if r["group"] == group]
        assert [r["stale"] for r in rows] == [False]

        os.kill(inner, signal.SIGKILL)  # pid 1 of the namespace: the namespace goes with it
        run.wait(timeout=10)
        assert not Path(f"/proc/{inner}").exists()
        report = json.loads(run_rawprobe("probes", "--clean", "--json").stdout)
        assert {"group": group, "event": "add"} in report["removed"]
        assert group not in _groups()
        assert group.startswith(f"rawprobe_{namespace}_1_"), \
            "the run's group names its PID namespace, and its pid there"
    finally:
        # Killing unshare would leave rawprobe running in its namespace: kill rawprobe.
        for pid in [inner] if inner is not None else _children(run.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        run.wait(timeout=10)


MULTI_HOLDER = r"""
import os, sys
from rawprobe._sys import bpf
RETURN_0 = (bytes([0xB7, 0, 0, 0, 0, 0, 0, 0]), bytes([0x95, 0, 0, 0, 0, 0, 0, 0]))  # r0 = 0; exit
prog = bpf.prog_load(bpf.BPF_PROG_TYPE_KPROBE, RETURN_0,
                     expected_attach_type=bpf.BPF_TRACE_UPROBE_MULTI)
link = bpf.link_create_uprobe_multi(prog, sys.argv[1], [int(sys.argv[2], 0)])
print("ready", flush=True)
sys.stdin.read()
"""

# rawprobe's BPF backend puts even one uprobe on a uprobe_multi link where the kernel has them;
# without, it plants perf-event uprobes, as this holder asks for.
PERF_EVENT_HOLDER = r"""
import sys
from rawprobe._bpf.session import BpfSession
from rawprobe._plan.planner import Planner
from rawprobe._plan.session import TraceTarget
planner = Planner()
planner.add(sys.argv[1])
session = BpfSession(planner.plan(), multi=False)
session.attach_all(TraceTarget())
print("ready", flush=True)
sys.stdin.read()
"""


def test_probes_of_every_kind_with_their_owners(add_program: Path, tmp_path: Path) -> None:
    bpftrace = require_tool("bpftrace")
    perf_tool = require_tool("perf")
    # perf probe names its group after the file: a name no other test uses.
    prog = str(tmp_path / f"probes{os.getpid()}")
    shutil.copy2(add_program, prog)
    (add,) = list_functions(prog, "add")
    started: list[subprocess.Popen[str]] = []
    backgrounds: list[Background] = []
    perf_group = f"probe_probes{os.getpid()}"
    try:
        # -f: perf's probe cache knows this binary by build-id from other runs; never mind.
        subprocess.run([perf_tool, "probe", "-q", "-f", "-x", prog, "add"], check=True,
                       timeout=60)
        tracer = subprocess.Popen(
            [bpftrace, "-e", f"uprobe:{prog}:add {{ @ = count(); }} "
             f"uretprobe:{prog}:add {{ @r = count(); }}"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        started.append(tracer)
        wait_for_line(tracer, "Attaching")
        holder = subprocess.Popen([sys.executable, "-c", MULTI_HOLDER, prog, hex(add.file_offset)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        started.append(holder)
        wait_for_line(holder, "ready")
        perf_holder = subprocess.Popen([sys.executable, "-c", PERF_EVENT_HOLDER, f"r:{prog}:add"],
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        started.append(perf_holder)
        wait_for_line(perf_holder, "ready")
        for backend in ("bpf", "tracefs"):
            background = Background("attach", "--backend", backend, f"r:{prog}:add")
            background.ready()
            backgrounds.append(background)
        time.sleep(0.5)  # bpftrace attaches after printing "Attaching"

        rows = [r for r in probes_json() if r["path"] == prog]
        by_kind: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            by_kind.setdefault(row["kind"], []).append(row)
        assert set(by_kind) == {"perf", "bpf-multi", "bpf-perf", "tracefs"}, rows
        perf_probe = [r for r in by_kind["tracefs"] if r["group"] == perf_group]
        assert [(r["event"][:3], r["pid"], r["stale"]) for r in perf_probe] == [
            ("add", None, False)]  # a definition: the kernel records no owner
        by_kind["tracefs"] = [r for r in by_kind["tracefs"] if r["group"] != perf_group]
        for row in rows:
            assert row["symbol"] == "add" and row["file_offset"] == add.file_offset

        perf = by_kind["perf"]  # bpftrace 0.17 attaches with PERF_EVENT_IOC_SET_BPF
        assert {(r["pid"], r["comm"], r["retprobe"]) for r in perf} == {
            (tracer.pid, "bpftrace", False), (tracer.pid, "bpftrace", True)}
        assert all(r["prog_id"] for r in perf)

        multi, ours_multi = sorted(by_kind["bpf-multi"], key=lambda r: r["pid"] != holder.pid)
        assert multi["pid"] == holder.pid and multi["link_id"] and not multi["retprobe"]
        assert ours_multi["pid"] == backgrounds[0].proc.pid and ours_multi["retprobe"]
        assert ours_multi["prog_name"] == "rp_return_multi" and ours_multi["link_id"]

        (bpf_row,) = by_kind["bpf-perf"]
        assert bpf_row["pid"] == perf_holder.pid and bpf_row["retprobe"]
        assert bpf_row["prog_name"] == "rp_return" and bpf_row["link_id"]

        (tracefs_row,) = by_kind["tracefs"]
        assert tracefs_row["pid"] == backgrounds[1].proc.pid and tracefs_row["retprobe"]
        assert tracefs_row["event"] == "add__return" and not tracefs_row["stale"]

        table = run_rawprobe("probes", check_status=0).stdout.splitlines()
        assert table[0].split() == ["KIND", "PID", "COMM", "TYPE", "SYMBOL", "PLACE", "DETAIL"]
        ours = [line for line in table if f"{prog}:{add.file_offset:#x}" in line]
        assert len(ours) == 7
        assert any(line.split()[:3] == ["perf", str(tracer.pid), "bpftrace"] for line in ours)
    finally:
        # Each step on its own, so one failing cannot leave the others' probes behind.
        for background in backgrounds:
            try:
                background.finish(signal.SIGINT)
            except subprocess.TimeoutExpired:
                background.proc.kill()
                background.proc.wait()
        for proc in started:
            proc.send_signal(signal.SIGINT)
            try:
                proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
        subprocess.run([perf_tool, "probe", "-q", "-d", f"{perf_group}:*"], check=False,
                       timeout=60)
    assert [r for r in probes_json() if r["path"] == prog] == []

"""The BPF backend's kernel-side probes: system calls and tracepoints (clang/kernel.bpf.c).

System calls need no attachment per call: the two programs on the raw syscall tracepoints
serve all of them, and the ``syscalls`` array (filled before they are attached) says which
are probed and how. A tracepoint is a perf event of type ``PERF_TYPE_TRACEPOINT``, its
program attached with the event's cookie as a uprobe's is. Which processes are recorded: the
command's tree (the followed set, as for uprobes), the ``-p`` processes (put in the followed
set, which then does not grow), or every process.
"""

from __future__ import annotations

import errno
import os
import struct
from collections.abc import Sequence

from .._errors import KernelFeatureError, PrivilegeError, SysCallError
from .._plan import abi
from .._plan.session import PlannedEvent, SyscallTotal, TraceTarget
from .._sys.bpfobject import BpfObject
from .._sys.limits import open_perf_event
from .._sys.perf import PERF_TYPE_TRACEPOINT, PerfEventAttr
from .loader import KERNEL_PROGRAMS

__all__ = ["KERNEL_PROGRAMS", "KernelProbes"]

_KEY = struct.Struct("<I")
_TOTALS = struct.Struct("<QQQ")
_SYS_KEY = struct.Struct("<II")
_FOLLOW_TRACED = 1  # FOLLOW_TRACED in rawprobe.bpf.c


def _first_online_cpu() -> int:
    try:
        with open("/sys/devices/system/cpu/online") as file:
            return int(file.read().split(",")[0].split("-")[0])
    except (OSError, ValueError):
        return 0


class KernelProbes:
    """The kernel-side events of a plan, in one loaded object.

    Args:
        events: Every planned event (the uprobes among them are ignored).
    """

    def __init__(self, events: Sequence[PlannedEvent]) -> None:
        self.syscalls = [event for event in events if event.kind == "syscall"]
        self.tracepoints = [event for event in events if event.kind == "tracepoint"]
        self._totals_taken: dict[tuple[int, int], tuple[int, int, int]] = {}

    def programs(self) -> set[str]:
        """The programs to load."""
        wanted: set[str] = set()
        if self.syscalls:
            wanted.update(("rp_sys_enter", "rp_sys_exit"))
        if self.tracepoints:
            wanted.add("rp_tracepoint")
        return wanted

    def configure(self, obj: BpfObject) -> None:
        """After load: say which system calls are probed, by which event."""
        syscalls = obj.map("syscalls")
        for event in self.syscalls:
            syscalls.update(_KEY.pack(event.syscall_nr), abi.SYSCALL.build({
                "flags": event.syscall_flags, "event_id": event.event_id,
                "config_id": event.config_id, "reserved": 0}))

    def attach(self, obj: BpfObject, target: TraceTarget) -> list[int]:
        """Attach the programs; returns the libbpf links (the caller destroys them)."""
        links: list[int] = []
        if not (self.syscalls or self.tracepoints):
            return links
        if target.pids:
            followed = obj.map("followed")
            for pid in target.pids:
                followed.update(_KEY.pack(pid), bytes([_FOLLOW_TRACED]))
            obj.map("kernel_filter").update(_KEY.pack(0), abi.KERNEL_FILTER.build(
                {"pids": 1, "reserved": 0}))
        try:
            if self.syscalls:
                for name in ("rp_sys_exit", "rp_sys_enter"):
                    links.append(int(obj.lib.program_attach(obj.program(name))))
            program = obj.program("rp_tracepoint") if self.tracepoints else 0
            cpu = _first_online_cpu()
            for event in self.tracepoints:
                links.append(self._attach_tracepoint(obj, program, event, cpu))
        except BaseException:
            for link in reversed(links):
                obj.lib.link_destroy(link)
            raise
        return links

    @staticmethod
    def _attach_tracepoint(obj: BpfObject, program: int, event: PlannedEvent, cpu: int) -> int:
        """One perf event on the tracepoint, and the program on it with the event's cookie.

        The program runs at every hit, on every CPU: a tracepoint's BPF programs hang on the
        tracepoint itself (kernel/trace/trace_event_perf.c, perf_trace_run_bpf_submit()), not
        on the perf event's CPU.
        """
        attr = PerfEventAttr()
        attr.type = PERF_TYPE_TRACEPOINT
        attr.config = event.tracepoint_id
        try:
            fd = open_perf_event(attr, -1, cpu, f"tracepoint {event.path}")
        except SysCallError as error:
            if error.errno in (errno.EPERM, errno.EACCES):
                raise PrivilegeError(f"not allowed to open {event.path}: run rawprobe as root "
                                     "(or with CAP_PERFMON)", capability="CAP_PERFMON") from None
            raise
        try:
            return int(obj.lib.attach_perf_event(program, fd, event.cookie))
        except SysCallError as error:
            os.close(fd)
            if error.errno == errno.EINVAL:
                raise KernelFeatureError(
                    f"the kernel refused rawprobe's program on {event.path}: BPF programs with "
                    "cookies on tracepoints need Linux 5.15 or newer", minimum_kernel="5.15",
                ) from None
            raise

    def totals(self, obj: BpfObject, cpus: int, reset: bool) -> list[SyscallTotal]:
        """What the system call programs counted, per system call (and process)."""
        by_nr = {event.syscall_nr: event for event in self.syscalls
                 if event.syscall_flags & abi.SysFlag.SUMMARY}
        if not by_nr:
            return []
        size = _TOTALS.size
        counted: dict[tuple[int, int], tuple[int, int, int]] = {}
        if any(event.syscall_flags & abi.SysFlag.BY_PID for event in by_nr.values()):
            totals = obj.map("sys_totals_by_pid")
            for key in totals.keys(_SYS_KEY.size):
                raw = totals.get(key, size * cpus)
                if reset:
                    totals.delete(key)
                if raw is not None:
                    counted[_SYS_KEY.unpack(key)] = _sum(raw, cpus)
            reset_taken = False
        else:
            totals = obj.map("sys_totals")
            for nr in by_nr:
                counted[(nr, 0)] = _sum(totals.lookup(_KEY.pack(nr), size * cpus), cpus)
            reset_taken = reset
        result = []
        for (nr, pid), (calls, errors, total_ns) in sorted(counted.items()):
            event = by_nr.get(nr)
            if event is None:
                continue
            taken = self._totals_taken.get((nr, pid), (0, 0, 0))
            if reset_taken:
                self._totals_taken[(nr, pid)] = (calls, errors, total_ns)
            calls, errors, total_ns = calls - taken[0], errors - taken[1], total_ns - taken[2]
            if calls:
                result.append(SyscallTotal(event.event_id, pid, calls, errors, total_ns))
        return result


def _sum(raw: bytes, cpus: int) -> tuple[int, int, int]:
    calls = errors = total_ns = 0
    for cpu in range(cpus):
        c, e, t = _TOTALS.unpack_from(raw, cpu * _TOTALS.size)
        calls += c
        errors += e
        total_ns += t
    return calls, errors, total_ns

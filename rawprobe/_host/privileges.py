"""Whether this process may trace, checked before anything is planted."""

from __future__ import annotations

import os

from .._errors import PrivilegeError

__all__ = ["check_tracing_privileges", "effective_capabilities", "parse_capabilities"]

# include/uapi/linux/capability.h
CAP_SYS_ADMIN = 21
CAP_PERFMON = 38
CAP_BPF = 39


def parse_capabilities(status: str) -> int:
    """The effective capability mask (``CapEff:``) of a ``/proc/PID/status`` text."""
    for line in status.splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


def effective_capabilities() -> int:
    """This process's effective capability mask (0 when it cannot be read)."""
    try:
        with open("/proc/self/status") as status:
            return parse_capabilities(status.read())
    except (OSError, ValueError, IndexError):
        return 0


def check_tracing_privileges(bpf: bool = True) -> None:
    """Raise :class:`PrivilegeError` naming what is missing, unless this process may trace.

    Uprobes through perf_event_open need CAP_PERFMON (Linux 5.8+) or CAP_SYS_ADMIN; loading
    the BPF programs needs CAP_BPF as well (or CAP_SYS_ADMIN).
    """
    if os.geteuid() == 0:
        return
    caps = effective_capabilities()
    if caps >> CAP_SYS_ADMIN & 1:
        return
    missing = []
    if not caps >> CAP_PERFMON & 1:
        missing.append("CAP_PERFMON")
    if bpf and not caps >> CAP_BPF & 1:
        missing.append("CAP_BPF")
    if missing:
        raise PrivilegeError(
            "tracing needs root, or the capabilities "
            + " and ".join(missing)
            + " (for example: sudo setcap cap_perfmon,cap_bpf+ep on the python interpreter, "
            "or run rawprobe with sudo)",
            capability=missing[0],
        )

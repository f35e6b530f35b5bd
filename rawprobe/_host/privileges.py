"""Whether this process may trace, decided before anything is loaded or planted.

The kernel judges capabilities, never the user id: root in a container, or with its bounding
set cut, may hold none of them; a user may hold exactly the ones tracing needs. So the
effective set (``CapEff`` of ``/proc/self/status``) is read, and where the answer depends on
the kernel's version or configuration, the kernel is asked with a harmless probe
(:mod:`rawprobe._sys.features`). What each backend needs:

- BPF: loading rawprobe's programs (kprobe- and tracing-type) wants CAP_BPF and CAP_PERFMON,
  or CAP_SYS_ADMIN (kernel/bpf/syscall.c, ``bpf_prog_load``: ``bpf_capable()``, and
  ``perfmon_capable()`` for these program types). A uprobe created by ``perf_event_open``
  wants CAP_SYS_ADMIN on kernels with the 2025 hardening (kernel/events/core.c,
  ``perf_uprobe_event_init``; "perf: Require CAP_SYS_ADMIN for uprobes"), CAP_PERFMON before;
  a uprobe_multi link (Linux 6.6+) wants no more than the program. So without CAP_SYS_ADMIN
  the BPF backend puts every uprobe on a uprobe_multi link, and refuses only when the kernel
  allows neither.
- tracefs: writing ``uprobe_events`` (its file permissions: root, or CAP_DAC_OVERRIDE), and
  opening the events for raw samples, which wants CAP_PERFMON or
  ``kernel.perf_event_paranoid`` = -1 (kernel/trace/trace_event_perf.c,
  ``perf_trace_event_perm`` → ``perf_allow_tracepoint``).
"""

from __future__ import annotations

import os

from .._errors import KernelFeatureError, PrivilegeError

__all__ = [
    "CAP_BPF",
    "CAP_PERFMON",
    "CAP_SYS_ADMIN",
    "bpf_refusal",
    "capability_names",
    "check_tracing_privileges",
    "effective_capabilities",
    "parse_capabilities",
    "perf_event_paranoid",
    "perf_uprobes_allowed",
    "tracefs_refusal",
]

# include/uapi/linux/capability.h
CAP_DAC_OVERRIDE = 1
CAP_SYS_ADMIN = 21
CAP_PERFMON = 38
CAP_BPF = 39
_NAMES = {CAP_DAC_OVERRIDE: "CAP_DAC_OVERRIDE", CAP_SYS_ADMIN: "CAP_SYS_ADMIN",
          CAP_PERFMON: "CAP_PERFMON", CAP_BPF: "CAP_BPF"}


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


def capability_names(caps: int) -> list[str]:
    """The names of the capabilities rawprobe cares about that ``caps`` holds."""
    return [name for cap, name in sorted(_NAMES.items()) if caps >> cap & 1]


def _has(caps: int, cap: int) -> bool:
    return bool(caps >> cap & 1)


def perf_event_paranoid() -> int | None:
    """``kernel.perf_event_paranoid`` (None when it cannot be read)."""
    try:
        with open("/proc/sys/kernel/perf_event_paranoid") as file:
            return int(file.read())
    except (OSError, ValueError):
        return None


def perf_uprobes_allowed(caps: int | None = None) -> bool:
    """Whether the kernel lets this process create uprobes through ``perf_event_open``
    (asked of the kernel, once, unless the process holds CAP_SYS_ADMIN, which always may)."""
    from .._sys.features import PERF_UPROBE

    caps = effective_capabilities() if caps is None else caps
    return _has(caps, CAP_SYS_ADMIN) or PERF_UPROBE.available()


def _how_to_grant(missing: list[str]) -> str:
    names = ",".join(name.lower() for name in missing)
    if os.geteuid() == 0:
        return ("this process runs as root but without them (a container, or a capability "
                "bounding set, dropped them): run rawprobe where root holds them, e.g. a "
                "privileged container")
    return (f"run rawprobe as root (sudo), or grant them: sudo setcap {names}+ep on the Python "
            "interpreter")


def bpf_refusal(caps: int | None = None) -> PrivilegeError | None:
    """Why the BPF backend may not trace here, or None when it may. Makes no bpf() call
    unless the capabilities to load programs are held."""
    caps = effective_capabilities() if caps is None else caps
    missing = []
    if not (_has(caps, CAP_BPF) or _has(caps, CAP_SYS_ADMIN)):
        missing.append("CAP_BPF")
    if not (_has(caps, CAP_PERFMON) or _has(caps, CAP_SYS_ADMIN)):
        missing.append("CAP_PERFMON")
    if missing:
        return PrivilegeError(
            "tracing with BPF needs the capabilities CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN); "
            f"this process lacks {' and '.join(missing)}: {_how_to_grant(missing)}",
            capability=missing[0],
        )
    if perf_uprobes_allowed(caps):
        return None
    from .._sys.features import UPROBE_MULTI_LINK

    refusal = UPROBE_MULTI_LINK.check()
    if refusal is None:
        return None  # every uprobe goes on a uprobe_multi link
    return PrivilegeError(
        "this kernel creates uprobes through perf_event_open only for CAP_SYS_ADMIN "
        "(kernel/events/core.c, perf_uprobe_event_init), and refused a uprobe_multi link "
        f"(Linux 6.6+), which would need only CAP_BPF and CAP_PERFMON ({refusal}): "
        + _how_to_grant(["CAP_SYS_ADMIN"]),
        capability="CAP_SYS_ADMIN",
    )


def tracefs_refusal(caps: int | None = None) -> PrivilegeError | None:
    """Why the tracefs backend may not trace here, or None when it may (tracefs not being
    mounted is no matter of privilege: the backend reports it)."""
    from .tracefs import find_tracefs

    caps = effective_capabilities() if caps is None else caps
    try:
        uprobe_events: str | None = os.path.join(find_tracefs(), "uprobe_events")
    except PrivilegeError as error:
        return error
    except KernelFeatureError:
        uprobe_events = None
    if uprobe_events is not None and not os.access(uprobe_events, os.W_OK, effective_ids=True):
        return PrivilegeError(
            f"the tracefs backend writes {uprobe_events}, which this process may not: "
            + ("run rawprobe as root" if os.geteuid() != 0 else _how_to_grant(
                ["CAP_DAC_OVERRIDE"])),
            capability="CAP_DAC_OVERRIDE",
        )
    paranoid = perf_event_paranoid()
    if not (_has(caps, CAP_PERFMON) or _has(caps, CAP_SYS_ADMIN)) and (
            paranoid is None or paranoid > -1):
        setting = f" (now {paranoid})" if paranoid is not None else ""
        return PrivilegeError(
            "the tracefs backend reads raw tracepoint samples, which need CAP_PERFMON (or "
            f"CAP_SYS_ADMIN), or kernel.perf_event_paranoid=-1{setting}; this process lacks "
            f"CAP_PERFMON: {_how_to_grant(['CAP_PERFMON'])}",
            capability="CAP_PERFMON",
        )
    return None


def check_tracing_privileges(bpf: bool = True, *, backend: str | None = None) -> None:
    """Raise :class:`PrivilegeError` naming what is missing, unless this process may trace.

    Args:
        bpf: Check for the BPF backend (False: the tracefs backend).
        backend: ``bpf``, ``tracefs`` or ``auto`` (either will do); overrides ``bpf``.

    Raises:
        PrivilegeError: Not allowed; the message names the capability or the sysctl, and
            nothing has been loaded or planted.
    """
    backend = backend or ("bpf" if bpf else "tracefs")
    caps = effective_capabilities()
    if backend == "tracefs":
        refusal = tracefs_refusal(caps)
    else:
        refusal = bpf_refusal(caps)
        if refusal is not None and backend == "auto" and \
                tracefs_refusal(caps) is None:
            refusal = None
    if refusal is not None:
        raise refusal

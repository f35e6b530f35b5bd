"""What this host supports for tracing, what it lacks, and how to fix each gap.

Each check reads the kernel's own answer where there is one (sysfs, procfs, a tiny BPF map or
program the verifier judges) rather than guessing from the version, and names the kernel version
a feature first appeared in. :func:`bpf_backend_available` and
:func:`tracefs_backend_available` are what choosing a backend automatically needs: ``None``
when the backend works here, else why not.
"""

from __future__ import annotations

import gzip
import mmap
import os
import platform
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

from ._errors import KernelFeatureError, PrivilegeError, RawprobeError
from ._host.privileges import (
    CAP_BPF,
    CAP_PERFMON,
    CAP_SYS_ADMIN,
    bpf_refusal,
    capability_names,
    effective_capabilities,
    parse_capabilities,
    tracefs_refusal,
)
from ._sys.features import BPF_COOKIE, RINGBUF, UPROBE_MULTI, Feature, parse_kernel_version

__all__ = [
    "Check",
    "bpf_backend_available",
    "can_trace",
    "parse_capabilities",
    "parse_kernel_config",
    "parse_kernel_version",
    "parse_lockdown",
    "run_checks",
    "tracefs_backend_available",
]

OK, WARN, FAIL = "ok", "warn", "fail"
BTF_PATH = "/sys/kernel/btf/vmlinux"
_CONFIG_OPTIONS = (
    ("CONFIG_UPROBES", "uprobes at all"),
    ("CONFIG_UPROBE_EVENTS", "the uprobe PMU and uprobe_events (tracefs backend)"),
    ("CONFIG_PERF_EVENTS", "perf_event_open"),
    ("CONFIG_BPF_SYSCALL", "the bpf() system call (BPF backend)"),
    ("CONFIG_BPF_EVENTS", "BPF programs on uprobes (BPF backend)"),
    ("CONFIG_DEBUG_INFO_BTF", "kernel BTF for CO-RE (BPF backend)"),
)


@dataclass(frozen=True)
class Check:
    """One line of ``rawprobe doctor``.

    Attributes:
        name: A stable identifier (``kernel``, ``uprobe-pmu``, ``bpf-cookie``...).
        status: ``ok``, ``warn`` or ``fail``.
        detail: What was found.
        fix: What to do about a warning or failure (empty when ok).
    """

    name: str
    status: str
    detail: str
    fix: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# -- parsers (pure) ---------------------------------------------------------------------------


def parse_kernel_config(text: str) -> dict[str, str]:
    """``CONFIG_X`` to ``y``/``m``/value; options ``# CONFIG_X is not set`` map to ``n``."""
    options: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        unset = re.fullmatch(r"# (CONFIG_\w+) is not set", line)
        if unset:
            options[unset.group(1)] = "n"
        elif line.startswith("CONFIG_") and "=" in line:
            key, value = line.split("=", 1)
            options[key] = value.strip('"')
    return options


def parse_lockdown(text: str) -> str:
    """The active mode of ``/sys/kernel/security/lockdown`` (``[none] integrity ...``)."""
    match = re.search(r"\[(\w+)\]", text)
    return match.group(1) if match else text.strip() or "none"


# -- reading the host -------------------------------------------------------------------------


def _read(path: str) -> str | None:
    try:
        with open(path) as file:
            return file.read()
    except OSError:
        return None


def _kernel_config() -> tuple[dict[str, str] | None, str]:
    """The running kernel's config and where it was read from."""
    try:
        with gzip.open("/proc/config.gz", "rt") as file:
            return parse_kernel_config(file.read()), "/proc/config.gz"
    except OSError:
        pass
    path = f"/boot/config-{platform.release()}"
    text = _read(path)
    if text is not None:
        return parse_kernel_config(text), path
    return None, ""


def _has(caps: int, cap: int) -> bool:
    # The kernel judges capabilities, never the user id (root may hold none of them).
    return bool(caps >> cap & 1)


def _may_bpf() -> bool:
    """Whether this process may create BPF objects at all (the feature probes need it)."""
    caps = effective_capabilities()
    return _has(caps, CAP_SYS_ADMIN) or (_has(caps, CAP_BPF) and _has(caps, CAP_PERFMON))


def _lockdown() -> str:
    text = _read("/sys/kernel/security/lockdown")
    return "none" if text is None else parse_lockdown(text)


# -- backends ---------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def bpf_backend_available() -> str | None:
    """Whether rawprobe's BPF backend works here.

    The definitive test loads rawprobe's BPF object (ring buffer map, programs calling
    ``bpf_get_attach_cookie()``), as a trace would, and unloads it. Cached.

    Returns:
        ``None`` when it works, else what is missing and what to do.
    """
    refusal = bpf_refusal()
    if refusal is not None:
        return str(refusal)
    try:
        from ._sys.libbpf import libbpf
        from ._sys.uprobe import uprobe_pmu

        libbpf()
        uprobe_pmu()
    except RawprobeError as error:
        return str(error)
    if not os.path.exists(BTF_PATH):
        return (f"the kernel has no BTF ({BTF_PATH}): rawprobe's CO-RE programs need a kernel "
                "built with CONFIG_DEBUG_INFO_BTF=y")
    try:
        from ._bpf.session import BpfSession
        from ._plan.session import Plan

        BpfSession(Plan((), ()), ring_size=mmap.PAGESIZE, follow=False).close()
    except (RawprobeError, OSError) as error:
        return f"rawprobe's BPF programs do not load on this kernel: {error}"
    return None


def tracefs_backend_available() -> str | None:
    """Whether the tracefs backend works here.

    Returns:
        ``None`` when it does, else what is missing and what to do.
    """
    from ._tracefs import find_tracefs

    try:
        find_tracefs()
    except (KernelFeatureError, PrivilegeError) as error:
        return str(error)
    if _lockdown() == "confidentiality":
        return ("kernel lockdown in confidentiality mode forbids tracefs: boot with "
                "lockdown=integrity (or none) to use the tracefs backend")
    refusal = tracefs_refusal()
    return None if refusal is None else str(refusal)


def can_trace(checks: list[Check]) -> bool:
    """Whether either backend works, by the checks' verdicts."""
    return any(c.status == OK for c in checks if c.name in ("backend-bpf", "backend-tracefs"))


# -- the checks -------------------------------------------------------------------------------


def _check_kernel() -> Check:
    release = platform.release()
    try:
        version = parse_kernel_version(release)
    except ValueError:
        return Check("kernel", WARN, f"cannot read the kernel version from {release!r}",
                     "rawprobe's BPF backend needs Linux 5.15 or newer")
    if version >= (5, 15):
        return Check("kernel", OK, f"Linux {release} (5.15+: BPF ring buffer and cookies)")
    return Check("kernel", WARN, f"Linux {release} is older than 5.15: no BPF cookies on "
                 "uprobes", "upgrade the kernel for the BPF backend, or use --backend tracefs")


def _check_config() -> Check:
    config, source = _kernel_config()
    if config is None:
        return Check("kernel-config", WARN, "the kernel's build configuration is not readable",
                     "load it with 'modprobe configs' (for /proc/config.gz); the checks below "
                     "test each feature directly anyway")
    missing = [f"{name} ({why})" for name, why in _CONFIG_OPTIONS
               if config.get(name) not in ("y", "m")]
    if missing:
        return Check("kernel-config", FAIL, f"{source}: not set: " + ", ".join(missing),
                     "use a kernel built with these options (distribution kernels have them)")
    return Check("kernel-config", OK,
                 f"{source}: " + ", ".join(name for name, _why in _CONFIG_OPTIONS))


def _check_pmu() -> Check:
    from ._sys.uprobe import uprobe_pmu

    try:
        pmu = uprobe_pmu()
    except KernelFeatureError as error:
        return Check("uprobe-pmu", FAIL, str(error), "use a kernel with CONFIG_UPROBE_EVENTS "
                     "(Linux 4.17+ creates uprobes through perf_event_open)")
    bits = f"type {pmu.type}, retprobe config:{pmu.retprobe.low}"
    if pmu.ref_ctr_offset is None:
        return Check("uprobe-pmu", WARN, bits + ", no ref_ctr_offset",
                     "USDT semaphores need Linux 4.20+")
    return Check("uprobe-pmu", OK, bits + f", ref_ctr_offset config:{pmu.ref_ctr_offset.low}-"
                 f"{pmu.ref_ctr_offset.high}")


def _check_btf() -> Check:
    if os.access(BTF_PATH, os.R_OK):
        return Check("btf", OK, f"{BTF_PATH} ({os.path.getsize(BTF_PATH) >> 10} KiB)")
    return Check("btf", FAIL, f"no {BTF_PATH}",
                 "use a kernel built with CONFIG_DEBUG_INFO_BTF=y (the BPF backend's CO-RE "
                 "programs need it), or --backend tracefs")


def _check_privileges() -> Check:
    caps = effective_capabilities()
    held = ", ".join(capability_names(caps)) or "none of CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN"
    who = "root" if os.geteuid() == 0 else f"uid {os.geteuid()}"
    refusal = bpf_refusal(caps)
    if refusal is None:
        return Check("privileges", OK, f"{who}; capabilities: {held}")
    if tracefs_refusal(caps) is None:
        return Check("privileges", WARN, f"{who}; capabilities: {held}; the tracefs backend "
                     f"only: {refusal}", "run rawprobe as root for the BPF backend")
    return Check("privileges", FAIL, f"{who}; capabilities: {held}: {refusal}",
                 "run rawprobe as root (sudo), or grant CAP_BPF and CAP_PERFMON: "
                 "sudo setcap cap_bpf,cap_perfmon+ep on the Python interpreter")


def _check_sysctl(name: str, path: str, privileged: Callable[[], bool], bad: Callable[[int], bool],
                  fix: str) -> Check:
    text = _read(path)
    if text is None:
        return Check(name, WARN, f"{path} is not readable", "")
    value = int(text)
    if privileged():
        return Check(name, OK, f"{value} (does not limit a privileged rawprobe)")
    if bad(value):
        return Check(name, FAIL, f"{value}", fix)
    return Check(name, OK, str(value))


def _check_lockdown() -> Check:
    mode = _lockdown()
    if mode == "confidentiality":
        return Check("lockdown", WARN, "confidentiality: tracefs and reading kernel memory are "
                     "forbidden", "boot with lockdown=integrity or none for the tracefs backend")
    return Check("lockdown", OK, mode if os.path.exists("/sys/kernel/security/lockdown")
                 else "no lockdown LSM")


def _check_tracefs() -> Check:
    from ._tracefs import TRACEFS_MOUNTS, find_tracefs

    try:
        root = find_tracefs()
    except PrivilegeError as error:  # mounted, but not for this user to read
        return Check("tracefs", WARN, str(error), "run rawprobe as root for the tracefs backend")
    except KernelFeatureError as error:
        return Check("tracefs", FAIL, str(error),
                     f"mount -t tracefs nodev {TRACEFS_MOUNTS[0]}")
    events = os.path.join(root, "uprobe_events")
    if not os.access(events, os.W_OK):
        return Check("tracefs", WARN, f"mounted at {root}, {events} is not writable",
                     "run rawprobe as root for the tracefs backend")
    return Check("tracefs", OK, f"mounted at {root}")


def _check_syscall_tracepoints() -> Check:
    """What sys: and tp: probes and ``rawprobe syscalls`` need: the raw syscall tracepoints
    (the programs attach there), tracefs' syscalls events (names and arguments) and tracefs
    for tracepoints' formats."""
    from ._tracefs import TRACEFS_MOUNTS, find_tracefs

    try:
        events = os.path.join(find_tracefs(), "events")
    except PrivilegeError as error:  # mounted, but not for this user to read
        return Check("syscall-tracepoints", WARN, str(error),
                     "run rawprobe as root for sys: and tp: probes")
    except KernelFeatureError as error:
        return Check("syscall-tracepoints", WARN, str(error),
                     f"mount -t tracefs nodev {TRACEFS_MOUNTS[0]} for sys: and tp: probes")
    syscalls = os.path.join(events, "syscalls")
    if not os.path.isdir(os.path.join(events, "raw_syscalls", "sys_enter")) or not (
            os.path.isdir(syscalls)):
        return Check("syscall-tracepoints", WARN,
                     f"{events} has no raw_syscalls or syscalls events",
                     "sys: probes and 'rawprobe syscalls' need a kernel built with "
                     "CONFIG_FTRACE_SYSCALLS=y (tp: probes work without)")
    try:
        count = sum(1 for name in os.listdir(syscalls) if name.startswith("sys_enter_"))
    except OSError as error:
        return Check("syscall-tracepoints", WARN, f"cannot list {syscalls}: {error.strerror}",
                     "run rawprobe as root")
    return Check("syscall-tracepoints", OK,
                 f"raw_syscalls:sys_enter/sys_exit and {count} system calls in {syscalls} "
                 "(sys: probes, rawprobe syscalls); tracepoint formats for tp: probes")


def _check_libbpf() -> Check:
    from ._sys.libbpf import LIBBPF_SONAME, libbpf

    try:
        major, minor = libbpf().version
    except RawprobeError as error:
        return Check("libbpf", FAIL, str(error), "install libbpf1 (Debian/Ubuntu) or libbpf "
                     "(Fedora), version 1.0 or newer")
    return Check("libbpf", OK, f"{LIBBPF_SONAME} version {major}.{minor}")


def _feature_check(feature: Feature, detail: str, fix: str) -> Check:
    if not _may_bpf():
        return Check(feature.name, WARN,
                     "not checked: creating BPF objects needs root or CAP_BPF",
                     "run 'sudo rawprobe doctor'")
    refusal = feature.check()
    if refusal is not None:
        return Check(feature.name, FAIL, f"the kernel refused ({refusal}): "
                     f"{feature.description} needs Linux {feature.minimum}+", fix)
    return Check(feature.name, OK, detail)


def _backend_check(name: str, reason: str | None, what: str) -> Check:
    if reason is None:
        return Check(name, OK, f"{what} works here")
    return Check(name, FAIL, reason, "fix the failures above" if "root" not in reason
                 else "run rawprobe as root")


def run_checks() -> list[Check]:
    """Every check, in the order ``rawprobe doctor`` prints them."""
    caps = effective_capabilities()
    checks = [
        _check_kernel(),
        _check_config(),
        _check_pmu(),
        _check_btf(),
        _check_privileges(),
        _check_sysctl(
            "perf-event-paranoid", "/proc/sys/kernel/perf_event_paranoid",
            lambda: _has(caps, CAP_PERFMON) or _has(caps, CAP_SYS_ADMIN), lambda v: v > -1,
            "run rawprobe as root or with CAP_PERFMON, or: sysctl kernel.perf_event_paranoid=-1",
        ),
        _check_sysctl(
            "unprivileged-bpf", "/proc/sys/kernel/unprivileged_bpf_disabled",
            lambda: _has(caps, CAP_BPF) or _has(caps, CAP_SYS_ADMIN), lambda v: v != 0,
            "run rawprobe as root or with CAP_BPF (unprivileged BPF cannot trace anyway)",
        ),
        _check_lockdown(),
        _check_tracefs(),
        _check_syscall_tracepoints(),
        _check_libbpf(),
        _feature_check(RINGBUF, "a BPF_MAP_TYPE_RINGBUF map was created",
                       "upgrade to Linux 5.8+ for the BPF backend, or use --backend tracefs"),
        _feature_check(BPF_COOKIE, "the verifier accepts bpf_get_attach_cookie()",
                       "upgrade to Linux 5.15+ for the BPF backend, or use --backend tracefs"),
        _feature_check(UPROBE_MULTI, "uprobe_multi links can be created",
                       "optional: Linux 6.6+ attaches many uprobes in one link"),
    ]
    if checks[-1].status == FAIL:  # optional: rawprobe does not need it
        checks[-1] = Check(checks[-1].name, WARN, checks[-1].detail, checks[-1].fix)
    checks.append(_backend_check("backend-bpf", bpf_backend_available(), "the BPF backend"))
    checks.append(_backend_check("backend-tracefs", tracefs_backend_available(),
                                 "the tracefs backend"))
    return checks

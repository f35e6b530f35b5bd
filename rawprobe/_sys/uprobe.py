"""Uprobes through the kernel's uprobe PMU (perf_event_open), and BPF programs attached to them.

Since Linux 4.17 a uprobe can be created by perf_event_open(2) alone, with no tracefs write:
the PMU's dynamic type is in ``/sys/bus/event_source/devices/uprobe/type``, the file to probe
goes in ``config1`` (as a pointer to its path), the file offset in ``config2``, and the bits of
``config`` that make a return probe or carry a reference-counter (semaphore) offset are
described by the files under ``.../uprobe/format/`` (kernel/events/core.c,
PMU_FORMAT_ATTR(retprobe, ...)). The event lives exactly as long as its file descriptor.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import weakref
from functools import lru_cache

from .._errors import (
    KernelFeatureError,
    PrivilegeError,
    SysCallError,
    TargetNotFoundError,
    UsageError,
)
from .._values import Record
from .limits import open_perf_event
from .perf import FLAG_DISABLED, FLAG_INHERIT, PerfEventAttr

__all__ = [
    "UnplaceableProbeError",
    "UprobeEvent",
    "UprobePmu",
    "explain_uprobe_error",
    "uprobe_pmu",
]

# ENOTSUPP: a kernel-internal errno the uprobe code returns for instructions it cannot probe.
ENOTSUPP = 524


class UnplaceableProbeError(UsageError):
    """The kernel refuses a uprobe at this offset (an instruction it cannot probe, or not an
    instruction boundary)."""

_PMU_DIR = "/sys/bus/event_source/devices/uprobe"


class _ConfigBits(Record):
    """Where a format attribute lives in perf_event_attr.config: ``config:LOW[-HIGH]``."""

    __slots__ = ("high", "low")

    low: int
    high: int

    def __init__(self, low: int, high: int) -> None:
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)

    def encode(self, value: int) -> int:
        width = self.high - self.low + 1
        if value >> width:
            raise ValueError(f"{value:#x} does not fit in config:{self.low}-{self.high}")
        return value << self.low


class UprobePmu(Record):
    """The uprobe PMU of the running kernel.

    Attributes:
        type: The PMU's dynamic type, for ``perf_event_attr.type``.
        retprobe: Where the return-probe flag lives in ``config``.
        ref_ctr_offset: Where a semaphore's file offset lives in ``config`` (Linux 4.20+), if
            this kernel supports reference counters.
    """

    __slots__ = ("ref_ctr_offset", "retprobe", "type")

    type: int
    retprobe: _ConfigBits
    ref_ctr_offset: _ConfigBits | None

    def __init__(self, type: int, retprobe: _ConfigBits,
                 ref_ctr_offset: _ConfigBits | None) -> None:
        object.__setattr__(self, "type", type)
        object.__setattr__(self, "retprobe", retprobe)
        object.__setattr__(self, "ref_ctr_offset", ref_ctr_offset)

    def config(self, retprobe: bool, ref_ctr_offset: int = 0) -> int:
        value = self.retprobe.encode(1) if retprobe else 0
        if ref_ctr_offset:
            if self.ref_ctr_offset is None:
                raise KernelFeatureError(
                    "this kernel's uprobe PMU has no ref_ctr_offset: USDT semaphores need "
                    "Linux 4.20 or newer",
                    minimum_kernel="4.20",
                )
            value |= self.ref_ctr_offset.encode(ref_ctr_offset)
        return value


def _parse_format(text: str, name: str) -> _ConfigBits:
    match = re.fullmatch(r"config:(\d+)(?:-(\d+))?", text.strip())
    if not match:
        raise KernelFeatureError(f"cannot read the uprobe PMU's {name} format: {text.strip()!r}")
    low = int(match.group(1))
    return _ConfigBits(low, int(match.group(2) or low))


@lru_cache(maxsize=1)
def uprobe_pmu() -> UprobePmu:
    """Read the uprobe PMU's type and format bits from sysfs (once).

    Raises:
        KernelFeatureError: The kernel has no uprobe PMU (needs Linux 4.17 and CONFIG_UPROBES).
    """
    try:
        with open(f"{_PMU_DIR}/type") as file:
            pmu_type = int(file.read())
        with open(f"{_PMU_DIR}/format/retprobe") as file:
            retprobe = _parse_format(file.read(), "retprobe")
    except (OSError, ValueError):
        raise KernelFeatureError(
            f"the kernel has no uprobe PMU ({_PMU_DIR}): uprobes through perf_event_open need "
            "Linux 4.17+ built with CONFIG_UPROBE_EVENTS; try --backend tracefs",
            minimum_kernel="4.17",
        ) from None
    try:
        with open(f"{_PMU_DIR}/format/ref_ctr_offset") as file:
            ref_ctr: _ConfigBits | None = _parse_format(file.read(), "ref_ctr_offset")
    except OSError:
        ref_ctr = None
    return UprobePmu(pmu_type, retprobe, ref_ctr)


class UprobeEvent:
    """One uprobe or uretprobe perf event, owning its file descriptor.

    Args:
        path: The file to probe.
        file_offset: Offset of the probed instruction in the file.
        retprobe: A return probe (uretprobe) rather than an entry probe.
        pid: Follow this process (``None``: every process on the host).
        inherit: Also follow children the process creates after this call.
        ref_ctr_offset: File offset of a USDT semaphore the kernel raises while probed.
        display_path: The file's name for messages, when ``path`` is a ``/proc/self/fd/N``.

    Raises:
        PrivilegeError: Not allowed (names the capability).
        TargetNotFoundError: The file or process does not exist.
        UsageError: The kernel refused the offset.
        SysCallError: Any other refusal.
    """

    def __init__(
        self,
        path: str,
        file_offset: int,
        *,
        retprobe: bool = False,
        pid: int | None = None,
        inherit: bool = False,
        ref_ctr_offset: int = 0,
        display_path: str | None = None,
    ) -> None:
        pmu = uprobe_pmu()
        self.path = display_path or path
        self.file_offset = file_offset
        self.retprobe = retprobe
        self.pid = pid
        path_buffer = ctypes.create_string_buffer(os.fsencode(path))
        attr = PerfEventAttr()
        attr.type = pmu.type
        attr.config = pmu.config(retprobe, ref_ctr_offset)
        attr.config1 = ctypes.addressof(path_buffer)
        attr.config2 = file_offset
        attr.sample_period = 1
        attr.wakeup_events = 1
        # Disabled until a program is attached (libbpf enables it then): a hit in between
        # would run no program and be counted nowhere.
        attr.flags |= FLAG_DISABLED
        if inherit:
            attr.flags |= FLAG_INHERIT
        # A per-process event follows one task (cpu -1); a host-wide one needs a CPU, and any
        # CPU will do: the BPF program runs wherever the probe is hit (the uprobe's filter
        # admits every process once a host-wide event exists, kernel/trace/trace_uprobe.c).
        target_pid, cpu = (pid, -1) if pid is not None else (-1, 0)
        where = f"a uprobe at {self.path}:{file_offset:#x}"
        try:
            fd = open_perf_event(attr, target_pid, cpu, where)
        except SysCallError as error:
            raise explain_uprobe_error(error, self.path, where, pid) from None
        self._fd: int | None = fd
        self._finalizer = weakref.finalize(self, os.close, fd)

    @property
    def fd(self) -> int:
        if self._fd is None:
            raise ValueError("uprobe event is closed")
        return self._fd

    def detach(self) -> int:
        """Give up ownership of the descriptor (to a BPF link that will close it)."""
        fd = self.fd
        self._finalizer.detach()
        self._fd = None
        return fd

    def close(self) -> None:
        if self._fd is not None:
            self._fd = None
            self._finalizer()


def explain_uprobe_error(error: SysCallError, path: str, where: str,
                         pid: int | None) -> Exception:
    """What the kernel's refusal to plant ``where`` (``a uprobe at FILE:OFFSET``, ``uprobes in
    FILE``) in ``path`` means to the user."""
    code = error.errno
    if code in (errno.EPERM, errno.EACCES):
        return PrivilegeError(
            f"the kernel did not allow {where}: uprobes through perf_event_open need "
            "CAP_SYS_ADMIN on current kernels (kernel/events/core.c, perf_uprobe_event_init; "
            "CAP_PERFMON before the 2025 hardening): run rawprobe as root",
            capability="CAP_SYS_ADMIN",
        )
    if code == errno.ESRCH:
        return TargetNotFoundError(f"no process with pid {pid}")
    if code == errno.ENOENT:
        return TargetNotFoundError(f"{path}: no such file")
    if code in (errno.EINVAL, ENOTSUPP):
        return UnplaceableProbeError(
            f"the kernel refused {where}: the offset must fall on an instruction "
            "of an executable mapping of the file, one the kernel can probe"
        )
    return SysCallError(code or 0, f"{error.context} ({where})")

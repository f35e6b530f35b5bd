"""perf_event_open(2): the ``perf_event_attr`` struct, the call itself, and the event ioctls.

Layout from include/uapi/linux/perf_event.h. rawprobe fills the struct up to ``sig_data``
(PERF_ATTR_SIZE_VER7, 128 bytes); older kernels accept a larger struct as long as the bytes they
do not know are zero, which they are here.
"""

from __future__ import annotations

import ctypes
import fcntl

from .._errors import SysCallError
from ._arch import ARCH
from .libc import syscall6

__all__ = [
    "FLAG_DISABLED",
    "FLAG_ENABLE_ON_EXEC",
    "FLAG_INHERIT",
    "PERF_FLAG_FD_CLOEXEC",
    "PerfEventAttr",
    "perf_event_disable",
    "perf_event_enable",
    "perf_event_open",
]


class PerfEventAttr(ctypes.Structure):
    """``struct perf_event_attr``; the bitfield word is ``flags`` (see the ``FLAG_*`` bits)."""

    _fields_ = [
        ("type", ctypes.c_uint32),
        ("size", ctypes.c_uint32),
        ("config", ctypes.c_uint64),
        ("sample_period", ctypes.c_uint64),  # union with sample_freq
        ("sample_type", ctypes.c_uint64),
        ("read_format", ctypes.c_uint64),
        ("flags", ctypes.c_uint64),  # disabled:1, inherit:1, pinned:1, ...
        ("wakeup_events", ctypes.c_uint32),  # union with wakeup_watermark
        ("bp_type", ctypes.c_uint32),
        ("config1", ctypes.c_uint64),  # union: bp_addr, kprobe_func, uprobe_path
        ("config2", ctypes.c_uint64),  # union: bp_len, kprobe_addr, probe_offset
        ("branch_sample_type", ctypes.c_uint64),
        ("sample_regs_user", ctypes.c_uint64),
        ("sample_stack_user", ctypes.c_uint32),
        ("clockid", ctypes.c_int32),
        ("sample_regs_intr", ctypes.c_uint64),
        ("aux_watermark", ctypes.c_uint32),
        ("sample_max_stack", ctypes.c_uint16),
        ("reserved_2", ctypes.c_uint16),
        ("aux_sample_size", ctypes.c_uint32),
        ("reserved_3", ctypes.c_uint32),
        ("sig_data", ctypes.c_uint64),
    ]


# Bits of perf_event_attr.flags, in declaration order of the bitfield.
FLAG_DISABLED = 1 << 0
FLAG_INHERIT = 1 << 1
FLAG_ENABLE_ON_EXEC = 1 << 12

PERF_FLAG_FD_CLOEXEC = 1 << 3

# _IO('$', 0) and _IO('$', 1) from include/uapi/linux/perf_event.h.
_PERF_EVENT_IOC_ENABLE = 0x2400
_PERF_EVENT_IOC_DISABLE = 0x2401


def perf_event_open(
    attr: PerfEventAttr, pid: int, cpu: int, group_fd: int = -1, flags: int = PERF_FLAG_FD_CLOEXEC
) -> int:
    """Open a perf event and return its file descriptor.

    ``pid=-1, cpu>=0`` counts every process on that CPU; ``pid>0, cpu=-1`` follows one task.

    Raises:
        SysCallError: The kernel refused (errno tells why).
    """
    attr.size = ctypes.sizeof(PerfEventAttr)
    try:
        return int(
            syscall6(ARCH.nr_perf_event_open, ctypes.addressof(attr), pid, cpu, group_fd, flags)
        )
    except SysCallError as error:
        raise SysCallError(error.errno or 0, "perf_event_open") from None


def perf_event_enable(fd: int) -> None:
    fcntl.ioctl(fd, _PERF_EVENT_IOC_ENABLE, 0)


def perf_event_disable(fd: int) -> None:
    fcntl.ioctl(fd, _PERF_EVENT_IOC_DISABLE, 0)

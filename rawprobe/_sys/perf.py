"""perf_event_open(2): the ``perf_event_attr`` struct, the call itself, and the event ioctls.

Layout from include/uapi/linux/perf_event.h. rawprobe fills the struct up to ``sig_data``
(PERF_ATTR_SIZE_VER7, 128 bytes); older kernels accept a larger struct as long as the bytes they
do not know are zero, which they are here.
"""

from __future__ import annotations

import ctypes
import fcntl

from .._errors import SysCallError
from .arch import ARCH
from .libc import syscall6

__all__ = [
    "CLOCK_MONOTONIC",
    "FLAG_COMM",
    "FLAG_COMM_EXEC",
    "FLAG_DISABLED",
    "FLAG_ENABLE_ON_EXEC",
    "FLAG_EXCLUDE_CALLCHAIN_KERNEL",
    "FLAG_INHERIT",
    "FLAG_INHERIT_THREAD",
    "FLAG_MMAP",
    "FLAG_MMAP2",
    "FLAG_SAMPLE_ID_ALL",
    "FLAG_TASK",
    "FLAG_USE_CLOCKID",
    "FLAG_WATERMARK",
    "PERF_COUNT_SW_DUMMY",
    "PERF_FLAG_FD_CLOEXEC",
    "PERF_RECORD_LOST",
    "PERF_RECORD_LOST_SAMPLES",
    "PERF_RECORD_SAMPLE",
    "PERF_SAMPLE_CALLCHAIN",
    "PERF_SAMPLE_CPU",
    "PERF_SAMPLE_RAW",
    "PERF_SAMPLE_TID",
    "PERF_SAMPLE_TIME",
    "PERF_TYPE_SOFTWARE",
    "PERF_TYPE_TRACEPOINT",
    "PerfEventAttr",
    "perf_event_disable",
    "perf_event_enable",
    "perf_event_open",
    "perf_event_set_output",
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
FLAG_MMAP = 1 << 8  # PERF_RECORD_MMAP for executable mappings
FLAG_COMM = 1 << 9  # PERF_RECORD_COMM when a task's name changes
FLAG_ENABLE_ON_EXEC = 1 << 12
FLAG_TASK = 1 << 13  # PERF_RECORD_FORK and PERF_RECORD_EXIT
FLAG_WATERMARK = 1 << 14  # wake up after wakeup_watermark bytes, not wakeup_events samples
FLAG_SAMPLE_ID_ALL = 1 << 18  # every record, not only samples, ends in the sample's id fields
FLAG_EXCLUDE_CALLCHAIN_KERNEL = 1 << 21  # callchains hold the user stack only
FLAG_MMAP2 = 1 << 23  # PERF_RECORD_MMAP2: mappings with device, inode and protection
FLAG_COMM_EXEC = 1 << 24  # PERF_RECORD_COMM marks an exec (PERF_RECORD_MISC_COMM_EXEC)
FLAG_USE_CLOCKID = 1 << 25  # time samples with attr.clockid (Linux 4.1+)
FLAG_INHERIT_THREAD = 1 << 35  # inherit only into threads, not forked processes (Linux 5.13+)

PERF_FLAG_FD_CLOEXEC = 1 << 3

# enum perf_type_id, enum perf_sw_ids.
PERF_TYPE_SOFTWARE = 1
PERF_TYPE_TRACEPOINT = 2
PERF_COUNT_SW_DUMMY = 9

# enum perf_event_sample_format: what a PERF_RECORD_SAMPLE carries, in this order when set.
PERF_SAMPLE_TID = 1 << 1
PERF_SAMPLE_TIME = 1 << 2
PERF_SAMPLE_CALLCHAIN = 1 << 5
PERF_SAMPLE_CPU = 1 << 7
PERF_SAMPLE_RAW = 1 << 10

# enum perf_event_type: records in the mmap ring buffer.
PERF_RECORD_LOST = 2
PERF_RECORD_SAMPLE = 9
PERF_RECORD_LOST_SAMPLES = 13

CLOCK_MONOTONIC = 1  # include/uapi/linux/time.h

# _IO('$', 0), _IO('$', 1) and _IO('$', 5) from include/uapi/linux/perf_event.h.
_PERF_EVENT_IOC_ENABLE = 0x2400
_PERF_EVENT_IOC_DISABLE = 0x2401
_PERF_EVENT_IOC_SET_OUTPUT = 0x2405


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


def perf_event_set_output(fd: int, target_fd: int) -> None:
    """Send ``fd``'s records to the ring buffer mapped on ``target_fd`` (same CPU, same clock).

    Raises:
        OSError: The kernel refused (kernel/events/core.c, perf_event_set_output()).
    """
    fcntl.ioctl(fd, _PERF_EVENT_IOC_SET_OUTPUT, target_fd)

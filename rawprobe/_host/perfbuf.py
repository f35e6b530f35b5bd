"""perf ring buffers: record framing on plain bytes, and the mmap that holds them.

A perf event's ring buffer (include/uapi/linux/perf_event.h, kernel/events/ring_buffer.c) is
mapped as 1 + 2^n pages: a header page (``struct perf_event_mmap_page``) and the data area.
The kernel writes records at ``data_head`` and publishes the new head only once a record is
complete (perf_output_put_handle(), after an ``smp_wmb()``); the reader copies from
``data_tail`` up to the head and then stores the new tail, which hands the space back. Both are
ever-increasing byte counts; positions in the data area are taken modulo its size, so a record
may wrap around the end (the area is not mapped twice, unlike a BPF ring buffer).

Memory ordering: the reader must load the head before the data (``smp_rmb()``) and finish
reading the data before it stores the tail (``smp_mb()``). Here the head is one load of an
aligned 64-bit word, the data is copied out right after, and the tail is stored after the copy;
on x86-64 (TSO) loads are not reordered with loads nor stores with earlier loads, which gives
exactly those orders. Python has no barrier instruction to offer weaker architectures; the
interpreter's own work between the steps is not a guarantee there.

Each record starts with ``struct perf_event_header`` (``u32 type; u16 misc; u16 size``), size
included. rawprobe asks for samples of ``PERF_SAMPLE_TID | PERF_SAMPLE_TIME | PERF_SAMPLE_CPU |
PERF_SAMPLE_RAW``, laid out in that order: ``u32 pid, tid; u64 time; u32 cpu, res; u32 size;
char data[size]``. When the buffer is full the kernel drops samples and later writes a
``PERF_RECORD_LOST`` (``u64 id; u64 lost``) saying how many.
"""

from __future__ import annotations

import mmap
import struct
import weakref

from .._errors import ClosedError
from .._sys.perf import PERF_RECORD_LOST, PERF_RECORD_LOST_SAMPLES, PERF_RECORD_SAMPLE

__all__ = [
    "PERF_RECORD_EXIT",
    "PERF_RECORD_FORK",
    "RECORD_HEADER",
    "SAMPLE_FIELDS",
    "SAMPLE_RAW_OFFSET",
    "PerfBuffer",
    "buffer_size",
    "split_perf_records",
    "task_records",
]

# enum perf_event_type: a process forked or exited (u32 pid, ppid, tid, ptid; u64 time).
PERF_RECORD_EXIT = 4
PERF_RECORD_FORK = 7
_TASK = struct.Struct("<IIIIQ")

_HEADER = struct.Struct("<IHH")
RECORD_HEADER = _HEADER  # struct perf_event_header: u32 type, u16 misc, u16 size
_U64 = struct.Struct("<Q")
# The sample body after the header: pid, tid, time, cpu, res, raw size.
SAMPLE_FIELDS = struct.Struct("<IIQIII")
SAMPLE_RAW_OFFSET = 8 + SAMPLE_FIELDS.size  # where the raw data (the trace entry) starts
# offsetof(struct perf_event_mmap_page, data_head) and data_tail: 1024 bytes of fields and
# reserved space come first, so the positions sit on their own cache line.
_DATA_HEAD = 1024
_DATA_TAIL = 1032


def split_perf_records(chunk: bytes | memoryview) -> tuple[list[int], int, int]:
    """Frame the records in ``chunk``, which starts at the tail position.

    Args:
        chunk: Bytes copied from the tail up to the head (wrap-around already undone).

    Returns:
        ``(samples, lost, consumed)``: the offset of each PERF_RECORD_SAMPLE in ``chunk`` (at its
        header), the samples the kernel reported lost, and how many bytes the records take (the
        tail may advance that far). A record that is truncated or malformed ends the framing.
    """
    samples: list[int] = []
    lost = 0
    unpack = _HEADER.unpack_from
    end = len(chunk)
    position = 0
    while position + 8 <= end:
        record_type, _misc, size = unpack(chunk, position)
        if size < 8 or position + size > end:
            break
        if record_type == PERF_RECORD_SAMPLE:
            samples.append(position)
        elif record_type == PERF_RECORD_LOST and size >= 24:
            lost += _U64.unpack_from(chunk, position + 16)[0]
        elif record_type == PERF_RECORD_LOST_SAMPLES and size >= 16:
            lost += _U64.unpack_from(chunk, position + 8)[0]
        position += size
    return samples, lost, position


def task_records(chunk: bytes | memoryview, end: int) -> list[tuple[int, bool, int, int]]:
    """The fork and exit records of processes (not threads) among the first ``end`` bytes of
    ``chunk``: ``(time, forked, pid, parent pid)`` each, in order."""
    found: list[tuple[int, bool, int, int]] = []
    position = 0
    while position + 8 <= end:
        record_type, _misc, size = _HEADER.unpack_from(chunk, position)
        if size < 8 or position + size > end:
            break
        if record_type in (PERF_RECORD_FORK, PERF_RECORD_EXIT) and size >= 8 + _TASK.size:
            pid, ppid, tid, _ptid, time = _TASK.unpack_from(chunk, position + 8)
            if pid == tid:
                found.append((time, record_type == PERF_RECORD_FORK, pid, ppid))
        position += size
    return found


class PerfBuffer:
    """The mapped ring buffer of one perf event (others may send theirs to it).

    Args:
        fd: The perf event's descriptor.
        data_size: Bytes of the data area: a power of two number of pages.

    Raises:
        OSError: mmap refused (EPERM: over ``perf_event_mlock_kb``; ENOMEM).
    """

    def __init__(self, fd: int, data_size: int) -> None:
        page = mmap.PAGESIZE
        if data_size < page or data_size & (data_size - 1):
            raise ValueError(f"{data_size} is not a power-of-two number of pages")
        self.data_size = data_size
        self._mask = data_size - 1
        self._page = page
        # Writable: the kernel then honours data_tail and never overwrites unread records.
        self._map = mmap.mmap(fd, page + data_size, mmap.MAP_SHARED,
                              mmap.PROT_READ | mmap.PROT_WRITE)
        self._finalizer = weakref.finalize(self, self._map.close)

    def pending(self) -> int:
        """Bytes written and not yet consumed."""
        if self._map.closed:
            raise ClosedError("perf buffer is closed")
        head = _U64.unpack_from(self._map, _DATA_HEAD)[0]
        tail = _U64.unpack_from(self._map, _DATA_TAIL)[0]
        return int(head - tail)

    def read(self) -> bytes:
        """Copy out every complete record from the tail to the head (wrap-around undone).

        The caller hands the space back with :meth:`consume`.
        """
        memory = self._map
        head = _U64.unpack_from(memory, _DATA_HEAD)[0]
        tail = _U64.unpack_from(memory, _DATA_TAIL)[0]
        length = head - tail
        if length <= 0:
            return b""
        start = self._page + (tail & self._mask)
        first = min(length, self.data_size - (tail & self._mask))
        if first == length:
            return memory[start : start + length]
        return memory[start : start + first] + memory[self._page : self._page + length - first]

    def consume(self, count: int) -> None:
        """Advance the tail by ``count`` bytes."""
        if count:
            tail = _U64.unpack_from(self._map, _DATA_TAIL)[0]
            _U64.pack_into(self._map, _DATA_TAIL, tail + count)

    def close(self) -> None:
        self._finalizer()


_MIN_BUFFER = 64 << 10


def buffer_size(ring_size: int, cpus: int) -> int:
    """Bytes of each CPU's data area: the ring size shared out, a power of two of pages."""
    page = mmap.PAGESIZE
    share = max(ring_size // max(cpus, 1), _MIN_BUFFER, page)
    size = page
    while size * 2 <= share:
        size *= 2
    return size

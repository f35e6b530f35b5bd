"""The executable mappings of every process, from the kernel's own records, as perf keeps them.

A stack is a list of addresses; to name the functions they are in, rawprobe needs the mappings
of the process they were taken in, and a process that has exited has none left in
``/proc/PID/maps`` (a short command traced with ``--stack`` is gone by the time its stacks are
read). So, like ``perf record``, rawprobe asks the kernel to report every executable mapping
as it is made: a dummy software event per CPU with ``mmap2``, ``task`` and ``comm`` set
writes a PERF_RECORD_MMAP2 for each new executable mapping (address, length, file offset,
device, inode, path), a PERF_RECORD_FORK for each new process (which starts with its parent's
mappings) and a PERF_RECORD_COMM with the exec flag when a process execs (its mappings start
afresh) (include/uapi/linux/perf_event.h). The records outlive the process; rawprobe reads
them while it runs.
"""

from __future__ import annotations

import contextlib
import os
import struct

from .._sys.limits import open_perf_event
from .._sys.perf import (
    CLOCK_MONOTONIC,
    FLAG_COMM,
    FLAG_COMM_EXEC,
    FLAG_MMAP,
    FLAG_MMAP2,
    FLAG_SAMPLE_ID_ALL,
    FLAG_TASK,
    FLAG_USE_CLOCKID,
    PERF_COUNT_SW_DUMMY,
    PERF_SAMPLE_TID,
    PERF_SAMPLE_TIME,
    PERF_TYPE_SOFTWARE,
    PerfEventAttr,
)
from .perfbuf import RECORD_HEADER, PerfBuffer
from .procmaps import Mapping

__all__ = ["MappingWatcher", "parse_mapping_records"]

# enum perf_event_type
_RECORD_EXIT = 4
_RECORD_COMM = 3
_RECORD_FORK = 7
_RECORD_MMAP2 = 10
_MISC_COMM_EXEC = 1 << 13
_MISC_MMAP_BUILD_ID = 1 << 14

# PERF_RECORD_MMAP2: pid, tid, addr, len, pgoff, maj, min, ino, ino_generation, prot, flags,
# then the file name, NUL-terminated and padded; then sample_id (pid, tid, time).
_MMAP2 = struct.Struct("<IIQQQIIQQII")
_FORK = struct.Struct("<IIIIQ")  # pid, ppid, tid, ptid, time
_SAMPLE_ID = struct.Struct("<IIQ")  # sample_id_all with PERF_SAMPLE_TID | PERF_SAMPLE_TIME
_BUFFER_SIZE = 64 << 10


def parse_mapping_records(chunk: bytes) -> tuple[list[tuple[int, str, tuple[object, ...]]], int]:
    """The mapping-related records in ``chunk`` (perf ring framing), in their order.

    Returns:
        ``([(time, kind, fields)], consumed)``: kind is ``mmap`` (pid, Mapping), ``fork``
        (pid, parent pid), ``exec`` (pid,) or ``exit`` (pid,); and how many bytes the
        records take.
    """
    records: list[tuple[int, str, tuple[object, ...]]] = []
    position, end = 0, len(chunk)
    while position + RECORD_HEADER.size <= end:
        kind, misc, size = RECORD_HEADER.unpack_from(chunk, position)
        if size < RECORD_HEADER.size or position + size > end:
            break
        body = position + RECORD_HEADER.size
        time = _SAMPLE_ID.unpack_from(chunk, position + size - _SAMPLE_ID.size)[2] \
            if size >= RECORD_HEADER.size + _SAMPLE_ID.size else 0
        if kind == _RECORD_MMAP2 and size >= RECORD_HEADER.size + _MMAP2.size:
            (pid, _tid, address, length, offset, major, minor, inode, _gen, _prot,
             _flags) = _MMAP2.unpack_from(chunk, body)
            name_at = body + _MMAP2.size
            name_end = chunk.find(b"\0", name_at, position + size)
            path = chunk[name_at:name_end if name_end >= 0 else position + size]
            if misc & _MISC_MMAP_BUILD_ID:
                major = minor = inode = 0
            device = f"{major:02x}:{minor:02x}"
            records.append((time, "mmap", (pid, Mapping(address, address + length, offset,
                                                        device, inode,
                                                        os.fsdecode(path)))))
        elif kind in (_RECORD_FORK, _RECORD_EXIT) and size >= RECORD_HEADER.size + _FORK.size:
            pid, ppid, tid, _ptid, time = _FORK.unpack_from(chunk, body)
            if pid == tid:  # a process, not a thread
                if kind == _RECORD_FORK:
                    records.append((time, "fork", (pid, ppid)))
                else:
                    records.append((time, "exit", (pid,)))
        elif kind == _RECORD_COMM and misc & _MISC_COMM_EXEC:
            pid = struct.unpack_from("<I", chunk, body)[0]
            records.append((time, "exec", (pid,)))
        position += size
    return records, position


class MappingWatcher:
    """Records the executable mappings every process makes from now on, per CPU.

    Args:
        cpus: The CPUs to watch (all online ones).

    Raises:
        SysCallError, PrivilegeError: perf_event_open refused (the caller goes without).
    """

    def __init__(self, cpus: list[int]) -> None:
        self._buffers: list[tuple[int, PerfBuffer]] = []
        self._maps: dict[int, list[Mapping]] = {}
        try:
            for cpu in cpus:
                attr = PerfEventAttr()
                attr.type = PERF_TYPE_SOFTWARE
                attr.config = PERF_COUNT_SW_DUMMY
                attr.sample_type = PERF_SAMPLE_TID | PERF_SAMPLE_TIME
                attr.flags = (FLAG_MMAP | FLAG_MMAP2 | FLAG_COMM | FLAG_COMM_EXEC | FLAG_TASK
                              | FLAG_SAMPLE_ID_ALL | FLAG_USE_CLOCKID)
                attr.clockid = CLOCK_MONOTONIC
                fd = open_perf_event(attr, -1, cpu, "a mapping watcher")
                try:
                    self._buffers.append((fd, PerfBuffer(fd, _BUFFER_SIZE)))
                except BaseException:
                    os.close(fd)
                    raise
        except BaseException:
            self.close()
            raise

    def poll(self) -> None:
        """Take in every record the kernel wrote since the last call."""
        records: list[tuple[int, str, tuple[object, ...]]] = []
        for _fd, buffer in self._buffers:
            chunk = buffer.read()
            if chunk:
                found, consumed = parse_mapping_records(chunk)
                records += found
                buffer.consume(consumed)
        records.sort(key=lambda record: record[0])
        maps = self._maps
        for _time, kind, fields in records:
            pid = fields[0]
            assert isinstance(pid, int)
            if kind == "mmap":
                mapping = fields[1]
                assert isinstance(mapping, Mapping)
                maps.setdefault(pid, []).append(mapping)
            elif kind == "fork":
                parent = fields[1]
                assert isinstance(parent, int)
                maps[pid] = list(maps.get(parent, ()))
            elif kind == "exec":
                maps[pid] = []

    def mappings(self, pid: int) -> list[Mapping] | None:
        """The mappings ``pid`` made while watched (its address space as the kernel reported
        it, later mappings over earlier ones), or None when it made none."""
        found = self._maps.get(pid)
        return list(found) if found else None

    def close(self) -> None:
        buffers, self._buffers = self._buffers, []
        for fd, buffer in buffers:
            buffer.close()
            with contextlib.suppress(OSError):
                os.close(fd)

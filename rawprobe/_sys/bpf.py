"""The bpf(2) system call, for what the libbpf rawprobe runs with cannot do or is not needed
for: uprobe_multi links, listing links and the programs attached to perf events (``rawprobe
probes``), and small feature probes (``rawprobe doctor``).

Layouts from include/uapi/linux/bpf.h (``union bpf_attr``, ``struct bpf_link_info``,
``struct bpf_prog_info``), declared as :class:`ctypes.Structure` classes whose offsets a test
checks against the header. Attributes are built in a zeroed buffer of this kernel generation's
``sizeof(union bpf_attr)``; an older kernel accepts a larger buffer as long as the bytes it does
not know are zero (kernel/bpf/syscall.c, bpf_check_uarg_tail_zero()), and they are unless a
newer field is used -- which then fails with E2BIG, itself an answer to a feature probe.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from collections.abc import Iterator, Sequence

from .._errors import SysCallError
from .._values import Record
from .arch import ARCH
from .libc import syscall6

__all__ = [
    "BPF_FD_TYPE_UPROBE",
    "BPF_FD_TYPE_URETPROBE",
    "BPF_F_UPROBE_MULTI_RETURN",
    "BPF_LINK_TYPE_PERF_EVENT",
    "BPF_LINK_TYPE_UPROBE_MULTI",
    "BPF_MAP_TYPE_RINGBUF",
    "BPF_PERF_EVENT_UPROBE",
    "BPF_PERF_EVENT_URETPROBE",
    "BPF_PROG_TYPE_KPROBE",
    "BPF_TRACE_UPROBE_MULTI",
    "LinkInfo",
    "TaskFdInfo",
    "link_create_uprobe_multi",
    "link_ids",
    "link_info",
    "map_create",
    "open_link",
    "open_prog",
    "prog_load",
    "prog_name",
    "task_fd_query",
]

_setattr = object.__setattr__  # the records set their fields once, in __init__

# enum bpf_cmd
_MAP_CREATE = 0
_PROG_LOAD = 5
_PROG_GET_FD_BY_ID = 13
_OBJ_GET_INFO_BY_FD = 15
_TASK_FD_QUERY = 20
_LINK_CREATE = 28
_LINK_GET_FD_BY_ID = 30
_LINK_GET_NEXT_ID = 31
_NAMES = {
    _MAP_CREATE: "BPF_MAP_CREATE", _PROG_LOAD: "BPF_PROG_LOAD",
    _PROG_GET_FD_BY_ID: "BPF_PROG_GET_FD_BY_ID", _OBJ_GET_INFO_BY_FD: "BPF_OBJ_GET_INFO_BY_FD",
    _TASK_FD_QUERY: "BPF_TASK_FD_QUERY", _LINK_CREATE: "BPF_LINK_CREATE",
    _LINK_GET_FD_BY_ID: "BPF_LINK_GET_FD_BY_ID", _LINK_GET_NEXT_ID: "BPF_LINK_GET_NEXT_ID",
}

BPF_MAP_TYPE_RINGBUF = 27
BPF_PROG_TYPE_KPROBE = 2  # uprobe programs are of the kprobe type
BPF_TRACE_UPROBE_MULTI = 48  # enum bpf_attach_type
BPF_LINK_TYPE_PERF_EVENT = 7  # enum bpf_link_type
BPF_LINK_TYPE_UPROBE_MULTI = 12
BPF_PERF_EVENT_UPROBE = 1  # enum bpf_perf_event_type
BPF_PERF_EVENT_URETPROBE = 2
BPF_FD_TYPE_UPROBE = 4  # enum bpf_task_fd_type
BPF_FD_TYPE_URETPROBE = 5
BPF_F_UPROBE_MULTI_RETURN = 1

_ATTR_SIZE = 168  # sizeof(union bpf_attr), Linux 6.x: every command's attributes fit in it
_PATH_MAX = 4096

_u32, _u64, _s32 = ctypes.c_uint32, ctypes.c_uint64, ctypes.c_int32


# The members of union bpf_attr and of the info structs, as include/uapi/linux/bpf.h declares
# them; tests/test_sys_bpf.py checks every offset against the header with offsetof().
class GetIdAttr(ctypes.Structure):
    """``union bpf_attr`` for BPF_*_GET_NEXT_ID and BPF_*_GET_FD_BY_ID."""

    _fields_ = [("start_id", _u32), ("next_id", _u32), ("open_flags", _u32)]


class InfoAttr(ctypes.Structure):
    """``union bpf_attr.info``, for BPF_OBJ_GET_INFO_BY_FD."""

    _fields_ = [("bpf_fd", _u32), ("info_len", _u32), ("info", _u64)]


class TaskFdQueryAttr(ctypes.Structure):
    """``union bpf_attr.task_fd_query``."""

    _fields_ = [("pid", _u32), ("fd", _u32), ("flags", _u32), ("buf_len", _u32),
                ("buf", _u64), ("prog_id", _u32), ("fd_type", _u32), ("probe_offset", _u64),
                ("probe_addr", _u64)]


class MapCreateAttr(ctypes.Structure):
    """The start of ``union bpf_attr`` for BPF_MAP_CREATE."""

    _fields_ = [("map_type", _u32), ("key_size", _u32), ("value_size", _u32),
                ("max_entries", _u32), ("map_flags", _u32)]


class ProgLoadAttr(ctypes.Structure):
    """The start of ``union bpf_attr`` for BPF_PROG_LOAD."""

    _fields_ = [("prog_type", _u32), ("insn_cnt", _u32), ("insns", _u64), ("license", _u64),
                ("log_level", _u32), ("log_size", _u32), ("log_buf", _u64),
                ("kern_version", _u32), ("prog_flags", _u32), ("prog_name", ctypes.c_char * 16),
                ("prog_ifindex", _u32), ("expected_attach_type", _u32)]


class UprobeMultiLinkAttr(ctypes.Structure):
    """``union bpf_attr.link_create`` with its ``uprobe_multi`` member (Linux 6.6+)."""

    _fields_ = [("prog_fd", _u32), ("target_fd", _u32), ("attach_type", _u32), ("flags", _u32),
                ("path", _u64), ("offsets", _u64), ("ref_ctr_offsets", _u64), ("cookies", _u64),
                ("cnt", _u32), ("uprobe_flags", _u32), ("pid", _u32)]


class LinkInfoHead(ctypes.Structure):
    """``struct bpf_link_info`` up to where the union begins."""

    _fields_ = [("type", _u32), ("id", _u32), ("prog_id", _u32)]


class PerfEventUprobeInfo(ctypes.Structure):
    """``struct bpf_link_info`` with its ``perf_event.uprobe`` member."""

    _fields_ = [("type", _u32), ("id", _u32), ("prog_id", _u32), ("_pad", _u32),
                ("perf_event_type", _u32), ("_pad2", _u32), ("file_name", _u64),
                ("name_len", _u32), ("offset", _u32), ("cookie", _u64), ("ref_ctr_offset", _u64)]


class UprobeMultiInfo(ctypes.Structure):
    """``struct bpf_link_info`` with its ``uprobe_multi`` member (Linux 6.8+)."""

    _fields_ = [("type", _u32), ("id", _u32), ("prog_id", _u32), ("_pad", _u32),
                ("path", _u64), ("offsets", _u64), ("ref_ctr_offsets", _u64), ("cookies", _u64),
                ("path_size", _u32), ("count", _u32), ("flags", _u32), ("pid", _u32)]


class ProgInfo(ctypes.Structure):
    """``struct bpf_prog_info`` up to its name (what rawprobe reads of it)."""

    _fields_ = [("type", _u32), ("id", _u32), ("tag", ctypes.c_uint8 * 8), ("jited_prog_len", _u32),
                ("xlated_prog_len", _u32), ("jited_prog_insns", _u64),
                ("xlated_prog_insns", _u64), ("load_time", _u64), ("created_by_uid", _u32),
                ("nr_map_ids", _u32), ("map_ids", _u64), ("name", ctypes.c_char * 16)]


_LINK_INFO_SIZE = 64  # sizeof(struct bpf_link_info)
_PROG_INFO_SIZE = 232  # sizeof(struct bpf_prog_info)

TYPE_CHECKING = False  # mypy treats this name as True; at run time it spares importing typing.
if TYPE_CHECKING:
    from typing import TypeVar

    _S = TypeVar("_S", bound=ctypes.Structure)


def _attr(kind: type[_S], **values: int) -> tuple[ctypes.Array[ctypes.c_char], _S]:
    """A zeroed ``union bpf_attr`` (its full size: a kernel reads the bytes it knows and wants
    the rest zero) seen as ``kind``, with ``values`` set."""
    buffer = ctypes.create_string_buffer(max(_ATTR_SIZE, ctypes.sizeof(kind)))
    view = kind.from_buffer(buffer)
    for name, value in values.items():
        setattr(view, name, value)
    return buffer, view


def _bpf(command: int, attr: ctypes.Array[ctypes.c_char]) -> int:
    """bpf(command, attr, sizeof attr); the result, or SysCallError naming the command."""
    try:
        return int(syscall6(ARCH.nr_bpf, command, ctypes.addressof(attr), len(attr), 0, 0))
    except SysCallError as error:
        raise SysCallError(error.errno or 0, f"bpf({_NAMES[command]})") from None


def link_ids() -> Iterator[int]:
    """Every BPF link id on the host, in increasing order (BPF_LINK_GET_NEXT_ID, Linux 5.8+)."""
    start = 0
    while True:
        buffer, attr = _attr(GetIdAttr, start_id=start)
        try:
            _bpf(_LINK_GET_NEXT_ID, buffer)
        except SysCallError as error:
            if error.errno == errno.ENOENT:
                return
            raise
        start = attr.next_id
        yield start


def open_link(link_id: int) -> int:
    """A descriptor for the link (BPF_LINK_GET_FD_BY_ID); the caller closes it.

    Raises:
        SysCallError: ENOENT when the link is gone meanwhile.
    """
    return _bpf(_LINK_GET_FD_BY_ID, _attr(GetIdAttr, start_id=link_id)[0])


def open_prog(prog_id: int) -> int:
    """A descriptor for the program (BPF_PROG_GET_FD_BY_ID); the caller closes it."""
    return _bpf(_PROG_GET_FD_BY_ID, _attr(GetIdAttr, start_id=prog_id)[0])


def _info(fd: int, info: ctypes.Array[ctypes.c_char]) -> None:
    _bpf(_OBJ_GET_INFO_BY_FD, _attr(InfoAttr, bpf_fd=fd, info_len=len(info),
                                    info=ctypes.addressof(info))[0])


class LinkInfo(Record):
    """What the kernel says about a BPF link.

    Attributes:
        type: ``enum bpf_link_type`` (7: perf event, 12: uprobe_multi).
        id: The link id.
        prog_id: The attached program's id.
        uprobes: For a uprobe link, each attachment as ``(path, file_offset, retprobe,
            cookie, ref_ctr_offset)``; empty for other links, and for perf-event links on
            kernels before 6.6, which report no details.
        pid: A uprobe_multi link's process filter (0: none).
    """

    __slots__ = ("id", "pid", "prog_id", "type", "uprobes")

    type: int
    id: int
    prog_id: int
    uprobes: tuple[tuple[str, int, bool, int, int], ...]
    pid: int

    def __init__(self, type: int, id: int, prog_id: int,
                 uprobes: tuple[tuple[str, int, bool, int, int], ...] = (), pid: int = 0) -> None:
        _setattr(self, "type", type)
        _setattr(self, "id", id)
        _setattr(self, "prog_id", prog_id)
        _setattr(self, "uprobes", uprobes)
        _setattr(self, "pid", pid)


def _info_of(fd: int, kind: type[_S], **values: int) -> _S:
    buffer = ctypes.create_string_buffer(_LINK_INFO_SIZE)
    view = kind.from_buffer(buffer)
    for name, value in values.items():
        setattr(view, name, value)
    _info(fd, buffer)
    return view


def link_info(fd: int) -> LinkInfo:
    """Describe a link (BPF_OBJ_GET_INFO_BY_FD), uprobe details included.

    The first call asks for nothing but the fixed part: its type says which union member may
    carry buffers (a pointer written into another member would be misread). The second call
    passes buffers for the path, offsets, cookies.

    Raises:
        SysCallError: The kernel refused.
    """
    head = _info_of(fd, LinkInfoHead)
    link_type, link_id, prog_id = head.type, head.id, head.prog_id
    if link_type == BPF_LINK_TYPE_PERF_EVENT:
        probe = _info_of(fd, PerfEventUprobeInfo)
        if probe.perf_event_type not in (BPF_PERF_EVENT_UPROBE, BPF_PERF_EVENT_URETPROBE):
            return LinkInfo(link_type, link_id, prog_id)
        name = ctypes.create_string_buffer(_PATH_MAX)
        probe = _info_of(fd, PerfEventUprobeInfo, file_name=ctypes.addressof(name),
                         name_len=len(name))
        path = name.value.decode(errors="replace")
        retprobe = probe.perf_event_type == BPF_PERF_EVENT_URETPROBE
        return LinkInfo(link_type, link_id, prog_id, ((path, probe.offset, retprobe,
                                                       probe.cookie, probe.ref_ctr_offset),))
    if link_type == BPF_LINK_TYPE_UPROBE_MULTI:
        count = _info_of(fd, UprobeMultiInfo).count
        name = ctypes.create_string_buffer(_PATH_MAX)
        arrays = [(_u64 * max(count, 1))() for _ in range(3)]
        multi = _info_of(fd, UprobeMultiInfo, path=ctypes.addressof(name),
                         offsets=ctypes.addressof(arrays[0]),
                         ref_ctr_offsets=ctypes.addressof(arrays[1]),
                         cookies=ctypes.addressof(arrays[2]), path_size=len(name), count=count)
        count = min(count, multi.count)
        path = name.value.decode(errors="replace")
        offsets, ref_ctrs, cookies = (list(array[:count]) for array in arrays)
        retprobe = bool(multi.flags & BPF_F_UPROBE_MULTI_RETURN)
        return LinkInfo(link_type, link_id, prog_id, tuple(
            (path, offsets[i], retprobe, cookies[i], ref_ctrs[i]) for i in range(count)
        ), multi.pid)
    return LinkInfo(link_type, link_id, prog_id)


def prog_name(fd: int) -> str:
    """A program's name (``struct bpf_prog_info.name``)."""
    buffer = ctypes.create_string_buffer(_PROG_INFO_SIZE)
    _info(fd, buffer)
    name: bytes = ProgInfo.from_buffer(buffer).name
    return name.decode(errors="replace")


class TaskFdInfo(Record):
    """What BPF_TASK_FD_QUERY says about a perf event descriptor with a BPF program attached.

    Attributes:
        prog_id: The program's id.
        fd_type: ``enum bpf_task_fd_type`` (4: uprobe, 5: uretprobe).
        name: The probed file (uprobes) or the tracepoint's name.
        probe_offset: The file offset (uprobes).
    """

    __slots__ = ("fd_type", "name", "probe_offset", "prog_id")

    prog_id: int
    fd_type: int
    name: str
    probe_offset: int

    def __init__(self, prog_id: int, fd_type: int, name: str, probe_offset: int) -> None:
        _setattr(self, "prog_id", prog_id)
        _setattr(self, "fd_type", fd_type)
        _setattr(self, "name", name)
        _setattr(self, "probe_offset", probe_offset)


def task_fd_query(pid: int, fd: int) -> TaskFdInfo:
    """Ask what program the perf event ``fd`` of process ``pid`` runs, and where it is.

    Raises:
        SysCallError: ENOENT when no BPF program is attached to it (or it is no perf event),
            EBADF/ESRCH when it is gone.
    """
    name = ctypes.create_string_buffer(_PATH_MAX)
    buffer, attr = _attr(TaskFdQueryAttr, pid=pid, fd=fd, buf_len=len(name),
                         buf=ctypes.addressof(name))
    _bpf(_TASK_FD_QUERY, buffer)
    return TaskFdInfo(attr.prog_id, attr.fd_type, name.value.decode(errors="replace"),
                      attr.probe_offset)


def map_create(map_type: int, key_size: int, value_size: int, max_entries: int) -> int:
    """Create a map and return its descriptor (for feature probes)."""
    return _bpf(_MAP_CREATE, _attr(MapCreateAttr, map_type=map_type, key_size=key_size,
                                   value_size=value_size, max_entries=max_entries)[0])


def prog_load(
    prog_type: int, instructions: Sequence[bytes], expected_attach_type: int = 0
) -> int:
    """Load a program of raw 8-byte instructions (for feature probes); the verifier's verdict
    is the answer.

    Raises:
        SysCallError: The verifier or the kernel refused (EINVAL: unknown helper or type).
    """
    code = ctypes.create_string_buffer(b"".join(instructions))
    license_text = ctypes.create_string_buffer(b"GPL")
    return _bpf(_PROG_LOAD, _attr(
        ProgLoadAttr, prog_type=prog_type, insn_cnt=len(instructions),
        insns=ctypes.addressof(code), license=ctypes.addressof(license_text),
        expected_attach_type=expected_attach_type)[0])


def _u64_array(values: Sequence[int]) -> ctypes.Array[ctypes.c_char]:
    return ctypes.create_string_buffer(struct.pack(f"<{len(values)}Q", *values))


def link_create_uprobe_multi(
    prog_fd: int,
    path: str,
    offsets: Sequence[int],
    *,
    cookies: Sequence[int] | None = None,
    ref_ctr_offsets: Sequence[int] | None = None,
    retprobe: bool = False,
    pid: int = 0,
) -> int:
    """Attach a program to uprobes at ``offsets`` of ``path`` with one uprobe_multi link
    (Linux 6.6+); returns the link's descriptor, which owns every one of them.

    Args:
        prog_fd: A program loaded with expected_attach_type BPF_TRACE_UPROBE_MULTI.
        path: The file.
        offsets: File offsets, one uprobe each.
        cookies: A BPF cookie per offset.
        ref_ctr_offsets: A semaphore file offset per offset (0: none).
        retprobe: Return probes (uretprobes) instead of entry probes.
        pid: Only in this process (0: every process).
    """
    path_buffer = ctypes.create_string_buffer(os.fsencode(path))
    keep = [path_buffer, _u64_array(offsets)]
    buffer, attr = _attr(UprobeMultiLinkAttr, prog_fd=prog_fd,
                         attach_type=BPF_TRACE_UPROBE_MULTI,
                         path=ctypes.addressof(path_buffer),
                         offsets=ctypes.addressof(keep[1]), cnt=len(offsets),
                         uprobe_flags=BPF_F_UPROBE_MULTI_RETURN if retprobe else 0, pid=pid)
    if ref_ctr_offsets is not None and any(ref_ctr_offsets):
        keep.append(_u64_array(ref_ctr_offsets))
        attr.ref_ctr_offsets = ctypes.addressof(keep[-1])
    if cookies is not None:
        keep.append(_u64_array(cookies))
        attr.cookies = ctypes.addressof(keep[-1])
    return _bpf(_LINK_CREATE, buffer)

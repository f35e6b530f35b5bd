"""The bpf(2) system call, for what the libbpf rawprobe runs with cannot do or is not needed
for: uprobe_multi links, listing links and the programs attached to perf events (``rawprobe
probes``), and small feature probes (``rawprobe doctor``).

Layouts from include/uapi/linux/bpf.h (``union bpf_attr``, ``struct bpf_link_info``,
``struct bpf_prog_info``). Attributes are built in a zeroed buffer of this kernel generation's
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

_ATTR_SIZE = 168  # sizeof(union bpf_attr), Linux 6.x
_LINK_INFO_SIZE = 64  # sizeof(struct bpf_link_info)
_PROG_INFO_SIZE = 232  # sizeof(struct bpf_prog_info)
_PATH_MAX = 4096


def _bpf(command: int, attr: ctypes.Array[ctypes.c_char]) -> int:
    """bpf(command, attr, sizeof attr); the result, or SysCallError naming the command."""
    try:
        return int(syscall6(ARCH.nr_bpf, command, ctypes.addressof(attr), len(attr), 0, 0))
    except SysCallError as error:
        raise SysCallError(error.errno or 0, f"bpf({_NAMES[command]})") from None


def _attr(**fields: tuple[int, str, int]) -> ctypes.Array[ctypes.c_char]:
    """A zeroed ``union bpf_attr`` with ``name=(offset, struct format, value)`` filled in."""
    attr = ctypes.create_string_buffer(_ATTR_SIZE)
    for offset, fmt, value in fields.values():
        struct.pack_into("<" + fmt, attr, offset, value)
    return attr


def link_ids() -> Iterator[int]:
    """Every BPF link id on the host, in increasing order (BPF_LINK_GET_NEXT_ID, Linux 5.8+)."""
    start = 0
    while True:
        attr = _attr(start_id=(0, "I", start))
        try:
            _bpf(_LINK_GET_NEXT_ID, attr)
        except SysCallError as error:
            if error.errno == errno.ENOENT:
                return
            raise
        start = struct.unpack_from("<I", attr, 4)[0]  # next_id
        yield start


def open_link(link_id: int) -> int:
    """A descriptor for the link (BPF_LINK_GET_FD_BY_ID); the caller closes it.

    Raises:
        SysCallError: ENOENT when the link is gone meanwhile.
    """
    return _bpf(_LINK_GET_FD_BY_ID, _attr(link_id=(0, "I", link_id)))


def open_prog(prog_id: int) -> int:
    """A descriptor for the program (BPF_PROG_GET_FD_BY_ID); the caller closes it."""
    return _bpf(_PROG_GET_FD_BY_ID, _attr(prog_id=(0, "I", prog_id)))


def _info(fd: int, info: ctypes.Array[ctypes.c_char]) -> None:
    _bpf(_OBJ_GET_INFO_BY_FD, _attr(bpf_fd=(0, "I", fd), info_len=(4, "I", len(info)),
                                    info=(8, "Q", ctypes.addressof(info))))


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


def link_info(fd: int) -> LinkInfo:
    """Describe a link (BPF_OBJ_GET_INFO_BY_FD), uprobe details included.

    The first call asks for nothing but the fixed part: its type says which union member may
    carry buffers (a pointer written into another member would be misread). The second call
    passes buffers for the path, offsets, cookies.

    Raises:
        SysCallError: The kernel refused.
    """
    info = ctypes.create_string_buffer(_LINK_INFO_SIZE)
    _info(fd, info)
    link_type, link_id, prog_id = struct.unpack_from("<III", info, 0)
    if link_type == BPF_LINK_TYPE_PERF_EVENT:
        perf_type = struct.unpack_from("<I", info, 16)[0]
        if perf_type not in (BPF_PERF_EVENT_UPROBE, BPF_PERF_EVENT_URETPROBE):
            return LinkInfo(link_type, link_id, prog_id)
        name = ctypes.create_string_buffer(_PATH_MAX)
        info = ctypes.create_string_buffer(_LINK_INFO_SIZE)
        # perf_event.uprobe: u64 file_name @24, u32 name_len @32, u32 offset @36,
        # u64 cookie @40 (6.9+), u64 ref_ctr_offset @48 (6.15+).
        struct.pack_into("<QI", info, 24, ctypes.addressof(name), len(name))
        _info(fd, info)
        offset, cookie, ref_ctr = struct.unpack_from("<I4xQQ", info, 36)
        path = name.value.decode(errors="replace")
        retprobe = struct.unpack_from("<I", info, 16)[0] == BPF_PERF_EVENT_URETPROBE
        return LinkInfo(link_type, link_id, prog_id, ((path, offset, retprobe, cookie, ref_ctr),))
    if link_type == BPF_LINK_TYPE_UPROBE_MULTI:
        # uprobe_multi: u64 path @16, offsets @24, ref_ctr_offsets @32, cookies @40,
        # u32 path_size @48, count @52, flags @56, pid @60.
        count = struct.unpack_from("<I", info, 52)[0]
        name = ctypes.create_string_buffer(_PATH_MAX)
        arrays = [ctypes.create_string_buffer(8 * max(count, 1)) for _ in range(3)]
        info = ctypes.create_string_buffer(_LINK_INFO_SIZE)
        struct.pack_into("<QQQQII", info, 16, ctypes.addressof(name),
                         *(ctypes.addressof(a) for a in arrays), len(name), count)
        _info(fd, info)
        count, flags, pid = struct.unpack_from("<III", info, 52)
        path = name.value.decode(errors="replace")
        offsets, ref_ctrs, cookies = (struct.unpack_from(f"<{count}Q", a) for a in arrays)
        retprobe = bool(flags & BPF_F_UPROBE_MULTI_RETURN)
        return LinkInfo(link_type, link_id, prog_id, tuple(
            (path, offsets[i], retprobe, cookies[i], ref_ctrs[i]) for i in range(count)
        ), pid)
    return LinkInfo(link_type, link_id, prog_id)


def prog_name(fd: int) -> str:
    """A program's name (``struct bpf_prog_info.name``, 16 bytes at offset 64)."""
    info = ctypes.create_string_buffer(_PROG_INFO_SIZE)
    _info(fd, info)
    return info.raw[64:80].split(b"\0", 1)[0].decode(errors="replace")


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
    # task_fd_query: u32 pid @0, fd @4, flags @8, buf_len @12, u64 buf @16, u32 prog_id @24,
    # fd_type @28, u64 probe_offset @32, probe_addr @40.
    attr = _attr(pid=(0, "I", pid), fd=(4, "I", fd), buf_len=(12, "I", len(name)),
                 buf=(16, "Q", ctypes.addressof(name)))
    _bpf(_TASK_FD_QUERY, attr)
    prog_id, fd_type, probe_offset = struct.unpack_from("<IIQ", attr, 24)
    return TaskFdInfo(prog_id, fd_type, name.value.decode(errors="replace"), probe_offset)


def map_create(map_type: int, key_size: int, value_size: int, max_entries: int) -> int:
    """Create a map and return its descriptor (for feature probes)."""
    return _bpf(_MAP_CREATE, _attr(map_type=(0, "I", map_type), key_size=(4, "I", key_size),
                                   value_size=(8, "I", value_size),
                                   max_entries=(12, "I", max_entries)))


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
        prog_type=(0, "I", prog_type), insn_cnt=(4, "I", len(instructions)),
        insns=(8, "Q", ctypes.addressof(code)), license=(16, "Q", ctypes.addressof(license_text)),
        expected_attach_type=(68, "I", expected_attach_type),
    ))


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
    buffers = [ctypes.create_string_buffer(os.fsencode(path)), _u64_array(offsets)]
    fields = {
        "prog_fd": (0, "I", prog_fd),
        "attach_type": (8, "I", BPF_TRACE_UPROBE_MULTI),
        # uprobe_multi: u64 path @16, offsets @24, ref_ctr_offsets @32, cookies @40,
        # u32 cnt @48, flags @52, pid @56.
        "path": (16, "Q", ctypes.addressof(buffers[0])),
        "offsets": (24, "Q", ctypes.addressof(buffers[1])),
        "cnt": (48, "I", len(offsets)),
        "flags": (52, "I", BPF_F_UPROBE_MULTI_RETURN if retprobe else 0),
        "pid": (56, "I", pid),
    }
    if ref_ctr_offsets is not None and any(ref_ctr_offsets):
        buffers.append(_u64_array(ref_ctr_offsets))
        fields["ref_ctr_offsets"] = (32, "Q", ctypes.addressof(buffers[-1]))
    if cookies is not None:
        buffers.append(_u64_array(cookies))
        fields["cookies"] = (40, "Q", ctypes.addressof(buffers[-1]))
    return _bpf(_LINK_CREATE, _attr(**fields))

"""The bpf(2) system call, for what the libbpf rawprobe runs with cannot do: uprobe_multi links.

Layouts from include/uapi/linux/bpf.h (``union bpf_attr``). Attributes are built in a zeroed
buffer of this kernel generation's ``sizeof(union bpf_attr)``; an older kernel accepts a larger
buffer as long as the bytes it does not know are zero (kernel/bpf/syscall.c,
bpf_check_uarg_tail_zero()).
"""

from __future__ import annotations

import ctypes
import os
import struct
from collections.abc import Sequence

from .._errors import SysCallError
from ._arch import ARCH
from .libc import syscall6

__all__ = ["BPF_F_UPROBE_MULTI_RETURN", "BPF_TRACE_UPROBE_MULTI", "link_create_uprobe_multi"]

# enum bpf_cmd
_LINK_CREATE = 28
_NAMES = {_LINK_CREATE: "BPF_LINK_CREATE"}

BPF_TRACE_UPROBE_MULTI = 48  # enum bpf_attach_type
BPF_F_UPROBE_MULTI_RETURN = 1

_ATTR_SIZE = 168  # sizeof(union bpf_attr), Linux 6.x


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

"""What the running kernel can do, asked of the kernel itself, once.

Each :class:`Feature` is probed by making the kernel judge a tiny object (a map, a program the
verifier checks, a link), never guessed from the version; the answer is memoized for the
process. Each names the kernel version it first appeared in, so ``rawprobe doctor`` can say
what to upgrade to, and tests can tell "too old a kernel" (skip) from "should work but does
not" (fail). The backends and ``doctor`` ask the same functions.
"""

from __future__ import annotations

import errno
import mmap
import os
import struct
from collections.abc import Callable
from functools import cache

from .._errors import SysCallError
from .._values import Record

__all__ = [
    "BPF_COOKIE",
    "RINGBUF",
    "UPROBE_MULTI",
    "Feature",
    "kernel_version",
    "parse_kernel_version",
]


def parse_kernel_version(release: str) -> tuple[int, int, int]:
    """``(major, minor, patch)`` of a kernel release string (``6.8.0-45-generic``).

    Raises:
        ValueError: Not a kernel release.
    """
    import re  # here, not at the top: the preload thread imports this module and needs no re

    match = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", release.strip())
    if not match:
        raise ValueError(f"not a kernel release: {release!r}")
    return int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)


def kernel_version() -> tuple[int, int, int]:
    """The running kernel's ``(major, minor, patch)``; ``(0, 0, 0)`` when it cannot be read."""
    try:
        return parse_kernel_version(os.uname().release)
    except ValueError:
        return 0, 0, 0


class Feature(Record):
    """One kernel feature rawprobe may use.

    Attributes:
        name: A stable identifier (``bpf-ringbuf``), as ``rawprobe doctor`` shows it.
        description: What it is.
        minimum_kernel: The first kernel release that has it.
        probe: Raises :class:`SysCallError` (the kernel's refusal) when it is missing.
    """

    __slots__ = ("description", "minimum_kernel", "name", "probe")

    name: str
    description: str
    minimum_kernel: tuple[int, int]
    probe: Callable[[], None]

    def __init__(self, name: str, description: str, minimum_kernel: tuple[int, int],
                 probe: Callable[[], None]) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "description", description)
        object.__setattr__(self, "minimum_kernel", minimum_kernel)
        object.__setattr__(self, "probe", probe)

    @property
    def minimum(self) -> str:
        return ".".join(map(str, self.minimum_kernel))

    def check(self) -> str | None:
        """``None`` when the kernel has it, else the kernel's refusal (memoized)."""
        return _checked(self)

    def available(self) -> bool:
        return self.check() is None

    def expected(self) -> bool:
        """Whether the running kernel is new enough that the feature should be there."""
        return kernel_version()[:2] >= self.minimum_kernel


@cache
def _checked(feature: Feature) -> str | None:
    try:
        feature.probe()
    except SysCallError as error:
        return str(error)
    return None


def _instruction(code: int, imm: int = 0, dst: int = 0, src: int = 0, offset: int = 0) -> bytes:
    """One ``struct bpf_insn`` (include/uapi/linux/bpf.h)."""
    return struct.pack("<BBhi", code, dst | src << 4, offset, imm)


_BPF_CALL = 0x85  # BPF_JMP | BPF_CALL
_BPF_MOV64_IMM = 0xB7  # BPF_ALU64 | BPF_MOV | BPF_K
_BPF_EXIT = 0x95  # BPF_JMP | BPF_EXIT
_HELPER_GET_ATTACH_COOKIE = 174  # enum bpf_func_id, Linux 5.15
_RETURN_0 = (_instruction(_BPF_MOV64_IMM), _instruction(_BPF_EXIT))


def _ringbuf_probe() -> None:
    from . import bpf

    os.close(bpf.map_create(bpf.BPF_MAP_TYPE_RINGBUF, 0, 0, mmap.PAGESIZE))


def _cookie_probe() -> None:
    from . import bpf

    # r1 is the context at entry, which is the helper's argument.
    program = (_instruction(_BPF_CALL, _HELPER_GET_ATTACH_COOKIE), *_RETURN_0)
    os.close(bpf.prog_load(bpf.BPF_PROG_TYPE_KPROBE, program))


def _uprobe_multi_probe() -> None:
    from . import bpf

    fd = bpf.prog_load(bpf.BPF_PROG_TYPE_KPROBE, _RETURN_0,
                       expected_attach_type=bpf.BPF_TRACE_UPROBE_MULTI)
    try:
        # As libbpf probes it: a uprobe_multi link on "/" must fail with EBADF (a directory
        # is no ELF file) on a kernel that has such links, with EINVAL on one that does not.
        link = bpf.link_create_uprobe_multi(fd, "/", [0])
        os.close(link)
    except SysCallError as error:
        if error.errno != errno.EBADF:
            raise
    finally:
        os.close(fd)


RINGBUF = Feature("bpf-ringbuf", "the BPF ring buffer", (5, 8), _ringbuf_probe)
BPF_COOKIE = Feature("bpf-cookie", "bpf_get_attach_cookie()", (5, 15), _cookie_probe)
UPROBE_MULTI = Feature("uprobe-multi", "uprobe_multi links", (6, 6), _uprobe_multi_probe)

"""What the running kernel can do, asked of the kernel itself, once.

Each :class:`Feature` is probed by making the kernel judge a tiny object (a map, a program the
verifier checks, a link), never guessed from the version; the answer is memoized for the
process. Each names the kernel version it first appeared in, so ``rawprobe doctor`` can say
what to upgrade to, and tests can tell "too old a kernel" (skip) from "should work but does
not" (fail). The backends and ``doctor`` ask the same functions.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import struct
from collections.abc import Callable
from functools import cache

from .._errors import RawprobeError, SysCallError
from .._values import Record

TYPE_CHECKING = False  # mypy treats this name as True; at run time it spares importing typing.
if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = [
    "BPF_COOKIE",
    "PERF_UPROBE",
    "RINGBUF",
    "UPROBE_MULTI",
    "UPROBE_MULTI_LINK",
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
    except RawprobeError as error:  # SysCallError: the kernel's refusal; or no uprobe PMU
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


@contextlib.contextmanager
def _scratch_file() -> Iterator[str]:
    """A file of a few bytes in a private temporary directory, removed afterwards: a place to
    plant a uprobe that no process maps, so it never fires and disturbs nothing."""
    import shutil
    import tempfile

    directory = tempfile.mkdtemp(prefix="rawprobe-probe-")
    try:
        path = os.path.join(directory, "scratch")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, b"\xc3" * 16)  # ret
        finally:
            os.close(fd)
        yield path
    finally:
        shutil.rmtree(directory, ignore_errors=True)


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


def _uprobe_multi_link_probe() -> None:
    from . import bpf

    fd = bpf.prog_load(bpf.BPF_PROG_TYPE_KPROBE, _RETURN_0,
                       expected_attach_type=bpf.BPF_TRACE_UPROBE_MULTI)
    try:
        with _scratch_file() as path:
            # A link with one uprobe in a file no process maps, closed at once: the kernel
            # judges this process as it would judge a trace's links (EPERM or EACCES: not
            # allowed). "/" would prove only that such links exist.
            os.close(bpf.link_create_uprobe_multi(fd, path, [0]))
    finally:
        os.close(fd)


def _perf_uprobe_probe() -> None:
    import ctypes

    from .perf import FLAG_DISABLED, PerfEventAttr, perf_event_open
    from .uprobe import uprobe_pmu

    pmu = uprobe_pmu()
    with _scratch_file() as path:
        path_buffer = ctypes.create_string_buffer(os.fsencode(path))
        attr = PerfEventAttr()
        attr.type = pmu.type
        attr.config = pmu.config(False, 0)
        attr.config1 = ctypes.addressof(path_buffer)
        attr.flags = FLAG_DISABLED
        # This process only, disabled, in a file nobody maps: kernel/events/core.c
        # perf_uprobe_event_init() decides (CAP_SYS_ADMIN since the 2025 hardening, "perf:
        # Require CAP_SYS_ADMIN for uprobes"; CAP_PERFMON before) before anything is created.
        os.close(perf_event_open(attr, os.getpid(), -1))


RINGBUF = Feature("bpf-ringbuf", "the BPF ring buffer", (5, 8), _ringbuf_probe)
BPF_COOKIE = Feature("bpf-cookie", "bpf_get_attach_cookie()", (5, 15), _cookie_probe)
UPROBE_MULTI = Feature("uprobe-multi", "uprobe_multi links", (6, 6), _uprobe_multi_probe)
UPROBE_MULTI_LINK = Feature("uprobe-multi-link", "a uprobe_multi link, created by this process",
                            (6, 6), _uprobe_multi_link_probe)
PERF_UPROBE = Feature("perf-uprobe", "uprobes through perf_event_open (the uprobe PMU)", (4, 17),
                      _perf_uprobe_probe)

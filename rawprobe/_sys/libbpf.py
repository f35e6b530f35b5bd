"""ctypes binding of the system libbpf (``libbpf.so.1``).

Only the calls rawprobe uses are declared, each once, with its C prototype from libbpf.h (libbpf
1.0 or newer: pointer-returning calls give NULL and set errno, int-returning calls give -errno).
libbpf's own log is routed to the ``rawprobe.libbpf`` logger; the lines printed while an object
loads are also kept so a load failure can show the verifier's explanation.
"""

from __future__ import annotations

import ctypes
from _thread import _local  # threading's own thread-local class, without threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from .. import _log
from .._errors import LibbpfMissingError
from ._ffi import ERR_NEGATIVE_ERRNO, ERR_NONE, ERR_NULL, declare
from .libc import vsnprintf

TYPE_CHECKING = False  # mypy treats this name as True; at run time it spares importing typing.
if TYPE_CHECKING:
    from typing import Any

__all__ = ["LIBBPF_SONAME", "Libbpf", "PerfEventOpts", "capture_log", "libbpf"]

LIBBPF_SONAME = "libbpf.so.1"

_LOGGER = "rawprobe.libbpf"
# enum libbpf_print_level
_LIBBPF_WARN, _LIBBPF_INFO, _LIBBPF_DEBUG = 0, 1, 2
_LEVELS = {_LIBBPF_WARN: _log.WARNING, _LIBBPF_INFO: _log.INFO, _LIBBPF_DEBUG: _log.DEBUG}

# typedef int (*libbpf_print_fn_t)(enum libbpf_print_level level, const char *, va_list ap);
_PRINT_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)

_capture = _local()


class PerfEventOpts(ctypes.Structure):
    """``struct bpf_perf_event_opts`` up to ``bpf_cookie`` (libbpf 0.6+)."""

    _fields_ = [("sz", ctypes.c_size_t), ("bpf_cookie", ctypes.c_uint64)]


class Libbpf:
    """The declared libbpf functions. Obtain the one instance with :func:`libbpf`."""

    def __init__(self, library: ctypes.CDLL) -> None:
        p, i, u32, u64 = ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32, ctypes.c_uint64
        size_t, cstr, boolean = ctypes.c_size_t, ctypes.c_char_p, ctypes.c_bool

        def fn(name: str, restype: Any, argtypes: list[Any], failure: str) -> Any:
            return declare(library, name, restype, argtypes, failure)

        self.major_version = fn("libbpf_major_version", u32, [], ERR_NONE)
        self.minor_version = fn("libbpf_minor_version", u32, [], ERR_NONE)
        self.set_print = fn("libbpf_set_print", p, [_PRINT_FN], ERR_NONE)
        self.num_possible_cpus = fn("libbpf_num_possible_cpus", i, [], ERR_NEGATIVE_ERRNO)
        self.object_open_mem = fn("bpf_object__open_mem", p, [p, size_t, p], ERR_NULL)
        self.object_load = fn("bpf_object__load", i, [p], ERR_NEGATIVE_ERRNO)
        self.object_close = fn("bpf_object__close", None, [p], ERR_NONE)
        self.object_find_program_by_name = fn(
            "bpf_object__find_program_by_name", p, [p, cstr], ERR_NULL
        )
        self.object_find_map_by_name = fn("bpf_object__find_map_by_name", p, [p, cstr], ERR_NULL)
        self.map_fd = fn("bpf_map__fd", i, [p], ERR_NEGATIVE_ERRNO)
        self.map_set_max_entries = fn("bpf_map__set_max_entries", i, [p, u32], ERR_NEGATIVE_ERRNO)
        self.map_max_entries = fn("bpf_map__max_entries", u32, [p], ERR_NONE)
        self.map_value_size = fn("bpf_map__value_size", u32, [p], ERR_NONE)
        self.map_initial_value = fn(
            "bpf_map__initial_value", p, [p, ctypes.POINTER(size_t)], ERR_NULL
        )
        self.map_update_elem = fn(
            "bpf_map__update_elem", i, [p, p, size_t, p, size_t, u64], ERR_NEGATIVE_ERRNO
        )
        self.map_lookup_elem = fn(
            "bpf_map__lookup_elem", i, [p, p, size_t, p, size_t, u64], ERR_NEGATIVE_ERRNO
        )
        # Low-level calls on map descriptors (libbpf's bpf.h); they return -errno.
        self.bpf_map_get_next_key = fn("bpf_map_get_next_key", i, [i, p, p], ERR_NONE)
        self.bpf_map_lookup_elem = fn("bpf_map_lookup_elem", i, [i, p, p], ERR_NONE)
        self.bpf_map_delete_elem = fn("bpf_map_delete_elem", i, [i, p], ERR_NONE)
        # Hash maps, per-CPU ones included, since Linux 5.14.
        self.bpf_map_lookup_and_delete_elem = fn("bpf_map_lookup_and_delete_elem", i,
                                                 [i, p, p], ERR_NONE)
        self.program_fd = fn("bpf_program__fd", i, [p], ERR_NEGATIVE_ERRNO)
        self.program_set_autoload = fn(
            "bpf_program__set_autoload", i, [p, boolean], ERR_NEGATIVE_ERRNO
        )
        self.program_attach_perf_event_opts = fn(
            "bpf_program__attach_perf_event_opts",
            p,
            [p, i, ctypes.POINTER(PerfEventOpts)],
            ERR_NULL,
        )
        self.program_attach = fn("bpf_program__attach", p, [p], ERR_NULL)
        self.program_set_expected_attach_type = fn(
            "bpf_program__set_expected_attach_type", i, [p, i], ERR_NEGATIVE_ERRNO
        )
        self.link_destroy = fn("bpf_link__destroy", i, [p], ERR_NEGATIVE_ERRNO)
        # Keep the callback object alive as long as libbpf may call it.
        self._print_callback = _PRINT_FN(_log_line)
        self.set_print(self._print_callback)

    @contextmanager
    def silenced(self) -> Iterator[None]:
        """libbpf says nothing while the block runs (a load in a thread of its own: each
        message would wait for the interpreter lock, while the main thread holds it)."""
        self.set_print(_PRINT_FN())
        try:
            yield
        finally:
            self.set_print(self._print_callback)

    @property
    def version(self) -> tuple[int, int]:
        return int(self.major_version()), int(self.minor_version())

    def attach_perf_event(self, program: int, perf_event_fd: int, cookie: int) -> int:
        """Attach ``program`` to a perf event with a BPF cookie; returns the libbpf link,
        which owns the event's descriptor from then on (``bpf_link__destroy`` closes both).

        Raises:
            SysCallError: The kernel refused (EINVAL: no BPF cookies before Linux 5.15).
        """
        opts = PerfEventOpts(sz=ctypes.sizeof(PerfEventOpts), bpf_cookie=cookie)
        link = self.program_attach_perf_event_opts(program, perf_event_fd, ctypes.byref(opts))
        return int(link)


def _log_line(level: int, fmt: bytes | None, va_list: int | None) -> int:
    if fmt is None:
        return 0
    lines: list[str] | None = getattr(_capture, "lines", None)
    log_level = _LEVELS.get(level, _log.DEBUG)
    # libbpf says a hundred things while it loads an object: format only what is kept.
    wanted = _log.enabled(log_level, _LOGGER)
    if lines is None and not wanted:
        return 0
    buffer = ctypes.create_string_buffer(16384)
    vsnprintf(buffer, len(buffer), fmt, va_list)
    line = buffer.value.decode(errors="replace").rstrip("\n")
    if lines is not None:
        lines.append(line)
    if wanted:
        _log.log(log_level, "%s", line, name=_LOGGER)
    return 0


@contextmanager
def capture_log() -> Iterator[list[str]]:
    """Collect the lines libbpf logs from this thread while the block runs."""
    previous = getattr(_capture, "lines", None)
    lines: list[str] = []
    _capture.lines = lines
    try:
        yield lines
    finally:
        _capture.lines = previous


@lru_cache(maxsize=1)
def libbpf() -> Libbpf:
    """Load and bind ``libbpf.so.1`` once.

    Raises:
        LibbpfMissingError: The library is not installed (the message names the package).
    """
    try:
        library = ctypes.CDLL(LIBBPF_SONAME, use_errno=True)
    except OSError:
        raise LibbpfMissingError(
            f"{LIBBPF_SONAME} is not installed: install the libbpf1 package "
            "(Debian/Ubuntu: apt-get install libbpf1; Fedora/RHEL: dnf install libbpf)"
        ) from None
    try:
        return Libbpf(library)
    except AttributeError as error:
        raise LibbpfMissingError(
            f"the installed {LIBBPF_SONAME} is too old ({error}); rawprobe needs libbpf 1.0 or "
            "newer: upgrade the libbpf1 package"
        ) from None

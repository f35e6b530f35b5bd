"""Variables and source lines by name: the DWARF debug information of a probed file.

What perf probe and SystemTap users write — ``p:./main:add a b``, ``o->in->x``, ``buf:string``,
``a[3]``, ``@counter``, ``$retval``, ``$params``, ``main.c:27``, ``add:3`` — needs the file's
DWARF. This package reads it with pyelftools (no libdw, no compiler at run time) and answers in
the terms the kernel's uprobe tracer takes::

    info = open_debug_info("./main")               # None when there is no DWARF
    add = info.functions("add", inlined=False)[0]  # or info.function_at(symbol address)
    info.variables_at(add.probe_address)           # in scope there, readable or not, and why
    info.compile("o->in->x", add.probe_address)    # CompiledVariable(fetcharg="+0(+0(%di))",
                                                   #                  type="s32", ...)
    info.line_addresses("main.c", 27)              # FILE:LINE
    info.function_line("add", 2)                   # FUNC:N

Addresses are ELF virtual addresses (symbol values), as the rest of rawprobe uses them.

Locations by source line, as perf probe spells them:

- ``FILE:LINE`` — where the code of that line starts (``is_stmt`` rows of the line table, plus
  function entries for a declaration line and inlined copies for their call line); FILE may be
  the last components of the path (``main.c``, ``src/main.c``).
- ``FUNC:N`` — line N of FUNC counted from the line that names it: ``add:0`` is the line with
  ``add``'s name (its entry), ``add:1`` the next line, in every instance of FUNC.

An address where another line's code starts as well is left out (perf probe refuses the whole
line then: "This line is sharing the address with other lines").

Where a probe goes and what it reads match perf probe (tools/perf/util/probe-finder.c): a
function probe that reads variables is put after the prologue in a unit perf takes for
unoptimized (:attr:`FunctionInstance.probe_address`); variables are looked up in the concrete
function and the blocks and inlined copies containing the address; ``-V``'s "available" is
:attr:`Variable.available`. Where perf is wrong or cannot, rawprobe differs on purpose:
unsigned integers are ``u`` (perf: ``x``); a global is ``@+N`` relative to the probed file,
which uprobes take (perf: ``@sym``, which only kprobes take); bitfields follow
``DW_AT_data_bit_offset``; frame bases of several operations, and the frame address of a file
whose DWARF is in a separate debug file (from the probed file's ``.eh_frame``), are evaluated.

Entry points:

- :func:`open_debug_info` / :func:`require_debug_info` open (and cache, by file identity) a
  file's debug information;
- :class:`DebugInfo` answers questions about it;
- :func:`parse_expression`, :func:`is_variable_expression` and :func:`reads_locals` for the
  probe-word parser and planner.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Sequence

from .._errors import RawprobeError, TargetNotFoundError
from .._symbols import TargetChangedError
from .._symbols._debuginfo import debug_roots
from .._symbols._index import ABSENT_KEY, FileKey, current_key, file_key
from .._symbols.elf import read_elf
from .._sys.arch import ARCH
from ._compile import MAX_DEREFERENCES
from ._elf import locate_debug_file
from ._errors import (
    DwarfError,
    ExpressionSyntaxError,
    FunctionNotFoundError,
    LineNotFoundError,
    NoDebugInfoError,
    NotAvailableError,
    TypeMismatchError,
    VariableNotFoundError,
)
from ._expr import VariableExpression, is_variable_expression, parse_expression, reads_locals
from ._info import DebugInfo
from ._model import CompiledVariable, FunctionInstance, LineAddress, SourceLine, Variable

__all__ = [
    "MAX_DEREFERENCES",
    "CompiledVariable",
    "DebugInfo",
    "DwarfError",
    "ExpressionSyntaxError",
    "FunctionInstance",
    "FunctionNotFoundError",
    "LineAddress",
    "LineNotFoundError",
    "NoDebugInfoError",
    "NotAvailableError",
    "SourceLine",
    "TypeMismatchError",
    "Variable",
    "VariableExpression",
    "VariableNotFoundError",
    "clear_cache",
    "is_variable_expression",
    "open_debug_info",
    "parse_expression",
    "reads_locals",
    "require_debug_info",
]

_CACHE_SIZE = 16


class _Entry:
    """A cached answer: the debug information (or None), the debug files searched, and the
    identity of the debug file it was read from (a changed debug file is read again)."""

    __slots__ = ("debug_key", "info", "searched")

    def __init__(self, info: DebugInfo | None, searched: tuple[str, ...],
                 debug_key: FileKey | None) -> None:
        self.info = info
        self.searched = searched
        self.debug_key = debug_key

    def valid(self) -> bool:
        return self.info is None or self.debug_key is None or \
            current_key(self.info.debug_path) == self.debug_key


_cache: OrderedDict[tuple[object, ...], _Entry] = OrderedDict()
_cache_lock = threading.Lock()


def open_debug_info(
    path: str,
    debug_root: str | Sequence[str] | None = None,
    *,
    expect_key: FileKey | None = None,
) -> DebugInfo | None:
    """The DWARF of a file: its own, or its separate debug file's (build-id, then
    ``.gnu_debuglink``).

    Files are read once per process: results are kept in memory, keyed by the file's identity
    (device, inode, size, mtime, ctime, as the symbol cache keys files) and checked against the
    separate debug file's, so a second call costs a ``stat`` or two, and a file that changes is
    read again.

    Args:
        path: The probed program or library.
        debug_root: Directories holding separate debug files (None: ``$RAWPROBE_DEBUG_ROOT``,
            else ``/usr/lib/debug``), a colon-separated string or a list.
        expect_key: The identity of a file the caller opened at ``path``
            (:attr:`rawprobe._host.files.TargetFile.key`): the answer must describe that very
            file.

    Returns:
        The debug information, or None when neither the file nor a debug file for it has DWARF.

    Raises:
        TargetNotFoundError: The file cannot be opened.
        NotElfError: It is not an ELF file rawprobe can probe.
        TargetChangedError: ``path`` is no longer the file ``expect_key`` describes.
        DwarfError: Its debug information is damaged.
    """
    return _open(path, debug_root, expect_key).info


def _open(
    path: str, debug_root: str | Sequence[str] | None, expect_key: FileKey | None
) -> _Entry:
    path = os.path.abspath(path)
    key = current_key(path)
    if key == ABSENT_KEY:
        raise TargetNotFoundError(f"{path}: no such file, or it cannot be read")
    if expect_key is not None and key != expect_key:
        raise TargetChangedError(path)
    roots = debug_roots(debug_root)
    cache_key = (path, key, roots)
    with _cache_lock:
        entry = _cache.get(cache_key)
        if entry is not None and entry.valid():
            _cache.move_to_end(cache_key)
            return entry
    target = read_elf(path)
    info: DebugInfo | None = None
    try:
        if file_key(os.fstat(target.stream.fileno())) != key:
            raise TargetChangedError(path)
        debug, source, searched = locate_debug_file(target, list(roots))
        debug_key = None if debug is None or debug is target else \
            file_key(os.fstat(debug.stream.fileno()))
        if debug is not None:
            info = DebugInfo(target, debug, source, ARCH)
    except RawprobeError:
        target.close()
        raise
    except Exception as error:  # damaged DWARF must not end in a traceback
        target.close()
        raise DwarfError(f"{path}: its debug information cannot be read ({error})") from None
    if info is None:
        target.close()
    entry = _Entry(info, tuple(searched), debug_key)
    with _cache_lock:
        old_entry = _cache.pop(cache_key, None)
        _cache[cache_key] = entry
        while len(_cache) > _CACHE_SIZE:
            _, evicted = _cache.popitem(last=False)
            if evicted.info is not None:
                evicted.info.close()
    if old_entry is not None and old_entry.info is not None:
        old_entry.info.close()
    return entry


def require_debug_info(
    path: str,
    debug_root: str | Sequence[str] | None = None,
    *,
    expect_key: FileKey | None = None,
) -> DebugInfo:
    """:func:`open_debug_info`, raising when there is none.

    Raises:
        NoDebugInfoError: Neither the file nor a separate debug file has DWARF (the message
            names the debug files looked for).
    """
    entry = _open(path, debug_root, expect_key)
    if entry.info is None:
        raise NoDebugInfoError(path, entry.searched)
    return entry.info


def clear_cache() -> None:
    """Forget every file read (and close them)."""
    with _cache_lock:
        for entry in _cache.values():
            if entry.info is not None:
                entry.info.close()
        _cache.clear()

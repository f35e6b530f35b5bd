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
from .._symbols._debuginfo import debug_roots
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
_cache: OrderedDict[tuple[object, ...], tuple[DebugInfo | None, tuple[str, ...]]] = OrderedDict()
_cache_lock = threading.Lock()


def _identity(path: str) -> tuple[int, int, int, int]:
    """(device, inode, size, mtime in ns): a file's identity, as the symbol cache keys it."""
    info = os.stat(path)
    return info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns


def open_debug_info(path: str, debug_root: str | Sequence[str] | None = None) -> DebugInfo | None:
    """The DWARF of a file: its own, or its separate debug file's (build-id, then
    ``.gnu_debuglink``).

    Results are kept in memory, keyed by the file's identity (device, inode, size, mtime), so a
    second call costs a ``stat``; a file that changes is read again.

    Args:
        path: The probed program or library.
        debug_root: Directories holding separate debug files (None: ``$RAWPROBE_DEBUG_ROOT``,
            else ``/usr/lib/debug``), a colon-separated string or a list.

    Returns:
        The debug information, or None when neither the file nor a debug file for it has DWARF.

    Raises:
        TargetNotFoundError: The file cannot be opened.
        NotElfError: It is not an ELF file rawprobe can probe.
        DwarfError: Its debug information is damaged.
    """
    return _open(path, debug_root)[0]


def _open(
    path: str, debug_root: str | Sequence[str] | None
) -> tuple[DebugInfo | None, tuple[str, ...]]:
    """:func:`open_debug_info`, and the debug files searched when there is none."""
    try:
        identity = _identity(path)
    except FileNotFoundError:
        raise TargetNotFoundError(f"{path}: no such file") from None
    except OSError as error:
        raise TargetNotFoundError(f"{path}: {(error.strerror or 'cannot stat').lower()}") from None
    roots = debug_roots(debug_root)
    key = (os.path.abspath(path), identity, roots)
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    target = read_elf(path)
    info: DebugInfo | None = None
    try:
        debug, source, searched = locate_debug_file(target, list(roots))
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
    with _cache_lock:
        _cache[key] = (info, tuple(searched))
        while len(_cache) > _CACHE_SIZE:
            _, (old, _) = _cache.popitem(last=False)
            if old is not None:
                old.close()
    return info, tuple(searched)


def require_debug_info(path: str, debug_root: str | Sequence[str] | None = None) -> DebugInfo:
    """:func:`open_debug_info`, raising when there is none.

    Raises:
        NoDebugInfoError: Neither the file nor a separate debug file has DWARF.
    """
    info, searched = _open(path, debug_root)
    if info is None:
        raise NoDebugInfoError(path, searched)
    return info


def clear_cache() -> None:
    """Forget every file read (and close them)."""
    with _cache_lock:
        for info, _ in _cache.values():
            if info is not None:
                info.close()
        _cache.clear()

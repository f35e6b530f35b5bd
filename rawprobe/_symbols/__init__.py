"""Where a probe goes: target files, symbols and the file offsets the kernel wants.

The kernel plants a uprobe at an (inode, file offset) pair, so every LOCATION of a probe word ends
as a file offset. A symbol's value is a virtual address; it becomes a file offset through the
PT_LOAD segment that contains it: ``file_offset = address - p_vaddr + p_offset``, cross-checked
against the section that contains it.

Public entry points (the rest of rawprobe uses only these):

- :func:`find_target` turns a TARGET (path or library name) into the file to probe;
- :func:`resolve_location` turns a LOCATION into one or more :class:`Location` objects
  (:func:`resolve_one` when exactly one is needed);
- :func:`list_functions` lists probe-able functions of a file;
- :func:`function_at` names the function holding a file offset (the one way back from an
  offset to a function);
- :func:`describe_target` summarises a file (build-id, symbol sources, Go or not);
- :func:`demangle` demangles a C++ symbol name;
- :func:`cache_status` says whether the symbol cache is in use (and why not).

Importing this package is cheap on purpose: pyelftools is imported only when a file has to be
read because no valid cache entry exists for it.
"""

from __future__ import annotations

TYPE_CHECKING = False  # mypy treats this name as True; at run time it spares importing typing.
if TYPE_CHECKING:
    from typing import Any

    from ._cache import cache_directory
    from ._errors import (
        AmbiguousLocationError,
        CorruptElfError,
        LocationError,
        NoSymbolsError,
        OffsetMismatchError,
        TargetChangedError,
        UndefinedSymbolError,
        UnsupportedElfError,
    )
    from ._functions import describe_target, function_at, list_functions
    from ._model import FunctionAt, Location, OffsetDerivation, Symbol, TargetInfo
    from ._open import clear_memory, open_index
    from ._resolve import resolve_location, resolve_one
    from ._target import find_target

# Each name is imported from its module on first use: finding a target (at every start) needs
# none of the index, resolver or ELF modules.
_LAZY = {
    "cache_directory": "._cache",
    **dict.fromkeys(["AmbiguousLocationError", "CorruptElfError", "LocationError",
                     "NoSymbolsError", "OffsetMismatchError", "TargetChangedError",
                     "UndefinedSymbolError", "UnsupportedElfError"], "._errors"),
    "describe_target": "._functions", "function_at": "._functions",
    "list_functions": "._functions",
    **dict.fromkeys(["FunctionAt", "Location", "OffsetDerivation", "Symbol", "TargetInfo"],
                    "._model"),
    "clear_memory": "._open", "open_index": "._open",
    "resolve_location": "._resolve", "resolve_one": "._resolve",
    "find_target": "._target",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def cache_status() -> tuple[str | None, bool, str]:
    """Whether the on-disk symbol cache is in use, for ``rawprobe doctor``.

    Returns:
        (directory or None when disabled, in use, why not when it is not).
    """
    from ._cache import default_cache

    cache = default_cache()
    usable = cache.usable
    return cache.directory, usable, cache.reason


def demangle(name: str) -> str | None:
    """Demangle an Itanium C++ ABI symbol name as ``c++filt`` would.

    Args:
        name: A symbol name such as ``_ZN2ns3Foo3barEi``.

    Returns:
        The demangled name, or None when ``name`` is not mangled, is not valid, or this host
        has no C++ runtime (the mangled name then stays the function's name).
    """
    # Imported on first use: resolving a C function from the cache never needs it.
    from .._sys.demangle import demangle as demangle_name

    return demangle_name(name)


__all__ = [
    "AmbiguousLocationError",
    "CorruptElfError",
    "FunctionAt",
    "Location",
    "LocationError",
    "NoSymbolsError",
    "OffsetDerivation",
    "OffsetMismatchError",
    "Symbol",
    "TargetChangedError",
    "TargetInfo",
    "UndefinedSymbolError",
    "UnsupportedElfError",
    "cache_directory",
    "cache_status",
    "clear_memory",
    "demangle",
    "describe_target",
    "find_target",
    "function_at",
    "list_functions",
    "open_index",
    "resolve_location",
    "resolve_one",
]

"""C++ symbol demangling through the C++ runtime's own demangler, ``abi::__cxa_demangle``.

libstdc++ exports the Itanium C++ ABI demangler (section 3.4 "Demangler API" of the ABI); it
is built from the same source as binutils' ``c++filt`` (libiberty's ``cp-demangle.c``), so its
output is ``c++filt``'s, grammar rarely met in the functions people probe included. The library
is loaded on first use, once; where it is missing (a host without ``libstdc++.so.6`` has no C++
program to probe either) :func:`demangle` returns None and the caller keeps the mangled name.

What is passed to the runtime and what is not:

- Only names that start with ``_Z`` (ABI 5.1.2, ``<mangled-name> ::= _Z <encoding>``).
  ``__cxa_demangle`` also demangles bare *types* (``i`` gives ``int``), which would rename C
  functions called ``i`` or ``f``; ``c++filt`` leaves those alone too.
- A symbol version (``_ZNSsC1Ev@@GLIBCXX_3.4``) is cut off before demangling and put back
  after it, which is what ``c++filt`` prints (it stops a name at ``@``).
- GCC's clone suffixes (``.cold``, ``.isra.0``, ``.constprop.0``, ``.part.0``) are understood
  by the runtime itself: ``foo() [clone .cold]``.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable
from typing import Any

from ._ffi import ERR_NONE, declare
from .libc import free

__all__ = ["LIBSTDCXX_SONAME", "demangle", "demangler_available"]

LIBSTDCXX_SONAME = "libstdc++.so.6"

# __cxa_demangle's status codes (libstdc++ <cxxabi.h>).
_STATUS_OK = 0
_MANGLED_PREFIX = "_Z"

_lock = threading.Lock()
_loaded = False
_cxa_demangle: Callable[..., Any] | None = None



def _load() -> Callable[..., Any] | None:
    """Load libstdc++ and declare ``__cxa_demangle``, once; None when it cannot be loaded."""
    global _loaded, _cxa_demangle
    if _loaded:
        return _cxa_demangle
    with _lock:
        if not _loaded:
            try:
                library = ctypes.CDLL(LIBSTDCXX_SONAME)
                # char *abi::__cxa_demangle(const char *mangled_name, char *output_buffer,
                #                           size_t *length, int *status)
                # restype is a void pointer, not c_char_p: the pointer must reach free().
                # A failure is reported through *status (-1 memory, -2 not a valid name,
                # -3 bad argument) with a NULL result, not through errno.
                _cxa_demangle = declare(
                    library,
                    "__cxa_demangle",
                    ctypes.c_void_p,
                    [
                        ctypes.c_char_p,
                        ctypes.c_char_p,
                        ctypes.POINTER(ctypes.c_size_t),
                        ctypes.POINTER(ctypes.c_int),
                    ],
                    ERR_NONE,
                )
            except (OSError, AttributeError):
                _cxa_demangle = None
            _loaded = True
    return _cxa_demangle


def demangler_available() -> bool:
    """Whether the C++ runtime's demangler could be loaded on this host."""
    return _load() is not None


def demangle(name: str) -> str | None:
    """Demangle an Itanium C++ ABI symbol name as ``c++filt`` prints it.

    Args:
        name: A symbol name such as ``_ZN2ns3Foo3barEi``, optionally with a clone suffix
            (``.cold``) or a symbol version (``@@GLIBCXX_3.4``).

    Returns:
        The demangled name; None when ``name`` is not a mangled name (no ``_Z`` prefix, or not
        valid), or when libstdc++ is not installed. The caller then keeps the mangled name.
    """
    if not name.startswith(_MANGLED_PREFIX) or "\0" in name:
        return None
    base, at, version = name.partition("@")
    function = _load()
    if function is None:
        return None
    status = ctypes.c_int(0)
    result = function(base.encode("utf-8", "surrogateescape"), None, None, ctypes.byref(status))
    if not result:
        return None
    try:
        if status.value != _STATUS_OK:
            return None
        text = ctypes.string_at(result).decode("utf-8", "backslashreplace")
    finally:
        free(result)
    return text + at + version

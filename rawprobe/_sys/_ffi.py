"""One helper to declare foreign functions with argtypes, restype and an errcheck."""

from __future__ import annotations

import ctypes

from .._errors import SysCallError

TYPE_CHECKING = False  # mypy treats this name as True; at run time it spares importing typing.
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

__all__ = ["ERR_NEGATIVE", "ERR_NEGATIVE_ERRNO", "ERR_NONE", "ERR_NULL", "declare"]

# How a foreign function reports failure.
ERR_NONE = "none"  # never fails (or failure is not an errno)
ERR_NEGATIVE = "negative"  # returns -1 (or any negative) and sets errno
ERR_NEGATIVE_ERRNO = "negative-errno"  # returns -errno (libbpf's int-returning API)
ERR_NULL = "null"  # returns NULL and sets errno (libbpf's pointer-returning API)


def declare(
    library: ctypes.CDLL,
    name: str,
    restype: Any,
    argtypes: Sequence[Any],
    failure: str = ERR_NONE,
) -> Callable[..., Any]:
    """Declare ``library.name`` with its C signature and how it reports failure.

    Args:
        library: A library loaded with ``use_errno=True``.
        name: The C symbol.
        restype: The ctypes return type.
        argtypes: The ctypes argument types, in order.
        failure: One of the ``ERR_*`` conventions above.

    Returns:
        The foreign function; a failing call raises :class:`SysCallError` naming ``name``.

    Raises:
        AttributeError: The library does not export ``name`` (too old a version).
    """
    function = getattr(library, name)
    function.restype = restype
    function.argtypes = list(argtypes)
    if failure == ERR_NEGATIVE:
        function.errcheck = _check_negative(name)
    elif failure == ERR_NEGATIVE_ERRNO:
        function.errcheck = _check_negative_errno(name)
    elif failure == ERR_NULL:
        function.errcheck = _check_null(name)
    elif failure != ERR_NONE:
        raise ValueError(f"unknown failure convention {failure!r}")
    return function  # type: ignore[no-any-return]


def _check_negative(name: str) -> Callable[..., Any]:
    def errcheck(result: int, _func: object, _args: tuple[Any, ...]) -> int:
        if result < 0:
            raise SysCallError(ctypes.get_errno(), name)
        return result

    return errcheck


def _check_negative_errno(name: str) -> Callable[..., Any]:
    def errcheck(result: int, _func: object, _args: tuple[Any, ...]) -> int:
        if result < 0:
            raise SysCallError(-result, name)
        return result

    return errcheck


def _check_null(name: str) -> Callable[..., Any]:
    def errcheck(result: Any, _func: object, _args: tuple[Any, ...]) -> Any:
        if not result:
            raise SysCallError(ctypes.get_errno() or 22, name)  # EINVAL if errno was left 0
        return result

    return errcheck

"""The one exception hierarchy of rawprobe.

Every error rawprobe raises derives from :class:`RawprobeError`. Each message says what happened
and what to do about it. ``exit_status`` is what the command-line tool exits with: 2 for bad usage
or input the user can fix, 1 for a failure at run time.
"""

from __future__ import annotations

import errno as _errno

TYPE_CHECKING = False  # not typing's: keep `import rawprobe` free of typing and re
if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "BpfObjectError",
    "ClosedError",
    "FetchArgError",
    "FilterError",
    "KernelFeatureError",
    "LibbpfMissingError",
    "NotElfError",
    "PrivilegeError",
    "ProbeSyntaxError",
    "RawprobeError",
    "SymbolNotFoundError",
    "SysCallError",
    "TargetNotFoundError",
    "UsageError",
]


class RawprobeError(Exception):
    """Base of every error rawprobe raises."""

    exit_status: int = 1


class UsageError(RawprobeError):
    """Bad input: a probe word, an option, a file or symbol the user named."""

    exit_status = 2


class ProbeSyntaxError(UsageError):
    """A probe word that does not parse; ``column`` points into ``text`` (0-based)."""

    def __init__(self, message: str, text: str = "", column: int | None = None) -> None:
        self.message = message
        self.text = text
        self.column = column
        super().__init__(self._render())

    def _render(self) -> str:
        if not self.text or self.column is None:
            return self.message
        caret = " " * self.column + "^"
        return f"{self.message}\n  {self.text}\n  {caret}"


class FetchArgError(ProbeSyntaxError):
    """A fetch-arg (``name=FETCHARG:TYPE``) that is malformed or cannot be used here."""


class FilterError(ProbeSyntaxError):
    """A ``--filter`` expression that does not parse or names an unknown field."""


class TargetNotFoundError(UsageError):
    """The file or library a probe names does not exist or cannot be found."""


class NotElfError(UsageError):
    """The target exists but is not an ELF file rawprobe can probe."""


class SymbolNotFoundError(UsageError):
    """No symbol of that name in any symbol source of the target."""

    def __init__(self, symbol: str, target: str, suggestions: Sequence[str] = ()) -> None:
        self.symbol = symbol
        self.target = target
        self.suggestions = tuple(suggestions)
        message = f"no function {symbol!r} in {target}"
        if self.suggestions:
            message += "; did you mean " + ", ".join(self.suggestions) + "?"
        else:
            message += f"; run 'rawprobe list {target}' to see what can be probed"
        super().__init__(message)


class PrivilegeError(UsageError):
    """The process lacks a privilege (capability) that tracing needs."""

    def __init__(self, message: str, capability: str = "") -> None:
        self.capability = capability
        super().__init__(message)


class LibbpfMissingError(UsageError):
    """The system libbpf (``libbpf.so.1``) cannot be loaded."""


class KernelFeatureError(RawprobeError):
    """The running kernel lacks a feature rawprobe needs for what was asked."""

    def __init__(self, message: str, minimum_kernel: str = "") -> None:
        self.minimum_kernel = minimum_kernel
        super().__init__(message)


class BpfObjectError(RawprobeError):
    """A precompiled BPF object failed to open or load (the verifier's log is attached)."""

    def __init__(self, message: str, log: str = "") -> None:
        self.log = log
        super().__init__(message + (f"\n{log}" if log else ""))


class ClosedError(RawprobeError):
    """An operation on a tracer or resource that was already closed."""


class SysCallError(RawprobeError, OSError):
    """A system call or libbpf call failed; ``errno`` holds the error number.

    Derives from :class:`OSError` so callers may test ``errno`` the usual way.
    """

    def __init__(self, errnum: int, context: str) -> None:
        self.context = context
        text = _errno.errorcode.get(errnum, str(errnum))
        # OSError's two-argument form fills .errno and .strerror.
        OSError.__init__(self, errnum, f"{context}: {text} ({_os_strerror(errnum)})")

    def __str__(self) -> str:
        return str(self.strerror)


def _os_strerror(errnum: int) -> str:
    import os

    try:
        return os.strerror(errnum)
    except ValueError:
        return "unknown error"

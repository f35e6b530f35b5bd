"""Errors specific to symbol resolution, all refinements of rawprobe's usage errors.

Every one of them is something the user can fix (another file, another name, ``--force``), so all
derive from :class:`rawprobe.UsageError` and make the command-line tool exit with status 2.
"""

from __future__ import annotations

from .._errors import NotElfError, SymbolNotFoundError, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "AmbiguousLocationError",
    "CorruptElfError",
    "LocationError",
    "NoSymbolsError",
    "OffsetMismatchError",
    "TargetChangedError",
    "UndefinedSymbolError",
    "UnsupportedElfError",
]


class CorruptElfError(NotElfError):
    """The file starts like an ELF file but its headers or tables are damaged or truncated."""


class UnsupportedElfError(NotElfError):
    """A well-formed ELF file rawprobe cannot probe here: another architecture, 32-bit, a core
    dump or an unlinked object file."""


class UndefinedSymbolError(SymbolNotFoundError):
    """The file only *uses* the function (an undefined, SHN_UNDEF, symbol); another file defines it.

    Attributes:
        symbol: The function's name.
        target: The file that references it.
        defined_in: The library that defines it, when one of the file's DT_NEEDED libraries (or
            its version requirement) says so; else None.
    """

    def __init__(self, symbol: str, target: str, defined_in: str | None = None) -> None:
        self.symbol = symbol
        self.target = target
        self.suggestions = ()
        self.defined_in = defined_in
        message = f"{symbol!r} is not defined in {target}: the file only calls it"
        if defined_in:
            message += f"; it is defined in {defined_in}: probe '{defined_in}:{symbol}' instead"
        else:
            message += (
                "; probe the library that defines it instead (see 'ldd "
                f"{target}' for the libraries it loads)"
            )
        UsageError.__init__(self, message)


class NoSymbolsError(SymbolNotFoundError):
    """The file has no function symbols at all: stripped, and no debug information was found."""

    def __init__(
        self, symbol: str, target: str, debug_roots: Sequence[str], has_build_id: bool
    ) -> None:
        self.symbol = symbol
        self.target = target
        self.suggestions = ()
        looked = ", ".join(
            [f"{root}/.build-id/" for root in debug_roots] if has_build_id else debug_roots
        )
        UsageError.__init__(
            self,
            f"no function {symbol!r} in {target}: the file has no function symbols (it is "
            f"stripped and no separate debug information was found under "
            f"{looked or 'any debug directory'}); install its debug symbols (the "
            "-dbg/-dbgsym/-debuginfo package), point RAWPROBE_DEBUG_ROOT at them, or give a "
            "file offset (0x...)",
        )


class LocationError(UsageError):
    """A LOCATION that names no probe-able instruction: an offset outside the function or outside
    every executable segment, or a raw offset that is not at a function's start."""


class OffsetMismatchError(LocationError):
    """The segment-based and section-based file offsets of an address disagree."""


class AmbiguousLocationError(UsageError):
    """A LOCATION that matches several functions where exactly one is needed.

    Attributes:
        location: The LOCATION as given.
        candidates: A description of each match (name and file offset).
    """

    def __init__(self, location: str, target: str, candidates: Sequence[str]) -> None:
        self.location = location
        self.target = target
        self.candidates = tuple(candidates)
        shown = ", ".join(self.candidates[:8])
        more = f" and {len(self.candidates) - 8} more" if len(self.candidates) > 8 else ""
        super().__init__(
            f"{location!r} matches {len(self.candidates)} functions in {target}: {shown}{more}; "
            "name one (add @VERSION, or give its 0xOFFSET)"
        )


class TargetChangedError(UsageError):
    """The file at a probe's path was replaced (or modified) while rawprobe resolved it."""

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(
            f"{path} changed while rawprobe was reading it (replaced or rewritten, by a "
            "package upgrade say): offsets computed for one file must not be planted in "
            "another; run rawprobe again once it is stable"
        )

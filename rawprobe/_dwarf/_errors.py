"""Errors of the DWARF reader, all usage errors: each names something the user can change.

Every class derives from :class:`DwarfError`, itself a :class:`rawprobe.UsageError`, so the
command-line tool exits with status 2 and prints the message, which says what to do.
"""

from __future__ import annotations

from collections.abc import Sequence

from .._errors import UsageError

__all__ = [
    "DwarfError",
    "ExpressionSyntaxError",
    "FunctionNotFoundError",
    "LineNotFoundError",
    "NoDebugInfoError",
    "NotAvailableError",
    "TypeMismatchError",
    "VariableNotFoundError",
]


def _format_ranges(ranges: Sequence[tuple[int, int]], limit: int = 6) -> str:
    """``0x1139-0x1150, 0x1160-0x1170`` (end exclusive), at most ``limit`` ranges."""
    shown = [f"{low:#x}-{high:#x}" for low, high in ranges[:limit]]
    more = len(ranges) - limit
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


class DwarfError(UsageError):
    """Debug information is missing, damaged, or does not have what was asked for."""


class NoDebugInfoError(DwarfError):
    """Neither the file nor a separate debug file for it has DWARF debug information."""

    def __init__(self, path: str, searched: Sequence[str] = ()) -> None:
        self.path = path
        self.searched = tuple(searched)
        message = (
            f"{path} has no DWARF debug information, so variables and source lines cannot be "
            "named; rebuild it with -g, or install its debug package (e.g. the -dbg or "
            "-dbgsym package)"
        )
        if self.searched:
            message += "; looked in " + ", ".join(self.searched)
        super().__init__(message)


class ExpressionSyntaxError(DwarfError):
    """A variable expression (``a->b.c[3]``) that does not parse; ``column`` points into it."""

    def __init__(self, message: str, text: str, column: int) -> None:
        self.text = text
        self.column = column
        self.reason = message
        caret = " " * column + "^"
        super().__init__(f"{message}\n  {text}\n  {caret}")


class FunctionNotFoundError(DwarfError):
    """No function of that name (or none containing that address) in the debug information."""

    def __init__(self, what: str, path: str, suggestions: Sequence[str] = ()) -> None:
        self.what = what
        self.path = path
        self.suggestions = tuple(suggestions)
        message = f"the debug information of {path} has no function {what}"
        if self.suggestions:
            message += "; did you mean " + ", ".join(self.suggestions) + "?"
        super().__init__(message)


class LineNotFoundError(DwarfError):
    """No code for that source line (or no such line, or the line's code belongs to another)."""


class VariableNotFoundError(DwarfError):
    """No variable of that name in scope at the probe address (nor a global of that name)."""

    def __init__(
        self, name: str, where: str, suggestions: Sequence[str] = (), hint: str = ""
    ) -> None:
        self.name = name
        self.where = where
        self.suggestions = tuple(suggestions)
        message = f"no variable {name!r} in scope at {where}"
        if self.suggestions:
            message += "; did you mean " + ", ".join(self.suggestions) + "?"
        if hint:
            message += f"; {hint}"
        super().__init__(message)


class NotAvailableError(DwarfError):
    """The variable exists but its value cannot be read at the probe address.

    Attributes:
        name: The variable (or expression) asked for.
        reason: Why, in words (``optimized out here``, ``split into pieces``...).
        available_ranges: Address ranges ``[low, high)`` (ELF virtual addresses) where its
            value *is* readable, when the debug information says so; empty when nowhere.
    """

    def __init__(
        self,
        name: str,
        where: str,
        reason: str,
        available_ranges: Sequence[tuple[int, int]] = (),
    ) -> None:
        self.name = name
        self.where = where
        self.reason = reason
        self.available_ranges = tuple(available_ranges)
        message = f"{name!r} cannot be read at {where}: {reason}"
        if self.available_ranges:
            message += (
                "; it is readable at " + _format_ranges(self.available_ranges)
                + " (probe a source line or address there)"
            )
        super().__init__(message)


class TypeMismatchError(DwarfError):
    """The expression does not fit the variable's type (``.`` on a pointer, ``[i]`` on an int,
    ``:string`` on a non-character value) or the type cannot be fetched by the kernel."""

"""Errors of USDT probe lookup, all refinements of rawprobe's usage errors.

Each is something the user can act on (another file, another probe name, another way to read
an argument), so all derive from :class:`rawprobe.UsageError` and the command-line tool exits
with status 2.
"""

from __future__ import annotations

from collections.abc import Sequence

from .._errors import NotElfError, UsageError

__all__ = ["UsdtArgumentError", "UsdtNotFoundError", "UsdtNoteError"]


class UsdtNoteError(NotElfError):
    """A ``.note.stapsdt`` section (or one of its notes) is malformed or truncated."""


class UsdtNotFoundError(UsageError):
    """No USDT probe of that name in the file, or a name that several providers share.

    Attributes:
        location: The ``[PROVIDER:]NAME`` asked for.
        path: The file searched.
        available: ``PROVIDER:NAME`` of the probes the file does have (or of the ambiguous
            matches), sorted.
    """

    def __init__(
        self, message: str, location: str = "", path: str = "", available: Sequence[str] = ()
    ) -> None:
        self.location = location
        self.path = path
        self.available = tuple(available)
        super().__init__(message)


class UsdtArgumentError(UsageError):
    """An SDT argument spec that rawprobe cannot translate into a fetch (it does not guess).

    Attributes:
        spec: The argument spec as the note writes it (``8@(%rax,%rdx,8)``).
        reason: Why it cannot be translated.
    """

    def __init__(self, spec: str, reason: str) -> None:
        self.spec = spec
        self.reason = reason
        super().__init__(f"cannot translate the USDT argument spec {spec!r}: {reason}")

"""How rawprobe retires a public name: it warns for one release, then removes it.

A name deprecated in release X.Y keeps working through X.Y with a :class:`DeprecationWarning`
that says what to use instead and in which release it goes; CHANGELOG.md lists it under
"Deprecated" for X.Y and under "Removed" for the release after.
"""

from __future__ import annotations

import warnings

__all__ = ["warn_deprecated"]


def warn_deprecated(name: str, *, since: str, removal: str, instead: str) -> None:
    """Warn that ``name`` is deprecated (to be called by the deprecated code itself).

    Args:
        name: What is deprecated (``Tracer.old_method``).
        since: The release that deprecated it.
        removal: The release that will remove it.
        instead: What to use instead.
    """
    warnings.warn(
        f"{name} is deprecated since rawprobe {since} and will be removed in {removal}; "
        f"use {instead}",
        DeprecationWarning,
        stacklevel=3,
    )

"""The running kernel's version, for features that are known by version only."""

from __future__ import annotations

import os
import re

__all__ = ["kernel_version", "parse_kernel_version"]


def parse_kernel_version(release: str) -> tuple[int, int, int]:
    """``(major, minor, patch)`` of a kernel release string (``6.8.0-45-generic``).

    Raises:
        ValueError: Not a kernel release.
    """
    match = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", release.strip())
    if not match:
        raise ValueError(f"not a kernel release: {release!r}")
    return int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)


def kernel_version() -> tuple[int, int, int]:
    """The running kernel's ``(major, minor, patch)``; ``(0, 0, 0)`` when it cannot be read."""
    try:
        return parse_kernel_version(os.uname().release)
    except ValueError:
        return 0, 0, 0

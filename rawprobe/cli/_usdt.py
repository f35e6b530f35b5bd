"""``rawprobe list --usdt``: USDT probes of a file."""

from __future__ import annotations

from typing import TextIO

from .._errors import UsageError

__all__ = ["run_list_usdt"]


def run_list_usdt(target: str, pattern: str | None, *, pid: int | None, json_output: bool,
                  out: TextIO) -> int:
    """List the USDT probes of TARGET.

    Raises:
        UsageError: Always, in this version.
    """
    raise UsageError("listing USDT probes is not supported by this version")

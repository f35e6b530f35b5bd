"""USDT (SystemTap SDT) probes: reading ``.note.stapsdt`` and translating argument specs.

This version of rawprobe does not read SDT notes yet; the interface below is what the Tracer
uses.
"""

from __future__ import annotations

from dataclasses import dataclass

from .._errors import UsageError
from .._fetchargs import UsdtArgument

__all__ = ["UsdtProbe", "find_usdt_probes"]


@dataclass(frozen=True)
class UsdtProbe:
    """One USDT probe site.

    Attributes:
        provider: The provider (``python``).
        name: The probe name (``function__entry``).
        address: The probe's address in the ELF.
        file_offset: Where to plant the uprobe.
        semaphore_offset: File offset of the probe's semaphore (the kernel's ref_ctr_offset),
            or ``None`` when the probe has none.
        arguments: The probe's arguments, translated from the note's specs.
    """

    provider: str
    name: str
    address: int
    file_offset: int
    semaphore_offset: int | None
    arguments: tuple[UsdtArgument, ...]


def find_usdt_probes(path: str, location: str) -> list[UsdtProbe]:
    """Every site of the USDT probe ``[PROVIDER:]NAME`` in ``path``.

    Raises:
        UsageError: Always, in this version.
    """
    raise UsageError(f"USDT probes ({path}:{location}) are not supported by this version")

"""Plain records describing symbols and resolved probe locations."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Location", "Symbol"]


@dataclass(frozen=True)
class Symbol:
    """A function symbol of an ELF file.

    Attributes:
        name: The symbol's name as the symbol table spells it (without a version suffix).
        address: ``st_value``, the virtual address in the ELF's own address space.
        size: ``st_size`` in bytes (0 when the table does not say).
        file_offset: Where ``address`` lies in the file, through its PT_LOAD segment.
        source: Which symbol table it came from (``dynsym``, ``symtab``, ...).
        kind: ``func`` or ``ifunc`` (an IFUNC symbol's address is its resolver).
    """

    name: str
    address: int
    size: int
    file_offset: int
    source: str
    kind: str = "func"


@dataclass(frozen=True)
class Location:
    """A resolved probe location: exactly what the kernel's uprobe needs, plus provenance.

    Attributes:
        path: The file the kernel will open (absolute).
        file_offset: Offset of the probed instruction in that file.
        symbol: The function containing it, if known.
        symbol_offset: Offset of the probed instruction from the start of ``symbol``.
        address: The probed instruction's virtual address in the ELF.
        source: The symbol source that gave the address (``offset`` for a raw ``0x`` offset).
    """

    path: str
    file_offset: int
    symbol: str | None
    symbol_offset: int
    address: int
    source: str

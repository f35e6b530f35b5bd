"""The ELF facts the DWARF reader needs, read through rawprobe's one ELF reader
(:mod:`rawprobe._symbols.elf`): where the debug information is, and how addresses map.

- Which file holds the DWARF: the file itself when it has ``.debug_info``, else a separate debug
  file found by build-id (``/usr/lib/debug/.build-id/xx/yyyy.debug``, the note must match) or by
  ``.gnu_debuglink`` (the CRC-32 must match) — the GDB manual's "Separate Debug Files", the
  search rawprobe's symbol resolver also makes (``rawprobe._symbols._debuginfo``).
- ``PT_LOAD`` segments, to turn a global's link-time address into the number the kernel's
  ``@+N`` fetch-arg takes.
- Symbol names of functions and data, for names the DWARF spells differently (``malloc`` is
  ``__libc_malloc`` there) and for ``extern`` variables defined in another unit.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

from .._symbols._debuginfo import (
    build_id_candidates,
    debug_roots,
    debuglink_candidates,
    file_crc32,
)
from .._symbols.elf import ElfReader, c_string, read_elf

__all__ = ["LoadSegment", "has_section", "load_segments", "locate_debug_file", "symbols"]

_PF_X = 1
_STT_OBJECT, _STT_FUNC, _STT_TLS, _STT_GNU_IFUNC = 1, 2, 6, 10
_SYMBOL_KINDS = (_STT_OBJECT, _STT_FUNC, _STT_TLS, _STT_GNU_IFUNC)


@dataclass(frozen=True)
class LoadSegment:
    """A ``PT_LOAD`` program header."""

    vaddr: int
    memsz: int
    offset: int
    executable: bool

    def contains(self, address: int) -> bool:
        """Whether the segment's memory image holds ``address``."""
        return self.vaddr <= address < self.vaddr + self.memsz


def has_section(reader: ElfReader, name: str) -> bool:
    """Whether a section of that name holds data (not ``SHT_NOBITS``)."""
    section = reader.section(name)
    return section is not None and section["sh_type"] != "SHT_NOBITS" and \
        section["sh_size"] > 0


def _debuglink(reader: ElfReader) -> tuple[str, int] | None:
    """``.gnu_debuglink``: the debug file's name and the CRC-32 of its content."""
    section = reader.section(".gnu_debuglink")
    if section is None:
        return None
    data = reader.section_bytes(section)
    end = data.find(b"\0")
    if end <= 0:
        return None
    crc_at = (end + 4) & ~3
    if len(data) < crc_at + 4:
        return None
    (crc,) = struct.unpack_from("<I", data, crc_at)
    return data[:end].decode("utf-8", "replace"), crc


def load_segments(reader: ElfReader) -> list[LoadSegment]:
    """The ``PT_LOAD`` segments."""
    return [LoadSegment(vaddr, memsz, offset, bool(flags & _PF_X))
            for vaddr, memsz, offset, _, flags in reader.load_segments()]


def symbols(reader: ElfReader) -> dict[str, list[tuple[int, int]]]:
    """Defined function and data symbols by name: (value, ``STT_*`` type) pairs, from
    ``.symtab`` and ``.dynsym``."""
    table: dict[str, list[tuple[int, int]]] = {}
    for symbol_table in reader.symbol_tables():
        strings = symbol_table.strings
        for name_at, info, _, shndx, value, _ in symbol_table.entries:
            kind = info & 0xF
            if shndx == 0 or kind not in _SYMBOL_KINDS:
                continue
            name = c_string(strings, name_at).split("@", 1)[0]
            entries = table.setdefault(name, [])
            if (value, kind) not in entries:
                entries.append((value, kind))
    return table


def _matching_debug_file(candidate: str, build_id: str, crc: int | None) -> ElfReader | None:
    """``candidate`` opened, when it exists, has DWARF and matches the build-id or CRC."""
    if not os.path.isfile(candidate):
        return None
    try:
        # file_crc32 and read_elf open regular files only, without blocking: the name comes
        # from the ELF file, and a FIFO or a device may have replaced the file since isfile.
        if crc is not None and file_crc32(candidate) != crc:
            return None
        debug = read_elf(candidate)
    except Exception:  # an unreadable candidate is just not the one
        return None
    try:
        if has_section(debug, ".debug_info") and \
                (not build_id or debug.build_id() in ("", build_id)):
            return debug
    except Exception:  # nor is one whose headers are damaged
        pass
    debug.close()
    return None


def locate_debug_file(
    target: ElfReader, roots: str | list[str] | None = None
) -> tuple[ElfReader | None, str, list[str]]:
    """The file holding ``target``'s DWARF, and how it was found.

    Args:
        target: The probed file, open.
        roots: Global debug directories (None: ``$RAWPROBE_DEBUG_ROOT`` or ``/usr/lib/debug``).

    Returns:
        (the file — ``target`` itself when it has DWARF, else a separate debug file opened here,
        or None when there is none —, the source: ``self``, ``build-id`` or ``debuglink``, the
        paths searched).
    """
    if has_section(target, ".debug_info"):
        return target, "self", []
    searched: list[str] = []
    search_roots = debug_roots(roots)
    build_id = target.build_id()
    if build_id:
        for candidate in build_id_candidates(build_id, search_roots):
            searched.append(candidate)
            found = _matching_debug_file(candidate, build_id, None)
            if found is not None:
                return found, "build-id", searched
    link = _debuglink(target)
    if link is not None:
        name, crc = link
        for candidate in debuglink_candidates(target.path, name, search_roots):
            searched.append(candidate)
            found = _matching_debug_file(candidate, build_id, crc)
            if found is not None:
                return found, "debuglink", searched
    return None, "", searched

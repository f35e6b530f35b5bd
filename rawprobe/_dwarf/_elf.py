"""The ELF facts the DWARF reader needs: where the debug information is, and how addresses map.

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
from typing import Any, BinaryIO

from .._host.files import open_target
from .._symbols._debuginfo import (
    build_id_candidates,
    debug_roots,
    debuglink_candidates,
    file_crc32,
)

__all__ = ["ElfFile", "LoadSegment", "locate_debug_file"]

_PT_LOAD = 1
_PF_X = 1
_SHT_NOBITS = 8
_SHT_SYMTAB, _SHT_DYNSYM = 2, 11
_SYM64 = struct.Struct("<IBBHQQ")  # Elf64_Sym: st_name, st_info, st_other, st_shndx, value, size
_STT_OBJECT, _STT_FUNC, _STT_TLS, _STT_GNU_IFUNC = 1, 2, 6, 10


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


class ElfFile:
    """An open ELF file read with pyelftools; ``close()`` it (or use ``with``).

    Args:
        path: The file.

    Raises:
        TargetNotFoundError: It cannot be opened.
        NotElfError: A directory (other non-ELF files raise pyelftools' ``ELFError``).
    """

    def __init__(self, path: str) -> None:
        from elftools.elf.elffile import ELFFile

        self.path = path
        self.stream: BinaryIO
        self.stream, self.size = open_target(path)
        try:
            self.elf: Any = ELFFile(self.stream)
        except BaseException:
            self.stream.close()
            raise
        self._symbols: dict[str, list[tuple[int, int]]] | None = None

    def close(self) -> None:
        """Close the file."""
        self.stream.close()

    def __enter__(self) -> ElfFile:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @property
    def machine(self) -> int:
        """``e_machine`` as a number."""
        from elftools.elf.enums import ENUM_E_MACHINE

        value = self.elf.header["e_machine"]
        return int(ENUM_E_MACHINE.get(value, value)) if isinstance(value, str) else int(value)

    def has_section(self, name: str) -> bool:
        """Whether a section of that name holds data (not ``SHT_NOBITS``)."""
        section = self.elf.get_section_by_name(name)
        return section is not None and section["sh_type"] != "SHT_NOBITS" and \
            section["sh_size"] > 0

    def has_dwarf(self) -> bool:
        """Whether the file has its own DWARF debug information."""
        return self.has_section(".debug_info")

    def build_id(self) -> str:
        """The ``NT_GNU_BUILD_ID`` note in lowercase hex, or ""."""
        for section in self.elf.iter_sections():
            if section["sh_type"] != "SHT_NOTE":
                continue
            for note in section.iter_notes():
                if note["n_type"] == "NT_GNU_BUILD_ID" and note["n_name"] == "GNU":
                    return str(note["n_desc"])
        return ""

    def debuglink(self) -> tuple[str, int] | None:
        """``.gnu_debuglink``: the debug file's name and the CRC-32 of its content."""
        section = self.elf.get_section_by_name(".gnu_debuglink")
        if section is None:
            return None
        data = section.data()
        end = data.find(b"\0")
        if end <= 0:
            return None
        crc_at = (end + 4) & ~3
        if len(data) < crc_at + 4:
            return None
        (crc,) = struct.unpack_from("<I", data, crc_at)
        return data[:end].decode("utf-8", "replace"), crc

    def load_segments(self) -> list[LoadSegment]:
        """The ``PT_LOAD`` segments."""
        return [
            LoadSegment(segment["p_vaddr"], segment["p_memsz"], segment["p_offset"],
                        bool(segment["p_flags"] & _PF_X))
            for segment in self.elf.iter_segments() if segment["p_type"] == "PT_LOAD"
        ]

    def symbols(self) -> dict[str, list[tuple[int, int]]]:
        """Defined function and data symbols by name: (value, ``STT_*`` type) pairs, from
        ``.symtab`` and ``.dynsym``. Entries are decoded with :mod:`struct`, not one pyelftools
        object each: libc's debug file has tens of thousands."""
        if self._symbols is None:
            table: dict[str, list[tuple[int, int]]] = {}
            for section in self.elf.iter_sections():
                if section["sh_type"] not in ("SHT_SYMTAB", "SHT_DYNSYM") or \
                        section["sh_entsize"] != _SYM64.size:
                    continue
                strings = self.elf.get_section(section["sh_link"]).data()
                data = section.data()
                for entry_at in range(_SYM64.size, len(data) - _SYM64.size + 1, _SYM64.size):
                    name_at, info, _, shndx, value, _ = _SYM64.unpack_from(data, entry_at)
                    kind = info & 0xF
                    if shndx == 0 or kind not in (_STT_OBJECT, _STT_FUNC, _STT_TLS, _STT_GNU_IFUNC):
                        continue
                    end = strings.find(b"\0", name_at)
                    name = strings[name_at:end].decode("utf-8", "replace").split("@", 1)[0]
                    entry = (value, kind)
                    entries = table.setdefault(name, [])
                    if entry not in entries:
                        entries.append(entry)
            self._symbols = table
        return self._symbols


def _matching_debug_file(candidate: str, build_id: str, crc: int | None) -> ElfFile | None:
    """``candidate`` opened, when it exists, has DWARF and matches the build-id or CRC."""
    if not os.path.isfile(candidate):
        return None
    try:
        # file_crc32 and ElfFile open regular files only, without blocking: the name comes
        # from the ELF file, and a FIFO or a device may have replaced the file since isfile.
        if crc is not None and file_crc32(candidate) != crc:
            return None
        debug = ElfFile(candidate)
    except Exception:  # an unreadable candidate is just not the one
        return None
    try:
        if debug.has_dwarf() and (not build_id or debug.build_id() in ("", build_id)):
            return debug
    except Exception:  # nor is one whose headers are damaged
        pass
    debug.close()
    return None


def locate_debug_file(
    target: ElfFile, roots: str | list[str] | None = None
) -> tuple[ElfFile, str, list[str]]:
    """The file holding ``target``'s DWARF, and how it was found.

    Args:
        target: The probed file, open.
        roots: Global debug directories (None: ``$RAWPROBE_DEBUG_ROOT`` or ``/usr/lib/debug``).

    Returns:
        (the file — ``target`` itself when it has DWARF, else a separate debug file opened here —,
        the source: ``self``, ``build-id`` or ``debuglink``, the paths searched). When nothing is
        found the first item is None.
    """
    if target.has_dwarf():
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
    link = target.debuglink()
    if link is not None:
        name, crc = link
        for candidate in debuglink_candidates(target.path, name, search_roots):
            searched.append(candidate)
            found = _matching_debug_file(candidate, build_id, crc)
            if found is not None:
                return found, "debuglink", searched
    return None, "", searched  # type: ignore[return-value]

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
import zlib
from dataclasses import dataclass

from .._symbols._debuginfo import (
    build_id_candidates,
    debug_roots,
    debuglink_candidates,
    file_crc32,
)
from .._symbols.elf import ElfReader, c_string, read_elf
from ._errors import DwarfError

__all__ = [
    "MAX_SECTION_SIZE",
    "LoadSegment",
    "check_compressed_sections",
    "has_section",
    "load_segments",
    "locate_debug_file",
    "symbols",
]

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


# The most a debug section may inflate to. The DWARF reader holds each section it reads in
# memory whole, so a compressed section is measured (inflated and thrown away, a chunk at a
# time) before it is read: a debug file found by name must not exhaust rawprobe's memory.
MAX_SECTION_SIZE = 1 << 30
_SHF_COMPRESSED = 1 << 11
_ELFCOMPRESS_ZLIB = 1
_CHDR = struct.Struct("<IIQQ")  # Elf64_Chdr: ch_type, ch_reserved, ch_size, ch_addralign
_ZDEBUG = struct.Struct(">4sQ")  # .zdebug_*: "ZLIB", then the inflated size, big-endian
_CHUNK = 1 << 20


def check_compressed_sections(reader: ElfReader) -> None:
    """Refuse a file whose compressed debug sections would inflate past
    :data:`MAX_SECTION_SIZE`, or past the size they declare, before the DWARF reader inflates
    them whole.

    Raises:
        DwarfError: A section is compressed in a way rawprobe does not read, or too large.
    """
    for section in reader.sections:
        name = section.name
        if not name.startswith((".debug_", ".zdebug_")) or section["sh_type"] == "SHT_NOBITS":
            continue
        offset, size = section["sh_offset"], section["sh_size"]
        if section["sh_flags"] & _SHF_COMPRESSED:
            head = _read_at(reader, offset, _CHDR.size)
            kind, _reserved, declared, _align = _CHDR.unpack(head)
            if kind != _ELFCOMPRESS_ZLIB:
                raise DwarfError(f"{reader.path}: section {name} is compressed with a method "
                                 f"rawprobe does not read (ch_type {kind}); decompress it with "
                                 "'objcopy --decompress-debug-sections'")
            start = _CHDR.size
        elif name.startswith(".zdebug_"):
            magic, declared = _ZDEBUG.unpack(_read_at(reader, offset, _ZDEBUG.size))
            if magic != b"ZLIB":
                raise DwarfError(f"{reader.path}: section {name} is not zlib-compressed")
            start = _ZDEBUG.size
        else:
            continue
        if declared > MAX_SECTION_SIZE:
            raise DwarfError(f"{reader.path}: section {name} inflates to {declared >> 20} MiB, "
                             f"more than rawprobe reads ({MAX_SECTION_SIZE >> 20} MiB)")
        _measure(reader, name, offset + start, size - start, declared)


def _read_at(reader: ElfReader, offset: int, size: int) -> bytes:
    reader.stream.seek(offset)
    data = reader.stream.read(size)
    if len(data) != size:
        raise DwarfError(f"{reader.path}: a compressed debug section lies past the end of the "
                         "file (truncated or damaged)")
    return data


def _measure(reader: ElfReader, name: str, offset: int, size: int, declared: int) -> None:
    """Inflate ``size`` bytes at ``offset`` a chunk at a time, keeping nothing, and fail as soon
    as more than ``declared`` bytes come out."""
    inflater = zlib.decompressobj()
    produced = 0
    reader.stream.seek(offset)
    remaining = max(size, 0)
    try:
        while remaining and not inflater.eof:
            pending = reader.stream.read(min(_CHUNK, remaining))
            if not pending:
                break
            remaining -= len(pending)
            while pending and produced <= declared:
                # max_length: at most one byte past what the section declares
                produced += len(inflater.decompress(pending, declared + 1 - produced))
                pending = inflater.unconsumed_tail
    except zlib.error as error:
        raise DwarfError(f"{reader.path}: section {name} cannot be inflated ({error})") from None
    if produced > declared:
        raise DwarfError(f"{reader.path}: section {name} inflates past the {declared} bytes it "
                         "declares (damaged, or built to exhaust memory)")


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

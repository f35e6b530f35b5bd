"""The one ELF reader: every module that reads an ELF file reads it through :class:`ElfReader`.

pyelftools parses the structure (the ELF header, program and section headers, the dynamic
section); the bulk tables inside sections (``Elf64_Sym`` arrays, notes) are decoded with
:mod:`struct` straight from the section bytes, which is about forty times faster than
pyelftools' per-entry objects on a library with 50,000 symbols. Every file is opened as a
regular file only (:func:`rawprobe._host.files.open_target`), checked to be a 64-bit executable
or shared library of this host's machine (:func:`check_elf_header`), and every bound is checked
against the file size, so a damaged file ends in :class:`CorruptElfError`, never in another
exception.
"""

from __future__ import annotations

import os
import struct
from contextlib import contextmanager

from .._errors import NotElfError, TargetNotFoundError
from .._host.files import open_target
from .._sys.arch import ELF_MACHINE_NAMES, arch_for_elf_machine, host_arch
from ._errors import CorruptElfError, UnsupportedElfError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any, BinaryIO

__all__ = ["ElfReader", "SymbolTable", "c_string", "check_elf_header", "damaged", "open_elf",
           "parse_notes", "read_elf"]

# ELF gABI constants.
_ELFCLASS32, _ELFCLASS64 = 1, 2
_ELFDATA2LSB, _ELFDATA2MSB = 1, 2
_ET_REL, _ET_EXEC, _ET_DYN, _ET_CORE = 1, 2, 3, 4
_NT_GNU_BUILD_ID = 3

_EHDR64 = struct.Struct("<16sHHIQQQIHHHHHH")
_SYM64 = struct.Struct("<IBBHQQ")  # st_name, st_info, st_other, st_shndx, st_value, st_size
_NOTE = struct.Struct("<III")


def check_elf_header(head: bytes, path: str, file_size: int) -> None:
    """Refuse anything but a 64-bit executable or shared library of this host's machine.

    Args:
        head: The first 64 bytes of the file (or all of it, if shorter).
        path: The file's name, for messages.
        file_size: Its size in bytes.

    Raises:
        NotElfError: Not an ELF file at all.
        CorruptElfError: An ELF header that is truncated or inconsistent.
        UnsupportedElfError: 32-bit, big-endian, another machine, an object file or a core dump.
    """
    if not head.startswith(b"\x7fELF"):
        hint = ""
        if head.startswith(b"#!"):
            hint = " (a script: probe its interpreter instead)"
        elif head[:2] in (b"PK", b"\xca\xfe"):
            hint = " (an archive or class file)"
        raise NotElfError(f"{path}: not an ELF file{hint}; give an executable or shared library")
    if len(head) < 20:
        raise CorruptElfError(f"{path}: truncated ELF file ({file_size} bytes)")
    elf_class, elf_data = head[4], head[5]
    if elf_class not in (_ELFCLASS32, _ELFCLASS64) or elf_data not in (_ELFDATA2LSB, _ELFDATA2MSB):
        raise CorruptElfError(f"{path}: corrupt ELF header (class {elf_class}, data {elf_data})")
    order = "<" if elf_data == _ELFDATA2LSB else ">"
    e_type, e_machine = struct.unpack_from(order + "HH", head, 16)
    host = host_arch()
    host_name = host.machine if host else os.uname().machine
    machine_name = ELF_MACHINE_NAMES.get(e_machine, f"machine {e_machine}")
    arch = arch_for_elf_machine(e_machine)
    if elf_class == _ELFCLASS32:
        raise UnsupportedElfError(
            f"{path}: a 32-bit ELF file ({machine_name}); rawprobe probes 64-bit {host_name} "
            "programs on this host"
        )
    if host is None:
        raise UnsupportedElfError(
            f"{path}: rawprobe cannot probe programs on this host's machine ({host_name})"
        )
    if arch is None or arch is not host or (elf_data == _ELFDATA2LSB) != host.little_endian:
        raise UnsupportedElfError(
            f"{path}: built for {machine_name}; this host is {host_name} and the kernel can only "
            f"probe {host_name} code"
        )
    if e_type == _ET_REL:
        raise UnsupportedElfError(
            f"{path}: an object file (ET_REL) is never run; link it into an executable or "
            "shared library and probe that"
        )
    if e_type == _ET_CORE:
        raise UnsupportedElfError(f"{path}: a core dump, not a program")
    if e_type not in (_ET_EXEC, _ET_DYN):
        raise CorruptElfError(f"{path}: unknown ELF file type {e_type}")
    if len(head) < _EHDR64.size:
        raise CorruptElfError(f"{path}: truncated ELF header ({file_size} bytes)")
    (_ident, _type, _machine, _version, _entry, phoff, shoff, _flags, _ehsize, phentsize, phnum,
     shentsize, shnum, _shstrndx) = _EHDR64.unpack_from(head)
    if phnum and (phentsize != 56 or phoff + phnum * phentsize > file_size):
        raise CorruptElfError(
            f"{path}: program headers lie past the end of the file (truncated or damaged)"
        )
    if shoff and (shentsize != 64 or shoff + max(shnum, 1) * shentsize > file_size):
        raise CorruptElfError(
            f"{path}: section headers lie past the end of the file (truncated or damaged)"
        )


# -- small decoders over raw bytes ----------------------------------------------------------


def c_string(table: bytes, offset: int) -> str:
    if offset >= len(table):
        return ""
    end = table.find(b"\0", offset)
    if end < 0:
        end = len(table)
    return table[offset:end].decode("utf-8", "backslashreplace")


def parse_notes(data: bytes) -> Iterator[tuple[bytes, int, bytes]]:
    """(name, type, descriptor) of each ELF note (gABI "Note Section"; 4-byte alignment)."""
    position = 0
    while position + _NOTE.size <= len(data):
        namesz, descsz, note_type = _NOTE.unpack_from(data, position)
        name_start = position + _NOTE.size
        desc_start = name_start + ((namesz + 3) & ~3)
        end = desc_start + ((descsz + 3) & ~3)
        if desc_start + descsz > len(data):
            return
        yield data[name_start : name_start + namesz].rstrip(b"\0"), note_type, data[
            desc_start : desc_start + descsz
        ]
        position = end


# -- the reader -----------------------------------------------------------------------------


class SymbolTable:
    """A symbol table's raw entries and its string table."""

    def __init__(self, entries: list[tuple[int, int, int, int, int, int]], strings: bytes) -> None:
        self.entries = entries
        self.strings = strings


class ElfReader:
    """One opened ELF file, with every read bounds-checked against the file's size."""

    def __init__(self, stream: BinaryIO, path: str, file_size: int) -> None:
        from elftools.elf.elffile import ELFFile

        self.path = path
        self.file_size = file_size
        self.stream = stream
        self.elf = ELFFile(stream)
        self.sections = list(self.elf.iter_sections())
        # Position-independent: a shared library or a PIE (ET_DYN).
        self.relocatable = self.elf["e_type"] == "ET_DYN"

    def section(self, name: str) -> Any | None:
        for section in self.sections:
            if section.name == name:
                return section
        return None

    def section_bytes(self, section: Any) -> bytes:
        if section["sh_type"] == "SHT_NOBITS":
            return b""
        offset, size = section["sh_offset"], section["sh_size"]
        if offset + size > self.file_size:
            raise CorruptElfError(
                f"{self.path}: section {section.name or '?'} lies past the end of the file "
                "(truncated or damaged)"
            )
        data: bytes = section.data()
        return data

    def symbol_tables(self) -> list[SymbolTable]:
        """The file's own symbol tables: ``.symtab`` and ``.dynsym``, those present."""
        return [self.symbol_table(section) for name in (".symtab", ".dynsym")
                if (section := self.section(name)) is not None]

    def symbol_table(self, section: Any) -> SymbolTable:
        data = self.section_bytes(section)
        link = section["sh_link"]
        if not 0 < link < len(self.sections):
            raise CorruptElfError(f"{self.path}: {section.name} has no string table")
        strings = self.section_bytes(self.sections[link])
        usable = len(data) - len(data) % _SYM64.size
        return SymbolTable(list(_SYM64.iter_unpack(data[:usable])), strings)

    def load_segments(self) -> list[tuple[int, int, int, int, int]]:
        segments = []
        for segment in self.elf.iter_segments():
            if segment["p_type"] == "PT_LOAD":
                segments.append(
                    (
                        segment["p_vaddr"],
                        segment["p_memsz"],
                        segment["p_offset"],
                        segment["p_filesz"],
                        segment["p_flags"],
                    )
                )
        return segments

    def notes(self) -> list[tuple[bytes, int, bytes]]:
        found: list[tuple[bytes, int, bytes]] = []
        note_sections = [s for s in self.sections if s["sh_type"] == "SHT_NOTE"]
        if note_sections:
            for section in note_sections:
                found += parse_notes(self.section_bytes(section))
            return found
        for segment in self.elf.iter_segments():
            if segment["p_type"] == "PT_NOTE":
                offset, size = segment["p_offset"], segment["p_filesz"]
                if offset + size <= self.file_size:
                    found += parse_notes(segment.data())
        return found

    def build_id(self) -> str:
        for name, note_type, descriptor in self.notes():
            if name == b"GNU" and note_type == _NT_GNU_BUILD_ID and descriptor:
                return descriptor.hex()
        return ""

    def dynamic_tags(self) -> tuple[list[str], list[str]]:
        """(DT_NEEDED names, DT_RUNPATH or else DT_RPATH directories)."""
        needed: list[str] = []
        runpath: list[str] = []
        rpath: list[str] = []
        section = self.section(".dynamic")
        if section is None or section["sh_type"] == "SHT_NOBITS":
            return needed, runpath
        self.section_bytes(section)  # bounds check before pyelftools walks it
        for tag in section.iter_tags():
            kind = tag.entry.d_tag
            if kind == "DT_NEEDED":
                needed.append(tag.needed)
            elif kind == "DT_RUNPATH":
                runpath += tag.runpath.split(":")
            elif kind == "DT_RPATH":
                rpath += tag.rpath.split(":")
            elif kind == "DT_NULL":
                break
        # ld.so ignores DT_RPATH when DT_RUNPATH is present (glibc elf/dl-load.c).
        return needed, [d for d in (runpath or rpath) if d]

    def close(self) -> None:
        """Close the file (for a reader from :func:`read_elf`)."""
        self.stream.close()


def read_elf(path: str) -> ElfReader:
    """Open ``path`` as an ELF file rawprobe can probe, for as long as the caller keeps it:
    the caller closes it (:meth:`ElfReader.close`). :func:`open_elf` for a block.

    Raises:
        TargetNotFoundError: The file cannot be opened.
        NotElfError: Not an ELF file (:class:`CorruptElfError` when damaged,
            :class:`UnsupportedElfError` when of another kind or machine).
    """
    stream, size = open_target(path)
    try:
        try:
            # No further than the size fstat gave: /proc/self/mem and friends claim size 0.
            head = stream.read(min(64, size))
        except OSError as error:
            raise TargetNotFoundError(
                f"{path}: {(error.strerror or 'cannot read').lower()}") from None
        check_elf_header(head, path, size)
        stream.seek(0)
        try:
            return ElfReader(stream, path, size)
        except (NotElfError, TargetNotFoundError):
            raise
        except Exception as error:
            raise damaged(path, error) from None
    except BaseException:
        stream.close()
        raise


@contextmanager
def open_elf(path: str) -> Iterator[ElfReader]:
    """Open ``path`` as an ELF file rawprobe can probe, for the block's duration.

    Raises:
        TargetNotFoundError: The file cannot be opened.
        NotElfError: Not an ELF file (:class:`CorruptElfError` when damaged,
            :class:`UnsupportedElfError` when of another kind or machine).
    """
    reader = read_elf(path)
    try:
        yield reader
    finally:
        reader.close()


def damaged(path: str, error: Exception) -> CorruptElfError:
    """The one error for a file pyelftools could not read: it reports damage with ELFError,
    ELFParseError, struct.error, construct errors, ValueError, IndexError, KeyError,
    UnicodeDecodeError..., and one clear error is better for the user than any of those."""
    return CorruptElfError(
        f"{path}: damaged ELF file ({type(error).__name__}: {error}); rawprobe cannot probe it"
    )

"""USDT probe sites of an ELF file: its SDT notes, placed at file offsets the kernel takes.

A note gives link-time addresses. The probe's address becomes a file offset through the
executable PT_LOAD segment that contains it (``file_offset = address - p_vaddr + p_offset``),
and the semaphore's address through the writable PT_LOAD segment that contains it (the
semaphore lives in ``.probes``, sys/sdt.h): the uprobe PMU's ``ref_ctr_offset`` is a file
offset too (kernel/events/uprobes.c, ``uprobe_register()``), which the kernel maps in every
process that maps the file and raises while the probe is planted.

Prelink adjustment (SystemTap wiki, "UserSpaceProbeImplementation", quoted in libbpf's usdt.c):
the note is not allocated, so prelink does not rewrite it; it moves the ``.stapsdt.base``
section instead. Each note records the base it was written against, and the difference
between the section's actual ``sh_addr`` and that base moves the probe's address, and its
semaphore's.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from .._errors import NotElfError
from .._host.files import open_target, stat_target
from ._errors import UsdtNoteError
from ._notes import SdtNote, parse_stapsdt_notes

__all__ = ["UsdtFile", "UsdtSite", "open_usdt_file"]

_NOTE_SECTION = ".note.stapsdt"
_BASE_SECTION = ".stapsdt.base"
_PF_X = 1
_PF_W = 2
# e_machine values (ELF gABI; include/uapi/linux/elf-em.h) and the kernel's names for them.
# What pyelftools raises besides ELFError on damaged headers: its bundled construct's errors,
# and plain errors from values that point nowhere.
_DAMAGED_FILE_ERRORS: tuple[type[Exception], ...] = (
    ELFError, ValueError, KeyError, IndexError, OverflowError, UnicodeDecodeError, struct.error,
)
try:
    from elftools.construct.core import ConstructError as _ElftoolsConstructError

    _DAMAGED_FILE_ERRORS += (_ElftoolsConstructError,)
except ImportError:  # pyelftools without a bundled construct
    pass

_MACHINE_NAMES = {"EM_X86_64": "x86_64", "EM_AARCH64": "aarch64", "EM_386": "i386",
                  "EM_ARM": "arm", "EM_PPC64": "ppc64", "EM_S390": "s390",
                  "EM_RISCV": "riscv"}


@dataclass(frozen=True)
class UsdtSite:
    """One USDT probe site, placed in its file, its arguments still as the note writes them.

    Attributes:
        path: The file.
        provider: The provider (``python``).
        name: The probe name (``function__entry``).
        address: The probe's link-time address (after prelink adjustment).
        file_offset: Where the probe's ``nop`` is in the file: where to plant the uprobe.
        semaphore_address: The semaphore's link-time address, or ``None``.
        semaphore_offset: The semaphore's file offset (the kernel's ``ref_ctr_offset``), or
            ``None`` when the probe has no semaphore.
        argument_specs: The argument specs (``-4@%edi``), one per argument.
    """

    path: str
    provider: str
    name: str
    address: int
    file_offset: int
    semaphore_address: int | None
    semaphore_offset: int | None
    argument_specs: tuple[str, ...]

    @property
    def qualified_name(self) -> str:
        """``PROVIDER:NAME``."""
        return f"{self.provider}:{self.name}"


@dataclass(frozen=True)
class _Segment:
    vaddr: int
    memsz: int
    offset: int
    filesz: int
    flags: int

    def contains(self, address: int) -> bool:
        return self.vaddr <= address < self.vaddr + self.memsz


class UsdtFile:
    """The USDT probe sites of one ELF file, and what translating their arguments needs.

    Attributes:
        path: The file.
        machine: Its machine, by the kernel's name (``x86_64``).
        relocatable: Whether it is position-independent (ET_DYN: a shared library or PIE).
        has_notes: Whether it has a ``.note.stapsdt`` section at all.
        sites: Every probe site, in note order.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._symbols: dict[str, set[int]] | None = None
        self._has_symbol_tables = False
        stream, _size = open_target(path)
        with stream:
            if stream.read(4) != b"\x7fELF":
                raise NotElfError(f"{path}: not an ELF file (no ELF magic)")
            stream.seek(0)
            try:
                self._read(ELFFile(stream))
            except _DAMAGED_FILE_ERRORS as error:
                raise NotElfError(f"{path}: corrupt ELF file ({error})") from None

    def _read(self, elf: Any) -> None:
        machine = elf["e_machine"]
        self.machine = _MACHINE_NAMES.get(machine, str(machine))
        self.relocatable = elf["e_type"] == "ET_DYN"
        self._has_symbol_tables = any(
            elf.get_section_by_name(name) is not None for name in (".symtab", ".dynsym")
        )
        self.segments = [
            _Segment(seg["p_vaddr"], seg["p_memsz"], seg["p_offset"], seg["p_filesz"],
                     seg["p_flags"])
            for seg in elf.iter_segments()
            if seg["p_type"] == "PT_LOAD"
        ]
        notes_section = elf.get_section_by_name(_NOTE_SECTION)
        self.has_notes = notes_section is not None
        self.sites: list[UsdtSite] = []
        if notes_section is None:
            return
        if notes_section["sh_type"] != "SHT_NOTE":
            raise UsdtNoteError(f"{self.path}: {_NOTE_SECTION} is not a note section")
        base_section = elf.get_section_by_name(_BASE_SECTION)
        actual_base = base_section["sh_addr"] if base_section is not None else None
        notes = parse_stapsdt_notes(
            notes_section.data(),
            address_size=8 if elf.elfclass == 64 else 4,
            little_endian=elf.little_endian,
            alignment=8 if notes_section["sh_addralign"] == 8 else 4,
        )
        self.sites = [self._place(note, actual_base) for note in notes]

    def _place(self, note: SdtNote, actual_base: int | None) -> UsdtSite:
        where = f"{self.path}: USDT probe {note.provider}:{note.name}"
        address, semaphore = note.pc, note.semaphore
        if actual_base is not None and note.base:
            delta = actual_base - note.base
            address += delta
            if semaphore:
                semaphore += delta
        code = self._segment_of(address, executable=True)
        if code is None or address >= code.vaddr + code.filesz:
            raise UsdtNoteError(
                f"{where} is at {address:#x}, in no executable segment of the file"
            )
        semaphore_offset = None
        if semaphore:
            data = self._segment_of(semaphore, executable=False)
            if data is None or not data.flags & _PF_W:
                raise UsdtNoteError(
                    f"{where} has its semaphore at {semaphore:#x}, in no writable segment of "
                    "the file"
                )
            if semaphore + 2 > data.vaddr + data.filesz:
                # sys/sdt.h puts semaphores in .probes, which the file holds. Past p_filesz
                # (.bss) the kernel finds a semaphore only while it shares a page with the
                # file's bytes (uprobes.c, valid_ref_ctr_vma() wants a mapping of the file):
                # refuse rather than hand it an offset the file does not contain.
                raise UsdtNoteError(
                    f"{where} has its semaphore at {semaphore:#x}, past the bytes the file "
                    "holds (in .bss); rawprobe hands the kernel semaphores the file contains"
                )
            semaphore_offset = semaphore - data.vaddr + data.offset
        return UsdtSite(
            path=self.path,
            provider=note.provider,
            name=note.name,
            address=address,
            file_offset=address - code.vaddr + code.offset,
            semaphore_address=semaphore or None,
            semaphore_offset=semaphore_offset,
            argument_specs=note.argument_specs,
        )

    def _segment_of(self, address: int, *, executable: bool) -> _Segment | None:
        for segment in self.segments:
            if segment.contains(address) and bool(segment.flags & _PF_X) == executable:
                return segment
        return None

    def _read_symbols(self) -> dict[str, set[int]]:
        """Every defined symbol's addresses, by name; read when an argument first names one
        (rare: a %rip-relative operand), from the file opened again."""
        symbols: dict[str, set[int]] = {}
        try:
            with open(self.path, "rb") as stream:
                elf = ELFFile(stream)
                for name in (".symtab", ".dynsym"):
                    section = elf.get_section_by_name(name)
                    if section is not None:
                        self._add_symbols(section, symbols)
        except OSError as error:
            raise LookupError(f"cannot read the symbols of {self.path}: {error}") from None
        except _DAMAGED_FILE_ERRORS as error:
            raise LookupError(f"the symbol tables of {self.path} are damaged ({error})") from None
        return symbols

    @staticmethod
    def _add_symbols(section: Any, symbols: dict[str, set[int]]) -> None:
        for symbol in section.iter_symbols():
            if symbol["st_shndx"] == "SHN_UNDEF" or not symbol.name:
                continue
            if symbol["st_info"]["type"] in ("STT_SECTION", "STT_FILE"):
                continue
            symbols.setdefault(symbol.name.split("@", 1)[0], set()).add(symbol["st_value"])

    def symbol_address(self, name: str) -> int:
        """The link-time address of the symbol ``name`` (``.symtab`` or ``.dynsym``).

        Raises:
            LookupError: No symbol of that name, or several at different addresses.
        """
        if name.startswith(".L"):
            raise LookupError(
                f"{name!r} is an assembler-local label, which no symbol table keeps"
            )
        if not self._has_symbol_tables:
            raise LookupError(
                f"the symbol {name!r} cannot be found: the file has no symbol table (stripped)"
            )
        if self._symbols is None:
            self._symbols = self._read_symbols()
        addresses = self._symbols.get(name)
        if not addresses:
            raise LookupError(f"the symbol {name!r} is in neither .symtab nor .dynsym")
        if len(addresses) > 1:
            shown = ", ".join(f"{a:#x}" for a in sorted(addresses))
            raise LookupError(f"several symbols are named {name!r} ({shown})")
        return next(iter(addresses))


@lru_cache(maxsize=32)
def _usdt_file(path: str, _mtime_ns: int, _size: int, _inode: int) -> UsdtFile:
    return UsdtFile(path)


def open_usdt_file(path: str) -> UsdtFile:
    """Read (or reuse, while the file is unchanged) the USDT probe sites of ``path``.

    Raises:
        TargetNotFoundError: No such file.
        NotElfError: Not an ELF file, or a damaged one.
        UsdtNoteError: Its SDT notes are malformed or point outside the file's segments.
    """
    stat = stat_target(path)
    return _usdt_file(path, stat.st_mtime_ns, stat.st_size, stat.st_ino)

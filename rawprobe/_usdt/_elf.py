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

from dataclasses import dataclass
from functools import lru_cache

from .._errors import NotElfError, TargetNotFoundError
from .._host.files import stat_target
from .._symbols import TargetChangedError
from .._symbols.elf import ElfReader, c_string, damaged, open_elf
from .._sys.arch import ARCH
from ._errors import UsdtNoteError
from ._notes import SdtNote, parse_stapsdt_notes

__all__ = ["UsdtFile", "UsdtSite", "open_usdt_file"]

_NOTE_SECTION = ".note.stapsdt"
_BASE_SECTION = ".stapsdt.base"
_PF_X = 1
_PF_W = 2
_SHN_UNDEF = 0
_STT_SECTION, _STT_FILE = 3, 4


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
        machine: Its machine (``x86_64``): this host's, as :func:`open_elf` checks.
        relocatable: Whether it is position-independent (ET_DYN: a shared library or PIE).
        has_notes: Whether it has a ``.note.stapsdt`` section at all.
        sites: Every probe site, in note order.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._symbols: dict[str, set[int]] | None = None
        with open_elf(path) as reader:
            try:
                self._read(reader)
            except (NotElfError, TargetNotFoundError, UsdtNoteError):
                raise
            except Exception as error:
                raise damaged(path, error) from None

    def _read(self, reader: ElfReader) -> None:
        self.machine = ARCH.machine
        self.relocatable = reader.relocatable
        self._has_symbol_tables = any(
            reader.section(name) is not None for name in (".symtab", ".dynsym")
        )
        self.segments = [_Segment(*segment) for segment in reader.load_segments()]
        notes_section = reader.section(_NOTE_SECTION)
        self.has_notes = notes_section is not None
        self.sites: list[UsdtSite] = []
        if notes_section is None:
            return
        if notes_section["sh_type"] != "SHT_NOTE":
            raise UsdtNoteError(f"{self.path}: {_NOTE_SECTION} is not a note section")
        base_section = reader.section(_BASE_SECTION)
        actual_base = base_section["sh_addr"] if base_section is not None else None
        notes = parse_stapsdt_notes(
            reader.section_bytes(notes_section),
            address_size=8,
            little_endian=True,
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
        (rare: a %rip-relative operand)."""
        symbols: dict[str, set[int]] = {}
        try:
            with open_elf(self.path) as reader:
                for table in reader.symbol_tables():
                    for name_offset, info, _other, shndx, value, _size in table.entries:
                        if shndx == _SHN_UNDEF or info & 0xF in (_STT_SECTION, _STT_FILE):
                            continue
                        name = c_string(table.strings, name_offset)
                        if name:
                            symbols.setdefault(name.split("@", 1)[0], set()).add(value)
        except (NotElfError, TargetNotFoundError) as error:
            raise LookupError(f"cannot read the symbols of {self.path}: {error}") from None
        except Exception as error:
            raise LookupError(f"the symbol tables of {self.path} are damaged ({error})") from None
        return symbols

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
def _usdt_file(path: str, _key: tuple[int, ...]) -> UsdtFile:
    return UsdtFile(path)


def open_usdt_file(path: str, expect_key: tuple[int, ...] | None = None) -> UsdtFile:
    """Read (or reuse, while the file is unchanged) the USDT probe sites of ``path``.

    Args:
        path: The file.
        expect_key: The identity of a file the caller opened at ``path`` (device, inode,
            size, mtime, ctime): the sites must be that very file's.

    Raises:
        TargetNotFoundError: No such file.
        NotElfError: Not an ELF file rawprobe can probe, or a damaged one.
        UsdtNoteError: Its SDT notes are malformed or point outside the file's segments.
        TargetChangedError: ``path`` is no longer the file ``expect_key`` describes.
    """
    info = stat_target(path)
    key = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
    if expect_key is not None and key != expect_key:
        raise TargetChangedError(path)
    return _usdt_file(path, key)

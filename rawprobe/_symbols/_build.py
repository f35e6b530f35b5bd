"""Reading an ELF file (and its separate debug information) into a symbol index: the cold path.

The file is read through :class:`~rawprobe._symbols.elf.ElfReader`; this module merges its
symbol tables (``.dynsym``, ``.symtab``, a build-id or debug-link debug file, MiniDebugInfo)
with their versions into the records the index keeps.
"""

from __future__ import annotations

import io
import lzma
import struct

from .. import _log
from .._errors import NotElfError, RawprobeError, TargetNotFoundError
from .._sys.arch import host_arch
from .._sys.demangle import demangle
from ._debuginfo import build_id_candidates, debuglink_candidates, file_crc32
from ._encode import IndexData, IndexSymbol
from ._index import ABSENT_KEY, SOURCES, current_key, split_version
from .elf import ElfReader, SymbolTable, c_string, check_elf_header, damaged, open_elf

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["build_index_data"]

_PF_X = 0x1
_SHF_ALLOC = 0x2
_SHN_UNDEF = 0
_STT_NOTYPE, _STT_FUNC, _STT_GNU_IFUNC = 0, 2, 10
_STB_LOCAL, _STB_GLOBAL, _STB_WEAK, _STB_GNU_UNIQUE = 0, 1, 2, 10
_NT_GNU_BUILD_ID = 3
_NT_GO_BUILDID = 4  # Go's linker: note name "Go", type 4 (cmd/link/internal/ld/elf.go)
# .gnu.version values (LSB "Symbol Versioning"): 0 local, 1 global (unversioned), the top bit
# hides a version (a non-default, "name@VERSION", definition).
_VER_NDX_GLOBAL = 1
_VERSYM_HIDDEN = 0x8000
# vd_version, vd_flags, vd_ndx, vd_cnt, vd_hash, vd_aux, vd_next
_VERDEF = struct.Struct("<HHHHIII")
_VERDAUX = struct.Struct("<II")  # vda_name, vda_next
_VERNEED = struct.Struct("<HHIII")  # vn_version, vn_cnt, vn_file, vn_aux, vn_next
_VERNAUX = struct.Struct("<IHHII")  # vna_hash, vna_flags, vna_other, vna_name, vna_next
_BINDINGS = {_STB_GLOBAL: 0, _STB_WEAK: 1, _STB_LOCAL: 2, _STB_GNU_UNIQUE: 3}
_SOURCE_INDEX = {name: position for position, name in enumerate(SOURCES)}
# A MiniDebugInfo payload is a few hundred kB; refuse to inflate a crafted one without bound.
_MAX_DEBUGDATA = 256 << 20

def _parse_verdef(data: bytes, strings: bytes) -> dict[int, str]:
    """vd_ndx → version name, from ``.gnu.version_d``."""
    names: dict[int, str] = {}
    position = 0
    for _ in range(4096):
        if position + _VERDEF.size > len(data):
            break
        _version, _flags, ndx, count, _hash, aux, next_offset = _VERDEF.unpack_from(data, position)
        if count and position + aux + _VERDAUX.size <= len(data):
            name_offset, _next = _VERDAUX.unpack_from(data, position + aux)
            names[ndx] = c_string(strings, name_offset)
        if not next_offset:
            break
        position += next_offset
    return names


def _parse_verneed(data: bytes, strings: bytes) -> dict[int, tuple[str, str]]:
    """vna_other → (version name, library file), from ``.gnu.version_r``."""
    needs: dict[int, tuple[str, str]] = {}
    position = 0
    for _ in range(4096):
        if position + _VERNEED.size > len(data):
            break
        _version, count, file_offset, aux, next_offset = _VERNEED.unpack_from(data, position)
        library = c_string(strings, file_offset)
        aux_position = position + aux
        for _ in range(min(count, 4096)):
            if aux_position + _VERNAUX.size > len(data):
                break
            _hash, _flags, other, name_offset, aux_next = _VERNAUX.unpack_from(data, aux_position)
            needs[other] = (c_string(strings, name_offset), library)
            if not aux_next:
                break
            aux_position += aux_next
        if not next_offset:
            break
        position += next_offset
    return needs


class _Merger:
    """Collects symbols from all sources; one record per (name, version, address)."""

    def __init__(self, executable: list[tuple[int, int, int, int, int]]) -> None:
        self.executable = executable
        self.by_key: dict[tuple[str, int], list[IndexSymbol]] = {}

    def in_executable_segment(self, address: int) -> bool:
        for vaddr, _memsz, _offset, filesz, _flags in self.executable:
            if vaddr <= address < vaddr + filesz:
                return True
        return False

    def add(
        self,
        name: str,
        version: str,
        default_version: bool,
        address: int,
        size: int,
        kind: int,
        binding: int,
        source: int,
    ) -> None:
        if not self.in_executable_segment(address):
            return
        group = self.by_key.setdefault((name, address), [])
        for existing in group:
            if existing.version == version or not version or not existing.version:
                if version and not existing.version:
                    existing.version = version
                    existing.default_version = default_version
                existing.sources |= 1 << source
                existing.size = max(existing.size, size)
                # A name the dynamic symbol table exports is global even when a debug file's
                # .symtab (where versioned aliases are often local) says otherwise.
                existing.binding = min(existing.binding, binding)
                return
        group.append(
            IndexSymbol(name, version, default_version, address, size, kind, binding, source)
        )

    def add_table(
        self,
        table: SymbolTable,
        source: str,
        versions: list[tuple[str, bool]] | None = None,
    ) -> None:
        source_index = _SOURCE_INDEX[source]
        strings = table.strings
        for number, (name_offset, info, _other, shndx, value, size) in enumerate(table.entries):
            symbol_type = info & 0xF
            if symbol_type not in (_STT_FUNC, _STT_GNU_IFUNC) or shndx == _SHN_UNDEF:
                continue
            raw_name = c_string(strings, name_offset)
            if not raw_name:
                continue
            name, version, default_version = split_version(raw_name)
            if versions is not None and number < len(versions) and versions[number][0]:
                version, default_version = versions[number]
            self.add(
                name,
                version,
                default_version,
                value,
                size,
                1 if symbol_type == _STT_GNU_IFUNC else 0,
                _BINDINGS.get(info >> 4, 0),
                source_index,
            )

    def symbols(self) -> list[IndexSymbol]:
        found = [sym for group in self.by_key.values() for sym in group]
        demangled: dict[str, str] = {}
        for sym in found:
            if sym.name.startswith("_Z"):
                text = demangled.get(sym.name)
                if text is None:
                    text = demangled[sym.name] = demangle(sym.name) or ""
                sym.demangled = text
        return found


def _dynsym_versions(reader: ElfReader, count: int) -> tuple[list[tuple[str, bool]], dict[
    int, tuple[str, str]]]:
    """Per dynsym entry: (version, is default) for definitions; and the requirements table."""
    versym_section = reader.section(".gnu.version")
    if versym_section is None:
        return [], {}
    versym = reader.section_bytes(versym_section)
    entries = struct.unpack(f"<{min(count, len(versym) // 2)}H", versym[: 2 * min(
        count, len(versym) // 2)])
    definitions: dict[int, str] = {}
    requirements: dict[int, tuple[str, str]] = {}
    verdef = reader.section(".gnu.version_d")
    if verdef is not None:
        link = verdef["sh_link"]
        if 0 < link < len(reader.sections):
            definitions = _parse_verdef(
                reader.section_bytes(verdef), reader.section_bytes(reader.sections[link])
            )
    verneed = reader.section(".gnu.version_r")
    if verneed is not None:
        link = verneed["sh_link"]
        if 0 < link < len(reader.sections):
            requirements = _parse_verneed(
                reader.section_bytes(verneed), reader.section_bytes(reader.sections[link])
            )
    versions: list[tuple[str, bool]] = []
    for value in entries:
        number = value & ~_VERSYM_HIDDEN
        if number <= _VER_NDX_GLOBAL:
            versions.append(("", False))
        else:
            versions.append((definitions.get(number, ""), not value & _VERSYM_HIDDEN))
    return versions, requirements


def _undefined_functions(
    table: SymbolTable, versym: bytes | None, requirements: dict[int, tuple[str, str]]
) -> list[tuple[str, str]]:
    undefined: dict[str, str] = {}
    entries = table.entries
    numbers: tuple[int, ...] = ()
    if versym is not None:
        usable = min(len(entries), len(versym) // 2)
        numbers = struct.unpack(f"<{usable}H", versym[: 2 * usable])
    for number, (name_offset, info, _other, shndx, _value, _size) in enumerate(entries):
        if shndx != _SHN_UNDEF or info & 0xF not in (_STT_NOTYPE, _STT_FUNC, _STT_GNU_IFUNC):
            continue
        if info >> 4 not in (_STB_GLOBAL, _STB_WEAK):
            continue
        name = c_string(table.strings, name_offset)
        if not name:
            continue
        library = ""
        if number < len(numbers):
            library = requirements.get(numbers[number] & ~_VERSYM_HIDDEN, ("", ""))[1]
        undefined[name] = library
    return list(undefined.items())


def _debug_symbol_table(path: str, expect_build_id: str) -> tuple[SymbolTable | None, str]:
    """The ``.symtab`` of a separate debug file, or None and why it is not used."""
    try:
        with open_elf(path) as reader:
            found = reader.build_id()
            if expect_build_id and found not in ("", expect_build_id):
                return None, f"its build-id {found} is not the file's {expect_build_id}"
            section = reader.section(".symtab")
            if section is None:
                return None, "it has no symbol table (.symtab)"
            return reader.symbol_table(section), ""
    except RawprobeError as error:
        return None, str(error)
    except Exception as error:  # a damaged debug file is not the probed file's fault: go without
        return None, str(damaged(path, error))


def _debuglink_table(path: str, expected_crc: int,
                     expect_build_id: str) -> tuple[SymbolTable | None, str]:
    """The ``.symtab`` of the file a ``.gnu_debuglink`` names, or None and why it is not used."""
    try:
        crc = file_crc32(path)
    except RawprobeError as error:
        return None, str(error)
    if crc != expected_crc:
        return None, (f"its CRC-32 {crc:08x} is not the {expected_crc:08x} the link records "
                      "(a debug file of another build)")
    return _debug_symbol_table(path, expect_build_id)


def _minidebuginfo_table(reader: ElfReader) -> SymbolTable | None:
    section = reader.section(".gnu_debugdata")
    if section is None:
        return None
    compressed = reader.section_bytes(section)
    try:
        decompressor = lzma.LZMADecompressor()
        inner = decompressor.decompress(compressed, max_length=_MAX_DEBUGDATA)
        if not decompressor.eof:
            return None
        stream = io.BytesIO(inner)
        check_elf_header(inner[:64], f"{reader.path} (.gnu_debugdata)", len(inner))
        inner_reader = ElfReader(stream, f"{reader.path} (.gnu_debugdata)", len(inner))
        symtab = inner_reader.section(".symtab")
        return inner_reader.symbol_table(symtab) if symtab is not None else None
    except Exception:
        return None


def _go_evidence(reader: ElfReader, notes: list[tuple[bytes, int, bytes]]) -> str:
    for marker in (".go.buildinfo", ".note.go.buildid", ".gopclntab"):
        if reader.section(marker) is not None:
            return f"section {marker}"
    for name, note_type, _descriptor in notes:
        if name == b"Go" and note_type == _NT_GO_BUILDID:
            return "Go build-id note"
    return ""


def build_index_data(
    path: str,
    debug_roots: Sequence[str],
    process_root: str = "",
) -> IndexData:
    """Read everything symbol resolution needs from an ELF file and its debug information.

    Args:
        path: The file to probe.
        debug_roots: Global debug directories (see :mod:`._debuginfo`).
        process_root: ``/proc/PID/root`` when the file is inside another process's root.

    Returns:
        The findings, ready for :func:`._index.encode_index`.

    Raises:
        TargetNotFoundError: The file cannot be opened.
        NotElfError: It is not an ELF file (:class:`CorruptElfError` when damaged,
            :class:`UnsupportedElfError` when of another kind or machine).
    """
    with open_elf(path) as reader:
        try:
            return _build(reader, path, debug_roots, process_root)
        except (NotElfError, TargetNotFoundError):
            raise
        except Exception as error:
            raise damaged(path, error) from None


def _build(
    reader: ElfReader,
    path: str,
    debug_roots: Sequence[str],
    process_root: str,
) -> IndexData:
    data = IndexData()
    data.path = path
    host = host_arch()
    data.machine = host.machine if host else ""
    data.segments = reader.load_segments()
    executable = [segment for segment in data.segments if segment[4] & _PF_X]
    for section in reader.sections:
        if section["sh_flags"] & _SHF_ALLOC and section["sh_type"] != "SHT_NOBITS":
            data.sections.append(
                (
                    section.name,
                    section["sh_addr"],
                    section["sh_offset"],
                    section["sh_size"],
                    section["sh_flags"],
                    1 if section["sh_type"] == "SHT_PROGBITS" else 0,
                )
            )
    notes = reader.notes()
    data.build_id = next(
        (d.hex() for n, t, d in notes if n == b"GNU" and t == _NT_GNU_BUILD_ID and d), ""
    )
    data.needed, data.search_dirs = reader.dynamic_tags()

    merger = _Merger(executable)
    dynsym = reader.section(".dynsym")
    if dynsym is not None:
        table = reader.symbol_table(dynsym)
        versions, requirements = _dynsym_versions(reader, len(table.entries))
        merger.add_table(table, "dynsym", versions)
        versym_section = reader.section(".gnu.version")
        versym = reader.section_bytes(versym_section) if versym_section is not None else None
        data.undefined = _undefined_functions(table, versym, requirements)
    else:
        _add_dynamic_segment_symbols(reader, merger)
    symtab = reader.section(".symtab")
    if symtab is not None:
        merger.add_table(reader.symbol_table(symtab), "symtab")

    # Separate debug files: build-id first, then the debug link, as GDB searches.
    debug_table = None
    if data.build_id:
        for candidate in build_id_candidates(data.build_id, debug_roots, process_root):
            data.dependencies.append((candidate, current_key(candidate)))
            if data.dependencies[-1][1] == ABSENT_KEY:
                continue
            debug_table, reason = _debug_symbol_table(candidate, data.build_id)
            if debug_table is None:
                _log.info("%s: build-id debug file %s not used: %s", path, candidate, reason)
                continue
            data.debug_sources.append(("build-id", candidate))
            merger.add_table(debug_table, "build-id")
            break
    link = reader.section(".gnu_debuglink")
    if debug_table is None and link is not None:
        link_bytes = reader.section_bytes(link)
        link_name = c_string(link_bytes, 0)
        crc_at = (len(link_name.encode()) + 1 + 3) & ~3
        if crc_at + 4 <= len(link_bytes):
            (expected_crc,) = struct.unpack_from("<I", link_bytes, crc_at)
            for candidate in debuglink_candidates(path, link_name, debug_roots, process_root):
                data.dependencies.append((candidate, current_key(candidate)))
                if data.dependencies[-1][1] == ABSENT_KEY:
                    continue
                debug_table, reason = _debuglink_table(candidate, expected_crc, data.build_id)
                if debug_table is None:
                    _log.info("%s: debug link %s not used: %s", path, candidate, reason)
                    continue
                data.debug_sources.append(("debuglink", candidate))
                merger.add_table(debug_table, "debuglink")
                break
    mini = _minidebuginfo_table(reader)
    if mini is not None:
        data.debug_sources.append(("minidebuginfo", f"{path} (.gnu_debugdata)"))
        merger.add_table(mini, "minidebuginfo")

    data.symbols = merger.symbols()
    data.go_evidence = _go_evidence(reader, notes)
    if not data.go_evidence and any(sym.name == "runtime.main" for sym in data.symbols):
        data.go_evidence = "symbol runtime.main"
    return data


def _add_dynamic_segment_symbols(reader: ElfReader, merger: _Merger) -> None:
    """Without section headers (``sstrip``), the exported functions are still found through
    PT_DYNAMIC (DT_SYMTAB, sized by DT_HASH/DT_GNU_HASH), as the dynamic linker finds them."""
    from elftools.elf.dynamic import DynamicSegment

    for segment in reader.elf.iter_segments():
        if not isinstance(segment, DynamicSegment):
            continue
        for symbol in segment.iter_symbols():
            info = symbol["st_info"]
            symbol_type = info["type"]
            if symbol_type not in ("STT_FUNC", "STT_LOOS", "STT_GNU_IFUNC"):
                continue
            if symbol["st_shndx"] == "SHN_UNDEF" or not symbol.name:
                continue
            binding = {"STB_GLOBAL": 0, "STB_WEAK": 1, "STB_LOCAL": 2}.get(info["bind"], 3)
            merger.add(
                symbol.name,
                "",
                False,
                symbol["st_value"],
                symbol["st_size"],
                0 if symbol_type == "STT_FUNC" else 1,
                binding,
                _SOURCE_INDEX["dynsym"],
            )
        return

"""The compact symbol index of one ELF file: built once from the ELF, then read from the cache.

Everything symbol resolution needs about a file is here, in a form that loads in well under a
millisecond and is searched without decoding it all: the warm path must not import pyelftools, nor
even ``re`` or ``json``. The encoding is sans-IO (:func:`rawprobe._symbols._encode.encode_index` →
bytes → :meth:`SymbolIndex.from_bytes`) so it is tested on plain bytes.

Layout (all integers little-endian)::

    magic "RPSYMIDX", u32 format version, u32 CRC-32 of the rest, u32 field count,
    u32 length of each field, then the fields in the order of ``_FIELDS``.

String lists are UTF-8 items each followed by NUL. Names are one ``\\n``-separated blob that
starts and ends with ``\\n``, so that a name is found with one ``bytes.find`` of ``\\nNAME\\n``
and its index is the count of ``\\n`` before it. The symbol records are sorted by address, so the
aliases of a function are its neighbours.
"""

from __future__ import annotations

import os
import struct
import zlib
from bisect import bisect_left, bisect_right

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = [
    "BINDINGS",
    "KINDS",
    "SOURCES",
    "FileKey",
    "IndexFormatError",
    "SymbolEntry",
    "SymbolIndex",
    "current_key",
    "file_key",
    "split_version",
]

_MAGIC = b"RPSYMIDX"
FORMAT_VERSION = 4  # 4: names demangled by the C++ runtime
_PREAMBLE = struct.Struct("<8sIII")
_RECORD = struct.Struct("<QQIHH")  # address, size, version index, flags, reserved
_KEY = struct.Struct("<5q")

# The symbol sources, in order of precedence: the first that lists a name at an address is the
# one reported for it.
SOURCES = ("dynsym", "symtab", "debuglink", "build-id", "minidebuginfo")
KINDS = ("func", "ifunc")
BINDINGS = ("global", "weak", "local", "unique")

# Record flags: bit 0 kind, bits 1-2 binding, bit 3 default version, bits 4-8 source mask,
# bits 9-11 primary source.
_KIND_MASK = 0x1
# Source bit mask → the tuple of source names, computed once.
_SOURCES_BY_MASK = [
    tuple(source for bit, source in enumerate(SOURCES) if mask & (1 << bit)) for mask in range(32)
]
_BINDING_SHIFT = 1
_DEFAULT_VERSION = 0x8
_SOURCES_SHIFT = 4
_PRIMARY_SHIFT = 9

_FIELDS = (
    "meta",  # strings: path, build-id, machine, go evidence
    "key",  # the probed file's identity: dev, ino, size, mtime_ns, ctime_ns
    "dep_paths",  # strings: files whose presence decided the index (debug file candidates)
    "dep_keys",  # 5 x int64 per dependency; all -1 when the file was absent
    "segments",  # 5 x uint64 per PT_LOAD: vaddr, memsz, offset, filesz, flags
    "section_names",  # strings
    "sections",  # 5 x uint64 per section: addr, offset, size, flags, is-PROGBITS
    "needed",  # strings: DT_NEEDED
    "search_dirs",  # strings: DT_RUNPATH/DT_RPATH directories ($ORIGIN expanded)
    "undefined",  # strings: functions used but not defined
    "undefined_libs",  # strings: the library a version requirement names for each, or ""
    "debug_sources",  # strings: "source\tpath" of each separate symbol source used
    "versions",  # strings; index 0 is "no version"
    "names",  # "\n"-framed blob
    "name_lines",  # u32 per name + 1: position of the "\n" before each name, then the last one
    "demangled",  # "\n"-framed blob, parallel to names ("" when not C++)
    "demangled_lines",  # as name_lines
    "records",  # _RECORD per name
)

# A file's identity in the cache: (st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns). ctime is
# included because mtime can be set back by anyone who can write the file; ctime cannot.
FileKey = tuple[int, int, int, int, int]
ABSENT_KEY: FileKey = (-1, -1, -1, -1, -1)


def file_key(info: os.stat_result) -> FileKey:
    """A file's identity for the cache, from its ``stat``."""
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


def current_key(path: str) -> FileKey:
    """The identity of ``path`` now, or :data:`ABSENT_KEY` when it cannot be stat'ed."""
    try:
        return file_key(os.stat(path))
    except OSError:
        return ABSENT_KEY


def split_version(name: str) -> tuple[str, str, bool]:
    """``foo@@V`` → (foo, V, True); ``foo@V`` → (foo, V, False); ``foo`` → (foo, "", False): a
    name as a ``.symver`` leaves it in a ``.symtab`` (binutils ``gas`` manual, ".symver"), and
    as a probe names a version."""
    at = name.find("@")
    if at <= 0:
        return name, "", False
    if name.startswith("@@", at):
        return name[:at], name[at + 2 :], True
    return name[:at], name[at + 1 :], False


class IndexFormatError(Exception):
    """Bytes that are not a valid index of this format version (the cache entry is ignored)."""


class SymbolEntry:
    """One decoded symbol record of a :class:`SymbolIndex`.

    Attributes:
        index: Its position in the index (records are sorted by address).
        name: Bare name.
        version: Version, or ``""``.
        default_version: ``@@``.
        address: Virtual address.
        size: Size in bytes.
        kind: ``func`` or ``ifunc``.
        binding: ``global``, ``weak``, ``local`` or ``unique``.
        source: The source reported for it.
        sources: All sources listing it.
        demangled: Demangled C++ name, or ``""``.
    """

    __slots__ = ("address", "binding", "default_version", "demangled", "index", "kind", "name",
                 "size", "source", "sources", "version")

    def __init__(
        self,
        index: int,
        name: str,
        version: str,
        default_version: bool,
        address: int,
        size: int,
        kind: str,
        binding: str,
        source: str,
        sources: tuple[str, ...],
        demangled: str,
    ) -> None:
        self.index = index
        self.name = name
        self.version = version
        self.default_version = default_version
        self.address = address
        self.size = size
        self.kind = kind
        self.binding = binding
        self.source = source
        self.sources = sources
        self.demangled = demangled

    @property
    def versioned_name(self) -> str:
        """``name@@VERSION``, ``name@VERSION`` or ``name``."""
        if not self.version:
            return self.name
        return f"{self.name}{'@@' if self.default_version else '@'}{self.version}"

    def __repr__(self) -> str:
        return f"SymbolEntry({self.versioned_name!r}, {self.address:#x}, {self.source})"


def _decode_strings(blob: bytes) -> list[str]:
    if blob and not blob.endswith(b"\0"):
        raise IndexFormatError("string list not terminated")
    return blob.decode("utf-8", "surrogateescape").split("\0")[:-1]


def _decode_ints(blob: bytes, width: int, code: str = "Q") -> list[tuple[int, ...]]:
    if len(blob) % (8 * width):
        raise IndexFormatError("integer table of the wrong size")
    flat = struct.unpack(f"<{len(blob) // 8}{code}", blob)
    return [tuple(flat[at : at + width]) for at in range(0, len(flat), width)]


class SymbolIndex:
    """A decoded index: the file's segments, sections and functions, searched in place.

    Attributes:
        path: The path the index was built from.
        key: The file's identity when it was built.
        build_id: The GNU build-id (hex), or ``""``.
        machine: The machine name (``x86_64``).
        go_evidence: Why the file is a Go program (``.go.buildinfo``...), or ``""``.
        dependencies: (path, key) of files whose presence or absence decided the index.
        segments: (p_vaddr, p_memsz, p_offset, p_filesz, p_flags) of each PT_LOAD.
        sections: (name, sh_addr, sh_offset, sh_size, sh_flags, 1 if SHT_PROGBITS else 0) of
            the allocated sections that occupy file space.
        needed: DT_NEEDED names.
        search_dirs: DT_RUNPATH/DT_RPATH directories.
        undefined: {name: library named by its version requirement or ""} of used functions.
        debug_sources: (source, path) of the separate symbol sources used.
        count: Number of symbol records.
    """

    def __init__(self) -> None:
        self.path = ""
        self.key: FileKey = ABSENT_KEY
        self.build_id = ""
        self.machine = ""
        self.go_evidence = ""
        self.dependencies: list[tuple[str, FileKey]] = []
        self.segments: list[tuple[int, ...]] = []
        self.sections: list[tuple[str, int, int, int, int, int]] = []
        self.needed: list[str] = []
        self.search_dirs: list[str] = []
        self.undefined: dict[str, str] = {}
        self.debug_sources: list[tuple[str, str]] = []
        self.count = 0
        self._versions: list[str] = [""]
        self._names = b"\n"
        self._name_lines: tuple[int, ...] = (0,)
        self._demangled = b"\n"
        self._demangled_lines: tuple[int, ...] = (0,)
        self._records = b""
        self._name_list: list[str] | None = None
        self._demangled_list: list[str] | None = None

    @classmethod
    def from_bytes(cls, data: bytes) -> SymbolIndex:
        """Decode and validate index bytes.

        The checks are what keeps a damaged file from misleading the resolver or crashing it:
        magic, format version, CRC-32, and that every table has the size the others imply.
        Individual records are not re-validated (that would cost a Python loop over all of them
        on the warm path); out-of-range values in them read as defaults instead of raising.

        Args:
            data: Bytes from :func:`encode_index` (or the cache).

        Returns:
            The index.

        Raises:
            IndexFormatError: The bytes are damaged, truncated or of another format version.
        """
        try:
            return cls._decode(data)
        except IndexFormatError:
            raise
        except (struct.error, ValueError, IndexError, UnicodeError, OverflowError) as error:
            raise IndexFormatError(f"undecodable index: {error}") from None

    @classmethod
    def _decode(cls, data: bytes) -> SymbolIndex:
        if len(data) < _PREAMBLE.size:
            raise IndexFormatError("too short")
        magic, version, crc, nfields = _PREAMBLE.unpack_from(data)
        if magic != _MAGIC or version != FORMAT_VERSION or nfields != len(_FIELDS):
            raise IndexFormatError("not an index of this format version")
        body = memoryview(data)[_PREAMBLE.size :]
        if zlib.crc32(body) != crc:
            raise IndexFormatError("checksum mismatch")
        lengths = struct.unpack_from(f"<{nfields}I", body)
        if sum(lengths) != len(body) - 4 * nfields:
            raise IndexFormatError("field lengths do not add up")
        fields: dict[str, bytes] = {}
        position = 4 * nfields
        for name, length in zip(_FIELDS, lengths, strict=True):
            fields[name] = bytes(body[position : position + length])
            position += length
        index = cls()
        meta = _decode_strings(fields["meta"])
        if len(meta) != 4:
            raise IndexFormatError("bad meta field")
        index.path, index.build_id, index.machine, index.go_evidence = meta
        key = _KEY.unpack(fields["key"])
        index.key = (key[0], key[1], key[2], key[3], key[4])
        dep_paths = _decode_strings(fields["dep_paths"])
        dep_keys = _decode_ints(fields["dep_keys"], 5, "q")
        if len(dep_paths) != len(dep_keys):
            raise IndexFormatError("dependency tables differ in length")
        index.dependencies = [
            (path, (k[0], k[1], k[2], k[3], k[4]))
            for path, k in zip(dep_paths, dep_keys, strict=True)
        ]
        index.segments = _decode_ints(fields["segments"], 5)
        section_names = _decode_strings(fields["section_names"])
        section_rows = _decode_ints(fields["sections"], 5)
        if len(section_names) != len(section_rows):
            raise IndexFormatError("section tables differ in length")
        index.sections = [
            (name, row[0], row[1], row[2], row[3], row[4])
            for name, row in zip(section_names, section_rows, strict=True)
        ]
        index.needed = _decode_strings(fields["needed"])
        index.search_dirs = _decode_strings(fields["search_dirs"])
        undefined = _decode_strings(fields["undefined"])
        undefined_libs = _decode_strings(fields["undefined_libs"])
        if len(undefined) != len(undefined_libs):
            raise IndexFormatError("undefined tables differ in length")
        index.undefined = dict(zip(undefined, undefined_libs, strict=True))
        index.debug_sources = []
        for item in _decode_strings(fields["debug_sources"]):
            source, tab, path = item.partition("\t")
            if not tab:
                raise IndexFormatError("bad debug source")
            index.debug_sources.append((source, path))
        index._versions = _decode_strings(fields["versions"])
        if not index._versions or index._versions[0]:
            raise IndexFormatError("bad version table")
        records = fields["records"]
        if len(records) % _RECORD.size:
            raise IndexFormatError("record table of the wrong size")
        count = len(records) // _RECORD.size
        index._names, index._name_lines = _checked_frame(
            fields["names"], fields["name_lines"], count
        )
        index._demangled, index._demangled_lines = _checked_frame(
            fields["demangled"], fields["demangled_lines"], count
        )
        index._records = records
        index.count = count
        return index

    # -- lookups -------------------------------------------------------------------------

    def _decode_record(self, index: int, name: str, demangled: str) -> SymbolEntry:
        address, size, version_number, flags, _reserved = _RECORD.unpack_from(
            self._records, index * _RECORD.size
        )
        versions = self._versions
        mask = (flags >> _SOURCES_SHIFT) & 0x1F
        primary = (flags >> _PRIMARY_SHIFT) & 7
        return SymbolEntry(
            index=index,
            name=name,
            version=versions[version_number] if version_number < len(versions) else "",
            default_version=bool(flags & _DEFAULT_VERSION),
            address=address,
            size=size,
            kind=KINDS[flags & _KIND_MASK],
            binding=BINDINGS[(flags >> _BINDING_SHIFT) & 3],
            source=SOURCES[primary] if primary < len(SOURCES) else SOURCES[0],
            sources=_SOURCES_BY_MASK[mask],
            demangled=demangled,
        )

    def entry(self, index: int) -> SymbolEntry:
        """Decode record ``index``.

        Args:
            index: 0 <= index < :attr:`count`.

        Returns:
            The decoded record.
        """
        return self._decode_record(
            index,
            _line(self._names, self._name_lines, index),
            _line(self._demangled, self._demangled_lines, index),
        )

    def address_of(self, index: int) -> int:
        """The address of record ``index`` (cheaper than :meth:`entry`)."""
        address: int = _RECORD.unpack_from(self._records, index * _RECORD.size)[0]
        return address

    def find_name(self, name: str) -> list[int]:
        """Indices of the records whose bare name is exactly ``name``."""
        return _find_lines(self._names, self._name_lines, name)

    def find_demangled(self, text: str) -> list[int]:
        """Indices of the records whose demangled name is exactly ``text``."""
        return _find_lines(self._demangled, self._demangled_lines, text)

    def find_demangled_function(self, name: str) -> list[int]:
        """Indices of the records whose demangled name is function ``name`` with any parameter
        list: ``ns::f`` finds ``ns::f(int)``, ``ns::f(char const*) const`` and, for a template
        function whose return type comes first, ``int ns::f<int>(int)``."""
        if not name or "\n" in name:
            return []
        blob = self._demangled
        lines = self._demangled_lines
        needle = (name + "(").encode("utf-8", "surrogateescape")
        found: list[int] = []
        position = blob.find(needle)
        while position >= 0:
            before = blob[position - 1 : position]
            if before in (b"\n", b" "):
                # The line whose opening "\n" is the last one before the match.
                line = bisect_right(lines, position - 1) - 1
                if 0 <= line < self.count and line not in found:
                    head = blob[lines[line] + 1 : position]
                    # Only a return type may come before the name: no unclosed bracket.
                    if head.count(b"<") == head.count(b">") and head.count(b"(") == head.count(
                        b")"
                    ):
                        found.append(line)
            position = blob.find(needle, position + 1)
        return found

    def names(self) -> list[str]:
        """Every record's bare name, by index (decoded once, then kept)."""
        if self._name_list is None:
            self._name_list = _split(self._names, self.count)
        return self._name_list

    def demangled_names(self) -> list[str]:
        """Every record's demangled name (``""`` when not C++), by index."""
        if self._demangled_list is None:
            self._demangled_list = _split(self._demangled, self.count)
        return self._demangled_list

    def entries(self) -> Iterator[SymbolEntry]:
        """Every record, decoded, in address order."""
        names = self.names()
        demangled = self.demangled_names()
        for index in range(self.count):
            yield self._decode_record(index, names[index], demangled[index])

    def same_address(self, index: int) -> list[int]:
        """Indices of all records at the address of record ``index`` (itself included)."""
        address = self.address_of(index)
        first = index
        while first > 0 and self.address_of(first - 1) == address:
            first -= 1
        last = index
        while last + 1 < self.count and self.address_of(last + 1) == address:
            last += 1
        return list(range(first, last + 1))


def _checked_frame(blob: bytes, lines_blob: bytes, count: int) -> tuple[bytes, tuple[int, ...]]:
    if len(lines_blob) != 4 * (count + 1):
        raise IndexFormatError("line table does not match the records")
    lines = struct.unpack(f"<{count + 1}I", lines_blob)
    if lines[0] != 0 or lines[-1] != len(blob) - 1 or not blob.endswith(b"\n"):
        raise IndexFormatError("line table does not match its blob")
    if blob.count(b"\n") != count + 1:
        raise IndexFormatError("name table does not match the records")
    return blob, lines


def _line(blob: bytes, lines: tuple[int, ...], index: int) -> str:
    return blob[lines[index] + 1 : lines[index + 1]].decode("utf-8", "surrogateescape")


def _find_lines(blob: bytes, lines: tuple[int, ...], text: str) -> list[int]:
    if not text or "\n" in text:
        return []
    needle = b"\n" + text.encode("utf-8", "surrogateescape") + b"\n"
    found = []
    position = blob.find(needle)
    while position >= 0:
        found.append(bisect_left(lines, position))
        position = blob.find(needle, position + 1)
    return found


def _split(blob: bytes, count: int) -> list[str]:
    if count == 0:
        return []
    return blob[1:-1].decode("utf-8", "surrogateescape").split("\n")

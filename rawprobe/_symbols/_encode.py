"""Writing a symbol index: the builder's records, encoded in the layout
:mod:`rawprobe._symbols._index` describes and reads."""

from __future__ import annotations

import struct
import zlib

from ._index import (
    _BINDING_SHIFT,
    _DEFAULT_VERSION,
    _FIELDS,
    _KEY,
    _KIND_MASK,
    _MAGIC,
    _PREAMBLE,
    _PRIMARY_SHIFT,
    _RECORD,
    _SOURCES_SHIFT,
    ABSENT_KEY,
    FORMAT_VERSION,
    FileKey,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["IndexData", "IndexSymbol", "encode_index"]


class IndexSymbol:
    """One (name, version, address) of the builder's input.

    Attributes:
        name: The bare name (no version suffix).
        version: The version, or ``""``.
        default_version: ``name@@version``.
        address: Virtual address.
        size: Size in bytes.
        kind: Index into :data:`KINDS`.
        binding: Index into :data:`BINDINGS`.
        sources: Bit mask over :data:`SOURCES`.
        primary: Index into :data:`SOURCES` of the source reported for it.
        demangled: The demangled C++ name, or ``""``.
    """

    __slots__ = ("address", "binding", "default_version", "demangled", "kind", "name",
                 "primary", "size", "sources", "version")

    def __init__(
        self,
        name: str,
        version: str,
        default_version: bool,
        address: int,
        size: int,
        kind: int,
        binding: int,
        source: int,
        demangled: str = "",
    ) -> None:
        self.name = name
        self.version = version
        self.default_version = default_version
        self.address = address
        self.size = size
        self.kind = kind
        self.binding = binding
        self.sources = 1 << source
        self.primary = source
        self.demangled = demangled


class IndexData:
    """Everything the ELF reader found, before encoding. Plain attributes, all with defaults."""

    def __init__(self) -> None:
        self.path = ""
        self.key: FileKey = ABSENT_KEY
        self.build_id = ""
        self.machine = ""
        self.go_evidence = ""
        self.dependencies: list[tuple[str, FileKey]] = []
        self.segments: list[tuple[int, int, int, int, int]] = []
        self.sections: list[tuple[str, int, int, int, int, int]] = []
        self.needed: list[str] = []
        self.search_dirs: list[str] = []
        self.undefined: list[tuple[str, str]] = []
        self.debug_sources: list[tuple[str, str]] = []
        self.symbols: list[IndexSymbol] = []


def _encode_strings(items: Sequence[str]) -> bytes:
    return b"".join(item.encode("utf-8", "surrogateescape") + b"\0" for item in items)


def _encode_ints(rows: Sequence[Sequence[int]], width: int, code: str = "Q") -> bytes:
    """Rows of ``width`` 64-bit integers: unsigned ("Q", addresses and sizes, which a crafted
    file may set to anything up to 2**64-1) or signed ("q", file keys, where -1 is "absent")."""
    flat = [value for row in rows for value in row]
    if any(len(row) != width for row in rows):
        raise ValueError("row of the wrong width")
    return struct.pack(f"<{len(flat)}{code}", *flat)


def _clean_name(name: str) -> str:
    # Names are framed by "\n" in the blob; a name holding one (only a crafted file has that)
    # would break the framing.
    return name.replace("\n", "\\n")


def _frame(items: Sequence[str]) -> tuple[bytes, bytes]:
    """The "\\n"-framed blob of ``items`` and the table of its line positions."""
    blob = bytearray(b"\n")
    lines = []
    for item in items:
        lines.append(len(blob) - 1)
        blob += _clean_name(item).encode("utf-8", "surrogateescape") + b"\n"
    lines.append(len(blob) - 1)
    return bytes(blob), struct.pack(f"<{len(lines)}I", *lines)


def encode_index(data: IndexData) -> bytes:
    """Encode the builder's findings as index bytes.

    Args:
        data: What the ELF reader found.

    Returns:
        The bytes of the index, ready for :meth:`SymbolIndex.from_bytes` or the cache.
    """
    symbols = sorted(data.symbols, key=lambda sym: (sym.address, sym.name, sym.version))
    versions = [""]
    version_index = {"": 0}
    records = bytearray()
    for sym in symbols:
        number = version_index.get(sym.version)
        if number is None:
            number = version_index[sym.version] = len(versions)
            versions.append(sym.version)
        flags = (
            (sym.kind & _KIND_MASK)
            | (sym.binding << _BINDING_SHIFT)
            | (_DEFAULT_VERSION if sym.default_version else 0)
            | (sym.sources << _SOURCES_SHIFT)
            | (sym.primary << _PRIMARY_SHIFT)
        )
        records += _RECORD.pack(sym.address, sym.size, number, flags, 0)
    names, name_lines = _frame([sym.name for sym in symbols])
    demangled, demangled_lines = _frame([sym.demangled for sym in symbols])
    fields = {
        "meta": _encode_strings([data.path, data.build_id, data.machine, data.go_evidence]),
        "key": _KEY.pack(*data.key),
        "dep_paths": _encode_strings([path for path, _key in data.dependencies]),
        "dep_keys": _encode_ints([key for _path, key in data.dependencies], 5, "q"),
        "segments": _encode_ints(data.segments, 5),
        "section_names": _encode_strings([section[0] for section in data.sections]),
        "sections": _encode_ints([section[1:] for section in data.sections], 5),
        "needed": _encode_strings(data.needed),
        "search_dirs": _encode_strings(data.search_dirs),
        "undefined": _encode_strings([name for name, _lib in data.undefined]),
        "undefined_libs": _encode_strings([lib for _name, lib in data.undefined]),
        "debug_sources": _encode_strings(
            [f"{source}\t{path}" for source, path in data.debug_sources]
        ),
        "versions": _encode_strings(versions),
        "names": names,
        "name_lines": name_lines,
        "demangled": demangled,
        "demangled_lines": demangled_lines,
        "records": bytes(records),
    }
    blobs = [fields[name] for name in _FIELDS]
    body = struct.pack(f"<{len(blobs)}I", *(len(blob) for blob in blobs)) + b"".join(blobs)
    return _PREAMBLE.pack(_MAGIC, FORMAT_VERSION, zlib.crc32(body), len(blobs)) + body



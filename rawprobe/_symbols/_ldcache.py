"""Reading ``/etc/ld.so.cache``, the dynamic linker's map from library names to files.

The format is glibc's (``sysdeps/generic/dl-cache.h``; the lookup is ``_dl_load_cache_lookup`` in
``elf/dl-cache.c``). Three layouts exist:

- old (``"ld.so-1.7.0"``): a header, ``nlibs`` 12-byte entries ``{int32 flags; uint32 key,
  value}``, then the strings; ``key``/``value`` are offsets from the end of the entry array;
- new (``"glibc-ld.so.cache1.1"``, the only one glibc 2.32+ writes): a 48-byte header, ``nlibs``
  24-byte entries ``{int32 flags; uint32 key, value; uint32 osversion; uint64 hwcap}``, then the
  strings; offsets count from the start of the new header;
- both: an old cache followed (8-byte aligned) by a new one, which glibc prefers.

:func:`parse_ld_cache` is pure (bytes in, entries out); :func:`lookup_library` applies the naming
rules rawprobe uses for TARGET.
"""

from __future__ import annotations

import os
import struct

from .._errors import RawprobeError
from .._host.files import read_regular_file

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["LdCacheEntry", "library_name_matches", "lookup_library", "parse_ld_cache",
           "read_ld_cache"]

_MAX_LD_CACHE = 64 << 20
_OLD_MAGIC = b"ld.so-1.7.0"
_NEW_MAGIC = b"glibc-ld.so.cache1.1"
_OLD_HEADER = struct.Struct("<11sxI")  # char magic[11]; (pad); unsigned int nlibs
_OLD_ENTRY = struct.Struct("<iII")
_NEW_HEADER = struct.Struct("<20sIIB3xI12x")  # magic+version, nlibs, len_strings, flags, ext
_NEW_ENTRY = struct.Struct("<iIIIQ")
# cache_file_new.flags (dl-cache.h): 0 unset (written before the field existed), 1 invalid,
# 2 little-endian, 3 big-endian.
_ENDIAN_LITTLE = 2
_ENDIAN_BIG = 3
# Entries whose hwcap has this bit set belong to a glibc-hwcaps subdirectory and are picked by CPU
# level (dl-cache.h, DL_CACHE_HWCAP_EXTENSION).
_HWCAP_EXTENSION = 1 << 62


class LdCacheEntry:
    """One library of the cache.

    Attributes:
        flags: Its type and architecture flags (``FLAG_*`` in glibc's ``ldconfig.h``).
        name: The name the dynamic linker looks up (the soname, ``libc.so.6``).
        path: The file it maps to.
        hwcap: The hwcap bits (new format only; 0 in the old one).
    """

    __slots__ = ("flags", "hwcap", "name", "path")

    def __init__(self, flags: int, name: str, path: str, hwcap: int = 0) -> None:
        self.flags = flags
        self.name = name
        self.path = path
        self.hwcap = hwcap

    def __repr__(self) -> str:
        return f"LdCacheEntry({self.flags:#06x}, {self.name!r}, {self.path!r}, {self.hwcap:#x})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LdCacheEntry):
            return NotImplemented
        return (self.flags, self.name, self.path, self.hwcap) == (
            other.flags,
            other.name,
            other.path,
            other.hwcap,
        )

    def __hash__(self) -> int:
        return hash((self.flags, self.name, self.path, self.hwcap))


def _string_at(data: bytes, start: int, offset: int) -> str | None:
    position = start + offset
    if offset < 0 or position >= len(data):
        return None
    end = data.find(b"\0", position)
    if end < 0:
        return None
    return data[position:end].decode("utf-8", "surrogateescape")


def _parse_new(data: bytes, base: int) -> list[LdCacheEntry] | None:
    if len(data) - base < _NEW_HEADER.size:
        return None
    magic, nlibs, _len_strings, endian, _extension = _NEW_HEADER.unpack_from(data, base)
    if magic != _NEW_MAGIC or endian == _ENDIAN_BIG or endian not in (0, _ENDIAN_LITTLE):
        return None
    first = base + _NEW_HEADER.size
    if nlibs > (len(data) - first) // _NEW_ENTRY.size:
        return None
    entries = []
    for index in range(nlibs):
        flags, key, value, _osversion, hwcap = _NEW_ENTRY.unpack_from(
            data, first + index * _NEW_ENTRY.size
        )
        # Offsets count from the start of the new header (dl-cache.c: cache_data = cache_new).
        name = _string_at(data, base, key)
        path = _string_at(data, base, value)
        if name is not None and path is not None:
            entries.append(LdCacheEntry(flags, name, path, hwcap))
    return entries


def parse_ld_cache(data: bytes) -> list[LdCacheEntry]:
    """Decode the entries of an ``ld.so.cache`` file.

    Args:
        data: The whole file.

    Returns:
        The entries in file order (glibc sorts them so that the preferred one comes first).
        Damaged entries are skipped; a file in no known format gives an empty list.
    """
    if data.startswith(_NEW_MAGIC):
        return _parse_new(data, 0) or []
    if not data.startswith(_OLD_MAGIC) or len(data) < _OLD_HEADER.size:
        return []
    _magic, nlibs = _OLD_HEADER.unpack_from(data, 0)
    first = _OLD_HEADER.size
    if nlibs > (len(data) - first) // _OLD_ENTRY.size:
        return []
    strings = first + nlibs * _OLD_ENTRY.size
    # A new-format cache may follow, aligned to 8 bytes (dl-cache.c, ALIGN_CACHE); glibc uses it
    # in preference to the old table.
    new_base = (strings + 7) & ~7
    newer = _parse_new(data, new_base)
    if newer is not None:
        return newer
    entries = []
    for index in range(nlibs):
        flags, key, value = _OLD_ENTRY.unpack_from(data, first + index * _OLD_ENTRY.size)
        name = _string_at(data, strings, key)
        path = _string_at(data, strings, value)
        if name is not None and path is not None:
            entries.append(LdCacheEntry(flags, name, path))
    return entries


_read_cache: dict[str, tuple[tuple[int, int, int, int], list[LdCacheEntry]]] = {}


def read_ld_cache(root: str = "") -> list[LdCacheEntry]:
    """The entries of ``ROOT/etc/ld.so.cache`` (memoised while the file is unchanged).

    Args:
        root: A directory to read the cache under (``/proc/PID/root`` for a container), or ``""``
            for the host's.

    Returns:
        The entries; an empty list when the file is missing or unreadable.
    """
    path = root + "/etc/ld.so.cache"
    try:
        info = os.stat(path)
        key = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
        cached = _read_cache.get(path)
        if cached is not None and cached[0] == key:
            return cached[1]
        # Under /proc/PID/root the container's owner chooses what this is: a regular file of a
        # sane size only (ld.so maps the whole cache; a real one is well under a megabyte).
        entries = parse_ld_cache(read_regular_file(path, _MAX_LD_CACHE))
    except (OSError, RawprobeError):
        return []
    _read_cache[path] = (key, entries)
    return entries


def _version_key(name: str, stem: str) -> tuple[int, ...]:
    # "libssl.so.3" -> (3,), "libfoo.so.1.2" -> (1, 2); non-numeric parts sort lowest.
    parts = name[len(stem) + len(".so") :].split(".")
    return tuple(int(part) if part.isdigit() else -1 for part in parts if part)


def library_name_matches(name: str, file_name: str) -> bool:
    """Whether ``file_name`` (a soname or a file's base name) is the library a TARGET names.

    ``libc`` and ``c`` match ``libc.so.6`` and ``libc-2.31.so``; ``libc.so.6`` matches only itself.

    Args:
        name: The library as the user wrote it.
        file_name: A candidate base name.

    Returns:
        True when it matches.
    """
    if ".so" in name:
        return file_name == name
    stems = [name] if name.startswith("lib") else [name, "lib" + name]
    for stem in stems:
        if file_name == stem + ".so" or file_name.startswith(stem + ".so."):
            return True
        # Old glibc and some other libraries name the file itself libNAME-VERSION.so.
        if file_name.startswith(stem + "-") and file_name.endswith(".so"):
            rest = file_name[len(stem) + 1 : -3]
            if rest and rest[0].isdigit():
                return True
    return False


def lookup_library(
    entries: Sequence[LdCacheEntry], name: str, ld_cache_flags: int
) -> LdCacheEntry | None:
    """Find the library a TARGET name means, the way the dynamic linker would pick it.

    Args:
        entries: The cache's entries.
        name: ``libc``, ``c``, ``libc.so.6``, ``libssl``...
        ld_cache_flags: The native flags of the machine. Only entries with exactly these flags
            are used, as x86_64's and aarch64's ``_dl_cache_check_flags`` do (glibc
            ``sysdeps/unix/sysv/linux/*/dl-cache.h``): the i386 libraries of a multilib host
            (flags 0x0003) are not for 64-bit programs.

    Returns:
        The best entry, or None. With an exact soname the first matching entry wins, as in
        glibc. With a bare name (``libssl``) the highest version wins (``libssl.so.3`` over
        ``libssl.so.1.1``): the library new programs link against. Entries for
        ``glibc-hwcaps`` subdirectories are only used when no baseline entry exists, because
        choosing among them needs the CPU's ISA level, which ``ld.so`` knows and we do not.
    """
    candidates = [
        entry
        for entry in entries
        if entry.flags == ld_cache_flags and library_name_matches(name, entry.name)
    ]
    if not candidates:
        return None
    baseline = [entry for entry in candidates if not entry.hwcap & _HWCAP_EXTENSION]
    candidates = baseline or candidates
    if ".so" in name:
        return candidates[0]
    stem = name if name.startswith("lib") else "lib" + name
    best = candidates[0]
    for entry in candidates[1:]:
        if entry.name.startswith(stem + ".so") and (
            not best.name.startswith(stem + ".so")
            or _version_key(entry.name, stem) > _version_key(best.name, stem)
        ):
            best = entry
    return best

"""Run-time addresses of a process, back to ``function+offset`` through its mappings.

An address in a process is a place in a mapped file: ``/proc/PID/maps`` gives the file and the
file offset of each mapping, and the file's symbol table (through :mod:`rawprobe._symbols`)
gives the function around that file offset. Mappings are read once per process and kept, so
addresses of a process that has since exited still resolve if it was seen alive.
"""

from __future__ import annotations

import bisect
import os

from .._errors import RawprobeError
from .._host.procmaps import Mapping, read_maps
from . import list_functions

__all__ = ["AddressResolver"]


class _FunctionTable:
    def __init__(self, path: str) -> None:
        try:
            functions = list_functions(path)
        except RawprobeError:
            functions = []
        functions = sorted(functions, key=lambda f: f.file_offset)
        self.starts = [f.file_offset for f in functions]
        self.functions = functions

    def lookup(self, file_offset: int) -> tuple[str, int] | None:
        index = bisect.bisect_right(self.starts, file_offset) - 1
        if index < 0:
            return None
        function = self.functions[index]
        distance = file_offset - function.file_offset
        if function.size and distance >= function.size:
            return None
        return function.name, distance


class AddressResolver:
    """Describes addresses of traced processes as ``function+0xoffset``."""

    def __init__(self) -> None:
        self._maps: dict[int, list[Mapping]] = {}
        self._tables: dict[str, _FunctionTable] = {}

    def remember(self, pid: int) -> None:
        """Read (once) the mappings of ``pid`` while it is alive."""
        if pid in self._maps:
            return
        try:
            self._maps[pid] = read_maps(pid)
        except OSError:
            self._maps[pid] = []

    def _mapping(self, pid: int, address: int) -> Mapping | None:
        mappings = self._maps[pid]
        index = bisect.bisect_right([m.start for m in mappings], address) - 1
        if index < 0 or address >= mappings[index].end:
            return None
        return mappings[index]

    def resolve(self, pid: int, address: int) -> tuple[str, int, str] | None:
        """``(function, offset, path)`` of ``address`` in ``pid``, or None if unknown."""
        self.remember(pid)
        mapping = self._mapping(pid, address)
        if mapping is None:
            # Mappings change (dlopen, exec): read them again once before giving up.
            del self._maps[pid]
            self.remember(pid)
            mapping = self._mapping(pid, address)
        if mapping is None:
            return None
        path = mapping.path
        root_path = f"/proc/{pid}/root{path}"
        if os.path.exists(root_path):
            path = root_path  # the file the process really maps, in its own mount namespace
        table = self._tables.get(path)
        if table is None:
            table = self._tables[path] = _FunctionTable(path)
        found = table.lookup(address - mapping.start + mapping.file_offset)
        if found is None:
            return None
        return found[0], found[1], mapping.path

    def describe(self, pid: int, address: int) -> str:
        """``function+0xoffset`` (``function`` at offset 0), or the address in hex."""
        found = self.resolve(pid, address)
        if found is None:
            return f"{address:#x}"
        name, offset, _path = found
        return f"{name}+{offset:#x}" if offset else name

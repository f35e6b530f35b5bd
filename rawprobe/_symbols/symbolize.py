"""Run-time addresses of a process, back to ``function+offset`` through its mappings.

An address in a process is a place in a mapped file: the process's mappings give the file and
the file offset of each mapping, and :func:`rawprobe._symbols.function_at` gives the function
around that file offset. Mappings are kept per process once seen, so addresses of a process
that has since exited still resolve if its mappings were seen while it lived.
"""

from __future__ import annotations

import bisect
import os

from .._errors import RawprobeError
from .._host.procmaps import Mapping, read_maps

TYPE_CHECKING = False  # mypy treats this name as True; at run time it spares importing typing.
if TYPE_CHECKING:
    from ._model import FunctionAt

__all__ = ["AddressResolver"]


class AddressResolver:
    """Describes addresses of traced processes as ``function+0xoffset``."""

    def __init__(self) -> None:
        self._maps: dict[int, list[Mapping]] = {}
        self._starts: dict[int, list[int]] = {}
        self._functions: dict[tuple[str, int], FunctionAt | None] = {}

    def remember(self, pid: int) -> None:
        """Read (once) the mappings of ``pid`` while it is alive."""
        if pid in self._maps:
            return
        try:
            mappings = read_maps(pid)
        except OSError:
            mappings = []
        self.add_mappings(pid, mappings)

    def add_mappings(self, pid: int, mappings: list[Mapping]) -> None:
        """Take ``pid``'s mappings from elsewhere (a recording, the kernel's mmap records)."""
        mappings = sorted(mappings, key=lambda m: m.start)
        self._maps[pid] = mappings
        self._starts[pid] = [m.start for m in mappings]

    def forget(self, pid: int) -> None:
        """Drop what is known of ``pid`` (it exec'd, or its pid is reused)."""
        self._maps.pop(pid, None)
        self._starts.pop(pid, None)

    def _mapping(self, pid: int, address: int) -> Mapping | None:
        mappings = self._maps[pid]
        index = bisect.bisect_right(self._starts[pid], address) - 1
        if index < 0 or address >= mappings[index].end:
            return None
        return mappings[index]

    def resolve(self, pid: int, address: int) -> tuple[str, int, str] | None:
        """``(function, offset, path)`` of ``address`` in ``pid``, or None if unknown."""
        self.remember(pid)
        mapping = self._mapping(pid, address)
        if mapping is None:
            # Mappings change (dlopen, exec): read them again once before giving up.
            self.forget(pid)
            self.remember(pid)
            mapping = self._mapping(pid, address)
        if mapping is None:
            return None
        path = mapping.path
        root_path = f"/proc/{pid}/root{path}"
        if os.path.exists(root_path):
            path = root_path  # the file the process really maps, in its own mount namespace
        found = self._function(path, address - mapping.start + mapping.file_offset)
        if found is None:
            return None
        return found.name, found.offset, mapping.path

    def _function(self, path: str, file_offset: int) -> FunctionAt | None:
        key = (path, file_offset)
        if key not in self._functions:
            try:
                from ._functions import function_at  # the symbol index, on first use

                found = function_at(path, file_offset) if os.path.isfile(path) else None
            except (RawprobeError, OSError, ValueError):
                found = None
            self._functions[key] = found
        return self._functions[key]

    def describe_stack(self, pid: int | None, addresses: tuple[int, ...],
                       caller: int = 0) -> tuple[str, ...]:
        """A user stack's frames, innermost first, described.

        Args:
            pid: A process the stack was seen in (None: only addresses can be shown).
            addresses: Its return addresses, innermost first.
            caller: At a function's first instruction the frame is not set up yet, so a
                frame-pointer walk may skip the caller (kernels since 6.13 add it when the
                first instruction is ``push %rbp``); the return address the probe kept, put
                back second when missing (0: none).
        """
        if caller and addresses and (len(addresses) < 2 or addresses[1] != caller):
            addresses = (addresses[0], caller, *addresses[1:])
        if pid is None:
            return tuple(f"{address:#x}" for address in addresses)
        return tuple(self.describe(pid, address) for address in addresses)

    def describe(self, pid: int, address: int) -> str:
        """``function+0xoffset`` (``function`` at offset 0), or the address in hex."""
        found = self.resolve(pid, address)
        if found is None:
            return f"{address:#x}"
        name, offset, _path = found
        return f"{name}+{offset:#x}" if offset else name

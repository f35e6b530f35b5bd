"""Run-time addresses of a process, back to ``function+offset`` through its mappings.

An address in a process is a place in a mapped file: the process's mappings give the file and
the file offset of each mapping, and :func:`rawprobe._symbols.function_at` gives the function
around that file offset. Mappings come from the kernel's mmap records while a run watches them
(:class:`rawprobe._host.mmaps.MappingWatcher`: every mapping made from the start of the run,
kept after the process exits, as perf keeps them) and from ``/proc/PID/maps`` read the first
time a process is seen (what it mapped before the run started).
"""

from __future__ import annotations

import bisect
import os

from .. import _log
from .._errors import RawprobeError
from .._host.cpus import online_cpus
from .._host.mmaps import MappingWatcher
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
        self._watcher: MappingWatcher | None = None

    def watch(self) -> None:
        """Record every mapping processes make from now on (so that the stacks of processes
        that have exited by the time they are read still resolve). Without the privilege to
        (perf events on every CPU), addresses resolve through /proc only."""
        if self._watcher is not None:
            return
        try:
            self._watcher = MappingWatcher(online_cpus())
        except (OSError, RawprobeError) as error:
            _log.info("not watching mappings (%s): stacks of processes that exit before "
                      "they are read will show addresses", error)

    def close(self) -> None:
        """Stop watching mappings (idempotent)."""
        if self._watcher is not None:
            self._watcher.close()
            self._watcher = None

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

    def _watched(self, pid: int, address: int) -> Mapping | None:
        """The latest mapping the kernel reported for ``address`` in ``pid``."""
        if self._watcher is None:
            return None
        self._watcher.poll()
        for mapping in reversed(self._watcher.mappings(pid) or ()):
            if mapping.start <= address < mapping.end:
                return mapping
        return None

    def _mapping(self, pid: int, address: int) -> Mapping | None:
        mappings = self._maps[pid]
        index = bisect.bisect_right(self._starts[pid], address) - 1
        if index < 0 or address >= mappings[index].end:
            return None
        return mappings[index]

    def resolve(self, pid: int, address: int) -> tuple[str, int, str] | None:
        """``(function, offset, path)`` of ``address`` in ``pid``, or None if unknown."""
        mapping = self._watched(pid, address)
        if mapping is None:
            self.remember(pid)
            mapping = self._mapping(pid, address)
        if mapping is None:
            # Mappings change (dlopen, exec): read them again once before giving up.
            self.forget(pid)
            self.remember(pid)
            mapping = self._mapping(pid, address)
        if mapping is None:
            return None
        file_offset = address - mapping.start + mapping.file_offset
        # The file the process really maps is under its own root (another mount namespace);
        # a process that is exiting loses that root between one look and the next, so the
        # path as it mapped it is the second choice.
        for path in (f"/proc/{pid}/root{mapping.path}", mapping.path):
            found = self._function(path, file_offset)
            if found is not None:
                return found.name, found.offset, mapping.path
        return None

    def _function(self, path: str, file_offset: int) -> FunctionAt | None:
        key = (path, file_offset)
        if key in self._functions:
            return self._functions[key]
        try:
            from ._functions import function_at  # the symbol index, on first use

            found = function_at(path, file_offset) if os.path.isfile(path) else None
        except (RawprobeError, OSError, ValueError):
            return None  # not cached: the file may be readable next time
        if found is not None or not path.startswith("/proc/"):
            self._functions[key] = found
        return found

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

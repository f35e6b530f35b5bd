"""The files a process maps, from ``/proc/PID/maps`` (proc(5)).

Each line is ``start-end perms offset dev inode pathname``; the pathname may contain spaces,
and ends in `` (deleted)`` when the file was removed or replaced after it was mapped.
"""

from __future__ import annotations

__all__ = ["Mapping", "parse_maps", "read_maps"]

_DELETED = " (deleted)"


class Mapping:
    """One file-backed mapping of a process.

    Attributes:
        start: First address.
        end: Address past the last.
        file_offset: Offset in the file of ``start``.
        device: ``major:minor`` in hex, as the kernel prints it (``fd:01``).
        inode: The file's inode number.
        path: The file's path as the process sees it, without `` (deleted)``.
        deleted: Whether the path no longer names the mapped file.
    """

    __slots__ = ("deleted", "device", "end", "file_offset", "inode", "path", "start")

    def __init__(self, start: int, end: int, file_offset: int, device: str, inode: int,
                 path: str, deleted: bool = False) -> None:
        self.start = start
        self.end = end
        self.file_offset = file_offset
        self.device = device
        self.inode = inode
        self.path = path
        self.deleted = deleted

    def __repr__(self) -> str:
        return (f"Mapping({self.start:#x}-{self.end:#x} @{self.file_offset:#x} {self.device} "
                f"{self.inode} {self.path!r}{' deleted' if self.deleted else ''})")

    @property
    def map_files_name(self) -> str:
        """Its entry in ``/proc/PID/map_files`` (fs/proc/base.c names them ``%lx-%lx``)."""
        return f"{self.start:x}-{self.end:x}"


def parse_maps(text: str) -> list[Mapping]:
    """The file-backed mappings in the text of a ``/proc/PID/maps`` file, sorted by address."""
    mappings = []
    for line in text.splitlines():
        parts = line.split(None, 5)
        if len(parts) < 6 or not parts[5].startswith("/"):
            continue
        start, end = (int(x, 16) for x in parts[0].split("-"))
        path = parts[5]
        deleted = path.endswith(_DELETED)
        if deleted:
            path = path[: -len(_DELETED)]
        mappings.append(Mapping(start, end, int(parts[2], 16), parts[3], int(parts[4]), path,
                                deleted))
    mappings.sort(key=lambda m: m.start)
    return mappings


def read_maps(pid: int) -> list[Mapping]:
    """The file-backed mappings of process ``pid``, sorted by address.

    Raises:
        OSError: ``/proc/PID/maps`` cannot be read (no such process, or not allowed).
    """
    with open(f"/proc/{pid}/maps") as maps:
        return parse_maps(maps.read())

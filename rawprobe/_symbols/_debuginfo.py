"""Where separate debug files are looked for, and how one is proved to belong to a binary.

Distributions strip the symbol table (``.symtab``) from what they ship and put it in a separate
debug file, found one of two ways (GDB manual, "Debugging Information in Separate Files"):

- by build-id: ``DEBUGDIR/.build-id/xx/yyyy.debug``, where ``xxyyyy`` is the hex of the
  ``NT_GNU_BUILD_ID`` note; the debug file carries the same note, which must match;
- by debug link: the ``.gnu_debuglink`` section names the file and gives the CRC-32 of its whole
  content; it is looked for next to the binary, in a ``.debug`` subdirectory, and under
  ``DEBUGDIR`` plus the binary's directory. The CRC must match.

``DEBUGDIR`` is ``/usr/lib/debug`` unless ``$RAWPROBE_DEBUG_ROOT`` (colon-separated, like GDB's
``debug-file-directory``) or the caller says otherwise. For a file inside another process's root
(``/proc/PID/root/...``) that root's own ``/usr/lib/debug`` is searched too.

A third source needs no search: MiniDebugInfo, an xz-compressed ELF with a reduced ``.symtab``
embedded in the ``.gnu_debugdata`` section (Fedora and its derivatives).
"""

from __future__ import annotations

import os
import zlib

from .._host.files import regular_file_chunks

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "DEFAULT_DEBUG_ROOT",
    "build_id_candidates",
    "debug_roots",
    "debuglink_candidates",
    "file_crc32",
]

DEFAULT_DEBUG_ROOT = "/usr/lib/debug"


def debug_roots(configured: str | Sequence[str] | None = None) -> tuple[str, ...]:
    """The global debug directories to search.

    Args:
        configured: Directories given by the caller (a colon-separated string or a sequence);
            None means ``$RAWPROBE_DEBUG_ROOT``, or ``/usr/lib/debug`` when that is unset.

    Returns:
        Absolute directory paths, without trailing slashes, duplicates removed.
    """
    if configured is None:
        configured = os.environ.get("RAWPROBE_DEBUG_ROOT", DEFAULT_DEBUG_ROOT)
    items = configured.split(":") if isinstance(configured, str) else list(configured)
    roots: list[str] = []
    for item in items:
        item = item.rstrip("/")
        if item.startswith("/") and item not in roots:
            roots.append(item)
    return tuple(roots)


def build_id_candidates(build_id: str, roots: Sequence[str], process_root: str = "") -> list[str]:
    """Paths where the debug file of a build-id may be.

    Args:
        build_id: The build-id in lowercase hex (at least two bytes).
        roots: The global debug directories.
        process_root: ``/proc/PID/root`` for a file inside a container, else ``""``.

    Returns:
        Candidate paths in search order.
    """
    if len(build_id) < 4:
        return []
    relative = f"/.build-id/{build_id[:2]}/{build_id[2:]}.debug"
    candidates = [root + relative for root in roots]
    if process_root:
        candidates.append(process_root + DEFAULT_DEBUG_ROOT + relative)
    return candidates


def debuglink_candidates(
    path: str, link_name: str, roots: Sequence[str], process_root: str = ""
) -> list[str]:
    """Paths where the file a ``.gnu_debuglink`` names may be, in GDB's order.

    Args:
        path: The probed file (``process_root`` + its path inside the process's root).
        link_name: The file name stored in ``.gnu_debuglink``.
        roots: The global debug directories.
        process_root: ``/proc/PID/root`` for a file inside a container, else ``""``.

    Returns:
        Candidate paths in search order (never ``path`` itself).
    """
    if not link_name or "/" in link_name or link_name in (".", ".."):
        return []
    inner = path[len(process_root) :] if process_root else path
    directory = inner.rsplit("/", 1)[0] if "/" in inner else ""
    candidates = [
        f"{process_root}{directory}/{link_name}",
        f"{process_root}{directory}/.debug/{link_name}",
    ]
    candidates += [f"{root}{directory}/{link_name}" for root in roots]
    if process_root:
        candidates.append(f"{process_root}{DEFAULT_DEBUG_ROOT}{directory}/{link_name}")
    unique: list[str] = []
    for candidate in candidates:
        if candidate != path and candidate not in unique:
            unique.append(candidate)
    return unique


def file_crc32(path: str) -> int:
    """The CRC-32 ``.gnu_debuglink`` uses (the zlib/ISO-HDLC one, binutils
    ``bfd_calc_gnu_debuglink_crc32``) of a whole file.

    The name comes from an ELF file, so anyone who can write next to it chooses what it names:
    only a regular file is read (a FIFO or ``/dev/zero`` would block or never end), up to the
    size it had when opened.

    Raises:
        TargetNotFoundError: It cannot be opened or read.
        NotElfError: Not a regular file.
    """
    crc = 0
    for chunk in regular_file_chunks(path):
        crc = zlib.crc32(chunk, crc)
    return crc

"""A file's symbol index: from this process's memory, the on-disk cache, or the ELF itself.

The index of a file comes from memory (same process), else from the on-disk cache when its key
still matches the file and every debug file that shaped it, else from reading the ELF (the only
path that imports pyelftools). Everything after that works on the index alone.
"""

from __future__ import annotations

import os

from .. import _log
from .._host.files import stat_target
from ._cache import default_cache
from ._debuginfo import debug_roots
from ._errors import TargetChangedError
from ._index import ABSENT_KEY, FileKey, IndexFormatError, SymbolIndex, current_key, file_key
from ._target import split_root

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["clear_memory", "open_index"]


# Indexes already opened by this process: (path, debug roots) → index, least recently opened
# first. A tracer attaching to many files keeps the most recent ones.
_opened: dict[tuple[str, tuple[str, ...]], SymbolIndex] = {}
_OPENED_MAX = 64


def _remember(memo_key: tuple[str, tuple[str, ...]], index: SymbolIndex) -> None:
    _opened.pop(memo_key, None)
    _opened[memo_key] = index
    while len(_opened) > _OPENED_MAX:
        del _opened[next(iter(_opened))]


def _still_valid(index: SymbolIndex, path: str, key: FileKey) -> bool:
    if index.key != key or index.path != path:
        return False
    return all(current_key(dep) == dep_key for dep, dep_key in index.dependencies)


def open_index(
    path: str,
    *,
    debug_root: str | Sequence[str] | None = None,
    use_cache: bool = True,
    expect_key: FileKey | None = None,
) -> SymbolIndex:
    """The symbol index of ``path``: from this process's memory, the disk cache, or the ELF.

    Args:
        path: The file (absolute or relative).
        debug_root: Global debug directories (colon-separated string or sequence); None means
            ``$RAWPROBE_DEBUG_ROOT`` or ``/usr/lib/debug``.
        use_cache: False to ignore (and not write) the disk cache.
        expect_key: The identity of a file the caller opened at ``path``: the index must
            describe that very file.

    Returns:
        The index.

    Raises:
        TargetNotFoundError: The file does not exist or cannot be read.
        NotElfError: It is not an ELF file rawprobe can probe (see its subclasses).
        TargetChangedError: ``path`` is no longer the file ``expect_key`` describes.
    """
    path = os.path.abspath(path)
    info = stat_target(path)
    key = file_key(info)
    if expect_key is not None and key != expect_key:
        raise TargetChangedError(path)
    roots = debug_roots(debug_root)
    memo_key = (path, roots)
    index = _opened.get(memo_key)
    if index is not None and _still_valid(index, path, key):
        return index
    cache = default_cache() if use_cache else None
    entry_name = cache.entry_name(path + "\0" + ":".join(roots), key) if cache else ""
    if cache is not None:
        data = cache.read(entry_name)
        if data is not None:
            try:
                index = SymbolIndex.from_bytes(data)
            except IndexFormatError:
                index = None
            if index is not None and _still_valid(index, path, key):
                _remember(memo_key, index)
                _log_index(index, f"from the symbol cache ({cache.directory})")
                return index
    # The cold path: only now is pyelftools imported.
    from ._build import build_index_data
    from ._encode import encode_index

    found = build_index_data(path, roots, split_root(path)[0])
    found.key = key
    if expect_key is not None and current_key(path) != expect_key:
        raise TargetChangedError(path)  # replaced while it was being read
    encoded = encode_index(found)
    index = SymbolIndex.from_bytes(encoded)
    # Cache only what was read from the file the key describes (it may change while we read).
    if cache is not None and current_key(path) == key:
        cache.write(entry_name, encoded)
    _remember(memo_key, index)
    _log_index(index, "read from the file")
    return index


def _log_index(index: SymbolIndex, origin: str) -> None:
    """What -v tells about a file's symbols: how many, from where, and which debug files."""
    if not _log.enabled(_log.INFO):
        return
    used = ", ".join(f"{source} {where}" for source, where in index.debug_sources)
    _log.info("symbols of %s: %d functions, %s; separate debug information: %s", index.path,
              index.count, origin, used or "none")
    used_paths = {where for _source, where in index.debug_sources}
    for dependency, dependency_key in index.dependencies:
        if dependency_key != ABSENT_KEY and dependency not in used_paths:
            _log.info("symbols of %s: %s exists but is not its debug file (not used)",
                      index.path, dependency)


def clear_memory() -> None:
    """Forget the indexes opened by this process (the disk cache is untouched)."""
    _opened.clear()



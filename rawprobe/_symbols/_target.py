"""TARGET → the file to probe: paths, library names, and files inside another process's root.

A library name is looked up the way the dynamic linker would (its cache, then its trusted
directories); with a PID, first in the process's own mappings, and always under
``/proc/PID/root``, so that a containerised process is probed in the file it really runs: the
kernel attaches a uprobe to an inode, and the inode is the one under the process's root.
"""

from __future__ import annotations

import os
import stat

from .._errors import TargetNotFoundError, UsageError
from .._host.procmaps import read_maps
from .._sys.arch import host_arch
from ._ldcache import library_name_matches, lookup_library, read_ld_cache

__all__ = ["find_target", "resolve_in_root", "split_root"]

# Symbolic links followed before giving up, as the kernel's MAXSYMLINKS (include/linux/namei.h).
_MAX_SYMLINKS = 40


def split_root(path: str) -> tuple[str, str]:
    """Split ``/proc/PID/root/x/y`` into (``/proc/PID/root``, ``/x/y``); other paths: root ``""``.

    Args:
        path: An absolute path.

    Returns:
        The process root prefix (or ``""``) and the path as that process sees it.
    """
    if path.startswith("/proc/"):
        pid_text, _, rest = path[len("/proc/") :].partition("/")
        if pid_text.isdigit() and (rest == "root" or rest.startswith("root/")):
            root = f"/proc/{pid_text}/root"
            return root, path[len(root) :] or "/"
    return "", path


def resolve_in_root(root: str, path: str) -> str:
    """Resolve symbolic links in ``path`` as a process whose root directory is ``root`` would.

    ``os.path.realpath`` cannot be used under ``/proc/PID/root``: the kernel shows that link as
    ``/``, so realpath would silently leave the container for the host's file system. Absolute
    link targets are re-rooted at ``root`` instead.

    Args:
        root: The root prefix (``/proc/PID/root``), or ``""`` for the host's.
        path: An absolute path as seen from that root.

    Returns:
        ``root`` + the resolved path.

    Raises:
        TargetNotFoundError: A component does not exist, or the links loop.
    """
    if not root:
        return os.path.realpath(path)
    pending = [part for part in path.split("/") if part]
    resolved: list[str] = []
    hops = 0
    while pending:
        part = pending.pop(0)
        if part == ".":
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = root + "/" + "/".join([*resolved, part])
        try:
            info = os.lstat(candidate)
        except OSError as error:
            raise TargetNotFoundError(
                f"{path}: {error.strerror.lower() if error.strerror else 'cannot be read'} "
                f"under {root}"
            ) from None
        if stat.S_ISLNK(info.st_mode):
            hops += 1
            if hops > _MAX_SYMLINKS:
                raise TargetNotFoundError(f"{path}: too many levels of symbolic links under {root}")
            link = os.readlink(candidate)
            if link.startswith("/"):
                resolved = []
            pending = [p for p in link.split("/") if p] + pending
            continue
        resolved.append(part)
    return root + "/" + "/".join(resolved)


def _require_file(path: str, target: str) -> str:
    try:
        info = os.stat(path)
    except OSError as error:
        reason = (error.strerror or "cannot be read").lower()
        raise TargetNotFoundError(f"{target}: {reason}") from None
    if stat.S_ISDIR(info.st_mode):
        raise TargetNotFoundError(f"{target}: is a directory; name an executable or library")
    if not stat.S_ISREG(info.st_mode):
        raise TargetNotFoundError(f"{target}: not a regular file")
    return path


def _process_root(pid: int) -> str:
    root = f"/proc/{pid}/root"
    if not os.path.exists(f"/proc/{pid}"):
        raise TargetNotFoundError(f"no process with PID {pid}")
    try:
        os.stat(root + "/")
    except PermissionError:
        raise UsageError(
            f"cannot read {root} (process {pid}'s files): run as root or as the process's owner"
        ) from None
    except OSError:
        raise TargetNotFoundError(f"process {pid} has exited") from None
    return root


def _library_in_maps(name: str, pid: int) -> str | None:
    try:
        mappings = read_maps(pid)
    except PermissionError:
        raise UsageError(
            f"cannot read /proc/{pid}/maps: run as root or as the process's owner"
        ) from None
    except OSError:
        raise TargetNotFoundError(f"no process with PID {pid}") from None
    for mapping in mappings:
        base = mapping.path.rsplit("/", 1)[-1]
        if base == name or library_name_matches(name, base):
            if mapping.deleted:
                # The file was replaced on disk after the process mapped it. The mapping still
                # names the old inode through map_files (proc(5)); the kernel follows that link
                # to the inode, which is what a uprobe attaches to.
                return f"/proc/{pid}/map_files/{mapping.map_files_name}"
            return f"/proc/{pid}/root{mapping.path}"
    return None


def _in_path(name: str, root: str) -> str | None:
    for directory in os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin").split(":"):
        if not directory.startswith("/"):
            continue
        candidate = root + directory.rstrip("/") + "/" + name
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def find_target(target: str, pid: int | None = None) -> str:
    """Return the path of the file a probe's TARGET names.

    Args:
        target: A path (``/usr/bin/bash``, ``./a.out``), or a library name resolved as ``ld.so``
            would (``libc``, ``c``, ``libc.so.6``, ``libssl``): ``/etc/ld.so.cache``, then the
            trusted directories, then (for names that are not library-like) ``$PATH``.
        pid: A process whose files to probe. A library name is first looked up among the files
            the process has mapped; every path is taken under ``/proc/PID/root``.

    Returns:
        An absolute path with symbolic links resolved (under ``/proc/PID/root`` with a PID).

    Raises:
        TargetNotFoundError: Nothing of that name exists, or the process does not.
        UsageError: The process's files cannot be read (permissions).
    """
    if not target:
        raise TargetNotFoundError("empty TARGET: give a path or a library name (e.g. libc)")
    root = _process_root(pid) if pid is not None else ""
    if "/" in target:
        if root and target.startswith("/"):
            path = resolve_in_root(root, target)
            return _require_file(path, f"{target} (in process {pid})")
        _require_file(target, target)
        return os.path.realpath(target)
    if pid is not None:
        mapped = _library_in_maps(target, pid)
        if mapped is not None:
            if "/map_files/" in mapped:
                return mapped
            _root, inner = split_root(mapped)
            return _require_file(resolve_in_root(root, inner), target)
    elif os.path.isfile(target):
        # A bare file name that exists here ("rawprobe list a.out") means that file.
        return os.path.realpath(target)
    arch = host_arch()
    if arch is not None:
        entry = lookup_library(read_ld_cache(root), target, arch.ld_cache_flags)
        if entry is not None and entry.path.startswith("/"):
            try:
                return _require_file(resolve_in_root(root, entry.path), target)
            except TargetNotFoundError:
                pass  # A stale cache entry: fall through to the directories, as ld.so does.
        for directory in arch.library_dirs:
            try:
                names = os.listdir(root + directory)
            except OSError:
                continue
            matches = sorted(name for name in names if library_name_matches(target, name))
            if matches:
                exact = [name for name in matches if name == target]
                chosen = exact[0] if exact else matches[-1]
                return _require_file(resolve_in_root(root, f"{directory}/{chosen}"), target)
    looks_like_library = target.startswith("lib") or ".so" in target
    if not looks_like_library:
        found = _in_path(target, root)
        if found is not None:
            return resolve_in_root(root, found[len(root) :]) if root else os.path.realpath(found)
    where = f" in process {pid}" if pid is not None else ""
    raise TargetNotFoundError(
        f"{target}: no such file, and no library or program of that name{where} "
        "(searched the dynamic linker's cache /etc/ld.so.cache, its directories and $PATH); "
        "give the file's path"
    )

"""The on-disk cache of symbol indexes, and the rules that make it safe for root to trust.

rawprobe usually runs as root, and what it reads from the cache decides where breakpoints go in
other people's programs. So the cache directory is used only when it is a real directory (not a
symbolic link) owned by the effective user and writable by nobody else; it is created 0700.
Entries are opened relative to that directory's file descriptor with ``O_NOFOLLOW``, must be
regular files owned by the effective user and not group/world-writable, and are written to a
temporary file (0600) that is renamed into place, so a reader never sees half an entry. A
directory that fails these checks is ignored, not repaired: the caller still works, only slower.

The cache holds no truth of its own. Each entry carries the identity of the file it indexes
(device, inode, size, mtime, ctime) and of every debug file that decided its content; the caller
discards the entry unless all of them still match (see ``_resolve.py``).

Where: ``$RAWPROBE_CACHE_DIR`` (an empty value disables the cache), else
``$XDG_CACHE_HOME/rawprobe``, else ``~/.cache/rawprobe``.
"""

from __future__ import annotations

import os
import stat
import zlib

__all__ = ["SymbolCache", "cache_directory", "default_cache"]

_INDEX_SUFFIX = ".idx"
# Entries of files that were replaced or deleted are never read again; past this many entries the
# least recently written ones are removed (on the cold path, when an entry is written).
MAX_ENTRIES = 512


def cache_directory() -> str | None:
    """The cache directory the environment selects, or None when the cache is disabled."""
    configured = os.environ.get("RAWPROBE_CACHE_DIR")
    if configured is not None:
        return configured or None
    base = os.environ.get("XDG_CACHE_HOME") or ""
    if not base.startswith("/"):
        # The XDG spec says a relative value is invalid and must be ignored.
        home = os.path.expanduser("~")
        if not home.startswith("/"):
            return None
        base = os.path.join(home, ".cache")
    return os.path.join(base, "rawprobe")


class SymbolCache:
    """A cache directory, checked once and then used through its file descriptor.

    Attributes:
        directory: The directory's path, or None when disabled.
        reason: Why the cache is not in use (``""`` when it is).
    """

    def __init__(self, directory: str | None) -> None:
        self.directory = directory
        self.reason = "" if directory else "disabled (RAWPROBE_CACHE_DIR is empty)"
        self._fd: int | None = None
        self._checked = False

    @property
    def usable(self) -> bool:
        """Whether entries are read and written (checks the directory on first use)."""
        return self._directory_fd() is not None

    def _directory_fd(self) -> int | None:
        if self._checked:
            return self._fd
        self._checked = True
        if not self.directory:
            return None
        directory = self.directory
        try:
            parent = os.path.dirname(directory.rstrip("/")) or "/"
            os.makedirs(parent, mode=0o700, exist_ok=True)
            os.makedirs(directory, mode=0o700, exist_ok=True)
            fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as error:
            self.reason = f"{directory}: {error.strerror or error}"
            return None
        info = os.fstat(fd)
        problem = ""
        if info.st_uid != os.geteuid():
            problem = f"owned by uid {info.st_uid}, not by the effective user {os.geteuid()}"
        elif info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            problem = f"writable by group or others (mode {stat.S_IMODE(info.st_mode):o})"
        if problem:
            os.close(fd)
            self.reason = f"{directory} is not used: {problem}"
            return None
        self._fd = fd
        return fd

    @staticmethod
    def entry_name(path: str, key: tuple[int, ...]) -> str:
        """The cache file name for a probed file: its device and inode, plus a hash of the path.

        Two paths to the same inode get separate entries because the debug files found for a
        file depend on its directory.

        Args:
            path: The probed file's path.
            key: Its identity (device and inode first).

        Returns:
            A file name inside the cache directory.
        """
        encoded = path.encode("utf-8", "surrogateescape")
        return (
            f"{key[0]:x}-{key[1]:x}-{zlib.crc32(encoded):08x}{zlib.adler32(encoded):08x}"
            f"{_INDEX_SUFFIX}"
        )

    def read(self, name: str) -> bytes | None:
        """The bytes of entry ``name``, or None when it is absent or not trustworthy."""
        fd = self._directory_fd()
        if fd is None:
            return None
        try:
            # O_NONBLOCK: a FIFO in the directory must not block the open (it is refused below).
            entry = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK,
                            dir_fd=fd)
        except OSError:
            return None
        try:
            info = os.fstat(entry)
            if (
                not stat.S_ISREG(info.st_mode)
                or info.st_uid != os.geteuid()
                or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
            ):
                return None
            chunks = []
            remaining = info.st_size
            while remaining > 0:
                chunk = os.read(entry, remaining)
                if not chunk:
                    break
                chunks.append(chunk)
                remaining -= len(chunk)
            return b"".join(chunks)
        except OSError:
            return None
        finally:
            os.close(entry)

    def write(self, name: str, data: bytes) -> bool:
        """Store entry ``name`` atomically; False (and nothing stored) when it cannot be."""
        fd = self._directory_fd()
        if fd is None:
            return False
        temporary = f".{name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
        try:
            entry = os.open(
                temporary,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o600,
                dir_fd=fd,
            )
        except OSError:
            return False
        try:
            try:
                os.fchmod(entry, 0o600)  # The umask could only have narrowed it; be explicit.
                view = memoryview(data)
                while view:
                    written = os.write(entry, view)
                    view = view[written:]
            finally:
                os.close(entry)
            os.rename(temporary, name, src_dir_fd=fd, dst_dir_fd=fd)
        except OSError:
            import contextlib

            with contextlib.suppress(OSError):
                os.unlink(temporary, dir_fd=fd)
            return False
        self._prune(fd, keep=name)
        return True

    @staticmethod
    def _prune(fd: int, keep: str) -> None:
        """Keep the MAX_ENTRIES most recently written entries of ``keep``'s kind (its
        suffix: symbol indexes, plans)."""
        suffix = os.path.splitext(keep)[1] or _INDEX_SUFFIX
        try:
            names = [name for name in os.listdir(fd) if name.endswith(suffix)]
            if len(names) <= MAX_ENTRIES:
                return
            written = []
            for name in names:
                info = os.stat(name, dir_fd=fd, follow_symlinks=False)
                written.append((info.st_mtime_ns, name))
        except OSError:
            return
        written.sort()
        for _mtime, name in written[: len(written) - MAX_ENTRIES]:
            if name != keep:
                try:
                    os.unlink(name, dir_fd=fd)
                except OSError:
                    continue

    def close(self) -> None:
        """Release the directory's file descriptor (the next use checks the directory again)."""
        if self._fd is not None:
            os.close(self._fd)
        self._fd = None
        self._checked = False


_default: SymbolCache | None = None


def default_cache() -> SymbolCache:
    """The process-wide cache for the directory the environment selects now."""
    global _default
    directory = cache_directory()
    if _default is None or _default.directory != directory:
        if _default is not None:
            _default.close()
        _default = SymbolCache(directory)
    return _default

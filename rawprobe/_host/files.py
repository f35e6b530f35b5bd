"""Opening the files that probes name, with the errors a user should see for each failure."""

from __future__ import annotations

import errno
import os
import stat
import weakref

from .._errors import NotElfError, TargetNotFoundError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import BinaryIO

__all__ = ["TargetFile", "open_target", "read_regular_file", "regular_file_chunks", "stat_target"]


def stat_target(path: str) -> os.stat_result:
    """``os.stat(path)`` of a regular file, or the error that says why it cannot be probed.

    Raises:
        TargetNotFoundError: No such file, or it cannot be reached.
        NotElfError: A directory or another non-regular file.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise TargetNotFoundError(f"{path}: no such file") from None
    except OSError as error:
        raise TargetNotFoundError(f"{path}: {(error.strerror or 'cannot stat').lower()}") from None
    if stat.S_ISDIR(info.st_mode):
        raise NotElfError(f"{path}: is a directory, not an ELF file")
    if not stat.S_ISREG(info.st_mode):
        raise NotElfError(f"{path}: not a regular file, so not a program or library")
    return info


def open_target(path: str) -> tuple[BinaryIO, int]:
    """``path`` opened for reading in binary, and its size; the caller closes it.

    Only a regular file is opened: a FIFO or a device planted where a program, a library or a
    debug file was expected (a ``.gnu_debuglink`` name, a build-id path) is refused without
    blocking on it (the open is non-blocking, and the type is checked on the descriptor).

    Raises:
        TargetNotFoundError: No such file, or it cannot be read.
        NotElfError: A directory, or anything else that is not a regular file.
    """
    fd = _open_readonly(path)
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        if stat.S_ISDIR(info.st_mode):
            raise NotElfError(f"{path}: is a directory, not an ELF file")
        raise NotElfError(f"{path}: not a regular file, so not a program or library")
    return os.fdopen(fd, "rb"), info.st_size


def _open_readonly(path: str) -> int:
    """``os.open`` for reading, never blocking (a FIFO), with the errors a user should see:
    the file's, or, out of descriptors, the limit's (raised to the hard limit first)."""
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY
    try:
        return os.open(path, flags)
    except FileNotFoundError:
        raise TargetNotFoundError(f"{path}: no such file") from None
    except OSError as error:
        if error.errno != errno.EMFILE:
            raise TargetNotFoundError(
                f"{path}: {(error.strerror or 'cannot open').lower()}") from None
    from .._sys.limits import out_of_descriptors, raise_descriptor_limit

    if not raise_descriptor_limit():
        raise out_of_descriptors(path)
    return _open_readonly(path)
def regular_file_chunks(path: str, chunk_size: int = 1 << 20,
                        max_size: int | None = None) -> Iterator[bytes]:
    """The bytes of the regular file ``path``, in chunks, up to the size it had when opened.

    Opened as :func:`open_target` opens (a FIFO, a device or a symbolic link to one is refused
    without blocking), and read no further than the size ``fstat`` gave: a file of ``/proc`` or
    ``/sys`` that claims size 0 yields nothing rather than whatever it would produce.

    Raises:
        TargetNotFoundError: No such file, or it cannot be read.
        NotElfError: Not a regular file, or larger than ``max_size`` bytes.
    """
    stream, size = open_target(path)
    with stream:
        if max_size is not None and size > max_size:
            raise NotElfError(f"{path}: {size} bytes, more than the {max_size} expected")
        position = 0
        while position < size:
            try:
                chunk = stream.read(min(chunk_size, size - position))
            except OSError as error:
                raise TargetNotFoundError(
                    f"{path}: {(error.strerror or 'cannot read').lower()}") from None
            if not chunk:
                return
            position += len(chunk)
            yield chunk


def read_regular_file(path: str, max_size: int) -> bytes:
    """All of the regular file ``path``, read as :func:`regular_file_chunks` reads it.

    Raises:
        TargetNotFoundError: No such file, or it cannot be read.
        NotElfError: Not a regular file, or larger than ``max_size`` bytes.
    """
    return b"".join(regular_file_chunks(path, max_size=max_size))


class TargetFile:
    """A file a probe goes into, opened once for the whole run.

    Resolution, the safety checks and the kernel must all see the same inode: a file renamed
    over between resolving a symbol and planting the probe would otherwise get a probe at an
    offset computed for another file (in the middle of an instruction, say). So the planner
    opens each target once, checks that the symbol index it used describes this very file
    (:attr:`key`), reads the probed bytes through this descriptor, and hands the kernel
    :attr:`kernel_path`, which names this open file and nothing else (proc(5),
    ``/proc/PID/fd/``).

    Args:
        path: The file (absolute, as resolved from the probe's TARGET).

    Raises:
        TargetNotFoundError: No such file, or it cannot be read.
        NotElfError: A directory, a device, a FIFO: anything but a regular file.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        # O_NONBLOCK: a FIFO put where a program was expected must not block the open.
        fd = _open_readonly(path)
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            if stat.S_ISDIR(info.st_mode):
                raise NotElfError(f"{path}: is a directory, not an ELF file")
            raise NotElfError(f"{path}: not a regular file, so not a program or library")
        self.fd: int = fd
        self.info = info
        # Whether each -p process maps this file, as the planner found (it asks for every site:
        # reading /proc/PID/maps once per file, not once per site).
        self.mapped_by: dict[int, bool | None] = {}
        self._finalizer = weakref.finalize(self, os.close, fd)

    @property
    def key(self) -> tuple[int, int, int, int, int]:
        """The file's identity: device, inode, size, mtime and ctime (as the symbol cache keys
        a file)."""
        info = self.info
        return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)

    @property
    def kernel_path(self) -> str:
        """A path that names this open file: what the kernel is given to plant a probe."""
        return f"/proc/self/fd/{self.fd}"

    def read(self, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes at ``offset`` (fewer at the end of the file)."""
        if offset < 0 or offset >= self.info.st_size or size <= 0:
            return b""
        return os.pread(self.fd, min(size, self.info.st_size - offset), offset)

    def close(self) -> None:
        self._finalizer()

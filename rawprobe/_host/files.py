"""Opening the files that probes name, with the errors a user should see for each failure."""

from __future__ import annotations

import os
import stat

from .._errors import NotElfError, TargetNotFoundError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import BinaryIO

__all__ = ["open_target", "stat_target"]


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

    Raises:
        TargetNotFoundError: No such file, or it cannot be read.
        NotElfError: A directory.
    """
    try:
        stream = open(path, "rb")  # noqa: SIM115 - returned to the caller, who closes it
    except FileNotFoundError:
        raise TargetNotFoundError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise NotElfError(f"{path}: is a directory, not an ELF file") from None
    except OSError as error:
        raise TargetNotFoundError(f"{path}: {(error.strerror or 'cannot open').lower()}") from None
    return stream, os.fstat(stream.fileno()).st_size

"""Host limits a trace can run into, and what to do about them."""

from __future__ import annotations

import errno
import resource

from .._errors import SysCallError, UsageError
from .perf import PerfEventAttr, perf_event_open

__all__ = [
    "open_perf_event",
    "original_descriptor_limit",
    "out_of_descriptors",
    "raise_descriptor_limit",
]

# The limit this process started with, before rawprobe raised it: what a command it starts
# must get back (it is the user's program, not rawprobe's).
_ORIGINAL_NOFILE = resource.getrlimit(resource.RLIMIT_NOFILE)


def original_descriptor_limit() -> tuple[int, int]:
    """RLIMIT_NOFILE as it was when rawprobe started: ``(soft, hard)``."""
    return _ORIGINAL_NOFILE


def raise_descriptor_limit() -> bool:
    """Raise the soft limit on open files to the hard one (each perf-event uprobe holds a
    descriptor); whether there was room to raise it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= hard:
        return False
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return True


def out_of_descriptors(what: str) -> UsageError:
    """The error for running out of descriptors, naming the limit and how to raise it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return UsageError(
        f"out of file descriptors opening {what}: the limit is {soft} (RLIMIT_NOFILE, hard "
        f"limit {hard}); each uprobe outside a uprobe_multi link, and with tracefs each probe "
        "per CPU or thread, takes one. Raise it ('ulimit -n', or as root the hard limit "
        "too), or trace fewer probes"
    )


def open_perf_event(attr: PerfEventAttr, pid: int, cpu: int, what: str) -> int:
    """perf_event_open(2) of ``what``, again after raising the soft descriptor limit if this
    process ran out of descriptors; :func:`out_of_descriptors` when it cannot be raised.

    Raises:
        SysCallError: Any other refusal, for the caller to explain.
        UsageError: Out of descriptors.
    """
    for attempt in range(2):
        try:
            return perf_event_open(attr, pid, cpu)
        except SysCallError as error:
            if error.errno != errno.EMFILE:
                raise
            if attempt or not raise_descriptor_limit():
                raise out_of_descriptors(what) from None
    raise AssertionError("unreachable")  # pragma: no cover

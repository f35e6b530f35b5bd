"""Host limits a trace can run into, and what to do about them."""

from __future__ import annotations

import resource

from ._errors import UsageError

__all__ = ["out_of_descriptors", "raise_descriptor_limit"]


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

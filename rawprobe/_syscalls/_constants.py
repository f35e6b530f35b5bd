"""Look-ups in the generated tables (:mod:`._table`) for one machine architecture.

The tables hold, per architecture, what the kernel's UAPI headers define; this module answers
"what is system call 257 called on x86_64", "what is the name of errno 2", "which flags make up
this set". Machines are named as ``uname -m`` names them (``x86_64``, ``aarch64``).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass

from .._errors import KernelFeatureError
from ._table import COMMON, PER_ARCH

__all__ = [
    "KERNEL_INTERNAL_ERRNOS",
    "SUPPORTED_MACHINES",
    "NamedConstants",
    "SyscallNumbers",
    "constant_set",
    "errno_description",
    "errno_name",
    "errno_number",
    "host_machine",
    "named_constants",
    "syscall_numbers",
]

Pairs = tuple[tuple[str, int], ...]

SUPPORTED_MACHINES: tuple[str, ...] = tuple(sorted(PER_ARCH))

# Error numbers the kernel uses inside and never exports in its UAPI headers
# (include/linux/errno.h). A system call interrupted by a signal returns one of the ERESTART*
# ones; "ptrace can observe these at syscall exit tracing" (that header's comment), and so can
# the syscall exit tracepoint, which fires at the same point (kernel/entry/syscall-common.c,
# syscall_exit_work()). The descriptions say what the kernel does next, as strace prints them.
KERNEL_INTERNAL_ERRNOS: Mapping[int, tuple[str, str]] = {
    512: ("ERESTARTSYS", "To be restarted if SA_RESTART is set"),
    513: ("ERESTARTNOINTR", "To be restarted"),
    514: ("ERESTARTNOHAND", "To be restarted if no handler"),
    515: ("ENOIOCTLCMD", "No ioctl command"),
    516: ("ERESTART_RESTARTBLOCK", "Interrupted by signal"),
}


def host_machine() -> str:
    """The running machine's architecture, as ``uname -m`` prints it."""
    return os.uname().machine


def _machine_or_host(machine: str | None) -> str:
    name = machine or host_machine()
    if name not in PER_ARCH:
        raise KernelFeatureError(
            f"rawprobe has no system call tables for the {name} architecture (it has them for "
            f"{', '.join(SUPPORTED_MACHINES)}); add it to rawprobe/_syscalls/_generate.py's "
            "ARCHES and regenerate"
        )
    return name


def constant_set(key: str, machine: str | None = None) -> Pairs:
    """The (name, value) pairs of one generated set, in header order.

    Args:
        key: The set's name in ``_table.py`` (``open_flags``, ``signals``, ``errno``...).
        machine: The architecture (default: this machine's).

    Raises:
        KernelFeatureError: No tables for that architecture.
        KeyError: No such set (a programming error, not a user's).
    """
    name = _machine_or_host(machine)
    arch_sets = PER_ARCH[name]
    if key in arch_sets:
        return arch_sets[key]
    return COMMON[key]


@dataclass(frozen=True)
class NamedConstants:
    """One set of constants, by name and by value.

    Attributes:
        pairs: (name, value) in header order.
        by_name: name → value.
        by_value: value → the set's name for it (the first, when a value has several).
    """

    pairs: Pairs
    by_name: Mapping[str, int]
    by_value: Mapping[int, str]

    @classmethod
    def of(cls, pairs: Pairs) -> NamedConstants:
        by_value: dict[int, str] = {}
        for name, value in pairs:
            by_value.setdefault(value, name)
        return cls(pairs, dict(pairs), by_value)


@functools.cache
def named_constants(key: str, machine: str | None = None) -> NamedConstants:
    """:func:`constant_set` indexed both ways (cached)."""
    return NamedConstants.of(constant_set(key, machine))


@dataclass(frozen=True)
class SyscallNumbers:
    """One architecture's system call numbers.

    Attributes:
        machine: The architecture.
        by_name: Name (as the headers spell it: ``newfstatat``, ``pread64``) → number.
        by_number: Number → name.
    """

    machine: str
    by_name: Mapping[str, int]
    by_number: Mapping[int, str]

    def name(self, number: int) -> str:
        """The name of system call ``number``, or ``syscall_NNN`` when the table lacks it (a
        system call newer than the headers the table came from)."""
        return self.by_number.get(number, f"syscall_{number}")


@functools.cache
def syscall_numbers(machine: str | None = None) -> SyscallNumbers:
    """The system call numbers of ``machine`` (default: this machine's), from its headers.

    Raises:
        KernelFeatureError: No tables for that architecture.
    """
    name = _machine_or_host(machine)
    pairs = PER_ARCH[name]["syscalls"]
    return SyscallNumbers(name, dict(pairs), {number: call for call, number in pairs})


def errno_name(number: int) -> str | None:
    """The symbolic name of error number ``number`` (2 → ``ENOENT``), or None if unknown.

    Error numbers are the same on every architecture rawprobe supports
    (``asm-generic/errno*.h``), kernel-internal ones (``ERESTARTSYS``) included.
    """
    if number in KERNEL_INTERNAL_ERRNOS:
        return KERNEL_INTERNAL_ERRNOS[number][0]
    return named_constants("errno", SUPPORTED_MACHINES[0]).by_value.get(number)


def errno_number(name: str) -> int | None:
    """The error number called ``name`` (``ENOENT`` → 2), or None if there is none."""
    for number, (internal, _) in KERNEL_INTERNAL_ERRNOS.items():
        if internal == name:
            return number
    return named_constants("errno", SUPPORTED_MACHINES[0]).by_name.get(name)


def errno_description(number: int) -> str:
    """What error ``number`` means, as the C library's strerror() says it (strace prints the
    same); kernel-internal numbers get the kernel's meaning."""
    if number in KERNEL_INTERNAL_ERRNOS:
        return KERNEL_INTERNAL_ERRNOS[number][1]
    try:
        return os.strerror(number)
    except ValueError:
        return f"Unknown error {number}"

"""Choosing and opening a backend for a plan: BPF where it works, the kernel's own tracer
(tracefs) where it does not."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Sequence

from . import _log
from ._command import Command, Processes
from ._errors import (
    BpfObjectError,
    KernelFeatureError,
    LibbpfMissingError,
    PrivilegeError,
    RawprobeError,
    UsageError,
)
from ._host.privileges import bpf_refusal, check_tracing_privileges, tracefs_refusal
from ._plan.session import Plan, Session, TraceTarget
from ._symbols.symbolize import AddressResolver
from ._sys.limits import out_of_descriptors, raise_descriptor_limit

__all__ = ["BACKENDS", "open_session", "plant", "release"]

BACKENDS = ("auto", "bpf", "tracefs")


def open_session(plan: Plan, backend: str, *, ring_size: int,
                 follow: bool) -> tuple[Session, str, str]:
    """A session of ``backend`` for ``plan``.

    Args:
        plan: What to plant.
        backend: ``bpf``, ``tracefs``, or ``auto``: BPF where it works here, else tracefs.
        ring_size: Bytes of ring buffer.
        follow: The session will trace a command and its children.

    Returns:
        The session, the backend it is (``bpf`` or ``tracefs``), and a note for the user
        when ``auto`` fell back to tracefs (else ``""``).

    Raises:
        PrivilegeError: Not allowed to trace with the backend (nothing is planted).
        UsageError: Out of file descriptors (the message names the limit).
    """
    # Every map, program, link and perf event is a descriptor: use all the room there is.
    raise_descriptor_limit()
    try:
        session, chosen, note = _open(plan, backend, ring_size, follow)
    except OSError as error:
        if error.errno == errno.EMFILE:
            raise out_of_descriptors("rawprobe's BPF maps and programs") from None
        raise
    _log.info("backend: %s%s", chosen, f" ({note})" if note else (
        " (chosen)" if backend == chosen else " (auto: it works here)"))
    return session, chosen, note


def _open(plan: Plan, backend: str, ring_size: int, follow: bool) -> tuple[Session, str, str]:
    # Every privilege is checked before anything is loaded or planted.
    if backend == "auto":
        refusal: RawprobeError | None = bpf_refusal()
        if refusal is None:
            try:
                return _bpf(plan, ring_size, follow), "bpf", ""
            except (KernelFeatureError, BpfObjectError, LibbpfMissingError,
                    PrivilegeError) as error:
                refusal = error
        if any(event.kind != "uprobe" for event in plan.events):
            raise refusal  # tp: and sys: probes run on the BPF backend only: say why it failed
        if tracefs_refusal() is not None:
            raise refusal  # the BPF backend's reason: it is the one tried first
        note = f"using the tracefs backend: {str(refusal).splitlines()[0]}"
        return _tracefs(plan, ring_size, follow), "tracefs", note
    check_tracing_privileges(backend=backend)
    if backend == "tracefs":
        return _tracefs(plan, ring_size, follow), backend, ""
    return _bpf(plan, ring_size, follow), backend, ""


def _bpf(plan: Plan, ring_size: int, follow: bool) -> Session:
    from ._bpf.session import BpfSession

    return BpfSession(plan, ring_size=ring_size, follow=follow)


def _tracefs(plan: Plan, ring_size: int, follow: bool) -> Session:
    from ._tracefs import TracefsSession

    return TracefsSession(plan, ring_size=ring_size, follow=follow)


def plant(session: Session, command: Command | None, processes: Processes,
          watched: Sequence[int]) -> list[str]:
    """Plant a session's probes for what a run traces, and start the command if there is
    one (once everything is in place).

    Args:
        session: The opened session.
        command: The command to start and follow, or None.
        processes: The ``-p`` processes (none: every process on the host).
        watched: Descriptors that must also wake the session's wait.

    Returns:
        Notes for the user: probes of a glob the kernel would not place, left out.

    Raises:
        UsageError: The kernel would not place a probe named on its own.
    """
    if command is not None and session.follow_at_exec:
        command.spawn(stop_at_exec=True)
        command.release()
        if command.wait_exec():
            session.attach_all(TraceTarget(command_pid=command.pid))
    elif command is not None:
        command.spawn()
        session.attach_all(TraceTarget(command_pid=command.pid))
    else:
        session.attach_all(TraceTarget(pids=processes.pids))
    notes = []
    for event, reason in session.unplaced:
        if not event.from_glob:
            raise UsageError(f"{event.name} ({event.path}:{event.file_offset:#x}): {reason}")
        notes.append(f"{event.name} left out: {reason}")
    for fd in ([command.pidfd] if command is not None else processes.open()):
        session.watch(fd)
    for fd in watched:
        session.watch(fd)
    if command is not None:
        command.release()
        command.resume()
    return notes


def release(state: dict[str, object]) -> None:
    """Free what a tracer holds (its ``__dict__``): the session (every probe removed), the
    command, the opened targets, the ``-p`` pidfds, the wake-up pipe. Run by
    ``Tracer.close()``, or at garbage collection or interpreter exit for a tracer left open."""
    session = state.get("_session")
    command = state.get("_command")
    planner = state.get("_planner")
    processes = state.get("_processes")
    resolver = state.get("resolver")
    try:
        if session is not None:
            session.close()  # type: ignore[attr-defined]
    finally:
        if isinstance(command, Command):
            command.close()
        if planner is not None:  # a Planner (not imported here: a cached plan needs none)
            planner.release_files()  # type: ignore[attr-defined]
        if isinstance(processes, Processes):
            processes.close()
        if isinstance(resolver, AddressResolver):
            resolver.close()
        for fd in [state.get("_wake_read"), state.get("_wake_write")]:
            if isinstance(fd, int) and fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        state["_wake_read"] = state["_wake_write"] = -1

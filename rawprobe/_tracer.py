"""The Tracer: probes in, events out, every resource owned and released."""

from __future__ import annotations

import os
import shutil
import signal
import time
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import cast

from ._backend import PlannedUprobe, Session, TraceTarget
from ._bpfbackend import DEFAULT_RING_SIZE, BpfSession
from ._compile import DEFAULT_STRING_SIZE, compile_fetchargs
from ._errors import ClosedError, TargetNotFoundError, UsageError
from ._fetchargs import UsdtArgument
from ._privileges import check_tracing_privileges
from ._probespec import ProbeSpec, default_event_name, parse_probe
from ._records import Event, RecordLayout
from ._symbols import find_target, resolve_location

__all__ = ["TraceStats", "Tracer"]


@dataclass(frozen=True)
class TraceStats:
    """Accounting of one run.

    Attributes:
        events: Records delivered to the caller.
        lost: Records the BPF programs could not write (ring buffer full).
        hits: Times the probes fired (in traced processes).
        filtered: Hits the filter rejected.
        pending: Records still in the ring buffer, not yet delivered.
    """

    events: int
    lost: int
    hits: int
    filtered: int


@dataclass(frozen=True)
class _Site:
    """One place a probe word resolved to."""

    symbol: str | None
    file_offset: int
    ref_ctr_offset: int
    usdt_args: tuple[UsdtArgument, ...] | None


class _Command:
    """A command started by the tracer, held at the door until the probes are in place."""

    def __init__(self, argv: Sequence[str]) -> None:
        if not argv:
            raise UsageError("no command given after --")
        if shutil.which(argv[0]) is None:
            raise TargetNotFoundError(f"{argv[0]}: command not found")
        self.argv = list(argv)
        self.pid = 0
        self.pidfd = -1
        self.status: int | None = None
        self._gate_write = -1

    def spawn(self) -> None:
        gate_read, gate_write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: wait for the go, then become the command
            try:
                os.close(gate_write)
                os.read(gate_read, 1)
                os.close(gate_read)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                os.execvp(self.argv[0], self.argv)
            except BaseException:
                os._exit(127)
        os.close(gate_read)
        self.pid = pid
        self._gate_write = gate_write
        self.pidfd = os.pidfd_open(pid)

    def release(self) -> None:
        if self._gate_write >= 0:
            os.write(self._gate_write, b"x")
            os.close(self._gate_write)
            self._gate_write = -1

    def poll(self) -> bool:
        """Whether the command has ended (reaping it)."""
        if self.status is None and self.pid:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
        return self.status is not None

    def close(self) -> None:
        """Never leave the child behind: one that never ran is killed, one still running is
        sent SIGTERM (and SIGKILL if it has not ended within a second)."""
        if self._gate_write >= 0:
            os.kill(self.pid, signal.SIGKILL)
            os.close(self._gate_write)
            self._gate_write = -1
            os.waitpid(self.pid, 0)
            self.status = -signal.SIGKILL
        elif self.pid and not self.poll():
            os.kill(self.pid, signal.SIGTERM)
            deadline = time.monotonic() + 1.0
            while not self.poll() and time.monotonic() < deadline:
                time.sleep(0.01)
            if not self.poll():
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
                self.status = -signal.SIGKILL
        if self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1


class Tracer:
    """Plants probes and delivers their events.

    Args:
        pid: Trace only this process (or these processes), all threads; ``None`` traces every
            process on the host that runs the probed code.
        command: Start this command once the probes are in place, trace it and every process
            it forks, and end when it exits.
        string_size: Bytes copied at most per string, NUL included.
        ring_size: Bytes of the ring buffer between the BPF programs and this process.
        force: Plant probes rawprobe would otherwise refuse as risky.
        backend: ``bpf`` (generic BPF programs) or ``tracefs`` (the kernel's uprobe_events).

    A tracer is used from one thread at a time. Probes are added before :meth:`start`; the
    first call to :meth:`events` or :meth:`poll` starts the tracer if needed.
    """

    def __init__(
        self,
        pid: int | Sequence[int] | None = None,
        *,
        command: Sequence[str] | None = None,
        string_size: int = DEFAULT_STRING_SIZE,
        ring_size: int = DEFAULT_RING_SIZE,
        force: bool = False,
        backend: str = "bpf",
    ) -> None:
        self.pids: tuple[int, ...] = (
            () if pid is None else (pid,) if isinstance(pid, int) else tuple(pid)
        )
        if self.pids and command:
            raise UsageError("give either -p PID or a command, not both")
        for p in self.pids:
            if not os.path.exists(f"/proc/{p}"):
                raise TargetNotFoundError(f"no process with pid {p}")
        self.string_size = string_size
        self.ring_size = ring_size
        self.force = force
        if backend not in ("bpf", "tracefs"):
            raise UsageError(f"unknown backend {backend!r}: use bpf or tracefs")
        self.backend = backend
        self._command = _Command(command) if command else None
        self._uprobes: list[PlannedUprobe] = []
        self._layouts: list[RecordLayout] = []
        self._configs: dict[bytes, int] = {}
        self._names: set[str] = set()
        self._session: Session | None = None
        self._pidfds: list[int] = []
        self._delivered = 0
        self._closed = False
        self._finalizer = weakref.finalize(self, _finalize, self.__dict__)

    # -- probes ---------------------------------------------------------------------------

    def add(self, probe: str | ProbeSpec) -> list[str]:
        """Add a probe (a probe word, or a parsed :class:`ProbeSpec`).

        Returns:
            The event names it produces (one per matched function).

        Raises:
            ProbeSyntaxError: The word is malformed.
            TargetNotFoundError, NotElfError, SymbolNotFoundError: Its place does not resolve.
        """
        self._check_open()
        if self._session is not None:
            raise UsageError("probes must be added before the tracer starts")
        spec = parse_probe(probe) if isinstance(probe, str) else probe
        path = find_target(spec.target, self.pids[0] if self.pids else None)
        sites: list[_Site] = []
        if spec.kind == "usdt":
            from ._usdt import find_usdt_probes

            for usdt in find_usdt_probes(path, spec.location):
                sites.append(_Site(usdt.name, usdt.file_offset,
                                   usdt.semaphore_offset or 0, usdt.arguments))
        else:
            for location in resolve_location(path, spec.location, force=self.force,
                                             retprobe=spec.retprobe):
                sites.append(_Site(location.symbol, location.file_offset,
                                   spec.ref_ctr_offset or 0, None))
        names: list[str] = []
        for site in sites:
            name = default_event_name(spec, site.symbol, site.file_offset, path)
            # One word may name several sites (a USDT probe at several places); two words
            # may not share a name.
            if name in self._names and name not in names:
                raise UsageError(
                    f"two probes are both named {name!r}: name one of them "
                    f"({spec.kind}:NAME TARGET:LOCATION ...)"
                )
            compiled = compile_fetchargs(
                spec.fetchargs,
                word=spec.text,
                retprobe=spec.retprobe,
                probe_file_offset=site.file_offset,
                string_size=self.string_size,
                usdt_args=site.usdt_args,
            )
            config = compiled.config()
            config_id = self._configs.setdefault(config, len(self._configs))
            layout = RecordLayout(name, compiled)
            event_id = len(self._layouts)
            self._layouts.append(layout)
            self._uprobes.append(
                PlannedUprobe(
                    event_id,
                    config_id,
                    path,
                    site.file_offset,
                    spec.retprobe,
                    site.ref_ctr_offset,
                    spec.fetchargs,
                    layout,
                    site.usdt_args,
                )
            )
            self._names.add(name)
            if name not in names:
                names.append(name)
        return names

    # -- running --------------------------------------------------------------------------

    def start(self) -> None:
        """Load the BPF programs, plant every probe, and start the command if there is one.

        Raises:
            PrivilegeError: Not allowed to trace (nothing was planted).
            UsageError: No probes were added.
        """
        self._check_open()
        if self._session is not None:
            return
        if not self._uprobes:
            raise UsageError("no probes to attach")
        check_tracing_privileges(bpf=self.backend == "bpf")
        command = self._command
        session: Session
        if self.backend == "tracefs":
            from ._tracefs import TracefsSession

            session = cast(Session, TracefsSession(
                self._uprobes, ring_size=self.ring_size, string_size=self.string_size,
                follow=command is not None,
            ))
        else:
            session = BpfSession(
                self._uprobes, list(self._configs), ring_size=self.ring_size,
                follow=command is not None,
            )
        self._session = session
        try:
            if command is not None:
                command.spawn()
                session.attach_all(TraceTarget(command_pid=command.pid))
                session.watch(command.pidfd)
                command.release()
            else:
                session.attach_all(TraceTarget(pids=self.pids))
                for pid in self.pids:
                    pidfd = os.pidfd_open(pid)
                    self._pidfds.append(pidfd)
                    session.watch(pidfd)
        except BaseException:
            self.close()
            raise

    @property
    def command_pid(self) -> int | None:
        return self._command.pid if self._command is not None else None

    @property
    def command_status(self) -> int | None:
        """The command's exit status once it ended (negative: killed by that signal)."""
        return self._command.status if self._command is not None else None

    def finished(self) -> bool:
        """Whether what is traced has ended: the command, or every ``-p`` process."""
        if self._command is not None:
            return self._command.poll()
        if self.pids:
            return not any(os.path.exists(f"/proc/{pid}") for pid in self.pids)
        return False

    def poll(self, timeout: float | None = None) -> list[Event]:
        """Wait up to ``timeout`` seconds (``None``: forever) for events; return those ready."""
        self.start()
        session = self._session
        assert session is not None
        if not session.pending():
            session.wait(timeout)
        return self._read(session)

    def _read(self, session: Session) -> list[Event]:
        events = session.read()
        self._delivered += len(events)
        return events

    def events(self, timeout: float | None = None) -> Iterator[Event]:
        """Yield events until ``timeout`` seconds pass, or what is traced ends.

        After the traced command (or every ``-p`` process) ends, what is left in the ring
        buffer is delivered and the iteration stops.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            batch = self.poll(remaining)
            yield from batch
            if self.finished():
                yield from self.drain()
                return
            if deadline is not None and time.monotonic() >= deadline:
                return

    def drain(self) -> list[Event]:
        """Detach the probes and return the events still in the ring buffer."""
        session = self._session
        if session is None:
            return []
        session.detach()
        events: list[Event] = []
        while True:
            batch = self._read(session)
            if not batch:
                return events
            events.extend(batch)

    def stats(self) -> TraceStats:
        """What happened so far: delivered, lost, hit and filtered counts."""
        session = self._session
        if session is None:
            return TraceStats(self._delivered, 0, 0, 0)
        counters = session.counters()
        return TraceStats(
            events=self._delivered,
            lost=sum(c.lost for c in counters),
            hits=sum(c.hits for c in counters),
            filtered=sum(c.filtered for c in counters),
        )

    def event_names(self) -> list[str]:
        return [layout.event for layout in self._layouts]

    # -- lifetime -------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError("this tracer is closed")

    def close(self) -> None:
        """Remove every probe and free every resource (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._finalizer.detach()
        _finalize(self.__dict__)

    def __enter__(self) -> Tracer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _finalize(state: dict[str, object]) -> None:
    session = state.get("_session")
    command = state.get("_command")
    pidfds = state.get("_pidfds") or []
    try:
        if session is not None:
            session.close()  # type: ignore[attr-defined]
    finally:
        if isinstance(command, _Command):
            command.close()
        for fd in pidfds:  # type: ignore[attr-defined]
            os.close(fd)
        state["_pidfds"] = []


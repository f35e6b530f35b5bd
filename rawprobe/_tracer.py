"""The Tracer: probes in, events out, every resource owned and released.

The Tracer holds the run's lifecycle and its event loop, nothing more: the planner
(:mod:`rawprobe._plan.planner`) decides what is probed and how, a backend's session
(:mod:`rawprobe._bpf`, :mod:`rawprobe._tracefs`) plants it and reads it back, and
:mod:`rawprobe._command` starts the traced command.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import select
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._command import Command
from ._errors import (
    BpfObjectError,
    ClosedError,
    KernelFeatureError,
    LibbpfMissingError,
    PrivilegeError,
    RawprobeError,
    TargetNotFoundError,
    UsageError,
)
from ._host.privileges import check_tracing_privileges
from ._output.tables import Count, CountTable, HistogramSet, build_histograms, count_table
from ._plan.events import Event, RecordLayout
from ._plan.planner import Planner
from ._plan.session import Plan, ProbeCounters, Session, TraceTarget
from ._probe.aggregations import AggregationSpec
from ._probe.defaults import DEFAULT_RING_SIZE, DEFAULT_STRING_SIZE
from ._probe.typed import Probe
from ._probe.words import ProbeSpec, parse_probe
from ._symbols.symbolize import AddressResolver
from ._sys.limits import out_of_descriptors, raise_descriptor_limit

if TYPE_CHECKING:
    import asyncio  # imported by aevents() when used: most runs never need it

__all__ = ["TraceStats", "Tracer"]


@dataclass(frozen=True)
class TraceStats:
    """Accounting of one run.

    Attributes:
        events: Records delivered to the caller.
        lost: Records the kernel side could not keep (ring buffer full).
        hits: Times the probes fired (in traced processes).
        filtered: Hits the filter rejected.
        truncated: Delivered events with a string cut at the string size.
        probes: The counts per event name: ``{event: ProbeCounters}`` (sites of one name
            summed).
        not_delivered: Events decoded but not delivered because the run ended first (the
            command line's ``-n`` limit).
    """

    events: int
    lost: int
    hits: int
    filtered: int
    truncated: int = 0
    probes: dict[str, ProbeCounters] = dataclasses.field(default_factory=dict)
    not_delivered: int = 0


class Tracer:
    """Plants probes and delivers their events.

    Args:
        pid: Trace only this process (or these processes), all threads; ``None`` traces every
            process on the host that runs the probed code.
        command: Start this command once the probes are in place, trace it and every process
            it forks, and end when it exits.
        string_size: Bytes copied at most per string, NUL included.
        ring_size: Bytes of the ring buffer between the kernel and this process.
        force: Plant probes rawprobe would otherwise refuse as risky.
        backend: ``bpf`` (generic BPF programs), ``tracefs`` (the kernel's uprobe_events), or
            ``auto``: BPF where it works here, else tracefs (with a note in :attr:`warnings`).
        aggregation: Count or histogram in the kernel instead of streaming events (read the
            result with :meth:`aggregates`).
        stack: Events carry the user stack (streaming), or counts are grouped by it.

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
        backend: str = "auto",
        aggregation: AggregationSpec | None = None,
        stack: bool = False,
    ) -> None:
        self.pids: tuple[int, ...] = (
            () if pid is None else (pid,) if isinstance(pid, int) else tuple(pid)
        )
        if self.pids and command is not None:
            raise UsageError("give either -p PID or a command, not both")
        for p in self.pids:
            if not os.path.exists(f"/proc/{p}"):
                raise TargetNotFoundError(f"no process with pid {p}")
        if backend not in ("auto", "bpf", "tracefs"):
            raise UsageError(f"unknown backend {backend!r}: use auto, bpf or tracefs")
        if aggregation is not None and aggregation.stack and not stack:
            stack = True
        self.string_size = string_size
        self.ring_size = ring_size
        self.force = force
        self.backend = backend
        self.stack = stack
        self._planner = Planner(pids=self.pids, string_size=string_size,
                                aggregation=aggregation, stack=stack, force=force)
        self.aggregation = self._planner.aggregation
        self._notes: list[str] = []
        self._command = Command(command) if command is not None else None
        self._plan: Plan | None = None
        self._session: Session | None = None
        self.resolver = AddressResolver()
        self._pidfds: list[int] = []
        self._watched: list[int] = []
        self._delivered = 0
        self._callbacks: list[Callable[[Event], object]] = []
        self._stopped = False
        # stop() writes here; the session watches it, so a blocked wait ends at once.
        self._wake_read, self._wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._final_stats: TraceStats | None = None
        self._closed = False
        self._finalizer = weakref.finalize(self, _finalize, self.__dict__)

    @property
    def warnings(self) -> list[str]:
        """What a user should know about the probes added and the backend chosen."""
        return [*self._planner.warnings, *self._notes]

    # -- probes ---------------------------------------------------------------------------

    def add(self, probe: str | ProbeSpec | Probe, *, filter: str | None = None) -> list[str]:
        """Add a probe: a probe word, or a :class:`Uprobe`, :class:`Uretprobe` or :class:`Usdt`.

        Args:
            probe: The probe.
            filter: A filter expression over the probe's fields (see ``--filter``), run in
                the kernel before a record is made.

        Returns:
            The event names it produces (one per matched function).

        Raises:
            ProbeSyntaxError: The word is malformed.
            TargetNotFoundError, NotElfError, SymbolNotFoundError: Its place does not resolve.
            UsageError: A site rawprobe refuses (unless ``force``).
        """
        self._check_open()
        if self._session is not None:
            raise UsageError("probes must be added before the tracer starts")
        if isinstance(probe, Probe):
            spec = probe.spec()
        elif isinstance(probe, str):
            spec = parse_probe(probe)
        else:
            spec = probe
        return self._planner.add(spec, filter)

    def event_names(self) -> list[str]:
        return [event.name for event in self._planner.events]

    @property
    def layouts(self) -> list[RecordLayout]:
        """The record layout of each event, by event id (for tools that decode records)."""
        return [event.layout for event in self._planner.events]

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
        plan = self._planner.plan()
        # Every map, program, link and perf event is a descriptor: use all the room there is.
        raise_descriptor_limit()
        try:
            self._session = self._open_session(plan)
        except OSError as error:
            if error.errno == errno.EMFILE:
                raise out_of_descriptors("rawprobe's BPF maps and programs") from None
            raise
        self._plan = plan
        self._attach(self._session)

    def _open_session(self, plan: Plan) -> Session:
        """The session of the chosen backend (``auto``: BPF, else tracefs)."""
        follow = self._command is not None
        if self.backend == "auto":
            check_tracing_privileges(bpf=False)
            try:
                check_tracing_privileges(bpf=True)
                session = self._bpf_session(plan, follow)
                self.backend = "bpf"
                return session
            except (KernelFeatureError, BpfObjectError, LibbpfMissingError,
                    PrivilegeError) as error:
                self.backend = "tracefs"
                self._notes.append(f"using the tracefs backend: {str(error).splitlines()[0]}")
                return self._tracefs_session(plan, follow)
        check_tracing_privileges(bpf=self.backend == "bpf")
        if self.backend == "tracefs":
            return self._tracefs_session(plan, follow)
        return self._bpf_session(plan, follow)

    def _bpf_session(self, plan: Plan, follow: bool) -> Session:
        from ._bpf.session import BpfSession

        return BpfSession(plan, ring_size=self.ring_size, follow=follow)

    def _tracefs_session(self, plan: Plan, follow: bool) -> Session:
        from ._tracefs import TracefsSession

        return TracefsSession(plan, ring_size=self.ring_size, follow=follow)

    def _attach(self, session: Session) -> None:
        command = self._command
        try:
            if command is not None:
                command.spawn()
                session.attach_all(TraceTarget(command_pid=command.pid))
                self._check_unplaced(session)
                session.watch(command.pidfd)
                command.release()
            else:
                session.attach_all(TraceTarget(pids=self.pids))
                self._check_unplaced(session)
                for pid in self.pids:
                    pidfd = os.pidfd_open(pid)
                    self._pidfds.append(pidfd)
                    session.watch(pidfd)
            session.watch(self._wake_read)
            for fd in self._watched:
                session.watch(fd)
        except BaseException:
            self.close()
            raise

    def _check_unplaced(self, session: Session) -> None:
        """Uprobes the kernel would not place: an error for a probe named on its own, a
        warning (and a probe left out) for one matched by a glob among others."""
        for event, reason in session.unplaced:
            if not event.from_glob:
                raise UsageError(f"{event.name} ({event.path}:{event.file_offset:#x}): {reason}")
            self._notes.append(f"{event.name} left out: {reason}")

    @property
    def poll_interval(self) -> float | None:
        """How often a loop waiting on :meth:`fileno` must call :meth:`poll` anyway (the
        tracefs backend's buffers wake their reader only when well filled), or None."""
        return None if self._session is None else self._session.poll_interval

    @property
    def started(self) -> bool:
        """Whether :meth:`start` has run (the probes are, or were, planted)."""
        return self._session is not None

    def watch(self, fd: int) -> None:
        """Also end a wait in :meth:`poll` when ``fd`` becomes readable.

        For example the read end of a pipe given to :func:`signal.set_wakeup_fd`, so that a
        signal handler that only sets a flag still wakes the reader promptly.
        """
        self._watched.append(fd)
        if self._session is not None:
            self._session.watch(fd)

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
        if self._pidfds:
            # A pidfd turns readable when its process exits, zombie or not.
            poller = select.poll()
            for fd in self._pidfds:
                poller.register(fd, select.POLLIN)
            return len(poller.poll(0)) == len(self._pidfds)
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
        if self.stack or self._has_symbols():
            # Addresses are described through the process's mappings: read them while the
            # process is (most likely) still alive.
            for event in events:
                self.resolver.remember(event.pid)
        return events

    def _has_symbols(self) -> bool:
        plan = self._plan
        return plan is not None and any(event.layout.has_symbols for event in plan.events)

    def events(self, timeout: float | None = None) -> Iterator[Event]:
        """Yield events until ``timeout`` seconds pass, or what is traced ends.

        After the traced command (or every ``-p`` process) ends, what is left in the ring
        buffer is delivered and the iteration stops.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._stopped:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            yield from self.poll(remaining)
            if self.finished():
                yield from self.drain()
                return
            if deadline is not None and time.monotonic() >= deadline:
                return

    async def aevents(self, timeout: float | None = None) -> AsyncIterator[Event]:
        """:meth:`events` for asyncio: waits on the session's descriptor in the event loop
        instead of blocking it.

        Example::

            async with rawprobe.Tracer() as tracer:
                tracer.add("p:libc:free ptr=%di:x64")
                async for event in tracer.aevents(timeout=5):
                    print(event.args["ptr"])
        """
        import asyncio

        self.start()
        loop = asyncio.get_running_loop()
        fd = self.fileno()
        assert self._session is not None
        interval = self._session.poll_interval
        deadline = None if timeout is None else loop.time() + timeout
        while not self._stopped:
            batch = self.poll(0)
            for event in batch:
                yield event
            if self.finished():
                for event in self.drain():
                    yield event
                return
            if batch:
                continue
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return
            wait = remaining if interval is None else min(interval, remaining or interval)
            ready: asyncio.Future[None] = loop.create_future()
            loop.add_reader(fd, _resolve, ready)
            try:
                await asyncio.wait_for(ready, wait)
            except asyncio.TimeoutError:
                if wait == remaining:
                    return
            finally:
                loop.remove_reader(fd)

    def on_event(self, callback: Callable[[Event], object]) -> None:
        """Call ``callback(event)`` for every event while :meth:`run` runs."""
        self._callbacks.append(callback)

    def run(self, duration: float | None = None) -> TraceStats:
        """Deliver events to the callbacks until ``duration`` passes, what is traced ends, or
        :meth:`stop` is called; return the accounting so far. The probes stay in place until
        what is traced ends or the tracer is closed, so ``run`` may be called again (to print
        an aggregation every interval, say).

        An exception raised by a callback ends the run: the tracer is closed (every probe
        removed) and the exception propagates.
        """
        try:
            for event in self.events(timeout=duration):
                for callback in self._callbacks:
                    callback(event)
        except BaseException:
            self.close()
            raise
        return self.stats()

    def stop(self) -> None:
        """End :meth:`events`, :meth:`aevents` or :meth:`run` soon. Safe to call from another
        thread or a signal handler: it sets a flag and wakes the waiting reader."""
        self._stopped = True
        with contextlib.suppress(OSError):
            os.write(self._wake_write, b"x")

    def fileno(self) -> int:
        """A descriptor that turns readable when events may be ready (after :meth:`start`),
        for event loops other than asyncio; with :attr:`poll_interval` set, also look that
        often."""
        if self._session is None:
            raise UsageError("the tracer has not started")
        return self._session.fileno()

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

    def aggregates(self, reset: bool = False) -> CountTable | HistogramSet:
        """What the kernel aggregated so far (for a tracer created with ``aggregation``).

        Args:
            reset: Start counting afresh after reading (for per-interval figures).

        Returns:
            A :class:`CountTable` for counts, a :class:`HistogramSet` for histograms.
        """
        aggregation = self.aggregation
        if aggregation is None:
            raise UsageError("this tracer streams events; it was not created to aggregate")
        session, plan = self._session, self._plan
        if session is None or plan is None:
            raise UsageError("the tracer has not started")
        events = plan.events
        cells = session.aggregate_cells(reset)

        def key(event_id: int, data: bytes) -> Any:
            decoder = events[event_id].key_decoder
            return None if decoder is None else decoder(data)

        if aggregation.kind == "hist":
            assert aggregation.hist is not None
            return build_histograms(aggregation.hist, (
                (events[c.event_id].name, key(c.event_id, c.key), c.bucket, c.value)
                for c in cells
            ))
        return count_table(
            Count(events[c.event_id].name, key(c.event_id, c.key), c.value,
                  self._stack(session, c.stack_id, c.key if events[c.event_id].at_entry
                              else None) if c.stack_id >= 0 else None)
            for c in cells
        )

    def _stack(self, session: Session, stack_id: int, key_data: bytes | None) -> tuple[str, ...]:
        addresses = session.stack(stack_id)
        if key_data is not None and addresses:
            # At a function's entry a frame-pointer walk may skip the caller (kernels since
            # 6.13 add it when the first instruction is push %rbp); the kernel side kept its
            # return address in the key's last 8 bytes (RP_PROBE_AT_ENTRY).
            caller = int.from_bytes(key_data[-8:], "little")
            if caller and (len(addresses) < 2 or addresses[1] != caller):
                addresses = (addresses[0], caller, *addresses[1:])
        pid = session.stack_pid(stack_id)
        if pid is None:
            return tuple(f"{address:#x}" for address in addresses)
        return tuple(self.resolver.describe(pid, address) for address in addresses)

    def stats(self) -> TraceStats:
        """What happened so far: delivered, lost, hit and filtered counts."""
        session, plan = self._session, self._plan
        if session is None or plan is None:
            return self._final_stats or TraceStats(self._delivered, 0, 0, 0)
        counters = session.counters()
        probes: dict[str, ProbeCounters] = {}
        for event, counter in zip(plan.events, counters, strict=True):
            seen = probes.get(event.name)
            probes[event.name] = counter if seen is None else ProbeCounters(
                seen.hits + counter.hits, seen.filtered + counter.filtered,
                seen.lost + counter.lost)
        return TraceStats(
            events=self._delivered,
            lost=sum(c.lost for c in counters),
            hits=sum(c.hits for c in counters),
            filtered=sum(c.filtered for c in counters),
            probes=probes,
        )

    # -- lifetime -------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError("this tracer is closed")

    def close(self) -> None:
        """Remove every probe and free every resource (idempotent). :meth:`stats` keeps
        answering with the final figures."""
        if self._closed:
            return
        self._closed = True
        self._finalizer.detach()
        if self._session is not None:
            with contextlib.suppress(RawprobeError):
                self._final_stats = self.stats()
        try:
            _finalize(self.__dict__)
        finally:
            self._session = None

    def __enter__(self) -> Tracer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Tracer:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self.close()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _finalize(state: dict[str, object]) -> None:
    """Free what a tracer holds; run by close(), or at garbage collection or interpreter exit
    for a tracer left open."""
    session = state.get("_session")
    command = state.get("_command")
    planner = state.get("_planner")
    pidfds = list(state.get("_pidfds") or [])  # type: ignore[call-overload]
    state["_pidfds"] = []
    try:
        if session is not None:
            session.close()  # type: ignore[attr-defined]
    finally:
        if isinstance(command, Command):
            command.close()
        if isinstance(planner, Planner):
            planner.release_files()
        for fd in [*pidfds, state.get("_wake_read"), state.get("_wake_write")]:
            if isinstance(fd, int) and fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        state["_wake_read"] = state["_wake_write"] = -1

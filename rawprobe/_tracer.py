"""The Tracer: probes in, events out, every resource owned and released.

The Tracer holds the run's lifecycle and its event loop, nothing more: the planner
(:mod:`rawprobe._plan.planner`) decides what is probed and how, a backend's session
(:mod:`rawprobe._bpf`, :mod:`rawprobe._tracefs`) plants it and reads it back, and
:mod:`rawprobe._command` starts the traced command.
"""

from __future__ import annotations

import contextlib
import os
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Sequence

from ._backends import BACKENDS, open_session, plant, release
from ._command import Command, Processes
from ._errors import ClosedError, RawprobeError, UsageError
from ._plan.events import Batch, Event, RecordLayout
from ._plan.planner import Planner
from ._plan.session import Plan, Session, TraceStats, summarize
from ._probe.defaults import DEFAULT_RING_SIZE, DEFAULT_STRING_SIZE
from ._symbols.symbolize import AddressResolver

TYPE_CHECKING = False  # mypy treats this name as True; at run time it spares importing typing.
if TYPE_CHECKING:
    from ._output.tables import Result, SyscallTable
    from ._probe.aggregations import AggregationSpec
    from ._probe.typed import Probe, Span
    from ._probe.words import ProbeSpec

__all__ = ["Batch", "TraceStats", "Tracer"]


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
        aggregation: Count, sum up or histogram in the kernel instead of streaming events
            (read the result with :meth:`aggregates`).
        stack: Events carry the user stack (streaming), or aggregations are grouped by it.

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
        self._processes = Processes(self.pids)
        if backend not in BACKENDS:
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
        self.plan: Plan | None = None  # what start() planted: files, offsets, roles
        self._symbolizes = False
        self._session: Session | None = None
        self.resolver = AddressResolver()
        self._watched: list[int] = []
        self._delivered = 0
        self._callbacks: list[Callable[[Event], object]] = []
        self._stopped = False
        # stop() writes here; the session watches it, so a blocked wait ends at once.
        self._wake_read, self._wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._final_stats: TraceStats | None = None
        self._closed = False
        self._finalizer = weakref.finalize(self, release, self.__dict__)

    @property
    def warnings(self) -> list[str]:
        """What a user should know about the probes added and the backend chosen."""
        return [*self._planner.warnings, *self._notes]

    # -- probes ---------------------------------------------------------------------------

    def add(self, probe: str | ProbeSpec | Probe | Span, *,
            filter: str | None = None) -> list[str]:
        """Add a probe (a word, a :class:`Uprobe`, :class:`Uretprobe`, :class:`Usdt`), or a
        :class:`Span` between two (measured on its own: no other probes with it).

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
        return self._planner.add(probe, filter)

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
        self._symbolizes = self.stack or any(event.layout.has_symbols for event in plan.events)
        if self._symbolizes:
            self.resolver.watch()  # before anything runs: every mapping made is recorded
        self._session, self.backend, note = open_session(
            plan, self.backend, ring_size=self.ring_size, follow=self._command is not None)
        if note:
            self._notes.append(note)
        self.plan = plan
        self._attach(self._session)

    def _attach(self, session: Session) -> None:
        try:
            self._notes += plant(session, self._command, self._processes,
                                 [self._wake_read, *self._watched])
        except BaseException:
            self.close()
            raise

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
        """Also end a wait in :meth:`poll` when ``fd`` becomes readable (the read end of a
        pipe given to :func:`signal.set_wakeup_fd`, say: a handler that sets a flag)."""
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
        return self._processes.finished()

    def poll(self, timeout: float | None = None) -> list[Event]:
        """Wait up to ``timeout`` seconds (``None``: forever) for events; return those ready."""
        return [event for batch in self.poll_batches(timeout) for event in batch.events()]

    def poll_batches(self, timeout: float | None = None) -> list[Batch]:
        """:meth:`poll`, the events in :class:`Batch` objects as the reader framed them (the
        fastest way to read: a run of one probe's records is decoded all at once, when and
        as asked: events, rows or columns)."""
        self.start()
        session = self._session
        assert session is not None
        if not session.pending():
            session.wait(timeout)
        return self._read(session)

    def read_records(self, sink: Callable[[memoryview], object],
                     timeout: float | None = None, *, final: bool = False) -> int:
        """:meth:`poll` without decoding: hand ``sink`` the whole records ready (waiting up
        to ``timeout`` seconds for some) as the kernel wrote them; return how many bytes.
        What ``rawprobe record`` keeps (the BPF backend only). ``final``: detach the probes
        first, and hand over everything left (:meth:`drain`)."""
        self.start()
        session = self._session
        assert session is not None
        if final:
            session.detach()
            return sum(iter(lambda: session.read_records(sink), 0))
        if not session.pending():
            session.wait(timeout)
        return session.read_records(sink)

    def _read(self, session: Session) -> list[Batch]:
        batches = session.read_batches()
        self._delivered += sum(batch.count for batch in batches)
        if self._symbolizes:
            # Addresses are described through the process's mappings: read them while the
            # process is (most likely) still alive.
            for pid in {row[1] for batch in batches for row in batch.rows()}:
                self.resolver.remember(pid)
        return batches

    def events(self, timeout: float | None = None) -> Iterator[Event]:
        """Yield events until ``timeout`` seconds pass, or what is traced ends.

        After the traced command (or every ``-p`` process) ends, what is left in the ring
        buffer is delivered and the iteration stops.
        """
        for batch in self._batches(timeout):
            yield from batch.events()

    def batches(self, timeout: float | None = None) -> Iterator[Batch]:
        """:meth:`events` by event type: each :class:`Batch` holds events of one layout, in
        the order they were recorded, and gives them as columns (``batch.columns()``: name ->
        sequence of values; integers of fixed-size records as strided views, no copy)."""
        for batch in self._batches(timeout):
            yield from batch.split()

    def _batches(self, timeout: float | None) -> Iterator[Batch]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._stopped:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            yield from self.poll_batches(remaining)
            if self.finished():
                yield from self.drain_batches()
                return
            if deadline is not None and time.monotonic() >= deadline:
                return

    def aevents(self, timeout: float | None = None) -> AsyncIterator[Event]:
        """:meth:`events` for asyncio (``async for event in tracer.aevents(5)``): waits on
        the session's descriptor in the event loop instead of blocking it."""
        from ._aio import aevents  # asyncio is imported only by a run that uses it

        return aevents(self, timeout)

    @property
    def stopped(self) -> bool:
        """Whether :meth:`stop` was called."""
        return self._stopped

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
        return [event for batch in self.drain_batches() for event in batch.events()]

    def drain_batches(self) -> list[Batch]:
        """:meth:`drain`, in batches (see :meth:`poll_batches`)."""
        session = self._session
        if session is None:
            return []
        session.detach()
        return [batch for read in iter(lambda: self._read(session), []) for batch in read]

    def aggregates(self, reset: bool = False) -> Result | SyscallTable:
        """What the kernel aggregated so far (for a tracer created with ``aggregation``).

        Args:
            reset: Start counting afresh after reading (for per-interval figures).

        Returns:
            A :class:`CountTable` (counts), :class:`ValueTable` (sums, minimums, maximums,
            averages, stats), :class:`HistogramSet` (histograms) or :class:`SyscallTable`
            (system call totals).
        """
        if self.aggregation is None:
            raise UsageError("this tracer streams events; it was not created to aggregate")
        session, plan = self._session, self.plan
        if session is None or plan is None:
            raise UsageError("the tracer has not started")

        def stack(stack_id: int, caller: int) -> tuple[str, ...]:
            return self.resolver.describe_stack(session.stack_pid(stack_id),
                                                session.stack(stack_id), caller)

        from ._output.tables import aggregate_results  # only a run that aggregates reads them

        return aggregate_results(plan, session.aggregate_cells(reset), stack,
                                 session.syscall_totals(reset))

    def stats(self) -> TraceStats:
        """What happened so far: delivered, lost, hit and filtered counts."""
        session, plan = self._session, self.plan
        if session is None or plan is None:
            return self._final_stats or TraceStats(self._delivered, 0, 0, 0)
        return summarize(plan, session.counters(), self._delivered, session.open_spans())

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
            release(self.__dict__)
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

"""The tracefs backend's run: kernel uprobe events, opened as perf tracepoints, read from mmap.

1. Each planned uprobe becomes a definition in ``uprobe_events`` (:mod:`._render`), in a group
   of this run's own, ``rawprobe_<pid>_<start>_<n>``: the process id, its start time (so a
   recycled pid is not mistaken for a live owner) and a sequence number within the process.
   ``rawprobe probes --clean`` removes groups whose process is gone.
2. Each event is opened with ``perf_event_open(PERF_TYPE_TRACEPOINT, config=its id)``, sampling
   every hit with its raw record, time (CLOCK_MONOTONIC, like ``bpf_ktime_get_ns()``), pid/tid
   and CPU:

   - host-wide: one event per online CPU (``pid=-1, cpu=N``);
   - ``-p PID``: one event per thread and CPU (``pid=TID, cpu=N``), inherited by threads
     created later but not by forked processes (``inherit_thread``, Linux 5.13+). A perf event
     on a task only records while that task runs (the uprobe's perf path submits to the events
     scheduled on the CPU, kernel/trace/trace_uprobe.c, __uprobe_perf_func()), so every thread
     needs its own; the BPF backend's single event per process works only because its BPF
     program runs for every task whose mm matches;
   - a command: one event per CPU for every process (``pid=-1, cpu=N``), and the command's
     process tree followed here: the buffers' owners also record every fork and exit
     (``task``), and a sample is kept when its process is the command or descends from it.
     Inherited per-task events lost the first calls of children that ran before their copy
     of the event was in place; host-wide events see every call. Records are merged across
     CPUs by time, and a sample is judged only once everything stamped before it can have
     been read (a millisecond behind the reading), so no fork is ever seen after its
     child's first call.

3. Per CPU, a dummy software event owns the ring buffer and every uprobe event on that CPU sends
   its samples there (PERF_EVENT_IOC_SET_OUTPUT). Because the dummy owns the buffer, closing the
   uprobe events (detach) releases the kernel events at once, their definitions can be removed,
   and what was recorded stays readable. Samples name their event by ``common_type``, the
   event's id, at the start of the raw record.

Definitions are removed on every way out: :meth:`TracefsSession.close`, failures while setting
up, and a ``weakref.finalize`` backstop.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import struct
import time
import weakref
from collections.abc import Callable
from operator import attrgetter

from .. import _log
from .._errors import (
    ClosedError,
    PrivilegeError,
    SysCallError,
    TargetNotFoundError,
    UsageError,
)
from .._host.cpus import online_cpus
from .._host.eventformat import parse_format
from .._host.perfbuf import (
    SAMPLE_FIELDS,
    SAMPLE_RAW_OFFSET,
    PerfBuffer,
    buffer_size,
    split_perf_records,
    task_records,
)
from .._host.tracefs import Tracefs
from .._host.tracefs_groups import new_group
from .._plan import abi
from .._plan.events import Batch, Event, RecordLayout
from .._plan.session import (
    AggregateCell,
    Plan,
    PlannedEvent,
    ProbeCounters,
    SyscallTotal,
    TraceTarget,
)
from .._sys.limits import open_perf_event
from .._sys.perf import (
    CLOCK_MONOTONIC,
    FLAG_DISABLED,
    FLAG_EXCLUDE_CALLCHAIN_KERNEL,
    FLAG_INHERIT,
    FLAG_INHERIT_THREAD,
    FLAG_TASK,
    FLAG_USE_CLOCKID,
    FLAG_WATERMARK,
    PERF_COUNT_SW_DUMMY,
    PERF_SAMPLE_CALLCHAIN,
    PERF_SAMPLE_CPU,
    PERF_SAMPLE_RAW,
    PERF_SAMPLE_TID,
    PERF_SAMPLE_TIME,
    PERF_TYPE_SOFTWARE,
    PERF_TYPE_TRACEPOINT,
    PerfEventAttr,
    perf_event_enable,
    perf_event_set_output,
)
from ._decode import SAMPLE_HEAD, SampleDecoder, sample_callchain
from ._follow import ProcessTree
from ._render import KernelProbe, definition_line, event_names, render_event
from ._resources import Resources, release_all, release_probes
from ._userstage import UserStage

__all__ = ["TracefsSession"]

_SITE_ARG = "rawprobe_site"  # which site of a shared kernel event a sample came from

_U16 = struct.Struct("<H")
# How often wait() looks at the buffers: samples wake the reader only once a quarter of a
# buffer is full (one wake-up per sample would cost an interrupt each), so sparse events are
# found by looking. 50 ms is below what a person notices and costs nothing measurable.
_POLL_INTERVAL = 0.05


def _proc_comm(tid: int) -> bytes:
    try:
        with open(f"/proc/{tid}/comm", "rb") as file:
            return file.read().rstrip(b"\n")
    except OSError:
        return b""


class TracefsSession:
    """A run of the tracefs backend (implements :class:`rawprobe._plan.session.Session`).

    What the kernel's tracer cannot do (filters, aggregations, latencies) is done on the
    decoded samples by a :class:`~rawprobe._tracefs._userstage.UserStage`; stacks come with
    each sample (``PERF_SAMPLE_CALLCHAIN``, the user part only).

    Args:
        plan: The events to plant. Strings longer than its string size are cut and marked,
            as in the BPF backend (the kernel itself copies up to 4096 bytes).
        ring_size: Bytes of ring buffer, shared out between the online CPUs (each gets a power
            of two of pages, at least 64 KiB).
        follow: Whether the session will trace a command and its children.

    Raises:
        KernelFeatureError: No tracefs, or no uprobe_events.
        PrivilegeError: Not allowed to write tracefs or open the events.
        FetchArgError, UsageError: A probe the kernel's syntax cannot express, or that the
            kernel refused (its explanation from ``error_log`` is in the message); a
            tracepoint or system call probe (``tp:``, ``sys:``), which run on rawprobe's BPF
            programs only.
    """

    def __init__(
        self,
        plan: Plan,
        *,
        ring_size: int,
        follow: bool,
    ) -> None:
        kernel = [event.path for event in plan.events if event.kind != "uprobe"]
        if kernel:
            raise UsageError(
                f"{kernel[0]}: tracepoint and system call probes run on rawprobe's BPF "
                "programs, which the tracefs backend does not use: use --backend bpf "
                "('rawprobe doctor' says what the BPF backend needs)")
        self._uprobes = list(plan.events)
        self._follow = follow
        self._string_size = plan.string_size
        self._callchain = plan.stack
        self._stage = UserStage(plan.events, plan.aggregation)
        self.unplaced: list[tuple[PlannedEvent, str]] = []
        self.poll_interval: float | None = _POLL_INTERVAL
        resources = Resources()
        self._resources = resources
        self._finalizer = weakref.finalize(self, release_all, resources)
        self._decoders: dict[int, SampleDecoder] = {}
        self._type_ids: list[int] = []  # per kernel event
        self._sharing: dict[int, list[int]] = {}  # first event id -> every event id sharing
        self._counts = [0] * len(self._uprobes)
        self._lost = 0
        self.follow_at_exec = False
        self._tree: ProcessTree | None = None  # following a command
        self._strangers = [0] * len(self._uprobes)  # its samples of other processes
        self._fd_events: dict[int, int] = {}  # uprobe perf event fd -> event id
        self._final_hits: list[int] | None = None
        self._cpus = online_cpus()
        self._buffer_size = buffer_size(ring_size, len(self._cpus))
        try:
            # Render everything before writing anything: a probe the kernel cannot express
            # fails here with nothing planted.
            probes = [render_event(uprobe) for uprobe in self._uprobes]
            resources.tracefs = Tracefs()
            resources.group = new_group()
            self.group = resources.group
            # The buffers first: a run that may not map them (the locked-memory limit) fails
            # before writing a single definition to uprobe_events.
            self._open_buffers()
            self._define_all(probes)
        except BaseException:
            self.close()
            raise

    # -- setting up -----------------------------------------------------------------------

    def _define_all(self, probes: list[KernelProbe]) -> None:
        """Define every uprobe, in one write to ``uprobe_events``.

        Sites of the same kind whose fetch-args read the same (a glob's functions, say) share
        one kernel event: the kernel appends a definition with the same argument names and
        types to an existing event. Each such definition also stores the site's number
        (``rawprobe_site=\\N``), which its samples carry. Removing an event costs a grace
        period (~50 ms) however many sites it has: a thousand sites go in a fraction of a
        second, not a minute.
        """
        resources = self._resources
        tracefs = resources.tracefs
        assert tracefs is not None
        shared: dict[tuple[object, ...], list[int]] = {}
        for index, (uprobe, probe) in enumerate(zip(self._uprobes, probes, strict=True)):
            key = (uprobe.retprobe, tuple(a.text for a in probe.args),
                   tuple(f.type.state() for f in uprobe.layout.fields))
            shared.setdefault(key, []).append(index)
        events = list(shared.values())
        self.event_names = event_names([self._uprobes[sites[0]] for sites in events])
        lines = []
        for sites, name in zip(events, self.event_names, strict=True):
            for number, index in enumerate(sites):
                uprobe = self._uprobes[index]
                line = definition_line("r" if uprobe.retprobe else "p", resources.group, name,
                                       uprobe.kernel_path, uprobe.file_offset,
                                       uprobe.ref_ctr_offset, probes[index])
                lines.append(line + (f" {_SITE_ARG}=\\{number}:u32" if len(sites) > 1 else ""))
        try:
            tracefs.define_many(lines)
        finally:
            resources.defined = list(self.event_names)
        for sites, name in zip(events, self.event_names, strict=True):
            first = self._uprobes[sites[0]]
            event_format = parse_format(tracefs.event_format(resources.group, name))
            decoder = SampleDecoder(first.event_id, self._layout(first), probes[sites[0]],
                                    event_format, self._string_size)
            if len(sites) > 1:
                decoder.share(event_format.field(_SITE_ARG).offset, [
                    (self._uprobes[index].event_id, self._layout(self._uprobes[index]))
                    for index in sites])
            self._decoders[decoder.type_id] = decoder
            self._type_ids.append(decoder.type_id)
            self._sharing[first.event_id] = [self._uprobes[index].event_id for index in sites]

    def _layout(self, uprobe: PlannedEvent) -> RecordLayout:
        """The layout samples of ``uprobe`` decode to: stacks come with each sample's
        callchain, also where the plan's layout keeps none (an aggregation grouped by stack)."""
        return uprobe.layout.with_stack() if self._callchain else uprobe.layout

    def _open_buffers(self) -> None:
        resources = self._resources
        resources.epoll = select.epoll()
        for cpu in self._cpus:
            attr = PerfEventAttr()
            attr.type = PERF_TYPE_SOFTWARE
            attr.config = PERF_COUNT_SW_DUMMY
            attr.flags = FLAG_USE_CLOCKID | FLAG_WATERMARK
            if self._follow:
                attr.flags |= FLAG_TASK  # fork and exit records, for the process tree
            attr.clockid = CLOCK_MONOTONIC
            attr.wakeup_events = self._buffer_size // 4  # union: wakeup_watermark
            fd = self._perf_open(attr, -1, cpu, "a ring buffer")
            resources.leader_fds.append(fd)
            try:
                buffer = PerfBuffer(fd, self._buffer_size)
            except PermissionError:
                raise PrivilegeError(
                    f"not allowed to map {self._buffer_size >> 10} KiB of perf ring buffer per "
                    "CPU: lower --ring-size, or raise /proc/sys/kernel/perf_event_mlock_kb",
                    capability="CAP_IPC_LOCK",
                ) from None
            resources.buffers.append(buffer)
            resources.epoll.register(fd, select.EPOLLIN)

    def _perf_open(self, attr: PerfEventAttr, pid: int, cpu: int, what: str) -> int:
        """perf_event_open with rawprobe's errors; raises the soft descriptor limit once when
        it runs out (a process with many threads needs threads x CPUs x probes events)."""
        try:
            return open_perf_event(attr, pid, cpu, what)
        except SysCallError as error:
            if error.errno in (errno.EPERM, errno.EACCES):
                raise PrivilegeError(
                    f"not allowed to open {what}: run rawprobe as root (or with "
                    "CAP_PERFMON, and perf_event_paranoid allowing raw tracepoint samples)",
                    capability="CAP_PERFMON",
                ) from None
            raise

    def _event_attr(self, type_id: int, flags: int) -> PerfEventAttr:
        attr = PerfEventAttr()
        attr.type = PERF_TYPE_TRACEPOINT
        attr.config = type_id
        attr.sample_period = 1
        attr.sample_type = PERF_SAMPLE_TID | PERF_SAMPLE_TIME | PERF_SAMPLE_CPU | PERF_SAMPLE_RAW
        # Created disabled, enabled once its output goes to the CPU's buffer: a sample taken
        # before PERF_EVENT_IOC_SET_OUTPUT would have nowhere to go.
        attr.flags = FLAG_DISABLED | FLAG_USE_CLOCKID | FLAG_WATERMARK | flags
        if self._callchain:
            # The user stack of each hit, as bpf_get_stack(BPF_F_USER_STACK) gives it.
            attr.sample_type |= PERF_SAMPLE_CALLCHAIN
            attr.flags |= FLAG_EXCLUDE_CALLCHAIN_KERNEL
            attr.sample_max_stack = abi.STACK_DEPTH
        attr.clockid = CLOCK_MONOTONIC
        return attr

    def _open_events(self, pid: int, flags: int, opened: list[int]) -> None:
        """Open every event for ``pid`` (-1: every process) on every CPU."""
        for type_id, event_id in zip(self._type_ids, self._sharing, strict=True):
            for cpu, leader in zip(self._cpus, self._resources.leader_fds, strict=True):
                fd = self._perf_open(self._event_attr(type_id, flags), pid, cpu,
                                     "a uprobe event")
                opened.append(fd)
                self._fd_events[fd] = event_id
                try:
                    perf_event_set_output(fd, leader)
                except OSError as error:
                    raise SysCallError(error.errno or 0, "PERF_EVENT_IOC_SET_OUTPUT") from None

    def attach_all(self, target: TraceTarget) -> None:
        """Open the events for ``target`` and enable them.

        Raises:
            TargetNotFoundError: A ``-p`` process is gone.
            PrivilegeError: Not allowed to open the events.
        """
        opened = self._resources.event_fds
        start = len(opened)
        try:
            if target.command_pid is not None:
                if not self._follow:
                    raise ValueError("this session was not created to follow a command")
                self._tree = ProcessTree(target.command_pid)
                self._open_events(-1, 0, opened)
            elif target.pids:
                for pid in target.pids:
                    self._open_process(pid, opened)
            else:
                self._open_events(-1, 0, opened)
            for fd in opened[start:]:
                perf_event_enable(fd)
        except BaseException:
            self.detach()
            raise

    def _open_process(self, pid: int, opened: list[int]) -> None:
        """Open the events on every thread of ``pid``; threads started meanwhile are found by
        listing again until no new one appears."""
        flags = FLAG_INHERIT | FLAG_INHERIT_THREAD
        done: set[int] = set()
        while True:
            try:
                threads = sorted(int(t) for t in os.listdir(f"/proc/{pid}/task"))
            except OSError:
                threads = []
            new = [tid for tid in threads if tid not in done]
            if not new:
                break
            for tid in new:
                done.add(tid)
                try:
                    self._open_events(tid, flags, opened)
                except SysCallError as error:
                    if error.errno == errno.ESRCH:
                        continue  # the thread ended meanwhile
                    if error.errno == errno.EINVAL and flags & FLAG_INHERIT_THREAD:
                        # Before Linux 5.13 there is no inherit_thread; plain inherit would
                        # follow forked processes too, so threads started later are missed.
                        _log.warning("this kernel cannot make per-thread events follow new "
                                     "threads (Linux 5.13+): threads started from now on in "
                                     "process %d are not traced", pid)
                        flags = 0
                        done.discard(tid)
                        continue
                    raise
        if not done or not os.path.exists(f"/proc/{pid}"):
            raise TargetNotFoundError(f"no process with pid {pid}")

    # -- running --------------------------------------------------------------------------

    def wait(self, timeout: float | None) -> None:
        epoll = self._resources.epoll
        if epoll is None:
            raise ClosedError("this tracefs session is closed")
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.pending():
            step = _POLL_INTERVAL
            if deadline is not None:
                step = min(step, max(0.0, deadline - time.monotonic()))
            try:
                if epoll.poll(step):
                    return
            except InterruptedError:
                return
            if deadline is not None and time.monotonic() >= deadline:
                return

    def watch(self, fd: int) -> None:
        epoll = self._resources.epoll
        if epoll is None:
            raise ClosedError("this tracefs session is closed")
        epoll.register(fd, select.EPOLLIN)

    def pending(self) -> bool:
        return bool(self._tree and self._tree.pending) or any(buffer.pending() > 0
                                          for buffer in self._resources.buffers)

    def read_batches(self) -> list[Batch]:
        """Every sample in the buffers, decoded; ordered by time when several CPUs had some
        (one batch)."""
        events = self._read()
        return [Batch(None, events)] if events else []

    def read_records(self, sink: Callable[[memoryview], object]) -> int:
        raise UsageError("rawprobe record keeps the BPF ring buffer's records as they are: it "
                         "needs the BPF backend (the tracefs backend's samples are decoded as "
                         "they are read; use 'rawprobe attach -o FILE' instead)")

    def _read(self) -> list[Event]:
        events: list[Event] = []
        sources = 0
        horizon = time.monotonic_ns()
        tasks: list[tuple[int, bool, int, int]] = []
        for buffer in self._resources.buffers:
            chunk = buffer.read()
            if not chunk:
                continue
            samples, lost, consumed = split_perf_records(chunk)
            self._lost += lost
            before = len(events)
            self._decode(chunk, samples, events)
            if self._tree is not None:
                tasks += task_records(chunk, consumed)
            buffer.consume(consumed)
            sources += len(events) > before
        if self._tree is not None:
            events, strangers = self._tree.judge(events, tasks, horizon)
            for event_id in strangers:
                self._counts[event_id] -= 1  # another process's hit: not ours
                self._strangers[event_id] += 1
        elif sources > 1:
            events.sort(key=attrgetter("ts_ns"))
        return self._stage.process(events)

    def _decode(self, chunk: bytes, samples: list[int], events: list[Event]) -> None:
        decoders = self._decoders
        counts = self._counts
        unpack_sample = SAMPLE_FIELDS.unpack_from
        type_of = _U16.unpack_from
        append = events.append
        callchain = self._callchain
        stack: tuple[int, ...] | None = None
        for position in samples:
            if callchain:
                pid, tid, ts_ns, cpu, _res = SAMPLE_HEAD.unpack_from(chunk, position + 8)
                stack, raw = sample_callchain(chunk, position + 8 + SAMPLE_HEAD.size)
            else:
                pid, tid, ts_ns, cpu, _res, _size = unpack_sample(chunk, position + 8)
                raw = position + SAMPLE_RAW_OFFSET
            decoder = decoders.get(type_of(chunk, raw)[0])
            if decoder is None:
                continue
            values, faults, truncated, comm = decoder.decode(chunk, raw)
            if not comm:  # no room was left for it (see _decode._Cut): the next best thing
                comm = _proc_comm(tid)
            event_id, layout = (decoder.site(chunk, raw) if decoder.sites
                                else (decoder.event_id, decoder.layout))
            counts[event_id] += 1
            append(Event.make(layout, ts_ns, pid, tid, cpu, comm, values, faults,
                              truncated, stack, event_id))

    def _hits(self) -> list[int]:
        """Per event id, how often it fired: the sum of its perf events' counts.

        A tracepoint event counts every hit before it tries to write the sample
        (kernel/events/core.c, perf_swevent_event()), so the count includes samples that did
        not fit; reading an inherited event adds its children's counts (perf_event_read_value()).
        """
        hits = [0] * len(self._counts)
        for fd, event_id in self._fd_events.items():
            with contextlib.suppress(OSError):
                hits[event_id] += int.from_bytes(os.read(fd, 8), "little")
        # A shared kernel event counts its sites' hits together: each site has what was
        # decoded of it (another process's samples included, as the kernel counts them), and
        # the first site the rest (what did not fit in the buffers).
        for first, sites in self._sharing.items():
            for event_id in sites[1:]:
                seen = self._counts[event_id] + self._strangers[event_id]
                hits[event_id] = seen
                hits[first] -= seen
        return hits

    def detach(self) -> None:
        """Close the uprobe events and remove their definitions; the buffers stay readable.

        The events' hit counts are read first: they make the final accounting exact."""
        if self._fd_events:
            self._final_hits = self._hits()
            self._fd_events = {}
        if self._tree is not None:
            self._tree.draining = True  # what is read from now on is judged at once
        release_probes(self._resources)

    def counters(self) -> list[ProbeCounters]:
        """Per event id: hits, and samples lost because a ring buffer was full.

        Once detached and drained, ``lost`` is exact per event: hits counted by the kernel
        minus samples decoded. While running it is what PERF_RECORD_LOST records have said so
        far (a shared buffer cannot say whose samples it dropped: they are put on event 0), and
        the kernel only reports a loss once a later sample fits.
        """
        result = []
        final = self._final_hits
        hits = final if final is not None else self._hits()
        if self._tree is not None:
            # The events count every process's hits: once detached and drained, what was
            # neither kept nor another process's sample was lost, and it may have been another
            # process's (an upper bound, exact when nothing else runs the probed code). While
            # running, what PERF_RECORD_LOST records said so far.
            if final is not None:
                final = [total - strangers for total, strangers in zip(final, self._strangers,
                                                                      strict=True)]
                hits = final
            else:
                hits = [count + (self._lost if event_id == 0 else 0)
                        for event_id, count in enumerate(self._counts)]
        for event_id, count in enumerate(self._counts):
            if final is not None:
                lost = max(0, final[event_id] - count)
            else:
                lost = self._lost if event_id == 0 else 0
            stage = self._stage
            result.append(ProbeCounters(hits=max(hits[event_id], count + lost),
                                        filtered=stage.filtered[event_id],
                                        lost=lost + stage.lost[event_id],
                                        unmatched=stage.unmatched[event_id],
                                        replaced=stage.replaced[event_id]))
        return result

    def fileno(self) -> int:
        """The epoll descriptor: readable when a buffer passes its watermark or a watched
        descriptor turns readable (sparse samples are found by :meth:`wait`'s polling)."""
        epoll = self._resources.epoll
        if epoll is None:
            raise ClosedError("this tracefs session is closed")
        return epoll.fileno()

    def aggregate_cells(self, reset: bool) -> list[AggregateCell]:
        return self._stage.cells(reset)

    def syscall_totals(self, reset: bool) -> list[SyscallTotal]:
        return []  # no system call probes here (refused when the session was made)

    def stack(self, stack_id: int) -> tuple[int, ...]:
        return self._stage.stack(stack_id)

    def stack_pid(self, stack_id: int) -> int | None:
        return self._stage.stack_pid(stack_id)

    def open_spans(self) -> dict[int, int]:
        return self._stage.open_spans()

    def close(self) -> None:
        """Detach and free everything (idempotent)."""
        self._finalizer()

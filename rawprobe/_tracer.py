"""The Tracer: probes in, events out, every resource owned and released."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import select
import shutil
import signal
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from ._bpf.session import DEFAULT_RING_SIZE, BpfSession
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
from ._host.limits import out_of_descriptors, raise_descriptor_limit
from ._host.privileges import check_tracing_privileges
from ._plan import abi
from ._plan.aggregate import (
    AggregationSpec,
    Count,
    CountTable,
    HistogramSet,
    UserAggregator,
    aggregation_config,
    build_histograms,
    key_decoder,
    sort_counts,
)
from ._plan.compile import DEFAULT_STRING_SIZE, compile_fetchargs
from ._plan.events import Event, RecordLayout
from ._plan.session import PlannedUprobe, ProbeCounters, Session, TraceTarget
from ._plan.sites import maps_file, probe_site_hazard
from ._probe.fetchargs import Deref, FileOffset, Source, UsdtArgument
from ._probe.filters import FilterExpr, compile_filter, evaluate_filter, parse_filter
from ._probe.typed import Probe
from ._probe.words import ProbeSpec, default_event_name, parse_probe
from ._symbols import Location, find_target, resolve_location
from ._symbols.symbolize import AddressResolver

if TYPE_CHECKING:
    import asyncio  # imported by aevents() when used: most runs never need it

__all__ = ["TraceStats", "Tracer"]


@dataclass(frozen=True)
class TraceStats:
    """Accounting of one run.

    Attributes:
        events: Records delivered to the caller.
        lost: Records the BPF programs could not write (ring buffer full).
        hits: Times the probes fired (in traced processes).
        filtered: Hits the filter rejected.
        truncated: Delivered events with a string cut at the string size.
        probes: The kernel's counts per event name: ``{event: ProbeCounters}`` (sites of
            one name summed).
    """

    events: int
    lost: int
    hits: int
    filtered: int
    truncated: int = 0
    probes: dict[str, ProbeCounters] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class _Site:
    """One place a probe word resolved to."""

    symbol: str | None
    file_offset: int
    ref_ctr_offset: int
    usdt_args: tuple[UsdtArgument, ...] | None
    at_entry: bool = False  # on the first instruction of a function


@dataclass(frozen=True)
class _Plan:
    """What sites of one probe word share: configuration, record layout, key decoder."""

    config_id: int
    layout: RecordLayout
    decoder: Any
    reads_memory: bool
    tally_only: bool


def _mid_instruction(path: str, location: Location) -> str | None:
    """Why a probe inside a function (SYMBOL+OFFSET) is not known to start an instruction, or
    None when it does: a uprobe in the middle of one corrupts the program."""
    if not location.symbol_offset or location.symbol is None:
        return None
    from ._plan.insn import is_instruction_boundary  # its tables take ms to build

    start = location.file_offset - location.symbol_offset
    try:
        boundary = is_instruction_boundary(path, start, location.size or 0, location.file_offset)
    except (OSError, ValueError):
        boundary = None
    if boundary:
        return None
    if boundary is None:
        return (f"its instructions up to +{location.symbol_offset:#x} cannot be decoded, so it is "
                "unknown whether an instruction starts there (a uprobe in the middle of one "
                "corrupts the program); use --force if you know it does")
    return (f"+{location.symbol_offset:#x} is in the middle of an instruction of "
            f"{location.symbol}: a uprobe there would corrupt the program (see 'objdump -d' "
            "for where instructions start)")


def _some(names: Sequence[str], shown: int = 5) -> str:
    """The first few names, and how many more."""
    text = ", ".join(names[:shown])
    return text + (f" and {len(names) - shown} more" if len(names) > shown else "")


def _position_dependent(spec: ProbeSpec) -> bool:
    """Whether a fetch depends on where the probe is (``@+OFFSET`` is relative to it)."""

    def walk(source: Source) -> bool:
        if isinstance(source, FileOffset):
            return True
        return isinstance(source, Deref) and walk(source.inner)

    return any(walk(arg.source) for arg in spec.fetchargs)


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
        if self.pids and command:
            raise UsageError("give either -p PID or a command, not both")
        for p in self.pids:
            if not os.path.exists(f"/proc/{p}"):
                raise TargetNotFoundError(f"no process with pid {p}")
        self.string_size = string_size
        self.ring_size = ring_size
        self.force = force
        if backend not in ("auto", "bpf", "tracefs"):
            raise UsageError(f"unknown backend {backend!r}: use auto, bpf or tracefs")
        self.backend = backend
        self.aggregation = aggregation
        self.stack = stack
        if aggregation is not None and stack and not aggregation.stack:
            self.aggregation = aggregation = dataclasses.replace(aggregation, stack=True)
        self._key_decoders: list[Any] = []
        self._at_entry: list[bool] = []  # per event id: stacks miss the caller frame
        self._from_glob: list[bool] = []  # per event id: matched by a glob
        self._plans: dict[tuple[Any, ...], _Plan] = {}
        self._roles: list[str] = []  # per event id: "entry"/"return" of a latency pair
        self._filter_exprs: list[FilterExpr | None] = []  # per event id
        self._user_filtered: list[int] = []  # per event id, when filtering in user space
        self._filters_in_kernel = True
        self._user_aggregator: UserAggregator | None = None
        self.warnings: list[str] = []  # things a user should know about the probes added
        self._tally_seen: dict[int, int] = {}
        self._command = _Command(command) if command else None
        self._uprobes: list[PlannedUprobe] = []
        self._layouts: list[RecordLayout] = []
        self._configs: dict[bytes, int] = {}
        self._names: set[str] = set()
        self._session: Session | None = None
        self.resolver = AddressResolver()
        self._needs_maps = False
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
        """
        self._check_open()
        if self._session is not None:
            raise UsageError("probes must be added before the tracer starts")
        if isinstance(probe, Probe):
            probe = probe.word
        spec = parse_probe(probe) if isinstance(probe, str) else probe
        filter_expr = parse_filter(filter) if filter else None
        path = find_target(spec.target, self.pids[0] if self.pids else None)
        if self.pids and not self.force and all(
            maps_file(pid, path) is False for pid in self.pids
        ):
            raise UsageError(
                f"{path}: not mapped by process {', '.join(map(str, self.pids))}, so the probe "
                "would never fire there (is it another file of that name, in another mount "
                "namespace? with -p, absolute paths are taken inside the process's root). If "
                "the process loads it later, pass --force"
            )
        sites: list[_Site] = []
        if spec.kind == "usdt":
            from ._usdt import find_usdt_probes

            if spec.ref_ctr_offset is not None:
                raise UsageError(
                    f"{spec.text}: a USDT probe's semaphore comes from its note; drop the "
                    "(OFFSET) after the place"
                )

            for usdt in find_usdt_probes(path, spec.location):
                sites.append(_Site(usdt.name, usdt.file_offset,
                                   usdt.semaphore_offset or 0, usdt.arguments))
        else:
            glob = any(ch in spec.location for ch in "*?[")
            left_out: dict[str, list[str]] = {}
            left_in: list[str] = []
            for location in resolve_location(path, spec.location, force=self.force,
                                             retprobe=spec.retprobe):
                hazard = None if self.force else (
                    _mid_instruction(path, location)
                    or probe_site_hazard(path, location.file_offset)
                )
                if hazard is not None:
                    where = f"{location.symbol or spec.location} ({path}:{location.file_offset:#x})"
                    if not glob:
                        raise UsageError(f"refusing to probe {where}: {hazard}")
                    left_out.setdefault(hazard, []).append(location.symbol or where)
                    continue
                sites.append(_Site(location.symbol, location.file_offset,
                                   spec.ref_ctr_offset or 0, None,
                                   location.symbol is not None and location.symbol_offset == 0))
                if glob and getattr(location, "kind", "func") == "ifunc":
                    left_in.append(location.symbol or hex(location.file_offset))
                elif location.warning:
                    self.warnings.append(f"{location.symbol or spec.location}: "
                                         f"{location.warning}")
            if left_in:
                self.warnings.append(
                    f"{len(left_in)} of the functions {spec.location} matches are indirect "
                    f"functions (IFUNC) ({_some(left_in)}): their probes hit the resolver the "
                    "dynamic linker runs once, not the calls; probe the implementations")
            for hazard, symbols in left_out.items():
                self.warnings.append(f"{len(symbols)} of the functions {spec.location} matches "
                                     f"left out ({_some(symbols)}): {hazard}")
        aggregation = self.aggregation
        latency = aggregation is not None and aggregation.hist is not None and (
            aggregation.hist.is_latency
        )
        if latency and spec.kind != "p":
            raise UsageError(
                f"--hist latency measures from entry to return: give entry probes (p:), "
                f"not {spec.text!r}; the return probe is added for you"
            )
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
            for role in ("entry", "return") if latency else ("",):
                self._plan(spec, site, path, name, role, filter_expr, filter)
            self._names.add(name)
            if name not in names:
                names.append(name)
        return names

    def _plan(
        self,
        spec: ProbeSpec,
        site: _Site,
        path: str,
        name: str,
        role: str,
        filter_expr: FilterExpr | None,
        filter_text: str | None,
    ) -> None:
        """Lay out one uprobe of a site (a latency measurement takes two: entry and return).

        Sites of one probe word share their layout and configuration unless a fetch depends
        on the site's own offset (``@+OFFSET``, USDT arguments), so a glob over thousands of
        functions builds them once.
        """
        retprobe = spec.retprobe or role == "return"
        aggregation = self.aggregation
        with_stack = self.stack or (aggregation is not None and aggregation.stack)
        at_entry = site.at_entry and not retprobe and with_stack
        position = site.file_offset if _position_dependent(spec) else None
        fetchargs = spec.fetchargs
        if site.usdt_args is not None and not fetchargs:
            from ._usdt import default_fetchargs

            fetchargs = default_fetchargs(site.usdt_args)
        key = (fetchargs, role, retprobe, at_entry, site.usdt_args, filter_text, position)
        cached = self._plans.get(key)
        if cached is None:
            compiled = compile_fetchargs(
                fetchargs if role != "return" else (),
                word=spec.text,
                retprobe=retprobe,
                probe_file_offset=site.file_offset,
                string_size=self.string_size,
                usdt_args=site.usdt_args,
                stack=self.stack and aggregation is None,
            )
            compiled.at_entry = at_entry
            predicates: list[dict[str, object]] = []
            strings: list[bytes] = []
            if filter_expr is not None and role != "return":
                program = compile_filter(filter_expr, compiled, filter_text or "")
                predicates, strings = program.predicates, program.strings
            agg = decoder = None
            if aggregation is not None:
                agg = aggregation_config(aggregation, compiled, word=spec.text, role=role)
                decoder = key_decoder(aggregation.by, compiled)
            config = compiled.config(predicates, strings, agg)
            # Stack maps are for non-sleepable programs only.
            reads_memory = compiled.reads_memory and not (
                aggregation is not None and aggregation.stack
            )
            tally_only = bool(agg and agg["action"] == abi.Action.TALLY and not predicates)
            cached = _Plan(self._configs.setdefault(config, len(self._configs)),
                           RecordLayout(name, compiled), decoder, reads_memory, tally_only)
            self._plans[key] = cached
        layout = cached.layout if cached.layout.event == name else cached.layout.renamed(name)
        self._needs_maps = self._needs_maps or layout.has_symbols or layout.has_stack
        self._from_glob.append(any(ch in spec.location for ch in "*?["))
        self._roles.append(role)
        self._filter_exprs.append(filter_expr if role != "return" else None)
        self._at_entry.append(at_entry)
        self._key_decoders.append(cached.decoder)
        event_id = len(self._layouts)
        self._layouts.append(layout)
        self._uprobes.append(
            PlannedUprobe(
                event_id,
                cached.config_id,
                path,
                site.file_offset,
                retprobe,
                site.ref_ctr_offset,
                fetchargs,
                layout,
                cached.reads_memory,
                usdt_args=site.usdt_args,
                tally_only=cached.tally_only,
            )
        )

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
        session: Session
        # Every map, program, link and perf event is a descriptor: use all the room there is.
        raise_descriptor_limit()
        try:
            session = self._open_session()
        except OSError as error:
            if error.errno == errno.EMFILE:
                raise out_of_descriptors("rawprobe's BPF maps and programs") from None
            raise
        self._session = session
        self._finish_start(session)

    def _open_session(self) -> Session:
        """The session of the chosen backend (``auto``: BPF, else tracefs)."""
        session: Session
        if self.backend == "auto":
            # BPF where it works; the kernel's own tracer (tracefs) where it does not.
            check_tracing_privileges(bpf=False)
            try:
                check_tracing_privileges(bpf=True)
                session = self._bpf_session()
                self.backend = "bpf"
            except (KernelFeatureError, BpfObjectError, LibbpfMissingError,
                    PrivilegeError) as error:
                reason = str(error).splitlines()[0]
                session = self._tracefs_session()
                self.backend = "tracefs"
                self.warnings.append(f"using the tracefs backend: {reason}")
        elif self.backend == "tracefs":
            check_tracing_privileges(bpf=False)
            session = self._tracefs_session()
        else:
            check_tracing_privileges(bpf=True)
            session = self._bpf_session()
        return session

    def _finish_start(self, session: Session) -> None:
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
        unplaced = getattr(session, "unplaced", [])
        for uprobe, reason in unplaced:
            name = uprobe.layout.event
            if not self._from_glob[uprobe.event_id]:
                raise UsageError(f"{name} ({uprobe.path}:{uprobe.file_offset:#x}): {reason}")
            self.warnings.append(f"{name} left out: {reason}")

    @property
    def started(self) -> bool:
        """Whether :meth:`start` has run (the probes are, or were, planted)."""
        return self._session is not None

    def _bpf_session(self) -> Session:
        return BpfSession(self._uprobes, list(self._configs), ring_size=self.ring_size,
                          follow=self._command is not None)

    def _tracefs_session(self) -> Session:
        from ._tracefs import TracefsSession

        session = cast(Session, TracefsSession(
            self._uprobes, ring_size=self.ring_size, string_size=self.string_size,
            follow=self._command is not None,
        ))
        # tracefs neither filters nor aggregates in the kernel: both happen here.
        if self.aggregation is not None:
            self._user_aggregator = UserAggregator(self.aggregation, self._layouts,
                                                   self._roles)
        self._filters_in_kernel = False
        self._user_filtered = [0] * len(self._layouts)
        return session

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
        aggregator = self._user_aggregator
        if not self._filters_in_kernel or aggregator is not None:
            events = self._in_user_space(events, aggregator)
            if aggregator is not None:
                return []
        self._delivered += len(events)
        if self._needs_maps:
            # Addresses are described through the process's mappings: read them while the
            # process is (most likely) still alive.
            for event in events:
                self.resolver.remember(event.pid)
        return events

    def events(self, timeout: float | None = None) -> Iterator[Event]:
        """Yield events until ``timeout`` seconds pass, or what is traced ends.

        After the traced command (or every ``-p`` process) ends, what is left in the ring
        buffer is delivered and the iteration stops.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._stopped:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            batch = self.poll(remaining)
            yield from batch
            if self.finished():
                yield from self.drain()
                return
            if deadline is not None and time.monotonic() >= deadline:
                return

    async def aevents(self, timeout: float | None = None) -> AsyncIterator[Event]:
        """:meth:`events` for asyncio: waits on the ring buffer's descriptor in the event
        loop instead of blocking it.

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
            ready: asyncio.Future[None] = loop.create_future()
            loop.add_reader(fd, _resolve, ready)
            try:
                await asyncio.wait_for(ready, remaining)
            except asyncio.TimeoutError:
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
        for event loops other than asyncio."""
        session = self._session
        if session is None:
            raise UsageError("the tracer has not started")
        return int(session.fileno())

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
        session = self._session
        if session is None:
            raise UsageError("the tracer has not started")
        layouts = self._layouts
        if self._user_aggregator is not None:
            cells = self._user_aggregator.take(reset)
        else:
            cells = session.aggregate_cells(reset)
        if aggregation.kind == "hist":
            assert aggregation.hist is not None
            return build_histograms(aggregation.hist, (
                (layouts[event_id].event, self._decode_key(event_id, data), bucket, count)
                for event_id, _stack_id, bucket, data, count in cells
            ))
        rows = [
            Count(layouts[event_id].event, self._decode_key(event_id, data), count,
                  self._stack(session, stack_id, data if self._at_entry[event_id] else None)
                  if stack_id >= 0 else None)
            for event_id, stack_id, _bucket, data, count in cells
        ]
        if aggregation.by is None and not aggregation.stack and self._user_aggregator is None:
            # Plain counts are the probes' own hit counters.
            for event_id, counters in enumerate(session.counters()):
                total = counters.hits - counters.filtered
                count = total - self._tally_seen.get(event_id, 0)
                if reset:
                    self._tally_seen[event_id] = total
                rows.append(Count(layouts[event_id].event, None, count))
            merged: dict[str, int] = {}
            for row in rows:
                merged[row.event] = merged.get(row.event, 0) + row.count
            rows = [Count(event, None, count) for event, count in merged.items()]
        return sort_counts(rows)

    def _in_user_space(
        self, events: list[Event], aggregator: UserAggregator | None
    ) -> list[Event]:
        """Filter (and aggregate) events a backend could not in the kernel (tracefs)."""
        index = {id(layout): event_id for event_id, layout in enumerate(self._layouts)}
        kept = []
        for event in events:
            event_id = index[id(event.layout)]
            expr = self._filter_exprs[event_id]
            if expr is not None and not evaluate_filter(expr, event):
                self._user_filtered[event_id] += 1
                continue
            if aggregator is not None:
                aggregator.add(event_id, event)
            kept.append(event)
        return kept

    def _decode_key(self, event_id: int, data: bytes) -> Any:
        decoder = self._key_decoders[event_id]
        return None if decoder is None else decoder(data)

    def _stack(self, session: Session, stack_id: int, key_data: bytes | None) -> tuple[str, ...]:
        addresses = session.stack(stack_id)
        if key_data is not None and addresses:
            # At a function's entry a frame-pointer walk may skip the caller (kernels since
            # 6.13 add it when the first instruction is push %rbp); the BPF program kept its
            # return address in the key (RP_PROBE_AT_ENTRY).
            caller = int.from_bytes(key_data[-8:], "little")
            if len(addresses) < 2 or addresses[1] != caller:
                addresses = (addresses[0], caller, *addresses[1:])
        pid = session.stack_pid(stack_id)
        if pid is None:
            return tuple(f"{address:#x}" for address in addresses)
        return tuple(self.resolver.describe(pid, address) for address in addresses)

    def stats(self) -> TraceStats:
        """What happened so far: delivered, lost, hit and filtered counts."""
        session = self._session
        if session is None:
            return self._final_stats or TraceStats(self._delivered, 0, 0, 0)
        counters = session.counters()
        if not self._filters_in_kernel:
            counters = [ProbeCounters(c.hits, c.filtered + filtered, c.lost)
                        for c, filtered in zip(counters, self._user_filtered, strict=True)]
        probes: dict[str, ProbeCounters] = {}
        for layout, counter in zip(self._layouts, counters, strict=True):
            seen = probes.get(layout.event)
            probes[layout.event] = counter if seen is None else ProbeCounters(
                seen.hits + counter.hits, seen.filtered + counter.filtered,
                seen.lost + counter.lost)
        return TraceStats(
            events=self._delivered,
            lost=sum(c.lost for c in counters),
            hits=sum(c.hits for c in counters),
            filtered=sum(c.filtered for c in counters),
            probes=probes,
        )

    def event_names(self) -> list[str]:
        return [layout.event for layout in self._layouts]

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
    pidfds = list(state.get("_pidfds") or [])  # type: ignore[call-overload]
    state["_pidfds"] = []
    try:
        if session is not None:
            session.close()  # type: ignore[attr-defined]
    finally:
        if isinstance(command, _Command):
            command.close()
        for fd in [*pidfds, state.get("_wake_read"), state.get("_wake_write")]:
            if isinstance(fd, int) and fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        state["_wake_read"] = state["_wake_write"] = -1


"""The BPF backend: one loaded object, its maps filled with probe configurations, and the
uprobes (and system call and tracepoint programs, :mod:`.kernel`) whose BPF programs write
records into its ring buffer (implements :class:`rawprobe._plan.session.Session`)."""

from __future__ import annotations

import errno
import os
import struct
import time
import weakref
from collections.abc import Callable, Sequence
from operator import itemgetter

from .. import _log
from .._errors import BpfObjectError, KernelFeatureError, SysCallError
from .._host.privileges import perf_uprobes_allowed
from .._plan import abi
from .._plan.events import Batch
from .._plan.session import (
    AggregateCell,
    Plan,
    PlannedEvent,
    ProbeCounters,
    SyscallTotal,
    TraceTarget,
)
from .._probe.defaults import DEFAULT_RING_SIZE
from .._sys.bpf import link_create_uprobe_multi
from .._sys.bpfobject import BpfObject
from .._sys.features import UPROBE_MULTI
from .._sys.libbpf import Libbpf
from .._sys.uprobe import ENOTSUPP, UnplaceableProbeError, UprobeEvent, explain_uprobe_error
from .kernel import KernelProbes
from .loader import FOLLOW_PROGRAMS, SHRINKABLE, LoadSpec, load_object, settings, take
from .records import Decoder, committed
from .ringmap import RingMap

TYPE_CHECKING = False  # mypy treats this name as True; at run time it spares importing typing.
if TYPE_CHECKING:
    from .._probe.fetchargs import Source
    from .follow import CommandEvents

__all__ = ["BpfSession"]

_KEY = struct.Struct("<I")
_STATS = struct.Struct("<QQQQQ")  # struct rp_stats
_AGG_VALUE = struct.Struct("<Qqqq")  # struct rp_agg_value
_U64 = (1 << 64) - 1
_FOLLOW_ARMED = 2  # FOLLOW_ARMED in rawprobe.bpf.c
# Attached last, after a plan's own tracepoints: a tracepoint's programs run in the order they
# were attached (kernel/tracepoint.c, func_add()), and a tp:sched:sched_process_exit probe
# must see the process still followed.
_FOLLOW_LAST = "rp_exit"
_AGG_KEY_HEAD = struct.Struct("<Iiq")  # struct rp_agg_key up to its data
_NPREDICATES = struct.Struct("<8xI")  # struct rp_probe.npredicates
_ACTION = struct.Struct("<24xI")  # struct rp_probe.agg.action

# ENOTSUPP (524, kernel-internal) and EINVAL: the kernel cannot place a uprobe on that
# instruction (arch/x86/kernel/uprobes.c refuses some), or the offset is not an instruction.
_UNPLACEABLE = (ENOTSUPP, errno.EINVAL)
_UNPLACEABLE_REASON = "the kernel cannot place a uprobe on the instruction at that offset"

# Reading fewer bytes than this right after a read that found records, wait this long first.
_SMALL_BATCH = 4096
_SETTLE_SECONDS = 0.0002

# A system call's record is made when it returns and timed when it began: within a batch,
# events are put in time order (an Event's first member is its time).
_TIME = itemgetter(0)

# A file's uprobes go on one uprobe_multi link from this many on (where the kernel has
# them): removing a perf-event uprobe costs an RCU grace period (~0.1 s here) each, a
# uprobe_multi link one for all its uprobes, so even a single probe goes on a link.
MULTI_THRESHOLD = 1

_Group = tuple[str, bool, str]  # (kernel path, return probes, program suffix)


def _reads_file_offset(source: Source) -> bool:
    from .._probe.fetchargs import Deref, FileOffset  # only on kernels before 6.6

    return isinstance(source, FileOffset) or (isinstance(source, Deref) and
                                              _reads_file_offset(source.inner))


def _check_return_file_offsets(plan: Plan) -> None:
    """A return probe reads ``@+OFFSET`` (a global of the probed file) from the probed
    function's address, which its program gets from bpf_get_func_ip(): Linux 6.6 for uprobes,
    the release that brought uprobe_multi links (one series: their presence says it is there).

    Raises:
        KernelFeatureError: The kernel is older.
    """
    if UPROBE_MULTI.available():
        return
    for event in plan.events:
        if event.retprobe and any(_reads_file_offset(arg.source) for arg in event.fetchargs):
            raise KernelFeatureError(
                f"{event.layout.event}: a return probe that reads memory of the probed file "
                "(@+OFFSET, a global variable) needs bpf_get_func_ip() in uprobe programs "
                "(Linux 6.6); use --backend tracefs, or read it in an entry probe")


class BpfSession:
    """A loaded instance of rawprobe's BPF object, configured for a plan.

    Each uprobe runs one of the generic programs: the entry or return one, the sleepable
    variant when it reads memory (and the kernel has them), and the uprobe_multi variant when
    it goes on a uprobe_multi link with the other uprobes of its file.

    Args:
        plan: The events to plant and their configurations.
        ring_size: Bytes of the ring buffer (a power of two, at least a page).
        follow: The session will trace a command and its children: with uprobes of their
            own where it can (:mod:`.follow`; :attr:`follow_at_exec` is then True: plant the
            probes with the command stopped at its exec), else with host-wide uprobes and the
            BPF program's process-tree filter (the followed set, see :meth:`follow`, grown as
            processes fork).
        multi: Whether to use uprobe_multi links where they help (None: when the kernel has
            them).
    """

    def __init__(
        self,
        plan: Plan,
        *,
        ring_size: int = DEFAULT_RING_SIZE,
        follow: bool = False,
        multi: bool | None = None,
    ) -> None:
        if ring_size < os.sysconf("SC_PAGE_SIZE") or ring_size & (ring_size - 1):
            raise ValueError(f"ring size {ring_size} is not a power of two of at least a page")
        _check_return_file_offsets(plan)
        self._plan_events = list(plan.events)
        self._kernel = KernelProbes(plan.events)
        self._aggregation = plan.aggregation
        self._decoder = Decoder(plan.layouts)
        self._busy = False
        self.follow_at_exec = False
        if follow:
            from .follow import refusal  # tracefs and ptrace: only a run with a command

            why = refusal(len(self._plan_events))
            if why is None and (self._kernel.syscalls or self._kernel.tracepoints):
                why = "system calls and tracepoints are followed by the process-tree filter"
            if why is None:
                self.follow_at_exec, multi = True, False
                _log.info("following the command with uprobes of its own (tracefs uprobe "
                          "events opened on it, inherited by each process it starts): other "
                          "processes running the probed code are not disturbed")
            else:
                _log.info("following the command with host-wide uprobes and an in-kernel "
                          "filter of its process tree (%s): other processes running the probed "
                          "code take the breakpoint, and nothing of theirs is recorded", why)
        self._follow = follow and not self.follow_at_exec  # the BPF tree filter
        self._links: list[int] = []  # libbpf links (perf-event uprobes, tracepoints)
        self._link_fds: list[int] = []  # uprobe_multi links
        self._commands: list[CommandEvents] = []  # a command's own uprobes (follow_at_exec)
        self._ring: RingMap | None = None
        self._tally_taken: dict[int, int] = {}
        self.unplaced: list[tuple[PlannedEvent, str]] = []
        self.poll_interval: float | None = None  # the ring buffer wakes its reader itself
        if multi is None:
            multi = UPROBE_MULTI.available()
        # Without the right to create uprobes through perf_event_open (CAP_SYS_ADMIN on kernels
        # since the 2025 hardening), a uprobe_multi link carries even a file's only uprobe.
        self._threshold = MULTI_THRESHOLD if perf_uprobes_allowed() else 1
        # Fall back step by step: without uprobe_multi links, then without sleepable programs.
        attempts = list(dict.fromkeys([(True, multi), (True, False), (False, False)]))
        for index, (sleepable, use_multi) in enumerate(attempts):
            self.sleepable, self.multi = sleepable, use_multi
            self._programs = self._choose_programs()
            try:
                self._object = self._load(plan.configs, ring_size)
                break
            except BpfObjectError:
                if index == len(attempts) - 1:
                    raise
                _log.info("the kernel refused %s; trying without",
                          "uprobe_multi programs" if use_multi else "sleepable programs")
        obj = self._object
        try:
            if self._follow:
                for name in FOLLOW_PROGRAMS[:-1]:
                    self._links.append(int(obj.lib.program_attach(obj.program(name))))
            events = obj.map("events")
            self._ring = RingMap(events.fd, events.max_entries)
        except BaseException:
            self.close()
            raise
        self._finalizer = weakref.finalize(
            self, _destroy_links, obj.lib, self._links, self._link_fds, self._commands
        )

    def _choose_programs(self) -> list[tuple[str, _Group | None]]:
        """For each event: its program, and its uprobe_multi group (None: a perf event)."""
        keys = []
        sizes: dict[_Group, int] = {}
        for event in self._plan_events:
            if event.kind != "uprobe":
                keys.append(("", False, ""))
                continue
            suffix = "_sleepable" if self.sleepable and event.reads_memory else ""
            key = (event.kernel_path, event.retprobe, suffix)
            sizes[key] = sizes.get(key, 0) + 1
            keys.append(key)
        programs: list[tuple[str, _Group | None]] = []
        for event, key in zip(self._plan_events, keys, strict=True):
            if event.kind != "uprobe":
                programs.append(("", None))  # see KernelProbes
                continue
            multi = self.multi and sizes[key] >= self._threshold
            program = ("rp_return" if event.retprobe else "rp_entry") + (
                "_multi" if multi else "") + key[2]
            programs.append((program, key if multi else None))
        return programs

    def _load(self, configs: Sequence[bytes], ring_size: int) -> BpfObject:
        aggregation = self._aggregation
        stacks = aggregation is not None and aggregation.stack
        flags = [event.syscall_flags for event in self._kernel.syscalls]
        by_pid = any(flag & abi.SysFlag.BY_PID for flag in flags)
        used = {
            "aggregates": aggregation is not None,
            "spans": any(event.role for event in self._plan_events),
            "stacks": stacks,
            "stack_pids": stacks,
            # The command's tree, or the -p processes of system calls and tracepoints.
            "followed": self._follow or bool(self._kernel.programs()),
            "syscalls": bool(flags),
            "sys_totals": any(flag & abi.SysFlag.SUMMARY for flag in flags) and not by_pid,
            "sys_totals_by_pid": by_pid,
        }
        wanted = {program for program, _group in self._programs if program}
        wanted.update(self._kernel.programs())
        if self._follow:
            wanted.update(FOLLOW_PROGRAMS)
        spec = LoadSpec(
            wanted, len(configs), len(self._plan_events), ring_size,
            [name for name in SHRINKABLE if not used[name]],
            settings(follow=self._follow,
                     aggregates=any(_ACTION.unpack_from(config)[0] for config in configs),
                     filters=any(_NPREDICATES.unpack_from(config)[0] for config in configs)))
        obj = take(spec) or load_object(spec)
        try:
            self.cpus = int(obj.lib.num_possible_cpus())
            _log.info("BPF programs loaded: %s", ", ".join(sorted(wanted)))
            probes = obj.map("probes")
            for config_id, config in enumerate(configs):
                probes.update(_KEY.pack(config_id), config)
            self._kernel.configure(obj)
        except BaseException:
            obj.close()
            raise
        return obj

    @property
    def ring(self) -> RingMap:
        assert self._ring is not None
        return self._ring

    def follow(self, pid: int) -> None:
        """Add a process to the followed set, traced from its next exec on (its children
        join as they are forked)."""
        self._object.map("followed").update(_KEY.pack(pid), bytes([_FOLLOW_ARMED]))

    def attach_all(self, target: TraceTarget) -> None:
        """Plant every probe. A uprobe the kernel cannot place (an instruction it cannot probe)
        is left out and listed in :attr:`unplaced`; any other failure undoes everything."""
        if target.command_pid is not None and self.follow_at_exec:
            self._attach_command(target.command_pid)
            return
        if target.command_pid is not None:
            if not self._follow:
                raise ValueError("this session was not created to follow a command")
            self.follow(target.command_pid)
        self.unplaced = []
        groups: dict[_Group, list[PlannedEvent]] = {}
        try:
            for event, (program, group) in zip(self._plan_events, self._programs, strict=True):
                if event.kind != "uprobe":
                    continue
                if group is not None:
                    groups.setdefault(group, []).append(event)
                    continue
                for pid in target.pids or (None,):
                    try:
                        self._attach_perf_event(event, self._object.program(program), pid)
                    except UnplaceableProbeError as error:
                        self.unplaced.append((event, str(error)))
                        break
            for (_path, retprobe, suffix), members in groups.items():
                name = ("rp_return_multi" if retprobe else "rp_entry_multi") + suffix
                program_fd = int(self._object.lib.program_fd(self._object.program(name)))
                for pid in target.pids or (0,):
                    self._attach_multi(program_fd, retprobe, members, pid)
                    _log.info("%d %s on a uprobe_multi link (%s) in %s%s: %s", len(members),
                              "uretprobes" if retprobe else "uprobes", name, members[0].path,
                              f" for pid {pid}" if pid else "",
                              ", ".join(f"{e.name} {e.file_offset:#x}" for e in members))
            self._links += self._kernel.attach(self._object, target)
            if self._follow:
                last = self._object.program(_FOLLOW_LAST)
                self._links.append(int(self._object.lib.program_attach(last)))
        except BaseException:
            self.detach()
            raise

    def _attach_command(self, pid: int) -> None:
        """Plant every uprobe on the command (stopped at its exec) and what it starts."""
        from .follow import CommandEvents

        command = CommandEvents(self._object.lib)
        self._commands.append(command)
        self.unplaced = []
        try:
            command.attach(self._plan_events,
                           [self._object.program(program) for program, _ in self._programs],
                           pid)
        except BaseException:
            self._links += command.links
            command.links = []
            self.detach()
            raise
        self._links += command.links
        command.links = []

    def _attach_multi(self, program_fd: int, retprobe: bool,
                      members: Sequence[PlannedEvent], pid: int) -> None:
        """One uprobe_multi link for ``members``; when the kernel refuses an offset in it,
        the set is halved until the offsets it refuses are found and left out."""
        first = members[0]
        try:
            fd = link_create_uprobe_multi(
                program_fd,
                first.kernel_path,
                [event.file_offset for event in members],
                cookies=[event.cookie for event in members],
                ref_ctr_offsets=[event.ref_ctr_offset for event in members],
                retprobe=retprobe,
                pid=pid,
            )
        except SysCallError as error:
            if error.errno not in _UNPLACEABLE:
                raise explain_uprobe_error(error, first.path, f"uprobes in {first.path}",
                                           pid) from None
            if len(members) == 1:
                self.unplaced.append((first, _UNPLACEABLE_REASON))
                return
            half = len(members) // 2
            self._attach_multi(program_fd, retprobe, members[:half], pid)
            self._attach_multi(program_fd, retprobe, members[half:], pid)
            return
        self._link_fds.append(fd)

    def _attach_perf_event(self, event: PlannedEvent, program: int, pid: int | None) -> None:
        """Plant one uprobe as a perf event and attach ``program`` to it with its cookie."""
        uprobe = UprobeEvent(
            event.kernel_path,
            event.file_offset,
            retprobe=event.retprobe,
            pid=pid,
            ref_ctr_offset=event.ref_ctr_offset,
            display_path=event.path,
        )
        try:
            link = self._object.lib.attach_perf_event(program, uprobe.fd, event.cookie)
        except SysCallError as error:
            uprobe.close()
            if error.errno == errno.EINVAL:  # no BPF cookies before Linux 5.15
                raise KernelFeatureError(
                    "the kernel refused to attach a BPF program with a cookie to a uprobe: "
                    "rawprobe's BPF backend needs Linux 5.15 or newer (try --backend tracefs)",
                    minimum_kernel="5.15",
                ) from None
            raise
        # The link now owns the perf event's descriptor; libbpf closes both on destroy.
        uprobe.detach()
        self._links.append(link)
        _log.info("%s on a perf event: %s %s:%#x%s", "uretprobe" if event.retprobe else "uprobe",
                  event.name, event.path, event.file_offset,
                  f" for pid {pid}" if pid is not None else "")

    # -- reading -----------------------------------------------------------------------------

    def wait(self, timeout: float | None) -> None:
        self.ring.wait(timeout)

    def watch(self, fd: int) -> None:
        self.ring.watch(fd)

    def fileno(self) -> int:
        return self.ring.fileno()

    def pending(self) -> bool:
        return self.ring.pending() > 0

    def read_batches(self) -> list[Batch]:
        ring = self.ring
        if 0 < ring.pending() < _SMALL_BATCH and self._busy:
            # A busy stream whose reader keeps catching up gets woken for every record or
            # two, and each small read costs as much as a big one: let a batch build up.
            time.sleep(_SETTLE_SECONDS)
        chunk = ring.read()
        self._busy = len(chunk) > 0
        if not chunk:
            return []
        batches, consumed = self._decoder.batches(chunk)
        ring.consume(consumed)
        if self._kernel.syscalls and (len(batches) > 1 or (batches and batches[0].count > 1)):
            events = [event for batch in batches for event in batch.events()]
            events.sort(key=_TIME)
            return [Batch(None, events)]
        return batches

    def read_records(self, sink: Callable[[memoryview], object]) -> int:
        ring = self.ring
        with ring.view() as view:
            size = committed(view)
            if size:
                sink(view[:size])
        ring.consume(size)
        return size

    def aggregate_cells(self, reset: bool) -> list[AggregateCell]:
        """The ``aggregates`` map's cells (per-CPU values merged: counts and sums added,
        minimums and maximums compared where a CPU counted something), and a cell per plain
        count: its hit counter less what its filter rejected (the program counts nothing else
        for it)."""
        aggregates = self._object.map("aggregates")
        key_size = abi.AGG_KEY.sizeof()
        value_size = _AGG_VALUE.size * self.cpus
        cells = []
        for key in aggregates.keys(key_size):
            # Read and emptied in one step, so no hit falls between two intervals.
            raw = aggregates.take(key, value_size) if reset else aggregates.get(key, value_size)
            if raw is None:
                continue
            event_id, stack_id, bucket = _AGG_KEY_HEAD.unpack_from(key)
            signed = self._plan_events[event_id].value_signed
            cells.append(AggregateCell(event_id, stack_id, bucket, key[_AGG_KEY_HEAD.size:],
                                       *_merge(raw, self.cpus, signed)))
        counters = self.counters()
        for event in self._plan_events:
            if event.tally:
                counter = counters[event.event_id]
                total = counter.hits - counter.filtered
                count = total - self._tally_taken.get(event.event_id, 0)
                if reset:
                    self._tally_taken[event.event_id] = total
                cells.append(AggregateCell(event.event_id, -1, 0, b"", count))
        return cells

    def open_spans(self) -> dict[int, int]:
        """Per span id, the entries of the ``spans`` map (spans started, not yet ended)."""
        if not any(event.role for event in self._plan_events):
            return {}
        spans = self._object.map("spans")
        result: dict[int, int] = {}
        for key in spans.keys(abi.SPAN_KEY.sizeof()):
            span_id = _KEY.unpack_from(key)[0]
            result[span_id] = result.get(span_id, 0) + 1
        return result

    def syscall_totals(self, reset: bool) -> list[SyscallTotal]:
        return self._kernel.totals(self._object, self.cpus, reset)

    def stack(self, stack_id: int) -> tuple[int, ...]:
        raw = self._object.map("stacks").get(_KEY.pack(stack_id), abi.STACK_DEPTH * 8)
        if raw is None:
            return ()
        addresses = struct.unpack(f"<{abi.STACK_DEPTH}Q", raw)
        return tuple(address for address in addresses if address)

    def stack_pid(self, stack_id: int) -> int | None:
        raw = self._object.map("stack_pids").get(_KEY.pack(stack_id), 4)
        return None if raw is None else int(_KEY.unpack(raw)[0])

    def counters(self) -> list[ProbeCounters]:
        """Per event id, what the programs counted (summed over CPUs)."""
        stats = self._object.map("stats")
        result = []
        size = _STATS.size
        for event_id in range(len(self._plan_events)):
            raw = stats.lookup(_KEY.pack(event_id), size * self.cpus)
            totals = [sum(column) for column in zip(*_STATS.iter_unpack(raw), strict=True)]
            result.append(ProbeCounters(*totals))
        return result

    # -- the end -----------------------------------------------------------------------------

    def detach(self) -> None:
        """Remove every uprobe (the programs stop writing records)."""
        _destroy_links(self._object.lib, self._links, self._link_fds, self._commands)

    def close(self) -> None:
        """Detach everything and free the object (idempotent)."""
        try:
            if self._links or self._link_fds or self._commands:
                self.detach()
        finally:
            if self._ring is not None:
                self._ring.close()
            if hasattr(self, "_object"):
                self._object.close()


def _merge(raw: bytes, cpus: int, signed: bool) -> tuple[int, int, int, int]:
    """(count, sum, min, max) over the CPUs' ``struct rp_agg_value`` (a sum as the kernel's
    64-bit addition leaves it; min and max compared as the program compared them)."""
    count = total = 0
    low: int | None = None
    high: int | None = None
    for cpu in range(cpus):
        n, cpu_sum, cpu_min, cpu_max = _AGG_VALUE.unpack_from(raw, cpu * _AGG_VALUE.size)
        if not n:
            continue
        if not signed:
            cpu_min, cpu_max = cpu_min & _U64, cpu_max & _U64
        count += n
        total += cpu_sum
        low = cpu_min if low is None else min(low, cpu_min)
        high = cpu_max if high is None else max(high, cpu_max)
    total &= _U64
    if signed and total >> 63:
        total -= 1 << 64
    return count, total, low or 0, high or 0


def _destroy_links(lib: Libbpf, links: list[int], link_fds: list[int],
                   commands: list[CommandEvents]) -> None:
    """Destroy every link, newest first, then a command's own uprobe events; a failure is
    logged and the rest still go."""
    pending, links[:] = list(links), []
    fds, link_fds[:] = list(link_fds), []
    followed, commands[:] = list(commands), []
    for fd in fds:
        os.close(fd)  # a uprobe_multi link: its uprobes go in one grace period
    for link in reversed(pending):
        try:
            lib.link_destroy(link)
        except SysCallError as error:
            _log.warning("detaching a probe failed: %s", error)
    for command in followed:
        command.close()

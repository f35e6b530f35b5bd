"""The BPF backend: one loaded object, its maps filled with probe configurations, and the
uprobes whose BPF programs write records into its ring buffer."""

from __future__ import annotations

import ctypes
import logging
import os
import struct
import weakref
from collections.abc import Sequence

from . import _bpfabi as abi
from ._backend import PlannedUprobe, ProbeCounters, TraceTarget
from ._errors import BpfObjectError, KernelFeatureError, SysCallError
from ._object import BpfObject, object_bytes
from ._records import Event, decode_records
from ._ringbuf import split_records
from ._ringmap import RingMap
from ._sys.libbpf import Libbpf, PerfEventOpts
from ._uprobe import UprobeEvent

__all__ = ["DEFAULT_RING_SIZE", "BpfSession"]

_LOG = logging.getLogger("rawprobe")
_KEY = struct.Struct("<I")
_STATS = struct.Struct("<QQQ")
_FOLLOW_ARMED = 2  # FOLLOW_ARMED in rawprobe.bpf.c
_FOLLOW_PROGRAMS = ("rp_fork", "rp_exec", "rp_exit")
_AGG_KEY_HEAD = struct.Struct("<Iiq")  # struct rp_agg_key up to its data
DEFAULT_RING_SIZE = 8 << 20


class BpfSession:
    """A loaded instance of rawprobe's BPF object, configured for a set of probes.

    Args:
        uprobes: The uprobes to plant, indexed by event id.
        configs: ``struct rp_probe`` bytes, indexed by configuration id.
        ring_size: Bytes of the ring buffer (a power of two, at least a page).
        follow: Record only processes in the followed set (see :meth:`follow`), and grow the
            set as they fork.
    """

    def __init__(
        self,
        uprobes: Sequence[PlannedUprobe],
        configs: Sequence[bytes],
        *,
        ring_size: int = DEFAULT_RING_SIZE,
        follow: bool = False,
    ) -> None:
        event_count = len(uprobes)
        self._uprobes = list(uprobes)
        self._layouts = [uprobe.layout for uprobe in uprobes]
        if ring_size < os.sysconf("SC_PAGE_SIZE") or ring_size & (ring_size - 1):
            raise ValueError(f"ring size {ring_size} is not a power of two of at least a page")
        self._follow = follow
        self._links: list[int] = []
        self._ring: RingMap | None = None
        want_sleepable = any(uprobe.reads_memory for uprobe in uprobes)
        try:
            self._object = self._load(configs, event_count, ring_size, want_sleepable)
            self.sleepable = want_sleepable
        except BpfObjectError:
            if not want_sleepable:
                raise
            # A kernel without sleepable uprobe programs or bpf_copy_from_user_str (6.12):
            # memory is then read without faulting pages in.
            _LOG.info("sleepable uprobe programs unavailable; reading memory without faults")
            self._object = self._load(configs, event_count, ring_size, False)
            self.sleepable = False
        obj = self._object
        try:
            if follow:
                for name in _FOLLOW_PROGRAMS:
                    self._links.append(int(obj.lib.program_attach(obj.program(name))))
            events = obj.map("events")
            self._ring = RingMap(events.fd, events.max_entries)
        except BaseException:
            self.close()
            raise
        self._entry = obj.program("rp_entry")
        self._return = obj.program("rp_return")
        self._entry_sleepable = obj.program("rp_entry_sleepable")
        self._return_sleepable = obj.program("rp_return_sleepable")
        self._event_count = event_count
        self._finalizer = weakref.finalize(self, _destroy_links, obj.lib, self._links)

    def _load(
        self, configs: Sequence[bytes], event_count: int, ring_size: int, sleepable: bool
    ) -> BpfObject:
        obj = BpfObject(object_bytes())
        try:
            self.cpus = int(obj.lib.num_possible_cpus())
            obj.map("probes").set_max_entries(max(1, len(configs)))
            obj.map("stats").set_max_entries(max(1, event_count))
            obj.map("scratch").set_max_entries(self.cpus * abi.MAX_NEST)
            obj.map("events").set_max_entries(ring_size)
            rodata = obj.rodata()
            # const volatile bool rp_follow is the object's only read-only global.
            rodata[0] = b"\x01" if self._follow else b"\x00"
            for name in _FOLLOW_PROGRAMS:
                obj.lib.program_set_autoload(obj.program(name), self._follow)
            for name in ("rp_entry_sleepable", "rp_return_sleepable"):
                obj.lib.program_set_autoload(obj.program(name), sleepable)
            obj.load()
            probes = obj.map("probes")
            for config_id, config in enumerate(configs):
                probes.update(_KEY.pack(config_id), config)
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
        if target.command_pid is not None:
            if not self._follow:
                raise ValueError("this session was not created to follow a command")
            self.follow(target.command_pid)
        try:
            for uprobe in self._uprobes:
                for pid in target.pids or (None,):
                    self.attach(uprobe, pid)
        except BaseException:
            self.detach()
            raise

    def wait(self, timeout: float | None) -> None:
        self.ring.wait(timeout)

    def watch(self, fd: int) -> None:
        self.ring.watch(fd)

    def pending(self) -> bool:
        return self.ring.pending() > 0

    def read(self) -> list[Event]:
        ring = self.ring
        chunk = ring.read()
        if not chunk:
            return []
        records, consumed = split_records(chunk)
        events = decode_records(chunk, records, self._layouts)
        ring.consume(consumed)
        return events

    def attach(self, uprobe: PlannedUprobe, pid: int | None = None) -> None:
        """Plant one uprobe and attach the matching program to it with its cookie.

        Args:
            uprobe: What to plant.
            pid: Only in this process (``None``: host-wide).
        """
        event = UprobeEvent(
            uprobe.path,
            uprobe.file_offset,
            retprobe=uprobe.retprobe,
            pid=pid,
            ref_ctr_offset=uprobe.ref_ctr_offset,
        )
        opts = PerfEventOpts(
            sz=ctypes.sizeof(PerfEventOpts),
            bpf_cookie=(uprobe.config_id << 32) | uprobe.event_id,
        )
        if self.sleepable and uprobe.reads_memory:
            program = self._return_sleepable if uprobe.retprobe else self._entry_sleepable
        else:
            program = self._return if uprobe.retprobe else self._entry
        try:
            link = self._object.lib.program_attach_perf_event_opts(
                program, event.fd, ctypes.byref(opts)
            )
        except SysCallError as error:
            event.close()
            if error.errno == 22:  # EINVAL: no BPF cookie support (Linux < 5.15)
                raise KernelFeatureError(
                    "the kernel refused to attach a BPF program with a cookie to a uprobe: "
                    "rawprobe's BPF backend needs Linux 5.15 or newer (try --backend tracefs)",
                    minimum_kernel="5.15",
                ) from None
            raise
        # The link now owns the perf event's descriptor; libbpf closes both on destroy.
        event.detach()
        self._links.append(int(link))

    def aggregate_cells(self, reset: bool) -> list[tuple[int, int, int, bytes, int]]:
        aggregates = self._object.map("aggregates")
        key_size = abi.AGG_KEY.sizeof()
        value_size = 8 * self.cpus
        cells = []
        for key in aggregates.keys(key_size):
            value = aggregates.get(key, value_size)
            if reset:
                aggregates.delete(key)
            if value is None:
                continue
            count = sum(struct.unpack(f"<{self.cpus}Q", value))
            event_id, stack_id, bucket = _AGG_KEY_HEAD.unpack_from(key)
            cells.append((event_id, stack_id, bucket, key[_AGG_KEY_HEAD.size :], count))
        return cells

    def stack(self, stack_id: int) -> tuple[int, ...]:
        raw = self._object.map("stacks").get(_KEY.pack(stack_id), abi.STACK_DEPTH * 8)
        if raw is None:
            return ()
        addresses = struct.unpack(f"<{abi.STACK_DEPTH}Q", raw)
        return tuple(address for address in addresses if address)

    def stack_pid(self, stack_id: int) -> int | None:
        raw = self._object.map("stack_pids").get(_KEY.pack(stack_id), 4)
        return None if raw is None else int(_KEY.unpack(raw)[0])

    def detach(self) -> None:
        """Remove every uprobe (the programs stop writing records)."""
        _destroy_links(self._object.lib, self._links)

    def counters(self) -> list[ProbeCounters]:
        """Per event id, what the programs counted (summed over CPUs)."""
        stats = self._object.map("stats")
        result = []
        size = _STATS.size
        for event_id in range(self._event_count):
            raw = stats.lookup(_KEY.pack(event_id), size * self.cpus)
            hits = filtered = lost = 0
            for cpu in range(self.cpus):
                h, f, lo = _STATS.unpack_from(raw, cpu * size)
                hits += h
                filtered += f
                lost += lo
            result.append(ProbeCounters(hits, filtered, lost))
        return result

    def close(self) -> None:
        """Detach everything and free the object (idempotent)."""
        try:
            if self._links:
                self.detach()
        finally:
            if self._ring is not None:
                self._ring.close()
            if hasattr(self, "_object"):
                self._object.close()


def _destroy_links(lib: Libbpf, links: list[int]) -> None:
    """Destroy every link, newest first; a failure is logged and the rest still go."""
    pending, links[:] = list(links), []
    for link in reversed(pending):
        try:
            lib.link_destroy(link)
        except SysCallError as error:
            _LOG.warning("detaching a probe failed: %s", error)

"""What the Tracer asks of a backend: plant uprobes for a target, hand over events, count.

Two backends implement :class:`Session`: BPF (``_bpfbackend``: generic BPF programs write
records into a BPF ring buffer) and tracefs (``_tracefs``: the kernel's own uprobe_events, read
through perf ring buffers). The Tracer parses, resolves and lays out probes once; a session
only plants them and turns what the kernel writes into :class:`~rawprobe._plan.events.Event`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from .._probe.fetchargs import FetchArg, UsdtArgument
from .abi import COOKIE_TALLY
from .events import Event, RecordLayout

__all__ = ["PlannedUprobe", "ProbeCounters", "Session", "TraceTarget"]


@dataclass(frozen=True)
class PlannedUprobe:
    """One uprobe to plant.

    Attributes:
        event_id: Index of the event, dense from 0 (the BPF cookie's low half).
        config_id: Index of its BPF configuration (the cookie's high half); probes with the
            same fetch program share one.
        path: The file to probe; ``file_offset`` where.
        retprobe: A return probe.
        ref_ctr_offset: A USDT semaphore's file offset, or 0.
        fetchargs: The probe's fetch-args as parsed (a backend may render them again).
        layout: Names, types and the record layout of the event.
        reads_memory: Whether the probe dereferences user memory.
        tally_only: The probe only counts its hits (no fields, no filter, no record).
        usdt_args: A USDT probe's argument specs (``$argN`` reads them), else ``None``.
    """

    event_id: int
    config_id: int
    path: str
    file_offset: int
    retprobe: bool
    ref_ctr_offset: int
    fetchargs: tuple[FetchArg, ...]
    layout: RecordLayout
    reads_memory: bool = False
    tally_only: bool = False
    usdt_args: tuple[UsdtArgument, ...] | None = None


    @property
    def cookie(self) -> int:
        """The BPF cookie: the event id, and the configuration id (RP_COOKIE_TALLY set when
        the probe only counts, so the program need not look its configuration up)."""
        config = self.config_id | (COOKIE_TALLY if self.tally_only else 0)
        return (config << 32) | self.event_id


@dataclass(frozen=True)
class TraceTarget:
    """Which processes to trace.

    Attributes:
        pids: Exactly these processes (all their threads).
        command_pid: This process and every process it forks from now on.

    With neither, every process on the host that runs the probed code.
    """

    pids: tuple[int, ...] = ()
    command_pid: int | None = None


@dataclass(frozen=True)
class ProbeCounters:
    """What the kernel side counted for one event id."""

    hits: int = 0
    filtered: int = 0
    lost: int = 0


class Session(Protocol):
    """A backend's run: created with the planned uprobes, then attached, read, closed."""

    def attach_all(self, target: TraceTarget) -> None:
        """Plant every uprobe for ``target``; on failure nothing stays planted."""

    def wait(self, timeout: float | None) -> None:
        """Block until events may be ready, a watched descriptor is readable, or timeout."""

    def watch(self, fd: int) -> None:
        """Also wake :meth:`wait` when ``fd`` becomes readable (a pidfd, at process exit)."""

    def fileno(self) -> int:
        """A descriptor that turns readable when :meth:`wait` would return."""

    def pending(self) -> bool:
        """Whether records are waiting to be read."""

    def read(self) -> list[Event]:
        """Every event ready now, decoded, in the order written."""

    def detach(self) -> None:
        """Remove every uprobe; events already recorded stay readable."""

    def counters(self) -> list[ProbeCounters]:
        """Per event id, hits, filtered and lost records (as far as the backend knows)."""

    def aggregate_cells(self, reset: bool) -> list[tuple[int, int, int, bytes, int]]:
        """The aggregates: ``(event_id, stack_id, bucket, key bytes, count)`` per cell,
        emptied after reading when ``reset``."""

    def stack(self, stack_id: int) -> tuple[int, ...]:
        """The return addresses of a recorded user stack, innermost first."""

    def stack_pid(self, stack_id: int) -> int | None:
        """A process the stack was seen in (to symbolize its addresses)."""

    def close(self) -> None:
        """Detach and free everything (idempotent)."""

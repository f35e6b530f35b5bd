"""The exporter: tracers that aggregate in the kernel, read at scrape time, re-planted when a
probed file is replaced.

Each probe word of each metric runs in a :class:`~rawprobe.Tracer` of its own (a *unit*), so a
file replaced on disk costs one re-plant of the words that probe it, and nothing else is
counted twice or missed meanwhile. A scrape reads every unit's BPF maps
(:meth:`Tracer.aggregates`); no event reaches Python.

Replaced files (a package upgrade renames a new file over the old; a build writes a new
binary): :meth:`Exporter.check`, called every few seconds, compares each probed path's
identity (device, inode, size, mtime, ctime) with the file the tracer opened. Once a new
identity has been seen twice in a row (a file being written is not planted half-way), the
word is planned again in a new tracer. The old tracer stays planted while any process still
maps the old file (after a libc upgrade, every process started before it): the old inode
counts their calls, the new one the rest, and the metrics add both. Once no process maps it,
what the old tracer counted is carried over and its probes are removed, so counters never go
backwards. A re-plant that fails (the new version lacks the function, say) is logged and
counted in ``rawprobe_errors_total``; the old probes stay until the file changes again.

A probed process that exits changes nothing: the probes are on the file, host-wide.
"""

from __future__ import annotations

import logging
import os
import platform
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import Metric

from .._errors import RawprobeError, UsageError
from .._host.procmaps import read_maps
from .._output.tables import CountTable, HistogramSet
from .._plan.session import ProbeCounters
from .._tracer import Tracer
from .._version import __version__
from .config import DEFAULT_MAX_LABEL_VALUES, MetricSpec
from .metrics import MetricShape, health_families

__all__ = ["Exporter"]

log = logging.getLogger("rawprobe.serve")

FileKey = tuple[int, int, int, int, int]
_RING_SIZE = 1 << 16  # aggregations stream nothing: the smallest ring the session accepts


def _identity(path: str) -> FileKey | None:
    """What ``TargetFile.key`` would be for ``path`` now; None when it is not there."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


@dataclass
class _Reading:
    """What one unit counted: aggregation cells and per-event probe counters."""

    counts: dict[tuple[str, Any], int] = field(default_factory=dict)
    buckets: dict[tuple[str, Any], dict[int, int]] = field(default_factory=dict)
    probes: dict[str, tuple[int, int, int]] = field(default_factory=dict)

    def add(self, other: _Reading) -> None:
        for key, count in other.counts.items():
            self.counts[key] = self.counts.get(key, 0) + count
        for key, cells in other.buckets.items():
            slot = self.buckets.setdefault(key, {})
            for bucket, count in cells.items():
                slot[bucket] = slot.get(bucket, 0) + count
        for event, numbers in other.probes.items():
            seen = self.probes.get(event, (0, 0, 0))
            self.probes[event] = (seen[0] + numbers[0], seen[1] + numbers[1],
                                  seen[2] + numbers[2])


def _read(tracer: Tracer) -> _Reading:
    reading = _Reading()
    result = tracer.aggregates()
    if isinstance(result, CountTable):
        for row in result.rows:
            key = (row.event, row.key)
            reading.counts[key] = reading.counts.get(key, 0) + row.count
    else:
        assert isinstance(result, HistogramSet)
        for histogram in result:
            slot = reading.buckets.setdefault((histogram.event, histogram.key), {})
            for bucket, (_low, _high, count) in enumerate(histogram.buckets,
                                                          start=histogram.first_bucket):
                if count:
                    slot[bucket] = slot.get(bucket, 0) + count
    counters: dict[str, ProbeCounters] = tracer.stats().probes
    reading.probes = {event: (c.hits, c.filtered, c.lost) for event, c in counters.items()}
    return reading


class _Unit:
    """One probe word of one metric: its tracer, the files it probes, and what earlier
    tracers of this word counted before they were replaced."""

    def __init__(self, spec: MetricSpec, word: str, tracer: Tracer) -> None:
        self.spec = spec
        self.word = word
        self.tracer = tracer
        self.carried = _Reading()
        self.last = _Reading()  # the last reading that worked, served if a read fails
        self.candidate: dict[str, FileKey | None] | None = None
        self.failed: dict[str, FileKey | None] | None = None
        self.retired: list[Tracer] = []  # replaced, planted while the old files are mapped

    @property
    def targets(self) -> dict[str, FileKey]:
        plan = self.tracer.plan
        return dict(plan.targets) if plan is not None else {}

    @property
    def planted(self) -> int:
        plans = [tracer.plan for tracer in [self.tracer, *self.retired]]
        return sum(len(plan.events) for plan in plans if plan is not None)

    def read(self) -> _Reading:
        reading = _Reading()
        reading.add(self.carried)
        for tracer in [self.tracer, *self.retired]:
            reading.add(_read(tracer))
        self.last = reading
        return reading


class Exporter:
    """Aggregations as Prometheus metrics: a ``prometheus_client`` collector.

    Register it in a ``CollectorRegistry``; every scrape calls :meth:`collect`, which reads
    the BPF maps. Call :meth:`check` every few seconds to follow replaced files. Scrapes may
    come from another thread (the HTTP server's): a lock orders them with re-plants.

    Args:
        metrics: What to measure.
        max_label_values: Values of a ``--by`` key kept as their own series, per metric.
        force: Plant probes rawprobe would otherwise refuse as risky.
        string_size: Bytes copied per string (a string ``--by`` key).

    Raises (from :meth:`start`):
        UsageError: A probe word, filter or name is wrong (nothing stays planted).
    """

    def __init__(self, metrics: Sequence[MetricSpec], *,
                 max_label_values: int = DEFAULT_MAX_LABEL_VALUES, force: bool = False,
                 string_size: int | None = None) -> None:
        if not metrics:
            raise UsageError("no metrics to serve: give --count or --hist with probe words, "
                             "or a --config file with [[metric]] tables")
        self.metrics = list(metrics)
        self.max_label_values = max_label_values
        self.force = force
        self.string_size = string_size
        self.shapes: list[MetricShape] = []
        self._units: list[tuple[MetricShape, _Unit]] = []
        self._errors: dict[tuple[str, str], int] = {}
        self._replants: dict[str, int] = {}
        self._lock = threading.Lock()
        self.warnings: list[str] = []

    # -- planting ---------------------------------------------------------------------------

    def _tracer(self, spec: MetricSpec, word: str) -> Tracer:
        """A started tracer for one word of a metric (closed again if anything fails)."""
        options: dict[str, Any] = {}
        if self.string_size is not None:
            options["string_size"] = self.string_size
        tracer = Tracer(backend="bpf", aggregation=spec.aggregation, force=self.force,
                        ring_size=max(_RING_SIZE, os.sysconf("SC_PAGE_SIZE")), **options)
        try:
            tracer.add(word, filter=spec.filter)
            tracer.start()
        except BaseException:
            tracer.close()
            raise
        return tracer

    def start(self) -> None:
        """Plant every metric's probes; on failure nothing stays planted."""
        names: dict[str, MetricSpec] = {}
        try:
            for spec in self.metrics:
                units: list[_Unit] = []
                try:
                    for word in spec.probes:
                        units.append(_Unit(spec, word, self._tracer(spec, word)))
                    name = spec.family_name(
                        [event for unit in units for event in unit.tracer.event_names()])
                    if name in names:
                        raise UsageError(
                            f"two metrics are named {name} ({names[name].describe()} and "
                            f"{spec.describe()}): name one of them (--name NAME)")
                except BaseException:
                    for unit in units:
                        unit.tracer.close()
                    raise
                names[name] = spec
                shape = MetricShape(spec, name, self.max_label_values)
                self.shapes.append(shape)
                self._units += [(shape, unit) for unit in units]
                self.warnings += [f"{unit.word}: {text}" for unit in units
                                  for text in unit.tracer.warnings]
        except BaseException:
            self.close()
            raise

    @property
    def planted(self) -> int:
        """Uprobes planted now, over every metric."""
        return sum(unit.planted for _shape, unit in self._units)

    def check(self) -> None:
        """Re-plant the words whose files were replaced on disk, and remove the probes of
        replaced files no process maps any more (see the module's notes)."""
        for _shape, unit in self._units:
            for old in list(unit.retired):
                self._retire(unit, old)
        for shape, unit in self._units:
            targets = unit.targets
            now = {path: _identity(path) for path in targets}
            if now == targets:
                unit.candidate = None
                continue
            if now != unit.candidate:
                if unit.candidate is None:
                    gone = [path for path, key in now.items() if key is None]
                    log.info("%s: %s; re-planting once it settles", unit.word,
                             f"{gone[0]} is gone" if gone else "a probed file changed")
                unit.candidate = now  # settle: the same identity at the next look too
                continue
            if None in now.values() or now == unit.failed:
                continue
            self._replant(shape, unit, now)

    def _replant(self, shape: MetricShape, unit: _Unit,
                 now: dict[str, FileKey | None]) -> None:
        try:
            tracer = self._tracer(unit.spec, unit.word)
        except RawprobeError as error:
            unit.failed = now
            key = (shape.short_name, "plant")
            self._errors[key] = self._errors.get(key, 0) + 1
            log.error("%s: re-planting after the file changed failed (the old probes stay): "
                      "%s", unit.word, error)
            return
        with self._lock:
            unit.retired.append(unit.tracer)
            unit.tracer = tracer
            unit.candidate = unit.failed = None
        self._retire(unit, unit.retired[-1])
        self._replants[shape.short_name] = self._replants.get(shape.short_name, 0) + 1
        log.info("%s: re-planted in %s (%d uprobes)", unit.word, ", ".join(unit.targets),
                 unit.planted)

    def _retire(self, unit: _Unit, old: Tracer) -> None:
        """Remove a replaced tracer's probes once no process maps its files, keeping what it
        counted."""
        plan = old.plan
        files = {(key[0], key[1]) for _path, key in (plan.targets if plan else ())}
        if _mapped(files):
            return
        with self._lock:
            try:
                unit.carried.add(_read(old))
            except (RawprobeError, OSError) as error:
                log.warning("%s: the old probes' last counts could not be read: %s",
                            unit.word, error)
            unit.retired.remove(old)
            old.close()
        log.info("%s: no process maps the replaced file any more; its probes are removed",
                 unit.word)

    # -- scraping ---------------------------------------------------------------------------

    def describe(self) -> list[Metric]:
        """Nothing up front: reading the maps belongs to scrapes, not to registration."""
        return []

    def collect(self) -> Iterator[Metric]:
        """Every metric's families and the health families, read from the maps now."""
        with self._lock:
            families: list[Metric] = []
            probes: dict[str, dict[str, tuple[int, int, int]]] = {}
            planted: dict[str, int] = {}
            for shape in self.shapes:
                reading = _Reading()
                for owner, unit in self._units:
                    if owner is not shape:
                        continue
                    try:
                        reading.add(unit.read())
                    except (RawprobeError, OSError) as error:
                        key = (shape.short_name, "read")
                        self._errors[key] = self._errors.get(key, 0) + 1
                        log.error("%s: reading the aggregation failed: %s", unit.word, error)
                        reading.add(unit.last)
                    planted[shape.short_name] = planted.get(shape.short_name, 0) + unit.planted
                families.append(shape.counter(reading.counts) if shape.spec.hist is None
                                else shape.histogram(reading.buckets))
                probes[shape.short_name] = reading.probes
            families += health_families(self.shapes, probes, planted, self._errors,
                                        self._replants, _build_info())
        yield from families

    # -- lifetime ---------------------------------------------------------------------------

    def close(self) -> None:
        """Remove every probe (idempotent)."""
        with self._lock:
            units, self._units = self._units, []
            for _shape, unit in units:
                for tracer in [unit.tracer, *unit.retired]:
                    tracer.close()

    def __enter__(self) -> Exporter:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _mapped(files: set[tuple[int, int]]) -> bool:
    """Whether a process other than this one maps one of ``files`` (device, inode)."""
    wanted = {(f"{os.major(device):02x}:{os.minor(device):02x}", inode)
              for device, inode in files}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            mappings = read_maps(int(entry.name))
        except (OSError, RawprobeError):
            continue  # gone meanwhile, or not ours to read
        if any((m.device, m.inode) in wanted for m in mappings):
            return True
    return False


def _build_info() -> dict[str, str]:
    return {"version": __version__, "python": platform.python_version(),
            "kernel": platform.release()}

"""``rawprobe report``: a recording decoded, on any host.

The header holds the record layouts and the clock offset, the trailer the addresses the
recording host described: the report needs neither the traced processes nor their files, nor
the BPF object. Events come out in the order they were recorded, through the same decoder and
formatter a live run uses; ``--count`` and ``--hist`` aggregate them here, as the kernel would
have (the same bucket numbers).
"""

from __future__ import annotations

import mmap
import os

from .._bpf.records import Decoder
from .._errors import UsageError
from .._output.format import EventFormatter, WallClock
from .._plan.events import Batch, Event, RecordLayout
from .._symbols.symbolize import AddressResolver
from .fileformat import Header, Trailer, read_file

TYPE_CHECKING = False  # mypy treats this name as True; at run time it spares importing typing.
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

    from .._output.tables import CountTable, HistogramSet
    from .._probe.aggregations import HistSpec

__all__ = ["Recording"]

_SPAN = 16 << 20  # bytes of records decoded at a time


class _RecordedSymbols(AddressResolver):
    """Addresses as the recording host described them."""

    def __init__(self, symbols: dict[str, dict[str, str]]) -> None:
        super().__init__()
        self._symbols = symbols

    def remember(self, pid: int) -> None:
        pass  # the processes are not here: their addresses were described when recorded

    def describe(self, pid: int, address: int) -> str:
        return self._symbols.get(str(pid), {}).get(str(address)) or f"{address:#x}"


class Recording:
    """A file ``rawprobe record`` wrote, open for reading.

    Attributes:
        header: What the file says about the recording.
        trailer: Its accounting and described addresses (None: the recording did not end
            cleanly; the records are read up to the last whole one).
        layouts: The record layout of each event id.

    Raises:
        UsageError: The file cannot be read or is not a recording.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            with open(path, "rb") as file:
                size = os.fstat(file.fileno()).st_size
                self._map = mmap.mmap(file.fileno(), size, prot=mmap.PROT_READ) if size else None
        except OSError as error:
            raise UsageError(f"cannot read {path}: {error.strerror}") from None
        if self._map is None:
            raise UsageError(f"{path}: empty, not a rawprobe recording")
        self.header: Header
        self.trailer: Trailer | None
        self.header, self._records, self.trailer = read_file(memoryview(self._map), path)
        try:
            self.layouts = [RecordLayout.restore(state) for state in self.header.layouts]
        except (TypeError, ValueError) as error:
            raise UsageError(f"{path}: its record layouts are damaged ({error})") from None
        self.clock = WallClock()
        self.clock.offset_ns = int(self.header.clock_offset_ns)
        self.resolver = _RecordedSymbols(self.trailer.symbols if self.trailer else {})

    def formatter(self) -> EventFormatter:
        """A formatter that shows the recording's times and addresses."""
        return EventFormatter(clock=self.clock, resolver=self.resolver)

    def batches(self) -> Iterator[Batch]:
        """The recorded events in batches, in the order they were recorded."""
        decoder = Decoder(self.layouts)
        records = self._records
        position = 0
        while position < len(records):
            batches, consumed = decoder.batches(bytes(records[position:position + _SPAN]))
            if not consumed:
                break  # a record cut short: the recording did not end cleanly
            yield from batches
            position += consumed

    def events(self) -> Iterator[Event]:
        for batch in self.batches():
            yield from batch.events()

    def counts(self, by: str | None = None) -> CountTable:
        """Events per event name (and per ``by``: ``comm``, ``pid``, ``tid``, ``cpu`` or a
        field), as ``--count [--by]`` counts them."""
        from .._output.tables import Count, count_table

        self._check_key(by)
        counts: dict[tuple[str, Any], int] = {}
        for event in self.events():
            identity = (event.event, _key(event, by))
            counts[identity] = counts.get(identity, 0) + 1
        return count_table(Count(event, key, count) for (event, key), count in counts.items())

    def histograms(self, spec: HistSpec, by: str | None = None) -> HistogramSet:
        """A histogram of an integer field per event name (and ``by``), as ``--hist``
        buckets it (events without the field, or where it could not be read, are left out).
        """
        from .._output.tables import build_histograms
        from .._probe.aggregations import bucket_of

        self._check_key(by)
        if spec.is_latency:
            raise UsageError("report --hist latency: a recording has no latencies; record the "
                             "entry and return probes and compare their times")
        cells: dict[tuple[str, Any, int], int] = {}
        for event in self.events():
            names = event.layout.names
            if spec.field not in names:
                continue
            value = event.values[names.index(spec.field)]
            if not isinstance(value, int):
                continue
            identity = (event.event, _key(event, by), bucket_of(spec, value))
            cells[identity] = cells.get(identity, 0) + 1
        return build_histograms(spec, ((event, key, bucket, count, None)
                                       for (event, key, bucket), count in cells.items()))

    def _check_key(self, by: str | None) -> None:
        names = {name for layout in self.layouts for name in layout.names}
        if by is not None and by not in names | {"comm", "pid", "tid", "cpu"}:
            raise UsageError(f"--by {by}: no recorded event has such a field; choose one of "
                             + ", ".join([*sorted(names), "comm", "pid", "tid", "cpu"]))

    def close(self) -> None:
        self._records.release()
        if self._map is not None:
            self._map.close()
            self._map = None

    def __enter__(self) -> Recording:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _key(event: Event, by: str | None) -> Any:
    if by is None:
        return None
    if by in ("comm", "pid", "tid", "cpu"):
        return getattr(event, by)
    names = event.layout.names
    return event.values[names.index(by)] if by in names else None

"""``rawprobe record``: a tracer's records to a file as the kernel wrote them.

The reader decodes nothing: each wake-up it finds how far the ring holds whole committed
records (a few strided comparisons for a run of one probe's fixed-size records,
:func:`rawprobe._bpf.records.committed`), writes that span straight from the mapped ring
buffer to the file in one ``write``, and hands the space back. That keeps pace with a probe at
full rate where decoding and formatting each event would not (perf record does the same with
perf's buffers). The layouts go in the file's header, so ``rawprobe report`` decodes it later,
on any host.

Addresses (``symbol`` fields, stacks) are the one thing that cannot wait: they are described
through the processes' mappings, which are gone when the processes are. When the plan has such
events, the records of each span are framed (not formatted) to learn which processes to
remember, and the addresses are resolved when the recording ends, into the file's trailer.
"""

from __future__ import annotations

import os
import time

from .._bpf.records import Decoder
from .._errors import UsageError
from .._plan.events import Event
from .._version import __version__
from .fileformat import Header, Trailer, read_file, write_header, write_trailer

TYPE_CHECKING = False  # mypy treats this name as True; at run time it spares importing typing.
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    from .._tracer import Tracer

__all__ = ["Recorder"]


class Recorder:
    """Writes a tracer's records to a file.

    Args:
        tracer: A tracer with its probes added, not started, that streams (no aggregation).
        path: The file to write (created with mode 0600: records may hold strings read from
            other processes' memory; an existing file is replaced).
        probes: The probe words, kept in the header for the report to show.

    Raises:
        UsageError: The tracer aggregates, or the file cannot be written.
    """

    def __init__(self, tracer: Tracer, path: str, probes: Sequence[str] = ()) -> None:
        if tracer.aggregation is not None:
            raise UsageError("rawprobe record keeps every event: --count and --hist aggregate "
                             "in the kernel instead; record, then 'rawprobe report --count'")
        self.tracer = tracer
        self.path = path
        self.probes = list(probes)
        self.bytes = 0
        self._offset = 0
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                               0o600)
        except OSError as error:
            raise UsageError(f"cannot write {path}: {error.strerror}") from None
        self._addresses = False
        self._decoder: Decoder | None = None

    def start(self) -> None:
        """Plant the probes, and write the header."""
        tracer = self.tracer
        tracer.start()
        layouts = tracer.layouts
        self._addresses = any(layout.has_symbols or layout.has_stack for layout in layouts)
        if self._addresses:
            self._decoder = Decoder(layouts)
        target: dict[str, Any] = {"probes": self.probes}
        if tracer.command_pid is not None:
            target["command_pid"] = tracer.command_pid
        if tracer.pids:
            target["pids"] = list(tracer.pids)
        uname = os.uname()
        header = Header(
            layouts=[layout.state() for layout in layouts],
            events=[{"name": layout.event} for layout in layouts],
            clock_offset_ns=time.time_ns() - time.monotonic_ns(),
            machine=uname.machine, host=uname.nodename, kernel=uname.release,
            rawprobe=__version__, started_ns=time.time_ns(), target=target)
        self._offset = write_header(self._fd, header)

    def _write(self, records: memoryview) -> None:
        view = records
        while view:
            view = view[os.write(self._fd, view):]
        self.bytes += len(records)
        if self._decoder is not None:
            # Which processes to remember (their mappings describe the addresses later).
            batches, _consumed = self._decoder.batches(bytes(records))
            for pid in {row[1] for batch in batches for row in batch.rows()}:
                self.tracer.resolver.remember(pid)

    def poll(self, timeout: float | None) -> int:
        """Write the records ready, waiting up to ``timeout`` seconds for some; return how
        many bytes."""
        return self.tracer.read_records(self._write, timeout)

    def finish(self) -> None:
        """Detach the probes, write what is left, describe the addresses, write the trailer
        and close the file. The tracer's :meth:`~rawprobe.Tracer.stats` then has the run's
        accounting."""
        if self._fd < 0:
            return
        try:
            if self.tracer.started:
                self.tracer.read_records(self._write, final=True)
            stats = self.tracer.stats()
            summary: dict[str, Any] = {
                "hits": stats.hits, "lost": stats.lost, "filtered": stats.filtered,
                "bytes": self.bytes,
                "probes": {name: {"hits": c.hits, "lost": c.lost, "filtered": c.filtered}
                           for name, c in stats.probes.items()},
            }
            symbols = self._symbols() if self._addresses else {}
            write_trailer(self._fd, self._offset + self.bytes,
                          Trailer(summary, symbols, time.time_ns()))
        finally:
            os.close(self._fd)
            self._fd = -1

    def _symbols(self) -> dict[str, dict[str, str]]:
        """Every address the recorded events carry, described (``pid -> address -> text``)."""
        with open(self.path, "rb") as file:
            _header, records, _trailer = read_file(file.read(), self.path)
        decoder = Decoder(self.tracer.layouts)
        describe = self.tracer.resolver.describe
        described: dict[str, dict[str, str]] = {}
        position = 0
        while position < len(records):
            batches, consumed = decoder.batches(bytes(records[position:position + (16 << 20)]))
            if not consumed:
                break
            position += consumed
            for batch in batches:
                for event in batch.events():
                    for address in _addresses(event):
                        table = described.setdefault(str(event.pid), {})
                        if str(address) not in table:
                            table[str(address)] = describe(event.pid, address)
        return described

    def close(self) -> None:
        """Close the file without a trailer (the report reads what was written)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _addresses(event: Event) -> list[int]:
    layout = event.layout
    found = list(event.stack or ())
    for field, value in zip(layout.fields, event.values, strict=True):
        if field.type.kind != "symbol" or value is None:
            continue
        found += list(value) if isinstance(value, tuple) else [value]
    return [address for address in found if isinstance(address, int)]

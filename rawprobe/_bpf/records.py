"""Framing the BPF ring buffer's records into batches of events: the reader's hot path.

The ring buffer's framing (kernel/bpf/ringbuf.c, Documentation/bpf/ringbuf.rst): records
follow each other from the consumer position, each an 8-byte header (``u32 len``,
``u32 pg_off``) and ``len`` bytes padded to a multiple of 8; two bits of ``len`` are flags,
BUSY while the producer still writes the record (the reader stops there) and DISCARD for a
record it dropped (the reader skips it).

A stream is mostly runs of records of one probe, all the same length: every record of a
probe that fetches only integers has the same size. Such a run is found with a few strided
comparisons over the header words (same framing word, same event id, no fault bits), never
record by record, and becomes one :class:`~rawprobe._plan.events.Batch` that holds the bytes
and decodes them with one ``struct.iter_unpack`` (or hands out columns as strided views).
Everything else (strings, stacks, faults, records of several probes interleaved) is decoded
record by record into events. All of it works on plain bytes: it is tested and measured with
no kernel involved.
"""

from __future__ import annotations

import struct

from .._plan.events import Batch, RecordLayout, no_collection

TYPE_CHECKING = False  # mypy treats this name as True; at run time it spares importing typing.
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from .._plan.events import Event

__all__ = ["BUSY_BIT", "DISCARD_BIT", "HEADER_SIZE", "LEN_MASK", "Decoder", "committed"]

BUSY_BIT = 1 << 31
DISCARD_BIT = 1 << 30
HEADER_SIZE = 8
LEN_MASK = DISCARD_BIT - 1
# Where the record header's members are, in 32-bit words from the start of a framed record.
_EVENT_ID_WORD = (HEADER_SIZE + 16) // 4  # struct rp_header.event_id
_FAULTS_WORD = (HEADER_SIZE + 24) // 4  # struct rp_header.faults
_ZERO = bytes(4)
# Runs shorter than this are decoded record by record (a run costs a few comparisons more).
_MIN_RUN = 4


class Decoder:
    """Decodes records of a fixed set of layouts (indexed by event id), with what each needs
    looked up once instead of per record."""

    def __init__(self, layouts: Sequence[RecordLayout | None]) -> None:
        self.table = [
            None if layout is None
            else (layout.unpack_record, layout.event_class, layout.plain, layout)
            for layout in layouts
        ]

    def decode_chunk(self, chunk: bytes) -> tuple[list[Event], int]:
        """Frame and decode a chunk copied from the ring buffer into events.

        Returns:
            The events, in the ring's order, and how many bytes of ``chunk`` were consumed.
        """
        batches, consumed = self.batches(chunk)
        if len(batches) == 1:
            return batches[0].events(), consumed
        events: list[Event] = []
        for batch in batches:
            events += batch.events()
        return events, consumed

    def batches(self, chunk: bytes) -> tuple[list[Batch], int]:
        """Frame a chunk copied from the ring buffer into batches, in the ring's order.

        Returns:
            The batches, and how many bytes of ``chunk`` were consumed.
        """
        with no_collection():
            return self._batches(chunk)

    def _batches(self, chunk: bytes) -> tuple[list[Batch], int]:
        batches: list[Batch] = []
        singles: list[Event] = []
        append = singles.append
        table = self.table
        known = len(table)
        new = tuple.__new__
        end = len(chunk)
        words = memoryview(chunk)[: end & ~3].cast("I")
        position = 0
        while position + HEADER_SIZE <= end:
            header = words[position >> 2]
            if header & BUSY_BIT:
                break
            total = ((header & LEN_MASK) + HEADER_SIZE + 7) & ~7
            if position + total > end:
                break
            if header & DISCARD_BIT:
                position += total
                continue
            base = position + HEADER_SIZE
            event_id = words[(position >> 2) + _EVENT_ID_WORD]
            entry = table[event_id] if event_id < known else None
            if entry is None:
                position += total
                continue
            unpack, event_class, plain, layout = entry
            if plain:
                following = position + total
                if (following + total <= end and words[following >> 2] == header
                        and words[(following >> 2) + _EVENT_ID_WORD] == event_id
                        and not words[(position >> 2) + _FAULTS_WORD]):
                    count = _run_length(words, position, total, (end - position) // total,
                                        header, event_id)
                    if count >= _MIN_RUN:
                        if singles:
                            batches.append(Batch(None, singles))
                            singles = []
                            append = singles.append
                        batches.append(Batch.of_records(
                            layout, memoryview(chunk)[position:position + count * total],
                            total))
                        position += count * total
                        continue
                raw = unpack(chunk, base)
                append(new(event_class, raw) if not raw[5] else layout.slow_event(
                    raw, chunk, base))
            else:
                append(layout.slow_event(unpack(chunk, base), chunk, base))
            position += total
        if singles:
            batches.append(Batch(None, singles))
        return batches, position


def _run_length(words: memoryview, position: int, total: int, limit: int, header: int,
                event_id: int) -> int:
    """How many records from ``position`` (``total`` bytes each, at most ``limit``) have the
    framing word ``header``, the event id ``event_id`` and no fault bits: strided comparisons,
    then a binary search for where the run ends when it ends before ``limit``."""
    step = total >> 2
    first = position >> 2
    framing = struct.pack("<I", header)
    identity = struct.pack("<I", event_id)

    def same(count: int) -> bool:
        stop = first + count * step
        return (words[first:stop:step].tobytes() == framing * count
                and words[first + _EVENT_ID_WORD:stop + _EVENT_ID_WORD:step].tobytes()
                == identity * count
                and words[first + _FAULTS_WORD:stop + _FAULTS_WORD:step].tobytes()
                == _ZERO * count)

    return _longest(limit, same)


def _longest(limit: int, same: Callable[[int], bool]) -> int:
    """The longest run, at most ``limit`` records, for which ``same(count)`` holds (it holds
    for 1): all of it in one comparison, else a binary search for where it ends."""
    if same(limit):
        return limit
    low, high = 1, limit  # same(low) holds, same(high) does not
    while high - low > 1:
        middle = (low + high) // 2
        if same(middle):
            low = middle
        else:
            high = middle
    return low


def _framing_run(words: memoryview, position: int, total: int, limit: int, header: int) -> int:
    """How many records from ``position`` (``total`` bytes each, at most ``limit``) have the
    framing word ``header`` (whole records of one length, whatever their event)."""
    step = total >> 2
    first = position >> 2
    framing = struct.pack("<I", header)
    return _longest(limit, lambda count: words[first:first + count * step:step].tobytes()
                    == framing * count)


def committed(chunk: bytes | memoryview) -> int:
    """How many bytes from the start of ``chunk`` hold whole committed records (the reader
    may hand them on as they are: ``rawprobe record``). Runs of records of one length are
    stepped over with strided comparisons; nothing is decoded."""
    end = len(chunk)
    words = memoryview(chunk)[: end & ~3].cast("I")
    position = 0
    while position + HEADER_SIZE <= end:
        header = words[position >> 2]
        if header & BUSY_BIT:
            break
        total = ((header & LEN_MASK) + HEADER_SIZE + 7) & ~7
        if position + total > end:
            break
        following = position + total
        if following + total <= end and words[following >> 2] == header:
            position += total * _framing_run(words, position, total, (end - position) // total,
                                             header)
        else:
            position = following
    return position

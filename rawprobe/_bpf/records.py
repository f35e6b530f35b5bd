"""Decoding the BPF ring buffer's records into events: the reader's hot path.

The ring buffer's framing (kernel/bpf/ringbuf.c, Documentation/bpf/ringbuf.rst): records
follow each other from the consumer position, each an 8-byte header (``u32 len``,
``u32 pg_off``) and ``len`` bytes padded to a multiple of 8; two bits of ``len`` are flags,
BUSY while the producer still writes the record (the reader stops there) and DISCARD for a
record it dropped (the reader skips it). :meth:`Decoder.decode_chunk` frames a chunk copied
from the ring and decodes each record with one struct unpack, on plain bytes: it is tested and
measured with no kernel involved.
"""

from __future__ import annotations

from collections.abc import Sequence

from .._plan.events import Event, RecordLayout

__all__ = ["BUSY_BIT", "DISCARD_BIT", "HEADER_SIZE", "LEN_MASK", "Decoder"]

BUSY_BIT = 1 << 31
DISCARD_BIT = 1 << 30
HEADER_SIZE = 8
LEN_MASK = DISCARD_BIT - 1
_EVENT_ID_OFFSET = 16  # struct rp_header.event_id


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
        """Frame and decode a chunk copied from the ring buffer in one pass.

        Framing and decoding in one pass, the reader's hot path (a property test holds the
        framing to an independent model of the ring's rules).

        Returns:
            The events, and how many bytes of ``chunk`` were consumed.
        """
        events: list[Event] = []
        append = events.append
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
            if not header & DISCARD_BIT:
                base = position + HEADER_SIZE
                event_id = words[(base + _EVENT_ID_OFFSET) >> 2]
                entry = table[event_id] if event_id < known else None
                if entry is not None:
                    unpack, event_class, plain, layout = entry
                    raw = unpack(chunk, base)
                    if plain and not raw[5]:
                        append(new(event_class, raw))
                    else:
                        append(layout.slow_event(raw, chunk, base))
            position += total
        return events, position

"""The BPF ring buffer's record framing, on plain bytes (no kernel, no mmap).

A BPF ring buffer (kernel/bpf/ringbuf.c, Documentation/bpf/ringbuf.rst) is a power-of-two data
area between a consumer position and a producer position, both ever-increasing 64-bit byte
counts. Each record is an 8-byte header (``u32 len``, ``u32 pg_off``) followed by ``len`` bytes,
padded to a multiple of 8. Two bits of ``len`` are flags: BUSY while the producer still writes
the record (the reader must stop there), DISCARD for a record the producer dropped (the reader
skips it). The I/O side (``_ringmap``) copies the bytes between the two positions out of the
mapping; everything here works on that copy.
"""

from __future__ import annotations

__all__ = ["BUSY_BIT", "DISCARD_BIT", "HEADER_SIZE", "LEN_MASK", "split_records"]

BUSY_BIT = 1 << 31
DISCARD_BIT = 1 << 30
HEADER_SIZE = 8
LEN_MASK = DISCARD_BIT - 1


def split_records(chunk: bytes | memoryview) -> tuple[list[tuple[int, int]], int]:
    """Find the committed records in ``chunk``, which starts at the consumer position.

    Args:
        chunk: The bytes from the consumer position up to the producer position.

    Returns:
        ``(records, consumed)``: each record as ``(offset of its data in chunk, length)``, in
        order, without discarded ones; and how many bytes of ``chunk`` they (and discarded
        records) take, i.e. how far the consumer position may advance. Reading stops at the
        first record still BUSY, or at one that extends past the end of ``chunk``.
    """
    records: list[tuple[int, int]] = []
    append = records.append
    end = len(chunk)
    # Headers are 8-byte aligned: read them as 32-bit words (faster than struct per record).
    words = memoryview(chunk)[: end & ~3].cast("I")
    position = 0
    while position + HEADER_SIZE <= end:
        header = words[position >> 2]
        if header & BUSY_BIT:
            break
        length = header & LEN_MASK
        total = (length + HEADER_SIZE + 7) & ~7
        if position + total > end:
            break
        if not header & DISCARD_BIT:
            append((position + HEADER_SIZE, length))
        position += total
    return records, position

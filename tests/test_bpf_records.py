"""The BPF ring buffer's framing, as the hot path does it: committed, busy, discarded and
partial records, on plain bytes (the rules of kernel/bpf/ringbuf.c, modelled independently
here)."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from rawprobe._bpf.records import BUSY_BIT, DISCARD_BIT, HEADER_SIZE, Decoder
from rawprobe._plan.compile import compile_fetchargs
from rawprobe._plan.events import RecordLayout
from rawprobe._probe.words import parse_probe

LAYOUT = RecordLayout("f", compile_fetchargs(parse_probe("p:./x:f").fetchargs))
_RP_HEADER = struct.Struct("<QIIII")  # ts_ns, pid, tid, event_id, cpu (struct rp_header)


def record(tag: int, flags: int = 0, extra: int = 0) -> bytes:
    """A framed record of event 0 whose timestamp is ``tag``, ``extra`` bytes longer."""
    payload = bytearray(LAYOUT.fixed_size + extra)
    _RP_HEADER.pack_into(payload, 0, tag, 1, 1, 0, 0)
    header = struct.pack("<II", len(payload) | flags, 0)
    return header + bytes(payload) + b"\0" * (-(len(payload) + HEADER_SIZE) % 8)


def frame(chunk: bytes) -> tuple[list[int], int]:
    """The model: tags of the committed records, and how far the consumer may go."""
    tags, position = [], 0
    while position + HEADER_SIZE <= len(chunk):
        length, _page = struct.unpack_from("<II", chunk, position)
        if length & BUSY_BIT:
            break
        total = HEADER_SIZE + ((length & ~(BUSY_BIT | DISCARD_BIT)) + 7) // 8 * 8
        if position + total > len(chunk):
            break
        if not length & DISCARD_BIT:
            tags.append(_RP_HEADER.unpack_from(chunk, position + HEADER_SIZE)[0])
        position += total
    return tags, position


def decode(chunk: bytes) -> tuple[list[int], int]:
    events, consumed = Decoder([LAYOUT]).decode_chunk(chunk)
    return [event.ts_ns for event in events], consumed


def test_committed_records_in_order() -> None:
    chunk = record(1) + record(2, extra=3) + record(3)
    assert decode(chunk) == ([1, 2, 3], len(chunk))


def test_stops_at_busy_record() -> None:
    chunk = record(1) + record(2, BUSY_BIT) + record(3)
    assert decode(chunk) == ([1], len(record(1)))  # the consumer must not pass it


def test_skips_discarded_records_but_consumes_them() -> None:
    chunk = record(1) + record(2, DISCARD_BIT) + record(3)
    assert decode(chunk) == ([1, 3], len(chunk))


def test_partial_record_is_left_for_later() -> None:
    whole = record(1) + record(2, extra=9)
    assert decode(whole[:-3]) == ([1], len(record(1)))
    assert decode(whole[:4]) == ([], 0)


def test_unknown_event_ids_are_skipped() -> None:
    chunk = bytearray(record(1) + record(2))
    struct.pack_into("<I", chunk, HEADER_SIZE + 16, 7)  # event id 7: not planned
    assert decode(bytes(chunk)) == ([2], len(chunk))


@given(st.lists(st.tuples(st.integers(0, 2**40), st.sampled_from([0, DISCARD_BIT, BUSY_BIT]),
                          st.integers(0, 20)), max_size=12), st.integers(0, 40))
def test_framing_agrees_with_the_model(items: list[tuple[int, int, int]], cut: int) -> None:
    chunk = b"".join(record(tag, flags, extra) for tag, flags, extra in items)
    chunk = chunk[: max(0, len(chunk) - cut)]
    assert decode(chunk) == frame(chunk)

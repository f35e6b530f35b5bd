"""The BPF ring buffer's framing, as the hot path does it: committed, busy, discarded and
partial records, on plain bytes (the rules of kernel/bpf/ringbuf.c, modelled independently
here)."""

from __future__ import annotations

import struct
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from rawprobe._bpf.records import BUSY_BIT, DISCARD_BIT, HEADER_SIZE, Decoder, committed
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


# Records of two probes fetching two integers each: runs of one probe's fixed-size records
# become batches of bytes, decoded all at once; the rest is decoded record by record.
TWO = [RecordLayout(name, compile_fetchargs(parse_probe(f"p:./x:{name} a=%di:s64 b=%si:u32")
                                            .fetchargs)) for name in ("f", "g")]


def two_ints(event_id: int, tag: int, faults: int = 0, flags: int = 0) -> bytes:
    layout = TWO[event_id]
    payload = bytearray(layout.fixed_size)
    struct.pack_into("<QIIIIII16s", payload, 0, tag, 100 + event_id, 200, event_id, 1, faults,
                     0, b"comm%d" % event_id)
    struct.pack_into("<qI", payload, 48, -tag, tag & 0xFFFFFFFF)
    header = struct.pack("<II", len(payload) | flags, 0)
    return header + bytes(payload) + b"\0" * (-(len(payload) + HEADER_SIZE) % 8)


@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 2**40), st.booleans(),
                          st.sampled_from([0, 0, 0, DISCARD_BIT, BUSY_BIT])),
                max_size=40), st.integers(0, 40))
def test_batches_decode_what_records_say(items: list[tuple[int, int, bool, int]],
                                         cut: int) -> None:
    chunk = b"".join(two_ints(event_id, tag, 1 if fault else 0, flags)
                     for event_id, tag, fault, flags in items)
    chunk = chunk[: max(0, len(chunk) - cut)]
    batches, consumed = Decoder(TWO).batches(chunk)
    expected: list[tuple[str, int, Any]] = []
    position = 0
    for event_id, tag, fault, flags in items:
        size = len(two_ints(event_id, tag))
        if position + size > len(chunk) or flags & BUSY_BIT:
            break
        position += size
        if not flags & DISCARD_BIT:
            expected.append((TWO[event_id].event, tag, None if fault else (-tag, tag & 0xFFFFFFFF)))
    assert consumed == position
    got = [(e.event, e.ts_ns, None if e.faults else e.values)
           for batch in batches for e in batch.events()]
    assert got == expected
    assert committed(chunk) == consumed
    for batch in batches:
        if batch.records is None:
            continue
        assert batch.layout is not None and batch.count >= 4
        events = batch.events()
        columns = batch.columns()
        assert list(columns["ts_ns"]) == [e.ts_ns for e in events]
        assert list(columns["a"]) == [e.values[0] for e in events]
        assert list(columns["b"]) == [e.values[1] for e in events]
        assert columns["comm"] == [e.comm for e in events]
        assert list(columns["pid"]) == [e.pid for e in events]
        assert [tuple(row) for row in batch.rows()] == [tuple(e) for e in events]


def test_a_long_run_is_one_batch() -> None:
    chunk = b"".join(two_ints(0, tag) for tag in range(1000)) + two_ints(1, 5)
    batches, consumed = Decoder(TWO).batches(chunk)
    assert [(b.layout.event if b.layout else None, b.count) for b in batches] == [
        ("f", 1000), (None, 1)]
    assert consumed == len(chunk)
    assert batches[0].column("b")[999] == 999


def test_batches_format_as_their_events_do() -> None:
    from rawprobe._output.format import EventFormatter

    hexed = RecordLayout("h", compile_fetchargs(parse_probe("p:./x:h a=%di:x64 b=%si:s32")
                                                .fetchargs))
    chunk = b"".join(two_ints(0, 10**9 * 7 + tag) for tag in range(50))
    formatter = EventFormatter()
    for layouts in (TWO, [hexed]):
        (batch,), _consumed = Decoder(layouts).batches(chunk)
        assert batch.records is not None
        for as_json in (False, True):
            assert formatter.batch_lines(batch, as_json) == formatter.lines(batch.events(),
                                                                            as_json)
            assert formatter.batch_lines(batch, as_json, 7) == formatter.lines(
                batch.events()[:7], as_json)

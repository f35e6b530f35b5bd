"""Ring-buffer record framing on plain bytes: committed, busy, discarded, partial records."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from rawprobe._bpf.ring import BUSY_BIT, DISCARD_BIT, HEADER_SIZE, split_records


def record(payload: bytes, flags: int = 0) -> bytes:
    header = struct.pack("<II", len(payload) | flags, 0)
    padded = payload + b"\0" * (-(len(payload) + HEADER_SIZE) % 8)
    return header + padded


def test_committed_records_in_order() -> None:
    chunk = record(b"abc") + record(b"x" * 8) + record(b"")
    records, consumed = split_records(chunk)
    assert [chunk[o : o + n] for o, n in records] == [b"abc", b"x" * 8, b""]
    assert consumed == len(chunk) == 16 + 16 + 8


def test_stops_at_busy_record() -> None:
    chunk = record(b"one") + record(b"two", BUSY_BIT) + record(b"three")
    records, consumed = split_records(chunk)
    assert [chunk[o : o + n] for o, n in records] == [b"one"]
    assert consumed == 16  # the consumer must not pass the busy record


def test_skips_discarded_records_but_consumes_them() -> None:
    chunk = record(b"keep") + record(b"drop", DISCARD_BIT) + record(b"keep2")
    records, consumed = split_records(chunk)
    assert [chunk[o : o + n] for o, n in records] == [b"keep", b"keep2"]
    assert consumed == len(chunk)


def test_partial_record_is_left_for_later() -> None:
    whole = record(b"first") + record(b"second-record")
    records, consumed = split_records(whole[:-3])
    assert len(records) == 1 and consumed == 16
    records, consumed = split_records(whole[:4])
    assert records == [] and consumed == 0


@given(st.lists(st.tuples(st.binary(max_size=40), st.sampled_from([0, DISCARD_BIT]))))
def test_any_sequence_round_trips(items: list[tuple[bytes, int]]) -> None:
    chunk = b"".join(record(payload, flags) for payload, flags in items)
    records, consumed = split_records(chunk)
    assert consumed == len(chunk)
    assert [chunk[o : o + n] for o, n in records] == [p for p, f in items if not f]

"""Record layouts: construct declarations, the compiled structs, and decoding."""

from __future__ import annotations

import struct

import construct as c
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rawprobe._bpf.records import Decoder
from rawprobe._plan import abi
from rawprobe._plan.compile import HEADER_SIZE, compile_fetchargs
from rawprobe._plan.events import RecordLayout
from rawprobe._probe.words import parse_probe


def layout_for(word: str, string_size: int = 64) -> RecordLayout:
    spec = parse_probe(word)
    compiled = compile_fetchargs(spec.fetchargs, word=word, retprobe=spec.retprobe,
                                 string_size=string_size)
    return RecordLayout("ev", compiled)


def header(event_id: int, faults: int = 0, truncated: int = 0, pid: int = 10) -> bytes:
    return bytes(abi.HEADER.build(dict(ts_ns=123, pid=pid, tid=pid + 1, event_id=event_id,
                                       cpu=1, faults=faults, truncated=truncated,
                                       comm=b"prog".ljust(16, b"\0"))))


WORDS = [
    "p:./x:f a=%di:s32 b=%si:u8 c=%dx:x16 d=%cx:s64",
    "p:./x:f a=+0(%di):u8[3] b=+4(%si):s16[2] c=%r8:u32",
    "p:./x:f s=+0(%di):string n=%si:s8 t=+0(%dx):string",
    "p:./x:f bf=+0(%di):b3@2/32 ch=+0(%si):char",
]


@pytest.mark.parametrize("word", WORDS)
@settings(max_examples=50, deadline=None)
@given(data=st.data())
def test_compiled_struct_agrees_with_construct(word: str, data: st.DataObject) -> None:
    layout = layout_for(word)
    size = layout.construct.sizeof()
    assert layout.struct.size == size
    raw = data.draw(st.binary(min_size=size, max_size=size))
    parsed = layout.construct.parse(raw)
    flat: list[int] = []
    for name in layout.names:
        value = parsed[name]
        flat.extend(value if isinstance(value, list) else [value])
    assert list(layout.struct.unpack(raw)) == flat


def test_header_struct_agrees_with_construct() -> None:
    raw = header(7, faults=5, truncated=2)
    parsed = abi.HEADER.parse(raw)
    assert abi.HEADER_STRUCT.unpack(raw) == (
        parsed.ts_ns, parsed.pid, parsed.tid, parsed.event_id, parsed.cpu, parsed.faults,
        parsed.truncated, parsed.comm,
    )


def framed(payload: bytes) -> bytes:
    padded = payload + b"\0" * (-(len(payload) + 8) % 8)
    return struct.pack("<II", len(payload), 0) + padded


def test_decode_integers_strings_and_faults() -> None:
    layout = layout_for("p:./x:f a=%di:s32 s=+0(%si):string b=+0(%dx):u8[2] k=\\\"const\"")
    fields = {f.name: f for f in layout.fields}
    fixed = bytearray(layout.fixed_size)
    fixed[: HEADER_SIZE] = header(0)
    struct.pack_into("<i", fixed, fields["a"].offset, -5)
    text = b"hello\0"
    struct.pack_into("<I", fixed, fields["s"].offset, (len(text) << 16) | layout.fixed_size)
    fixed[fields["b"].offset : fields["b"].offset + 2] = b"\x07\x09"
    record = bytes(fixed) + text
    chunk = framed(record)
    events, _consumed = Decoder([layout]).decode_chunk(chunk)
    assert len(events) == 1
    event = events[0]
    assert event.args == {"a": -5, "s": "hello", "b": (7, 9), "k": "const"}
    assert (event.pid, event.tid, event.cpu, event.comm, event.event) == (10, 11, 1, "prog", "ev")

    # The same record with the string's fault bit set: the value becomes None.
    faulty = bytearray(record)
    faulty[: HEADER_SIZE] = header(0, faults=1 << fields["s"].slots[0])
    chunk = framed(bytes(faulty))
    (event,), _consumed = Decoder([layout]).decode_chunk(chunk)
    assert event.args["s"] is None and event.args["a"] == -5
    assert event.fault_names == ["s"]


def test_bitfield_and_char() -> None:
    layout = layout_for("p:./x:f bf=+0(%di):b3@2/32 ch=+0(%si):char")
    fields = {f.name: f for f in layout.fields}
    fixed = bytearray(layout.fixed_size)
    fixed[:HEADER_SIZE] = header(0)
    struct.pack_into("<I", fixed, fields["bf"].offset, 0b10111 << 0)  # bits 2..4 = 0b101
    fixed[fields["ch"].offset] = ord("Z")
    (event,), _consumed = Decoder([layout]).decode_chunk(framed(bytes(fixed)))
    assert event.args == {"bf": 0b101, "ch": "Z"}


def test_layout_declares_padding_for_alignment() -> None:
    layout = layout_for("p:./x:f a=%di:u8 b=%si:u64")
    offsets = [f.offset for f in layout.fields]
    assert offsets == [HEADER_SIZE, HEADER_SIZE + 8]
    assert isinstance(layout.construct.subcons[1], c.Padded)

"""Hostile input: the filter parser and the record decoder raise nothing but RawprobeError."""

from __future__ import annotations

import contextlib
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from rawprobe import RawprobeError
from rawprobe._bpf.records import Decoder
from rawprobe._plan.compile import compile_fetchargs
from rawprobe._plan.events import RecordLayout
from rawprobe._plan.filters import compile_filter
from rawprobe._probe.filters import parse_filter
from rawprobe._probe.words import parse_probe

WORD = "p:./x:f a=%di:s32 u=%si:u64 s=+0(%dx):string arr=+0(%cx):u8[3] c=+0(%r8):char"
SPEC = parse_probe(WORD)
COMPILED = compile_fetchargs(SPEC.fetchargs, word=WORD, string_size=32)
LAYOUT = RecordLayout("f", COMPILED)

filter_text = st.text(alphabet='aus arrc pid tid comm cpu0123456789xX-"*~!=<>&|() \\\'',
                      max_size=60)


@settings(max_examples=1000, deadline=None)
@given(filter_text)
def test_filter_parser_and_compiler(text: str) -> None:
    with contextlib.suppress(RawprobeError):
        compile_filter(parse_filter(text), COMPILED, text)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=400))
def test_record_decoder_on_random_bytes(chunk: bytes) -> None:
    # Whatever a (buggy) producer wrote: framing may stop early, decoding may fail with
    # struct.error on a record shorter than its layout, but nothing else.
    try:
        events, consumed = Decoder([LAYOUT]).decode_chunk(chunk)
    except struct.error:
        return
    assert 0 <= consumed <= len(chunk)
    # Records of unknown event ids (all but 0 here) are skipped, not trusted.
    for event in events:
        assert event.event_id == 0 and len(event.values) == len(LAYOUT.names)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**32 - 1), st.binary(min_size=200, max_size=200))
def test_string_data_locs_out_of_range_do_not_crash(data_loc: int, filler: bytes) -> None:
    record = bytearray(filler)
    s_field = next(f for f in LAYOUT.fields if f.name == "s")
    struct.pack_into("<I", record, s_field.offset, data_loc)
    struct.pack_into("<I", record, 16, 0)  # event id 0
    chunk = struct.pack("<II", len(record), 0) + bytes(record)
    (event,), _consumed = Decoder([LAYOUT]).decode_chunk(chunk)
    value = event.values[LAYOUT.names.index("s")]
    assert value is None or isinstance(value, str)

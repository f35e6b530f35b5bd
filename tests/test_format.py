"""Text and JSON formatting: kernel-style values, and the generated fast path agreeing with the
general one for any values."""

from __future__ import annotations

import json
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from rawprobe._output.format import EventFormatter
from rawprobe._plan import abi
from rawprobe._plan.compile import HEADER_SIZE, compile_fetchargs
from rawprobe._plan.events import Event, RecordLayout
from rawprobe._probe.words import parse_probe

WORD = ("p:ev ./x:f a=%di:s32 b=%si:u64 h=%dx:x16 c=+0(%cx):char s=+0(%r8):string "
        "k=\\\"con%st\" t=$comm")


def layout() -> RecordLayout:
    spec = parse_probe(WORD)
    return RecordLayout("ev", compile_fetchargs(spec.fetchargs, word=WORD))


LAYOUT = layout()


def event(values: tuple[object, ...], comm: bytes = b"prog", faults: int = 0,
          truncated: int = 0) -> Event:
    return Event.make(LAYOUT, 1_000_000_123, 10, 11, 1, comm.ljust(16, b"\0"), values, faults,
                 truncated)


def test_kernel_style_text() -> None:
    formatter = EventFormatter()
    line = formatter.text(event((-5, 2**64 - 1, 0xBEEF, "Q", 'he said "hi"', "con%st", "prog")))
    assert line.split(" ", 1)[1] == (
        'prog 10/11 ev: a=-5 b=18446744073709551615 h=0xbeef c=\'Q\' s="he said "hi"" '
        'k="con%st" t="prog"'
    )


def test_json_shape() -> None:
    formatter = EventFormatter()
    obj = json.loads(formatter.json(event((1, 2, 255, "x", "s", "con%st", "p"))))
    assert obj["args"] == {"a": 1, "b": 2, "h": "0xff", "c": "x", "s": "s", "k": "con%st",
                           "t": "p"}
    assert obj["ts_ns"] == 1_000_000_123 + formatter.clock.offset_ns
    assert (obj["pid"], obj["tid"], obj["cpu"], obj["comm"], obj["event"]) == (
        10, 11, 1, "prog", "ev")


def test_faults_and_truncation() -> None:
    formatter = EventFormatter()
    s_slot = next(f for f in LAYOUT.fields if f.name == "s").slots[0]
    faulty = event((1, 2, 3, "c", None, "con%st", "p"), faults=1 << s_slot)
    assert formatter.text(faulty).endswith("s=(fault) k=\"con%st\" t=\"p\"")
    obj = json.loads(formatter.json(faulty))
    assert obj["args"]["s"] is None and obj["faults"] == ["s"]
    cut = event((1, 2, 3, "c", "abc", "con%st", "p"), truncated=1 << s_slot)
    assert 's="abc"...' in formatter.text(cut)
    assert json.loads(formatter.json(cut))["truncated"] == ["s"]


text_values = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20)


@settings(max_examples=300, deadline=None)
@given(
    a=st.integers(-(2**31), 2**31 - 1),
    b=st.integers(0, 2**64 - 1),
    h=st.integers(0, 2**16 - 1),
    c=st.characters(max_codepoint=255),
    s=text_values,
    comm=st.binary(min_size=1, max_size=15).filter(lambda b: b"\0" not in b),
)
def test_fast_path_equals_general(a: int, b: int, h: int, c: str, s: str, comm: bytes) -> None:
    formatter = EventFormatter()
    e = event((a, b, h, c, s, "con%st", "p"), comm=comm)
    assert formatter.text(e) == formatter.text_general(e)
    assert formatter.json(e) == formatter.json_general(e)


def test_batch_lines_equal_event_by_event() -> None:
    formatter = EventFormatter()
    s_slot = next(f for f in LAYOUT.fields if f.name == "s").slots[0]
    events = [
        event((1, 2, 3, "c", "plain", "con%st", "p")),
        event((4, 5, 6, "d", None, "con%st", "p"), faults=1 << s_slot),
        event((7, 8, 9, "e", "cut", "con%st", "p"), truncated=1 << s_slot),
        event((0, 0, 0, "f", "other comm", "con%st", "p"), comm=b"other"),
    ]
    for as_json, one in ((True, formatter.json), (False, formatter.text)):
        assert formatter.lines(events, as_json) == "".join(one(e) + "\n" for e in events)
    assert formatter.lines([], True) == ""


def test_decoded_record_formats() -> None:
    fixed = bytearray(LAYOUT.fixed_size)
    fixed[:HEADER_SIZE] = abi.HEADER.build(dict(ts_ns=5, pid=3, tid=4, event_id=0, cpu=0,
                                                faults=0, truncated=0,
                                                comm=b"x".ljust(16, b"\0")))
    fields = {f.name: f for f in LAYOUT.fields}
    struct.pack_into("<i", fixed, fields["a"].offset, 7)
    assert LAYOUT.unpack_from(bytes(fixed), HEADER_SIZE)[0] == 7

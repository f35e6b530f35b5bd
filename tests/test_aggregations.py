"""Aggregations without a kernel: specs and keys, key layouts and their bytes, value tables
and their JSON shapes, top N, span accounting, and the tracefs backend's user-space stage."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rawprobe._errors import UsageError
from rawprobe._output.tables import (
    Count,
    CountTable,
    ValueRow,
    build_histograms,
    count_table,
    value_table,
)
from rawprobe._plan import abi
from rawprobe._plan.aggregate import fill_key, key_decoder, key_layout
from rawprobe._plan.compile import compile_fetchargs
from rawprobe._plan.events import Event, RecordLayout
from rawprobe._plan.session import Plan, PlannedEvent, ProbeCounters, summarize
from rawprobe._probe.aggregations import AggregationSpec, HistSpec, parse_keys
from rawprobe._probe.words import parse_probe
from rawprobe._tracefs import _userstage
from rawprobe._tracefs._userstage import UserStage

WORD = ("p:ev ./x:f size=%di:s64 small=%si:s8 flags=%dx:x32 letter=+0(%cx):char "
        "name=+0(%r8):string bits=+0(%r9):b3@2/8 word=+0(%r8):char[6] blob=+0(%r8):char[40] "
        "many=+0(%r8):u32[2]")


def compiled() -> Any:
    return compile_fetchargs(parse_probe(WORD).fetchargs, word=WORD)


# -- specs and keys ---------------------------------------------------------------------------


def test_keys_split_on_commas_and_repeat() -> None:
    assert parse_keys(["comm,size", "pid"]) == ("comm", "size", "pid")
    spec = AggregationSpec("count", by="comm,stack,size")
    assert spec.keys == ("comm", "size") and spec.stack
    assert AggregationSpec("count", by="stack").keys == ()
    assert AggregationSpec("count", by=("comm", "pid")).keys == ("comm", "pid")
    assert AggregationSpec("count", by="comm").by == "comm"  # as given


@pytest.mark.parametrize(("texts", "message"), [
    (["comm,comm"], "given twice"),
    (["a,b,c,d,e"], "at most 4 keys"),
    (["comm,"], "KEY[,KEY...]"),
    (["1x"], "KEY[,KEY...]"),
])
def test_bad_keys(texts: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_keys(texts)


def test_specs_say_what_they_measure() -> None:
    assert AggregationSpec("stats", field="size").value_field == "size"
    assert AggregationSpec("hist", hist=HistSpec("latency")).measures_latency
    assert AggregationSpec("count").value_field is None
    with pytest.raises(UsageError, match="needs a field"):
        AggregationSpec("sum")
    with pytest.raises(UsageError, match="unknown aggregation"):
        AggregationSpec("median", field="size")


# -- key layouts and bytes --------------------------------------------------------------------


def test_key_parts_lie_side_by_side() -> None:
    parts = key_layout(("comm", "size", "pid", "name"), compiled())
    assert [(p.name, p.kind, p.size, p.dest) for p in parts] == [
        ("comm", abi.KeyKind.BYTES, 16, 0), ("size", abi.KeyKind.BYTES, 8, 16),
        ("pid", abi.KeyKind.BYTES, 4, 24), ("name", abi.KeyKind.STRING, 28, 28)]
    assert key_layout(("name",), compiled())[0].size == abi.KEY_DATA_LEN  # 55 bytes and NUL


def test_keys_a_span_reads_at_its_start() -> None:
    end = compile_fetchargs(parse_probe("p:x:f id=%di:u64").fetchargs)
    parts = key_layout(("comm", "name", "id"), end, compiled())
    assert [(p.name, p.at_start) for p in parts] == [
        ("comm", False), ("name", True), ("id", False)]


@pytest.mark.parametrize(("keys", "message"), [
    (("nope",), "no such field"),
    (("many",), "is an array"),
    (("comm", "blob", "size"), "group by fewer"),     # 16 + 40 + 8 > 56 bytes
    (("comm", "blob", "name"), "group by fewer"),     # no room left for the string
    (("name", "word", "name2"), "no such field"),
])
def test_keys_that_cannot_be(keys: tuple[str, ...], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        key_layout(keys, compiled())


def test_keys_that_just_fit() -> None:
    parts = key_layout(("comm", "word", "size", "name"), compiled())
    assert parts[-1].dest + parts[-1].size == abi.KEY_DATA_LEN  # the string takes the rest


def test_key_bytes_decode_to_the_values() -> None:
    layout = key_layout(("comm", "small", "flags", "letter", "word"), compiled())
    values = {"comm": "worker", "small": -3, "flags": 0xBEEF, "letter": "Q",
              "word": tuple("abc\0\0\0")}
    data = bytearray(abi.KEY_DATA_LEN)
    fill_key(layout, values, data, at_start=False)
    decode = key_decoder(layout)
    assert decode is not None
    assert decode(bytes(data)) == ("worker", -3, "0xbeef", "Q", "abc")


@given(st.text(max_size=80), st.integers(-(2**63), 2**63 - 1), st.integers(0, 7))
def test_strings_are_cut_and_integers_kept(text: str, size: int, bits: int) -> None:
    layout = key_layout(("name", "size", "bits"), compiled())
    data = bytearray(abi.KEY_DATA_LEN)
    fill_key(layout, {"name": text, "size": size, "bits": bits}, data, at_start=False)
    decode = key_decoder(layout)
    assert decode is not None
    name, got_size, got_bits = decode(bytes(data))
    room = layout[0].size - 1
    raw = text.encode("utf-8", "surrogateescape")[:room]
    assert name == raw.split(b"\0", 1)[0].decode("utf-8", "backslashreplace")
    assert (got_size, got_bits) == (size, bits)


def test_only_one_sides_parts_are_written() -> None:
    end = compile_fetchargs(parse_probe("p:x:f id=%di:u64").fetchargs)
    parts = key_layout(("name", "id"), end, compiled())
    data = bytearray(abi.KEY_DATA_LEN)
    fill_key(parts, {"name": "select", "id": 7}, data, at_start=True)
    assert data[parts[1].dest:] == bytes(len(data) - parts[1].dest)
    fill_key(parts, {"id": 7}, data, at_start=False)
    decode = key_decoder(parts)
    assert decode is not None and decode(bytes(data)) == ("select", 7)


# -- tables -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("total", "count", "mean"), [
    (7, 2, 3), (-7, 2, -3), (-10, 3, -3), (9, 2, 4), (0, 5, 0), (-(2**63), 3, -(2**63) // 3 + 1),
])
def test_means_are_truncated_toward_zero_as_bpftrace_prints_them(total: int, count: int,
                                                                  mean: int) -> None:
    assert ValueRow("e", None, count, total, 0, 0).mean == mean


def test_value_tables_have_one_json_shape_per_kind() -> None:
    rows = [ValueRow("read", ("bash", 3), 2, 10, 4, 6), ValueRow("read", ("cat", 1), 1, 7, 7, 7)]
    shapes = {kind: value_table(kind, rows).to_dict() for kind in
              ("sum", "min", "max", "avg", "stats")}
    assert shapes["sum"] == {"sums": [
        {"event": "read", "key": ["bash", 3], "count": 2, "sum": 10},
        {"event": "read", "key": ["cat", 1], "count": 1, "sum": 7}]}
    assert shapes["min"]["mins"][0] == {"event": "read", "key": ["cat", 1], "count": 1, "min": 7}
    assert [row["max"] for row in shapes["max"]["maxes"]] == [7, 6]
    assert [row["avg"] for row in shapes["avg"]["avgs"]] == [7, 5]
    assert shapes["stats"]["stats"][1] == {"event": "read", "key": ["bash", 3], "count": 2,
                                           "sum": 10, "min": 4, "max": 6, "mean": 5}
    json.dumps(shapes)


def test_value_rows_of_one_event_and_key_merge() -> None:
    table = value_table("stats", [ValueRow("f", 1, 2, 10, 4, 6), ValueRow("f", 1, 3, -3, -5, 1),
                                  ValueRow("f", 2, 1, 1, 1, 1)])
    assert table.as_dict()[("f", 1)] == {"count": 5, "sum": 7, "min": -5, "max": 6, "mean": 1}
    assert str(table).splitlines() == [
        "EVENT  KEY  COUNT  SUM  MIN  MAX  MEAN",
        "f      1    5      7    -5   6    1",
        "f      2    1      1    1    1    1"]
    assert str(value_table("sum", table.rows)).splitlines()[0] == "EVENT  KEY  SUM"


def test_top_keeps_the_largest() -> None:
    counts = count_table(Count("f", key, key * 10) for key in range(6))
    assert [row.key for row in counts.top(3).rows] == [5, 4, 3]
    assert [row.key for row in value_table("max", [
        ValueRow("f", key, 1, 0, 0, -key) for key in range(4)]).top(2).rows] == [0, 1]
    hists = build_histograms(HistSpec("v"), [("f", key, 1, key + 1, None) for key in range(4)])
    assert [h.key for h in hists.top(2)] == [3, 2]


def test_several_keys_print_comma_separated_and_serialise_as_lists() -> None:
    table = CountTable([Count("f", ("bash", 4096), 3), Count("f", ("cat", 12), 1)])
    assert str(table).splitlines()[1] == "f      bash, 4096  3"
    assert table.to_dict()["counts"][0]["key"] == ["bash", 4096]


def test_histograms_per_stack_keep_their_stack() -> None:
    hists = build_histograms(HistSpec("v"), [("f", None, 1, 2, ("leaf", "main")),
                                             ("f", None, 1, 3, ("leaf", "outer", "main"))])
    assert [h.stack for h in hists] == [("leaf", "main"), ("leaf", "outer", "main")]
    assert hists.to_dict()["hist"][1]["stack"] == ["leaf", "outer", "main"]
    assert "    outer" in str(hists)


# -- spans: accounting and the tracefs stage --------------------------------------------------


def planned(event_id: int, word: str, role: str = "", span_id: int = -1, match: str = "tid",
            parts: tuple[Any, ...] = ()) -> PlannedEvent:
    spec = parse_probe(word)
    layout = RecordLayout(spec.event or "ev", compile_fetchargs(spec.fetchargs, word=word))
    return PlannedEvent(event_id, 0, "/x", "/x", 0, False, 0, spec.fetchargs, layout,
                        role=role, span_id=span_id, match=match, key_parts=parts)


def event(plan: PlannedEvent, ts_ns: int, tid: int, *values: Any) -> Event:
    return Event.make(plan.layout, ts_ns, 1, tid, 0, b"prog", values, event_id=plan.event_id)


def test_span_accounting_leaves_evictions_to_the_remainder() -> None:
    start = planned(0, "p:start ./x:f id=%di:u64", "start", 0, "id")
    end = planned(1, "p:end ./x:g id=%di:u64", "end", 0, "id")
    plan = Plan((start, end), (b"",))
    stats = summarize(plan, [ProbeCounters(hits=100, filtered=5, lost=1, replaced=4),
                             ProbeCounters(hits=60, filtered=2, unmatched=8)], 0, {0: 10})
    (span,) = stats.spans
    assert (span.started, span.ended, span.unmatched, span.open) == (94, 50, 8, 10)
    assert span.replaced == 4 and span.evicted == 94 - 50 - 4 - 10


def test_the_tracefs_stage_matches_spans_like_the_kernel(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_userstage, "MAX_SPANS", 3)
    start = planned(0, "p:start ./x:f id=%di:u64", "start", 0, "id")
    end = planned(1, "p:end ./x:g id=%di:u64 latency=\\0:u64", "end", 0, "id")
    stage = UserStage([start, end], None)
    kept = stage.process([
        event(start, 100, 1, 1), event(start, 110, 1, 2), event(start, 120, 1, 2),  # replaced
        event(end, 150, 2, 1, 0),                      # 1 took 50 ns, on another thread
        event(start, 160, 1, 3), event(start, 170, 1, 4), event(start, 180, 1, 5),
        event(end, 190, 1, 2, 0),                      # 2 was evicted by 5: not matched
        event(end, 200, 1, 9, 0),                      # never started
    ])
    assert [(e.args["id"], e.args["latency"]) for e in kept] == [(1, 50)]
    assert (stage.replaced, stage.unmatched) == ([1, 0], [0, 2])
    assert stage.open_spans() == {0: 3}


def test_the_tracefs_stage_aggregates_values_like_the_kernel() -> None:
    record = planned(0, "p:rec ./x:f size=%di:s64 k=%si:u8")
    parts = key_layout(("k",), compile_fetchargs(record.fetchargs))
    record = planned(0, "p:rec ./x:f size=%di:s64 k=%si:u8", parts=parts)
    stage = UserStage([record], AggregationSpec("stats", by="k", field="size"))
    stage.process([event(record, 0, 1, size, size % 2) for size in (2**63 - 1, 5, -4, 3)])
    cells = {cell.key[0]: cell for cell in stage.cells(reset=True)}
    # 2^63 - 1 + 5 + 3 wraps around 64 bits, as the kernel's sum does.
    assert (cells[1].value, cells[1].total, cells[1].minimum, cells[1].maximum) == (
        3, 2**63 - 1 + 5 + 3 - 2**64, 3, 2**63 - 1)
    assert (cells[0].value, cells[0].total) == (1, -4)
    assert stage.cells(reset=False) == []

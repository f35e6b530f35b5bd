"""Trace Event Format output: the file validates, durations round-trip, the writer streams."""

from __future__ import annotations

import io
import json
import math
import random
import tracemalloc
from typing import Any

import pytest

from rawprobe._errors import ClosedError, UsageError
from rawprobe._output.traceevents import TraceEventWriter

US = 1000  # nanoseconds per microsecond


def load(text: str) -> dict[str, Any]:
    """Parse as strict JSON: NaN and Infinity are refused, as viewers refuse them."""

    def refuse(name: str) -> None:
        raise ValueError(f"{name} is not JSON")

    document: dict[str, Any] = json.loads(text, parse_constant=refuse)
    return document


def validate(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Check the document against the format and return its events.

    Every B has its E on the same pid/tid, properly nested (an E closes the latest open B, of
    the same name); X events lie inside the slice open around them; timestamps are numbers,
    non-decreasing per thread in file order; instants are thread-scoped; metadata names what
    it names.
    """
    assert set(document) >= {"traceEvents"}
    assert document.get("displayTimeUnit", "ms") in ("ms", "ns")
    events: list[dict[str, Any]] = document["traceEvents"]
    open_slices: dict[tuple[int, int], list[dict[str, Any]]] = {}
    last_ts: dict[tuple[int, int], float] = {}
    for event in events:
        assert isinstance(event["pid"], int) and isinstance(event["tid"], int), event
        assert isinstance(event["name"], str), event
        phase = event["ph"]
        thread = (event["pid"], event["tid"])
        if phase == "M":
            assert event["name"] in ("process_name", "thread_name"), event
            assert isinstance(event["args"]["name"], str)
            continue
        ts = event["ts"]
        assert isinstance(ts, (int, float)) and math.isfinite(ts), event
        assert ts >= last_ts.get(thread, -math.inf), f"time goes back on {thread}: {event}"
        last_ts[thread] = ts
        stack = open_slices.setdefault(thread, [])
        if phase == "B":
            stack.append(event)
        elif phase == "E":
            assert stack, f"E without B: {event}"
            begin = stack.pop()
            assert begin["name"] == event["name"], (begin, event)
            assert ts >= begin["ts"]
            assert ts >= begin.get("inner_end", -math.inf), "a slice inside ends after its parent"
        elif phase == "X":
            assert event["dur"] >= 0
            if stack:
                stack[-1]["inner_end"] = max(stack[-1].get("inner_end", -math.inf),
                                             ts + event["dur"])
        elif phase == "i":
            assert event["s"] == "t", event
        else:
            raise AssertionError(f"unexpected phase {phase!r}")
        assert "args" not in event or isinstance(event["args"], dict)
    for thread, stack in open_slices.items():
        assert not stack, f"B without E on {thread}: {stack}"
    return events


def write(calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]], **options: Any) -> str:
    stream = io.StringIO()
    writer = TraceEventWriter(stream, **options)
    for method, args, kwargs in calls:
        getattr(writer, method)(*args, **kwargs)
    writer.close()
    return stream.getvalue()


# -- the documented shape ------------------------------------------------------------------

def test_documented_example() -> None:
    stream = io.StringIO()
    with TraceEventWriter(stream, base_ns=1_000_000) as writer:
        writer.name_process(41, "srv")
        writer.name_thread(41, 42, "worker")
        writer.begin("handle", 1_000_000, 41, 42, {"fd": 3})
        writer.complete("read", 1_001_500, 20_250, 41, 42, {"ret": 512})
        writer.instant("cache_miss", 1_030_000, 41, 42, {"key": "k1"})
        writer.end("handle", 1_052_125, 41, 42, {"ret": 0})
    assert stream.getvalue() == (
        '{"traceEvents":[\n'
        '{"name":"process_name","ph":"M","pid":41,"tid":41,"args":{"name":"srv"}},\n'
        '{"name":"thread_name","ph":"M","pid":41,"tid":42,"args":{"name":"worker"}},\n'
        '{"name":"handle","ph":"B","ts":0.0,"pid":41,"tid":42,"args":{"fd":3}},\n'
        '{"name":"read","ph":"X","ts":1.5,"dur":20.25,"pid":41,"tid":42,"args":{"ret":512}},\n'
        '{"name":"cache_miss","ph":"i","s":"t","ts":30.0,"pid":41,"tid":42,'
        '"args":{"key":"k1"}},\n'
        '{"name":"handle","ph":"E","ts":52.125,"pid":41,"tid":42,"args":{"ret":0}}\n'
        '],"displayTimeUnit":"ns","otherData":{"generator":"rawprobe"}}\n'
    )
    validate(load(stream.getvalue()))


def test_trace_of_many_threads_validates() -> None:
    rng = random.Random(5)
    writer_calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
    threads = [(100, 100), (100, 101), (100, 102), (200, 200), (300, 301)]
    for pid, tid in threads:
        writer_calls.append(("name_thread", (pid, tid, f"t{tid}"), {}))
    for pid in {pid for pid, _ in threads}:
        writer_calls.append(("name_process", (pid, f"p{pid}"), {}))
    clock = 10**12  # a boot-time-like clock: ts must come out relative to the base
    depth = {thread: [] for thread in threads}  # type: dict[tuple[int, int], list[str]]
    for _ in range(5000):
        clock += rng.randint(0, 5000)
        pid, tid = thread = rng.choice(threads)
        roll = rng.random()
        if roll < 0.4 and len(depth[thread]) < 20:
            name = rng.choice(["malloc", "free", "parse", "handle"])
            depth[thread].append(name)
            writer_calls.append(("begin", (name, clock, pid, tid, {"n": rng.randint(0, 9)}), {}))
        elif roll < 0.8 and depth[thread]:
            writer_calls.append(("end", (depth[thread].pop(), clock, pid, tid, {"ret": 0}), {}))
        elif roll < 0.9:
            writer_calls.append(("complete", ("read", clock, 0, pid, tid), {}))
        else:
            writer_calls.append(("instant", ("mark", clock, pid, tid), {"category": "usdt"}))
    events = validate(load(write(writer_calls)))
    slices = [event for event in events if event["ph"] in "BEXi"]
    assert {(event["pid"], event["tid"]) for event in slices} == set(threads)
    assert min(event["ts"] for event in slices) == 0
    names = {(e["pid"], e["tid"]): e["args"]["name"] for e in events if e["name"] == "thread_name"}
    assert names == {thread: f"t{thread[1]}" for thread in threads}
    processes = {e["pid"]: e["args"]["name"] for e in events if e["name"] == "process_name"}
    assert processes == {100: "p100", 200: "p200", 300: "p300"}
    assert all(event["cat"] == "usdt" for event in events if event["name"] == "mark")


# -- durations ---------------------------------------------------------------------------------

def test_durations_round_trip() -> None:
    """Nested calls with known durations: E - B read back equals what was written."""
    rng = random.Random(11)
    stream = io.StringIO()
    writer = TraceEventWriter(stream)
    expected: list[int] = []
    clock = 1_700_000_000_000_000_000  # the epoch in ns: floats would lose the ns here

    def call(depth: int, tid: int) -> None:
        nonlocal clock
        start = clock
        writer.begin(f"f{depth}", start, 7, tid)
        for _ in range(rng.randint(0, 3) if depth < 4 else 0):
            clock += rng.randint(1, 999_999)
            call(depth + 1, tid)
        clock += rng.randint(0, 10**9)
        writer.end(f"f{depth}", clock, 7, tid)
        expected.append(clock - start)

    for tid in (7, 8, 9):
        for _ in range(20):
            clock += rng.randint(1, 5000)
            call(0, tid)
    durations = [rng.randint(0, 10**10) for _ in range(50)]
    for duration in durations:
        clock += 10**10
        writer.complete("sys_read", clock, duration, 7, 10)
    writer.close()
    events = validate(load(stream.getvalue()))
    measured: list[float] = []
    open_ts: dict[int, list[float]] = {}
    for event in events:
        if event["ph"] == "B":
            open_ts.setdefault(event["tid"], []).append(event["ts"])
        elif event["ph"] == "E":
            measured.append(event["ts"] - open_ts[event["tid"]].pop())
    # Slices end in the same order on both sides (per thread, innermost first). Within 1 ns,
    # though 1 µs would do: relative timestamps keep float microseconds exact to the ns.
    for got, want in zip(measured, expected, strict=True):
        assert got == pytest.approx(want / US, abs=1e-3)
    got_durations = [event["dur"] for event in events if event["ph"] == "X"]
    assert got_durations == pytest.approx([d / US for d in durations], abs=1e-3)


# -- balance -----------------------------------------------------------------------------------

def test_unmatched_begins_end_at_the_last_timestamp() -> None:
    text = write([
        ("begin", ("outer", 1000, 1, 1), {}),
        ("begin", ("inner", 2000, 1, 1), {}),
        ("begin", ("other", 3000, 1, 2), {}),
        ("instant", ("late", 9000, 1, 3), {}),
    ])
    events = validate(load(text))
    ends = [event for event in events if event["ph"] == "E"]
    assert [(e["name"], e["tid"], e["ts"], e["args"]) for e in ends] == [
        ("inner", 1, 8.0, {"unfinished": True}),
        ("outer", 1, 8.0, {"unfinished": True}),
        ("other", 2, 8.0, {"unfinished": True}),
    ]


def test_close_at_a_given_end_time() -> None:
    text = write([("begin", ("f", 1000, 1, 1), {})], base_ns=0)
    stream = io.StringIO()
    writer = TraceEventWriter(stream, base_ns=0)
    writer.begin("f", 1000, 1, 1)
    writer.close(end_ns=50_000)
    assert load(stream.getvalue())["traceEvents"][-1]["ts"] == 50.0
    assert load(text)["traceEvents"][-1]["ts"] == 1.0


def test_summary_and_metadata_go_to_other_data() -> None:
    stream = io.StringIO()
    writer = TraceEventWriter(stream, metadata={"command": ["make", "-j4"]})
    writer.begin("f", 1000, 1, 1)
    writer.close(summary={"events": 1, "lost": 3})
    document = load(stream.getvalue())
    assert document["otherData"] == {
        "generator": "rawprobe", "command": ["make", "-j4"], "events": 1, "lost": 3
    }


def test_end_without_begin_is_an_instant() -> None:
    events = validate(load(write([
        ("begin", ("f", 1000, 1, 1), {}),
        ("end", ("g", 2000, 1, 1, {"ret": 3}), {}),
        ("end", ("f", 3000, 1, 2), {}),  # f is open on another thread only
        ("end", ("f", 4000, 1, 1), {}),
    ])))
    assert [(e["name"], e["ph"], e.get("args")) for e in events] == [
        ("f", "B", None),
        ("g", "i", {"ret": 3, "unmatched_end": True}),
        ("f", "i", {"unmatched_end": True}),
        ("f", "E", None),
    ]


def test_missed_return_closes_the_slices_inside() -> None:
    # inner's return was lost (longjmp, an exception, a dropped record): outer's return closes
    # it first, so outer is not mis-nested under it.
    events = validate(load(write([
        ("begin", ("outer", 1000, 1, 1), {}),
        ("begin", ("inner", 2000, 1, 1), {}),
        ("begin", ("leaf", 2500, 1, 1), {}),
        ("end", ("outer", 5000, 1, 1, {"ret": 0}), {}),
    ])))
    assert [(e["name"], e["ph"], e["ts"], e.get("args")) for e in events] == [
        ("outer", "B", 0.0, None),
        ("inner", "B", 1.0, None),
        ("leaf", "B", 1.5, None),
        ("leaf", "E", 4.0, {"unfinished": True}),
        ("inner", "E", 4.0, {"unfinished": True}),
        ("outer", "E", 4.0, {"ret": 0}),
    ]


def test_recursion_nests() -> None:
    events = validate(load(write([
        ("begin", ("fib", 0, 1, 1), {}),
        ("begin", ("fib", 10, 1, 1), {}),
        ("begin", ("fib", 20, 1, 1), {}),
        ("end", ("fib", 30, 1, 1), {}),
        ("end", ("fib", 40, 1, 1), {}),
        ("end", ("fib", 50, 1, 1), {}),
    ])))
    assert [e["ph"] for e in events] == ["B", "B", "B", "E", "E", "E"]
    assert not any("args" in e for e in events)


def test_time_going_back_inside_a_slice_is_clamped() -> None:
    stream = io.StringIO()
    writer = TraceEventWriter(stream)
    writer.begin("f", 5000, 1, 1)
    writer.end("f", 4000, 1, 1)  # from another CPU's clock, slightly behind
    writer.instant("free", 3000, 1, 2)  # no slice open there: written as given
    writer.close()
    assert writer.clamped == 1
    events = validate(load(stream.getvalue()))
    assert [e["ts"] for e in events] == [0.0, 0.0, -2.0]


# -- values ------------------------------------------------------------------------------------

def test_hostile_and_odd_values_stay_valid_json() -> None:
    args = {
        "s": "quote \" backslash \\ newline \n tab \t nul \x00 </script> ]]>",
        "u": "é 漢 \U0001f600",
        "lone": "bad \udcff surrogate",
        "raw": b"\x00\xff",
        "nan": float("nan"),
        "deep": [1, [float("inf"), None], {"x": -0.0}],
        "big": 2**64 - 1,
        "obj": ValueError("not JSON"),
    }
    stream = io.StringIO()
    with TraceEventWriter(stream, metadata={"command": "a \"b\"\n"}) as writer:
        writer.name_thread(1, 2, "comm\"\n<")
        writer.instant("weird \"name\"", 10, 1, 2, args)
    document = load(stream.getvalue())
    (meta, event) = validate(document)
    assert meta["args"]["name"] == "comm\"\n<"
    assert event["name"] == "weird \"name\""
    got = event["args"]
    assert got["s"] == args["s"] and got["u"] == args["u"]
    assert got["lone"] == "bad \udcff surrogate"
    assert got["raw"] == "0x00ff"
    assert got["nan"] == "nan"
    assert got["deep"] == [1, ["inf", None], {"x": -0.0}]
    assert got["big"] == 2**64 - 1
    assert got["obj"] == "not JSON"
    assert document["otherData"] == {"generator": "rawprobe", "command": "a \"b\"\n"}
    stream.getvalue().encode("ascii")  # escaped: safe whatever the file's encoding


def test_names_are_written_once_and_again_on_change() -> None:
    stream = io.StringIO()
    with TraceEventWriter(stream) as writer:
        for _ in range(3):
            writer.name_process(5, "sh")
            writer.name_thread(5, 6, "sh")
        writer.name_thread(5, 6, "make")  # exec changed the comm
    names = [(e["name"], e["args"]["name"]) for e in load(stream.getvalue())["traceEvents"]]
    assert names == [("process_name", "sh"), ("thread_name", "sh"), ("thread_name", "make")]


def test_misuse_is_refused() -> None:
    writer = TraceEventWriter(io.StringIO())
    with pytest.raises(UsageError, match="negative duration"):
        writer.complete("read", 0, -1, 1, 1)
    writer.close()
    writer.close()  # a second close does nothing
    with pytest.raises(ClosedError):
        writer.instant("late", 0, 1, 1)
    with pytest.raises(ClosedError):
        writer.name_thread(1, 1, "x")


def test_empty_trace_is_valid() -> None:
    assert validate(load(write([]))) == []


# -- streaming ---------------------------------------------------------------------------------

class CountingSink(io.TextIOBase):
    """A stream that keeps nothing: counts what is written, remembers the tail for checks."""

    def __init__(self) -> None:
        self.written = 0
        self.tail = ""

    def write(self, text: str) -> int:
        self.written += len(text)
        self.tail = (self.tail + text)[-200:]
        return len(text)

    def writable(self) -> bool:
        return True


def test_events_reach_the_stream_as_they_come() -> None:
    stream = io.StringIO()
    writer = TraceEventWriter(stream)
    writer.begin("f", 1000, 1, 1)
    assert '"ph":"B"' in stream.getvalue()  # written before its end is known
    writer.instant("g", 2000, 1, 1)
    assert '"name":"g"' in stream.getvalue()
    writer.close()


def test_long_trace_does_not_accumulate_in_memory() -> None:
    sink = CountingSink()
    writer = TraceEventWriter(sink)  # type: ignore[arg-type]
    clock = 0

    def burst(count: int) -> None:
        nonlocal clock
        for index in range(count):
            tid = 1000 + index % 64
            clock += 100
            writer.begin("handle", clock, 1, tid, {"request": index})
            writer.begin("parse", clock + 10, 1, tid, {"bytes": 512})
            writer.end("parse", clock + 50, 1, tid, {"ret": 0})
            writer.instant("log", clock + 60, 1, tid, {"line": "x" * 40})
            writer.complete("write", clock + 70, 20, 1, tid, {"fd": 4})
            writer.end("handle", clock + 95, 1, tid)
            writer.name_thread(1, tid, f"worker-{tid}")

    burst(2000)  # warm up: the thread names, interned strings, caches
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        burst(10_000)
        after, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    writer.close()
    assert writer.events >= 6 * 12_000 and sink.written > 5_000_000
    assert writer.open_slices == 0
    assert after - before < 64 * 1024, f"{after - before} bytes kept after 60,000 events"
    assert peak - before < 512 * 1024, f"peak {peak - before} bytes"
    assert sink.tail.endswith('"otherData":{"generator":"rawprobe"}}\n')


def test_state_is_proportional_to_open_slices() -> None:
    writer = TraceEventWriter(CountingSink())  # type: ignore[arg-type]
    for depth in range(50):
        writer.begin(f"f{depth}", depth, 1, 1)
    for tid in range(2, 12):
        writer.begin("g", 100, 1, tid)
    assert writer.open_slices == 60
    for tid in range(2, 12):
        writer.end("g", 200, 1, tid)
    writer.end("f0", 300, 1, 1)
    assert writer.open_slices == 0
    assert writer._threads == {}  # threads with nothing open are forgotten

"""``attach --trace-events``: real calls as Chrome trace events.

Two threads call handle() (which calls inner()) with sleeps chosen in the middle of log2
buckets; the file must be valid (every B has its E, on its thread, in µs from a stated base,
the pids and tids of the events) and its slices must measure what ``--hist latency`` measures
of the same calls.
"""

from __future__ import annotations

import itertools
import json
import shutil
import signal
from pathlib import Path
from typing import Any

import pytest
from helpers import Background, build_c, run_rawprobe

PROGRAM = r"""
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>
__attribute__((noinline)) int inner(int x) { asm volatile("" ::: "memory"); return x + 1; }
__attribute__((noinline)) int handle(int ms) { usleep(ms * 1000); return inner(ms) * 2; }
static void *worker(void *arg) { (void)arg; for (int i = 0; i < 3; i++) handle(12); return 0; }
int main(void) {
    pthread_t thread;
    pthread_create(&thread, 0, worker, 0);
    for (int i = 0; i < 4; i++) handle(3);
    pthread_join(thread, 0);
    return 0;
}
"""
# 3 ms and 12 ms sit well inside [2^21, 2^22) ns and [2^23, 2^24) ns.
CALLS = {3: 4, 12: 3}


@pytest.fixture
def program(tmp_path: Path) -> Path:
    # A private copy: host-wide probes on it see only this test's calls.
    path = tmp_path / "timeline"
    shutil.copy2(build_c(PROGRAM, name="timeline", flags=("-O1", "-pthread")), path)
    return path


def trace(program: Path, out: Path, *extra: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    result = run_rawprobe("attach", "--json", "--trace-events", str(out), *extra,
                          f"p:{program}:handle ms=%di:s32", f"r:{program}:handle ret=$retval:s32",
                          f"p:{program}:inner", "--", str(program), check_status=0)
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    return json.loads(out.read_text()), [line for line in lines if "event" in line]


def slices(document: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(B, E) pairs, matched per thread as viewers nest them; asserts the nesting holds."""
    open_: dict[tuple[int, int], list[dict[str, Any]]] = {}
    pairs = []
    for event in document["traceEvents"]:
        key = (event.get("pid"), event.get("tid"))
        if event["ph"] == "B":
            open_.setdefault(key, []).append(event)
        elif event["ph"] == "E":
            begin = open_[key].pop()
            assert begin["name"] == event["name"]
            assert event["ts"] >= begin["ts"]
            pairs.append((begin, event))
    assert all(not stack for stack in open_.values()), open_
    return pairs


def test_trace_events_are_valid_and_match_the_json_events(program: Path, tmp_path: Path) -> None:
    document, events = trace(program, tmp_path / "trace.json")
    other = document["otherData"]
    assert other["events"] == len(events) == 7 * 3 and other["lost"] == 0
    timeline = [e for e in document["traceEvents"] if e["ph"] != "M"]
    assert len(timeline) == len(events)
    pairs = slices(document)
    assert len(pairs) == 7
    assert not any("unfinished" in e.get("args", {}) or "unmatched_end" in e.get("args", {})
                   for e in timeline)
    # Every event, in order: the same thread, the same time (µs from base_ns), the same args.
    for written, event in zip(timeline, events, strict=True):
        assert (written["pid"], written["tid"]) == (event["pid"], event["tid"])
        epoch_ns = round(written["ts"] * 1000) + other["base_ns"] + other["epoch_offset_ns"]
        assert abs(epoch_ns - event["ts_ns"]) < 2, (written, event)
        assert written.get("args", {}) == event["args"]
        phase = {"handle": "B", "handle__return": "E", "inner": "i"}[event["event"]]
        assert written["ph"] == phase and written["name"] == event["event"].split("__")[0]
    # The slices last what the program slept, on the thread that slept.
    for begin, end in pairs:
        duration_ms = (end["ts"] - begin["ts"]) / 1000
        ms = begin["args"]["ms"]
        assert ms <= duration_ms < ms + 50
        assert end["args"]["ret"] == (ms + 1) * 2
    threads = {(begin["pid"], begin["tid"]) for begin, _ in pairs}
    assert len(threads) == 2
    names = [(e["name"], e["pid"], e["tid"]) for e in document["traceEvents"] if e["ph"] == "M"]
    assert {name for name, _, _ in names} == {"process_name", "thread_name"}
    assert {(pid, tid) for _, pid, tid in names} >= threads


def test_slices_round_trip_the_durations_hist_latency_measures(program: Path,
                                                               tmp_path: Path) -> None:
    # --hist latency host-wide on the same file measures the same calls meanwhile.
    latency = Background("attach", "--json", "--hist", "latency", f"p:{program}:handle")
    latency.ready()
    document, _events = trace(program, tmp_path / "trace.json")
    status, out, err = latency.finish(signal.SIGINT)
    assert status == 0, err
    (hist,) = [json.loads(line)["hist"] for line in out.splitlines() if '"hist"' in line]
    measured = {bucket["low"]: bucket["count"] for bucket in hist[0]["buckets"]
                if bucket["count"]}
    # The two measure each call with their own probes, microseconds apart: a call that took
    # within 50 µs of a power of two may fall on either side of it.
    certain: dict[int, int] = {}
    either: list[tuple[int, int]] = []
    for begin, end in slices(document):
        nanoseconds = round((end["ts"] - begin["ts"]) * 1000)
        low = 1 << (nanoseconds.bit_length() - 1)
        if nanoseconds - low < 50_000:
            either.append((low >> 1, low))
        elif 2 * low - nanoseconds < 50_000:
            either.append((low, 2 * low))
        else:
            certain[low] = certain.get(low, 0) + 1
    assert sum(measured.values()) == sum(CALLS.values()) == sum(certain.values()) + len(either)
    assert any(_placed(certain, either, choice) == measured
               for choice in itertools.product((0, 1), repeat=len(either))), (certain, either,
                                                                              measured)


def _placed(certain: dict[int, int], either: list[tuple[int, int]],
            choice: tuple[int, ...]) -> dict[int, int]:
    counts = dict(certain)
    for options, pick in zip(either, choice, strict=True):
        counts[options[pick]] = counts.get(options[pick], 0) + 1
    return counts


def test_trace_events_with_an_aggregation_is_refused() -> None:
    result = run_rawprobe("attach", "--count", "--trace-events", "/tmp/x.json",
                          "p:libc:malloc", check_status=2)
    assert "--trace-events writes events" in result.stderr

"""Aggregation in the kernel: exact counts, histogram buckets, latency, stacks."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import build_c, run_rawprobe

from rawprobe._probe.aggregations import AggregationSpec, HistSpec
from rawprobe._tracer import Tracer

SOURCE = r"""
#include <stdlib.h>
#include <time.h>
#define NOINLINE __attribute__((noinline))
NOINLINE long f_one(long v) { asm volatile("" ::: "memory"); return v; }
NOINLINE long f_two(long v) { asm volatile("" ::: "memory"); return v + 1; }
NOINLINE long f_never(long v) { asm volatile("" ::: "memory"); return v + 2; }
NOINLINE void nap(long ms) { struct timespec t = {0, ms * 1000000L}; nanosleep(&t, 0); }
NOINLINE long leaf(long v) { asm volatile("" ::: "memory"); return v * 3; }
NOINLINE long inner(long v) { return leaf(v) + 1; }
NOINLINE long outer(long v) { return inner(v) + 1; }
int main(int argc, char **argv) {
    long sum = 0;
    /* f_one: 1000 calls with values 0..999; f_two: 250 calls with value i % 5 */
    for (long i = 0; i < 1000; i++) sum += f_one(i);
    for (long i = 0; i < 250; i++) sum += f_two(i % 5);
    for (int i = 0; i < 4; i++) nap(20);
    for (int i = 0; i < 6; i++) nap(1);
    for (int i = 0; i < 7; i++) sum += outer(i);
    for (int i = 0; i < 2; i++) sum += leaf(i);
    return sum == 42;
}
"""


@pytest.fixture(scope="module")
def program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    built = build_c(SOURCE, name="agg", flags=("-O1", "-fno-omit-frame-pointer",
                                                "-mno-omit-leaf-frame-pointer"))
    # A private copy: some tests probe it host-wide.
    copy = tmp_path_factory.mktemp("agg") / "agg"
    shutil.copy(built, copy)
    return copy


def test_counts_are_exact(program: Path) -> None:
    with Tracer(command=[str(program)], aggregation=AggregationSpec("count")) as tracer:
        tracer.add(f"p:{program}:f_*")
        list(tracer.events(timeout=30))
        counts = tracer.aggregates().as_dict()
        _consumer, producer = tracer._session.ring.positions()  # type: ignore[union-attr]
    assert counts == {("f_one", None): 1000, ("f_two", None): 250, ("f_never", None): 0}
    assert producer == 0  # not one record reached the ring buffer


def test_counts_by_field_and_comm(program: Path) -> None:
    spec = AggregationSpec("count", by="v")
    with Tracer(command=[str(program)], aggregation=spec) as tracer:
        tracer.add(f"p:{program}:f_two v=%di:s64")
        list(tracer.events(timeout=30))
        counts = tracer.aggregates().as_dict()
    assert counts == {("f_two", v): 50 for v in range(5)}
    result = run_rawprobe("attach", "--json", "--count", "--by", "comm",
                          f"p:{program}:f_one", "--", str(program), check_status=0)
    (table, summary) = [json.loads(line) for line in result.stdout.splitlines()]
    assert table == {"counts": [{"event": "f_one", "key": "agg", "count": 1000}]}
    assert summary["summary"]["hits"] == 1000 and summary["summary"]["events"] == 0


def test_counts_match_bpftrace(program: Path) -> None:
    bpftrace = shutil.which("bpftrace")
    if bpftrace is None:
        pytest.skip("bpftrace is not installed: no second opinion")
    script = f'uprobe:{program}:f_* {{ @[probe] = count(); }}'
    out = subprocess.run([bpftrace, "-f", "json", "-e", script, "-c", str(program)],
                         capture_output=True, text=True, timeout=120).stdout
    theirs = {}
    for line in out.splitlines():
        if not line.startswith("{"):
            continue
        obj = json.loads(line)
        if obj.get("type") == "map":
            for probe, count in obj["data"]["@"].items():
                theirs[probe.rsplit(":", 1)[1]] = count
    with Tracer(command=[str(program)], aggregation=AggregationSpec("count")) as tracer:
        tracer.add(f"p:{program}:f_*")
        list(tracer.events(timeout=30))
        ours = {event: count for (event, _key), count in tracer.aggregates().as_dict().items()
                if count}
    assert ours == theirs == {"f_one": 1000, "f_two": 250}


def test_log2_histogram_buckets_sum_to_the_count(program: Path) -> None:
    spec = AggregationSpec("hist", hist=HistSpec("v"))
    with Tracer(command=[str(program)], aggregation=spec) as tracer:
        tracer.add(f"p:{program}:f_one v=%di:s64")
        list(tracer.events(timeout=30))
        (histogram,) = tracer.aggregates().histograms
    buckets = {(low, high): count for low, high, count in histogram.buckets}
    assert histogram.total == 1000
    assert buckets[(0, 1)] == 1 and buckets[(1, 2)] == 1 and buckets[(2, 4)] == 2
    assert buckets[(256, 512)] == 256 and buckets[(512, 1024)] == 488


def test_linear_histogram(program: Path) -> None:
    result = run_rawprobe("attach", "--json", "--hist", "v:linear:100:300:50",
                          f"p:{program}:f_one v=%di:s64", "--", str(program), check_status=0)
    hist = json.loads(result.stdout.splitlines()[0])["hist"][0]
    assert hist["buckets"] == [
        {"low": None, "high": 100, "count": 100},
        {"low": 100, "high": 150, "count": 50},
        {"low": 150, "high": 200, "count": 50},
        {"low": 200, "high": 250, "count": 50},
        {"low": 250, "high": 300, "count": 50},
        {"low": 300, "high": None, "count": 700},
    ]


def test_latency_lands_in_the_right_bucket(program: Path) -> None:
    spec = AggregationSpec("hist", hist=HistSpec("latency"))
    with Tracer(command=[str(program)], aggregation=spec) as tracer:
        tracer.add(f"p:{program}:nap")
        list(tracer.events(timeout=30))
        (histogram,) = tracer.aggregates().histograms
    counts = {low: count for low, _high, count in histogram.buckets if count}
    # 1 ms naps take a little over 1 ms: [2^20, 2^21) ns; 20 ms ones [2^24, 2^25) ns. On a
    # busy host a nap overruns (or its timer fires a few µs early): a bucket either side.
    short = sum(count for low, count in counts.items() if low is not None and
                1 << 19 <= low < 1 << 23)
    long = sum(count for low, count in counts.items() if low is not None and
               1 << 24 <= low < 1 << 26)
    assert (short, long) == (6, 4), counts
    assert histogram.event == "nap"


def test_counted_stacks_show_the_call_chain(program: Path) -> None:
    # The process must be alive for its stacks to be symbolized: trace it by pid.
    sleeper = build_c(SOURCE.replace("return sum == 42;", "sleep(2); return sum == 42;")
                      .replace("#include <time.h>", "#include <time.h>\n#include <unistd.h>"),
                      name="aggslow", flags=("-O1", "-fno-omit-frame-pointer",
                                             "-mno-omit-leaf-frame-pointer"))
    spec = AggregationSpec("count", stack=True)
    with Tracer(command=[str(sleeper)], aggregation=spec) as tracer:
        tracer.add(f"p:{sleeper}:leaf")
        for _ in tracer.events(timeout=1.5):
            pass
        rows = tracer.aggregates().rows
    by_stack = {row.stack[:4]: row.count for row in rows if row.stack}
    chains = {tuple(frame.split("+")[0] for frame in stack) for stack in by_stack}
    assert ("leaf", "inner", "outer", "main") in chains
    assert ("leaf", "main") in {chain[:2] for chain in chains}
    assert sum(row.count for row in rows) == 9


def test_streamed_events_carry_their_stack(program: Path) -> None:
    sleeper = build_c(SOURCE.replace("return sum == 42;", "sleep(1); return sum == 42;")
                      .replace("#include <time.h>", "#include <time.h>\n#include <unistd.h>"),
                      name="aggslow1", flags=("-O1", "-fno-omit-frame-pointer",
                                              "-mno-omit-leaf-frame-pointer"))
    result = run_rawprobe("attach", "--json", "--stack", f"p:{sleeper}:inner v=%di:s64",
                          "--", str(sleeper), check_status=0)
    events = [json.loads(line) for line in result.stdout.splitlines()[:-1]]
    assert [e["args"]["v"] for e in events] == list(range(7))
    for event in events:
        assert [frame.split("+")[0] for frame in event["stack"][:3]] == ["inner", "outer", "main"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--hist", "s"], "needs an integer field"),
        (["--count", "--by", "nope"], "no such field"),
        (["--hist", "nope"], "has no field 'nope'"),
        (["--count", "--hist", "v"], "choose one"),
        (["--by", "comm"], "add --count or --hist"),
        (["--hist", "v:linear:10:5:1"], "MIN < MAX"),
    ],
)
def test_bad_aggregations(program: Path, args: list[str], message: str) -> None:
    result = run_rawprobe("attach", *args, f"p:{program}:f_one v=%di:s64 s=+0(%si):string")
    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_glob_matching_nothing(program: Path) -> None:
    result = run_rawprobe("attach", "--count", f"p:{program}:zz_nothing*")
    assert result.returncode == 2 and "zz_nothing*" in result.stderr


def test_streamed_stack_of_a_function_without_a_frame(program: Path) -> None:
    # leaf() sets up no frame pointer: a frame walk alone would skip its caller.
    sleeper = build_c(SOURCE.replace("return sum == 42;", "sleep(1); return sum == 42;")
                      .replace("#include <time.h>", "#include <time.h>\n#include <unistd.h>"),
                      name="aggslow1", flags=("-O1", "-fno-omit-frame-pointer",
                                              "-mno-omit-leaf-frame-pointer"))
    result = run_rawprobe("attach", "--json", "--stack", f"p:{sleeper}:leaf",
                          "--", str(sleeper), check_status=0)
    chains = [tuple(frame.split("+")[0] for frame in json.loads(line)["stack"][:4])
              for line in result.stdout.splitlines()[:-1]]
    assert chains.count(("leaf", "inner", "outer", "main")) == 7
    assert [chain[:2] for chain in chains].count(("leaf", "main")) == 2

"""Aggregation in the kernel: exact counts, histogram buckets, latency, stacks."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import build_c, require_tool, run_rawprobe

from rawprobe._output.tables import HistogramSet
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
    bpftrace = require_tool("bpftrace")
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
        (["--by", "comm"], "--by groups an aggregation: add --count"),
        (["--hist", "v:linear:10:5:1"], "MIN < MAX"),
        (["--sum", "v", "--count"], "--count and --sum: choose one"),
        (["--stats", "s"], "--stats needs an integer field"),
        (["--avg", "nope"], "has no field 'nope'"),
        (["--top", "3"], "--top is for aggregations"),
        (["--count", "--by", "comm", "--by", "comm"], "'comm' is given twice"),
        (["--count", "--by", "pid,tid,cpu,comm,v"], "at most 4 keys"),
        (["--count", "--by", "s,comm,v,pid,tid"], "at most 4 keys"),
        (["--count", "--by", "comm,c"], "group by fewer"),
        (["--count", "--by", "v2"], "is an array"),
        (["--count", "--by", "comm,"], "write KEY[,KEY...]"),
    ],
)
def test_bad_aggregations(program: Path, args: list[str], message: str) -> None:
    result = run_rawprobe("attach", *args,
                          f"p:{program}:f_one v=%di:s64 s=+0(%si):string v2=+0(%si):u64[4] "
                          "c=+0(%si):char[48]")
    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_latency_needs_entry_probes(program: Path) -> None:
    result = run_rawprobe("attach", "--sum", "latency", f"r:{program}:f_one")
    assert result.returncode == 2 and "give entry probes (p:)" in result.stderr, result.stderr


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


def test_histograms_per_stack(program: Path) -> None:
    # --stack --hist: one histogram per user stack (the process must be alive for its
    # stacks to be symbolized: it sleeps at the end).
    sleeper = build_c(SOURCE.replace("return sum == 42;", "sleep(2); return sum == 42;")
                      .replace("#include <time.h>", "#include <time.h>\n#include <unistd.h>"),
                      name="aggslow", flags=("-O1", "-fno-omit-frame-pointer",
                                             "-mno-omit-leaf-frame-pointer"))
    spec = AggregationSpec("hist", hist=HistSpec("v"), stack=True)
    with Tracer(command=[str(sleeper)], aggregation=spec) as tracer:
        tracer.add(f"p:{sleeper}:leaf v=%di:s64")
        for _ in tracer.events(timeout=1.5):
            pass
        histograms = tracer.aggregates()
    assert isinstance(histograms, HistogramSet)
    chains = [(tuple(frame.split("+")[0] for frame in (h.stack or ())[:4]), h)
              for h in histograms]
    # outer(i) calls inner(i), which calls leaf(i): i = 0..6; main calls leaf(0), leaf(1)
    # (from one call site, or two if the compiler unrolled the loop).
    (deep,) = [h for chain, h in chains if chain == ("leaf", "inner", "outer", "main")]
    assert deep.total == 7 and [count for _l, _h, count in deep.buckets] == [1, 1, 2, 3]
    assert sum(h.total for chain, h in chains if chain[:2] == ("leaf", "main")) == 2
    assert histograms.to_dict()["hist"][0]["stack"][0].startswith("leaf")


def test_value_aggregations_by_stack(program: Path) -> None:
    # Stacks are symbolized through the process's mappings: it must still run at the end.
    sleeper = build_c(SOURCE.replace("return sum == 42;", "sleep(2); return sum == 42;")
                      .replace("#include <time.h>", "#include <time.h>\n#include <unistd.h>"),
                      name="aggslow", flags=("-O1", "-fno-omit-frame-pointer",
                                             "-mno-omit-leaf-frame-pointer"))
    result = run_rawprobe("attach", "--json", "--max", "v", "--by", "stack", "--duration",
                          "1", f"p:{sleeper}:leaf v=%di:s64", "--", str(sleeper),
                          check_status=0)
    rows = json.loads(result.stdout.splitlines()[0])["maxes"]
    assert all("stack" in row and "key" not in row for row in rows)
    # From outer: leaf(0..6); from main: leaf(0), leaf(1).
    deep = [row["max"] for row in rows if "outer" in " ".join(row["stack"])]
    direct = [row["max"] for row in rows if "outer" not in " ".join(row["stack"])]
    assert deep == [6] and max(direct) == 1


def test_top_in_every_interval(tmp_path: Path) -> None:
    # A program that keeps calling: the interval's figures are printed sorted, cut to N.
    source = SOURCE.replace(
        "int main(int argc, char **argv) {",
        "int main(int argc, char **argv) {\n    for (int r = 0; r < 40; r++) {"
        " for (long k = 1; k <= 5; k++) for (long i = 0; i < k; i++) f_two(k);"
        " nap(25); }\n    return 0;")  # and nothing else
    looping = build_c(source, name="agginterval", flags=("-O1",))
    result = run_rawprobe("attach", "--json", "--count", "--by", "v", "--top", "2",
                          "--interval", "0.3", f"p:{looping}:f_two v=%di:s64", "--",
                          str(looping), check_status=0)
    tables = [json.loads(line)["counts"] for line in result.stdout.splitlines()[:-1]]
    assert len(tables) >= 3
    for rows in tables:
        assert len(rows) <= 2
        assert [row["count"] for row in rows] == sorted((row["count"] for row in rows),
                                                         reverse=True)
    full = [rows for rows in tables[:-1] if len(rows) == 2]
    assert full and all([row["key"] for row in rows] == [5, 4] for rows in full)
    # Without --top, the intervals' counts add up to every hit: none falls between two.
    result = run_rawprobe("attach", "--json", "--count", "--by", "v", "--interval", "0.05",
                          f"p:{looping}:f_two v=%di:s64", "--", str(looping), check_status=0)
    *tables, summary = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(tables) >= 10
    assert sum(row["count"] for table in tables for row in table["counts"]) == (
        summary["summary"]["hits"]) == 40 * 15


def test_stats_from_the_library(program: Path) -> None:
    import rawprobe

    table = rawprobe.stats(f"p:{program}:f_two v=%di:s64", field="v", by="v",
                           command=[str(program)])
    assert table.as_dict() == {
        ("f_two", v): {"count": 50, "sum": 50 * v, "min": v, "max": v, "mean": v}
        for v in range(5)}
    assert [row.key for row in table.top(2).rows] == [4, 3]

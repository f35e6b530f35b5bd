"""Aggregations against bpftrace, on the same run.

One run of a test program with known inputs is traced at once by bpftrace (an oracle, never a
dependency) and by one ``rawprobe attach -p PID`` per aggregation, through the BPF backend and
through the tracefs backend (which aggregates in user space). The program waits for a line
on stdin until every tracer is in place, so all of them see every hit: sums, minimums,
maximums, averages and stats per key, counts by two keys, histograms by comm, the top N, and
span histograms between two USDT probes matched by a query id and between a uprobe and the
uretprobe of another function matched by thread must equal bpftrace's exactly (averages to
the integer, truncated toward zero as bpftrace prints them).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from helpers import Background, build_c, require_kernel_tracing, require_tool

SOURCE = r"""
#include <pthread.h>
#include <stdio.h>
#include <sys/sdt.h>
#include <time.h>
#define NOINLINE __attribute__((noinline))
NOINLINE long record(long size, long site, long class) {
    asm volatile("" ::: "memory"); return size + site + class; }
NOINLINE long hot(long k, long v) { asm volatile("" ::: "memory"); return k + v; }
NOINLINE long begin(long id) { asm volatile("" ::: "memory"); return id; }
NOINLINE long finish(long id) { asm volatile("" ::: "memory"); return id * 2; }
static void nap_us(long us) {
    struct timespec t = {us / 1000000, us % 1000000 * 1000}; nanosleep(&t, 0); }

static const char *names[] = {"alpha", "beta", "gamma"};
static void *worker(void *arg) {
    long t = (long)arg;
    pthread_setname_np(pthread_self(), names[t]);
    for (long i = 0; i < 40 + 17 * t; i++) {
        long size = (i * 37 + t * 11) % 300 - 150 * t - 7;  /* both signs */
        long class = size < 0 ? 0 : size < 100 ? 1 : 2;
        record(size, i % (3 + t), class);
    }
    return NULL;
}

int main(void) {
    char go[8];
    if (!fgets(go, sizeof go, stdin)) return 2;
    for (long t = 0; t < 3; t++) {  /* one after the other: three comms */
        pthread_t thread;
        pthread_create(&thread, NULL, worker, (void *)t);
        pthread_join(thread, NULL);
    }
    for (long k = 1; k <= 8; k++)  /* k is called 3k + 1 times: no two counts tie */
        for (long i = 0; i <= 3 * k; i++) hot(k, k * 100 + i * (9 - k));
    const char *kinds[] = {"select", "insert"};
    for (long round = 0; round < 2; round++) {  /* queries overlap; they end in reverse */
        for (long id = 1; id <= 4; id++) {
            long query = id + 10 * round;
            const char *kind = (id & 1) ? kinds[1] : kinds[0];
            DTRACE_PROBE2(db, query__start, query, kind);
        }
        for (long id = 4; id >= 1; id--) {
            nap_us(1500);
            long query = id + 10 * round;
            DTRACE_PROBE1(db, query__done, query);
        }
    }
    long naps[] = {1500, 3000, 3000, 6000, 12000, 1500};
    for (long i = 0; i < 6; i++) { begin(i); nap_us(naps[i]); finish(i); }
    return 0;
}
"""

BPFTRACE = r"""
uprobe:{T}:record {{
    @sum[arg1] = sum((int64)arg0); @min[arg1] = min((int64)arg0);
    @max[arg1] = max((int64)arg0); @avg[arg1] = avg((int64)arg0);
    @stats[arg1] = stats((int64)arg0); @two[comm, arg2] = count();
    @hist[comm] = hist((int64)arg0);
}}
uprobe:{T}:hot {{ @top[arg0] = count(); @topsum[arg0] = sum(arg1); }}
usdt:{T}:db:query__start {{ @qs[arg0] = nsecs; }}
usdt:{T}:db:query__done /@qs[arg0]/ {{ @query = hist(nsecs - @qs[arg0]); delete(@qs[arg0]); }}
uprobe:{T}:begin {{ @bs[tid] = nsecs; }}
uretprobe:{T}:finish /@bs[tid]/ {{ @call = hist(nsecs - @bs[tid]); delete(@bs[tid]); }}
END {{ print(@top, 3); print(@topsum, 2); clear(@top); clear(@topsum); clear(@qs); clear(@bs); }}
"""


def _known_sizes() -> dict[int, list[int]]:
    """The sizes record() is called with, by site: what worker() in SOURCE computes."""
    sizes: dict[int, list[int]] = {}
    for t in range(3):
        for i in range(40 + 17 * t):
            sizes.setdefault(i % (3 + t), []).append((i * 37 + t * 11) % 300 - 150 * t - 7)
    return sizes

RECORD = "p:{T}:record size=%di:s64 site=%si:s64 class=%dx:s64"
HOT = "p:{T}:hot k=%di:s64 v=%si:s64"
RUNS = {
    "sum": ["--sum", "size", "--by", "site", RECORD],
    "min": ["--min", "size", "--by", "site", RECORD],
    "max": ["--max", "size", "--by", "site", RECORD],
    "avg": ["--avg", "size", "--by", "site", RECORD],
    "stats": ["--stats", "size", "--by", "site", RECORD],
    "two": ["--count", "--by", "comm,class", RECORD],
    "hist": ["--hist", "size", "--by", "comm", RECORD],
    "top": ["--count", "--by", "k", "--top", "3", HOT],
    "topsum": ["--sum", "v", "--by", "k", "--top", "2", HOT],
    "query": ["--hist", "latency", "--span", "usdt:{T}:db:query__start id=$arg1",
              "usdt:{T}:db:query__done id=$arg1", "--key", "id"],
    "call": ["--hist", "latency", "--span", "p:{T}:begin", "r:{T}:finish"],
}


@pytest.fixture(scope="module")
def program() -> Path:
    return build_c(SOURCE, name="aggoracle", flags=("-O1", "-pthread"))


def _bpftrace_maps(stdout: str) -> dict[str, Any]:
    maps: dict[str, Any] = {}
    for line in stdout.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record.get("type") in ("map", "stats", "hist"):
                maps.update(record["data"])
    return maps


def _run_all(program: Path, backend: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Trace one run of the program with bpftrace and every rawprobe run; their outputs."""
    require_kernel_tracing()
    bpftrace = require_tool("bpftrace")
    target = subprocess.Popen([str(program)], stdin=subprocess.PIPE, text=True)
    pid = str(target.pid)
    tracers: dict[str, Background] = {}
    oracle = subprocess.Popen([bpftrace, "-f", "json", "-p", pid, "-e",
                               BPFTRACE.format(T=program)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert oracle.stdout is not None
        attached = oracle.stdout.readline()  # {"type": "attached_probes", ...}
        assert "attached_probes" in attached, attached + oracle.stderr.read()  # type: ignore[union-attr]
        for name, args in RUNS.items():
            tracers[name] = Background("attach", "--json", "--backend", backend, "-p", pid,
                                       *(arg.format(T=program) for arg in args))
        for tracer in tracers.values():
            tracer.ready(timeout=60)
        assert target.stdin is not None
        target.stdin.write("go\n")
        target.stdin.close()
        assert target.wait(timeout=60) == 0
        out, _err = oracle.communicate(timeout=60)
        theirs = _bpftrace_maps(attached + out)
        ours = {}
        for name, tracer in tracers.items():
            status, stdout, stderr = tracer.finish(timeout=60)
            assert status == 0, stderr
            ours[name] = json.loads(stdout.splitlines()[0])
        return ours, theirs
    finally:
        for process in [target, oracle, *(t.proc for t in tracers.values())]:
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.fixture(scope="module", params=["bpf", "tracefs"])
def traced(request: pytest.FixtureRequest, program: Path) -> tuple[dict[str, Any],
                                                                    dict[str, Any]]:
    return _run_all(program, request.param)


def _by_key(rows: list[dict[str, Any]], figure: str) -> dict[str, Any]:
    """bpftrace's map shape: key as text (several keys comma-joined) -> figure."""
    result = {}
    for row in rows:
        key = row["key"]
        text = ",".join(map(str, key)) if isinstance(key, list) else str(key)
        result[text] = row[figure]
    return result


def _buckets(rows: list[dict[str, Any]]) -> dict[tuple[int | None, int | None], int]:
    """Non-empty buckets as (low, high) -> count, high exclusive; bpftrace's max is inclusive."""
    result = {}
    for row in rows:
        if not row["count"]:
            continue
        if "low" in row:
            result[(row["low"], row["high"])] = row["count"]
        else:
            result[(row.get("min"), row["max"] + 1 if "max" in row else None)] = row["count"]
    return result


def _truncated_mean(values: list[int]) -> int:
    mean = abs(sum(values)) // len(values)
    return mean if sum(values) >= 0 else -mean


KNOWN = {"sum": sum, "min": min, "max": max, "avg": _truncated_mean}


@pytest.mark.parametrize("kind", ["sum", "min", "max", "avg"])
def test_value_per_key_equals_bpftrace(traced: Any, kind: str) -> None:
    ours, theirs = traced
    shape = {"sum": "sums", "min": "mins", "max": "maxes", "avg": "avgs"}[kind]
    mine = _by_key(ours[kind][shape], kind)
    assert mine == {str(site): KNOWN[kind](sizes) for site, sizes in _known_sizes().items()}
    if kind == "max":
        # bpftrace 0.17 never writes a max() below 0, the value of a key it has not seen
        # (bpftrace/bpftrace#892, fixed in later releases): site 4 has only negative sizes.
        assert mine["4"] < 0
        mine = {site: value for site, value in mine.items() if value > 0}
    assert mine == theirs[f"@{kind}"]


def test_stats_per_key_equals_bpftrace(traced: Any) -> None:
    ours, theirs = traced
    rows = ours["stats"]["stats"]
    assert {str(row["key"]): {"count": row["count"], "average": row["mean"],
                              "total": row["sum"]} for row in rows} == theirs["@stats"]
    # bpftrace's stats() has no min and max: they are the --min and --max runs' (above).
    assert _by_key(rows, "min") == _by_key(ours["min"]["mins"], "min")
    assert _by_key(rows, "max") == _by_key(ours["max"]["maxes"], "max")
    # Some means are negative and not whole: truncated toward zero, as bpftrace does.
    assert any(row["sum"] < 0 and row["sum"] % row["count"] for row in rows)


def test_counts_by_two_keys_equal_bpftrace(traced: Any) -> None:
    ours, theirs = traced
    rows = ours["two"]["counts"]
    assert all(isinstance(row["key"], list) and len(row["key"]) == 2 for row in rows)
    assert _by_key(rows, "count") == theirs["@two"]
    assert {row["key"][0] for row in rows} == {"alpha", "beta", "gamma"}


def test_histograms_by_comm_equal_bpftrace(traced: Any) -> None:
    ours, theirs = traced
    hists = {row["key"]: _buckets(row["buckets"]) for row in ours["hist"]["hist"]}
    assert hists == {comm: _buckets(rows) for comm, rows in theirs["@hist"].items()}
    assert (None, 0) in hists["gamma"]  # negative values, in bpftrace's (..., -1] bucket


def test_top_n_equals_bpftrace(traced: Any) -> None:
    ours, theirs = traced
    assert _by_key(ours["top"]["counts"], "count") == theirs["@top"] == {
        "8": 25, "7": 22, "6": 19}
    assert [row["key"] for row in ours["top"]["counts"]] == [8, 7, 6]  # largest first
    assert _by_key(ours["topsum"]["sums"], "sum") == theirs["@topsum"]
    assert len(theirs["@topsum"]) == 2


def _same_latencies(ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> None:
    """Latency histograms of one run by two tracers are equal, but for at most one span moved
    to the next bucket: each tracer reads the clock in its own handler, microseconds apart,
    and on a loaded host a sleep can overshoot onto a power of two (a span one tracer sees at
    4194300 ns the other may see at 4194310)."""
    mine, other = _buckets(ours), _buckets(theirs)
    if mine == other:
        return
    lows = sorted({low or 0 for low, _ in [*mine, *other]})
    by_low = [{(low or 0): count for (low, _), count in side.items()} for side in (mine, other)]
    below = [0, 0]
    moved = 0
    for low in lows:
        for side in (0, 1):
            below[side] += by_low[side].get(low, 0)
        moved += abs(below[0] - below[1])
    assert below[0] == below[1] and moved <= 1, (mine, other)


def test_span_between_two_usdt_probes_equals_bpftrace(traced: Any) -> None:
    ours, theirs = traced
    (hist,) = ours["query"]["hist"]
    assert hist["event"] == "query__done"
    _same_latencies(hist["buckets"], theirs["@query"])
    assert sum(row["count"] for row in hist["buckets"]) == 8


def test_span_from_a_uprobe_to_another_functions_uretprobe_equals_bpftrace(
        traced: Any) -> None:
    ours, theirs = traced
    (hist,) = ours["call"]["hist"]
    _same_latencies(hist["buckets"], theirs["@call"])
    assert sum(row["count"] for row in hist["buckets"]) == 6

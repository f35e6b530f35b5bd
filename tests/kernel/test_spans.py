"""Spans between two probes (``--span START END``), in both backends: streamed with their
duration, keys read at START, and what becomes of spans that never end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers import build_c, run_rawprobe

import rawprobe

BACKENDS = ("bpf", "tracefs")

SOURCE = r"""
#include <stdlib.h>
#include <sys/sdt.h>
#include <time.h>
#define NOINLINE __attribute__((noinline))
static void nap_us(long us) { struct timespec t = {0, us * 1000}; nanosleep(&t, 0); }
NOINLINE long begin(long id) { asm volatile("" ::: "memory"); return id; }
NOINLINE long finish(long id) { asm volatile("" ::: "memory"); return id; }
NOINLINE long nested(long depth) {  /* begin() twice before one finish(): one replaced */
    begin(depth); if (depth) nested(depth - 1); return finish(depth); }
int main(int argc, char **argv) {
    long lost = argc > 1 ? atol(argv[1]) : 0;
    const char *kinds[] = {"select", "insert"};
    for (long id = 1; id <= 4; id++) {
        const char *kind = (id & 1) ? kinds[1] : kinds[0];
        DTRACE_PROBE2(db, query__start, id, kind);
    }
    for (long id = 4; id >= 1; id--) { nap_us(2000); DTRACE_PROBE1(db, query__done, id); }
    DTRACE_PROBE1(db, query__done, 77);           /* never started */
    for (long id = 100; id < 100 + lost; id++) {  /* started, never done */
        const char *kind = kinds[0];
        DTRACE_PROBE2(db, query__start, id, kind);
    }
    nested(1);
    return 0;
}
"""


@pytest.fixture(scope="module")
def program() -> Path:
    return build_c(SOURCE, name="spans", flags=("-O1",))


def _start(program: Path) -> str:
    return f"usdt:{program}:db:query__start id=$arg1 kind=$arg2:string"


def _done(program: Path) -> str:
    return f"usdt:{program}:db:query__done id=$arg1"


def _json(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines()]


@pytest.mark.parametrize("backend", BACKENDS)
def test_streamed_spans_carry_their_duration(program: Path, backend: str) -> None:
    result = run_rawprobe("attach", "--json", "--backend", backend, "--span", _start(program),
                          _done(program), "--key", "id", "--", str(program), check_status=0)
    *events, summary = _json(result.stdout)
    assert [(e["event"], e["args"]["id"]) for e in events] == [
        ("query__done", 4), ("query__done", 3), ("query__done", 2), ("query__done", 1)]
    latencies = [e["args"]["latency"] for e in events]
    # All four start together; each ends one 2 ms nap after the one before.
    assert all(2_000_000 * n <= latency for n, latency in enumerate(latencies, start=1))
    assert latencies == sorted(latencies) and latencies[-1] < 2_000_000_000, latencies
    (span,) = summary["summary"]["spans"]
    assert span == {"start": "query__start", "end": "query__done", "started": 4, "ended": 4,
                    "unmatched": 1, "replaced": 0, "open": 0, "evicted": 0}
    assert "spans query__start -> query__done: 4 started, 4 ended, 1 ends without a start" in (
        result.stderr)


@pytest.mark.parametrize("backend", BACKENDS)
def test_span_keys_read_at_start(program: Path, backend: str) -> None:
    # kind is only START's: it is read there and kept until the span's END.
    result = run_rawprobe("attach", "--json", "--backend", backend, "--stats", "latency",
                          "--by", "kind", "--span", _start(program), _done(program), "--key",
                          "id", "--", str(program), check_status=0)
    table = _json(result.stdout)[0]
    rows = {row["key"]: row for row in table["stats"]}
    assert set(rows) == {"select", "insert"}
    assert rows["select"]["count"] == rows["insert"]["count"] == 2
    for row in rows.values():
        assert row["min"] <= row["mean"] <= row["max"]
        assert row["sum"] == pytest.approx(row["mean"] * row["count"], abs=row["count"])
    # The four queries start together and end in reverse, so id 1's span is the longest,
    # then 2, 3, 4: insert (ids 1 and 3) has the longest and the third; select (2 and 4)
    # the second and the shortest.
    assert rows["insert"]["max"] > rows["select"]["max"] > rows["insert"]["min"] > (
        rows["select"]["min"]) >= 2_000_000


@pytest.mark.parametrize("backend", BACKENDS)
def test_spans_that_never_end_are_counted_and_evicted(program: Path, backend: str) -> None:
    # 70,000 queries start and never end: more than the spans map holds (65,536). The
    # tracefs backend matches spans in user space: every sample must reach it.
    result = run_rawprobe("attach", "--json", "--backend", backend, "--ring-size",
                          str(64 << 20), "--count", "--span",
                          _start(program), _done(program), "--key", "id", "--", str(program),
                          "70000", check_status=0, timeout=300)
    counts, summary = _json(result.stdout)
    assert counts == {"counts": [{"event": "query__done", "count": 4}]}
    (span,) = summary["summary"]["spans"]
    assert span["started"] == 70004 and span["ended"] == 4 and span["unmatched"] == 1
    assert span["open"] + span["evicted"] == 70000
    assert span["evicted"] >= 70000 - 65536 and span["open"] <= 65536
    assert "evicted (more spans open at once than the map holds" in result.stderr


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_start_that_replaces_an_open_span_is_counted(program: Path, backend: str) -> None:
    # nested(1): begin(1), begin(0) on the same thread before any finish(): by thread, the
    # second start replaces the first, whose end then finds nothing.
    result = run_rawprobe("attach", "--json", "--backend", backend, "--count", "--span",
                          f"p:{program}:begin", f"p:{program}:finish", "--", str(program),
                          check_status=0)
    (span,) = _json(result.stdout)[-1]["summary"]["spans"]
    assert span == {"start": "begin", "end": "finish", "started": 2, "ended": 1,
                    "unmatched": 1, "replaced": 1, "open": 0, "evicted": 0}


def test_span_from_the_library(program: Path) -> None:
    spec = rawprobe.AggregationSpec("hist", hist=rawprobe.HistSpec("latency"))
    with rawprobe.Tracer(command=[str(program)], aggregation=spec) as tracer:
        names = tracer.add(rawprobe.Span(_start(program), _done(program), key="id"))
        assert names == ["query__start", "query__done"]
        list(tracer.events(timeout=30))
        histograms = tracer.aggregates()
        stats = tracer.stats()
    assert isinstance(histograms, rawprobe.HistogramSet)
    assert histograms["query__done"].total == 4
    (span,) = stats.spans
    assert (span.started, span.ended, span.unmatched) == (4, 4, 1)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--key", "id"], "use it with --span"),
        (["--span", "{start}", "{done}", "--key", "nope"], "has no field 'nope'"),
        (["--span", "{start}", "{done}", "--key", "kind"], "spans match on an integer"),
        (["--span", "{start}", "{done}", "p:{program}:begin"], "give no other PROBE"),
        (["--span", "{start}", "{done}", "--sum", "kind"], "has no field 'kind'"),
        (["--span", "{start}", "{done}", "--count", "--by", "nope"], "no such field"),
    ],
)
def test_bad_spans(program: Path, args: list[str], message: str) -> None:
    words = {"start": _start(program), "done": _done(program), "program": program}
    result = run_rawprobe("attach", *(arg.format(**words) for arg in args),
                          *([] if "--span" in args else [f"p:{program}:begin"]))
    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_a_refused_span_leaves_the_tracer_as_it_was(program: Path) -> None:
    # START is planned before END is refused (its --sum field is not END's): START goes too.
    spec = rawprobe.AggregationSpec("sum", field="kind")
    with rawprobe.Tracer(aggregation=spec) as tracer:
        with pytest.raises(rawprobe.UsageError, match="has no field 'kind'"):
            tracer.add(rawprobe.Span(_start(program), _done(program), key="id"))
        assert tracer.event_names() == []
        tracer.add(f"p:{program}:begin kind=%di:s64")
        assert tracer.event_names() == ["begin"]

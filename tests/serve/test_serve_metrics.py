"""Counts and buckets as Prometheus families, checked through prometheus_client's own text
format writer and parser (what Prometheus reads)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from rawprobe._probe.aggregations import HistSpec, bucket_of
from rawprobe._serve.config import MetricSpec
from rawprobe._serve.metrics import OTHER, MetricShape, health_families


class _One:
    def __init__(self, family: Any) -> None:
        self.family = family

    def collect(self) -> Iterator[Any]:
        yield self.family


def exposed(family: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The family written as Prometheus text and read back: {(sample, labels): value}."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_One(family))  # type: ignore[arg-type]
    text = generate_latest(registry).decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for parsed in text_string_to_metric_families(text) for sample in parsed.samples}


def buckets_of(values: list[int], spec: HistSpec) -> dict[int, int]:
    cells: dict[int, int] = {}
    for value in values:
        cells[bucket_of(spec, value)] = cells.get(bucket_of(spec, value), 0) + 1
    return cells


def test_counts_are_counters_with_the_event_and_by_labels() -> None:
    shape = MetricShape(MetricSpec("count", ("p:libc:malloc",), by="comm"),
                        "rawprobe_malloc_calls", 100)
    samples = exposed(shape.counter({("malloc", "bash"): 7, ("malloc", "make"): 3}))
    assert samples == {
        ("rawprobe_malloc_calls_total", (("comm", "bash"), ("event", "malloc"))): 7,
        ("rawprobe_malloc_calls_total", (("comm", "make"), ("event", "malloc"))): 3,
    }


def test_log2_buckets_become_le_bounds_holding_the_largest_integer_of_each_bucket() -> None:
    spec = HistSpec("size")
    shape = MetricShape(MetricSpec("hist", ("w",), hist=spec), "rawprobe_malloc_size", 100)
    values = [100] * 20 + [3000] * 17 + [0]
    samples = exposed(shape.histogram({("malloc", None): buckets_of(values, spec)}))
    bucket = {labels[1][1]: value for (name, labels), value in samples.items()
              if name.endswith("_bucket")}
    # Every log2 bucket from 0 to the highest seen, cumulative, and +Inf.
    assert list(bucket) == ["0", "1", "3", "7", "15", "31", "63", "127", "255", "511", "1023",
                            "2047", "4095", "+Inf"]
    assert bucket["0"] == 1 and bucket["63"] == 1 and bucket["127"] == 21
    assert bucket["2047"] == 21 and bucket["4095"] == 38 and bucket["+Inf"] == 38
    assert samples[("rawprobe_malloc_size_count", (("event", "malloc"),))] == 38
    # The kernel does not add the values up: no invented sum.
    assert not any(name.endswith("_sum") for name, _labels in samples)


def test_latency_is_published_in_seconds() -> None:
    spec = HistSpec("latency")
    shape = MetricShape(MetricSpec("hist", ("w",), hist=spec),
                        "rawprobe_handle_latency_seconds", 100)
    samples = exposed(shape.histogram({("handle", None): buckets_of([1500, 3000], spec)}))
    bounds = {float(labels[1][1]): value for (name, labels), value in samples.items()
              if name.endswith("_bucket")}
    assert bounds[2047e-9] == 1 and bounds[4095e-9] == 2


def test_linear_buckets_and_values_below_and_above_the_range() -> None:
    spec = HistSpec("size", (0, 100, 10))
    shape = MetricShape(MetricSpec("hist", ("w",), hist=spec), "rawprobe_x_size", 100)
    samples = exposed(shape.histogram({("x", None): buckets_of([-5, 15, 15, 250], spec)}))
    bucket = {labels[1][1]: value for (name, labels), value in samples.items()
              if name.endswith("_bucket")}
    assert bucket["-1"] == 1  # below the range: values <= min - 1
    assert bucket["19"] == 3 and bucket["+Inf"] == 4


def test_every_series_keeps_the_widest_range_of_buckets_seen() -> None:
    spec = HistSpec("size")
    shape = MetricShape(MetricSpec("hist", ("w",), hist=spec), "rawprobe_x_size", 100)
    first = exposed(shape.histogram({("x", None): buckets_of([1000], spec)}))
    later = exposed(shape.histogram({("x", None): buckets_of([1000], spec),
                                     ("y", None): buckets_of([5], spec)}))
    first_bounds = {labels for (name, labels) in first if name.endswith("_bucket")}
    x_bounds = {labels for (name, labels) in later
                if name.endswith("_bucket") and ("event", "x") in labels}
    y_bounds = {tuple((k, "x" if k == "event" else v) for k, v in labels)
                for (name, labels) in later
                if name.endswith("_bucket") and ("event", "y") in labels}
    assert first_bounds == x_bounds == y_bounds


def test_the_label_cap_keeps_the_first_values_for_good_and_folds_the_rest() -> None:
    shape = MetricShape(MetricSpec("count", ("w",), by="comm"), "rawprobe_f_calls", 2)
    samples = exposed(shape.counter({("f", "a"): 10, ("f", "b"): 5, ("f", "c"): 1}))
    by_comm = {dict(labels)["comm"]: value for (_name, labels), value in samples.items()}
    assert by_comm == {"a": 10, "b": 5, OTHER: 1}
    assert shape.folded_hits == 1
    # A value counted more later does not displace the ones kept: series stay continuous.
    samples = exposed(shape.counter({("f", "a"): 11, ("f", "b"): 5, ("f", "c"): 1,
                                     ("f", "d"): 100}))
    by_comm = {dict(labels)["comm"]: value for (_name, labels), value in samples.items()}
    assert by_comm == {"a": 11, "b": 5, OTHER: 101}
    assert shape.folded_hits == 101


def test_health_families() -> None:
    shape = MetricShape(MetricSpec("count", ("w",)), "rawprobe_f_calls", 10)
    families = health_families([shape], {"f_calls": {"f": (12, 2, 1)}}, {"f_calls": 1},
                               {("f_calls", "plant"): 1}, {"f_calls": 1},
                               {"version": "1.0", "python": "3.11", "kernel": "6.1"})
    samples = {}
    for family in families:
        samples.update(exposed(family))
    labels = (("event", "f"), ("metric", "f_calls"))
    assert samples[("rawprobe_probe_hits_total", labels)] == 12
    assert samples[("rawprobe_probe_filtered_total", labels)] == 2
    assert samples[("rawprobe_probe_lost_total", labels)] == 1
    assert samples[("rawprobe_probes_planted", (("metric", "f_calls"),))] == 1
    assert samples[("rawprobe_replants_total", (("metric", "f_calls"),))] == 1
    assert samples[("rawprobe_errors_total", (("metric", "f_calls"), ("stage", "plant")))] == 1
    assert samples[("rawprobe_build_info", (("kernel", "6.1"), ("python", "3.11"),
                                            ("version", "1.0")))] == 1

"""Aggregations as Prometheus metric families, pure: counts and buckets in, families out.

- A count is a counter, ``NAME_total{event, BY}``.
- A histogram is a Prometheus histogram: one ``NAME_bucket{le}`` series per bucket, cumulative,
  and ``NAME_count``. rawprobe's buckets hold integers, ``[low, high)``; a bucket's ``le`` is
  the largest integer it holds, ``high - 1`` (``le`` is inclusive), so ``histogram_quantile``
  answers with a bound no value in the bucket exceeds. Latency is measured in nanoseconds and
  published in seconds. The kernel counts values per bucket but does not add them up, so there
  is no ``NAME_sum`` (a mean would be invented from bucket midpoints).
- Every series of a metric has the same ``le`` bounds: the range of buckets seen so far only
  grows, so ``rate()`` over a bucket never starts half-way.

Label cardinality is capped per metric: the first ``max_label_values`` values of the ``--by``
key (most counted first, within one scrape) keep their own series for good; hits under any
other value are added to a series labelled :data:`OTHER` and counted in
``rawprobe_folded_hits_total`` (a counter: the set of values kept only grows, so what is folded
only grows too).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.samples import Sample

from .._probe.aggregations import bucket_bounds
from .config import MetricSpec

__all__ = ["OTHER", "MetricShape", "health_families"]

OTHER = "[other]"  # the label value of what the cap folded

Counts = Mapping[tuple[str, Any], int]  # (event, key) -> count
Buckets = Mapping[tuple[str, Any], Mapping[int, int]]  # (event, key) -> {bucket: count}


class MetricShape:
    """One metric's name, labels, and what it keeps from scrape to scrape (the label values
    admitted under the cap, the range of buckets shown).

    Args:
        spec: The metric.
        name: Its Prometheus name (:meth:`MetricSpec.family_name`).
        max_label_values: How many values of the ``--by`` key keep their own series.
    """

    def __init__(self, spec: MetricSpec, name: str, max_label_values: int) -> None:
        self.spec = spec
        self.name = name
        self.short_name = name.removeprefix("rawprobe_")
        self.max_label_values = max_label_values
        self.labels = ["event"] + ([spec.by] if spec.by else [])
        self.admitted: set[Any] = set()
        self.folded_hits = 0
        self._buckets: tuple[int, int] | None = None  # the lowest and highest bucket shown

    def _fold_keys(self, totals: Mapping[Any, int]) -> set[Any]:
        """Admit new key values while there is room (most counted first); return the ones
        left out."""
        if self.spec.by is None:
            return set()
        for key in sorted(set(totals) - self.admitted, key=lambda k: (-totals[k], str(k))):
            if len(self.admitted) >= self.max_label_values:
                break
            self.admitted.add(key)
        return set(totals) - self.admitted

    def _labels(self, event: str, key: Any, folded: set[Any]) -> tuple[str, ...]:
        if self.spec.by is None:
            return (event,)
        return (event, OTHER if key in folded else str(key))

    def counter(self, counts: Counts) -> CounterMetricFamily:
        """The counts as a counter family (folding keys over the cap)."""
        totals: dict[Any, int] = {}
        for (_event, key), count in counts.items():
            totals[key] = totals.get(key, 0) + count
        folded = self._fold_keys(totals)
        self.folded_hits = sum(totals[key] for key in folded)
        merged: dict[tuple[str, ...], int] = {}
        for (event, key), count in counts.items():
            labels = self._labels(event, key, folded)
            merged[labels] = merged.get(labels, 0) + count
        family = CounterMetricFamily(self.name, self._help(), labels=self.labels)
        for labels, count in sorted(merged.items()):
            family.add_metric(list(labels), count)
        return family

    def histogram(self, buckets: Buckets) -> HistogramMetricFamily:
        """The buckets as a histogram family (folding keys over the cap)."""
        hist = self.spec.hist
        assert hist is not None
        totals: dict[Any, int] = {}
        for (_event, key), cells in buckets.items():
            totals[key] = totals.get(key, 0) + sum(cells.values())
        folded = self._fold_keys(totals)
        self.folded_hits = sum(totals[key] for key in folded)
        merged: dict[tuple[str, ...], dict[int, int]] = {}
        for (event, key), cells in buckets.items():
            slot = merged.setdefault(self._labels(event, key, folded), {})
            for bucket, count in cells.items():
                slot[bucket] = slot.get(bucket, 0) + count
        seen = [bucket for cells in merged.values() for bucket, count in cells.items() if count]
        low, high = self._buckets or (0, 0)
        if seen:
            low, high = min(low, *seen), max(high, *seen)
        self._buckets = (low, high)
        bounds = [self._le(bucket) for bucket in range(low, high + 1)]
        family = HistogramMetricFamily(self.name, self._help(), labels=self.labels)
        for labels, cells in sorted(merged.items()):
            running, series = 0, []
            for bucket, le in zip(range(low, high + 1), bounds, strict=True):
                running += cells.get(bucket, 0)
                series.append((le, running))
            total = sum(cells.values())
            if not series or series[-1][0] != "+Inf":
                series.append(("+Inf", total))
            family.add_metric(list(labels), series, sum_value=None)
            # No sum (the kernel does not add values up), but the count is known.
            family.samples.append(Sample(self.name + "_count", dict(zip(self.labels, labels,
                                                                          strict=True)),
                                         total, None, None))
        return family

    def _le(self, bucket: int) -> str:
        hist = self.spec.hist
        assert hist is not None
        _low, high = bucket_bounds(hist, bucket)
        if high is None:
            return "+Inf"
        largest = high - 1  # the largest integer in [low, high)
        return repr(largest / 1e9) if hist.is_latency else str(largest)

    def _help(self) -> str:
        spec = self.spec
        what = ("calls" if spec.hist is None
                else "latency, entry to return, in seconds" if spec.is_latency
                else f"values of {spec.hist.field}")
        by = f" by {spec.by}" if spec.by else ""
        return f"rawprobe {spec.describe()}: {what}{by} ({' '.join(spec.probes)})"


def health_families(
    shapes: Iterable[MetricShape],
    probes: Mapping[str, Mapping[str, tuple[int, int, int]]],
    planted: Mapping[str, int],
    errors: Mapping[tuple[str, str], int],
    replants: Mapping[str, int],
    build: Mapping[str, str],
) -> list[Metric]:
    """rawprobe's own health.

    Args:
        shapes: Every metric.
        probes: Per metric (short name), per event: hits, filtered, lost.
        planted: Per metric: uprobes planted now.
        errors: Per (metric, stage): errors so far (a re-plant that failed, a read that did).
        replants: Per metric: re-plants after a probed file was replaced.
        build: The build-info labels (version, python, kernel).
    """
    hits = CounterMetricFamily("rawprobe_probe_hits", "Times a probe fired in traced "
                               "processes", labels=["metric", "event"])
    filtered = CounterMetricFamily("rawprobe_probe_filtered", "Hits a metric's filter "
                                   "rejected", labels=["metric", "event"])
    lost = CounterMetricFamily("rawprobe_probe_lost", "Hits that could not be counted (the "
                               "aggregation map full, a value unreadable)",
                               labels=["metric", "event"])
    for metric, events in sorted(probes.items()):
        for event, (hit, rejected, missed) in sorted(events.items()):
            hits.add_metric([metric, event], hit)
            filtered.add_metric([metric, event], rejected)
            lost.add_metric([metric, event], missed)
    planted_family = GaugeMetricFamily("rawprobe_probes_planted", "Uprobes planted now",
                                       labels=["metric"])
    folded = CounterMetricFamily("rawprobe_folded_hits", "Hits counted under the label value "
                                 f"{OTHER} because the metric reached its label cap",
                                 labels=["metric"])
    replanted = CounterMetricFamily("rawprobe_replants", "Re-plants after a probed file was "
                                    "replaced on disk", labels=["metric"])
    for shape in shapes:
        planted_family.add_metric([shape.short_name], planted.get(shape.short_name, 0))
        folded.add_metric([shape.short_name], shape.folded_hits)
        replanted.add_metric([shape.short_name], replants.get(shape.short_name, 0))
    failures = CounterMetricFamily("rawprobe_errors", "Errors: re-plants that failed "
                                   "(stage plant), aggregations that could not be read (read)",
                                   labels=["metric", "stage"])
    for (metric, stage), count in sorted(errors.items()):
        failures.add_metric([metric, stage], count)
    info = GaugeMetricFamily("rawprobe_build_info", "rawprobe's version, and the Python and "
                             "kernel it runs on", labels=sorted(build))
    info.add_metric([build[key] for key in sorted(build)], 1)
    return [hits, filtered, lost, planted_family, folded, replanted, failures, info]

"""``rawprobe serve``: aggregations in the kernel, published as Prometheus metrics.

:class:`Exporter` is a ``prometheus_client`` collector over tracers that count and bucket in
BPF maps, read at scrape time; :mod:`.config` reads metric definitions (command line or TOML);
:mod:`.metrics` turns counts and buckets into metric families.
"""

from __future__ import annotations

from .config import MetricSpec, ServeConfig, load_config, parse_listen
from .exporter import Exporter

__all__ = ["Exporter", "MetricSpec", "ServeConfig", "load_config", "parse_listen"]

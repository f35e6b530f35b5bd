"""What the exporter serves: metric definitions from the command line or a TOML file.

A metric is one aggregation (a count, or a histogram of a field or of latency) over one or more
probe words, optionally grouped by a key. Its Prometheus name is ``rawprobe_`` + its name:
``NAME_total`` for counts, ``NAME`` for a field's histogram, ``NAME_seconds`` for latency (the
base unit Prometheus names use). The name defaults to the event's name and what is measured
(``malloc_calls``, ``malloc_size``, ``handle_latency``); a metric whose probes give more than one
event (a glob, several words) is named by hand.

The configuration file (TOML)::

    listen = "127.0.0.1:9435"       # HOST:PORT (":9435" for every interface)
    check_interval = 2.0            # seconds between looks for replaced files
    max_label_values = 1000         # label values kept per metric; the rest become "[other]"

    [[metric]]
    count = true
    by = "comm"
    probes = ["p:libc:malloc"]

    [[metric]]
    name = "malloc_bytes"
    hist = "size"                   # or "latency", or "size:linear:0:4096:256"
    filter = "size > 0"
    probes = ["p:libc:malloc size=%di:u64"]
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._errors import UsageError
from .._probe.aggregations import AggregationSpec, HistSpec, parse_hist

__all__ = [
    "DEFAULT_CHECK_INTERVAL",
    "DEFAULT_LISTEN",
    "DEFAULT_MAX_LABEL_VALUES",
    "MetricSpec",
    "ServeConfig",
    "load_config",
    "parse_listen",
]

DEFAULT_LISTEN = "127.0.0.1:9435"  # 9435: ebpf_exporter's port, the same kind of exporter
DEFAULT_CHECK_INTERVAL = 2.0
DEFAULT_MAX_LABEL_VALUES = 1000

_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# Labels every metric has, or that Prometheus reserves for histograms.
_RESERVED_LABELS = ("event", "le", "quantile", "job", "instance")


@dataclass(frozen=True)
class MetricSpec:
    """One metric: an aggregation over probe words.

    Attributes:
        kind: ``count`` or ``hist``.
        probes: The probe words (at least one).
        hist: For ``hist``: what to measure (a field, or ``latency``).
        by: A label: ``comm``, ``pid``, ``tid``, ``cpu`` or a field name.
        filter: A filter expression, run in the kernel.
        name: The metric's name (``rawprobe_`` and a unit suffix are added); None: from the
            event's name.
    """

    kind: str
    probes: tuple[str, ...]
    hist: HistSpec | None = None
    by: str | None = None
    filter: str | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("count", "hist"):
            raise UsageError(f"metric kind {self.kind!r}: use count or hist")
        if (self.kind == "hist") != (self.hist is not None):
            raise UsageError("a histogram metric needs a field (hist = FIELD or latency)")
        if not self.probes:
            raise UsageError(f"the {self.describe()} metric has no probes: add probe words")
        if self.by is not None and (not _NAME.fullmatch(self.by) or self.by.startswith("__")
                                    or self.by in _RESERVED_LABELS):
            raise UsageError(
                f"--by {self.by!r} cannot be a Prometheus label: group by comm, pid, tid, cpu "
                "or a field whose name is not " + ", ".join(_RESERVED_LABELS))
        if self.name is not None and not _NAME.fullmatch(self.name):
            raise UsageError(f"metric name {self.name!r}: use letters, digits and _, "
                             "not starting with a digit")

    @property
    def aggregation(self) -> AggregationSpec:
        return AggregationSpec(self.kind, by=self.by, hist=self.hist)

    @property
    def is_latency(self) -> bool:
        return self.hist is not None and self.hist.is_latency

    def describe(self) -> str:
        """``--count``, ``--hist size --by comm``: how the command line writes it."""
        text = "--count" if self.hist is None else f"--hist {self.hist.field}"
        return text + (f" --by {self.by}" if self.by else "")

    def family_name(self, events: Sequence[str]) -> str:
        """The Prometheus name, without the ``_total`` prometheus_client adds to counters.

        Args:
            events: The event names its probes produced (for the default name).

        Raises:
            UsageError: No name was given and the probes produce more than one event.
        """
        name = self.name
        if name is None:
            distinct = sorted(set(events))
            if len(distinct) != 1:
                raise UsageError(
                    f"the {self.describe()} metric of {', '.join(self.probes)} has events "
                    f"{', '.join(distinct[:5])}{', ...' if len(distinct) > 5 else ''}: "
                    "name it (--name NAME, or name = in the configuration file)")
            what = "calls" if self.hist is None else self.hist.field
            name = f"{distinct[0]}_{what}"
        if not _NAME.fullmatch(name):
            raise UsageError(f"metric name {name!r} (from the event name): give --name NAME")
        name = "rawprobe_" + name.removeprefix("rawprobe_")
        if self.hist is None:
            return name.removesuffix("_total")
        if self.is_latency and not name.endswith("_seconds"):
            return name + "_seconds"
        return name


@dataclass
class ServeConfig:
    """Everything ``rawprobe serve`` runs with."""

    listen: str = DEFAULT_LISTEN
    check_interval: float = DEFAULT_CHECK_INTERVAL
    max_label_values: int = DEFAULT_MAX_LABEL_VALUES
    metrics: list[MetricSpec] = field(default_factory=list)


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[IPv6]:PORT`` or ``:PORT`` (every interface) as ``(host, port)``.

    Raises:
        UsageError: Anything else.
    """
    match = re.fullmatch(r"(?:\[([0-9a-fA-F:.]+)\]|([^:\[\]]*)):(\d{1,5})", text)
    if match is None or int(match.group(3)) > 65535:
        raise UsageError(f"listen address {text!r}: write HOST:PORT, [IPv6]:PORT or :PORT")
    host = match.group(1) or match.group(2) or "0.0.0.0"
    return host, int(match.group(3))


_TOP_KEYS = {"listen", "check_interval", "max_label_values", "metric"}
_METRIC_KEYS = {"count", "hist", "by", "filter", "name", "probes"}


def _read_toml(path: str) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # the backport, a dependency on Python 3.10 only
        import tomli as tomllib
    try:
        with open(path, "rb") as file:
            data: dict[str, Any] = tomllib.load(file)
    except OSError as error:
        raise UsageError(f"cannot read the configuration {path}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise UsageError(f"{path}: not valid TOML: {error}") from None
    return data


def _typed(where: str, key: str, value: Any, kind: type | tuple[type, ...]) -> Any:
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        names = (kind.__name__ if isinstance(kind, type)
                 else " or ".join(k.__name__ for k in kind))
        raise UsageError(f"{where}: {key} must be {names}, not {value!r}")
    return value


def metric_from_table(table: Mapping[str, Any], where: str) -> MetricSpec:
    """A ``[[metric]]`` table as a :class:`MetricSpec`.

    Raises:
        UsageError: Unknown keys, wrong types, neither or both of count and hist.
    """
    unknown = sorted(set(table) - _METRIC_KEYS)
    if unknown:
        raise UsageError(f"{where}: unknown key {unknown[0]!r} (known: "
                         + ", ".join(sorted(_METRIC_KEYS)) + ")")
    count = _typed(where, "count", table.get("count", False), bool)
    hist_text = table.get("hist")
    if count == (hist_text is not None):
        raise UsageError(f"{where}: give either count = true or hist = FIELD")
    probes = _typed(where, "probes", table.get("probes", []), list)
    for word in probes:
        _typed(where, "each probe", word, str)
    hist = parse_hist(_typed(where, "hist", hist_text, str)) if hist_text is not None else None
    return MetricSpec(
        kind="count" if count else "hist",
        probes=tuple(probes),
        hist=hist,
        by=_typed(where, "by", table["by"], str) if "by" in table else None,
        filter=_typed(where, "filter", table["filter"], str) if "filter" in table else None,
        name=_typed(where, "name", table["name"], str) if "name" in table else None,
    )


def load_config(path: str) -> ServeConfig:
    """Read a configuration file (TOML; see the module's documentation).

    Raises:
        UsageError: The file cannot be read, is not TOML, or says something unknown.
    """
    data = _read_toml(path)
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise UsageError(f"{path}: unknown key {unknown[0]!r} (known: "
                         + ", ".join(sorted(_TOP_KEYS)) + ")")
    config = ServeConfig()
    if "listen" in data:
        config.listen = _typed(path, "listen", data["listen"], str)
        parse_listen(config.listen)
    if "check_interval" in data:
        config.check_interval = float(_typed(path, "check_interval", data["check_interval"],
                                             (int, float)))
        if config.check_interval <= 0:
            raise UsageError(f"{path}: check_interval must be greater than 0")
    if "max_label_values" in data:
        config.max_label_values = _typed(path, "max_label_values", data["max_label_values"], int)
        if config.max_label_values <= 0:
            raise UsageError(f"{path}: max_label_values must be greater than 0")
    tables = _typed(path, "metric", data.get("metric", []), list)
    for number, table in enumerate(tables, start=1):
        where = f"{path}: metric {number}"
        config.metrics.append(metric_from_table(_typed(where, "metric", table, dict), where))
    return config

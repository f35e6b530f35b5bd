"""``rawprobe serve``: aggregations as Prometheus metrics, as a long-running service."""

from __future__ import annotations

import argparse
import logging
import os
import select
from collections.abc import Sequence
from typing import Any

from rawprobe import DEFAULT_STRING_SIZE, UsageError

from ._attach import _hist, _positive_float, _positive_int, _removing_probes, _StopSignals

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rawprobe._serve import MetricSpec

__all__ = ["add_parsers"]

log = logging.getLogger("rawprobe.serve")

_METRICS = "serve_metrics"


class _Metric(argparse.Action):
    """``--count [PROBE ...]`` and ``--hist FIELD [PROBE ...]`` start a metric; ``--by``,
    ``--filter`` and ``--name`` set one of the current metric's options. The words after an
    option's own value are the current metric's probe words, so a metric reads as in
    ``attach``: ``--count --by comm 'p:libc:malloc'``."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: str | Sequence[Any] | None, option_string: str | None = None) -> None:
        words = list(values or [])
        metrics: list[dict[str, Any]] = getattr(namespace, _METRICS, None) or []
        setattr(namespace, _METRICS, metrics)
        if self.dest == "count":
            metrics.append({"kind": "count", "probes": words})
            return
        if self.dest == "hist":
            metrics.append({"kind": "hist", "hist": _hist_value(parser, words[0]),
                            "probes": words[1:]})
            return
        if not metrics:
            parser.error(f"{option_string} belongs to a metric: put it after --count or --hist")
        current = metrics[-1]
        if self.dest in current:
            parser.error(f"{option_string} given twice for one metric")
        current[self.dest] = words[0]
        current["probes"] += words[1:]


def _hist_value(parser: argparse.ArgumentParser, text: str) -> Any:
    try:
        return _hist(text)
    except argparse.ArgumentTypeError as error:
        parser.error(str(error))


def add_parsers(commands: Any) -> None:
    parser = commands.add_parser(
        "serve",
        help="aggregations as Prometheus metrics, as a service",
        description="Count calls and bucket values in the kernel, and serve them on "
        "/metrics for Prometheus, read from the BPF maps at each scrape. Each --count or "
        "--hist starts a metric; the probe words after it (and after its --by, --filter, "
        "--name) are its probes. Probed files replaced on disk (upgrades) are planted "
        "again; SIGTERM removes every probe and exits.",
        epilog="example: rawprobe serve --listen 127.0.0.1:9435 --count --by comm "
        "'p:libc:malloc' --hist size 'p:libc:malloc size=%di:u64' --hist latency "
        "'p:./srv:handle'",
    )
    parser.add_argument("--listen", metavar="HOST:PORT",
                        help="where to serve /metrics (default 127.0.0.1:9435; :PORT for "
                        "every interface)")
    parser.add_argument("--config", metavar="FILE",
                        help="a TOML file with listen, check_interval, max_label_values and "
                        "[[metric]] tables (see the README)")
    metric = parser.add_argument_group("metrics (repeat for more)")
    metric.add_argument("--count", nargs="*", action=_Metric, metavar="PROBE",
                        help="a counter of calls")
    metric.add_argument("--hist", nargs="+", action=_Metric, metavar=("FIELD", "PROBE"),
                        help="a histogram of FIELD, or of latency (entry to return, in "
                        "seconds)")
    metric.add_argument("--by", nargs="+", action=_Metric, metavar=("KEY", "PROBE"),
                        help="a label: comm, pid, tid, cpu or a field")
    metric.add_argument("--filter", nargs="+", action=_Metric, metavar=("EXPR", "PROBE"),
                        help="count only hits where EXPR holds (as attach --filter)")
    metric.add_argument("--name", nargs="+", action=_Metric, metavar=("NAME", "PROBE"),
                        help="the metric's name (rawprobe_NAME_total, rawprobe_NAME, "
                        "rawprobe_NAME_seconds); default: from the event")
    parser.add_argument("--check-interval", type=_positive_float, metavar="SECONDS",
                        help="how often to look for replaced files (default 2)")
    parser.add_argument("--max-label-values", type=_positive_int, metavar="N",
                        help="values of a --by label kept per metric; hits under others are "
                        "counted as [other] (default 1000)")
    parser.add_argument("--string-size", type=_positive_int, default=DEFAULT_STRING_SIZE,
                        metavar="BYTES", help="bytes copied per string (a string --by key)")
    parser.add_argument("--force", action="store_true",
                        help="plant probes rawprobe would refuse as risky")
    parser.set_defaults(run=run_serve)


def _metrics(args: argparse.Namespace) -> list[MetricSpec]:
    from rawprobe._serve import MetricSpec

    return [MetricSpec(kind=group["kind"], probes=tuple(group["probes"]),
                       hist=group.get("hist"), by=group.get("by"), filter=group.get("filter"),
                       name=group.get("name"))
            for group in getattr(args, _METRICS, None) or []]


def run_serve(args: argparse.Namespace) -> int:
    from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector

    from rawprobe import check_privileges
    from rawprobe._serve import Exporter, ServeConfig, load_config, parse_listen

    config = load_config(args.config) if args.config else ServeConfig()
    metrics = config.metrics + _metrics(args)
    listen = args.listen or config.listen
    host, port = parse_listen(listen)
    interval = args.check_interval or config.check_interval
    if args.verbose == 0:
        log.setLevel(logging.INFO)  # a service says what it does, to stderr (the journal)
    check_privileges(bpf=True)  # before anything is resolved or planted
    exporter = Exporter(metrics, max_label_values=args.max_label_values
                        or config.max_label_values, force=args.force,
                        string_size=args.string_size)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(exporter)
    ProcessCollector(registry=registry)  # the exporter's own CPU time and memory
    PlatformCollector(registry=registry)
    server = None
    with _StopSignals() as stop:
        try:
            if not stop.stopped:
                exporter.start()
                for warning in exporter.warnings:
                    log.warning("warning: %s", warning)
            if not stop.stopped:
                server = _listen(host, port, registry, listen)
                bound = server.server_address
                shown = f"[{bound[0]}]" if ":" in str(bound[0]) else bound[0]
                log.info("serving %d metric%s (%d uprobes) on http://%s:%d/metrics",
                         len(exporter.shapes), "s" * (len(exporter.shapes) != 1),
                         exporter.planted, shown, bound[1])
            while not stop.stopped:
                ready, _, _ = select.select([stop.read_fd], [], [], interval)
                if ready:
                    _drain(stop.read_fd)
                    continue
                exporter.check()
        finally:
            with _removing_probes():
                if server is not None:
                    server.shutdown()
                    server.server_close()
                exporter.close()
    log.info("stopped; every probe removed")
    return 0


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 64):
            pass
    except BlockingIOError:
        pass


def _listen(host: str, port: int, registry: Any, listen: str) -> Any:
    from prometheus_client import start_http_server

    try:
        server, _thread = start_http_server(port, addr=host, registry=registry)
    except OSError as error:
        raise UsageError(f"cannot listen on {listen}: {error.strerror or error}: choose "
                         "another --listen") from None
    return server

"""``rawprobe attach``: plant probes, stream their events, and account for every one."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any, TextIO

from rawprobe import DEFAULT_RING_SIZE, DEFAULT_STRING_SIZE, UsageError

# The rest of the library is imported where it is used, so that building the parser (and
# `rawprobe --help`) stays fast.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from rawprobe import (
        AddressResolver,
        AggregationSpec,
        CountTable,
        Event,
        HistogramSet,
        HistSpec,
        SyscallTable,
        Tracer,
        TraceStats,
    )

__all__ = ["add_parser", "run_trace"]


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return value


def _positive_int(text: str) -> int:
    value = int(text, 0)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return value


def _hist(text: str) -> HistSpec:
    from rawprobe import parse_hist

    try:
        return parse_hist(text)
    except UsageError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _ring_size(text: str) -> int:
    value = int(text, 0)
    page = os.sysconf("SC_PAGE_SIZE")
    if value < page or value & (value - 1):
        raise argparse.ArgumentTypeError(
            f"must be a power of two of at least the page size ({page})"
        )
    return value


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "attach",
        help="plant probes and print their events",
        description="Plant uprobes (p:), uretprobes (r:), USDT probes (usdt:), system call "
        "probes (sys:) and tracepoints (tp:) and print an event per hit. Give '-- COMMAND "
        "...' to start a command and trace it and its children.",
        epilog="examples: rawprobe attach 'p:./main:add a=%%di:s32' -- ./main ; "
        "rawprobe attach -p 1234 'r:libc:malloc ret=$retval:x64' ; "
        "rawprobe attach 'sys:open*' 'tp:sched:sched_process_exec' -- make",
    )
    parser.add_argument("probes", nargs="+", metavar="PROBE",
                        help="probe word, e.g. 'p:/bin/bash:readline', 'sys:openat', "
                        "'tp:sched:sched_switch' (quote it)")
    parser.add_argument("-p", "--pid", type=_positive_int, action="append", default=[],
                        help="trace only this process (repeatable)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("-o", "--output", metavar="FILE",
                        help="write events to FILE (created mode 0600) instead of stdout")
    parser.add_argument("--duration", type=_positive_float, metavar="SECONDS",
                        help="stop after this many seconds")
    parser.add_argument("-n", "--max-events", type=_positive_int, metavar="N",
                        help="stop after N events")
    parser.add_argument("--filter", metavar="EXPR",
                        help="record only hits where EXPR holds, e.g. 'size > 4096 && "
                        "comm == \"make\"' (fields, pid, tid, cpu, comm; ==, !=, <, <=, >, "
                        ">=, &, ~ \"prefix*\"; &&, ||, !, parentheses); checked in the kernel")
    aggregate = parser.add_argument_group(
        "aggregation in the kernel (no per-event records reach user space)")
    aggregate.add_argument("--count", action="store_true",
                           help="count hits per probe (and per --by key, or stack)")
    aggregate.add_argument("--hist", metavar="FIELD", type=_hist,
                           help="histogram of an integer FIELD (powers of two; "
                           "FIELD:linear:MIN:MAX:STEP for linear buckets), or 'latency' "
                           "(entry to return, ns; the return probes are added for you)")
    aggregate.add_argument("--by", metavar="KEY",
                           help="group by comm, pid, tid, cpu or a field")
    aggregate.add_argument("--stack", action="store_true",
                           help="with --count: group by user stack; otherwise print each "
                           "event's user stack")
    aggregate.add_argument("--folded", action="store_true",
                           help="with --count --stack: folded stacks, as flame-graph tools "
                           "read them")
    aggregate.add_argument("--interval", type=_positive_float, metavar="SECONDS",
                           help="print (and restart) the aggregation every SECONDS")
    parser.add_argument("--string-size", type=_positive_int, default=DEFAULT_STRING_SIZE,
                        metavar="BYTES", help="bytes copied per string, NUL included "
                        f"(default {DEFAULT_STRING_SIZE}, at most 4096)")
    parser.add_argument("--ring-size", type=_ring_size, default=DEFAULT_RING_SIZE,
                        metavar="BYTES", help="ring buffer size, a power of two "
                        f"(default {DEFAULT_RING_SIZE >> 20} MiB)")
    parser.add_argument("--backend", choices=("auto", "bpf", "tracefs"), default="auto",
                        help="bpf: rawprobe's BPF programs; tracefs: the kernel's own "
                        "uprobe_events tracer; auto (default): bpf where it works here")
    parser.add_argument("--force", action="store_true",
                        help="plant probes rawprobe would refuse as risky")
    parser.set_defaults(run=run_attach)


class _StopSignals:
    """Ctrl-C, SIGTERM and SIGHUP end the trace by setting a flag, never by an exception, so
    a batch already taken from the ring buffer is always written out whole. The handlers
    write to a pipe (signal.set_wakeup_fd) that the tracer watches, so a wait ends at once.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.stopped = False
        self.read_fd, self._write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def _handler(self, _signum: int, _frame: FrameType | None) -> None:
        self.stopped = True

    def __enter__(self) -> _StopSignals:
        self._previous = {sig: signal.signal(sig, self._handler) for sig in self.SIGNALS}
        self._previous_wakeup = signal.set_wakeup_fd(self._write_fd, warn_on_full_buffer=False)
        return self

    def __exit__(self, *_exc: object) -> None:
        signal.set_wakeup_fd(self._previous_wakeup)
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        os.close(self.read_fd)
        os.close(self._write_fd)


@contextmanager
def _no_interruptions() -> Iterator[None]:
    """Hold off Ctrl-C, SIGTERM and SIGHUP while probes are being removed."""
    sigs = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in sigs}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _open_output(path: str | None) -> TextIO:
    if path is None:
        return sys.stdout
    try:
        # Events may carry strings read from other processes' memory: owner-only.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    except OSError as error:
        raise UsageError(f"cannot write {path}: {error.strerror}") from None
    return open(fd, "w", buffering=1 << 16)


class _Printer:
    """Writes events as text or JSON lines, up to a limit."""

    def __init__(self, out: TextIO, as_json: bool, limit: int | None,
                 resolver: AddressResolver, folded: bool = False) -> None:
        self.out = out
        self.as_json = as_json
        self.folded = folded
        from rawprobe import EventFormatter
        self.limit = limit
        self.printed = 0
        self.truncated = 0  # events with a string cut at --string-size
        self.formatter = EventFormatter(resolver=resolver)

    @property
    def full(self) -> bool:
        return self.limit is not None and self.printed >= self.limit

    def aggregates(self, result: CountTable | HistogramSet | SyscallTable) -> None:
        """Print an aggregation: a table or histograms, folded stacks, or one JSON object."""
        from rawprobe import CountTable
        if self.as_json:
            text = json.dumps(result.to_dict())
        elif self.folded and isinstance(result, CountTable):
            text = result.folded()
        else:
            text = f"{self.formatter.clock.text(time.monotonic_ns())}\n{result}\n"
        self.out.write(text + "\n")
        self.out.flush()

    def write(self, events: list[Event]) -> None:
        if self.limit is not None:
            events = events[: self.limit - self.printed]
        if not events:
            return
        self.out.write(self.formatter.lines(events, self.as_json))
        self.out.flush()
        self.printed += len(events)
        self.truncated += sum(1 for event in events if event.truncated)


def run_trace(tracer: Tracer, args: argparse.Namespace, out: TextIO) -> TraceStats:
    """Start ``tracer`` and print its events until the run ends; return its final accounting.

    The run ends when the command (or every -p process) exits, after --duration, after -n
    events, or at Ctrl-C, SIGTERM or SIGHUP. Every probe is removed before this returns, and
    the events left in the ring buffer are printed.
    """
    printer = _Printer(out, args.json, args.max_events, tracer.resolver,
                       getattr(args, "folded", False))
    started = time.monotonic()
    with _StopSignals() as stop:
        try:
            tracer.watch(stop.read_fd)
            if not stop.stopped:
                tracer.start()
                if tracer.backend == "tracefs" and args.backend == "auto":
                    print(f"rawprobe: note: {tracer.warnings[-1]}", file=sys.stderr)
            count = len(tracer.event_names())
            target = (
                f"command {tracer.command_pid}" if tracer.command_pid
                else "pid " + ",".join(map(str, tracer.pids)) if tracer.pids
                else "every process"
            )
            if not stop.stopped:
                print(f"rawprobe: tracing {count} probe{'s' * (count != 1)} in {target}; "
                      "Ctrl-C to end", file=sys.stderr)
            deadline = None if args.duration is None else started + args.duration
            interval = getattr(args, "interval", None)
            next_report = None if interval is None else started + interval
            while not printer.full and not stop.stopped:
                now = time.monotonic()
                if next_report is not None and now >= next_report:
                    printer.aggregates(tracer.aggregates(reset=True))
                    next_report += interval
                waits = [t - now for t in (deadline, next_report) if t is not None]
                remaining = min(waits) if waits else None
                if deadline is not None and deadline <= now:
                    break
                printer.write(tracer.poll(max(remaining, 0) if remaining is not None else None))
                if tracer.finished():
                    break
        finally:
            with _no_interruptions():
                left = tracer.drain()
                if not printer.full:
                    printer.write(left)
                if tracer.aggregation is not None and tracer.started:
                    printer.aggregates(tracer.aggregates(reset=interval is not None))
                stats = tracer.stats()
                tracer.close()
    # What the user saw: with -n, events decoded past the limit are not counted as delivered.
    return dataclasses.replace(stats, events=printer.printed, truncated=printer.truncated)


def _aggregation(args: argparse.Namespace) -> AggregationSpec | None:
    from rawprobe import AggregationSpec

    if args.count and args.hist:
        raise UsageError("--count and --hist: choose one")
    if args.by and not (args.count or args.hist):
        raise UsageError("--by groups an aggregation: add --count or --hist")
    if args.folded and not (args.count and args.stack):
        raise UsageError("--folded prints counted stacks: use it with --count --stack")
    if args.interval and not (args.count or args.hist):
        raise UsageError("--interval prints aggregations: add --count or --hist")
    if args.count:
        return AggregationSpec("count", by=args.by, stack=args.stack)
    if args.hist:
        return AggregationSpec("hist", by=args.by, hist=args.hist, stack=args.stack)
    return None


def run_attach(args: argparse.Namespace) -> int:
    from rawprobe import Tracer, check_privileges

    aggregation = _aggregation(args)
    check_privileges(bpf=args.backend != "tracefs")  # before anything is resolved or planted
    out = _open_output(args.output)
    tracer = Tracer(
        pid=args.pid or None,
        command=args.trace_command,
        string_size=args.string_size,
        ring_size=args.ring_size,
        force=args.force,
        backend=args.backend,
        aggregation=aggregation,
        stack=args.stack,
    )
    try:
        for word in args.probes:
            tracer.add(word, filter=args.filter)
        for warning in tracer.warnings:
            print(f"rawprobe: warning: {warning}", file=sys.stderr)
        stats = run_trace(tracer, args, out)
        _summary(stats, args, out, tracer.command_status)
    finally:
        tracer.close()
        if out is not sys.stdout:
            out.close()
    return 0


def _summary(stats: TraceStats, args: argparse.Namespace, out: TextIO,
             command_status: int | None) -> None:
    summary: dict[str, Any] = {
        "events": stats.events,
        "lost": stats.lost,
        "hits": stats.hits,
        "filtered": stats.filtered,
    }
    if stats.truncated:
        summary["truncated"] = stats.truncated
    # Per event name, what the kernel counted: nothing lost is left unexplained.
    summary["probes"] = {
        name: {"hits": c.hits, "lost": c.lost, "filtered": c.filtered}
        for name, c in stats.probes.items()
    }
    if command_status is not None:
        summary["command_status"] = command_status
    if args.json:
        out.write(json.dumps({"summary": summary}) + "\n")
        out.flush()
    if getattr(args, "count", False) or getattr(args, "hist", None):
        line = f"rawprobe: {stats.hits} hit{'s' * (stats.hits != 1)}, {stats.lost} lost"
    else:
        line = f"rawprobe: {stats.events} event{'s' * (stats.events != 1)}, {stats.lost} lost"
    if stats.filtered:
        line += f", {stats.filtered} filtered"
    if stats.lost:
        line += " (the ring buffer was full: raise --ring-size, or trace fewer events)"
    print(line, file=sys.stderr)
    if stats.truncated:
        print(f"rawprobe: {stats.truncated} event{'s' * (stats.truncated != 1)} had strings cut "
              "at --string-size (marked ...); raise it to see them whole", file=sys.stderr)
    if command_status:
        print(f"rawprobe: the command exited with status {command_status}", file=sys.stderr)

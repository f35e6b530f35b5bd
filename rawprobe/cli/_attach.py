"""``rawprobe attach``: plant probes, stream their events, and account for every one."""

from __future__ import annotations

import argparse
import errno
import os
import signal
import stat
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from rawprobe import DEFAULT_RING_SIZE, DEFAULT_STRING_SIZE, RawprobeError, UsageError

from . import _views

# The rest of the library (and json, typing) is imported where it is used, so that building the
# parser, `rawprobe --help`, and the start of a trace stay fast.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import FrameType
    from typing import Any, TextIO

    from rawprobe import (
        AddressResolver,
        AggregationSpec,
        Batch,
        HistSpec,
        SpanCounters,
        SyscallTable,
        Tracer,
        TraceStats,
    )
    from rawprobe._output.tables import Result

__all__ = ["Output", "add_parsers", "run_trace"]


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: must be a number greater than 0")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be greater than 0")
    return value


def _hist(text: str) -> HistSpec:
    from rawprobe import parse_hist

    try:
        return parse_hist(text)
    except UsageError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _ring_size(text: str) -> int:
    value = _positive_int(text)
    page = os.sysconf("SC_PAGE_SIZE")
    if value < page or value & (value - 1):
        raise argparse.ArgumentTypeError(
            f"must be a power of two of at least the page size ({page})"
        )
    return value


def add_parsers(commands: Any) -> None:
    parser = commands.add_parser(
        "attach",
        help="plant probes and print their events",
        description="Plant uprobes (p:), uretprobes (r:), USDT probes (usdt:), system call "
        "probes (sys:) and tracepoints (tp:) and print an event per hit. Give '-- COMMAND "
        "...' to start a command and trace it and its children.",
        epilog="examples: rawprobe attach 'p:./main:add a=%di:s32' -- ./main ; "
        "rawprobe attach -p 1234 'r:libc:malloc ret=$retval:x64' ; "
        "rawprobe attach 'sys:open*' 'tp:sched:sched_process_exec' -- make",
    )
    parser.add_argument("probes", nargs="*", metavar="PROBE",
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
    for kind, what in (("sum", "the sum"), ("min", "the smallest"), ("max", "the largest"),
                       ("avg", "the mean (truncated toward zero, as bpftrace's avg)"),
                       ("stats", "count, sum, min, max and mean")):
        aggregate.add_argument(f"--{kind}", metavar="FIELD",
                               help=f"{what} of an integer FIELD (or 'latency', in ns)")
    aggregate.add_argument("--by", metavar="KEY[,KEY...]", action="append", default=[],
                           help="group by comm, pid, tid, cpu, a field, or stack; several "
                           "keys (up to 4, and stack) comma-separated or repeated")
    aggregate.add_argument("--top", type=_positive_int, metavar="N",
                           help="print only the N largest rows (counts, values; histograms "
                           "by their number of values), largest first")
    aggregate.add_argument("--stack", action="store_true",
                           help="with an aggregation: group by user stack (as --by stack); "
                           "otherwise print each event's user stack")
    aggregate.add_argument("--folded", action="store_true",
                           help="with --count --stack: folded stacks, as flame-graph tools "
                           "read them")
    aggregate.add_argument("--interval", type=_positive_float, metavar="SECONDS",
                           help="print (and restart) the aggregation every SECONDS")
    aggregate.add_argument("--span", nargs=2, metavar=("START", "END"),
                           help="measure from a hit of the probe START to the matching hit of "
                           "END: 'latency' (ns) for --hist/--stats/..., or streamed END events "
                           "with a latency field; --filter selects the spans that start")
    aggregate.add_argument("--key", metavar="FIELD|tid",
                           help="with --span: match START and END by an integer field both "
                           "fetch (a request id, a pointer) instead of by thread (tid)")
    _views.add_arguments(parser, aggregate)
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


class LeftPlanted(KeyboardInterrupt):
    """A second Ctrl-C (or SIGTERM, SIGHUP) while probes were being removed: rawprobe ends
    at once, and says what it left planted."""


@contextmanager
def _removing_probes() -> Iterator[None]:
    """While probes are being removed and the events left are printed: the first Ctrl-C,
    SIGTERM or SIGHUP says so, a second one stops there (:class:`LeftPlanted`)."""
    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    received = 0

    def handler(_signum: int, _frame: FrameType | None) -> None:
        nonlocal received
        received += 1
        if received == 1:
            print("rawprobe: removing the probes (Ctrl-C again to stop now and leave the rest)",
                  file=sys.stderr)
        else:
            raise LeftPlanted

    previous = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def left_planted() -> None:
    """Say what this process leaves planted, and how to remove it (after :class:`LeftPlanted`):
    its tracefs definitions outlive it; its BPF links and perf events go with it."""
    from rawprobe import list_probes

    mine = [probe for probe in list_probes(resolve_symbols=False).probes
            if probe.pid == os.getpid()]
    kept = [probe for probe in mine if probe.kind == "tracefs"]
    groups = sorted({probe.group for probe in kept if probe.group})
    gone = len(mine) - len(kept)
    print(f"rawprobe: stopped with {len(mine)} probe{'s' * (len(mine) != 1)} still planted: "
          + (f"{len(kept)} tracefs definition{'s' * (len(kept) != 1)} in group "
             f"{', '.join(groups)}, which outlive rawprobe: 'rawprobe probes --clean' removes "
             "them once it has exited" if kept else "none outlives rawprobe")
          + (f"; {gone} BPF or perf uprobes go as it exits" if gone else ""),
          file=sys.stderr)


def open_output(path: str) -> int:
    """Open ``-o FILE`` for writing, safely for a process that runs as root: never through a
    symbolic link, never a file another user owns or others may write to (a file planted in a
    shared directory to receive what rawprobe reads from other processes' memory), never a
    device or a FIFO. A new file is created 0600; an existing one of the caller's is made 0600.
    Nothing is truncated here: :func:`truncate_output` does that once the probes are accepted.

    Returns:
        The descriptor.

    Raises:
        UsageError: The file cannot or must not be written (the message says why).
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise UsageError(f"refusing to write {path}: it is a symbolic link (write to the "
                             "file it names, or remove the link)") from None
        raise UsageError(f"cannot write {path}: {error.strerror}") from None
    try:
        info = os.fstat(fd)
        why = None
        if stat.S_ISCHR(info.st_mode) and info.st_rdev == os.stat(os.devnull).st_rdev:
            return fd  # /dev/null: events written nowhere, on purpose
        if not stat.S_ISREG(info.st_mode):
            why = ("it is not a regular file (a device or a FIFO); to send events there, "
                   "redirect rawprobe's output in the shell")
        elif info.st_uid != os.geteuid():
            why = f"it belongs to another user (uid {info.st_uid})"
        elif info.st_mode & 0o022:
            why = "other users may write to it (group- or world-writable)"
        elif info.st_nlink > 1:
            why = "it has other hard links"
        if why is not None:
            raise UsageError(f"refusing to write {path}: {why}")
        os.fchmod(fd, 0o600)  # events may hold strings read from other processes' memory
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def truncate_output(fd: int) -> TextIO:
    """Empty the file :func:`open_output` opened and wrap it for writing."""
    if stat.S_ISREG(os.fstat(fd).st_mode):
        os.ftruncate(fd, 0)
    return open(fd, "w", buffering=1 << 16)


class Output:
    """Where a run writes: standard output, or ``-o FILE`` opened (and checked) before anything
    is planned, emptied only once every probe is accepted (:meth:`accepted`), and closed at the
    end with a failed write reported (:meth:`close`)."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._fd = open_output(path) if path is not None else None
        self.out: TextIO = sys.stdout

    def accepted(self) -> TextIO:
        """The stream to write to, the file emptied now (every probe is accepted)."""
        if self._fd is not None:
            self.out, self._fd = truncate_output(self._fd), None
        return self.out

    def close(self) -> None:
        """Close the file; RawprobeError when what was still buffered cannot be written."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        out, self.out = self.out, sys.stdout
        if out is not sys.stdout:
            try:
                out.close()
            except OSError as error:
                raise RawprobeError(f"writing {self.path}: {error.strerror}") from None


class _Printer:
    """Writes events as text or JSON lines, up to a limit."""

    def __init__(self, out: TextIO, as_json: bool, limit: int | None,
                 resolver: AddressResolver, folded: bool = False,
                 top: int | None = None) -> None:
        self.out = out
        self.as_json = as_json
        self.folded = folded
        self.top = top
        from rawprobe import EventFormatter
        self.limit = limit
        self.printed = 0
        self.truncated = 0  # events with a string cut at --string-size
        self.formatter = EventFormatter(resolver=resolver)
        self.views: _views.Views | None = None  # flame graph, timeline, terminal view

    @property
    def full(self) -> bool:
        return self.limit is not None and self.printed >= self.limit

    def aggregates(self, result: Result | SyscallTable) -> None:
        """Print an aggregation: a table or histograms, folded stacks, or one JSON object."""
        import json

        from rawprobe import CountTable, SyscallTable

        if self.top is not None and not isinstance(result, SyscallTable):
            result = result.top(self.top)
        if self.as_json:
            text = json.dumps(result.to_dict())
        elif self.folded and isinstance(result, CountTable):
            text = result.folded()
        elif self.views is not None:
            text = self.views.table_text(result, self.formatter.clock.text(time.monotonic_ns()))
        else:
            text = f"{self.formatter.clock.text(time.monotonic_ns())}\n{result}\n"
        self.out.write(text + "\n")
        self.out.flush()

    def write(self, batches: list[Batch]) -> None:
        parts = []
        for batch in batches:
            room = None if self.limit is None else self.limit - self.printed
            if room is not None and room <= 0:
                break
            parts.append(self.formatter.batch_lines(batch, self.as_json, room))
            shown = batch.count if room is None else min(room, batch.count)
            self.printed += shown
            if batch.records is None or self.views is not None:
                events = batch.events()[:shown]
                # Fixed-size records have no strings to cut.
                self.truncated += sum(1 for event in events if event.truncated)
                if self.views is not None:
                    self.views.events(events)
        if parts:
            self.out.write("".join(parts))
            self.out.flush()


def run_trace(tracer: Tracer, args: argparse.Namespace, out: TextIO) -> TraceStats:
    """Start ``tracer`` and print its events until the run ends; return its final accounting.

    The run ends when the command (or every -p process) exits, after --duration, after -n
    events, or at Ctrl-C, SIGTERM or SIGHUP. Every probe is removed before this returns, and
    the events left in the ring buffer are printed.
    """
    printer = _Printer(out, args.json, args.max_events, tracer.resolver,
                       getattr(args, "folded", False), getattr(args, "top", None))
    started = time.monotonic()
    printer.views = _views.Views(args, tracer, out, printer.formatter)
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
                printer.write(tracer.poll_batches(
                    max(remaining, 0) if remaining is not None else None))
                if tracer.finished():
                    break
        finally:
            with _removing_probes():
                left = tracer.drain_batches()
                if not printer.full:
                    printer.write(left)
                if tracer.aggregation is not None and tracer.started:
                    printer.aggregates(tracer.aggregates(reset=interval is not None))
                stats = tracer.stats()
                tracer.close()
                printer.views.close(stats)
    # What the user saw: with -n, events decoded past the limit are not counted as delivered,
    # and every hit after it is accounted for as such (hits = printed + filtered + lost + these).
    after = 0
    if printer.full and tracer.aggregation is None:
        after = max(0, stats.hits - stats.filtered - stats.lost - printer.printed)
    return stats.replace(events=printer.printed, truncated=printer.truncated,
                         not_delivered=after)


_KINDS = ("count", "hist", "sum", "min", "max", "avg", "stats")


def _aggregation(args: argparse.Namespace) -> AggregationSpec | None:
    """The aggregation the options ask for; every combination that cannot work is refused."""
    chosen = [kind for kind in _KINDS if getattr(args, kind)]
    if len(chosen) > 1:
        raise UsageError(" and ".join(f"--{kind}" for kind in chosen) + ": choose one")
    if args.by and not chosen:
        raise UsageError("--by groups an aggregation: add --count, --hist, --sum, --min, "
                         "--max, --avg or --stats")
    by_stack = args.stack or any("stack" in text.split(",") for text in args.by)
    if args.folded and not (args.count and by_stack):
        raise UsageError("--folded prints counted stacks: use it with --count --stack")
    for option, value in (("--interval", args.interval), ("--top", args.top)):
        if value and not chosen:
            raise UsageError(f"{option} is for aggregations: add --count, --hist, --sum, "
                             "--min, --max, --avg or --stats")
    if args.key and not args.span:
        raise UsageError("--key says how a span's START and END match: use it with --span")
    if not chosen:
        return None
    from rawprobe import AggregationSpec

    kind = chosen[0]
    by = ",".join(args.by) or None
    if kind == "count":
        return AggregationSpec("count", by=by, stack=args.stack)
    if kind == "hist":
        return AggregationSpec("hist", by=by, hist=args.hist, stack=args.stack)
    return AggregationSpec(kind, by=by, stack=args.stack, field=getattr(args, kind))


def run_attach(args: argparse.Namespace) -> int:
    from rawprobe import Tracer, check_privileges

    aggregation = _aggregation(args)
    _views.check_arguments(args)
    if args.span and args.probes:
        raise UsageError("--span measures between its own two probes: give no other PROBE "
                         f"words ({' '.join(args.probes)!r})")
    if not args.span and not args.probes:
        raise UsageError("give at least one PROBE (or --span START END)")
    check_privileges(backend=args.backend)  # before anything is resolved, loaded or planted
    if args.trace_command == []:
        raise UsageError("'--' is followed by no command: give the command to trace after "
                         "it, or drop the '--' to trace every process")
    output = Output(args.output)
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
        if args.span:
            from rawprobe import Span  # the probe language: only for a span

            start, end = args.span
            tracer.add(Span(start, end, key=args.key or "tid"), filter=args.filter)
        for word in args.probes:
            tracer.add(word, filter=args.filter)
        out = output.accepted()  # every probe word is accepted: now the file is emptied
        for warning in tracer.warnings:
            print(f"rawprobe: warning: {warning}", file=sys.stderr)
        stats = run_trace(tracer, args, out)
        _summary(stats, args, out, tracer.command_status)
    finally:
        tracer.close()
        output.close()
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
    if stats.not_delivered:
        summary["after_limit"] = stats.not_delivered
    # Per event name, what the kernel counted: nothing lost is left unexplained.
    summary["probes"] = {
        name: {"hits": c.hits, "lost": c.lost, "filtered": c.filtered,
               **({"unmatched": c.unmatched} if c.unmatched else {}),
               **({"replaced": c.replaced} if c.replaced else {})}
        for name, c in stats.probes.items()
    }
    if command_status is not None:
        summary["command_status"] = command_status
    if stats.spans:
        summary["spans"] = [span.to_dict() for span in stats.spans]
    if args.json:
        import json

        out.write(json.dumps({"summary": summary}) + "\n")
        out.flush()
    if any(getattr(args, kind, None) for kind in _KINDS):
        line = f"rawprobe: {stats.hits} hit{'s' * (stats.hits != 1)}, {stats.lost} lost"
    else:
        line = f"rawprobe: {stats.events} event{'s' * (stats.events != 1)}, {stats.lost} lost"
    if stats.filtered:
        line += f", {stats.filtered} filtered"
    if stats.not_delivered:
        line += f", {stats.not_delivered} after the -n {args.max_events} limit (not printed)"
    if stats.lost:
        line += " (the ring buffer was full: raise --ring-size, or trace fewer events)"
    print(line, file=sys.stderr)
    if len(stats.spans) == 1:
        print(_span_line(stats.spans[0]), file=sys.stderr)
    elif stats.spans:  # a latency pair per function: one line for them all
        print(_span_line(_span_total(stats.spans)), file=sys.stderr)
    if stats.truncated:
        print(f"rawprobe: {stats.truncated} event{'s' * (stats.truncated != 1)} had strings cut "
              "at --string-size (marked ...); raise it to see them whole", file=sys.stderr)
    if command_status:
        print(f"rawprobe: the command {_ended(command_status)}", file=sys.stderr)
    if stats.hits == 0 and args.trace_command:
        print("rawprobe: note: no probe fired: the command (and the processes it started) never "
              "ran the probed code; if it is a wrapper script or a launcher, probe the program "
              "it runs, or trace every process (no '--')", file=sys.stderr)


def _ended(status: int) -> str:
    """How a command ended: ``exited with status 3``, ``was killed by SIGTERM``."""
    if status >= 0:
        return f"exited with status {status}"
    try:
        name = signal.Signals(-status).name
    except ValueError:
        name = f"signal {-status}"
    return f"was killed by {name}"


def _span_total(spans: Sequence[SpanCounters]) -> SpanCounters:
    from rawprobe import SpanCounters

    functions = f"{len(spans)} functions"
    return SpanCounters(functions, functions, *(sum(getattr(span, name) for span in spans)
                                            for name in ("started", "ended", "unmatched",
                                                         "replaced", "open", "evicted")))


def _span_line(span: SpanCounters) -> str:
    """What became of a span's starts, on one line."""
    what = (f"{span.start} entry to return" if span.start == span.end
            else f"spans {span.start} -> {span.end}")
    line = f"rawprobe: {what}: {span.started} started, {span.ended} ended"
    if span.open:
        line += f", {span.open} still open"
    if span.replaced:
        line += f", {span.replaced} replaced by a later start with the same key"
    if span.evicted:
        line += (f", {span.evicted} evicted (more spans open at once than the map holds: "
                 "they never end)")
    if span.unmatched:
        line += f", {span.unmatched} ends without a start"
    return line

"""``rawprobe record`` and ``rawprobe report``: records kept at the kernel's pace, decoded later."""

from __future__ import annotations

import argparse
import sys
import time

from rawprobe import DEFAULT_RING_SIZE, DEFAULT_STRING_SIZE, UsageError

from ._attach import (
    _hist,
    _positive_float,
    _positive_int,
    _removing_probes,
    _ring_size,
    _StopSignals,
    open_output,
    truncate_output,
)

TYPE_CHECKING = False  # mypy treats this name as True; at run time it spares importing typing.
if TYPE_CHECKING:
    from typing import Any

__all__ = ["add_parsers"]


def add_parsers(commands: Any) -> None:
    record = commands.add_parser(
        "record",
        help="keep probes' records in a file, at the kernel's pace (decode with 'report')",
        description="Plant probes and write their records to FILE as the kernel wrote them, "
        "nothing decoded (like perf record): it keeps up with probes that fire millions of "
        "times a second. 'rawprobe report FILE' decodes them, on any host.",
        epilog="example: rawprobe record -o add.rprec 'p:./main:add a=%di:s32' -- ./main ; "
        "rawprobe report add.rprec",
    )
    record.add_argument("probes", nargs="+", metavar="PROBE",
                        help="probe word, e.g. 'p:/bin/bash:readline' (quote it)")
    record.add_argument("-o", "--output", metavar="FILE", required=True,
                        help="the recording (created mode 0600)")
    record.add_argument("-p", "--pid", type=_positive_int, action="append", default=[],
                        help="trace only this process (repeatable)")
    record.add_argument("--duration", type=_positive_float, metavar="SECONDS",
                        help="stop after this many seconds")
    record.add_argument("--filter", metavar="EXPR",
                        help="record only hits where EXPR holds (as attach --filter)")
    record.add_argument("--stack", action="store_true", help="keep each event's user stack")
    record.add_argument("--string-size", type=_positive_int, default=DEFAULT_STRING_SIZE,
                        metavar="BYTES", help="bytes copied per string, NUL included "
                        f"(default {DEFAULT_STRING_SIZE})")
    record.add_argument("--ring-size", type=_ring_size, default=DEFAULT_RING_SIZE,
                        metavar="BYTES", help="ring buffer size, a power of two "
                        f"(default {DEFAULT_RING_SIZE >> 20} MiB)")
    record.add_argument("--force", action="store_true",
                        help="plant probes rawprobe would refuse as risky")
    record.set_defaults(run=run_record)

    report = commands.add_parser(
        "report",
        help="decode a recording: events, counts or histograms",
        description="Decode a file 'rawprobe record' wrote: its events as text (the default) "
        "or JSON, or aggregated as attach --count / --hist would have.",
    )
    report.add_argument("file", metavar="FILE", help="the recording")
    report.add_argument("--json", action="store_true", help="one JSON object per line")
    report.add_argument("-o", "--output", metavar="FILE",
                        help="write to FILE (created mode 0600) instead of stdout")
    report.add_argument("-n", "--max-events", type=_positive_int, metavar="N",
                        help="show the first N events")
    report.add_argument("--count", action="store_true", help="count events per probe")
    report.add_argument("--hist", metavar="FIELD", type=_hist,
                        help="histogram of an integer FIELD (FIELD:linear:MIN:MAX:STEP for "
                        "linear buckets)")
    report.add_argument("--by", metavar="KEY",
                        help="with --count or --hist: group by comm, pid, tid, cpu or a field")
    report.set_defaults(run=run_report)


def run_record(args: argparse.Namespace) -> int:
    from rawprobe import Tracer, check_privileges
    from rawprobe._record import Recorder

    check_privileges(bpf=True)
    tracer = Tracer(pid=args.pid or None, command=args.trace_command,
                    string_size=args.string_size, ring_size=args.ring_size, force=args.force,
                    backend="bpf", stack=args.stack)
    recorder: Recorder | None = None
    try:
        for word in args.probes:
            tracer.add(word, filter=args.filter)
        for warning in tracer.warnings:
            print(f"rawprobe: warning: {warning}", file=sys.stderr)
        recorder = Recorder(tracer, args.output, args.probes)
        started = time.monotonic()
        with _StopSignals() as stop:
            tracer.watch(stop.read_fd)
            if not stop.stopped:
                recorder.start()
                count = len(tracer.event_names())
                target = (f"command {tracer.command_pid}" if tracer.command_pid
                          else "pid " + ",".join(map(str, tracer.pids)) if tracer.pids
                          else "every process")
                print(f"rawprobe: recording {count} probe{'s' * (count != 1)} in {target} to "
                      f"{args.output}; Ctrl-C to end", file=sys.stderr)
            deadline = None if args.duration is None else started + args.duration
            while not stop.stopped and tracer.started:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                recorder.poll(remaining)
                if tracer.finished():
                    break
        with _removing_probes():
            recorder.finish()
            stats = tracer.stats()
            tracer.close()
    finally:
        if recorder is not None:
            recorder.close()
        tracer.close()
    events = stats.hits - stats.filtered - stats.lost
    line = (f"rawprobe: {events} event{'s' * (events != 1)}, {stats.lost} lost, "
            f"{recorder.bytes} bytes recorded in {args.output}")
    if stats.filtered:
        line += f", {stats.filtered} filtered"
    if stats.lost:
        line += " (the ring buffer was full: raise --ring-size)"
    print(line, file=sys.stderr)
    status = tracer.command_status
    if status:
        print(f"rawprobe: the command exited with status {status}", file=sys.stderr)
    return 0


def run_report(args: argparse.Namespace) -> int:
    import json

    from rawprobe._record import Recording

    if args.count and args.hist:
        raise UsageError("--count and --hist: choose one")
    if args.by and not (args.count or args.hist):
        raise UsageError("--by groups an aggregation: add --count or --hist")
    out = sys.stdout if args.output is None else truncate_output(open_output(args.output))
    try:
        with Recording(args.file) as recording:
            if args.count or args.hist:
                result = (recording.counts(args.by) if args.count
                          else recording.histograms(args.hist, args.by))
                out.write((json.dumps(result.to_dict()) if args.json else str(result)) + "\n")
                return 0
            formatter = recording.formatter()
            shown = 0
            limit = args.max_events
            for batch in recording.batches():
                room = None if limit is None else limit - shown
                if room is not None and room <= 0:
                    break
                out.write(formatter.batch_lines(batch, args.json, room))
                shown += batch.count if room is None else min(room, batch.count)
            trailer = recording.trailer
            summary: dict[str, Any] = {"events": shown}
            if trailer is not None:
                summary.update({key: trailer.stats.get(key, 0)
                                for key in ("hits", "lost", "filtered")})
            if args.json:
                out.write(json.dumps({"summary": summary}) + "\n")
        note = "" if trailer is not None else (
            " (the recording did not end cleanly: its last records may be missing)")
        print(f"rawprobe: {shown} event{'s' * (shown != 1)}"
              + (f", {summary['lost']} lost when recorded" if "lost" in summary else "")
              + note, file=sys.stderr)
    finally:
        if out is not sys.stdout:
            out.close()
        else:
            out.flush()
    return 0

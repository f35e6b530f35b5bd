"""``rawprobe syscalls`` (per-system-call calls, errors and time, like ``strace -c``) and
``rawprobe list --syscalls | --tracepoints`` (what kernel-side probes can name)."""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any, TextIO

from rawprobe import UsageError

__all__ = ["add_parsers", "parse_duration", "run_list_syscalls", "run_list_tracepoints"]

# include/linux/err.h: a system call fails with -4095..-1.
FAILED = "ret >= -4095 && ret <= -1"
_UNITS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}


def parse_duration(text: str) -> int:
    """``10ms``, ``250us``, ``2s``, ``500ns`` (a bare number is milliseconds, as perf trace's
    --duration takes it) in nanoseconds."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(ns|us|ms|s)?", text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (10ms, 250us, 2s)")
    return int(float(match.group(1)) * _UNITS[match.group(2) or "ms"])


def add_parsers(commands: Any) -> None:
    from ._attach import _positive_float, _positive_int

    parser = commands.add_parser(
        "syscalls",
        help="count system calls, errors and time in the kernel (like strace -c)",
        description="Count each system call's calls, errors and time spent in the kernel "
        "(entry to exit), in the kernel: nothing per call reaches rawprobe. Give '-- COMMAND "
        "...' to run a command and count it and every process it starts, or -p PID; with "
        "neither, every process on the host.",
        epilog="examples: rawprobe syscalls -- make ; rawprobe syscalls -p 1234 --duration 5 "
        "--by pid ; rawprobe syscalls --failed 'open*' -- ls /nonexistent",
    )
    parser.add_argument("syscalls", nargs="*", metavar="SYSCALL",
                        help="system calls or globs to count (default: every one)")
    parser.add_argument("-p", "--pid", type=_positive_int, action="append", default=[],
                        help="count only this process (repeatable)")
    parser.add_argument("--by", choices=("pid",), help="one table per process")
    parser.add_argument("--hist", action="store_true",
                        help="also a latency histogram (ns) per system call")
    parser.add_argument("--failed", action="store_true",
                        help="count only calls that failed (returned -4095..-1)")
    parser.add_argument("--min-duration", type=parse_duration, metavar="DURATION",
                        help="count only calls that took at least this long (10ms, 250us)")
    parser.add_argument("--filter", metavar="EXPR",
                        help="count only calls where EXPR holds: arguments by their kernel "
                        "names, ret, duration_ns, pid, tid, comm (see attach --filter)")
    parser.add_argument("--json", action="store_true", help="one JSON object")
    parser.add_argument("-o", "--output", metavar="FILE",
                        help="write the table to FILE (created mode 0600)")
    parser.add_argument("--duration", type=_positive_float, metavar="SECONDS",
                        help="stop after this many seconds")
    parser.add_argument("--interval", type=_positive_float, metavar="SECONDS",
                        help="print (and restart) the counts every SECONDS")
    parser.set_defaults(run=run_syscalls)


def _filter(args: argparse.Namespace) -> str | None:
    parts: list[str] = [args.filter] if args.filter else []
    if args.failed:
        parts.append(FAILED)
    if args.min_duration is not None:
        parts.append(f"duration_ns >= {args.min_duration}")
    if len(parts) == 1:
        return parts[0]
    return " && ".join(f"({part})" for part in parts) or None


def run_syscalls(args: argparse.Namespace) -> int:
    from rawprobe import AggregationSpec, HistSpec, Tracer, check_privileges

    from ._attach import Output, run_trace

    check_privileges(backend="bpf")
    if args.trace_command == []:
        raise UsageError("'--' is followed by no command: give the command to trace after "
                         "it, or drop the '--' to count every process")
    output = Output(args.output)
    tracer = Tracer(
        pid=args.pid or None,
        command=args.trace_command,
        backend="bpf",
        aggregation=AggregationSpec("syscalls", by=args.by,
                                    hist=HistSpec("latency") if args.hist else None),
    )
    filter_text = _filter(args)
    try:
        for pattern in args.syscalls or ["*"]:
            tracer.add(f"sys:{pattern}", filter=filter_text)
        out = output.accepted()  # every system call is accepted: now the file is emptied
        for warning in tracer.warnings:
            print(f"rawprobe: warning: {warning}", file=sys.stderr)
        run = argparse.Namespace(json=args.json, max_events=None, duration=args.duration,
                                 interval=args.interval, backend="bpf")
        stats = run_trace(tracer, run, out)
        status = tracer.command_status
        if args.json:
            summary: dict[str, Any] = {"lost": stats.lost, "filtered": stats.filtered}
            if status is not None:
                summary["command_status"] = status
            out.write(json.dumps({"summary": summary}) + "\n")
    finally:
        tracer.close()
        output.close()
    if stats.lost:
        print(f"rawprobe: {stats.lost} calls could not be counted (the per-process table was "
              "full)", file=sys.stderr)
    if status:
        print(f"rawprobe: the command exited with status {status}", file=sys.stderr)
    return 0


def run_list_syscalls(glob: str | None, *, json_output: bool, out: TextIO) -> int:
    """``rawprobe list --syscalls [GLOB]``: what ``sys:`` can name, with arguments."""
    from rawprobe._syscalls import load_catalog

    catalog = load_catalog(exit_ids=False)
    listing = catalog.listing(glob)
    if json_output:
        out.write(json.dumps(listing, indent=1) + "\n")
        return 0
    if not listing:
        raise UsageError(f"no system call matches {glob!r}")
    width = max(len(entry["name"]) for entry in listing)
    for entry in listing:
        args = ", ".join(f"{arg['type']} {arg['name']}" for arg in entry["args"] or ())
        number = "-" if entry["number"] is None else str(entry["number"])
        out.write(f"{number:>4}  {entry['name']:<{width}}  ({args})\n")
    return 0


def run_list_tracepoints(glob: str | None, *, json_output: bool, out: TextIO) -> int:
    """``rawprobe list --tracepoints [GLOB]``: what ``tp:`` can name, with fields."""
    from rawprobe._syscalls import list_tracepoints

    listings = list_tracepoints(glob)
    if json_output:
        out.write(json.dumps([listing.as_dict() for listing in listings], indent=1) + "\n")
        return 0
    if not listings:
        raise UsageError(f"no tracepoint matches {glob!r} (GROUP:EVENT, e.g. 'sched:*')")
    for listing in listings:
        if listing.error:
            out.write(f"{listing.name}  (unreadable: {listing.error})\n")
            continue
        fields = ", ".join(f"{type_text} {name}" for name, type_text in listing.fields)
        out.write(f"{listing.name}  ({fields})\n")
    return 0

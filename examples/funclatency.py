#!/usr/bin/env python3
"""funclatency: how long a function takes, as a histogram (like bcc's funclatency).

    funclatency.py TARGET:FUNCTION [-p PID] [-i SECONDS] [-d SECONDS] [-- COMMAND ...]

Entry and return are timed in the kernel; only the histogram reaches this process.
"""

from __future__ import annotations

import argparse
import sys

import rawprobe


def main(argv: list[str]) -> int:
    command: list[str] | None = None
    if "--" in argv:
        command = argv[argv.index("--") + 1 :]
        argv = argv[: argv.index("--")]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("place", help="TARGET:FUNCTION, e.g. libc:malloc or ./srv:handle")
    parser.add_argument("-p", "--pid", type=int, help="trace only this process")
    parser.add_argument("-i", "--interval", type=float, help="print every SECONDS")
    parser.add_argument("-d", "--duration", type=float, help="stop after SECONDS")
    args = parser.parse_args(argv)
    if command is None and args.pid is None and args.duration is None:
        parser.error("give -p PID, -d SECONDS or -- COMMAND: something must end the run")

    spec = rawprobe.AggregationSpec("hist", hist=rawprobe.HistSpec("latency"))
    try:
        with rawprobe.Tracer(args.pid, command=command, aggregation=spec) as tracer:
            tracer.add(f"p:{args.place}")
            while True:
                tracer.run(args.interval or args.duration)
                print(tracer.aggregates(reset=args.interval is not None))
                if args.interval is None or tracer.finished():
                    break
    except rawprobe.RawprobeError as error:
        print(f"funclatency: {error}", file=sys.stderr)
        return error.exit_status
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

#!/usr/bin/env python3
"""usdt_queries: every query a program runs and how long it took, from its USDT probes.

    usdt_queries.py PROGRAM [-p PID] [-- COMMAND ...]

The program marks queries with two USDT probes (sys/sdt.h):
    DTRACE_PROBE2(app, query__start, id, sql)   and   DTRACE_PROBE1(app, query__done, id)
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
    parser.add_argument("program", help="the file with the app:query__* probes")
    parser.add_argument("-p", "--pid", type=int, help="trace only this process")
    args = parser.parse_args(argv)

    started: dict[tuple[int, int], tuple[int, str]] = {}  # (pid, id) -> (ns, sql)
    slowest = 0.0
    try:
        with rawprobe.Tracer(args.pid, command=command) as tracer:
            tracer.add(rawprobe.Usdt(args.program, "app", "query__start",
                                     fetch={"id": "$arg1", "sql": "$arg2:string"}))
            tracer.add(rawprobe.Usdt(args.program, "app", "query__done", fetch={"id": "$arg1"}))
            for event in tracer.events():
                key = (event.pid, event.args["id"])
                if event.event == "query__start":
                    started[key] = (event.ts_ns, event.args["sql"])
                elif key in started:
                    begin, sql = started.pop(key)
                    ms = (event.ts_ns - begin) / 1e6
                    slowest = max(slowest, ms)
                    print(f"{ms:9.3f} ms  pid {event.pid:<7} {sql}")
            stats = tracer.stats()
    except rawprobe.RawprobeError as error:
        print(f"usdt_queries: {error}", file=sys.stderr)
        return error.exit_status
    print(f"{stats.events} probe hits, {stats.lost} lost; slowest {slowest:.3f} ms; "
          f"{len(started)} queries still running", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

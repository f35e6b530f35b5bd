#!/usr/bin/env python3
"""leaks: memory a program allocated and never freed, by the stack that allocated it.

    leaks.py [-p PID | -d SECONDS] [-n TOP] [-- COMMAND ...]

malloc's size is taken at entry, its result at return (with the user stack); free removes
the pointer. What is left at the end are the leak suspects, largest first.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict

import rawprobe


def main(argv: list[str]) -> int:
    command: list[str] | None = None
    if "--" in argv:
        command = argv[argv.index("--") + 1 :]
        argv = argv[: argv.index("--")]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("-p", "--pid", type=int, help="trace only this process")
    parser.add_argument("-d", "--duration", type=float, help="stop after SECONDS")
    parser.add_argument("-n", "--top", type=int, default=5, help="stacks to show")
    args = parser.parse_args(argv)

    sizes: dict[int, int] = {}  # tid -> size asked for by the malloc in progress
    live: dict[int, tuple[int, tuple[str, ...]]] = {}  # pointer -> (size, stack)
    try:
        with rawprobe.Tracer(args.pid, command=command, stack=True) as tracer:
            tracer.add("p:libc:malloc size=%di:u64")
            tracer.add("r:libc:malloc ptr=$retval:u64")
            tracer.add("p:libc:free ptr=%di:u64")
            for event in tracer.events(timeout=args.duration):
                if event.event == "malloc":
                    sizes[event.tid] = event.args["size"]
                elif event.event == "malloc__return" and event.tid in sizes:
                    stack = tuple(tracer_frames(tracer, event))
                    live[event.args["ptr"]] = (sizes.pop(event.tid), stack)
                elif event.event == "free":
                    live.pop(event.args["ptr"], None)
    except rawprobe.RawprobeError as error:
        print(f"leaks: {error}", file=sys.stderr)
        return error.exit_status
    by_stack: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for size, stack in live.values():
        by_stack[stack].append(size)
    ranked = sorted(by_stack.items(), key=lambda item: -sum(item[1]))
    for stack, allocations in ranked[: args.top]:
        print(f"{sum(allocations)} bytes in {len(allocations)} allocations from:")
        print("".join(f"    {frame}\n" for frame in stack[:8]))
    return 0


def tracer_frames(tracer: rawprobe.Tracer, event: rawprobe.Event) -> list[str]:
    """The event's stack, each address as function+offset where known."""
    return [tracer.resolver.describe(event.pid, address) for address in event.stack or ()]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""``rawprobe demo``: a real trace with nothing to type, on something every Linux host has."""

from __future__ import annotations

import argparse
import shlex
import sys

from rawprobe import DEFAULT_RING_SIZE, DEFAULT_STRING_SIZE

from ._attach import _summary, run_trace

TYPE_CHECKING = False  # mypy treats this name as True; at run time it spares importing typing.
if TYPE_CHECKING:
    from typing import Any

__all__ = ["DEMO_COMMAND", "DEMO_PROBES", "add_parsers"]

# Every file the command opens through libc, with the flags, and what open returned.
DEMO_PROBES = (
    "p:libc:open64 path=+0(%di):string flags=%si:x32",
    "r:libc:open64 fd=$retval:s32",
)
# A shell and the cat it starts: both are traced (children are followed); the shell opens
# /dev/null for the redirection, cat the files, one of which does not exist.
DEMO_COMMAND = ("sh", "-c", "cat /etc/hostname /etc/os-release /nonexistent >/dev/null 2>&1")


def add_parsers(commands: Any) -> None:
    parser = commands.add_parser(
        "demo",
        help="trace a short command, with nothing to type",
        description="Runs: rawprobe attach " + " ".join(f"'{p}'" for p in DEMO_PROBES)
        + " -- " + " ".join(shlex.quote(a) for a in DEMO_COMMAND),
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.set_defaults(run=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    from rawprobe import Tracer

    print("rawprobe demo: every file a shell and its cat open through libc's open64(): path "
          "and flags on entry, the descriptor returned. The same as:", file=sys.stderr)
    print("  rawprobe attach " + " ".join(f"'{p}'" for p in DEMO_PROBES) + " -- "
          + " ".join(shlex.quote(a) for a in DEMO_COMMAND), file=sys.stderr)
    sys.stderr.flush()
    args.duration = None
    args.max_events = None
    with Tracer(command=DEMO_COMMAND, string_size=DEFAULT_STRING_SIZE,
                ring_size=DEFAULT_RING_SIZE) as tracer:
        for word in DEMO_PROBES:
            tracer.add(word)
        stats = run_trace(tracer, args, sys.stdout)
        _summary(stats, args, sys.stdout, tracer.command_status)
    return 0

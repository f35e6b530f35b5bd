"""``rawprobe list`` and ``rawprobe resolve``: argument parsing for the symbol commands."""

from __future__ import annotations

import argparse
import sys

TYPE_CHECKING = False  # mypy treats this name as True; at run time it spares importing typing.
if TYPE_CHECKING:
    from typing import Any

__all__ = ["add_parsers"]


def _positive_int(text: str) -> int:
    from ._attach import _positive_int as positive

    return positive(text)


def add_parsers(commands: Any) -> None:
    listing = commands.add_parser(
        "list",
        help="probe-able functions (or USDT probes, variables, source lines) of a file; "
        "system calls and tracepoints",
        description="List the functions of TARGET that a probe can name, with their file "
        "offsets, addresses, sizes and the symbol source each came from; with --usdt its "
        "USDT probes; with --vars the variables a probe at TARGET:LOCATION sees (perf probe "
        "-V); with --lines the lines of a function a probe can name (perf probe -L). With "
        "--syscalls or --tracepoints, what sys: and tp: probes can name (GLOB in place of "
        "TARGET).",
    )
    listing.add_argument("target", metavar="TARGET", nargs="?",
                         help="a path or a library name (libc); TARGET:LOCATION with --vars, "
                         "TARGET:FUNC with --lines")
    listing.add_argument("pattern", metavar="GLOB", nargs="?", help="only names matching it")
    shown = listing.add_mutually_exclusive_group()
    shown.add_argument("--usdt", action="store_true", help="list USDT probes instead")
    shown.add_argument("--vars", action="store_true",
                       help="the variables a probe at TARGET:LOCATION (FUNC, FUNC+OFFSET, "
                       "FILE:LINE, FUNC:N) sees, site by site, and what each compiles to")
    shown.add_argument("--lines", action="store_true",
                       help="the source lines of TARGET:FUNC that have code (FUNC:N, "
                       "FILE:LINE)")
    shown.add_argument("--syscalls", action="store_true",
                       help="list the system calls sys: can probe, with their arguments")
    shown.add_argument("--tracepoints", action="store_true",
                       help="list the kernel's tracepoints (GROUP:EVENT) tp: can probe, with "
                       "their fields")
    listing.add_argument("--force", action="store_true",
                         help="with --vars: resolve what would otherwise be refused")
    listing.add_argument("-p", "--pid", type=_positive_int, help="look TARGET up in this process")
    listing.add_argument("--json", action="store_true", help="a JSON array")
    listing.set_defaults(run=_run_list)

    resolve = commands.add_parser(
        "resolve",
        help="how a probe's file offset is computed, step by step",
        description="Show where TARGET:LOCATION resolves to and the arithmetic behind it.",
    )
    resolve.add_argument("place", metavar="TARGET:LOCATION")
    resolve.add_argument("-p", "--pid", type=_positive_int, help="look TARGET up in this process")
    resolve.add_argument("--json", action="store_true", help="one JSON object per line")
    resolve.add_argument("--force", action="store_true",
                         help="resolve what would otherwise be refused as risky")
    resolve.set_defaults(run=_run_resolve)


def _run_list(args: argparse.Namespace) -> int:
    from rawprobe import UsageError

    if args.syscalls or args.tracepoints:
        if args.pid or args.pattern or args.force:
            raise UsageError("list --syscalls and list --tracepoints take one GLOB and no "
                             "other option but --json")
        from ._syscalls import run_list_syscalls, run_list_tracepoints

        run = run_list_syscalls if args.syscalls else run_list_tracepoints
        return run(args.target, json_output=args.json, out=sys.stdout)
    if args.target is None:
        raise UsageError("list needs a TARGET (a path or a library name), or --syscalls or "
                         "--tracepoints")
    if args.force and not args.vars:
        raise UsageError("list --force applies to --vars only")
    if (args.vars or args.lines) and args.pattern is not None:
        raise UsageError(f"--{'vars' if args.vars else 'lines'} takes one TARGET:LOCATION, "
                         f"not a GLOB after it ({args.pattern!r})")
    if args.vars:
        from ._debuginfo import run_list_vars

        return run_list_vars(args.target, pid=args.pid, json_output=args.json,
                             force=args.force, out=sys.stdout)
    if args.lines:
        from ._debuginfo import run_list_lines

        return run_list_lines(args.target, pid=args.pid, json_output=args.json, out=sys.stdout)
    if args.usdt:
        from ._usdt import run_list_usdt

        return run_list_usdt(args.target, args.pattern, pid=args.pid, json_output=args.json,
                             out=sys.stdout)
    from ._symbols import run_list

    return run_list(args.target, args.pattern, pid=args.pid, json_output=args.json,
                    out=sys.stdout)


def _run_resolve(args: argparse.Namespace) -> int:
    from ._symbols import run_resolve

    return run_resolve(args.place, pid=args.pid, json_output=args.json, force=args.force,
                       out=sys.stdout)

"""The ``rawprobe`` command: argument parsing, wiring of the library, and output.

The library never prints; everything a user sees is written here. Errors the user can fix end
with exit status 2, failures at run time with 1, both as one line on stderr, never a traceback
(set RAWPROBE_DEBUG=1 to see one for an unexpected error).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Sequence

from rawprobe import RawprobeError, __version__

__all__ = ["main"]


def _build_parser() -> argparse.ArgumentParser:
    from . import _attach, _demo, _doctor, _inspect, _probes, _syscalls

    parser = argparse.ArgumentParser(
        prog="rawprobe",
        description="Trace functions of any ELF program or library with uprobes and BPF, "
        "and system calls and kernel tracepoints beside them.",
    )
    parser.add_argument("--version", action="version", version=f"rawprobe {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log what rawprobe does (twice: libbpf's debug output too)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    _attach.add_parser(commands)
    _syscalls.add_parser(commands)
    _inspect.add_parsers(commands)
    _demo.add_parser(commands)
    _probes.add_parser(commands)
    _doctor.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    # Everything after the first "--" is the command to trace, untouched by argparse.
    command: list[str] | None = None
    if "--" in args_list:
        split = args_list.index("--")
        args_list, command = args_list[:split], args_list[split + 1 :]
    parser = _build_parser()
    args = parser.parse_args(args_list)
    args.trace_command = command
    if command is not None and args.command not in ("attach", "syscalls"):
        parser.error("'-- COMMAND' is only accepted by 'rawprobe attach' and 'rawprobe "
                     "syscalls'")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose > 1 else logging.INFO if args.verbose else
        logging.WARNING,
        format="rawprobe: %(message)s",
    )
    # libbpf's own warnings come back in rawprobe's errors (a failed load carries its log):
    # shown as they happen with -v, its debug output with -vv.
    if args.verbose < 2:
        logging.getLogger("rawprobe.libbpf").setLevel(
            logging.WARNING if args.verbose else logging.ERROR)
    try:
        status: int = args.run(args)
        return status
    except RawprobeError as error:
        print(f"rawprobe: error: {error}", file=sys.stderr)
        return error.exit_status
    except KeyboardInterrupt:
        # Ctrl-C before tracing started (while resolving, say): nothing was planted.
        print("rawprobe: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of our output went away (rawprobe ... | head): a normal end.
        _silence_stdout()
        return 0
    except Exception as error:  # an internal error: say so in one line, traceback on request
        if os.environ.get("RAWPROBE_DEBUG"):
            traceback.print_exc()
        print(
            f"rawprobe: internal error: {type(error).__name__}: {error} "
            "(set RAWPROBE_DEBUG=1 for a traceback)",
            file=sys.stderr,
        )
        return 1


def _silence_stdout() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)

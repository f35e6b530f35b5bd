"""The ``rawprobe`` command: argument parsing, wiring of the library, and output.

The library never prints; everything a user sees is written here. Errors the user can fix end
with exit status 2, failures at run time with 1, both as one line on stderr, never a traceback
(set RAWPROBE_DEBUG=1 to see one for an unexpected error).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from rawprobe import RawprobeError, __version__, _log

TYPE_CHECKING = False  # mypy treats this name as True; at run time it spares importing typing.
if TYPE_CHECKING:
    from typing import Any

__all__ = ["main"]


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, told the terminal's width: left to itself it imports shutil (and
    with it bz2, lzma, fnmatch) at every start, to ask."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        if width is None:
            try:
                columns = int(os.environ.get("COLUMNS", ""))
            except ValueError:
                try:
                    columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
                except (AttributeError, ValueError, OSError):
                    columns = 80
            width = columns - 2
        super().__init__(prog, indent_increment, max_help_position, width)


class _ArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser whose help (and its subcommands') uses :class:`_HelpFormatter`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)


def _build_parser() -> argparse.ArgumentParser:
    from . import _attach, _demo, _doctor, _inspect, _probes, _record

    parser = _ArgumentParser(
        prog="rawprobe",
        description="Trace functions of any ELF program or library with uprobes and BPF.",
    )
    parser.add_argument("--version", action="version", version=f"rawprobe {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log what rawprobe does (twice: libbpf's debug output too)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND",
                                     parser_class=_ArgumentParser)
    commands.required = True
    _attach.add_parser(commands)
    _record.add_parsers(commands)
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
    if command is not None and args.command not in ("attach", "record"):
        parser.error("'-- COMMAND' is only accepted by 'rawprobe attach' and 'rawprobe record'")
    # libbpf's own warnings come back in rawprobe's errors (a failed load carries its log):
    # shown as they happen with -v, its debug output with -vv.
    levels = {"": _log.DEBUG if args.verbose > 1 else _log.INFO if args.verbose else
              _log.WARNING}
    if args.verbose < 2:
        levels["rawprobe.libbpf"] = _log.WARNING if args.verbose else _log.ERROR
    _log.configure("rawprobe: %(message)s", levels)
    try:
        status: int = args.run(args)
        return status
    except RawprobeError as error:
        print(f"rawprobe: error: {error}", file=sys.stderr)
        return error.exit_status
    except KeyboardInterrupt as interrupt:
        from ._attach import LeftPlanted, left_planted

        if isinstance(interrupt, LeftPlanted):
            left_planted()
        else:
            # Ctrl-C before tracing started (while resolving, say): nothing was planted.
            print("rawprobe: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of our output went away (rawprobe ... | head): a normal end.
        _silence_stdout()
        return 0
    except Exception as error:  # an internal error: say so in one line, traceback on request
        if os.environ.get("RAWPROBE_DEBUG"):
            import traceback

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

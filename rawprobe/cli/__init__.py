"""The ``rawprobe`` command: argument parsing, wiring of the library, and output.

The library never prints; everything a user sees is written here. Errors the user can fix end
with exit status 2, failures at run time with 1, both as one line on stderr, never a traceback
(set RAWPROBE_DEBUG=1 to see one for an unexpected error).
"""

from __future__ import annotations

# Only what the interpreter has loaded already: everything else is imported inside main(),
# where Ctrl-C is handled (a KeyboardInterrupt in the middle of an import is one, too).
import os
import signal
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence

__all__ = ["main", "run"]

# Failures to write the output (a full disk, a quota, a file too large, a dead device): a
# failure at run time, not a bug of rawprobe's.
_WRITE_ERRORS = frozenset({28, 122, 27, 5, 30})  # ENOSPC, EDQUOT, EFBIG, EIO, EROFS


def run() -> None:
    """The console entry point (``rawprobe``, ``python -m rawprobe``): :func:`main`, then exit
    with its status. Ctrl-C at any moment ends rawprobe with status 130 and one line, never a
    traceback."""
    try:
        status = main()
    except KeyboardInterrupt:  # before main() could catch it, or while it reported one
        _ignore_interrupts()
        _report("rawprobe: interrupted")
        status = 130
    _ignore_interrupts()  # the run is over: nothing is left that Ctrl-C could stop
    sys.exit(status)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    previous = signal.getsignal(signal.SIGINT)
    try:
        return _main(argv)
    except KeyboardInterrupt:
        # Ctrl-C before tracing started (while importing, resolving...): nothing was planted.
        _ignore_interrupts()
        _report("rawprobe: interrupted")
        return 130
    finally:
        _restore_interrupts(previous)


def _main(argv: Sequence[str] | None) -> int:
    import logging

    from rawprobe import RawprobeError

    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        args = _parse(args_list)
        logging.basicConfig(
            level=logging.DEBUG if args.verbose > 1 else logging.INFO if args.verbose else
            logging.WARNING,
            format="rawprobe: %(message)s",
        )
        # libbpf's own warnings come back in rawprobe's errors (a failed load carries its
        # log): shown as they happen with -v, its debug output with -vv.
        if args.verbose < 2:
            logging.getLogger("rawprobe.libbpf").setLevel(
                logging.WARNING if args.verbose else logging.ERROR)
        status: int = args.run(args)
        sys.stdout.flush()  # here, where a failure to write is reported, not at exit
        return status
    except RawprobeError as error:
        _report(f"rawprobe: error: {error}")
        return error.exit_status
    except BrokenPipeError:
        # The reader of our output went away (rawprobe ... | head): a normal end.
        _silence_stdout()
        return 0
    except OSError as error:
        if error.errno not in _WRITE_ERRORS or error.filename is not None:
            return _internal_error(error)
        _silence_stdout()  # what is still buffered cannot be written either
        _report(f"rawprobe: error: cannot write the output: {error.strerror}")
        return 1
    except Exception as error:
        return _internal_error(error)


def _parse(args_list: list[str]) -> argparse.Namespace:
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
    return args


def _build_parser() -> argparse.ArgumentParser:
    import argparse

    from rawprobe import __version__

    from . import _attach, _demo, _doctor, _inspect, _probes, _serve, _syscalls

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
    _serve.add_parser(commands)
    return parser


def _internal_error(error: BaseException) -> int:
    """An internal error: say so in one line, with a traceback on request."""
    if os.environ.get("RAWPROBE_DEBUG"):
        import traceback

        traceback.print_exception(error)
    _report(f"rawprobe: internal error: {type(error).__name__}: {error} "
            "(set RAWPROBE_DEBUG=1 for a traceback)")
    return 1


def _report(line: str) -> None:
    import contextlib

    with contextlib.suppress(OSError, ValueError):  # no stderr to report on
        print(line, file=sys.stderr, flush=True)


def _ignore_interrupts() -> None:
    if _main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _restore_interrupts(previous: object) -> None:
    if _main_thread() and previous is not None:
        signal.signal(signal.SIGINT, previous)  # type: ignore[arg-type]


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass

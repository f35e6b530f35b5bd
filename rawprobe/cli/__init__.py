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
    except KeyboardInterrupt as interrupt:
        _ignore_interrupts()
        attach = sys.modules.get(f"{__name__}._attach")
        if attach is not None and isinstance(interrupt, attach.LeftPlanted):
            attach.left_planted()  # a second Ctrl-C while the probes were being removed
        else:
            # Ctrl-C before tracing started (while importing, resolving...): nothing was
            # planted.
            _report("rawprobe: interrupted")
        return 130
    finally:
        _restore_interrupts(previous)


def _main(argv: Sequence[str] | None) -> int:
    from rawprobe import RawprobeError, _log

    args_list = list(sys.argv[1:] if argv is None else argv)
    if os.geteuid() == 0:
        _preload(args_list)
    try:
        args = _parse(args_list)
        # libbpf's own warnings come back in rawprobe's errors (a failed load carries its
        # log): shown as they happen with -v, its debug output with -vv.
        levels = {"": _log.DEBUG if args.verbose > 1 else _log.INFO if args.verbose else
                  _log.WARNING}
        if args.verbose < 2:
            levels["rawprobe.libbpf"] = _log.WARNING if args.verbose else _log.ERROR
        _log.configure("rawprobe: %(message)s", levels)
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
    from ._parser import build_parser  # argparse: imported once the preload has begun

    named = [arg for arg in args_list if not arg.startswith("-")]
    parser = build_parser(named[0] if named else None)
    args = parser.parse_args(args_list)
    args.trace_command = command
    if command is not None and args.command not in ("attach", "record", "syscalls"):
        parser.error("'-- COMMAND' is only accepted by 'rawprobe attach', 'rawprobe record' "
                     "and 'rawprobe syscalls'")
    return args


def _preload(args: Sequence[str]) -> None:
    """Start loading the BPF object in a thread for what a plain stream (``attach`` or
    ``record`` of probe words, no aggregation, no command) will want, while the rest of the
    command line is imported and the probes planned: ~10 ms of the kernel's and libbpf's work
    off the path to the first event. Anything else loads its own (see rawprobe._bpf.loader)."""
    words = [arg for arg in args if not arg.startswith("-")]
    if not words or words[0] not in ("attach", "record") or "--" in args:
        return
    if os.sysconf("SC_OPEN_MAX") < 1024:
        return  # a loaded object's maps and programs take descriptors the run may need
    aggregations = ("--count", "--hist", "--sum", "--min", "--max", "--avg", "--stats",
                    "--span", "tracefs", "--backend=tracefs")
    if any(arg in args for arg in aggregations):
        return
    probes = [word for word in words[1:] if ":" in word]
    if any(word.startswith(("tp:", "sys:", "t:")) for word in probes):
        return
    from rawprobe import DEFAULT_RING_SIZE

    ring_size = DEFAULT_RING_SIZE
    if "--ring-size" in args:
        try:
            ring_size = int(args[args.index("--ring-size") + 1], 0)
        except (IndexError, ValueError):
            return
    from rawprobe._bpf import loader

    loader.preload(lambda: loader.expected_spec(probes, ring_size=ring_size,
                                                filters="--filter" in args))


def _internal_error(error: BaseException) -> int:
    """An internal error: say so in one line, with a traceback on request."""
    if os.environ.get("RAWPROBE_DEBUG"):
        import traceback

        traceback.print_exception(error)
    _report(f"rawprobe: internal error: {type(error).__name__}: {error} "
            "(set RAWPROBE_DEBUG=1 for a traceback)")
    return 1


def _report(line: str) -> None:
    try:  # noqa: SIM105 - contextlib may not be importable here
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError):  # no stderr to report on
        pass


def _ignore_interrupts() -> None:
    _set_sigint(signal.SIG_IGN)


def _restore_interrupts(previous: object) -> None:
    if previous is not None:
        _set_sigint(previous)


def _set_sigint(handler: object) -> None:
    """Set SIGINT's handler where Python allows it (the main thread; from another thread, as
    a library caller may run main(), nothing changes). Nothing is imported: this runs when
    even opening a module's file may fail (out of descriptors)."""
    try:  # noqa: SIM105 - contextlib may not be importable here
        signal.signal(signal.SIGINT, handler)  # type: ignore[arg-type]
    except ValueError:
        pass


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass

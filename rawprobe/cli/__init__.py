"""The ``rawprobe`` command: argument parsing, wiring of the library, and output.

The library never prints; everything a user sees is written here. Errors the user can fix end
with exit status 2, failures at run time with 1, both as one line on stderr, never a traceback
(set RAWPROBE_DEBUG=1 to see one for an unexpected error).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from rawprobe import DEFAULT_RING_SIZE, RawprobeError, _log

__all__ = ["main"]


def _preload(args: Sequence[str]) -> None:
    """Start loading the BPF object in a thread for what a plain stream (``attach`` or
    ``record`` of probe words, no aggregation, no command) will want, while the rest of the
    command line is imported and the probes planned: ~10 ms of the kernel's and libbpf's work
    off the path to the first event. Anything else loads its own (see rawprobe._bpf.loader)."""
    words = [arg for arg in args if not arg.startswith("-")]
    if not words or words[0] not in ("attach", "record") or "--" in args:
        return
    if any(arg in args for arg in ("--count", "--hist", "tracefs", "--backend=tracefs")):
        return
    ring_size = DEFAULT_RING_SIZE
    if "--ring-size" in args:
        try:
            ring_size = int(args[args.index("--ring-size") + 1], 0)
        except (IndexError, ValueError):
            return
    from rawprobe._bpf import loader

    probes = [word for word in words[1:] if ":" in word]
    loader.preload(lambda: loader.expected_spec(probes, ring_size=ring_size,
                                                filters="--filter" in args))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if os.geteuid() == 0:
        _preload(args_list)
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

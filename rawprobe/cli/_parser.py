"""The command line's parser: argparse, and every command's options."""

from __future__ import annotations

import argparse
import os
import sys

from rawprobe import __version__

TYPE_CHECKING = False  # mypy treats this name as True; at run time it spares importing typing.
if TYPE_CHECKING:
    from typing import Any

__all__ = ["build_parser"]


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


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``command`` (the word naming a subcommand), only that subcommand's
    module is imported and its options declared (all of them otherwise: for ``--help`` or an
    unknown command)."""
    from importlib import import_module

    parser = _ArgumentParser(
        prog="rawprobe",
        description="Trace functions of any ELF program or library with uprobes and BPF, "
        "and system calls and kernel tracepoints beside them.",
    )
    parser.add_argument("--version", action="version", version=f"rawprobe {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log what rawprobe does (twice: libbpf's debug output too)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND",
                                     parser_class=_ArgumentParser)
    commands.required = True
    modules = dict.fromkeys(_COMMANDS.values())
    if command in _COMMANDS:
        modules = {_COMMANDS[command]: None}
    for module in modules:
        import_module(f".{module}", __package__).add_parsers(commands)
    return parser


# Each command, by the module that declares it (in the order --help lists them).
_COMMANDS = {"attach": "_attach", "syscalls": "_syscalls", "record": "_record",
             "report": "_record", "list": "_inspect", "resolve": "_inspect", "demo": "_demo",
             "probes": "_probes", "doctor": "_doctor", "serve": "_serve"}

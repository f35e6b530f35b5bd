"""What ``attach`` shows besides its lines: flame graphs, timelines, and the terminal view.

- ``--flamegraph FILE.svg`` (with ``--count --stack``): the counted stacks of the whole run
  (every ``--interval`` added up) as an interactive SVG, written at the end.
- ``--trace-events FILE.json``: the events as Chrome trace events (Perfetto, chrome://tracing),
  written as they come; entry/return pairs are slices (:mod:`rawprobe._output.timeline`).
- On a terminal, ``--interval`` redraws the aggregation in place, and a count table shows its
  top rows, as many as the screen holds (``--top N``, where the command has it, asks for N);
  piped, each interval is printed after the last, whole.

Files are created as ``-o`` creates them (mode 0600: they hold what the probes read).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from collections.abc import Sequence

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TextIO

    from rawprobe import Count, Event, EventFormatter, Tracer, TraceStats
    from rawprobe._output.timeline import Timeline

__all__ = ["Views", "add_arguments", "check_arguments"]

CLEAR = "\x1b[H\x1b[2J"  # cursor home, clear the screen (ECMA-48 CUP and ED)


def add_arguments(parser: argparse.ArgumentParser, aggregate: Any) -> None:
    aggregate.add_argument("--flamegraph", metavar="FILE.svg",
                           help="with --count --stack: write the stacks as an interactive "
                           "flame graph (SVG)")
    parser.add_argument("--trace-events", metavar="FILE.json",
                        help="also write the events as Chrome trace events (Perfetto, "
                        "chrome://tracing): entry/return pairs as slices per thread")


def check_arguments(args: argparse.Namespace) -> None:
    """Refuse what these views cannot do with the rest of the command line."""
    from rawprobe import UsageError

    flamegraph = getattr(args, "flamegraph", None)
    if flamegraph and not (args.count and args.stack):
        raise UsageError("--flamegraph draws counted stacks: use it with --count --stack")
    if getattr(args, "trace_events", None) and (args.count or args.hist):
        raise UsageError("--trace-events writes events, which --count and --hist aggregate "
                         "in the kernel instead: leave those out")


class Views:
    """The extra outputs of one run, fed by the printer."""

    def __init__(self, args: argparse.Namespace, tracer: Tracer, out: TextIO,
                 formatter: EventFormatter) -> None:
        self.args = args
        self.tracer = tracer
        self.formatter = formatter
        self.out = out
        self.flamegraph: str | None = getattr(args, "flamegraph", None)
        self.stacks: list[Count] = []
        self.top: int | None = getattr(args, "top", None)
        # Redraw in place only on a terminal, for people; a pipe or a file gets every table.
        self.terminal = (not args.json and getattr(args, "interval", None) is not None
                         and out.isatty() and os.environ.get("TERM") != "dumb")
        self._trace_path: str | None = getattr(args, "trace_events", None)
        self._trace_file: TextIO | None = None
        self._timeline: Timeline | None = None
        self._started_ns = time.monotonic_ns()
        if self.flamegraph:
            self._check_writable(self.flamegraph)
        if self._trace_path:
            self._trace_file = _create(self._trace_path)

    @staticmethod
    def _check_writable(path: str) -> None:
        """Fail before tracing, not after, when the flame graph cannot be written."""
        from ._attach import open_output

        os.close(open_output(path))

    # -- events ---------------------------------------------------------------------------

    def events(self, events: Sequence[Event]) -> None:
        if self._trace_file is not None and events:
            self._timeline_for(self._trace_file).write(events)

    def _timeline_for(self, stream: TextIO) -> Timeline:
        if self._timeline is None:
            from rawprobe._output.timeline import Timeline

            plan = self.tracer.plan
            assert plan is not None  # events come only from a started tracer
            self._timeline = Timeline(stream, plan, self.formatter, base_ns=self._started_ns,
                                      metadata={"command": _command_line()})
        return self._timeline

    # -- aggregations ---------------------------------------------------------------------

    def table_text(self, result: object, stamp: str) -> str:
        """The text of one aggregation: redrawn in place on a terminal, top rows only where
        asked or where the screen is too small for every row."""
        from rawprobe import CountTable

        if self.flamegraph and isinstance(result, CountTable):
            self.stacks.extend(result.rows)
        top = self.top
        if top is None and self.terminal and isinstance(result, CountTable) and result.rows:
            # The screen less the time stamp, the header and the "more" line.
            top = max(1, os.get_terminal_size(self.out.fileno()).lines - 4)
            if result.rows[0].stack is not None:
                top = None  # a row per stack and its frames: scrolling is the way to read it
        body = str(result)
        if top is not None and isinstance(result, CountTable) and len(result.rows) > top:
            shown, rest = result.rows[:top], result.rows[top:]
            body = (str(CountTable(shown)) + f"\n... {len(rest)} more, "
                    f"{sum(row.count for row in rest)} counted")
        text = f"{stamp}\n{body}\n"
        return CLEAR + text if self.terminal else text

    # -- the end --------------------------------------------------------------------------

    def close(self, stats: TraceStats | None) -> None:
        """Write the flame graph, end the timeline."""
        summary: dict[str, Any] = {}
        if stats is not None:
            summary = {"events": stats.events, "lost": stats.lost, "hits": stats.hits,
                       "filtered": stats.filtered}
        if self._trace_file is not None:
            try:
                if self._timeline is not None or self.tracer.plan is not None:
                    # Even with no events: a valid document, with the summary.
                    self._timeline_for(self._trace_file).close(summary)
            finally:
                self._trace_file.close()
                self._trace_file = None
        if self.flamegraph and self.tracer.plan is not None:  # it ran
            self._write_flamegraph(self.flamegraph)

    def _write_flamegraph(self, path: str) -> None:
        from rawprobe._output.flamegraph import render_flamegraph
        from rawprobe._output.tables import count_table

        rows = count_table(self.stacks).rows
        svg = render_flamegraph(
            (((row.event, *reversed(row.stack or ())), row.count) for row in rows),
            title="rawprobe " + " ".join(getattr(self.args, "probes", [])),
            count_name="calls")
        with _create(path) as file:
            file.write(svg)
        print(f"rawprobe: flame graph of {sum(row.count for row in rows)} calls in {path}",
              file=sys.stderr)


def _create(path: str) -> TextIO:
    """``path`` emptied and opened for writing, as ``-o`` opens its file (never through a
    symbolic link or into another user's file; created 0600)."""
    from ._attach import open_output, truncate_output

    return truncate_output(open_output(path))


def _command_line() -> str:
    return "rawprobe " + shlex.join(sys.argv[1:])

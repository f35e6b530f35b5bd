"""Events as Chrome's Trace Event Format, for the Perfetto UI and ``chrome://tracing``.

:class:`TraceEventWriter` streams: each event is written to the stream as it is given, and the
document is valid JSON once :meth:`~TraceEventWriter.close` has written its end. The writer
keeps only what balancing needs: the names of the slices still open on each thread (and, while
any is open, the thread's last timestamp), and each thread's last name (so a name is written
once, not with every event). Memory stays flat however long the trace.

The document (`Trace Event Format`_, JSON Object Format)::

    {"traceEvents":[
    {"name":"process_name","ph":"M","pid":41,"tid":41,"args":{"name":"srv"}},
    {"name":"thread_name","ph":"M","pid":41,"tid":42,"args":{"name":"worker"}},
    {"name":"handle","ph":"B","ts":0.0,"pid":41,"tid":42,"args":{"fd":3}},
    {"name":"read","ph":"X","ts":1.5,"dur":20.25,"pid":41,"tid":42,"args":{"ret":512}},
    {"name":"cache_miss","ph":"i","s":"t","ts":30.0,"pid":41,"tid":42,"args":{"key":"k1"}},
    {"name":"handle","ph":"E","ts":52.125,"pid":41,"tid":42,"args":{"ret":0}}
    ],"displayTimeUnit":"ns","otherData":{"generator":"rawprobe"}}

- ``ts`` and ``dur`` are microseconds (the format's unit) as JSON numbers, fractions carrying
  the nanoseconds; ``ts`` counts from ``base_ns`` (by default the first timestamp given).
  ``displayTimeUnit`` asks viewers to show nanoseconds: uprobe latencies are often below 1 µs.
- ``pid`` and ``tid`` are the ones given, unchanged. ``args`` is the given mapping (left out
  when empty); values that JSON cannot hold are written as text (bytes as ``0x`` hex, NaN as
  ``"nan"``).
- ``"cat"`` is present when a category is given.
- A function call is a ``B`` event at entry and an ``E`` event at return, on the caller's thread
  (their ``args`` are merged by viewers: arguments from entry, return value from return). An
  event that arrives already paired, such as a system call with its duration, is one ``X``
  (complete) event. Anything else is an instant event, ``"ph":"i"`` with thread scope ``"s":"t"``.
- Process and thread names are metadata events (``"ph":"M"``, ``process_name`` and
  ``thread_name``), written when a name is first given or changes (a thread that calls exec).

Why ``B``/``E`` pairs and not only ``X`` events: an entry is written the moment it arrives and
the writer then remembers only the slice's name, where an ``X`` event would have to hold the
entry's arguments until the return; the file stays in time order per thread (an ``X`` is written
at its end but stamped with its start); and a trace cut short still shows the calls that had
begun.

Balance is guaranteed whatever the probes deliver: viewers nest ``E`` under the latest ``B`` of
the thread, so a return whose entry was missed, or a missing return (a lost record, ``longjmp``,
a C++ exception unwinding past the function), would otherwise mis-nest everything after it.

- An ``end`` closes the innermost open slice of that name on the thread. Slices opened inside
  it and still open get an ``E`` first, at the same time, with ``"unfinished": true`` in
  ``args``.
- An ``end`` with no open slice of that name becomes an instant event with
  ``"unmatched_end": true`` in ``args``.
- :meth:`~TraceEventWriter.close` ends every slice still open at the last timestamp of the
  trace (or ``end_ns``), with ``"unfinished": true``.
- While a thread has slices open, a timestamp earlier than that thread's previous one is raised
  to it (``clamped`` counts them), so no slice ends before it begins.

.. _Trace Event Format: https://docs.google.com/document/d/1CvAClvFfyA5R-PhYUmn5OOQtYMH4h6I0nSsKchNAySU
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

from .._errors import ClosedError, UsageError

__all__ = ["TraceEventWriter"]


@dataclass
class _Thread:
    """A thread's slices still open, innermost last, and the last timestamp it was given."""

    open_names: list[str] = field(default_factory=list)
    last_ns: int = 0


def _jsonable(value: object) -> object:
    """What ``json`` cannot write itself: bytes as ``0x`` hex, anything else as its text."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "0x" + bytes(value).hex()
    return str(value)


def _finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float (inside dicts and lists too) as its text."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


# One encoder for every event: json.dumps with options builds a new encoder at each call, which
# was a third of the time per event. allow_nan=False: NaN and Infinity are not JSON, and viewers
# refuse the whole file over one.
_ENCODE = json.JSONEncoder(
    separators=(",", ":"), default=_jsonable, allow_nan=False
).encode


class TraceEventWriter:
    """Write Trace Event Format JSON to a text stream, one event at a time.

    Timestamps are integer nanoseconds, all on one clock (an event's ``ts_ns``). The writer
    does not close ``stream``; it is a context manager that calls :meth:`close` on exit.

    Args:
        stream: Where the JSON goes (a file opened for text, a ``StringIO``).
        base_ns: The time written as ``ts`` 0; by default the first timestamp given. Give the
            time tracing started when events may arrive slightly out of order across threads,
            so that none lands before 0.
        metadata: Extra entries for the document's ``otherData`` object (host, command line).
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        base_ns: int | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        self._stream = stream
        self._base_ns = base_ns
        self._other_data: dict[str, Any] = {"generator": "rawprobe", **(metadata or {})}
        self._threads: dict[tuple[int, int], _Thread] = {}
        self._process_names: dict[int, str] = {}
        self._thread_names: dict[tuple[int, int], str] = {}
        self._last_ns: int | None = None
        self._separator = "\n"
        self._closed = False
        self.events = 0  #: events written, metadata included
        self.clamped = 0  #: timestamps raised to keep a thread's open slices in order
        stream.write('{"traceEvents":[')

    # -- what callers give ------------------------------------------------------------------

    def name_process(self, pid: int, name: str) -> None:
        """Name a process (a ``process_name`` metadata event), unless it already has that name.

        Args:
            pid: The process id.
            name: Its name (its command, say).

        Raises:
            ClosedError: The writer was closed.
        """
        if self._process_names.get(pid) == name:
            return
        self._process_names[pid] = name
        self._write({"name": "process_name", "ph": "M", "pid": pid, "tid": pid,
                     "args": {"name": name}})

    def name_thread(self, pid: int, tid: int, name: str) -> None:
        """Name a thread (a ``thread_name`` metadata event), unless it already has that name.

        Args:
            pid: The process id.
            tid: The thread id.
            name: Its name (its ``comm``, say).

        Raises:
            ClosedError: The writer was closed.
        """
        if self._thread_names.get((pid, tid)) == name:
            return
        self._thread_names[(pid, tid)] = name
        self._write({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid,
                     "args": {"name": name}})

    def instant(
        self,
        name: str,
        ts_ns: int,
        pid: int,
        tid: int,
        args: Mapping[str, Any] | None = None,
        *,
        category: str | None = None,
    ) -> None:
        """Write an instant event (``ph`` ``i``) on the thread.

        Args:
            name: The event's name.
            ts_ns: When it happened, in nanoseconds.
            pid: The process id.
            tid: The thread id.
            args: Its fields.
            category: Its category (``cat``), if any.

        Raises:
            ClosedError: The writer was closed.
        """
        ts_ns = self._stamp(pid, tid, ts_ns)
        self._write(self._event(name, "i", ts_ns, pid, tid, args, category, scope=True))

    def begin(
        self,
        name: str,
        ts_ns: int,
        pid: int,
        tid: int,
        args: Mapping[str, Any] | None = None,
        *,
        category: str | None = None,
    ) -> None:
        """Open a slice (``ph`` ``B``) on the thread: a function was entered.

        Args:
            name: The slice's name; :meth:`end` must be given the same one.
            ts_ns: When it began, in nanoseconds.
            pid: The process id.
            tid: The thread id.
            args: Its fields at entry.
            category: Its category (``cat``), if any.

        Raises:
            ClosedError: The writer was closed.
        """
        ts_ns = self._stamp(pid, tid, ts_ns)
        thread = self._threads.get((pid, tid))
        if thread is None:
            thread = self._threads[(pid, tid)] = _Thread(last_ns=ts_ns)
        thread.open_names.append(name)
        self._write(self._event(name, "B", ts_ns, pid, tid, args, category))

    def end(
        self,
        name: str,
        ts_ns: int,
        pid: int,
        tid: int,
        args: Mapping[str, Any] | None = None,
        *,
        category: str | None = None,
    ) -> None:
        """Close the innermost open slice called ``name`` on the thread: a function returned.

        Slices opened inside it and still open are ended first (``"unfinished": true``); with no
        such slice open, an instant event is written instead (``"unmatched_end": true``).

        Args:
            name: The name given to :meth:`begin`.
            ts_ns: When it ended, in nanoseconds.
            pid: The process id.
            tid: The thread id.
            args: Its fields at return (the return value).
            category: Its category (``cat``), if any.

        Raises:
            ClosedError: The writer was closed.
        """
        ts_ns = self._stamp(pid, tid, ts_ns)
        thread = self._threads.get((pid, tid))
        if thread is None or name not in thread.open_names:
            flagged = {**(args or {}), "unmatched_end": True}
            self._write(self._event(name, "i", ts_ns, pid, tid, flagged, category, scope=True))
            return
        while thread.open_names[-1] != name:
            inner = thread.open_names.pop()
            self._write(self._event(inner, "E", ts_ns, pid, tid, {"unfinished": True}, None))
        thread.open_names.pop()
        self._write(self._event(name, "E", ts_ns, pid, tid, args, category))
        if not thread.open_names:
            # Forget the thread: what is kept stays proportional to the slices open.
            del self._threads[(pid, tid)]

    def complete(
        self,
        name: str,
        ts_ns: int,
        duration_ns: int,
        pid: int,
        tid: int,
        args: Mapping[str, Any] | None = None,
        *,
        category: str | None = None,
    ) -> None:
        """Write a slice known whole (``ph`` ``X``): a system call with its duration, say.

        Args:
            name: The slice's name.
            ts_ns: When it began, in nanoseconds.
            duration_ns: How long it lasted, in nanoseconds.
            pid: The process id.
            tid: The thread id.
            args: Its fields.
            category: Its category (``cat``), if any.

        Raises:
            UsageError: ``duration_ns`` is negative.
            ClosedError: The writer was closed.
        """
        if duration_ns < 0:
            raise UsageError(f"trace event {name!r}: negative duration {duration_ns} ns")
        ts_ns = self._stamp(pid, tid, ts_ns)
        self._last_ns = max(ts_ns, self._last_ns or 0, ts_ns + duration_ns)
        self._write(self._event(name, "X", ts_ns, pid, tid, args, category,
                                duration_ns=duration_ns))

    def close(self, end_ns: int | None = None, *,
              summary: Mapping[str, Any] | None = None) -> None:
        """End every open slice and finish the document; later calls do nothing.

        Args:
            end_ns: When tracing ended; by default the last timestamp given (or ended).
            summary: Entries added to ``otherData`` now that the run is over (events
                delivered, events lost: what explains an ``unfinished`` slice).
        """
        if self._closed:
            return
        self._other_data.update(summary or {})
        for (pid, tid), thread in self._threads.items():
            # Never before the thread's own last event, so no slice ends before it began.
            ts_ns = max(thread.last_ns, self._last_ns or 0, end_ns or 0)
            while thread.open_names:
                name = thread.open_names.pop()
                self._write(self._event(name, "E", ts_ns, pid, tid, {"unfinished": True}, None))
        self._threads.clear()
        tail = _ENCODE(_finite({"displayTimeUnit": "ns", "otherData": self._other_data}))
        self._stream.write("\n]," + tail[1:] + "\n")
        self._closed = True

    @property
    def open_slices(self) -> int:
        """How many slices are open now, over all threads."""
        return sum(len(thread.open_names) for thread in self._threads.values())

    def __enter__(self) -> TraceEventWriter:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- writing ------------------------------------------------------------------------------

    def _stamp(self, pid: int, tid: int, ts_ns: int) -> int:
        """Note ``ts_ns`` (the base, the last time); raise it to the thread's last if earlier."""
        if self._closed:
            raise ClosedError("the trace-event writer is closed: no more events can be written")
        if self._base_ns is None:
            self._base_ns = ts_ns
        thread = self._threads.get((pid, tid))
        if thread is not None:
            if ts_ns < thread.last_ns:
                self.clamped += 1
                ts_ns = thread.last_ns
            thread.last_ns = ts_ns
        if self._last_ns is None or ts_ns > self._last_ns:
            self._last_ns = ts_ns
        return ts_ns

    def _event(
        self,
        name: str,
        phase: str,
        ts_ns: int,
        pid: int,
        tid: int,
        args: Mapping[str, Any] | None,
        category: str | None,
        scope: bool = False,
        duration_ns: int | None = None,
    ) -> dict[str, Any]:
        """One event as a dict whose key order is the documented one."""
        assert self._base_ns is not None  # set by _stamp, which every event goes through
        event: dict[str, Any] = {"name": name, "ph": phase}
        if scope:
            event["s"] = "t"
        if category is not None:
            event["cat"] = category
        event["ts"] = (ts_ns - self._base_ns) / 1000
        if duration_ns is not None:
            event["dur"] = duration_ns / 1000
        event["pid"] = pid
        event["tid"] = tid
        if args:
            event["args"] = dict(args)
        return event

    def _write(self, event: dict[str, Any]) -> None:
        if self._closed:
            raise ClosedError("the trace-event writer is closed: no more events can be written")
        try:
            text = _ENCODE(event)
        except ValueError:
            text = _ENCODE(_finite(event))
        self._stream.write(self._separator + text)
        self._separator = ",\n"
        self.events += 1

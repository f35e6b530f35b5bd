"""Events as text lines and JSON objects, values formatted the way the kernel formats them.

Text (one line per event): ``HH:MM:SS.ffffff COMM PID/TID EVENT: name=value ...``, with values
as the kernel's uprobe tracer prints them (kernel/trace/trace_probe.c): ``s`` types in signed
decimal, ``u`` types and bitfields in unsigned decimal, ``x`` types as ``0x`` hex, ``char`` as
``'c'``, strings in double quotes, arrays as ``{a,b}``, and ``(fault)`` for unreadable memory.

JSON (one object per line): ``ts_ns`` (nanoseconds since the epoch), ``pid``, ``tid``, ``cpu``,
``comm``, ``event``, ``args`` (name → value: integers as numbers, ``x`` types as ``"0x…"``
strings, strings as strings, arrays as lists, unreadable values as ``null``), plus ``faults``
(names of the unreadable fields) and ``truncated`` (strings cut at --string-size) when not empty.

A system call (``sys:``) is written as strace writes it, after the same time, comm and pid/tid:
``openat(AT_FDCWD, "/etc/hostname", O_RDONLY|O_CLOEXEC) = 3 <0.000012>`` (buffers cut at 32
bytes, as strace's default ``-s``); in JSON its ``args`` are named as the kernel names them
(flags by name, paths and buffers as text, :func:`rawprobe._syscalls.syscall_record`), with
``ret``, ``errno`` and ``duration_ns`` beside them.
"""

from __future__ import annotations

import time
from itertools import islice, repeat
from operator import floordiv, mod

from .._plan.events import Batch, Event, RecordLayout
from .._symbols.symbolize import AddressResolver

TYPE_CHECKING = False  # mypy treats this name as True; at run time it spares importing typing.
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from typing import Any

    from .._probe.argtype import ArgType

__all__ = ["EventFormatter", "WallClock"]


class WallClock:
    """Converts the BPF programs' CLOCK_MONOTONIC timestamps to wall-clock time."""

    def __init__(self) -> None:
        self.offset_ns = time.time_ns() - time.monotonic_ns()
        self._second = -1
        self._hms = ""

    def epoch_ns(self, monotonic_ns: int) -> int:
        return monotonic_ns + self.offset_ns

    def text(self, monotonic_ns: int) -> str:
        """``HH:MM:SS.ffffff`` local time (the HH:MM:SS part is formatted once a second)."""
        ns = monotonic_ns + self.offset_ns
        second = ns // 1_000_000_000
        if second != self._second:
            self._second = second
            self._hms = time.strftime("%H:%M:%S", time.localtime(second))
        return f"{self._hms}.{ns // 1000 % 1_000_000:06d}"


def _text_scalar(arg_type: ArgType) -> Callable[[Any], str]:
    kind = arg_type.kind
    if kind == "symbol":
        return str  # already described as function+offset by _symbolized
    if kind == "string":
        return lambda v: '"' + v + '"'
    if kind == "char":
        return lambda v: "'" + v + "'"
    if arg_type.hex:
        return lambda v: f"{v:#x}"
    return str


def _json_scalar(arg_type: ArgType) -> Callable[[Any], Any]:
    if arg_type.kind == "symbol":
        return lambda v: v
    if arg_type.hex:
        return lambda v: f"{v:#x}"
    return lambda v: v


def _per_field(arg_type: ArgType, scalar: Callable[[Any], Any], array: Callable[[list[Any]], Any],
               fault: Any) -> Callable[[Any], Any]:
    if arg_type.count is None:
        return lambda v: fault if v is None else scalar(v)
    return lambda v: fault if v is None else array(
        [fault if item is None else scalar(item) for item in v]
    )




class _Names(dict):  # type: ignore[type-arg]
    """bytes -> str, computed the first time a key is asked for (a comm, a second)."""

    __slots__ = ("_make",)

    def __init__(self, make: Callable[[Any], str]) -> None:
        super().__init__()
        self._make = make

    def __missing__(self, key: Any) -> str:
        value = self[key] = self._make(key)
        return value


def _comm_text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "backslashreplace")


def _fast_formatter(layout: RecordLayout, as_json: bool, namespace: dict[str, Any]
                    ) -> Callable[[Any], str] | None:
    """Generate, for a layout whose values need no per-value decisions, a function that
    builds a whole text line or JSON line from an event's members with one %-format.

    The function takes an event, or the same members as a plain tuple (a record unpacked
    from a batch). ``namespace`` gives it what it reads: ``OFFSET`` (monotonic to epoch
    nanoseconds), ``SECONDS`` (epoch second -> ``HH:MM:SS``), ``COMMS`` (raw comm -> text, or
    a JSON string literal) and ``ESC`` (text -> JSON string literal).

    Returns None for layouts with arrays or symbols (the general path handles those); events
    with faults or truncated strings always take the general path.
    """
    if as_json:
        import json

    parts: list[str] = []
    arguments: list[str] = []
    for index, field in enumerate(layout.fields):
        # An Event is a tuple: its header members, then its values (see _plan.events.Event).
        kind, value = field.type.kind, f"e[{_VALUES + index}]"
        if field.type.count is not None or kind == "symbol":
            return None
        if as_json:
            key = json.dumps(field.name) + ":"
            if field.offset < 0:  # a string constant
                parts.append(key + _percent(json.dumps(field.constant)))
                continue
            if kind in ("string", "char"):
                parts.append(key + "%s")
                arguments.append(f"ESC({value})")
            else:
                parts.append(key + ('"%#x"' if field.type.hex else "%d"))
                arguments.append(value)
            continue
        if field.offset < 0:
            parts.append(f"{field.name}=" + '"' + _percent(field.constant or "") + '"')
        elif kind == "string":
            parts.append(f'{field.name}="%s"')
            arguments.append(value)
        elif kind == "char":
            parts.append(f"{field.name}='%s'")
            arguments.append(value)
        else:
            parts.append(f"{field.name}=" + ("%#x" if field.type.hex else "%d"))
            arguments.append(value)
    event = layout.event
    values = "".join(f", {a}" for a in arguments)
    # Header members by index: ts_ns 0, pid 1, tid 2, cpu 4, comm (bytes) 7.
    if as_json:
        line = ('{"ts_ns":%d,"pid":%d,"tid":%d,"cpu":%d,"comm":%s,"event":'
                + _percent(json.dumps(event)) + ',"args":{' + ",".join(parts) + "}}")
        source = (f"def line(e):\n    return {line!r} % (e[0] + OFFSET, e[1], e[2], e[4], "
                  f"COMMS[e[7]]{values})\n")
    else:
        line = "%s.%06d %s %d/%d " + _percent(event) + ":" + "".join(" " + p for p in parts)
        source = ("def line(e):\n    ns = e[0] + OFFSET\n"
                  f"    return {line!r} % (SECONDS[ns // 1000000000], ns // 1000 % 1000000, "
                  f"COMMS[e[7]], e[1], e[2]{values})\n")
    scope = dict(namespace)
    exec(compile(source, f"<rawprobe format {event}>", "exec"), scope)
    return scope["line"]  # type: ignore[no-any-return]


def _percent(text: str) -> str:
    return text.replace("%", "%%")


def _escape(text: str) -> str:
    """``text`` as a JSON string literal: json's own C encoder (the json package, which
    compiles its decoder's regular expressions on import, only where it is missing)."""
    try:
        from _json import encode_basestring
    except ImportError:  # an interpreter without the accelerator
        from json.encoder import encode_basestring

    return encode_basestring(text)


_VALUES = 8  # where an Event's values start in its tuple


def _row_format(layout: RecordLayout, as_json: bool) -> str | None:
    """See :meth:`EventFormatter._row_format`: text ``HH:MM:SS.uuuuuu COMM PID/TID EVENT:
    name=value ...`` from (hms, µs, comm, pid, tid, values...); JSON from (epoch ns, pid,
    tid, cpu, comm literal, values...)."""
    if not layout.fast_path:
        return None
    parts = []
    for field in layout.fields:
        if field.offset < 0 or field.type.kind != "int" or field.type.count is not None:
            return None
        value = "%#x" if field.type.hex else "%d"
        if as_json:
            parts.append(_escape(field.name) + ":" + (f'"{value}"' if field.type.hex
                                                        else value))
        else:
            parts.append(f"{field.name}={value}")
    event = _percent(layout.event)
    if as_json:
        return ('{"ts_ns":%d,"pid":%d,"tid":%d,"cpu":%d,"comm":%s,"event":'
                + _percent(_escape(layout.event)) + ',"args":{' + ",".join(parts) + "}}")
    return "%s.%06d %s %d/%d " + event + ":" + "".join(" " + part for part in parts)


class EventFormatter:
    """Formats events as text lines or JSON lines (formatters prepared once per layout)."""

    def __init__(
        self, clock: WallClock | None = None, resolver: AddressResolver | None = None
    ) -> None:
        self.clock = clock or WallClock()
        self.resolver = resolver or AddressResolver()
        self._text: dict[int, list[Callable[[Any], str]]] = {}
        self._json: dict[int, list[Callable[[Any], Any]]] = {}
        self._fast: dict[tuple[int, bool], Callable[[Any], str] | None] = {}
        self._row_formats: dict[tuple[int, bool], str | None] = {}
        self._by_class: dict[tuple[type, bool], Any] = {}
        seconds = _Names(lambda second: time.strftime("%H:%M:%S", time.localtime(second)))
        self._namespaces = {
            False: {"OFFSET": self.clock.offset_ns, "SECONDS": seconds,
                    "COMMS": _Names(_comm_text), "ESC": _escape},
            True: {"OFFSET": self.clock.offset_ns, "SECONDS": seconds,
                   "COMMS": _Names(lambda raw: _escape(_comm_text(raw))), "ESC": _escape},
        }
        self._seconds = seconds
        # A comm's text as a line shows it: as it is, or as a JSON string literal.
        self._comm_text = {False: _Names(str), True: _Names(_escape)}

    def _fast_for(self, layout: RecordLayout, as_json: bool) -> Callable[[Any], str] | None:
        key = (id(layout), as_json)
        if key not in self._fast:
            self._fast[key] = None if layout.has_stack or not layout.fast_path \
                else _fast_formatter(layout, as_json, self._namespaces[as_json])
        return self._fast[key]

    def lines(self, events: Sequence[Event], as_json: bool) -> str:
        """Text or JSON lines for a batch of events, each ending in a newline: what
        :meth:`text` and :meth:`json` give one by one, with the per-event checks kept to
        two tuple lookups (the CLI's hot path)."""
        by_class = self._by_class
        general = self.json if as_json else self.text
        parts: list[str] = []
        append = parts.append
        for event in events:
            line: Any = by_class.get((type(event), as_json))
            if line is None:
                line = by_class[(type(event), as_json)] = self._fast_for(
                    event.layout, as_json) or False
            # Header members 5 and 6: faults and truncated strings take the general path.
            if line is not False and not event[5] and not event[6]:
                append(line(event))
            else:
                append(general(event))
        parts.append("")
        return "\n".join(parts)

    def batch_lines(self, batch: Batch, as_json: bool, limit: int | None = None) -> str:
        """:meth:`lines` for a :class:`~rawprobe._plan.events.Batch` (at most ``limit`` of
        its events). A batch of fixed-size records is formatted column by column: its
        columns (strided views of the records) zipped into one tuple a line and %-formatted,
        the whole way in C, no event object made, no Python code run per line."""
        layout = batch.layout
        line = None if layout is None or batch.records is None else self._row_format(
            layout, as_json)
        if line is None or layout is None or batch.count == 0:
            events = batch.events()
            return self.lines(events if limit is None else events[:limit], as_json)
        columns = [batch.column(name) for name in layout.names]
        comms = map(self._comm_text[as_json].__getitem__, batch.column("comm"))
        pids, tids = batch.column("pid"), batch.column("tid")
        stamps = list(map(self.clock.offset_ns.__add__, batch.column("ts_ns")))
        rows: Iterator[tuple[Any, ...]]
        if as_json:
            rows = zip(stamps, pids, tids, batch.column("cpu"), comms, *columns, strict=True)
        else:
            seconds = map(self._seconds.__getitem__,
                          map(floordiv, stamps, repeat(1_000_000_000)))
            micros = map(mod, map(floordiv, stamps, repeat(1000)), repeat(1_000_000))
            rows = zip(seconds, micros, comms, pids, tids, *columns, strict=True)
        if limit is not None and limit < batch.count:
            rows = islice(rows, limit)
        return "\n".join(map(line.__mod__, rows)) + "\n"

    def _row_format(self, layout: RecordLayout, as_json: bool) -> str | None:
        """The %-format of one line of ``layout`` from its columns (header members first),
        for a layout whose fields are all integers; None for any other."""
        key = (id(layout), as_json)
        if key not in self._row_formats:
            self._row_formats[key] = _row_format(layout, as_json)
        return self._row_formats[key]

    def _text_formatters(self, layout: RecordLayout) -> list[Callable[[Any], str]]:
        formatters = self._text.get(id(layout))
        if formatters is None:
            formatters = [
                _per_field(f.type, _text_scalar(f.type), lambda items: "{" + ",".join(items) + "}",
                           "(fault)")
                for f in layout.fields
            ]
            self._text[id(layout)] = formatters
        return formatters

    def _json_formatters(self, layout: RecordLayout) -> list[Callable[[Any], Any]]:
        formatters = self._json.get(id(layout))
        if formatters is None:
            formatters = [
                _per_field(f.type, _json_scalar(f.type), lambda items: items, None)
                for f in layout.fields
            ]
            self._json[id(layout)] = formatters
        return formatters

    def _symbolized(self, event: Event) -> tuple[Any, ...]:
        """The values with each ``symbol`` field as ``function+0xoffset`` (or hex)."""
        describe = self.resolver.describe
        values = list(event.values)
        for index, field in enumerate(event.layout.fields):
            value = values[index]
            if field.type.kind != "symbol" or value is None:
                continue
            if field.type.count is None:
                values[index] = describe(event.pid, value)
            else:
                values[index] = tuple(None if v is None else describe(event.pid, v)
                                      for v in value)
        return tuple(values)

    def text(self, event: Event) -> str:
        """One line (and one more per stack frame), without the final newline."""
        layout = event.layout
        if event.stack is not None:
            frames = self.frames(event)
            return self.text_general(event) + "".join("\n    " + frame for frame in frames)
        if not event.faults and not event.truncated:
            fast = self._fast_for(layout, False)
            if fast is not None:
                return fast(event)
        return self.text_general(event)

    def text_general(self, event: Event) -> str:
        """:meth:`text` without the generated fast path (any event, any layout)."""
        layout = event.layout
        head = f"{self.clock.text(event.ts_ns)} {event.comm} {event.pid}/{event.tid}"
        if not layout.fast_path:
            from .._plan.kernel import SyscallLayout
            from .._syscalls import format_syscall

            if isinstance(layout, SyscallLayout):
                args, ret, duration = layout.call(event)
                return f"{head} {format_syscall(layout.syscall, args, ret, duration)}"
        parts = [f"{head} {layout.event}:"]
        cut = _truncated_names(layout, event.truncated) if event.truncated else ()
        values = self._symbolized(event) if layout.has_symbols else event.values
        for name, value, formatter in zip(layout.names, values,
                                          self._text_formatters(layout), strict=True):
            # A string cut at --string-size is marked as C strings are in gdb: "text"...
            parts.append(f"{name}={formatter(value)}{'...' if name in cut else ''}")
        return " ".join(parts)

    def frames(self, event: Event) -> list[str]:
        """The event's stack, each return address as ``function+0xoffset`` where known."""
        describe = self.resolver.describe
        return [describe(event.pid, address) for address in event.stack or ()]

    def json(self, event: Event) -> str:
        """One JSON object, without the newline."""
        layout = event.layout
        if not event.faults and not event.truncated and event.stack is None:
            fast = self._fast_for(layout, True)
            if fast is not None:
                return fast(event)
        return self.json_general(event)

    def json_args(self, event: Event) -> dict[str, Any]:
        """The event's fields as ``--json`` writes them in ``args``: name → value, integers as
        numbers, ``x`` types as ``"0x…"`` strings, arrays as lists, unreadable values as None
        (the one place other writers, such as trace events, take them from)."""
        layout = event.layout
        call = None if layout.fast_path else self._syscall_fields(event)
        if call is not None:
            args: dict[str, Any] = call["args"]
            return args
        values = self._symbolized(event) if layout.has_symbols else event.values
        return {
            name: formatter(value)
            for name, value, formatter in zip(layout.names, values,
                                              self._json_formatters(layout), strict=True)
        }

    def json_general(self, event: Event) -> str:
        """:meth:`json` without the generated fast path (any event, any layout)."""
        import json

        layout = event.layout
        obj: dict[str, Any] = {
            "ts_ns": self.clock.epoch_ns(event.ts_ns),
            "pid": event.pid,
            "tid": event.tid,
            "cpu": event.cpu,
            "comm": event.comm,
            "event": layout.event,
        }
        call = None if layout.fast_path else self._syscall_fields(event)
        if call is not None:
            obj.update(call)
        else:
            obj["args"] = self.json_args(event)
            if event.faults:
                obj["faults"] = event.fault_names
            if event.truncated:
                obj["truncated"] = _truncated_names(layout, event.truncated)
        if event.stack is not None:
            obj["stack"] = self.frames(event)
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)

    @staticmethod
    def _syscall_fields(event: Event) -> dict[str, Any] | None:
        """A system call's ``args``, ``ret``, ``errno`` and ``duration_ns`` (and ``faults``,
        ``truncated``) as JSON writes them; None for an event of another layout."""
        from .._plan.kernel import SyscallLayout

        layout = event.layout
        if not isinstance(layout, SyscallLayout):
            return None
        from .._syscalls import syscall_record

        args, ret, duration = layout.call(event)
        record = syscall_record(layout.syscall, args, ret, duration)
        fields = {"args": record["args"], "ret": record["ret"], "errno": record["errno"],
                  "duration_ns": duration}
        fields.update((key, record[key]) for key in ("faults", "truncated") if key in record)
        return fields


def _truncated_names(layout: RecordLayout, mask: int) -> list[str]:
    return [f.name for f in layout.fields if any(mask >> slot & 1 for slot in f.slots)]

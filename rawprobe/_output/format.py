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

import json
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from .._plan.events import Event, RecordLayout
from .._plan.kernel import SyscallLayout
from .._probe.fetchargs import ArgType
from .._symbols.symbolize import AddressResolver
from .._syscalls import format_syscall, syscall_record

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
            self._hms = datetime.fromtimestamp(second).strftime("%H:%M:%S")
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


_FastPair = tuple[Callable[..., str], Callable[..., str]]


def _fast_formatters(layout: RecordLayout) -> _FastPair | None:
    """Generate, for a layout whose values need no per-value decisions, two functions that
    build a whole text line and a whole JSON line with one %-format each.

    Returns None for layouts with arrays or symbols (the general path handles those); events
    with faults or truncated strings always take the general path.
    """
    text_parts: list[str] = []
    text_args: list[str] = []
    json_parts: list[str] = []
    json_args: list[str] = []
    for index, field in enumerate(layout.fields):
        # An Event is a tuple: its header members, then its values (see _records.Event).
        kind, value = field.type.kind, f"e[{_VALUES + index}]"
        if field.type.count is not None or kind == "symbol":
            return None
        key = json.dumps(field.name)
        if field.offset < 0:  # a string constant
            text_parts.append(f"{field.name}=" + '"' + _percent(field.constant or "") + '"')
            json_parts.append(f"{key}:" + _percent(json.dumps(field.constant)))
        elif kind == "string":
            text_parts.append(f'{field.name}="%s"')
            text_args.append(value)
            json_parts.append(f"{key}:%s")
            json_args.append(f"esc({value})")
        elif kind == "char":
            text_parts.append(f"{field.name}='%s'")
            text_args.append(value)
            json_parts.append(f"{key}:%s")
            json_args.append(f"esc({value})")
        elif field.type.hex:
            text_parts.append(f"{field.name}=%#x")
            text_args.append(value)
            json_parts.append(f'{key}:"%#x"')
            json_args.append(value)
        else:
            text_parts.append(f"{field.name}=%d")
            text_args.append(value)
            json_parts.append(f"{key}:%d")
            json_args.append(value)
    event = layout.event
    text_format = "%s %s %d/%d " + _percent(event) + ":" + "".join(" " + p for p in text_parts)
    json_format = (
        '{"ts_ns":%d,"pid":%d,"tid":%d,"cpu":%d,"comm":%s,"event":'
        + _percent(json.dumps(event))
        + ',"args":{' + ",".join(json_parts) + "}}"
    )
    # Header members by index: ts_ns 0, pid 1, tid 2, cpu 4, comm (bytes) 7.
    source = (
        "def text(e, clock_text, comms, comm):\n"
        f"    return {text_format!r} % (clock_text(e[0]), comms.get(e[7]) or comm(e), e[1], "
        "e[2]" + "".join(f", {a}" for a in text_args) + ")\n"
        "def json_line(e, offset, comms, comm_json, esc):\n"
        f"    return {json_format!r} % (e[0] + offset, e[1], e[2], e[4], "
        "comms.get(e[7]) or comm_json(e)" + "".join(f", {a}" for a in json_args) + ")\n"
    )
    namespace: dict[str, Any] = {}
    exec(compile(source, f"<rawprobe format {event}>", "exec"), namespace)
    return namespace["text"], namespace["json_line"]


def _percent(text: str) -> str:
    return text.replace("%", "%%")


_escape = json.encoder.encode_basestring
_VALUES = 8  # where an Event's values start in its tuple


class EventFormatter:
    """Formats events as text lines or JSON lines (formatters prepared once per layout)."""

    def __init__(
        self, clock: WallClock | None = None, resolver: AddressResolver | None = None
    ) -> None:
        self.clock = clock or WallClock()
        self.resolver = resolver or AddressResolver()
        self._text: dict[int, list[Callable[[Any], str]]] = {}
        self._json: dict[int, list[Callable[[Any], Any]]] = {}
        self._fast: dict[int, _FastPair | None] = {}
        self._comms: dict[bytes, str] = {}
        self._comms_json: dict[bytes, str] = {}
        self._json_by_class: dict[type, Any] = {}
        self._text_by_class: dict[type, Any] = {}

    def _fast_for(self, layout: RecordLayout) -> _FastPair | None:
        key = id(layout)
        if key not in self._fast:
            self._fast[key] = None if layout.has_stack or isinstance(
                layout, SyscallLayout) else _fast_formatters(layout)
        return self._fast[key]

    def lines(self, events: Sequence[Event], as_json: bool) -> str:
        """Text or JSON lines for a batch of events, each ending in a newline: what
        :meth:`text` and :meth:`json` give one by one, with the per-event checks kept to
        two tuple lookups (the CLI's hot path)."""
        by_class = self._json_by_class if as_json else self._text_by_class
        general = self.json if as_json else self.text
        parts: list[str] = []
        append = parts.append
        for event in events:
            line = by_class.get(type(event))
            if line is None:
                line = by_class[type(event)] = self._line_function(event.layout, as_json)
            # Header members 5 and 6: faults and truncated strings take the general path.
            if line is not False and not event[5] and not event[6]:
                append(line(event))
            else:
                append(general(event))
        parts.append("")
        return "\n".join(parts)

    def _line_function(self, layout: RecordLayout, as_json: bool) -> Any:
        fast = self._fast_for(layout)
        if fast is None:
            return False
        text_line, json_line = fast
        if as_json:
            offset, comms, comm_json = self.clock.offset_ns, self._comms_json, self._comm_json
            return lambda event: json_line(event, offset, comms, comm_json, _escape)
        clock_text, comms, comm = self.clock.text, self._comms, self._comm
        return lambda event: text_line(event, clock_text, comms, comm)

    def _comm(self, event: Event) -> str:
        raw = event._comm
        text = self._comms.get(raw)
        if text is None:
            text = self._comms[raw] = event.comm
        return text

    def _comm_json(self, event: Event) -> str:
        raw = event._comm
        text = self._comms_json.get(raw)
        if text is None:
            text = self._comms_json[raw] = _escape(event.comm)
        return text

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
            fast = self._fast_for(layout)
            if fast is not None:
                return fast[0](event, self.clock.text, self._comms, self._comm)
        return self.text_general(event)

    def text_general(self, event: Event) -> str:
        """:meth:`text` without the generated fast path (any event, any layout)."""
        layout = event.layout
        head = f"{self.clock.text(event.ts_ns)} {event.comm} {event.pid}/{event.tid}"
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
            fast = self._fast_for(layout)
            if fast is not None:
                return fast[1](event, self.clock.offset_ns, self._comms_json, self._comm_json,
                               _escape)
        return self.json_general(event)

    def json_args(self, event: Event) -> dict[str, Any]:
        """The event's fields as ``--json`` writes them in ``args``: name → value, integers as
        numbers, ``x`` types as ``"0x…"`` strings, arrays as lists, unreadable values as None
        (the one place other writers, such as trace events, take them from)."""
        layout = event.layout
        if isinstance(layout, SyscallLayout):
            args, ret, duration = layout.call(event)
            result: dict[str, Any] = syscall_record(layout.syscall, args, ret, duration)["args"]
            return result
        values = self._symbolized(event) if layout.has_symbols else event.values
        return {
            name: formatter(value)
            for name, value, formatter in zip(layout.names, values,
                                              self._json_formatters(layout), strict=True)
        }

    def json_general(self, event: Event) -> str:
        """:meth:`json` without the generated fast path (any event, any layout)."""
        layout = event.layout
        if isinstance(layout, SyscallLayout):
            return self._syscall_json(event, layout)
        args = self.json_args(event)
        obj: dict[str, Any] = {
            "ts_ns": self.clock.epoch_ns(event.ts_ns),
            "pid": event.pid,
            "tid": event.tid,
            "cpu": event.cpu,
            "comm": event.comm,
            "event": layout.event,
            "args": args,
        }
        if event.faults:
            obj["faults"] = event.fault_names
        if event.truncated:
            obj["truncated"] = _truncated_names(layout, event.truncated)
        if event.stack is not None:
            obj["stack"] = self.frames(event)
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)

    def _syscall_json(self, event: Event, layout: SyscallLayout) -> str:
        args, ret, duration = layout.call(event)
        record = syscall_record(layout.syscall, args, ret, duration)
        obj: dict[str, Any] = {
            "ts_ns": self.clock.epoch_ns(event.ts_ns),
            "pid": event.pid,
            "tid": event.tid,
            "cpu": event.cpu,
            "comm": event.comm,
            "event": layout.event,
            "args": record["args"],
            "ret": record["ret"],
            "errno": record["errno"],
            "duration_ns": duration,
        }
        for key in ("faults", "truncated"):
            if key in record:
                obj[key] = record[key]
        if event.stack is not None:
            obj["stack"] = self.frames(event)
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _truncated_names(layout: RecordLayout, mask: int) -> list[str]:
    return [f.name for f in layout.fields if any(mask >> slot & 1 for slot in f.slots)]

"""Events as text lines and JSON objects, values formatted the way the kernel formats them.

Text (one line per event): ``HH:MM:SS.ffffff COMM PID/TID EVENT: name=value ...``, with values
as the kernel's uprobe tracer prints them (kernel/trace/trace_probe.c): ``s`` types in signed
decimal, ``u`` types and bitfields in unsigned decimal, ``x`` types as ``0x`` hex, ``char`` as
``'c'``, strings in double quotes, arrays as ``{a,b}``, and ``(fault)`` for unreadable memory.

JSON (one object per line): ``ts_ns`` (nanoseconds since the epoch), ``pid``, ``tid``, ``cpu``,
``comm``, ``event``, ``args`` (name → value: integers as numbers, ``x`` types as ``"0x…"``
strings, strings as strings, arrays as lists, unreadable values as ``null``), plus ``faults``
(names of the unreadable fields) and ``truncated`` (strings cut at --string-size) when not empty.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from ._addrsym import AddressResolver
from ._fetchargs import ArgType
from ._records import Event, RecordLayout

__all__ = ["EventFormatter", "WallClock"]


class WallClock:
    """Converts the BPF programs' CLOCK_MONOTONIC timestamps to wall-clock time."""

    def __init__(self) -> None:
        self.offset_ns = time.time_ns() - time.monotonic_ns()

    def epoch_ns(self, monotonic_ns: int) -> int:
        return monotonic_ns + self.offset_ns

    def text(self, monotonic_ns: int) -> str:
        ns = monotonic_ns + self.offset_ns
        return datetime.fromtimestamp(ns // 1_000_000_000).strftime("%H:%M:%S") + (
            f".{ns // 1000 % 1_000_000:06d}"
        )


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


class EventFormatter:
    """Formats events as text lines or JSON lines (formatters prepared once per layout)."""

    def __init__(
        self, clock: WallClock | None = None, resolver: AddressResolver | None = None
    ) -> None:
        self.clock = clock or WallClock()
        self.resolver = resolver or AddressResolver()
        self._text: dict[int, list[Callable[[Any], str]]] = {}
        self._json: dict[int, list[Callable[[Any], Any]]] = {}

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
        """One line, without the newline."""
        layout = event.layout
        parts = [
            f"{self.clock.text(event.ts_ns)} {event.comm} {event.pid}/{event.tid} {layout.event}:"
        ]
        cut = _truncated_names(layout, event.truncated) if event.truncated else ()
        values = self._symbolized(event) if layout.has_symbols else event.values
        for name, value, formatter in zip(layout.names, values,
                                          self._text_formatters(layout), strict=True):
            # A string cut at --string-size is marked as C strings are in gdb: "text"...
            parts.append(f"{name}={formatter(value)}{'...' if name in cut else ''}")
        return " ".join(parts)

    def json(self, event: Event) -> str:
        """One JSON object, without the newline."""
        layout = event.layout
        values = self._symbolized(event) if layout.has_symbols else event.values
        args = {
            name: formatter(value)
            for name, value, formatter in zip(layout.names, values,
                                              self._json_formatters(layout), strict=True)
        }
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
        return json.dumps(obj, separators=(",", ":"))


def _truncated_names(layout: RecordLayout, mask: int) -> list[str]:
    return [f.name for f in layout.fields if any(mask >> slot & 1 for slot in f.slots)]

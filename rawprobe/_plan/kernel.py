"""Kernel-side probes for the planner: tracepoints (``tp:``) and system calls (``sys:``).

A kernel-side probe has no file and no instruction to probe, so :func:`~.sites.check_site`
does not apply to it: each of its events is one tracepoint (by its tracefs id) or one system
call (by its number). Its record is laid out as a uprobe's is (the common header, fixed fields,
then strings), so filters, ``--count``/``--hist``/``--by`` and stacks compile and run the same
way; only where each field comes from differs (clang/kernel.bpf.c):

- a tracepoint's fields are read from the record the kernel made, at the offsets its
  ``format`` file gives (``RP_BASE_RECORD``): integers, ``__data_loc`` strings, ``char``
  arrays, and a pointer field typed ``:string`` read as the string it points to;
- a system call's fields are its argument registers, named as the kernel's ``SYSCALL_DEFINE``
  names them (the tracefs ``sys_enter_NAME/format``), typed as declared, then ``ret`` and
  ``duration_ns``; what :mod:`rawprobe._syscalls._decoders` says to capture (a path, a
  buffer, argv) is read from the process, at exit.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .._errors import UsageError
from .._host.eventformat import FormatField
from .._probe.argtypes import parse_type
from .._probe.fetchargs import ArgType, EventField, FetchArg
from .._probe.filters import Comparison, FilterExpr, Logical, Not
from .._probe.words import ProbeSpec
from .._syscalls import (
    NO_RETURN,
    Capture,
    SyscallCatalog,
    SyscallSignature,
    UserBytes,
    list_tracepoints,
    read_tracepoint,
)
from . import abi
from .compile import HEADER_SIZE, MAX_STRING_SIZE, CompiledField, CompiledProbe
from .events import Event, RecordLayout

__all__ = [
    "EXEC_SYSCALLS",
    "KernelEvent",
    "SyscallLayout",
    "filter_names",
    "syscall_events",
    "tracepoint_events",
]

# System calls whose strings must be read at entry: at exit the old program is gone.
EXEC_SYSCALLS = frozenset({"execve", "execveat"})
# Bytes of argv kept at most, in all (strace shows every string, each cut at -s).
_ARGV_BYTES = 4 * 256


@dataclass(frozen=True)
class KernelEvent:
    """One event of a kernel-side probe word, compiled.

    Attributes:
        name: The event name (the tracepoint's, or the system call's).
        kind: ``tracepoint`` or ``syscall``.
        compiled: Its fields, as the BPF side fills them.
        layout: Its record layout.
        description: ``tp:GROUP:EVENT`` or ``sys:NAME``, for messages.
        tracepoint_id: The tracepoint's id (``PERF_TYPE_TRACEPOINT`` config), or 0.
        syscall_nr: The system call's number, or -1.
        syscall_flags: ``RP_SYS_NO_RETURN`` and ``RP_SYS_EXEC`` as they apply to it.
        shape: Equal for events whose fields are laid out and filled alike (their BPF
            configurations are then the same bytes), or None.
    """

    name: str
    kind: str
    compiled: CompiledProbe
    layout: RecordLayout
    description: str
    tracepoint_id: int = 0
    syscall_nr: int = -1
    syscall_flags: int = 0
    shape: tuple[Any, ...] | None = None


def _entry(base: int, store: int, reg: int, imm: int, derefs: tuple[int, ...], size: int,
           count: int, dest: int, max_len: int) -> dict[str, object]:
    """One ``struct rp_field``."""
    return {"base": base, "store": store, "nderef": len(derefs), "size": size, "count": count,
            "dest": dest, "reg": reg, "max_len": max_len, "imm": imm,
            "deref": list(derefs) + [0] * (abi.MAX_DEREF - len(derefs))}


class _Layout:
    """Fields laid out one after another (aligned), strings counted for the record's size."""

    def __init__(self) -> None:
        self.compiled = CompiledProbe(fields=[])
        self.offset = HEADER_SIZE
        self.string_bytes = 0

    def add(self, name: str, arg_type: ArgType, size: int, entry: dict[str, object],
            string_bytes: int = 0) -> None:
        self.offset = (self.offset + size - 1) & ~(size - 1)
        slot = len(self.compiled.entries)
        entry["dest"] = self.offset
        self.compiled.entries.append(entry)
        self.compiled.fields.append(CompiledField(name, arg_type, self.offset, (slot,)))
        self.offset += size * (arg_type.count or 1) if arg_type.kind in ("int", "char") else 4
        self.string_bytes += string_bytes

    def finish(self, word: str, stack: bool, limit: int = abi.MAX_RECORD) -> CompiledProbe:
        compiled = self.compiled
        if len(compiled.entries) > abi.MAX_FIELDS:
            raise UsageError(f"{word}: more than {abi.MAX_FIELDS} fields in one event")
        if stack:
            self.offset = (self.offset + 3) & ~3
            compiled.stack_offset = self.offset
            self.offset += 4
            self.string_bytes += abi.STACK_DEPTH * 8
        compiled.fixed_size = (self.offset + 7) & ~7
        compiled.max_size = compiled.fixed_size + self.string_bytes
        if compiled.max_size > limit:
            raise UsageError(f"{word}: a record could reach {compiled.max_size} bytes, over "
                             f"the limit of {limit}; lower --string-size")
        return compiled


# -- tracepoints ----------------------------------------------------------------------------


def _int_type(size: int, signed: bool, pointer: bool = False, count: int | None = None
              ) -> ArgType:
    letter = "x" if pointer else "s" if signed else "u"
    return parse_type(f"{letter}{size * 8}" + (f"[{count}]" if count else ""))


def _tracepoint_field(layout: _Layout, name: str, field: FormatField, wanted: FetchArg | None,
                      string_size: int, word: str) -> bool:
    """Lay out one tracepoint field; False when rawprobe cannot read it (and none was asked)."""
    record = abi.BaseKind.RECORD
    is_char = field.type in ("char", "const char", "signed char")
    typed = wanted is not None and wanted.typed
    if typed and wanted is not None and wanted.type.kind == "string":
        if field.data_loc or (is_char and field.count):
            typed = False  # already a string
        elif field.size != 8 or field.count:
            raise UsageError(f"{word}: {field.name} ({field.type}, {field.size} bytes) is not a "
                             "pointer: only a pointer field can be read as the string it "
                             "points to")
        else:
            layout.add(name, wanted.type, 4, _entry(record, abi.StoreKind.STRING, 0,
                                                    field.offset, (0, 0), 4, 1, 0, string_size),
                       string_size + 1)
            return True
    if field.data_loc:
        if field.count is not None or "char" not in field.type:
            if wanted is not None:
                raise UsageError(f"{word}: {field.name} ({field.type}) is not a string; "
                                 "rawprobe reads __data_loc char[] fields only")
            return False
        layout.add(name, parse_type("string"), 4,
                   _entry(record, abi.StoreKind.DATA_LOC, 0, field.offset, (0,), 4, 1, 0,
                          string_size), string_size + 1)
        return True
    if is_char and field.count and not typed:
        size = min(field.count, string_size)
        layout.add(name, parse_type("string"), 4,
                   _entry(record, abi.StoreKind.STRING, 0, field.offset, (0,), 4, 1, 0, size),
                   size + 1)
        return True
    element = field.element_size
    if typed and wanted is not None:
        arg_type = wanted.type
        if arg_type.size * (arg_type.count or 1) > field.size:
            raise UsageError(f"{word}: {field.name} has {field.size} bytes; "
                             f"{arg_type.name} would read {arg_type.size * (arg_type.count or 1)}")
    elif element in (1, 2, 4, 8) and field.size == element * (field.count or 1):
        arg_type = _int_type(element, field.signed, "*" in field.type, field.count)
    else:
        if wanted is not None:
            raise UsageError(f"{word}: {field.name} ({field.type}, {field.size} bytes) is not "
                             "an integer, a string or an array of integers; give it a type "
                             f"({field.name}:u64, say) to read its first bytes")
        return False
    layout.add(name, arg_type, arg_type.size,
               _entry(record, abi.StoreKind.INT, 0, field.offset, (0,), arg_type.size,
                      arg_type.count or 1, 0, 0))
    return True


def tracepoint_events(spec: ProbeSpec, *, string_size: int, stack: bool
                      ) -> tuple[list[KernelEvent], list[str]]:
    """The events of a ``tp:GROUP:EVENT [FIELD ...]`` word (EVENT may be a glob).

    Returns:
        The events, and warnings (fields left out because rawprobe cannot read them).

    Raises:
        UsageError: No such tracepoint or field, a field that cannot be read as asked, or a
            glob that matches none.
        KernelFeatureError: tracefs is not there.
    """
    group, pattern = spec.target, spec.location
    if any(char in pattern for char in "*?["):
        names = [listing.name.split(":", 1)[1] for listing in list_tracepoints(
            f"{group}:{pattern}") if listing.error is None]
        if not names:
            raise UsageError(f"no tracepoint matches {group}:{pattern}; 'rawprobe list "
                             f"--tracepoints \"{group}:*\"' lists that group")
    else:
        names = [pattern]
    events, warnings = [], []
    for event in names:
        tracepoint = read_tracepoint(group, event)
        by_name = {f.name: f for f in tracepoint.format.fields
                   if not f.name.startswith("common_")}
        layout = _Layout()
        if spec.fetchargs:
            chosen = tracepoint.select_fields([_field_name(arg) for arg in spec.fetchargs])
            for arg, field in zip(spec.fetchargs, chosen, strict=True):
                _tracepoint_field(layout, arg.name, by_name[field.name], arg, string_size,
                                  spec.text)
        else:
            skipped = [field.name for field in tracepoint.fields
                       if not _tracepoint_field(layout, field.name, by_name[field.name], None,
                                                string_size, spec.text)]
            if skipped:
                warnings.append(f"{group}:{event}: fields left out (not integers or strings): "
                                + ", ".join(skipped))
        compiled = layout.finish(spec.text, stack)
        events.append(KernelEvent(event, "tracepoint", compiled, RecordLayout(event, compiled),
                                  f"tp:{group}:{event}", tracepoint_id=tracepoint.id))
    return events, warnings


def _field_name(arg: FetchArg) -> str:
    assert isinstance(arg.source, EventField)
    return arg.source.name


# -- system calls ---------------------------------------------------------------------------


def _text(chunk: bytes, base: int, data_loc: int) -> str:
    """A string as the file system would name it: bytes that are not UTF-8 kept as
    surrogates (os.fsdecode), so the formatter gets the exact bytes back."""
    length = data_loc >> 16
    start = base + (data_loc & 0xFFFF)
    return chunk[start : start + length - 1].decode("utf-8", "surrogateescape") if length else ""


def _data(chunk: bytes, base: int, data_loc: int) -> bytes:
    start = base + (data_loc & 0xFFFF)
    return chunk[start : start + (data_loc >> 16)]


def _texts(chunk: bytes, base: int, data_loc: int) -> tuple[str, ...]:
    """argv: strings one after another, each with its NUL (the last may be cut)."""
    blob = _data(chunk, base, data_loc)
    if not blob:
        return ()
    parts = blob.split(b"\0")
    if parts[-1] == b"":
        parts.pop()
    return tuple(part.decode("utf-8", "surrogateescape") for part in parts)


class SyscallLayout(RecordLayout):
    """The record layout of a system call's event: its arguments (named as the kernel names
    them), ``ret`` and ``duration_ns``.

    Attributes:
        syscall: The system call.
        captures: Per field: ``value``, ``string``, ``buffer`` or ``strings`` (argv).
    """

    fast_path = False

    def __init__(self, event: str, compiled: CompiledProbe, syscall: SyscallSignature,
                 captures: tuple[str, ...]) -> None:
        self.syscall = syscall
        self.captures = captures
        super().__init__(event, compiled)

    def for_syscall(self, syscall: SyscallSignature) -> SyscallLayout:
        """The same layout for another system call of the same shape."""
        twin = copy.copy(self)
        twin.syscall = syscall
        twin.event = syscall.name
        twin.event_class = twin._event_class()
        return twin

    def _generate_converter(self) -> Any:
        parts = []
        for index, capture in enumerate(self.captures):
            function = {"string": "_text", "buffer": "_data", "strings": "_texts"}.get(capture)
            parts.append(f"{function}(chunk, base, raw[{index}])" if function
                         else f"raw[{index}]")
        source = "def convert(raw, chunk, base):\n    return (" + ", ".join(parts) + ",)\n"
        namespace: dict[str, Any] = {"_text": _text, "_data": _data, "_texts": _texts}
        exec(compile(source, f"<rawprobe syscall record {self.event}>", "exec"), namespace)
        return namespace["convert"]

    def call(self, event: Event) -> tuple[dict[str, Any], int | None, int]:
        """What :func:`rawprobe._syscalls.format_syscall` takes: the arguments by name (what
        was read, as :class:`UserBytes` marked when cut; None where it could not be read),
        the return value (None for a call that does not return), the duration in ns."""
        values = event.values
        truncated = event.truncated
        args: dict[str, Any] = {}
        count = len(self.captures) - 2
        for index in range(count):
            value = values[index]
            capture = self.captures[index]
            cut = bool(truncated >> index & 1)
            if value is None or capture == "value":
                args[self.names[index]] = value
            elif capture == "strings":
                args[self.names[index]] = [UserBytes(_encoded(item), cut and i == len(value) - 1)
                                           for i, item in enumerate(value)]
            else:
                args[self.names[index]] = UserBytes(_encoded(value), cut)
        ret = None if self.syscall.name in NO_RETURN else values[count]
        return args, ret, values[count + 1]


def _encoded(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")


def _syscall_field(layout: _Layout, syscall: SyscallSignature, index: int, string_size: int,
                   captures: list[str], with_captures: bool) -> None:
    arg = (syscall.args or ())[index]
    capture = arg.capture if with_captures else Capture.VALUE
    reg = abi.BaseKind.REG
    if capture is Capture.STRING:
        layout.add(arg.name, parse_type("string"), 4,
                   _entry(reg, abi.StoreKind.STRING, index, 0, (0,), 4, 1, 0, string_size),
                   string_size + 1)
        captures.append("string")
    elif capture in (Capture.BUFFER_IN, Capture.BUFFER_OUT):
        names = [other.name for other in syscall.args or ()]
        length = (names.index(arg.decoder.length_argument) if capture is Capture.BUFFER_IN
                  and arg.decoder.length_argument in names else abi.SYS_REG_RET)
        layout.add(arg.name, ArgType("buffer", "buffer", 4), 4,
                   _entry(reg, abi.StoreKind.BUFFER, index, 0, (), 4, length, 0, string_size),
                   string_size)
        captures.append("buffer")
    elif capture is Capture.STRING_ARRAY:
        size = min(_ARGV_BYTES, 4 * string_size)
        layout.add(arg.name, ArgType("string[]", "strings", 4), 4,
                   _entry(reg, abi.StoreKind.STRING_ARRAY, index, 0, (), 4, abi.ARGV_MAX, 0,
                          size), size + 1)
        captures.append("strings")
    else:
        c_type = arg.c_type
        arg_type = _int_type(c_type.size, c_type.signed, c_type.pointer or not c_type.known)
        layout.add(arg.name, arg_type, arg_type.size,
                   _entry(reg, abi.StoreKind.INT, index, 0, (), arg_type.size, 1, 0, 0))
        captures.append("value")


def syscall_events(spec: ProbeSpec, catalog: SyscallCatalog, *, string_size: int, stack: bool,
                   captures_for: Sequence[str] | None = None
                   ) -> tuple[list[KernelEvent], list[str]]:
    """The events of a ``sys:NAME`` word (NAME may be a glob).

    Args:
        spec: The word.
        catalog: The running kernel's system calls.
        string_size: Bytes kept per string and buffer.
        stack: Records carry the user stack.
        captures_for: Read memory only for these arguments (None: for all that have it to
            read); the others are recorded as their register values. ``rawprobe syscalls``
            reads only what its filter compares.

    Returns:
        The events, and warnings (system calls of a glob left out).

    Raises:
        UsageError: No such system call, or a glob that matches none.
    """
    signatures = catalog.select([spec.location])
    glob = any(char in spec.location for char in "*?[")
    events: list[KernelEvent] = []
    left_out: list[str] = []
    shapes: dict[tuple[Any, ...], SyscallLayout] = {}
    string_size = min(string_size, MAX_STRING_SIZE)
    for syscall in signatures:
        if syscall.number is None or syscall.number >= abi.SYS_MAX or syscall.args is None:
            if not glob:
                raise UsageError(f"{spec.text}: rawprobe has no number for system call "
                                 f"{syscall.name} on {catalog.machine}: regenerate its tables "
                                 "(python -m rawprobe._syscalls._generate)")
            left_out.append(syscall.name)
            continue
        layout = _Layout()
        captures: list[str] = []
        for index, arg in enumerate(syscall.args):
            _syscall_field(layout, syscall, index, string_size, captures,
                           captures_for is None or arg.name in captures_for)
        for name, arg_type, reg in (("ret", parse_type("s64"), abi.SYS_REG_RET),
                                    ("duration_ns", parse_type("u64"), abi.SYS_REG_DURATION)):
            if name in {arg.name for arg in syscall.args}:
                raise UsageError(f"system call {syscall.name} has an argument called {name}")
            layout.add(name, arg_type, 8, _entry(abi.BaseKind.REG, abi.StoreKind.INT, reg, 0,
                                                 (), 8, 1, 0, 0))
            captures.append("value")
        exec_call = syscall.name in EXEC_SYSCALLS
        compiled = layout.finish(spec.text, stack,
                                 abi.EXEC_STASH if exec_call else abi.MAX_RECORD)
        shape = (tuple((f.name, f.type, f.offset) for f in compiled.fields),
                 tuple(str(entry) for entry in compiled.entries), compiled.stack_offset)
        known = shapes.get(shape)
        if known is None:
            known = shapes[shape] = SyscallLayout(syscall.name, compiled, syscall,
                                                  tuple(captures))
            record_layout = known
        else:
            record_layout = known.for_syscall(syscall)
        flags = (abi.SysFlag.NO_RETURN if syscall.name in NO_RETURN else 0) | (
            abi.SysFlag.EXEC if exec_call else 0)
        events.append(KernelEvent(syscall.name, "syscall", compiled, record_layout,
                                  f"sys:{syscall.name}", syscall_nr=syscall.number,
                                  syscall_flags=flags, shape=shape[1:]))
    warnings = []
    if left_out:
        warnings.append(f"{spec.text}: {len(left_out)} system calls left out (no number in "
                        f"rawprobe's tables): {', '.join(left_out[:5])}")
    return events, warnings


def filter_names(expr: FilterExpr | None) -> set[str]:
    """The field names a filter compares."""
    if expr is None:
        return set()
    if isinstance(expr, Comparison):
        return {expr.name}
    if isinstance(expr, Not):
        return filter_names(expr.operand)
    assert isinstance(expr, Logical)
    return filter_names(expr.left) | filter_names(expr.right)

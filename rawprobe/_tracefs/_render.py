"""Probe words rendered back into the kernel's uprobe_events syntax, meaning what they mean in BPF.

rawprobe parses the kernel's fetch-arg language (:mod:`rawprobe._probe.fetchargs`) and extends
it; the BPF backend (:mod:`rawprobe._plan.compile`) defines what each word means. This module
writes the same word for ``uprobe_events`` (Documentation/trace/uprobetracer.rst) so the
kernel's own tracer fetches the same bytes:

- ``$argN`` and the ``arg0``.. aliases were already resolved to ABI registers by the parser;
  ``$retval`` to the return register. Registers are written ``%di``.
- ``string`` on a value (a register, ``$stack``) reads the string it points to: ``+0(%di):string``
  (the kernel only takes ``string`` on memory). On memory (``+8(%di)``, ``@ADDR``, ``@+OFFSET``,
  ``$stackN``) it reads the string stored there, as in the kernel.
- ``$stackN`` is the word at ``$stack + 8*N``; where memory is needed it is written
  ``+8N($stack)``.
- ``string[N]`` (N pointers, each to a string) becomes N fetch-args ``+0(+8e(...)):string``: the
  kernel's own string arrays stop at the first unreadable element and leave the rest of the
  array's ``__data_loc`` words stale (kernel/trace/trace_probe_tmpl.h,
  process_fetch_insn_bottom()), so their faults could not be told apart.
- ``\\"TEXT"`` is not sent to the kernel: the uprobe tracer copies it with
  ``strncpy_from_user()`` from a kernel address and always records ``(fault)``
  (kernel/trace/trace_uprobe.c, fetch_store_string()); the constant is filled in user space, as
  the BPF backend does.
- A USDT argument (``UsdtArg``) is rendered from its SDT spec; a ``%rip``-relative operand
  (memory at the probe's address plus a constant) becomes ``@+FILE_OFFSET``. A bare run-time
  address has no kernel spelling and is refused.

Faults. The kernel writes 0 for an integer it could not read and gives no sign of it. So each
integer read from memory gets a hidden check: ``+LAST(...):string``, a string read at the last
byte of the value, through the same chain of dereferences. The check faults exactly when the
chain fails or that byte is unmapped (for values of up to 512 bytes, the first and last byte
are at most one page apart: if the last byte and the chain are readable, only a value that
starts on an unmapped page and ends on a mapped one escapes, which a misaligned pointer at a
mapping's start would need). A string faults when its ``__data_loc`` has length 0 -- or when the
next dynamic field starts at the same offset: a dereference that fails *before* the string is
read leaves the ``__data_loc`` the kernel pre-filled (the remaining space, at the current
offset), which is not a length (store_trace_args() in trace_probe_tmpl.h). That is why a hidden
``$comm`` is always the last argument: every user-visible string has a successor, and the event
gets its task's command name from the kernel at hit time, as the BPF backend's header does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .._errors import FetchArgError, UsageError
from .._plan.compile import CompiledField
from .._plan.session import PlannedEvent
from .._probe.fetchargs import (
    ArgType,
    Comm,
    Deref,
    FetchArg,
    FileOffset,
    Immediate,
    ImmediateString,
    Memory,
    ProbeRelative,
    Register,
    Source,
    StackEntry,
    StackPointer,
    UsdtArg,
    UsdtArgument,
)

__all__ = [
    "MAX_ARGSTR_LEN",
    "MAX_ARG_NAME_LEN",
    "MAX_EVENT_NAME_LEN",
    "MAX_TRACE_ARGS",
    "ArgRole",
    "KernelArg",
    "KernelProbe",
    "definition_line",
    "event_names",
    "render_event",
    "render_probe",
]

# kernel/trace/trace_probe.h
MAX_TRACE_ARGS = 128
MAX_ARGSTR_LEN = 63  # one fetch-arg body, type included
MAX_ARG_NAME_LEN = 32
MAX_EVENT_NAME_LEN = 64  # names and groups are shorter than this (trace_probe.c)
_RESERVED = frozenset(
    {"common_type", "common_flags", "common_preempt_count", "common_pid", "common_tgid",
     "__probe_ip", "__probe_ret_ip", "__probe_func"}
)
_GOOD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class ArgRole:
    """What a kernel fetch-arg is for."""

    VALUE = "value"  # the value (or one string-array element) of a field
    CHECK = "check"  # a string read whose fault says the field's memory was unreadable
    COMM = "comm"  # the hidden $comm, always last


@dataclass(frozen=True)
class KernelArg:
    """One ``NAME=FETCHARG:TYPE`` of a kernel definition.

    Attributes:
        name: The field name in the kernel's record.
        body: ``FETCHARG:TYPE`` as written into ``uprobe_events``.
        role: One of :class:`ArgRole`.
        field: Index of the rawprobe field it serves (``-1`` for the hidden ``$comm``).
        element: The element of a ``string[N]`` field, else ``None``.
    """

    name: str
    body: str
    role: str
    field: int = -1
    element: int | None = None

    @property
    def dynamic(self) -> bool:
        """Whether the kernel stores it as a ``__data_loc`` string."""
        return self.body.endswith(":string") or self.body == "$comm"

    @property
    def text(self) -> str:
        return f"{self.name}={self.body}"


@dataclass(frozen=True)
class KernelProbe:
    """A probe's fetch-args in kernel syntax, and what each one is for.

    Attributes:
        args: The kernel fetch-args, in order (the hidden ``$comm`` last).
    """

    args: tuple[KernelArg, ...]

    def for_field(self, index: int) -> list[KernelArg]:
        return [a for a in self.args if a.field == index]


def _number(value: int) -> str:
    """The shorter spelling of a non-negative offset (the kernel takes both; a fetch-arg may
    not exceed MAX_ARGSTR_LEN characters). Addresses are always written in hex."""
    decimal, hexadecimal = str(value), f"{value:#x}"
    return decimal if len(decimal) <= len(hexadecimal) else hexadecimal


def _offset(value: int) -> str:
    """A dereference offset: ``+8``, ``-16``."""
    return ("-" if value < 0 else "+") + _number(abs(value))


@dataclass(frozen=True)
class _Value:
    """A fetch-arg the kernel evaluates to a number (a register, ``$stack``, ``\\IMM``)."""

    text: str


@dataclass(frozen=True)
class _Memory:
    """Memory at some address: ``at(d)`` spells the memory ``d`` bytes further on; ``value``
    spells its 64-bit word as a number (usually ``at(0)``)."""

    at: Callable[[int], str]
    value: str


_Lowered = _Value | _Memory


class _Renderer:
    def __init__(
        self,
        word: str,
        retprobe: bool,
        probe_file_offset: int,
        usdt_args: Sequence[UsdtArgument] | None,
    ) -> None:
        self.word = word
        self.retprobe = retprobe
        self.probe_file_offset = probe_file_offset
        self.usdt_args = usdt_args

    def lower(self, source: Source, arg: FetchArg) -> _Lowered:
        if isinstance(source, Register):
            return _Value(f"%{source.name}")
        if isinstance(source, StackPointer):
            return _Value("$stack")
        if isinstance(source, Immediate):
            return _Value(f"\\{source.value}")
        if isinstance(source, StackEntry):
            base = 8 * source.index
            return _Memory(lambda d: f"{_offset(base + d)}($stack)", f"$stack{source.index}")
        if isinstance(source, Memory):
            address = source.address
            return _Memory(lambda d: f"@{address + d:#x}", f"@{address:#x}")
        if isinstance(source, FileOffset):
            return self._file_offset(source.offset, arg)
        if isinstance(source, Deref):
            if isinstance(source.inner, ProbeRelative):
                # Memory at the probe's run-time address plus a constant is memory at a file
                # offset of the probed file: what @+OFFSET reads (translate_user_vaddr()).
                return self._file_offset(
                    self.probe_file_offset + source.inner.delta + source.offset, arg
                )
            inner = self.lower(source.inner, arg)
            inner_text = inner.text if isinstance(inner, _Value) else inner.value
            offset = source.offset

            def at(delta: int) -> str:
                return f"{_offset(offset + delta)}({inner_text})"

            return _Memory(at, at(0))
        if isinstance(source, UsdtArg):
            if self.usdt_args is None:
                raise FetchArgError(f"$arg{source.index} needs a USDT probe", self.word,
                                    arg.column)
            if source.index > len(self.usdt_args):
                raise FetchArgError(
                    f"$arg{source.index}: this USDT probe has {len(self.usdt_args)} arguments",
                    self.word, arg.column,
                )
            return self.lower(self.usdt_args[source.index - 1].source, arg)
        if isinstance(source, ProbeRelative):
            raise FetchArgError(
                "this value is an address computed from the probe's own address, which the "
                "kernel's uprobe_events cannot express (it reads memory at a file offset, "
                "@+OFFSET, but has no address-of); use --backend bpf",
                self.word, arg.column,
            )
        raise FetchArgError(f"cannot render {arg.text!r} for uprobe_events", self.word,
                            arg.column)

    def _file_offset(self, offset: int, arg: FetchArg) -> _Memory:
        # At a return too: the kernel reckons it from the probed function's address
        # (kernel/trace/trace_uprobe.c, translate_user_vaddr(): the breakpoint's address).
        return _Memory(lambda d: f"@+{offset + d:#x}", f"@+{offset:#x}")


def _kernel_type(arg_type: ArgType) -> str:
    """The kernel's name for a type; ``symbol`` is fetched as the ``x64`` it is underneath (the
    kernel would print a user address as a kernel symbol)."""
    base = arg_type.element().name
    if arg_type.kind == "symbol":
        base = "x64"
    return base + (f"[{arg_type.count}]" if arg_type.count is not None else "")


class _Names:
    """Kernel field names: each field keeps its own name where the kernel accepts it; the
    hidden arguments and string-array elements get names no field uses.

    Args:
        fields: The user's field names (unique within a probe, as the parser checks).
    """

    def __init__(self, fields: Sequence[str]) -> None:
        self.fields = {name for name in fields if _usable(name)}
        self.used: set[str] = set()
        self.counter = 0

    def take(self, preferred: str, own: bool) -> str:
        """A name for an argument; ``own``: the field's own value, which may use its name."""
        name = preferred
        if own and name in self.fields:
            pass
        elif not _usable(name) or name in self.fields or name in self.used:
            name = self._generated()
        if name in self.used:
            name = self._generated()
        self.used.add(name)
        return name

    def _generated(self) -> str:
        while True:
            name = f"rp{self.counter}"
            self.counter += 1
            if name not in self.fields and name not in self.used:
                return name


def render_probe(
    fetchargs: Sequence[FetchArg],
    fields: Sequence[CompiledField],
    *,
    retprobe: bool,
    file_offset: int,
    usdt_args: Sequence[UsdtArgument] | None = None,
    word: str = "",
) -> KernelProbe:
    """Render a probe's fetch-args for ``uprobe_events``.

    Args:
        fetchargs: The probe's fetch-args as parsed.
        fields: The compiled fields (same order; they carry the final types, USDT ones
            included).
        retprobe: Whether it is a return probe.
        file_offset: The probe's file offset (``@+OFFSET`` and ``%rip``-relative USDT operands).
        usdt_args: A USDT probe's argument specs.
        word: The probe word, for error messages.

    Raises:
        FetchArgError: A fetch-arg the kernel cannot express, or one longer than the kernel
            accepts (MAX_ARGSTR_LEN).
        UsageError: More fetch-args than a kernel event may have (MAX_TRACE_ARGS).
    """
    if len(fetchargs) != len(fields):
        raise ValueError("fetch-args and compiled fields do not match")
    renderer = _Renderer(word, retprobe, file_offset, usdt_args)
    names = _Names([f.name for f in fields])
    args: list[KernelArg] = []

    def add(preferred: str, body: str, role: str, index: int, element: int | None,
            arg: FetchArg | None) -> None:
        if len(body) > MAX_ARGSTR_LEN:
            raise FetchArgError(
                f"the kernel's uprobe_events takes fetch-args of at most {MAX_ARGSTR_LEN} "
                f"characters, and this one needs {len(body)} ({body}); shorten it or use "
                "--backend bpf",
                word, arg.column if arg is not None else 0,
            )
        own = role == ArgRole.VALUE and element is None
        args.append(KernelArg(names.take(preferred, own), body, role, index, element))

    for index, (arg, f) in enumerate(zip(fetchargs, fields, strict=True)):
        if f.constant is not None or isinstance(arg.source, ImmediateString):
            continue  # filled in user space (see the module docstring)
        if isinstance(arg.source, Comm):
            add(f.name, "$comm", ArgRole.VALUE, index, None, arg)
            continue
        lowered = renderer.lower(arg.source, arg)
        arg_type = f.type
        if arg_type.is_string:
            if arg_type.count is None:
                memory = (lowered.at(0) if isinstance(lowered, _Memory)
                          else f"+0({lowered.text})")
                add(f.name, f"{memory}:string", ArgRole.VALUE, index, None, arg)
            else:
                for element in range(arg_type.count):
                    pointer = (lowered.at(8 * element) if isinstance(lowered, _Memory)
                               else f"{_offset(8 * element)}({lowered.text})")
                    add(f"{f.name}_{element}", f"+0({pointer}):string", ArgRole.VALUE, index,
                        element, arg)
            continue
        kernel_type = _kernel_type(arg_type)
        if isinstance(lowered, _Value):
            add(f.name, f"{lowered.text}:{kernel_type}", ArgRole.VALUE, index, None, arg)
            continue
        scalar_word = arg_type.count is None and isinstance(arg.source, StackEntry)
        value = lowered.value if scalar_word else lowered.at(0)
        add(f.name, f"{value}:{kernel_type}", ArgRole.VALUE, index, None, arg)
        last = arg_type.size * (arg_type.count or 1) - 1
        add(f"{f.name}_fault", f"{lowered.at(last)}:string", ArgRole.CHECK, index, None, arg)
    add("rawprobe_comm", "$comm", ArgRole.COMM, -1, None, None)
    if len(args) > MAX_TRACE_ARGS:
        raise UsageError(
            f"the tracefs backend needs {len(args)} kernel fetch-args for this probe "
            f"(fault checks and string-array elements count), over the kernel's limit of "
            f"{MAX_TRACE_ARGS}; split the probe or use --backend bpf"
        )
    return KernelProbe(tuple(args))


def _usable(name: str) -> bool:
    return bool(_GOOD_NAME.fullmatch(name)) and len(name) <= MAX_ARG_NAME_LEN and (
        name not in _RESERVED
    )


def definition_line(
    kind: str,
    group: str,
    event: str,
    path: str,
    file_offset: int,
    ref_ctr_offset: int,
    probe: KernelProbe,
) -> str:
    """The ``uprobe_events`` line defining one event.

    Args:
        kind: ``p`` or ``r``.
        group: The event group.
        event: The event name.
        path: The file to probe.
        file_offset: Where in it.
        ref_ctr_offset: A semaphore's file offset, or 0 (``(0xOFFSET)`` after the place).

    Raises:
        UsageError: A path the kernel's command parser would split (whitespace).
    """
    if any(char.isspace() for char in path):
        raise UsageError(
            f"{path!r} contains whitespace, which uprobe_events cannot express (the kernel "
            "splits definitions at spaces); use --backend bpf"
        )
    place = f"{path}:{file_offset:#x}"
    if ref_ctr_offset:
        place += f"({ref_ctr_offset:#x})"
    return " ".join([f"{kind}:{group}/{event}", place, *(a.text for a in probe.args)])


def event_names(uprobes: Sequence[PlannedEvent]) -> list[str]:
    """Kernel event names: the layout's, made unique with a suffix and cut to the kernel's
    length limit (one word may plant several sites under one name)."""
    names: list[str] = []
    seen: set[str] = set()
    for uprobe in uprobes:
        base = uprobe.layout.event
        name = base[: MAX_EVENT_NAME_LEN - 1]
        number = 1
        while name in seen:
            suffix = f"_{number}"
            name = base[: MAX_EVENT_NAME_LEN - 1 - len(suffix)] + suffix
            number += 1
        seen.add(name)
        names.append(name)
    return names


def render_event(uprobe: PlannedEvent) -> KernelProbe:
    """The uprobe's fetch-args in kernel syntax; errors name the event (the probe word itself
    is not kept once planned)."""
    try:
        return render_probe(uprobe.fetchargs, uprobe.layout.fields, retprobe=uprobe.retprobe,
                            file_offset=uprobe.file_offset, usdt_args=uprobe.usdt_args)
    except FetchArgError as error:
        raise FetchArgError(f"probe {uprobe.layout.event}: {error.message}") from None
    except UsageError as error:
        raise UsageError(f"probe {uprobe.layout.event}: {error}") from None

"""What can be traced: system calls with their arguments, and kernel tracepoints with their fields.

The kernel describes each system call it implements in tracefs, as two trace events
(kernel/trace/trace_syscalls.c): ``events/syscalls/sys_enter_NAME/format`` lists
``__syscall_nr`` and then each argument, named and typed as in its ``SYSCALL_DEFINE``;
``sys_exit_NAME/format`` holds ``long ret``. A system call the kernel was built without (module
loading without CONFIG_MODULES) has no events. The event is named after the kernel's entry
point, which is not always the name the headers give the call: ``stat`` is implemented by
``sys_newstat`` (arch/x86/entry/syscalls/syscall_64.tbl: ``4 common stat sys_newstat``),
``umount2`` by ``sys_umount``, ``sendfile`` by ``sys_sendfile64``. rawprobe names system calls
as the headers (and strace) do, and accepts the event's name too.

A catalogue joins those descriptions with the generated number table. Numbers come from the
headers the table was generated from; a system call newer than them (on a newer kernel) is
still listed, by its event name, with no number.
"""

from __future__ import annotations

import difflib
import fnmatch
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._errors import KernelFeatureError, UsageError
from .._host.eventformat import EventFormat, FormatField, parse_format
from ._constants import SyscallNumbers, syscall_numbers
from ._ctypes import CType, c_type
from ._decoders import ArgDecoder, Capture, Display, classify_argument, return_display

__all__ = [
    "TRACEFS_ROOTS",
    "SyscallArg",
    "SyscallCatalog",
    "SyscallSignature",
    "Tracepoint",
    "TracepointField",
    "TracepointListing",
    "event_name_for",
    "find_tracefs_events",
    "list_tracepoints",
    "load_catalog",
    "read_tracepoint",
    "signature_from_fields",
    "syscall_name_for_event",
]

TRACEFS_ROOTS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
_GLOB_CHARACTERS = frozenset("*?[")

# Entry points whose names are not the headers' name, "new", or "64" added to it
# (arch/x86/entry/syscalls/syscall_64.tbl, include/uapi/asm-generic/unistd.h).
_EVENT_EXCEPTIONS = {"umount2": "umount"}
_EVENT_EXCEPTIONS_REVERSED = {event: name for name, event in _EVENT_EXCEPTIONS.items()}
# Fields every syscall event has before the arguments (kernel/trace/trace_syscalls.c).
_SYSCALL_NR_FIELD = "__syscall_nr"


@dataclass(frozen=True)
class SyscallArg:
    """One argument of a system call.

    Attributes:
        index: Its position (0-based): which syscall argument register holds it.
        name: Its name in the kernel's prototype (``filename``).
        c_type: Its declared C type (``const char *``), size and signedness.
        decoder: How it is captured and shown.
    """

    index: int
    name: str
    c_type: CType
    decoder: ArgDecoder

    @property
    def display(self) -> Display:
        return self.decoder.display

    @property
    def capture(self) -> Capture:
        return self.decoder.capture


@dataclass(frozen=True)
class SyscallSignature:
    """One system call: its names, number and arguments.

    Attributes:
        name: The headers' (and strace's) name (``stat``).
        number: Its number on the catalogue's architecture, or None when the tables lack it.
        event: The tracefs event suffix (``newstat``: ``syscalls:sys_enter_newstat``), or None
            when this kernel has no events for it (or tracefs was not read).
        args: Its arguments in order, or None when not known (tracefs was not read).
        enter_event_id: ``events/syscalls/sys_enter_EVENT/id``, when read.
        exit_event_id: ``events/syscalls/sys_exit_EVENT/id``, when read.
    """

    name: str
    number: int | None
    event: str | None
    args: tuple[SyscallArg, ...] | None
    enter_event_id: int | None = None
    exit_event_id: int | None = None

    @property
    def returns(self) -> Display:
        """How a successful return value is shown."""
        return return_display(self.name)

    @property
    def traceable(self) -> bool:
        """Whether this kernel has trace events for it."""
        return self.event is not None

    def argument(self, name: str) -> SyscallArg:
        """The argument called ``name``.

        Raises:
            UsageError: No such argument (the message lists the ones there are).
        """
        for arg in self.args or ():
            if arg.name == name:
                return arg
        known = ", ".join(arg.name for arg in self.args or ()) or "none known"
        raise UsageError(f"system call {self.name} has no argument {name!r} (it has: {known})")

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready description (for ``rawprobe list --syscalls --json`` and recordings)."""
        return {
            "name": self.name,
            "number": self.number,
            "event": self.event,
            "args": None if self.args is None else [
                {"name": arg.name, "type": arg.c_type.spelling, "size": arg.c_type.size,
                 "signed": arg.c_type.signed, "display": arg.display.value,
                 "capture": arg.capture.value,
                 **({"length_argument": arg.decoder.length_argument}
                    if arg.decoder.length_argument else {})}
                for arg in self.args
            ],
            "returns": self.returns.value,
        }


def signature_from_fields(
    name: str,
    fields: Sequence[tuple[str, str]],
    number: int | None = None,
    event: str | None = None,
) -> SyscallSignature:
    """A signature from (C type, argument name) pairs, classified by :mod:`._decoders`.

    Args:
        name: The system call's name (``openat``).
        fields: Its arguments in order, e.g. ``[("int", "dfd"), ("const char *", "filename")]``.
        number: Its number, if known.
        event: Its tracefs event suffix (default: ``name``).
    """
    args = tuple(
        SyscallArg(index, arg_name, c_type(type_text), classify_argument(name, arg_name,
                                                                         type_text))
        for index, (type_text, arg_name) in enumerate(fields)
    )
    return SyscallSignature(name, number, event if event is not None else name, args)


def event_name_for(name: str, events: Iterable[str]) -> str | None:
    """The tracefs event suffix that traces system call ``name``, among ``events``."""
    available = set(events)
    candidates = (name, _EVENT_EXCEPTIONS.get(name, ""), "new" + name, name + "64")
    for candidate in candidates:
        if candidate and candidate in available:
            return candidate
    return None


def syscall_name_for_event(event: str, numbers: SyscallNumbers) -> str:
    """The headers' name of the system call traced by event suffix ``event``."""
    if event in numbers.by_name:
        return event
    if event in _EVENT_EXCEPTIONS_REVERSED:
        return _EVENT_EXCEPTIONS_REVERSED[event]
    if event.startswith("new") and event[3:] in numbers.by_name:
        return event[3:]
    if event.endswith("64") and event[:-2] in numbers.by_name:
        return event[:-2]
    return event


def find_tracefs_events(root: str | os.PathLike[str] | None = None) -> Path:
    """The ``events`` directory of tracefs.

    Args:
        root: Where tracefs is mounted (default: the first of :data:`TRACEFS_ROOTS` that has
            an ``events`` directory).

    Raises:
        KernelFeatureError: tracefs is not mounted there (the message says how to mount it).
    """
    roots = (os.fspath(root),) if root is not None else TRACEFS_ROOTS
    for candidate in roots:
        events = Path(candidate) / "events"
        if events.is_dir():
            return events
    raise KernelFeatureError(
        f"tracefs is not mounted at {roots[0]}: mount it with "
        f"'mount -t tracefs nodev {roots[0]}'"
    )


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except PermissionError:
        raise KernelFeatureError(
            f"cannot read {path}: reading trace event formats needs root (or CAP_SYS_ADMIN)"
        ) from None


def _read_format(path: Path) -> EventFormat:
    return parse_format(_read_text(path))


def _own_fields(event_format: EventFormat) -> list[FormatField]:
    return [f for f in event_format.fields if not f.name.startswith("common_")]


@dataclass
class SyscallCatalog:
    """The system calls of one kernel and architecture.

    Attributes:
        machine: The architecture.
        numbers: Its system call numbers (from the generated tables).
        signatures: Every system call by the headers' name, those only the kernel knows
            included.
        from_tracefs: Whether the kernel's tracefs was read (else arguments are unknown).
    """

    machine: str
    numbers: SyscallNumbers
    signatures: dict[str, SyscallSignature]
    from_tracefs: bool
    _by_event: dict[str, str] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._by_event = {sig.event: sig.name for sig in self.signatures.values()
                          if sig.event is not None}

    def names(self, traceable_only: bool = True) -> list[str]:
        """The system call names, sorted (by default only those this kernel can trace)."""
        return sorted(name for name, sig in self.signatures.items()
                      if sig.traceable or not traceable_only)

    def lookup(self, name: str) -> SyscallSignature:
        """The system call called ``name`` (the headers' name, or the tracefs event's).

        Raises:
            UsageError: No such system call; the message suggests close names.
        """
        if name in self.signatures:
            return self.signatures[name]
        if name in self._by_event:
            return self.signatures[self._by_event[name]]
        suggestions = difflib.get_close_matches(name, self.names(), n=3, cutoff=0.6)
        hint = f"did you mean {', '.join(suggestions)}? " if suggestions else ""
        raise UsageError(
            f"no system call {name!r} on {self.machine}; {hint}"
            "'rawprobe list --syscalls' lists them"
        )

    def by_number(self, number: int) -> SyscallSignature:
        """The system call with ``number`` (``raw_syscalls`` events carry only the number).

        A number the tables lack gives a signature named ``syscall_NNN`` with unknown
        arguments.
        """
        name = self.numbers.by_number.get(number)
        if name is not None and name in self.signatures:
            return self.signatures[name]
        return SyscallSignature(self.numbers.name(number), number, None, None)

    def select(self, patterns: Sequence[str]) -> list[SyscallSignature]:
        """The system calls that ``patterns`` (names or globs: ``open*``, ``*stat*``) name.

        Globs match only system calls this kernel can trace; a name must exist. The result is
        in the order of ``patterns`` (each glob's matches sorted), without repeats.

        Raises:
            UsageError: A name that is not a system call, or a glob that matches none.
        """
        chosen: dict[str, SyscallSignature] = {}
        for pattern in patterns:
            if _GLOB_CHARACTERS & set(pattern):
                matches = [name for name in self.names() if fnmatch.fnmatchcase(name, pattern)]
                if not matches:
                    raise UsageError(
                        f"no system call matches {pattern!r}; "
                        "'rawprobe list --syscalls' lists them"
                    )
                for name in matches:
                    chosen.setdefault(name, self.signatures[name])
            else:
                signature = self.lookup(pattern)
                chosen.setdefault(signature.name, signature)
        return list(chosen.values())

    def listing(self, glob: str | None = None) -> list[dict[str, Any]]:
        """Data for ``rawprobe list --syscalls [GLOB]``: one dict per traceable system call,
        sorted by name (see :meth:`SyscallSignature.as_dict`)."""
        return [self.signatures[name].as_dict() for name in self.names()
                if glob is None or fnmatch.fnmatchcase(name, glob)]


def load_catalog(
    tracefs_root: str | os.PathLike[str] | None = None,
    machine: str | None = None,
    read_tracefs: bool = True,
    exit_ids: bool = True,
) -> SyscallCatalog:
    """The system calls of the running kernel (or, without tracefs, of the tables).

    Args:
        tracefs_root: Where tracefs is mounted (default: found).
        machine: The architecture (default: this machine's; arguments from tracefs describe
            only this machine's kernel).
        read_tracefs: Read the kernel's event formats for arguments; without them the
            catalogue has names and numbers only (enough to name ``raw_syscalls`` events in a
            recording read elsewhere).
        exit_ids: Also read each ``sys_exit_*`` event's id (half the reading: the BPF side,
            which pairs calls on the raw syscall tracepoints, does without them).

    Raises:
        KernelFeatureError: tracefs is wanted but not mounted or not readable; no tables for
            the architecture.
    """
    numbers = syscall_numbers(machine)
    signatures: dict[str, SyscallSignature] = {}
    if not read_tracefs:
        for name, number in numbers.by_name.items():
            signatures[name] = SyscallSignature(name, number, None, None)
        return SyscallCatalog(numbers.machine, numbers, signatures, from_tracefs=False)
    syscalls_dir = find_tracefs_events(tracefs_root) / "syscalls"
    if not syscalls_dir.is_dir():
        raise KernelFeatureError(
            "tracefs has no syscalls events: the kernel was built without "
            "CONFIG_FTRACE_SYSCALLS, so system calls cannot be traced by name"
        )
    for enter_dir in sorted(syscalls_dir.glob("sys_enter_*")):
        event = enter_dir.name.removeprefix("sys_enter_")
        enter = _read_format(enter_dir / "format")
        exit_format = syscalls_dir / f"sys_exit_{event}" / "format"
        exit_id = _read_format(exit_format).id if exit_ids and exit_format.exists() else None
        name = syscall_name_for_event(event, numbers)
        fields = [(f.type, f.name) for f in _own_fields(enter) if f.name != _SYSCALL_NR_FIELD]
        base = signature_from_fields(name, fields, numbers.by_name.get(name), event)
        signatures[name] = SyscallSignature(base.name, base.number, event, base.args,
                                            enter.id, exit_id)
    for name, number in numbers.by_name.items():
        signatures.setdefault(name, SyscallSignature(name, number, None, None))
    return SyscallCatalog(numbers.machine, numbers, signatures, from_tracefs=True)


# -- kernel tracepoints --------------------------------------------------------------------


@dataclass(frozen=True)
class TracepointField:
    """One field of a tracepoint's records.

    Attributes:
        name: The field's name in the ``format`` file.
        c_type: Its C type as written there (``__data_loc char[]``, ``pid_t``, ``char[16]``).
        offset: Byte offset in the record.
        size: Bytes it takes.
        signed: Whether the kernel declares it signed.
        is_string: A string: ``__data_loc char[]`` or a ``char`` array (``comm``).
    """

    name: str
    c_type: str
    offset: int
    size: int
    signed: bool
    is_string: bool

    @classmethod
    def of(cls, format_field: FormatField) -> TracepointField:
        is_string = (format_field.data_loc and format_field.count is None) or (
            format_field.type in ("char", "const char") and format_field.count is not None)
        spelled = format_field.type + (f"[{format_field.count}]"
                                       if format_field.count is not None
                                       and not format_field.data_loc else "")
        return cls(format_field.name, spelled, format_field.offset, format_field.size,
                   format_field.signed, bool(is_string))


@dataclass(frozen=True)
class Tracepoint:
    """A kernel tracepoint as tracefs describes it.

    Attributes:
        group: Its subsystem (``sched``).
        event: Its name (``sched_switch``).
        id: Its trace event id (the ``config`` of a ``PERF_TYPE_TRACEPOINT`` perf event).
        fields: Its own fields in record order (the ``common_*`` ones left out).
        format: The parsed ``format`` file, for decoding records.
    """

    group: str
    event: str
    id: int
    fields: tuple[TracepointField, ...]
    format: EventFormat

    def select_fields(self, names: Sequence[str]) -> tuple[TracepointField, ...]:
        """The fields called ``names``, in that order (all of them when ``names`` is empty).

        Raises:
            UsageError: An unknown field; the message suggests close names and lists them all.
        """
        if not names:
            return self.fields
        by_name = {f.name: f for f in self.fields}
        chosen = []
        for name in names:
            if name not in by_name:
                close = difflib.get_close_matches(name, list(by_name), n=3, cutoff=0.6)
                hint = f"did you mean {', '.join(close)}? " if close else ""
                raise UsageError(
                    f"tracepoint {self.group}:{self.event} has no field {name!r}; {hint}"
                    f"its fields are: {', '.join(by_name) or 'none'}"
                )
            chosen.append(by_name[name])
        return tuple(chosen)


def _tracepoint_groups(events: Path) -> list[str]:
    return sorted(p.name for p in events.iterdir() if p.is_dir())


def read_tracepoint(
    group: str, event: str, tracefs_root: str | os.PathLike[str] | None = None
) -> Tracepoint:
    """The tracepoint ``group:event`` of the running kernel.

    Raises:
        UsageError: No such group or event; the message suggests close names.
        KernelFeatureError: tracefs is not mounted or not readable, or the format file is not
            one rawprobe can parse.
    """
    events = find_tracefs_events(tracefs_root)
    group_dir = events / group
    if not group_dir.is_dir() or "/" in group or group.startswith("."):
        close = difflib.get_close_matches(group, _tracepoint_groups(events), n=3, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise UsageError(f"no tracepoint group {group!r}; {hint}"
                         "'rawprobe list --tracepoints' lists them")
    event_dir = group_dir / event
    if not (event_dir / "format").is_file() or "/" in event:
        names = sorted(p.name for p in group_dir.iterdir() if (p / "format").is_file())
        close = difflib.get_close_matches(event, names, n=3, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise UsageError(f"no tracepoint {group}:{event}; {hint}"
                         f"'rawprobe list --tracepoints \"{group}:*\"' lists that group")
    parsed = _read_format(event_dir / "format")
    return Tracepoint(group, event, parsed.id,
                      tuple(TracepointField.of(f) for f in _own_fields(parsed)), parsed)


@dataclass(frozen=True)
class TracepointListing:
    """One line of ``rawprobe list --tracepoints``.

    Attributes:
        name: ``group:event``.
        fields: Its fields' names and C types, or empty when ``error`` is set.
        error: Why the format file could not be parsed, else None.
    """

    name: str
    fields: tuple[tuple[str, str], ...]
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name,
                "fields": [{"name": name, "type": type_text} for name, type_text in self.fields],
                **({"error": self.error} if self.error else {})}


def list_tracepoints(
    glob: str | None = None, tracefs_root: str | os.PathLike[str] | None = None
) -> list[TracepointListing]:
    """The running kernel's tracepoints whose ``group:event`` matches ``glob``, sorted.

    Raises:
        KernelFeatureError: tracefs is not mounted or not readable.
    """
    events = find_tracefs_events(tracefs_root)
    listings = []
    group_glob = glob.split(":", 1)[0] if glob is not None and ":" in glob else None
    for group in _tracepoint_groups(events):
        if group_glob is not None and not fnmatch.fnmatchcase(group, group_glob):
            continue
        try:
            event_dirs = sorted((events / group).iterdir())
        except FileNotFoundError:
            continue  # probe events come and go (other tracers' uprobe groups)
        for event_dir in event_dirs:
            name = f"{group}:{event_dir.name}"
            if glob is not None and not fnmatch.fnmatchcase(name, glob):
                continue
            if not (event_dir / "format").is_file():
                continue
            try:
                text = _read_text(event_dir / "format")
            except FileNotFoundError:
                continue
            try:
                parsed = parse_format(text)
            except KernelFeatureError as error:
                listings.append(TracepointListing(name, (), str(error)))
                continue
            listings.append(TracepointListing(
                name, tuple((f.name, f.c_type) for f in map(TracepointField.of,
                                                             _own_fields(parsed)))))
    return listings

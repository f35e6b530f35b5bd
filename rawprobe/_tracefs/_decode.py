"""Raw tracepoint samples of rawprobe's kernel events, decoded into the BPF backend's values.

For each event a construct ``Struct`` is declared at run time from its ``format`` file: the
kernel's offsets (fields are packed, see :mod:`._eventformat`), with rawprobe's own types for
sign and width, padding for what is skipped. It is compiled once into a :class:`struct.Struct`
(:func:`rawprobe._plan.abi.compile_struct`), and a small function generated per event turns the
unpacked tuple into the values, fault bits and truncation bits the BPF backend would have
produced for the same probe word: the same Python types (``int``, ``str``, ``tuple`` for
arrays, ``None`` where memory could not be read), strings cut at ``--string-size`` the way
``bpf_probe_read_user_str()`` cuts them. How faults are recognised is explained in
:mod:`._render`.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Callable
from typing import Any

import construct as c

from .._errors import KernelFeatureError
from .._host.eventformat import EventFormat, FormatField
from .._plan.abi import compile_struct
from .._plan.events import RecordLayout
from ._render import ArgRole, KernelArg, KernelProbe

__all__ = ["SAMPLE_HEAD", "SampleDecoder", "sample_callchain"]

# With PERF_SAMPLE_CALLCHAIN the sample is: pid, tid, time, cpu, res, then u64 nr and nr
# addresses, then the raw data's u32 size (include/uapi/linux/perf_event.h).
SAMPLE_HEAD = struct.Struct("<IIQII")
_U64 = struct.Struct("<Q")
# Addresses at or above PERF_CONTEXT_MAX (-4095) mark where a context starts, not frames.
_PERF_CONTEXT_MAX = (1 << 64) - 4095


def sample_callchain(chunk: bytes, position: int) -> tuple[tuple[int, ...], int]:
    """The user stack a sample carries (innermost first), and where its raw data starts."""
    (count,) = _U64.unpack_from(chunk, position)
    addresses = struct.unpack_from(f"<{count}Q", chunk, position + 8)
    stack = tuple(address for address in addresses if address < _PERF_CONTEXT_MAX)
    return stack, position + 8 + 8 * count + 4


_INTS = {(1, False): c.Int8ul, (2, False): c.Int16ul, (4, False): c.Int32ul,
         (8, False): c.Int64ul, (1, True): c.Int8sl, (2, True): c.Int16sl,
         (4, True): c.Int32sl, (8, True): c.Int64sl}

Decoded = tuple[tuple[Any, ...], int, int, bytes]


class _Cut(bytes):
    """A string the kernel cut (or left empty) because the event's string data reached one
    page: the uprobe tracer's per-CPU buffer is a page (kernel/trace/trace_uprobe.c,
    MAX_UCB_BUFFER_SIZE; the kernel logs a warning the first time)."""


def _dynamic(chunk: bytes, base: int, loc: int, next_loc: int | None, end: int) -> bytes | None:
    """The bytes of a ``__data_loc`` string (NUL dropped), or ``None`` if it faulted.

    Args:
        chunk: The bytes holding the record; ``base`` where the record starts.
        loc: The field's ``(length << 16) | offset``.
        next_loc: The next dynamic field's (there always is one, but for the hidden ``$comm``):
            a string whose next one starts at the same offset consumed nothing, so its length
            is the kernel's pre-filled remaining space, not a string (see :mod:`._render`).
        end: Where the kernel's room for string data ends (record offset).

    Returns:
        ``None`` for a fault; a :class:`_Cut` for a string cut short by (or left out for) the
        kernel's one-page limit; else the bytes.
    """
    length = loc >> 16
    offset = loc & 0xFFFF
    if offset >= end:
        return _Cut()
    if not length or (next_loc is not None and next_loc & 0xFFFF == offset):
        return None
    start = base + offset
    # The length counts the NUL the kernel always writes (fetch_store_string()).
    if offset + length >= end:
        return _Cut(chunk[start : start + length - 1])
    return chunk[start : start + length - 1]


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "backslashreplace")


class SampleDecoder:
    """Decodes the raw samples of one kernel event.

    Args:
        event_id: rawprobe's index of the event (its counters).
        layout: The event's rawprobe layout (names, types, and the ``Event`` it produces).
        probe: The kernel fetch-args rendered for it.
        event_format: Its parsed ``format`` file.
        string_size: ``--string-size``: bytes a string may take, NUL included.

    Raises:
        KernelFeatureError: The format file does not match what was defined.
    """

    def __init__(
        self,
        event_id: int,
        layout: RecordLayout,
        probe: KernelProbe,
        event_format: EventFormat,
        string_size: int,
    ) -> None:
        self.event_id = event_id
        self.layout = layout
        self.type_id = event_format.id
        located = [(event_format.field(a.name), a) for a in probe.args]
        located.sort(key=lambda pair: pair[0].offset)
        # The arguments start right after the entry's header (common fields and the probe's
        # addresses); the kernel keeps arguments and strings within one page after that.
        self.data_end = located[0][0].offset + mmap.PAGESIZE
        self.construct = self._declare(located, layout)
        self.struct = compile_struct(self.construct)
        self.decode: Callable[[bytes, int], Decoded] = self._generate(
            [a for _f, a in located], probe, layout, string_size
        )
        # A kernel event several sites share: (event id, layout) by the site number each
        # site's definition stores in the record (see TracefsSession), and where it is.
        self.sites: list[tuple[int, RecordLayout]] = []
        self._site = struct.Struct("<I")
        self._site_offset = 0

    def share(self, site_offset: int, sites: list[tuple[int, RecordLayout]]) -> None:
        """Decode the samples of several sites sharing this event: each carries its site
        number (a u32 at ``site_offset`` in the record)."""
        self.sites = sites
        self._site_offset = site_offset

    def site(self, chunk: bytes, base: int) -> tuple[int, RecordLayout]:
        """The event id and layout of the site a sample of a shared event came from."""
        number: int = self._site.unpack_from(chunk, base + self._site_offset)[0]
        return self.sites[number]

    @staticmethod
    def _declare(located: list[tuple[FormatField, KernelArg]], layout: RecordLayout) -> c.Struct:
        """The construct declaration of the record, from its start (common fields skipped)."""
        members: list[Any] = []
        position = 0
        for field, arg in located:
            if field.offset < position:
                raise KernelFeatureError(f"overlapping fields in the format of {layout.event}")
            if field.offset > position:
                members.append(c.Padding(field.offset - position))
            if arg.dynamic:
                if not field.data_loc or field.count is not None:
                    raise KernelFeatureError(
                        f"{layout.event}: the kernel did not lay {arg.name} out as a string"
                    )
                members.append(arg.name / c.Int32ul)
            else:
                arg_type = layout.fields[arg.field].type
                count = arg_type.count or 1
                if field.size != arg_type.size * count:
                    raise KernelFeatureError(
                        f"{layout.event}: the kernel laid {arg.name} out in {field.size} bytes, "
                        f"not {arg_type.size * count}"
                    )
                scalar = _INTS[(arg_type.size, arg_type.kind == "int" and arg_type.signed)]
                members.append(arg.name / (c.Array(count, scalar) if arg_type.count
                                           else scalar))
            position = field.offset + field.size
        return c.Struct(*members)

    def _generate(
        self,
        order: list[KernelArg],
        probe: KernelProbe,
        layout: RecordLayout,
        string_size: int,
    ) -> Callable[[bytes, int], Decoded]:
        """Generate ``decode(chunk, base) -> (values, faults, truncated, comm)``."""
        index: dict[str, int] = {}
        position = 0
        for arg in order:  # where each kernel argument lands in the unpacked tuple
            index[arg.name] = position
            if arg.dynamic:
                position += 1
            else:
                position += layout.fields[arg.field].type.count or 1
        dynamic = [a for a in probe.args if a.dynamic]  # kernel order: how data is laid out
        lines = ["def decode(chunk, base):", "    r = unpack(chunk, base)",
                 "    faults = 0", "    truncated = 0"]
        slot: dict[str, str] = {}
        for number, arg in enumerate(dynamic):
            nxt = (f"r[{index[dynamic[number + 1].name]}]" if number + 1 < len(dynamic)
                   else "None")
            slot[arg.name] = f"d{number}"
            lines.append(f"    d{number} = dyn(chunk, base, r[{index[arg.name]}], {nxt}, "
                         f"{self.data_end})")
        limit = string_size - 1
        values: list[str] = []
        for number, f in enumerate(layout.fields):
            if f.constant is not None:
                values.append(repr(f.constant))
                continue
            mine = probe.for_field(number)
            value_args = [a for a in mine if a.role == ArgRole.VALUE]
            checks = [a for a in mine if a.role == ArgRole.CHECK]
            var = f"v{number}"
            kind = f.type.kind
            if kind == "string":
                elements = []
                for element, arg in enumerate(value_args):
                    bit = 1 << f.slots[element if f.type.count is not None else 0]
                    d = slot[arg.name]
                    name = f"{var}_{element}"
                    elements.append(name)
                    lines.append(f"    if {d} is None:")
                    lines.append(f"        faults |= {bit}")
                    lines.append(f"        {name} = None")
                    lines.append("    else:")
                    if arg.body != "$comm":
                        lines.append(f"        if len({d}) > {limit} or type({d}) is Cut:")
                        lines.append(f"            truncated |= {bit}")
                        lines.append(f"            {d} = {d}[:{limit}]")
                    else:  # a comm is never cut at --string-size (as in BPF)
                        lines.append(f"        if type({d}) is Cut:")
                        lines.append(f"            truncated |= {bit}")
                    lines.append(f"        {name} = text({d})")
                if f.type.count is None:
                    values.append(elements[0])
                else:
                    values.append("(" + "".join(f"{e}, " for e in elements) + ")")
                continue
            start = index[value_args[0].name]
            count = f.type.count
            if count is None:
                expression = f"r[{start}]"
                if kind == "char":
                    expression = f"chr({expression})"
            else:
                expression = f"r[{start}:{start + count}]"
                if kind == "char":
                    expression = f"tuple(map(chr, {expression}))"
            if checks:
                bit = 1 << f.slots[0]
                lines.append(f"    if {slot[checks[0].name]} is None:")
                lines.append(f"        faults |= {bit}")
                lines.append(f"        {var} = None")
                lines.append("    else:")
                lines.append(f"        {var} = {expression}")
                values.append(var)
            else:
                values.append(expression)
        comm = next(a for a in probe.args if a.role == ArgRole.COMM)
        lines.append("    return (" + "".join(f"{v}, " for v in values) + f"), faults, "
                     f"truncated, {slot[comm.name]} or b''")
        source = "\n".join(lines) + "\n"
        namespace: dict[str, Any] = {"unpack": self.struct.unpack_from, "dyn": _dynamic,
                                     "text": _text, "Cut": _Cut}
        exec(compile(source, f"<rawprobe tracefs record {layout.event}>", "exec"), namespace)
        self.source = source
        return namespace["decode"]  # type: ignore[no-any-return]

"""Turn a probe's fetch-args into the BPF program's per-probe configuration and a record layout.

Each fetch-arg becomes one or more ``struct rp_field`` entries (clang/rawprobe.h): a base value
(a register plus a constant, or a constant), a chain of dereferences, and how to store the
result. The record layout that follows from them is what :mod:`rawprobe._plan.events` decodes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

from .._errors import FetchArgError, UsageError
from .._probe.defaults import DEFAULT_STRING_SIZE, MAX_STRING_SIZE
from .._probe.fetchargs import (
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
from .._sys.arch import ARCH
from . import abi
from .events import CompiledField

__all__ = [
    "DEFAULT_STRING_SIZE",
    "MAX_STRING_SIZE",
    "CompiledField",
    "CompiledProbe",
    "compile_fetchargs",
]

HEADER_SIZE = abi.HEADER_SIZE


@dataclass(frozen=True)
class Lowered:
    """A fetch reduced to the BPF side's terms: base, constant, dereference chain."""

    base: int
    reg: int
    imm: int
    derefs: tuple[int, ...]


@dataclass
class CompiledProbe:
    """A probe's configuration for the BPF program, and the layout of its records."""

    fields: list[CompiledField]
    entries: list[dict[str, object]] = field(default_factory=list)
    fixed_size: int = HEADER_SIZE
    max_size: int = HEADER_SIZE
    retprobe: bool = False
    stack_offset: int = -1  # where the user stack's data_loc is, when records carry one
    at_entry: bool = False  # on a function's first instruction (see RP_PROBE_AT_ENTRY)

    @property
    def reads_memory(self) -> bool:
        """Whether any field dereferences user memory (and so may need to fault pages in)."""
        return any(entry["nderef"] for entry in self.entries)

    def config(
        self,
        predicates: list[dict[str, object]] | None = None,
        strings: list[bytes] | None = None,
        aggregation: dict[str, object] | None = None,
    ) -> bytes:
        """The ``struct rp_probe`` bytes for the ``probes`` map.

        Args:
            predicates: The filter program (see :mod:`rawprobe._probe.filters`).
            strings: The filter's string constants.
            aggregation: ``struct rp_aggregation`` members (default: stream records).
        """
        predicates = predicates or []
        strings = strings or []
        empty_field = dict(_EMPTY_FIELD)
        empty_predicate = dict(_EMPTY_PREDICATE)
        flags = abi.PROBE_RETURN if self.retprobe else 0
        if self.stack_offset >= 0:
            flags |= abi.PROBE_STACK
        if self.at_entry:
            flags |= abi.PROBE_AT_ENTRY
        return bytes(
            abi.PROBE.build(
                {
                    "flags": flags,
                    "nfields": len(self.entries),
                    "npredicates": len(predicates),
                    "fixed_size": self.fixed_size,
                    "stack_dest": max(self.stack_offset, 0),
                    "reserved": 0,
                    "agg": {**STREAM_AGGREGATION, **(aggregation or {})},
                    "fields": self.entries + [empty_field] * (abi.MAX_FIELDS - len(self.entries)),
                    "predicates": predicates
                    + [empty_predicate] * (abi.MAX_PREDICATES - len(predicates)),
                    "strings": [s.ljust(abi.STR_CONST_LEN, b"\0") for s in strings]
                    + [b"\0" * abi.STR_CONST_LEN] * (abi.MAX_STR_CONSTS - len(strings)),
                }
            )
        )


EMPTY_KEY_PART: dict[str, object] = {
    "kind": abi.KeyKind.NONE, "dest": 0, "size": 0, "reserved": 0, "src": 0, "reserved2": 0,
}

STREAM_AGGREGATION: dict[str, object] = {
    "action": abi.Action.STREAM,
    "hist": abi.HistKind.NONE,
    "value_src": 0,
    "value_size": 0,
    "value_signed": 0,
    "value_field": 0xFFFFFFFF,
    "value": abi.ValueKind.NONE,
    "accumulate": 0,
    "by_stack": 0,
    "match_size": 0,
    "match_src": 0,
    "match_signed": 0,
    "reserved": 0,
    "match_field": 0xFFFFFFFF,
    "span_id": 0,
    "duration_dest": 0,
    "reserved2": 0,
    "reserved3": 0,
    "lin_min": 0,
    "lin_step": 0,
    "lin_buckets": 0,
    "keys": [EMPTY_KEY_PART] * abi.MAX_KEYS,
}

_EMPTY_FIELD: dict[str, object] = {
    "base": 0,
    "store": 0,
    "nderef": 0,
    "size": 0,
    "count": 0,
    "dest": 0,
    "reg": 0,
    "max_len": 0,
    "imm": 0,
    "deref": [0] * abi.MAX_DEREF,
}
_EMPTY_PREDICATE: dict[str, object] = {
    "op": 0,
    "cmp": 0,
    "size": 0,
    "is_signed": 0,
    "src": 0,
    "str_index": 0,
    "field": 0,
    "str_len": 0,
    "value": 0,
}


def _lower(
    source: Source,
    arg: FetchArg,
    word: str,
    probe_file_offset: int,
    usdt_args: Sequence[UsdtArgument] | None,
    retprobe: bool = False,
) -> Lowered:
    if isinstance(source, Register):
        return Lowered(abi.BaseKind.REG, ARCH.registers[source.name], 0, ())
    if isinstance(source, StackPointer):
        return Lowered(abi.BaseKind.REG, ARCH.registers[ARCH.stack_pointer], 0, ())
    if isinstance(source, StackEntry):
        return Lowered(abi.BaseKind.REG, ARCH.registers[ARCH.stack_pointer], 0, (8 * source.index,))
    if isinstance(source, Immediate):
        return Lowered(abi.BaseKind.IMM, 0, source.value, ())
    if isinstance(source, Memory):
        return Lowered(abi.BaseKind.IMM, 0, source.address, (0,))
    if isinstance(source, FileOffset):
        # The kernel's translate_user_vaddr() (kernel/trace/trace_uprobe.c): the file is mapped
        # so that address - file offset is constant, and the probed address is at the probe's
        # own file offset. At an entry probe the instruction pointer is the probed address; at
        # a return it is the caller's, and the program keeps the probed function's address in
        # a word of its own (RP_FUNC_IP_WORD).
        return Lowered(
            abi.BaseKind.REG,
            abi.FUNC_IP_WORD if retprobe else ARCH.registers[ARCH.instruction_pointer],
            source.offset - probe_file_offset,
            (0,),
        )
    if isinstance(source, ProbeRelative):
        # At the probe site the instruction pointer is the probed address.
        return Lowered(abi.BaseKind.REG, ARCH.registers[ARCH.instruction_pointer],
                       source.delta, ())
    if isinstance(source, Deref):
        inner = _lower(source.inner, arg, word, probe_file_offset, usdt_args, retprobe)
        return Lowered(inner.base, inner.reg, inner.imm, (*inner.derefs, source.offset))
    if isinstance(source, UsdtArg):
        if usdt_args is None:
            raise FetchArgError(f"$arg{source.index} needs a USDT probe", word, arg.column)
        if source.index > len(usdt_args):
            raise FetchArgError(
                f"$arg{source.index}: this USDT probe has {len(usdt_args)} argument"
                f"{'s' * (len(usdt_args) != 1)}",
                word,
                arg.column,
            )
        usdt_arg = usdt_args[source.index - 1]
        if usdt_arg.error is not None:
            raise FetchArgError(f"$arg{source.index}: {usdt_arg.error}", word, arg.column)
        return _lower(usdt_arg.source, arg, word, probe_file_offset, None)
    raise FetchArgError(f"cannot fetch {arg.text!r}", word, arg.column)


def _align(offset: int, alignment: int) -> int:
    return (offset + alignment - 1) & ~(alignment - 1)


def compile_fetchargs(
    fetchargs: tuple[FetchArg, ...] | list[FetchArg],
    *,
    word: str = "",
    retprobe: bool = False,
    probe_file_offset: int = 0,
    string_size: int = DEFAULT_STRING_SIZE,
    usdt_args: Sequence[UsdtArgument] | None = None,
    stack: bool = False,
) -> CompiledProbe:
    """Lay out a probe's record and the ``rp_field`` entries that fill it.

    Args:
        fetchargs: The probe's parsed fetch-args.
        word: The probe word (for error messages).
        retprobe: Whether this is a return probe.
        probe_file_offset: The probe's file offset (for ``@+OFFSET``).
        string_size: Bytes copied at most per string, NUL included.
        usdt_args: For a USDT probe, its arguments: ``$argN`` reads the N-th, typed with its
            own size and sign unless the fetch-arg gives a type.
        stack: Records also carry the user stack (the return addresses, innermost first).

    Raises:
        FetchArgError: A fetch-arg the BPF programs cannot execute.
        UsageError: Too many fields, or records that would exceed the maximum size.
    """
    if not 1 <= string_size <= MAX_STRING_SIZE:
        raise UsageError(f"--string-size must be 1..{MAX_STRING_SIZE} bytes (got {string_size})")
    compiled = CompiledProbe(fields=[], retprobe=retprobe)
    offset = HEADER_SIZE
    string_bytes = 0
    for arg in fetchargs:
        arg_type = arg.type
        # A bare $argN of a USDT probe is a value, like a register, whatever its operand.
        usdt_arg: UsdtArgument | None = None
        if (
            usdt_args is not None
            and isinstance(arg.source, UsdtArg)
            and arg.source.index <= len(usdt_args)
        ):
            usdt_index = arg.source.index
            usdt_arg = usdt_args[usdt_index - 1]
            if not arg.typed:
                arg_type = usdt_arg.type
                arg = dataclasses.replace(arg, type=arg_type)
            elif not arg_type.is_string and arg_type.size > usdt_arg.size:
                # Only SIZE bytes of it are the argument: what lies beyond, in memory or in the
                # upper part of a register, is not (sys/sdt.h: "the byte-width ... governs").
                raise FetchArgError(
                    f"$arg{usdt_index} is a {usdt_arg.size}-byte argument "
                    f"({usdt_arg.text}); {arg_type.name} would read {arg_type.size} bytes: "
                    f"give a type of at most {usdt_arg.size * 8} bits, or none",
                    word,
                    arg.column,
                )
        if isinstance(arg.source, ImmediateString):
            compiled.fields.append(CompiledField(arg.name, arg_type, -1, (), arg.source.value))
            continue
        slots: list[int] = []
        if isinstance(arg.source, Comm):
            offset = _align(offset, 4)
            slots.append(len(compiled.entries))
            compiled.entries.append(_entry(abi.BaseKind.COMM, abi.StoreKind.STRING, 0, 0, (),
                                           4, 1, offset, abi.COMM_LEN))
            compiled.fields.append(CompiledField(arg.name, arg_type, offset, tuple(slots)))
            offset += 4
            string_bytes += abi.COMM_LEN
            continue
        lowered = _lower(arg.source, arg, word, probe_file_offset, usdt_args, retprobe)
        if usdt_arg is not None and arg_type.is_string and lowered.derefs:
            # The string a USDT argument points to: when the argument is in memory
            # (8@-24(%rbp)), one load gives the pointer and the string lies where it points.
            lowered = dataclasses.replace(lowered, derefs=(*lowered.derefs, 0))
        extra = 1 if arg_type.is_string and arg_type.count is not None else 0
        if len(lowered.derefs) + extra > abi.MAX_DEREF:
            raise FetchArgError(
                f"dereferences nested too deep (at most {abi.MAX_DEREF} levels)", word, arg.column
            )
        if arg_type.is_string:
            count = arg_type.count or 1
            offset = _align(offset, 4)
            start = offset
            for element in range(count):
                derefs = lowered.derefs or (0,)
                if arg_type.count is not None:
                    # string[N]: an array of N pointers, each to a string.
                    derefs = (*derefs[:-1], derefs[-1] + 8 * element, 0)
                slots.append(len(compiled.entries))
                compiled.entries.append(
                    _entry(lowered.base, abi.StoreKind.STRING, lowered.reg, lowered.imm, derefs,
                           4, 1, offset, string_size)
                )
                offset += 4
                string_bytes += string_size + 1  # one byte more is read to see truncation
            compiled.fields.append(CompiledField(arg.name, arg_type, start, tuple(slots)))
        else:
            count = arg_type.count or 1
            offset = _align(offset, arg_type.size)
            if not lowered.derefs and count > 1:
                raise FetchArgError(
                    "an array type needs memory to read: write +0(FETCHARG):TYPE[N]", word,
                    arg.column,
                )
            slots.append(len(compiled.entries))
            compiled.entries.append(
                _entry(lowered.base, abi.StoreKind.INT, lowered.reg, lowered.imm, lowered.derefs,
                       arg_type.size, count, offset, 0)
            )
            compiled.fields.append(CompiledField(arg.name, arg_type, offset, tuple(slots)))
            offset += arg_type.size * count
        if len(compiled.entries) > abi.MAX_FIELDS:
            raise UsageError(
                f"{word}: more than {abi.MAX_FIELDS} values to fetch in one probe"
            )
    if stack:
        offset = _align(offset, 4)
        compiled.stack_offset = offset
        offset += 4
        string_bytes += abi.STACK_DEPTH * 8
    compiled.fixed_size = _align(offset, 8)
    compiled.max_size = compiled.fixed_size + string_bytes
    if compiled.max_size > abi.MAX_RECORD:
        raise UsageError(
            f"{word}: a record could reach {compiled.max_size} bytes, over the limit of "
            f"{abi.MAX_RECORD}; lower --string-size (now {string_size})"
        )
    return compiled


def _entry(
    base: int,
    store: int,
    reg: int,
    imm: int,
    derefs: tuple[int, ...],
    size: int,
    count: int,
    dest: int,
    max_len: int,
) -> dict[str, object]:
    return {
        "base": base,
        "store": store,
        "nderef": len(derefs),
        "size": size,
        "count": count,
        "dest": dest,
        "reg": reg,
        "max_len": max_len,
        # 64-bit address arithmetic on the BPF side: an address above 2^63 (@ADDR, \IMM) is
        # the same bits as the negative number the signed field holds.
        "imm": _s64(imm),
        "deref": [_s64(offset) for offset in derefs] + [0] * (abi.MAX_DEREF - len(derefs)),
    }


def _s64(value: int) -> int:
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >> 63 else value

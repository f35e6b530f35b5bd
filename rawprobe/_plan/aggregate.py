"""Aggregation in the kernel: what a probe's BPF configuration says to aggregate, and how
keys come back.

With an aggregation, a probe's BPF program updates a map instead of writing a record: no
per-event record reaches user space. Counts without a key are the per-probe hit counters
themselves; counts by a key, sums, minimums, maximums and histogram buckets live in the
``aggregates`` map, keyed by ``struct rp_agg_key`` (clang/rawprobe.h), one
``struct rp_agg_value`` per CPU.

A grouping key is up to four parts laid side by side in the key's data (:func:`key_layout`).
A span (or a latency pair: a function's entry to its return) starts at one probe and ends at
another: keys the END probe has are read there; fields only START has are read at START and
kept with the span's start time until END (``struct rp_span_start``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .._errors import UsageError
from .._probe.aggregations import HEADER_KEYS, LATENCY, VALUE_KINDS, AggregationSpec
from .._probe.fetchargs import ArgType
from . import abi
from .compile import EMPTY_KEY_PART, CompiledField, CompiledProbe

__all__ = ["KeyPart", "SpanMatch", "aggregation_config", "fill_key", "key_decoder",
           "key_layout", "match_field", "value_signed"]

# Grouping keys taken from the record header: (offset, size).
_HEADER = {"pid": (8, 4), "tid": (12, 4), "cpu": (20, 4), "comm": (32, abi.COMM_LEN)}
_MIN_STRING = 8  # bytes a string key part gets at least (NUL included)


@dataclass(frozen=True)
class KeyPart:
    """One part of a grouping key: where it goes in ``rp_agg_key.data`` and what it holds.

    Attributes:
        name: The key as ``--by`` names it.
        at_start: Read at a span's START (a field only START has), not where it aggregates.
        kind: ``abi.KeyKind.BYTES`` or ``abi.KeyKind.STRING``.
        size: Bytes it takes (strings: at most, NUL included).
        dest: Offset in the key's data.
        type: The field's type; None for ``comm``, ``pid``, ``tid``, ``cpu``.
    """

    name: str
    at_start: bool
    kind: int
    size: int
    dest: int
    type: ArgType | None


@dataclass(frozen=True)
class SpanMatch:
    """How a span's START and END find each other.

    Attributes:
        span_id: Shared by the span's START and END events (``abi.SPAN_PAIRED`` for a
            latency pair, whose START is its END's event id - 1).
        match: ``tid``, or a field both probes have (a request id, a pointer).
    """

    span_id: int
    match: str = "tid"


def _field(compiled: CompiledProbe | None, name: str) -> CompiledField | None:
    if compiled is None:
        return None
    return next((f for f in compiled.fields if f.name == name and f.offset >= 0), None)


def _names(compiled: CompiledProbe | None) -> list[str]:
    return [] if compiled is None else [f.name for f in compiled.fields if f.offset >= 0]


def key_layout(
    keys: Sequence[str],
    here: CompiledProbe,
    start: CompiledProbe | None = None,
    *,
    word: str = "",
) -> tuple[KeyPart, ...]:
    """Lay the grouping keys out in the key's data, in order.

    Args:
        keys: The keys (``comm``, ``pid``, ``tid``, ``cpu``, or field names).
        here: The fields of the probe that aggregates (a span's END).
        start: For a span, its START probe's fields (keys only START has are read there).
        word: The probe word (for messages).

    Raises:
        UsageError: A key no probe has, an array, or keys that do not fit in the key.
    """
    found: list[tuple[str, bool, ArgType | None]] = []
    for name in keys:
        field = _field(here, name)
        at_start = False
        if field is None and name not in HEADER_KEYS:
            field = _field(start, name)
            at_start = field is not None
        if field is None and name not in HEADER_KEYS:
            names = [*_names(here), *(_names(start) if start is not None else [])]
            raise UsageError(f"--by {name}: {word!r} has no such field; choose one of "
                             + ", ".join(dict.fromkeys([*names, *HEADER_KEYS])))
        if field is not None and field.type.count is not None and field.type.kind not in (
                "char", "string"):
            raise UsageError(f"--by {name}: {name!r} is an array; group by a scalar field")
        if field is not None and field.type.kind == "string" and field.type.count is not None:
            raise UsageError(f"--by {name}: {name!r} is an array of strings; group by one")
        found.append((name, at_start, None if field is None else field.type))
    fixed = [_fixed_size(name, arg_type) for name, _s, arg_type in found]
    strings = sum(size is None for size in fixed)
    room = abi.KEY_DATA_LEN - sum(size for size in fixed if size is not None)
    share = room // strings if strings else 0
    if room < 0 or (strings and share < _MIN_STRING):
        raise UsageError(
            f"--by {','.join(keys)}: the keys take more than the {abi.KEY_DATA_LEN} bytes a "
            f"grouping key holds (integers take their size, comm 16 bytes, and each string "
            f"at least {_MIN_STRING}); group by fewer")
    parts = []
    dest = 0
    for (name, at_start, arg_type), size in zip(found, fixed, strict=True):
        kind = abi.KeyKind.BYTES if size is not None else abi.KeyKind.STRING
        size = share if size is None else size
        parts.append(KeyPart(name, at_start, kind, size, dest, arg_type))
        dest += size
    return tuple(parts)


def _fixed_size(name: str, arg_type: ArgType | None) -> int | None:
    """Bytes a key part takes; None for a string (it shares what is left)."""
    if arg_type is None:
        return _HEADER[name][1]
    if arg_type.kind == "string":
        return None
    return arg_type.size * (arg_type.count or 1)


def _part_config(part: KeyPart, compiled: CompiledProbe, word: str) -> dict[str, object]:
    """The ``struct rp_key_part`` of one part, for the probe whose record it is read from."""
    field = _field(compiled, part.name)
    if part.type is None and field is None:
        src = _HEADER[part.name][0]
    elif field is None or field.type != part.type:
        raise UsageError(f"--by {part.name}: the sites of {word!r} differ in its type; "
                         "give it one (NAME=FETCHARG:TYPE)")
    else:
        src = field.offset
    return {**EMPTY_KEY_PART, "kind": part.kind, "dest": part.dest, "size": part.size,
            "src": src}


def match_field(match: str, compiled: CompiledProbe, word: str) -> CompiledField:
    """The field a span matches on in one of its probes.

    Raises:
        UsageError: The probe has no such field, or it is not an integer.
    """
    field = _field(compiled, match)
    if field is None:
        names = ", ".join(_names(compiled)) or "none"
        raise UsageError(f"--key {match}: {word!r} has no field {match!r} (fields: {names}); "
                         "START and END must both fetch it, or match by tid")
    if field.type.kind != "int" or field.type.count is not None:
        raise UsageError(f"--key {match}: spans match on an integer (an id, a pointer), and "
                         f"{match!r} is {field.type.name}")
    return field


def aggregation_config(
    spec: AggregationSpec | None,
    compiled: CompiledProbe,
    *,
    word: str,
    parts: Sequence[KeyPart] = (),
    role: str = "",
    span: SpanMatch | None = None,
    duration: bool = False,
) -> dict[str, object]:
    """The ``struct rp_aggregation`` members for one probe.

    Args:
        spec: The aggregation; None for a streamed span (END's records get the duration).
        compiled: The probe's fields.
        word: The probe word (for messages).
        parts: The grouping key's layout (:func:`key_layout`).
        role: ``start`` or ``end`` for the two probes of a span, else ``""``.
        span: For a span's probes, how START and END match.
        duration: The probe knows its own duration (a system call's, entry to exit): its
            ``latency`` is that.

    Raises:
        UsageError: The value or a key names a field the probe does not have, or one of a
            type that cannot be used that way.
    """
    at_start = role == "start"
    mine = [_part_config(part, compiled, word) for part in parts if part.at_start == at_start]
    config: dict[str, object] = {
        "by_stack": int(spec is not None and spec.stack and not at_start),
        "keys": mine + [EMPTY_KEY_PART] * (abi.MAX_KEYS - len(mine)),
    }
    if span is not None:
        config["span_id"] = span.span_id
        if span.match != "tid":
            field = match_field(span.match, compiled, word)
            config.update(match_src=field.offset, match_size=field.type.size,
                          match_signed=int(field.type.signed), match_field=field.slots[0])
    if at_start:
        config["action"] = abi.Action.SPAN_START
        return config
    if role == "end":
        config["action"] = abi.Action.SPAN_END
        if spec is None:  # streamed: END's record carries the duration
            latency = _field(compiled, LATENCY)
            assert latency is not None
            config["duration_dest"] = latency.offset
            return config
    else:
        config["action"] = abi.Action.AGGREGATE
    assert spec is not None
    if (spec.kind == "count" and not mine and not spec.stack and role == ""
            and span is None):
        config["action"] = abi.Action.TALLY
        return config
    config.update(_value_config(spec, compiled, word, role, duration))
    return config


def _value_config(spec: AggregationSpec, compiled: CompiledProbe, word: str,
                  role: str, duration: bool) -> dict[str, object]:
    """What the aggregation measures: buckets, and the value summed and compared."""
    config: dict[str, object] = {"accumulate": int(spec.kind in VALUE_KINDS)}
    hist = spec.hist
    if hist is not None:
        config["hist"] = abi.HistKind.LOG2
        if hist.linear is not None:
            low, high, step = hist.linear
            config.update(hist=abi.HistKind.LINEAR, lin_min=low, lin_step=step,
                          lin_buckets=(high - low + step - 1) // step)
    name = spec.value_field
    option = f"--{spec.kind}"
    if name is None:
        return config
    if name == LATENCY:
        assert role == "end" or duration, "latency is measured at a span's END"
        config.update(value=abi.ValueKind.SPAN, value_signed=1)
        return config
    value = _field(compiled, name)
    if value is None:
        names = ", ".join(_names(compiled)) or "none"
        where = " (a span's value is read at END)" if role == "end" else ""
        raise UsageError(
            f"{option} {name}: {word!r} has no field {name!r}{where} (fields: {names}); "
            f"add one, e.g. {name}=%di:u64"
        )
    if value.type.kind not in ("int", "char") or value.type.count is not None:
        what = "a histogram" if spec.kind == "hist" else f"{option}"
        raise UsageError(
            f"{option} {name}: {what} needs an integer field, and {name!r} is "
            f"{value.type.name}; use --count --by {name} to count its values"
        )
    config.update(value=abi.ValueKind.FIELD, value_src=value.offset, value_size=value.type.size,
                  value_signed=int(value.type.signed), value_field=value.slots[0])
    return config


def value_signed(spec: AggregationSpec | None, compiled: CompiledProbe) -> bool:
    """Whether the aggregated value compares (and sums) as a signed integer."""
    name = None if spec is None else spec.value_field
    field = None if name in (None, LATENCY) else _field(compiled, str(name))
    return field is None or bool(field.type.signed)


def key_decoder(parts: Sequence[KeyPart]) -> Callable[[bytes], Any] | None:
    """A function turning the data of an ``rp_agg_key`` back into the key: one value for one
    part, a tuple for several; None when not grouped."""
    if not parts:
        return None
    decoders = [_part_decoder(part) for part in parts]
    if len(decoders) == 1:
        return decoders[0]
    return lambda data: tuple(decode(data) for decode in decoders)


def _part_decoder(part: KeyPart) -> Callable[[bytes], Any]:
    start, end = part.dest, part.dest + part.size
    arg_type = part.type
    if arg_type is None and part.name != "comm":
        return lambda data: int.from_bytes(data[start:end], "little")
    if arg_type is None or arg_type.kind == "string" or (
            arg_type.kind == "char" and arg_type.count):
        return lambda data: data[start:end].split(b"\0", 1)[0].decode(
            "utf-8", "backslashreplace")
    if arg_type.kind == "char":
        return lambda data: chr(data[start])
    signed = arg_type.signed
    if arg_type.kind == "bitfield":
        shift, mask = arg_type.bit_offset, (1 << arg_type.bit_width) - 1
        return lambda data: int.from_bytes(data[start:end], "little") >> shift & mask
    if arg_type.hex:
        return lambda data: f"{int.from_bytes(data[start:end], 'little'):#x}"
    return lambda data: int.from_bytes(data[start:end], "little", signed=signed)


def fill_key(parts: Sequence[KeyPart], values: dict[str, Any], data: bytearray,
             at_start: bool) -> None:
    """Write the parts read at START (``at_start``) or at the aggregating probe into ``data``
    as the BPF side copies them (the tracefs backend aggregates in user space).

    Args:
        parts: The key's layout.
        values: The event's values by name: its fields, and ``comm``, ``pid``, ``tid``,
            ``cpu`` (fields win).
        data: The key's data (``abi.KEY_DATA_LEN`` bytes).
        at_start: Which parts to write.
    """
    for part in parts:
        if part.at_start != at_start:
            continue
        value = values.get(part.name)
        arg_type = part.type
        if part.kind == abi.KeyKind.STRING or (arg_type is None and part.name == "comm"):
            raw = (value or "").encode("utf-8", "surrogateescape")[: part.size - (
                part.kind == abi.KeyKind.STRING)]
        elif arg_type is not None and arg_type.kind == "char":
            chars = value if isinstance(value, tuple) else (value or "\0",)
            raw = "".join(c or "\0" for c in chars).encode("latin-1", "replace")
        elif arg_type is not None and arg_type.kind == "bitfield":
            raw = (int(value or 0) << arg_type.bit_offset).to_bytes(part.size, "little")
        else:
            signed = arg_type is not None and arg_type.signed
            raw = int(value or 0).to_bytes(part.size, "little", signed=signed)
        raw = raw[: part.size].ljust(part.size, b"\0")
        data[part.dest : part.dest + part.size] = raw

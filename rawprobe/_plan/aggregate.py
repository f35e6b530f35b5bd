"""Aggregation in the kernel: what a probe's BPF configuration says to aggregate, and how
keys come back.

With an aggregation, a probe's BPF program updates a map instead of writing a record: no
per-event record reaches user space. Counts without a key are the per-probe hit counters
themselves; counts by a key, histogram buckets, and latencies (entry time kept per thread,
the delta bucketed at return) live in the ``aggregates`` map, keyed by
``struct rp_agg_key`` (clang/rawprobe.h).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .._errors import UsageError
from .._probe.aggregations import AggregationSpec
from . import abi
from .compile import CompiledProbe
from .events import CompiledField

__all__ = ["aggregation_config", "key_decoder"]

# Grouping keys taken from the record header: (offset, size).
_HEADER_KEYS = {"pid": (8, 4), "tid": (12, 4), "cpu": (20, 4)}
_COMM = (32, abi.COMM_LEN)


def aggregation_config(
    spec: AggregationSpec,
    compiled: CompiledProbe,
    *,
    word: str,
    role: str = "",
) -> dict[str, object]:
    """The ``struct rp_aggregation`` members for one probe.

    Args:
        spec: The aggregation.
        compiled: The probe's fields.
        word: The probe word (for messages).
        role: For latency: ``entry`` (records the time) or ``return`` (measures; planned
            right after its entry probe, whose event id is one less).

    Raises:
        UsageError: ``--by`` or ``--hist`` names a field the probe does not have, or one of a
            type that cannot be used that way.
    """
    config: dict[str, object] = {"by_stack": int(spec.stack)}
    if role == "entry":
        config.update(action=abi.Action.TIMESTAMP)
        return config
    config.update(_key(spec.by, compiled, word))
    if spec.kind == "count":
        if config["key_kind"] == abi.KeyKind.NONE and not spec.stack:
            config["action"] = abi.Action.TALLY
        else:
            config["action"] = abi.Action.COUNT
        return config
    hist = spec.hist
    assert hist is not None
    if hist.linear is not None:
        low, high, step = hist.linear
        config.update(hist=abi.HistKind.LINEAR, lin_min=low, lin_step=step,
                      lin_buckets=(high - low + step - 1) // step)
    if hist.is_latency:
        config.update(action=abi.Action.LATENCY)
        return config
    value = next((f for f in compiled.fields if f.name == hist.field and f.offset >= 0), None)
    if value is None:
        names = ", ".join(f.name for f in compiled.fields) or "none"
        raise UsageError(
            f"--hist {hist.field}: {word!r} has no field {hist.field!r} (fields: {names}); "
            f"add one, e.g. {hist.field}=%di:u64"
        )
    if value.type.kind not in ("int", "char") or value.type.count is not None:
        raise UsageError(
            f"--hist {hist.field}: a histogram needs an integer field, and {hist.field!r} is "
            f"{value.type.name}; use --count --by {hist.field} to count its values"
        )
    config.update(action=abi.Action.HIST, value_src=value.offset, value_size=value.type.size,
                  value_signed=int(value.type.signed), value_field=value.slots[0])
    return config


def _key(by: str | None, compiled: CompiledProbe, word: str) -> dict[str, object]:
    if by is None:
        return {"key_kind": abi.KeyKind.NONE}
    field = next((f for f in compiled.fields if f.name == by and f.offset >= 0), None)
    if field is not None:
        if field.type.kind == "string" and field.type.count is None:
            return {"key_kind": abi.KeyKind.STRING, "key_src": field.offset, "key_size": 0}
        if field.type.count is not None and field.type.kind != "char":
            raise UsageError(f"--by {by}: {by!r} is an array; group by a scalar field")
        size = field.type.size * (field.type.count or 1)
        return {"key_kind": abi.KeyKind.BYTES, "key_src": field.offset,
                "key_size": min(size, abi.KEY_LEN - 8)}
    if by in _HEADER_KEYS:
        offset, size = _HEADER_KEYS[by]
        return {"key_kind": abi.KeyKind.BYTES, "key_src": offset, "key_size": size}
    if by == "comm":
        return {"key_kind": abi.KeyKind.BYTES, "key_src": _COMM[0], "key_size": _COMM[1]}
    names = [f.name for f in compiled.fields if f.offset >= 0] + ["comm", "pid", "tid", "cpu"]
    raise UsageError(f"--by {by}: {word!r} has no such field; choose one of " + ", ".join(names))


def key_decoder(by: str | None, fields: Sequence[CompiledField]) -> Any:
    """A function turning the key bytes of an ``rp_agg_key`` back into a value.

    Args:
        by: What the aggregation groups by (None: not grouped).
        fields: The probe's compiled fields (its record layout's).
    """
    if by is None:
        return None
    field = next((f for f in fields if f.name == by and f.offset >= 0), None)
    if (by == "comm" and field is None) or (field is not None and (
        field.type.kind == "string" or (field.type.kind == "char" and field.type.count)
    )):
        return lambda data: data.split(b"\0", 1)[0].decode("utf-8", "backslashreplace")
    if field is None:
        return lambda data: int.from_bytes(data[:4], "little")
    size, signed = field.type.size, field.type.signed
    if field.type.kind == "char":
        return lambda data: chr(data[0])
    if field.type.hex:
        return lambda data: f"{int.from_bytes(data[:size], 'little'):#x}"
    return lambda data: int.from_bytes(data[:size], "little", signed=signed)

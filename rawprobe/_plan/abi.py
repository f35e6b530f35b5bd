"""The structs rawprobe shares with its BPF programs, declared once more with construct.

clang/rawprobe.h is the source of truth; tests/test_bpfabi.py checks every struct here against
the BTF of the built object (sizes and member offsets). Building configurations is not a hot
path, so construct builds them directly; records are decoded on the hot path by
:class:`struct.Struct` objects compiled from these declarations (:func:`compile_struct`).
"""

from __future__ import annotations

import struct
from typing import Any

import construct as c

__all__ = [
    "AGGREGATION",
    "AGG_KEY",
    "CMP_CODES",
    "COOKIE_TALLY",
    "HEADER",
    "HEADER_STRUCT",
    "KERNEL_FILTER",
    "MAX_DEREF",
    "MAX_FIELDS",
    "MAX_NEST",
    "MAX_PREDICATES",
    "MAX_RECORD",
    "MAX_STR_CONSTS",
    "PROBE",
    "PROBE_AT_ENTRY",
    "PROBE_RETURN",
    "PROBE_STACK",
    "SETTINGS",
    "STATS",
    "STR_CONST_LEN",
    "SYSCALL",
    "SYS_KEY",
    "SYS_TOTALS",
    "Action",
    "BaseKind",
    "HistKind",
    "KeyKind",
    "PredOp",
    "StoreKind",
    "SysFlag",
    "compile_struct",
]

MAX_FIELDS = 32
MAX_DEREF = 8
MAX_PREDICATES = 32
MAX_STR_CONSTS = 8
STR_CONST_LEN = 64
MAX_RECORD = 16384
MAX_NEST = 4
COMM_LEN = 16

PROBE_RETURN = 1 << 0
COOKIE_TALLY = 1 << 31  # in a cookie's configuration half: the probe only counts hits
PROBE_STACK = 1 << 1
PROBE_AT_ENTRY = 1 << 2
KEY_LEN = 64
STACK_DEPTH = 127

# Kernel-side probes (clang/kernel.bpf.c).
SYS_MAX = 1024  # system call numbers the `syscalls` array covers
SYS_REG_RET = 6  # rp_scratch.regs index of a system call's return value
SYS_REG_DURATION = 7  # ... of its duration (ns)
SYS_REG_NR = 8  # ... of its number
ARGV_MAX = 32  # strings an RP_STORE_STRING_ARRAY field keeps at most
EXEC_STASH = 8192  # bytes of an execve record kept from entry to exit


class Action:
    """enum rp_action."""

    STREAM = 0
    COUNT = 1
    HIST = 2
    TIMESTAMP = 3
    LATENCY = 4
    TALLY = 5


class KeyKind:
    """enum rp_key."""

    NONE = 0
    BYTES = 1
    STRING = 2


class HistKind:
    """enum rp_hist."""

    LOG2 = 0
    LINEAR = 1


class BaseKind:
    """enum rp_base."""

    REG = 0
    IMM = 1
    COMM = 2
    RECORD = 3


class StoreKind:
    """enum rp_store."""

    INT = 0
    STRING = 1
    DATA_LOC = 2
    BUFFER = 3
    STRING_ARRAY = 4


class SysFlag:
    """struct rp_syscall.flags (RP_SYS_*)."""

    TRACED = 1 << 0
    SUMMARY = 1 << 1
    RECORD = 1 << 2
    NO_RETURN = 1 << 3
    EXEC = 1 << 4
    TALLY = 1 << 5
    BY_PID = 1 << 6


class PredOp:
    """enum rp_pred_op."""

    CMP = 0
    STR_EQ = 1
    STR_PREFIX = 2
    AND = 3
    OR = 4
    NOT = 5


# enum rp_cmp, by the operator a filter spells.
CMP_CODES = {"==": 0, "!=": 1, "<": 2, "<=": 3, ">": 4, ">=": 5, "&": 6}

FIELD = c.Struct(
    "base" / c.Int8ul,
    "store" / c.Int8ul,
    "nderef" / c.Int8ul,
    "size" / c.Int8ul,
    "count" / c.Int16ul,
    "dest" / c.Int16ul,
    "reg" / c.Int32ul,
    "max_len" / c.Int32ul,
    "imm" / c.Int64sl,
    "deref" / c.Array(MAX_DEREF, c.Int64sl),
)

PREDICATE = c.Struct(
    "op" / c.Int8ul,
    "cmp" / c.Int8ul,
    "size" / c.Int8ul,
    "is_signed" / c.Int8ul,
    "src" / c.Int16ul,
    "str_index" / c.Int16ul,
    "field" / c.Int32ul,
    "str_len" / c.Int32ul,
    "value" / c.Int64sl,
)

AGGREGATION = c.Struct(
    "action" / c.Int32ul,
    "key_kind" / c.Int32ul,
    "key_src" / c.Int16ul,
    "key_size" / c.Int16ul,
    "value_src" / c.Int16ul,
    "value_size" / c.Int8ul,
    "value_signed" / c.Int8ul,
    "value_field" / c.Int32ul,
    "hist" / c.Int32ul,
    "by_stack" / c.Int32ul,
    "reserved" / c.Int32ul,
    "lin_min" / c.Int64sl,
    "lin_step" / c.Int64sl,
    "lin_buckets" / c.Int64sl,
)

PROBE = c.Struct(
    "flags" / c.Int32ul,
    "nfields" / c.Int32ul,
    "npredicates" / c.Int32ul,
    "fixed_size" / c.Int32ul,
    "stack_dest" / c.Int32ul,
    "reserved" / c.Int32ul,
    "agg" / AGGREGATION,
    "fields" / c.Array(MAX_FIELDS, FIELD),
    "predicates" / c.Array(MAX_PREDICATES, PREDICATE),
    "strings" / c.Array(MAX_STR_CONSTS, c.Bytes(STR_CONST_LEN)),
)

HEADER = c.Struct(
    "ts_ns" / c.Int64ul,
    "pid" / c.Int32ul,
    "tid" / c.Int32ul,
    "event_id" / c.Int32ul,
    "cpu" / c.Int32ul,
    "faults" / c.Int32ul,
    "truncated" / c.Int32ul,
    "comm" / c.Bytes(COMM_LEN),
)

SETTINGS = c.Struct(
    "follow" / c.Int32ul,
    "self_tgid" / c.Int32ul,
)

AGG_KEY = c.Struct(
    "event_id" / c.Int32ul,
    "stack_id" / c.Int32sl,
    "bucket" / c.Int64sl,
    "data" / c.Bytes(KEY_LEN),
)

STATS = c.Struct(
    "hits" / c.Int64ul,
    "filtered" / c.Int64ul,
    "lost" / c.Int64ul,
)


SYSCALL = c.Struct(
    "flags" / c.Int32ul,
    "event_id" / c.Int32ul,
    "config_id" / c.Int32ul,
    "reserved" / c.Int32ul,
)

SYS_TOTALS = c.Struct(
    "calls" / c.Int64ul,
    "errors" / c.Int64ul,
    "total_ns" / c.Int64ul,
)

SYS_KEY = c.Struct(
    "nr" / c.Int32ul,
    "pid" / c.Int32ul,
)

KERNEL_FILTER = c.Struct(
    "pids" / c.Int32ul,
    "reserved" / c.Int32ul,
)


def compile_struct(layout: c.Struct) -> struct.Struct:
    """Compile a flat construct Struct into an equivalent little-endian :class:`struct.Struct`.

    Members may be integer FormatFields, fixed-length Bytes, Padding, or Arrays of integers
    (which unpack to one value per element). ``unpack_from`` then yields the members' values in
    declaration order, with no per-record work in construct's interpreter.

    Raises:
        TypeError: A member construct cannot express as a fixed struct format.
    """
    return struct.Struct("<" + "".join(_format_of(sub) for sub in layout.subcons))


def _format_of(sub: Any) -> str:
    while isinstance(sub, c.Renamed):
        sub = sub.subcon
    if isinstance(sub, c.FormatField):
        return str(sub.fmtstr).lstrip("<>=!")
    if isinstance(sub, c.Bytes) and isinstance(sub.length, int):
        return f"{sub.length}s"
    if isinstance(sub, c.Padded) and isinstance(sub.subcon, type(c.Pass)):
        return f"{sub.length}x"
    if isinstance(sub, c.Array) and isinstance(sub.count, int):
        inner = _format_of(sub.subcon)
        if inner and inner[-1] not in "sx":
            return f"{sub.count}{inner}"
    raise TypeError(f"{sub!r} has no fixed struct format")


HEADER_STRUCT = compile_struct(HEADER)

"""The structs rawprobe shares with its BPF programs, declared once more with construct.

clang/rawprobe.h is the source of truth; tests/test_bpfabi.py checks every struct here against
the BTF of the built object (sizes and member offsets). Building configurations is not a hot
path, so construct builds them directly; records are decoded on the hot path by
:class:`struct.Struct` objects compiled from these declarations (:func:`compile_struct`).

The construct declarations are made on first use (importing construct costs 15 ms, and a run
whose plan came from the cache never builds a configuration). The two formats the start-up path
needs, the record header's and the settings', are written out as struct formats here; the
tests hold them to the declarations.
"""

from __future__ import annotations

import struct
from enum import IntEnum

TYPE_CHECKING = False  # mypy treats this name as True; at run time it spares importing typing.
if TYPE_CHECKING:
    from typing import Any

    import construct as c

    FIELD: c.Struct
    PREDICATE: c.Struct
    KEY_PART: c.Struct
    AGGREGATION: c.Struct
    PROBE: c.Struct
    HEADER: c.Struct
    SETTINGS: c.Struct
    AGG_KEY: c.Struct
    AGG_VALUE: c.Struct
    SPAN_KEY: c.Struct
    SPAN_START: c.Struct
    STATS: c.Struct
    SYSCALL: c.Struct
    SYS_TOTALS: c.Struct
    SYS_KEY: c.Struct
    KERNEL_FILTER: c.Struct

__all__ = [
    "AGGREGATION",
    "AGG_KEY",
    "AGG_VALUE",
    "CMP_CODES",
    "COOKIE_TALLY",
    "FUNC_IP_WORD",
    "HEADER",
    "HEADER_FORMAT",
    "HEADER_SIZE",
    "HEADER_STRUCT",
    "KERNEL_FILTER",
    "KEY_DATA_LEN",
    "KEY_PART",
    "MAX_DEREF",
    "MAX_FIELDS",
    "MAX_KEYS",
    "MAX_NEST",
    "MAX_PREDICATES",
    "MAX_RECORD",
    "MAX_STR_CONSTS",
    "PROBE",
    "PROBE_AT_ENTRY",
    "PROBE_RETURN",
    "PROBE_STACK",
    "SETTINGS",
    "SETTINGS_FORMAT",
    "SPAN_KEY",
    "SPAN_PAIRED",
    "SPAN_START",
    "STATS",
    "STR_CONST_LEN",
    "SYSCALL",
    "SYS_KEY",
    "SYS_TOTALS",
    "Action",
    "BaseKind",
    "Cmp",
    "HistKind",
    "KeyKind",
    "PredOp",
    "StoreKind",
    "SysFlag",
    "ValueKind",
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
FUNC_IP_WORD = 31  # in return programs, the probed function's address (bpf_get_func_ip)

PROBE_RETURN = 1 << 0
COOKIE_TALLY = 1 << 31  # in a cookie's configuration half: the probe only counts hits
PROBE_STACK = 1 << 1
PROBE_AT_ENTRY = 1 << 2
KEY_LEN = 64
KEY_DATA_LEN = KEY_LEN - 8  # what key parts may use: the rest may hold a caller
MAX_KEYS = 4
STACK_DEPTH = 127
SPAN_PAIRED = 0xFFFFFFFF  # a latency pair: its START is its END's event id - 1

# Kernel-side probes (clang/kernel.bpf.c).
SYS_MAX = 1024  # system call numbers the `syscalls` array covers
SYS_REG_RET = 6  # rp_scratch.regs index of a system call's return value
SYS_REG_DURATION = 7  # ... of its duration (ns)
SYS_REG_NR = 8  # ... of its number
ARGV_MAX = 32  # strings an RP_STORE_STRING_ARRAY field keeps at most
EXEC_STASH = 8192  # bytes of an execve record kept from entry to exit


class Action(IntEnum):
    """enum rp_action."""

    STREAM = 0
    AGGREGATE = 1
    SPAN_START = 2
    SPAN_END = 3
    TALLY = 4


class ValueKind:
    """enum rp_value."""

    NONE = 0
    FIELD = 1
    SPAN = 2


class KeyKind(IntEnum):
    """enum rp_key."""

    NONE = 0
    BYTES = 1
    STRING = 2


class HistKind(IntEnum):
    """enum rp_hist."""

    NONE = 0
    LOG2 = 1
    LINEAR = 2


class BaseKind(IntEnum):
    """enum rp_base."""

    REG = 0
    IMM = 1
    COMM = 2
    RECORD = 3


class StoreKind(IntEnum):
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


class PredOp(IntEnum):
    """enum rp_pred_op."""

    CMP = 0
    STR_EQ = 1
    STR_PREFIX = 2
    AND = 3
    OR = 4
    NOT = 5


class Cmp(IntEnum):
    """enum rp_cmp."""

    EQ = 0
    NE = 1
    LT = 2
    LE = 3
    GT = 4
    GE = 5
    AND = 6


# enum rp_cmp, by the operator a filter spells.
CMP_CODES = {"==": Cmp.EQ, "!=": Cmp.NE, "<": Cmp.LT, "<=": Cmp.LE, ">": Cmp.GT, ">=": Cmp.GE,
             "&": Cmp.AND}

# struct rp_header and struct rp_settings as struct formats (tests compare them with HEADER and
# SETTINGS): the record header is decoded, and the settings written, at every start.
HEADER_FORMAT = "<QLLLLLL16s"
HEADER_STRUCT = struct.Struct(HEADER_FORMAT)
HEADER_SIZE = HEADER_STRUCT.size
SETTINGS_FORMAT = "<LLLL"  # follow, self_tgid, filters, aggregates

_DECLARED = ("FIELD", "PREDICATE", "KEY_PART", "AGGREGATION", "PROBE", "HEADER", "SETTINGS",
             "AGG_KEY", "AGG_VALUE", "SPAN_KEY", "SPAN_START", "STATS", "SYSCALL", "SYS_TOTALS",
             "SYS_KEY", "KERNEL_FILTER")


def __getattr__(name: str) -> Any:
    if name not in _DECLARED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    _declare()
    return globals()[name]


def _declare() -> None:
    """Make the construct declarations (once)."""
    import construct as c

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

    KEY_PART = c.Struct(
        "kind" / c.Int8ul,
        "dest" / c.Int8ul,
        "size" / c.Int8ul,
        "reserved" / c.Int8ul,
        "src" / c.Int16ul,
        "reserved2" / c.Int16ul,
    )

    AGGREGATION = c.Struct(
        "action" / c.Int32ul,
        "hist" / c.Int32ul,
        "value_src" / c.Int16ul,
        "value_size" / c.Int8ul,
        "value_signed" / c.Int8ul,
        "value_field" / c.Int32ul,
        "value" / c.Int8ul,
        "accumulate" / c.Int8ul,
        "by_stack" / c.Int8ul,
        "match_size" / c.Int8ul,
        "match_src" / c.Int16ul,
        "match_signed" / c.Int8ul,
        "reserved" / c.Int8ul,
        "match_field" / c.Int32ul,
        "span_id" / c.Int32ul,
        "duration_dest" / c.Int16ul,
        "reserved2" / c.Int16ul,
        "reserved3" / c.Int32ul,
        "lin_min" / c.Int64sl,
        "lin_step" / c.Int64sl,
        "lin_buckets" / c.Int64sl,
        "keys" / c.Array(MAX_KEYS, KEY_PART),
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
        "filters" / c.Int32ul,
        "aggregates" / c.Int32ul,
    )

    AGG_KEY = c.Struct(
        "event_id" / c.Int32ul,
        "stack_id" / c.Int32sl,
        "bucket" / c.Int64sl,
        "data" / c.Bytes(KEY_LEN),
    )

    AGG_VALUE = c.Struct(
        "count" / c.Int64ul,
        "sum" / c.Int64sl,
        "min" / c.Int64sl,
        "max" / c.Int64sl,
    )

    SPAN_KEY = c.Struct(
        "span_id" / c.Int32ul,
        "reserved" / c.Int32ul,
        "match" / c.Int64ul,
    )

    SPAN_START = c.Struct(
        "ts_ns" / c.Int64ul,
        "data" / c.Bytes(KEY_DATA_LEN),
    )

    STATS = c.Struct(
        "hits" / c.Int64ul,
        "filtered" / c.Int64ul,
        "lost" / c.Int64ul,
        "unmatched" / c.Int64ul,
        "replaced" / c.Int64ul,
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
    globals().update({name: value for name, value in locals().items() if name in _DECLARED})


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
    import construct as c

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


"""Sizes and signedness of the C types system call prototypes use.

tracefs records every system call argument as an ``unsigned long`` (``size:8; signed:0`` in
``sys_enter_*/format``, kernel/trace/trace_syscalls.c), whatever its declared type. The value is
the raw register: an ``int`` argument of -100 (``AT_FDCWD``) arrives as 0xffffff9c when the
caller zero-extended it, or as 0xffffffffffffff9c when it sign-extended it. To show it as the
program meant it, the value is cut to the declared type's size and sign-extended if that type
is signed; this table says what each declared type is, on the 64-bit machines rawprobe
supports (LP64: ``long`` and pointers are 8 bytes).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CType", "c_type", "to_declared"]


@dataclass(frozen=True)
class CType:
    """A C type as far as showing a value of it goes.

    Attributes:
        spelling: The type as tracefs spells it (``const char *``, ``umode_t``).
        size: Its size in bytes.
        signed: Whether it is a signed integer type.
        pointer: Whether it is a pointer.
        known: Whether the table knew it (otherwise it is taken as the register, u64).
    """

    spelling: str
    size: int
    signed: bool
    pointer: bool = False
    known: bool = True


# Scalar types and kernel typedefs, by their spelling after `const`/`volatile` are dropped.
# Typedefs: include/linux/types.h (umode_t, pid_t, off_t, loff_t, clockid_t, key_t, mqd_t,
# timer_t are __kernel_* ones), include/uapi/asm-generic/posix_types.h (__kernel_uid32_t and
# __kernel_gid32_t are unsigned int, __kernel_off_t long, __kernel_timer_t and
# __kernel_clockid_t int, __kernel_mqd_t int), include/linux/key.h (key_serial_t is int32_t),
# include/uapi/linux/aio_abi.h (aio_context_t is __kernel_ulong_t), include/uapi/linux/fs.h
# (__kernel_rwf_t is int), include/linux/types.h (rwf_t), include/linux/quota.h (qid_t is
# __kernel_uid32_t).
_SCALARS: dict[str, tuple[int, bool]] = {
    "char": (1, True),
    "signed char": (1, True),
    "unsigned char": (1, False),
    "short": (2, True),
    "unsigned short": (2, False),
    "int": (4, True),
    "signed int": (4, True),
    "unsigned": (4, False),
    "unsigned int": (4, False),
    "long": (8, True),
    "unsigned long": (8, False),
    "long long": (8, True),
    "unsigned long long": (8, False),
    "u8": (1, False), "__u8": (1, False), "s8": (1, True), "__s8": (1, True),
    "u16": (2, False), "__u16": (2, False), "s16": (2, True), "__s16": (2, True),
    "u32": (4, False), "__u32": (4, False), "s32": (4, True), "__s32": (4, True),
    "u64": (8, False), "__u64": (8, False), "s64": (8, True), "__s64": (8, True),
    "size_t": (8, False),
    "ssize_t": (8, True),
    "off_t": (8, True),
    "loff_t": (8, True),
    "pid_t": (4, True),
    "uid_t": (4, False),
    "gid_t": (4, False),
    "qid_t": (4, False),
    "umode_t": (2, False),
    "key_t": (4, True),
    "key_serial_t": (4, True),
    "clockid_t": (4, True),
    "timer_t": (4, True),
    "mqd_t": (4, True),
    "aio_context_t": (8, False),
    "rwf_t": (4, True),
    "__kernel_old_time_t": (8, True),
}
# Typedefs of pointers (include/uapi/linux/capability.h).
_POINTER_TYPEDEFS = frozenset({"cap_user_header_t", "cap_user_data_t"})
_QUALIFIERS = frozenset({"const", "volatile", "__user"})


def c_type(spelling: str) -> CType:
    """What the C type ``spelling`` (as a tracefs format file writes it) is.

    Enums are ``int``. A type the table does not know is taken as the register it arrives in
    (8 bytes, unsigned) and marked ``known=False``.
    """
    normalized = " ".join(spelling.split())
    base = " ".join(word for word in normalized.split() if word not in _QUALIFIERS)
    if "*" in normalized or base in _POINTER_TYPEDEFS:
        return CType(normalized, 8, False, pointer=True)
    if base.startswith("enum "):
        return CType(normalized, 4, True)
    if base in _SCALARS:
        size, signed = _SCALARS[base]
        return CType(normalized, size, signed)
    return CType(normalized, 8, False, known=False)


def to_declared(value: int, size: int, signed: bool) -> int:
    """``value`` (a register, any width) as a C integer of ``size`` bytes and that signedness.

    >>> to_declared(0xffffff9c, 4, True)
    -100
    """
    bits = size * 8
    value &= (1 << bits) - 1
    if signed and value >= 1 << (bits - 1):
        value -= 1 << bits
    return value

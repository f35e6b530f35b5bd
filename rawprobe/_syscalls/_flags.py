"""Integer arguments as names: flag sets (``O_RDONLY|O_CLOEXEC``) and enumerations (``SEEK_SET``).

Values come from the generated tables; what this module adds is how each set is read: which
bits form a field (the access mode in ``O_ACCMODE``, the exit signal in ``CSIGNAL``), which
name stands for zero (``PROT_NONE``, ``F_OK``), and in what order names are written. The
order is strace's, so that rawprobe's lines read like the strace lines people know and diff
cleanly against them: bits in ascending value, composite flags (``O_SYNC``) matched before their
parts, unknown bits last in hex. Open flags are the one set strace writes in an order of its
own (listed in :data:`OPEN_FLAG_ORDER`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ._constants import NamedConstants, named_constants
from ._decoders import Display

__all__ = [
    "NAMED_DISPLAYS",
    "OPEN_FLAG_ORDER",
    "SOCK_TYPE_MASK",
    "render_bits",
    "render_enum",
    "render_named",
    "render_octal",
    "render_signal",
]

# strace's order for open(2) flags: its xlat/open_mode_flags.in lists them as
# asm-generic/fcntl.h does, except that O_SYNC precedes O_DSYNC and O_TMPFILE precedes
# O_DIRECTORY (each composite before the flag it contains), and FASYNC comes last.
OPEN_FLAG_ORDER = (
    "O_CREAT", "O_EXCL", "O_NOCTTY", "O_TRUNC", "O_APPEND", "O_NONBLOCK", "O_SYNC", "O_DSYNC",
    "O_DIRECT", "O_LARGEFILE", "O_NOFOLLOW", "O_NOATIME", "O_CLOEXEC", "O_PATH", "O_TMPFILE",
    "O_DIRECTORY", "FASYNC",
)
_OPEN_ACCESS_MODES = ("O_RDONLY", "O_WRONLY", "O_RDWR")
# The socket type field of socket(2)'s type argument: SOCK_TYPE_MASK in include/linux/net.h,
# which neither the UAPI headers nor libc export.
SOCK_TYPE_MASK = 0xF


def _lowest_bit(value: int) -> int:
    return value & -value


def render_bits(
    value: int,
    flags: Sequence[tuple[str, int]],
    order: Sequence[str] | None = None,
    zero: str = "0",
) -> str:
    """``value`` as ``NAME|NAME|0x...``.

    Args:
        value: The flags (non-negative).
        flags: (name, value) of the flags that may be set; zero-valued ones are ignored.
        order: Names in the order to write them (default: ascending value, a composite flag
            at its lowest bit).
        zero: What to write when ``value`` is 0.

    Returns:
        Names of the flags set, composite flags first claiming their bits, then any bits no
        name covers in hex.
    """
    if value == 0:
        return zero
    remaining = value
    matched: list[tuple[str, int]] = []
    # Composite flags (O_SYNC = __O_SYNC|O_DSYNC) claim their bits before their parts do.
    candidates = sorted((pair for pair in flags if pair[1] > 0),
                        key=lambda pair: -bin(pair[1]).count("1"))
    for name, bits in candidates:
        if remaining & bits == bits:
            matched.append((name, bits))
            remaining &= ~bits
    if order is not None:
        position = {name: index for index, name in enumerate(order)}
        matched.sort(key=lambda pair: (position.get(pair[0], len(position)), pair[1]))
    else:
        matched.sort(key=lambda pair: _lowest_bit(pair[1]))
    parts = [name for name, _ in matched]
    if remaining:
        parts.append(hex(remaining))
    return "|".join(parts)


def render_enum(value: int, constants: NamedConstants) -> str:
    """``value``'s name in the set, or the value in decimal."""
    return constants.by_value.get(value, str(value))


def render_octal(value: int) -> str:
    """A file mode or umask as strace writes it (C's ``%#03o``): ``0644``, ``022``, ``000``."""
    return ("0" + format(value, "o")).zfill(3)


def render_signal(value: int, machine: str | None = None) -> str:
    """A signal number: ``SIGTERM``, ``SIGRT_2`` (SIGRTMIN + 2, as strace writes them), or the
    number (0, the "does it exist" signal, and anything out of range)."""
    signals = named_constants("signals", machine)
    rtmin = signals.by_name["SIGRTMIN"]
    if 0 < value < rtmin and value in signals.by_value:
        return signals.by_value[value]
    # _NSIG is 64 on every architecture rawprobe supports (asm-generic/signal.h; the x86
    # kernel's arch/x86/include/asm/signal.h).
    if rtmin <= value <= 64:
        return f"SIGRT_{value - rtmin}"
    return str(value)


def _pairs(key: str, machine: str | None, names: Sequence[str] | None = None,
           exclude: Sequence[str] = ()) -> list[tuple[str, int]]:
    pairs = named_constants(key, machine).pairs
    return [(name, value) for name, value in pairs
            if (names is None or name in names) and name not in exclude]


def _open_flag_bits(value: int, machine: str | None) -> str:
    bits = _pairs("open_flags", machine, exclude=("O_ACCMODE", *_OPEN_ACCESS_MODES))
    return render_bits(value, bits, order=OPEN_FLAG_ORDER)


def _open_flags(value: int, machine: str | None) -> str:
    constants = named_constants("open_flags", machine)
    access_mask = constants.by_name["O_ACCMODE"]
    access = value & access_mask
    modes = {constants.by_name[name]: name for name in _OPEN_ACCESS_MODES}
    head = modes.get(access, hex(access))
    rest = value & ~access_mask
    return head if rest == 0 else f"{head}|{_open_flag_bits(rest, machine)}"


def _file_mode(value: int, machine: str | None) -> str:
    types = named_constants("file_types", machine)
    file_type = value & types.by_name["S_IFMT"]
    permissions = render_octal(value & ~types.by_name["S_IFMT"])
    if file_type == 0:
        return permissions
    return f"{types.by_value.get(file_type, oct(file_type))}|{permissions}"


def _mmap_flags(value: int, machine: str | None) -> str:
    constants = named_constants("mmap_flags", machine)
    type_mask = constants.by_name["MAP_TYPE"]
    huge_shift = constants.by_name["MAP_HUGE_SHIFT"]
    huge_mask = constants.by_name["MAP_HUGE_MASK"] << huge_shift
    sharing = ("MAP_SHARED", "MAP_PRIVATE", "MAP_SHARED_VALIDATE")
    types = {constants.by_name[name]: name for name in sharing}
    parts = [types.get(value & type_mask, hex(value & type_mask))]
    bits = [(name, bits) for name, bits in constants.pairs
            if name not in (*sharing, "MAP_TYPE", "MAP_HUGE_SHIFT", "MAP_HUGE_MASK")]
    rest = value & ~type_mask & ~huge_mask
    if rest:
        parts.append(render_bits(rest, bits))
    if value & huge_mask:
        # The huge page size's log2 in bits 26..31 (include/uapi/asm-generic/hugetlb_encode.h);
        # strace writes it as a shift.
        parts.append(f"{(value & huge_mask) >> huge_shift}<<MAP_HUGE_SHIFT")
    return "|".join(parts)


def _clone_flags(value: int, machine: str | None) -> str:
    constants = named_constants("clone_flags", machine)
    signal_mask = constants.by_name["CSIGNAL"]
    # CLONE_NEWTIME sits inside CSIGNAL: clone(2) cannot take it (only clone3 and unshare).
    bits = _pairs("clone_flags", machine, exclude=("CSIGNAL", "CLONE_NEWTIME"))
    parts = []
    if value & ~signal_mask:
        parts.append(render_bits(value & ~signal_mask, bits))
    if value & signal_mask or not parts:
        parts.append(render_signal(value & signal_mask, machine))
    return "|".join(parts)


def _socket_type(value: int, machine: str | None) -> str:
    types = named_constants("socket_types", machine)
    head = types.by_value.get(value & SOCK_TYPE_MASK, hex(value & SOCK_TYPE_MASK))
    rest = value & ~SOCK_TYPE_MASK
    if not rest:
        return head
    flags = [(name, bits) for name, bits in types.pairs if bits > SOCK_TYPE_MASK]
    return f"{head}|{render_bits(rest, flags, order=[name for name, _ in flags])}"


def _header_ordered(key: str, names: Sequence[str] | None = None,
                    zero: str = "0") -> Callable[[int, str | None], str]:
    def render(value: int, machine: str | None) -> str:
        pairs = _pairs(key, machine, names)
        return render_bits(value, pairs, order=[name for name, _ in pairs], zero=zero)
    return render


def _ascending(key: str, names: Sequence[str] | None = None, zero: str = "0",
               exclude: Sequence[str] = ()) -> Callable[[int, str | None], str]:
    def render(value: int, machine: str | None) -> str:
        return render_bits(value, _pairs(key, machine, names, exclude), zero=zero)
    return render


def _enum(key: str) -> Callable[[int, str | None], str]:
    def render(value: int, machine: str | None) -> str:
        return render_enum(value, named_constants(key, machine))
    return render


_RENDERERS: dict[Display, Callable[[int, str | None], str]] = {
    Display.OPEN_FLAGS: _open_flags,
    Display.OPEN_FLAG_BITS: _open_flag_bits,
    Display.FILE_MODE: _file_mode,
    Display.ACCESS_MODE: _header_ordered("access_modes", zero="F_OK"),
    Display.AT_FLAGS: _ascending("at_flags", ("AT_SYMLINK_NOFOLLOW", "AT_SYMLINK_FOLLOW",
                                              "AT_NO_AUTOMOUNT", "AT_EMPTY_PATH",
                                              "AT_RECURSIVE")),
    Display.UNLINKAT_FLAGS: _ascending("at_flags", ("AT_REMOVEDIR",)),
    Display.FACCESSAT_FLAGS: _ascending("at_flags", ("AT_EACCESS", "AT_SYMLINK_NOFOLLOW",
                                                     "AT_EMPTY_PATH")),
    Display.MMAP_PROT: _ascending("mmap_prot", zero="PROT_NONE"),
    Display.MMAP_FLAGS: _mmap_flags,
    Display.MREMAP_FLAGS: _ascending("mremap_flags"),
    Display.MSYNC_FLAGS: _ascending("msync_flags"),
    Display.MLOCKALL_FLAGS: _ascending("mlockall_flags"),
    Display.MADVISE_ADVICE: _enum("madvise_advice"),
    Display.SIGNAL: render_signal,
    Display.SIGPROCMASK_HOW: _enum("sigprocmask_how"),
    Display.CLONE_FLAGS: _clone_flags,
    Display.NAMESPACE_FLAGS: _ascending("clone_flags", exclude=("CSIGNAL",)),
    Display.SEEK_WHENCE: _enum("seek_whence"),
    Display.FCNTL_COMMAND: _enum("fcntl_commands"),
    Display.FD_FLAGS: _ascending("fd_flags"),
    Display.SOCKET_FAMILY: _enum("socket_families"),
    Display.SOCKET_TYPE: _socket_type,
    Display.SOCKET_FLAGS: _header_ordered("socket_types", ("SOCK_CLOEXEC", "SOCK_NONBLOCK")),
    Display.IP_PROTOCOL: _enum("ip_protocols"),
    Display.NETLINK_PROTOCOL: _enum("netlink_protocols"),
    Display.WAIT_OPTIONS: _ascending("wait_options"),
    Display.CLOCK_ID: _enum("clock_ids"),
    Display.EPOLL_CTL_OP: _enum("epoll_ctl_ops"),
    Display.RLIMIT_RESOURCE: _enum("rlimit_resources"),
}

NAMED_DISPLAYS = frozenset(_RENDERERS)
# Sets of distinct values rather than bits: a negative value is written as a number.
_ENUM_DISPLAYS = frozenset({
    Display.MADVISE_ADVICE, Display.SIGNAL, Display.SIGPROCMASK_HOW, Display.SEEK_WHENCE,
    Display.FCNTL_COMMAND, Display.SOCKET_FAMILY, Display.CLOCK_ID, Display.EPOLL_CTL_OP,
    Display.RLIMIT_RESOURCE, Display.IP_PROTOCOL, Display.NETLINK_PROTOCOL,
})


def render_named(display: Display, value: int, machine: str | None = None) -> str:
    """``value`` written with the names of ``display``'s set.

    Args:
        display: One of the named displays (:data:`NAMED_DISPLAYS`).
        value: The argument, already cut to its declared C type.
        machine: The architecture whose values apply (default: this machine's).

    Raises:
        KeyError: ``display`` is not a named one.
    """
    if value < 0:
        if display in _ENUM_DISPLAYS:
            return str(value)
        # A flag word cut to a signed int with its top bit set: show its bits.
        value &= (1 << 64) - 1 if value < -(1 << 31) else (1 << 32) - 1
    return _RENDERERS[display](value, machine)

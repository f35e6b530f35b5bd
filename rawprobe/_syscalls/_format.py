"""One system call as strace writes it, and as a JSON-ready dict.

    openat(AT_FDCWD, "/etc/hostname", O_RDONLY|O_CLOEXEC) = 3 <0.000012>
    openat(AT_FDCWD, "/nonexistent", O_RDONLY) = -1 ENOENT (No such file or directory)

These are pure functions of what the BPF side captured: the argument registers, the strings and
buffers it read (:class:`UserBytes`, or None where the read faulted), the return value and the
time between entry and exit. Each argument is written as :mod:`._decoders` classifies it; the
conventions are strace's (its defaults: ``-s 32``, no ``-y``, ``-T`` for the duration):

- strings in double quotes with C escapes for ``\\t \\n \\v \\f \\r " \\\\``, other
  bytes outside printable ASCII in octal, three digits only when an octal digit follows
  (``"\\1\\177"``, ``"\\0017"``); ``...`` after the closing quote when the string was cut;
- buffers (read, write) cut at the string limit; paths whole, as captured;
- NULL for a null pointer, hex for other addresses, ``?`` for the return of ``exit_group``;
- a failed call as ``-1 ENAME (strerror text)``; a call the kernel will restart after a
  signal handler as ``? ERESTARTSYS (To be restarted if SA_RESTART is set)``;
- ``open``'s mode only with ``O_CREAT`` or ``O_TMPFILE``; ``fcntl``'s third argument only for
  commands that take one; ``socket``'s protocol named for IP and netlink families;
  ``clone``'s arguments named (``child_stack=``, ``flags=``).

Where rawprobe does not decode what strace does (structures such as ``struct stat``, an
execve environment's size), it writes the address.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeAlias

from ._catalog import SyscallArg, SyscallSignature
from ._constants import KERNEL_INTERNAL_ERRNOS, errno_description, errno_name, named_constants
from ._ctypes import to_declared
from ._decoders import NO_RETURN, ArgDecoder, Display
from ._flags import NAMED_DISPLAYS, render_named, render_octal

__all__ = [
    "CLONE_ARGS_MEMBERS",
    "DEFAULT_STRING_LIMIT",
    "MAX_ERRNO",
    "ArgValue",
    "UserBytes",
    "clone_args",
    "format_duration",
    "format_return",
    "format_syscall",
    "quote_bytes",
    "split_return",
    "syscall_record",
]

# strace's default -s: buffers show at most this many bytes.
DEFAULT_STRING_LIMIT = 32
# A return value in [-MAX_ERRNO, -1] is an error number (include/linux/err.h, IS_ERR_VALUE).
MAX_ERRNO = 4095


@dataclass(frozen=True)
class UserBytes:
    """Bytes the BPF side read from the traced process.

    Attributes:
        data: The bytes (a string without its terminating NUL).
        truncated: The read stopped before the end (the string or buffer is longer).
    """

    data: bytes
    truncated: bool = False


# One argument's captured value: the register (int), what it points to (UserBytes, bytes or
# str; a sequence of them for execve's argv), or None when reading it faulted.
Captured: TypeAlias = "UserBytes | bytes | str"
ArgValue: TypeAlias = "int | Captured | Sequence[Captured | None] | None"

_NAMED_ESCAPES = {
    ord("\t"): "\\t", ord("\n"): "\\n", ord("\v"): "\\v", ord("\f"): "\\f", ord("\r"): "\\r",
    ord('"'): '\\"', ord("\\"): "\\\\",
}


def quote_bytes(data: bytes, limit: int | None = None, truncated: bool = False) -> str:
    """``data`` as a double-quoted C string, escaped as strace escapes it.

    Args:
        data: The bytes.
        limit: Show at most this many bytes (None: all).
        truncated: There were more bytes than ``data`` holds.

    Returns:
        ``"..."``, followed by ``...`` when bytes were left out.

    >>> quote_bytes(b"hi\\n\\x01" + b"7")
    '"hi\\\\n\\\\0017"'
    """
    shown = data if limit is None else data[:limit]
    out = ['"']
    for index, byte in enumerate(shown):
        if byte in _NAMED_ESCAPES:
            out.append(_NAMED_ESCAPES[byte])
        elif 0x20 <= byte <= 0x7E:
            out.append(chr(byte))
        else:
            next_is_octal_digit = index + 1 < len(shown) and 0x30 <= shown[index + 1] <= 0x37
            digits = format(byte, "o")
            out.append("\\" + (digits.zfill(3) if next_is_octal_digit else digits))
    out.append('"')
    if truncated or len(shown) < len(data):
        out.append("...")
    return "".join(out)


def _as_user_bytes(value: UserBytes | bytes | str) -> UserBytes:
    if isinstance(value, UserBytes):
        return value
    if isinstance(value, str):
        return UserBytes(value.encode("utf-8", "surrogateescape"))
    return UserBytes(bytes(value))


def _hex(value: int) -> str:
    return "0" if value == 0 else hex(value)


def _pointer(value: int) -> str:
    return "NULL" if value == 0 else hex(value)


def _declared(arg: SyscallArg, value: int) -> int:
    return to_declared(value, arg.c_type.size, arg.c_type.signed)


def _render_int(arg: SyscallArg | None, value: int, machine: str | None) -> str:
    if arg is None:
        return _hex(value & ((1 << 64) - 1))
    display = arg.display
    if display in (Display.FD, Display.DIRFD):
        # A descriptor is an int in every C library prototype, whatever the kernel's type.
        fd = to_declared(value, 4, True)
        if display is Display.DIRFD and fd == named_constants("at_flags", machine).by_name[
                "AT_FDCWD"]:
            return "AT_FDCWD"
        return str(fd)
    if display in (Display.POINTER, Display.STRING, Display.BUFFER, Display.STRING_ARRAY,
                   Display.CLONE_ARGS):
        return _pointer(to_declared(value, 8, False))
    if display is Display.HEX:
        return _hex(_declared(arg, value) & ((1 << 64) - 1))
    if display is Display.OCTAL:
        return render_octal(to_declared(value, arg.c_type.size, False))
    if display in NAMED_DISPLAYS:
        return render_named(display, _declared(arg, value), machine)
    return str(_declared(arg, value))


# include/uapi/linux/sched.h: struct clone_args, 64-bit members in this order (CLONE_ARGS_SIZE_VER0
# is 64 bytes: the first 8; VER1 adds set_tid and set_tid_size, VER2 cgroup).
CLONE_ARGS_MEMBERS = ("flags", "pidfd", "child_tid", "parent_tid", "exit_signal", "stack",
                      "stack_size", "tls", "set_tid", "set_tid_size", "cgroup")


def clone_args(data: bytes) -> dict[str, int]:
    """clone3's struct clone_args, member by member, from as many bytes as were read."""
    count = min(len(data) // 8, len(CLONE_ARGS_MEMBERS))
    return {name: int.from_bytes(data[8 * index : 8 * index + 8], "little")
            for index, name in enumerate(CLONE_ARGS_MEMBERS[:count])}


def _clone_args_text(data: bytes, machine: str | None) -> str:
    """struct clone_args as strace writes it: flags, exit_signal, stack and stack_size always,
    the others when their flag (or value) says the kernel uses them."""
    members = clone_args(data)
    if "stack_size" not in members:
        return quote_bytes(data)
    clone = named_constants("clone_flags", machine).by_name
    flags = members["flags"]
    wanted = {"pidfd": bool(flags & clone["CLONE_PIDFD"]),
              "child_tid": bool(flags & (clone["CLONE_CHILD_SETTID"]
                                         | clone["CLONE_CHILD_CLEARTID"])),
              "parent_tid": bool(flags & clone["CLONE_PARENT_SETTID"]),
              "tls": bool(flags & clone["CLONE_SETTLS"]),
              "set_tid": bool(members.get("set_tid_size")),
              "set_tid_size": bool(members.get("set_tid_size")),
              "cgroup": bool(flags & clone["CLONE_INTO_CGROUP"])}
    parts = []
    for name, value in members.items():
        if name in ("flags",):
            text = render_named(Display.NAMESPACE_FLAGS, value, machine) if value else "0"
        elif name == "exit_signal":
            text = render_named(Display.SIGNAL, value, machine)
        elif name in ("stack", "child_tid", "parent_tid", "tls", "set_tid"):
            text = _pointer(value)
        elif name == "stack_size":
            text = _hex(value)
        else:
            text = str(value)
        if name in ("flags", "exit_signal", "stack", "stack_size") or wanted.get(name):
            parts.append(f"{name}={text}")
    return "{" + ", ".join(parts) + "}"


def _render_value(arg: SyscallArg | None, value: ArgValue, machine: str | None,
                  string_limit: int | None) -> str:
    if value is None:
        return "(fault)"
    if isinstance(value, int):
        return _render_int(arg, value, machine)
    if arg is not None and arg.display is Display.CLONE_ARGS and isinstance(
            value, (UserBytes, bytes)):
        return _clone_args_text(_as_user_bytes(value).data, machine)
    if isinstance(value, (UserBytes, bytes, str)):
        captured = _as_user_bytes(value)
        limit = string_limit if arg is not None and arg.display is Display.BUFFER else None
        return quote_bytes(captured.data, limit, captured.truncated)
    items = [_render_value(None, item, machine, None) if item is None
             else quote_bytes(_as_user_bytes(item).data, None, _as_user_bytes(item).truncated)
             for item in value]
    return "[" + ", ".join(items) + "]"


def _int_or_none(value: ArgValue) -> int | None:
    return value if isinstance(value, int) else None


def _values_by_name(signature: SyscallSignature,
                    args: Sequence[ArgValue] | Mapping[str, ArgValue]) -> dict[str, ArgValue]:
    names = [arg.name for arg in signature.args or ()]
    if isinstance(args, Mapping):
        return dict(args)
    if signature.args is None:
        return {f"arg{index}": value for index, value in enumerate(args)}
    # Registers past the system call's arguments (the BPF side reads all six) are ignored.
    return dict(zip(names, args, strict=False))


def _fcntl_argument(command: int | None, machine: str | None) -> Display | None:
    """How fcntl(2)'s third argument is shown for ``command`` (None: it takes none)."""
    names = named_constants("fcntl_commands", machine).by_value
    name = names.get(command) if command is not None else None
    if name in ("F_GETFD", "F_GETFL", "F_GETOWN", "F_GETSIG", "F_GETLEASE", "F_GETPIPE_SZ",
                "F_GET_SEALS"):
        return None
    if name == "F_SETFD":
        return Display.FD_FLAGS
    if name == "F_SETFL":
        return Display.OPEN_FLAGS
    if name == "F_SETSIG":
        return Display.SIGNAL
    if name in ("F_GETLK", "F_SETLK", "F_SETLKW", "F_OFD_GETLK", "F_OFD_SETLK", "F_OFD_SETLKW",
                "F_GETOWN_EX", "F_SETOWN_EX", "F_GET_RW_HINT", "F_SET_RW_HINT",
                "F_GET_FILE_RW_HINT", "F_SET_FILE_RW_HINT"):
        return Display.POINTER
    return Display.INT


def _socket_protocol(family: int | None, machine: str | None) -> Display | None:
    """How socket(2)'s protocol is shown for address ``family`` (None: as a number)."""
    name = named_constants("socket_families", machine).by_value.get(
        to_declared(family, 4, True)) if family is not None else None
    if name in ("AF_INET", "AF_INET6"):
        return Display.IP_PROTOCOL
    if name == "AF_NETLINK":
        return Display.NETLINK_PROTOCOL
    return None


def _argument_texts(signature: SyscallSignature, values: dict[str, ArgValue],
                    machine: str | None, string_limit: int | None) -> list[str]:
    if signature.args is None:
        return [_render_value(None, value, machine, string_limit) for value in values.values()]

    def text(arg: SyscallArg) -> str:
        if arg.name not in values:
            return "?"
        return _render_value(arg, values[arg.name], machine, string_limit)

    by_name = {arg.name: arg for arg in signature.args}
    shown = list(signature.args)
    if signature.name in ("open", "openat") and "flags" in values and "mode" in by_name:
        open_flags = named_constants("open_flags", machine).by_name
        flags = _int_or_none(values["flags"]) or 0
        tmpfile = open_flags["O_TMPFILE"]
        if not (flags & open_flags["O_CREAT"] or flags & tmpfile == tmpfile):
            shown.remove(by_name["mode"])
    elif signature.name == "fcntl" and "arg" in by_name:
        third = _fcntl_argument(_int_or_none(values.get("cmd")), machine)
        index = shown.index(by_name["arg"])
        if third is None:
            del shown[index]
        else:
            shown[index] = replace(by_name["arg"], decoder=ArgDecoder(third))
    elif signature.name in ("socket", "socketpair") and "protocol" in by_name:
        protocol = _socket_protocol(_int_or_none(values.get("family")), machine)
        if protocol is not None:
            index = shown.index(by_name["protocol"])
            shown[index] = replace(by_name["protocol"], decoder=ArgDecoder(protocol))
    elif signature.name == "clone" and "clone_flags" in by_name:
        return _clone_texts(signature, values, machine)
    return [text(arg) for arg in shown]


def _clone_texts(signature: SyscallSignature, values: dict[str, ArgValue],
                 machine: str | None) -> list[str]:
    """clone(2)'s arguments named, each only when its flag makes the kernel use it (as strace
    writes them; kernel/fork.c, copy_process())."""
    by_name = {arg.name: arg for arg in signature.args or ()}
    clone = named_constants("clone_flags", machine).by_name
    flags = _int_or_none(values.get("clone_flags")) or 0

    def value_text(name: str) -> str:
        return _render_value(by_name[name], values.get(name), machine, None)

    texts = [f"child_stack={value_text('newsp')}", f"flags={value_text('clone_flags')}"]
    if flags & clone["CLONE_PARENT_SETTID"] and "parent_tidptr" in by_name:
        texts.append(f"parent_tid={value_text('parent_tidptr')}")
    if flags & clone["CLONE_SETTLS"] and "tls" in by_name:
        texts.append(f"tls={value_text('tls')}")
    if flags & (clone["CLONE_CHILD_SETTID"] | clone["CLONE_CHILD_CLEARTID"]) and (
            "child_tidptr" in by_name):
        texts.append(f"child_tidptr={value_text('child_tidptr')}")
    return texts


def split_return(ret: int | None) -> tuple[int | None, int | None]:
    """(value, errno) of a raw return value: errno set when ``ret`` is -1..-4095."""
    if ret is None:
        return None, None
    signed = to_declared(ret, 8, True)
    if -MAX_ERRNO <= signed <= -1:
        return None, -signed
    return signed, None


def format_return(signature: SyscallSignature | str, ret: int | None) -> str:
    """The part after ``= ``: ``3``, ``0x7f...``, ``-1 ENOENT (No such file or directory)``,
    ``?``."""
    name = signature if isinstance(signature, str) else signature.name
    display = Display.NONE if name in NO_RETURN else (
        signature.returns if isinstance(signature, SyscallSignature) else Display.INT)
    if ret is None or display is Display.NONE:
        return "?"
    value, errnum = split_return(ret)
    if errnum is not None:
        errno_text = errno_name(errnum) or f"ERRNO_{errnum}"
        prefix = "?" if errnum in KERNEL_INTERNAL_ERRNOS else "-1"
        return f"{prefix} {errno_text} ({errno_description(errnum)})"
    assert value is not None
    if display is Display.POINTER:
        return _hex(value & ((1 << 64) - 1))
    if display is Display.OCTAL:
        return render_octal(value)
    return str(value)


def format_duration(duration_ns: int) -> str:
    """``<seconds.microseconds>``, as strace -T writes it."""
    microseconds = max(duration_ns, 0) // 1000
    return f"<{microseconds // 1_000_000}.{microseconds % 1_000_000:06d}>"


def format_syscall(
    signature: SyscallSignature,
    args: Sequence[ArgValue] | Mapping[str, ArgValue],
    ret: int | None,
    duration_ns: int | None = None,
    *,
    machine: str | None = None,
    string_limit: int | None = DEFAULT_STRING_LIMIT,
) -> str:
    """One system call as strace writes it.

    Args:
        signature: The system call (from :class:`~._catalog.SyscallCatalog`).
        args: Its argument values in order, or by argument name: ints (registers), captured
            bytes (:class:`UserBytes`, ``bytes``, ``str``), a list of them for execve's argv,
            None where reading faulted.
        ret: The raw return value (``-2`` for ENOENT), or None when it did not return (yet).
        duration_ns: Time from entry to exit, shown as ``<0.000012>`` when given.
        machine: The traced machine's architecture (default: this one's).
        string_limit: Show at most this many bytes of a buffer (None: all).

    Returns:
        ``name(arg, arg) = ret <duration>``.
    """
    values = _values_by_name(signature, args)
    texts = _argument_texts(signature, values, machine, string_limit)
    line = f"{signature.name}({', '.join(texts)}) = {format_return(signature, ret)}"
    if duration_ns is not None:
        line += " " + format_duration(duration_ns)
    return line


def _json_value(arg: SyscallArg | None, value: ArgValue, machine: str | None) -> Any:
    if value is None:
        return None
    if arg is not None and arg.display is Display.CLONE_ARGS and isinstance(
            value, (UserBytes, bytes)):
        return clone_args(_as_user_bytes(value).data)
    if isinstance(value, (UserBytes, bytes, str)):
        return _as_user_bytes(value).data.decode("utf-8", "backslashreplace")
    if not isinstance(value, int):
        return [_json_value(None, item, machine) for item in value]
    if arg is None:
        return value
    if arg.display in (Display.FD, Display.DIRFD):
        return to_declared(value, 4, True)
    if arg.display is Display.INT:
        return _declared(arg, value)
    return _render_int(arg, value, machine)


def syscall_record(
    signature: SyscallSignature,
    args: Sequence[ArgValue] | Mapping[str, ArgValue],
    ret: int | None,
    duration_ns: int | None = None,
    *,
    machine: str | None = None,
) -> dict[str, Any]:
    """One system call as a JSON-ready dict.

    Returns:
        ``{"syscall": "openat", "args": {...}, "ret": 3, "errno": None, "duration_ns": N}``:
        ``args`` maps each argument's name to a number (integers, descriptors), a string
        (paths and buffers as text, flags by name: ``"O_RDONLY|O_CLOEXEC"``, addresses as
        ``"0x…"``), a list (argv), or None where reading faulted, those names also listed in
        ``faults`` (and cut strings in ``truncated``). ``ret`` is the kernel's return value
        (``-2`` for ENOENT), ``errno`` its name on failure.
    """
    values = _values_by_name(signature, args)
    by_name = {arg.name: arg for arg in signature.args or ()}
    json_args = {name: _json_value(by_name.get(name), value, machine)
                 for name, value in values.items()}
    _, errnum = split_return(ret)
    record: dict[str, Any] = {
        "syscall": signature.name,
        "args": json_args,
        "ret": None if ret is None or signature.name in NO_RETURN else to_declared(ret, 8, True),
        "errno": None if errnum is None else (errno_name(errnum) or f"ERRNO_{errnum}"),
        "duration_ns": duration_ns,
    }
    faults = [name for name, value in values.items() if value is None]
    truncated = [name for name, value in values.items()
                 if isinstance(value, UserBytes) and value.truncated]
    if faults:
        record["faults"] = faults
    if truncated:
        record["truncated"] = truncated
    return record

"""How each system call argument is captured and shown: the one table of decoders.

An argument's *capture* says what the BPF side must fetch (the register value, a string it
points to, a buffer read at entry or at exit); its *display* says how the value is written out
(``AT_FDCWD``, ``O_RDONLY|O_CLOEXEC``, ``0644``, a quoted string).

The decision is made in :func:`classify_argument`, in this order:

1. :data:`ARGUMENT_DECODERS`, keyed by (system call, argument name) as the kernel's
   ``SYSCALL_DEFINE`` names them (and tracefs' ``sys_enter_*/format`` shows them);
2. rules on the argument's name (:data:`FD_NAMES`, :data:`DIRFD_NAMES`, ...);
3. rules on its C type: strings are what the kernel declares ``const char __user *`` (an input
   string: a path, a key or attribute name). A few older prototypes lack the ``const``
   (``mount(char *dev_name, ...)``, ``umount(char *name)``, ``utimes(char *filename)``), so a
   ``char *`` counts too when its name is one of :data:`STRING_NAMES`; any other ``char *`` is
   a buffer the kernel fills, shown as a pointer unless the table says how to read it.
   Other pointers are shown as addresses; integers as their C type's signedness says.

Return values are shown in decimal except where :data:`RETURN_DISPLAYS` says otherwise.

A few arguments are shown according to another one's value, as strace shows them; those rules
live with the formatter (:mod:`._format`): ``open``'s mode only with ``O_CREAT``/``O_TMPFILE``,
``fcntl``'s third argument by command, ``socket``'s protocol by address family, ``clone``'s
arguments by its flags.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from . import _ctypes

__all__ = [
    "ARGUMENT_DECODERS",
    "DIRFD_NAMES",
    "FD_NAMES",
    "NO_RETURN",
    "RETURN_DISPLAYS",
    "STRING_NAMES",
    "ArgDecoder",
    "Capture",
    "Display",
    "classify_argument",
    "return_display",
]


class Capture(str, Enum):
    """What the BPF side fetches for an argument (besides its register value)."""

    VALUE = "value"
    """Only the register value."""
    STRING = "string"
    """The NUL-terminated string it points to, read at entry."""
    STRING_ARRAY = "string_array"
    """The NULL-terminated array of strings it points to (execve's argv), read at entry."""
    BUFFER_IN = "buffer_in"
    """The bytes it points to, read at entry; ``length_argument`` holds how many."""
    BUFFER_OUT = "buffer_out"
    """The bytes it points to, read at exit; the return value says how many."""


class Display(str, Enum):
    """How an argument's value is written out."""

    INT = "int"  # decimal, signed or not as the C type is
    HEX = "hex"  # 0x..., 0 as 0
    OCTAL = "octal"  # 0644 (file modes, umask)
    POINTER = "pointer"  # NULL or 0x...
    FD = "fd"  # a file descriptor (int, whatever the prototype says)
    DIRFD = "dirfd"  # a file descriptor or AT_FDCWD
    STRING = "string"  # "quoted", escaped like strace
    BUFFER = "buffer"  # "quoted" bytes, cut at the string limit
    STRING_ARRAY = "string_array"  # ["a", "b"]
    OPEN_FLAGS = "open_flags"  # O_RDONLY|O_CLOEXEC (access mode first)
    OPEN_FLAG_BITS = "open_flag_bits"  # O_CLOEXEC|O_NONBLOCK (no access mode: pipe2, dup3)
    FILE_MODE = "file_mode"  # S_IFREG|0644 (mknod)
    ACCESS_MODE = "access_mode"  # R_OK|W_OK, F_OK
    AT_FLAGS = "at_flags"  # AT_SYMLINK_NOFOLLOW|AT_EMPTY_PATH
    UNLINKAT_FLAGS = "unlinkat_flags"  # AT_REMOVEDIR
    FACCESSAT_FLAGS = "faccessat_flags"  # AT_EACCESS|AT_SYMLINK_NOFOLLOW
    MMAP_PROT = "mmap_prot"  # PROT_READ|PROT_WRITE, PROT_NONE
    MMAP_FLAGS = "mmap_flags"  # MAP_PRIVATE|MAP_ANONYMOUS
    MREMAP_FLAGS = "mremap_flags"
    MSYNC_FLAGS = "msync_flags"
    MLOCKALL_FLAGS = "mlockall_flags"
    MADVISE_ADVICE = "madvise_advice"
    SIGNAL = "signal"  # SIGTERM, SIGRT_1, 0
    SIGPROCMASK_HOW = "sigprocmask_how"
    CLONE_FLAGS = "clone_flags"  # CLONE_VM|CLONE_FS|SIGCHLD (exit signal in the low byte)
    CLONE_ARGS = "clone_args"  # clone3's struct clone_args: {flags=..., exit_signal=SIGCHLD, ...}
    NAMESPACE_FLAGS = "namespace_flags"  # CLONE_NEWNS|CLONE_NEWPID (unshare, setns)
    SEEK_WHENCE = "seek_whence"
    FCNTL_COMMAND = "fcntl_command"
    FD_FLAGS = "fd_flags"  # FD_CLOEXEC (fcntl F_SETFD)
    SOCKET_FAMILY = "socket_family"
    SOCKET_TYPE = "socket_type"  # SOCK_STREAM|SOCK_CLOEXEC
    SOCKET_FLAGS = "socket_flags"  # SOCK_CLOEXEC|SOCK_NONBLOCK (accept4)
    IP_PROTOCOL = "ip_protocol"  # IPPROTO_TCP (socket's protocol with AF_INET, AF_INET6)
    NETLINK_PROTOCOL = "netlink_protocol"  # NETLINK_ROUTE (with AF_NETLINK)
    WAIT_OPTIONS = "wait_options"
    CLOCK_ID = "clock_id"
    EPOLL_CTL_OP = "epoll_ctl_op"
    RLIMIT_RESOURCE = "rlimit_resource"
    NONE = "none"  # no value (the return of exit_group)


@dataclass(frozen=True)
class ArgDecoder:
    """How one argument is captured and shown.

    Attributes:
        display: How its value is written out.
        capture: What the BPF side must fetch for it.
        length_argument: For :attr:`Capture.BUFFER_IN`, the argument holding the length.
    """

    display: Display
    capture: Capture = Capture.VALUE
    length_argument: str | None = None


def _buffer_in(length_argument: str) -> ArgDecoder:
    return ArgDecoder(Display.BUFFER, Capture.BUFFER_IN, length_argument)


_BUFFER_OUT = ArgDecoder(Display.BUFFER, Capture.BUFFER_OUT)
_STRING = ArgDecoder(Display.STRING, Capture.STRING)


def _shown(display: Display) -> ArgDecoder:
    return ArgDecoder(display)


# (system call, argument) → decoder, for what the rules below do not already get right.
# Argument names are the kernel's (SYSCALL_DEFINE in fs/open.c, mm/mmap.c, kernel/signal.c...).
ARGUMENT_DECODERS: dict[tuple[str, str], ArgDecoder] = {
    # files
    ("open", "flags"): _shown(Display.OPEN_FLAGS),
    ("openat", "flags"): _shown(Display.OPEN_FLAGS),
    ("open_by_handle_at", "flags"): _shown(Display.OPEN_FLAGS),
    ("mq_open", "oflag"): _shown(Display.OPEN_FLAGS),
    ("pipe2", "flags"): _shown(Display.OPEN_FLAG_BITS),
    ("dup3", "flags"): _shown(Display.OPEN_FLAG_BITS),
    ("access", "mode"): _shown(Display.ACCESS_MODE),
    ("faccessat", "mode"): _shown(Display.ACCESS_MODE),
    ("faccessat2", "mode"): _shown(Display.ACCESS_MODE),
    ("faccessat2", "flags"): _shown(Display.FACCESSAT_FLAGS),
    ("unlinkat", "flag"): _shown(Display.UNLINKAT_FLAGS),
    ("newfstatat", "flag"): _shown(Display.AT_FLAGS),
    ("fstatat64", "flag"): _shown(Display.AT_FLAGS),
    ("statx", "flags"): _shown(Display.AT_FLAGS),
    ("fchownat", "flag"): _shown(Display.AT_FLAGS),
    ("fchmodat2", "flags"): _shown(Display.AT_FLAGS),
    ("linkat", "flags"): _shown(Display.AT_FLAGS),
    ("utimensat", "flags"): _shown(Display.AT_FLAGS),
    ("execveat", "flags"): _shown(Display.AT_FLAGS),
    ("name_to_handle_at", "flag"): _shown(Display.AT_FLAGS),
    ("mknod", "mode"): _shown(Display.FILE_MODE),
    ("mknodat", "mode"): _shown(Display.FILE_MODE),
    ("umask", "mask"): _shown(Display.OCTAL),
    ("lseek", "whence"): _shown(Display.SEEK_WHENCE),
    ("fcntl", "cmd"): _shown(Display.FCNTL_COMMAND),
    # what is read and written
    ("read", "buf"): _BUFFER_OUT,
    ("pread64", "buf"): _BUFFER_OUT,
    ("recvfrom", "ubuf"): _BUFFER_OUT,
    ("readlink", "buf"): _BUFFER_OUT,
    ("readlinkat", "buf"): _BUFFER_OUT,
    ("write", "buf"): _buffer_in("count"),
    ("pwrite64", "buf"): _buffer_in("count"),
    ("sendto", "buff"): _buffer_in("len"),
    ("mq_timedsend", "u_msg_ptr"): _buffer_in("msg_len"),
    ("setxattr", "value"): _buffer_in("size"),
    ("lsetxattr", "value"): _buffer_in("size"),
    ("fsetxattr", "value"): _buffer_in("size"),
    ("sethostname", "name"): _buffer_in("len"),
    ("setdomainname", "name"): _buffer_in("len"),
    ("execve", "argv"): ArgDecoder(Display.STRING_ARRAY, Capture.STRING_ARRAY),
    ("execveat", "argv"): ArgDecoder(Display.STRING_ARRAY, Capture.STRING_ARRAY),
    # strace abbreviates the environment to its address; so does rawprobe (no capture).
    ("execve", "envp"): _shown(Display.POINTER),
    ("execveat", "envp"): _shown(Display.POINTER),
    # memory
    ("mmap", "prot"): _shown(Display.MMAP_PROT),
    ("mmap", "flags"): _shown(Display.MMAP_FLAGS),
    ("mmap", "off"): _shown(Display.HEX),
    ("mprotect", "prot"): _shown(Display.MMAP_PROT),
    ("pkey_mprotect", "prot"): _shown(Display.MMAP_PROT),
    ("remap_file_pages", "prot"): _shown(Display.MMAP_PROT),
    ("mremap", "flags"): _shown(Display.MREMAP_FLAGS),
    ("msync", "flags"): _shown(Display.MSYNC_FLAGS),
    ("mlockall", "flags"): _shown(Display.MLOCKALL_FLAGS),
    ("madvise", "behavior"): _shown(Display.MADVISE_ADVICE),
    ("process_madvise", "behavior"): _shown(Display.MADVISE_ADVICE),
    # processes and signals
    ("clone", "clone_flags"): _shown(Display.CLONE_FLAGS),
    ("clone3", "uargs"): ArgDecoder(Display.CLONE_ARGS, Capture.BUFFER_IN, "size"),
    ("unshare", "unshare_flags"): _shown(Display.NAMESPACE_FLAGS),
    ("setns", "flags"): _shown(Display.NAMESPACE_FLAGS),
    ("rt_sigprocmask", "how"): _shown(Display.SIGPROCMASK_HOW),
    ("wait4", "options"): _shown(Display.WAIT_OPTIONS),
    ("waitid", "options"): _shown(Display.WAIT_OPTIONS),
    # sockets
    ("socket", "family"): _shown(Display.SOCKET_FAMILY),
    ("socket", "type"): _shown(Display.SOCKET_TYPE),
    ("socketpair", "family"): _shown(Display.SOCKET_FAMILY),
    ("socketpair", "type"): _shown(Display.SOCKET_TYPE),
    ("accept4", "flags"): _shown(Display.SOCKET_FLAGS),
    # time, limits, events
    ("clock_gettime", "which_clock"): _shown(Display.CLOCK_ID),
    ("clock_settime", "which_clock"): _shown(Display.CLOCK_ID),
    ("clock_getres", "which_clock"): _shown(Display.CLOCK_ID),
    ("clock_nanosleep", "which_clock"): _shown(Display.CLOCK_ID),
    ("clock_adjtime", "which_clock"): _shown(Display.CLOCK_ID),
    ("timer_create", "which_clock"): _shown(Display.CLOCK_ID),
    ("timerfd_create", "clockid"): _shown(Display.CLOCK_ID),
    ("getrlimit", "resource"): _shown(Display.RLIMIT_RESOURCE),
    ("setrlimit", "resource"): _shown(Display.RLIMIT_RESOURCE),
    ("prlimit64", "resource"): _shown(Display.RLIMIT_RESOURCE),
    ("epoll_ctl", "op"): _shown(Display.EPOLL_CTL_OP),
}

# A file descriptor, whatever integer type the prototype gives it (mmap's is unsigned long;
# strace, like the C library, shows them all as int: -1, not 4294967295).
FD_NAMES = frozenset({
    "fd", "fildes", "oldfd", "newfd", "epfd", "fd_in", "fd_out", "in_fd", "out_fd", "ufd",
    "fdin", "fdout", "mountdirfd", "fanotify_fd", "ruleset_fd", "pidfd", "fs_fd", "group_fd",
})
# A directory file descriptor that may be AT_FDCWD (include/uapi/linux/fcntl.h).
DIRFD_NAMES = frozenset({"dfd", "olddfd", "newdfd", "from_dfd", "to_dfd", "dirfd"})
# Signal numbers (kill, tkill, tgkill, rt_sigaction, rt_sigqueueinfo, pidfd_send_signal).
SIGNAL_NAMES = frozenset({"sig"})
# Input strings among char * arguments: paths and names.
STRING_NAMES = frozenset({
    "filename", "pathname", "path", "oldname", "newname", "name", "specialfile", "special",
    "dev_name", "dir_name", "type", "uname", "u_name", "new_root", "put_old", "from_pathname",
    "to_pathname", "_fs_name", "_key", "_type", "_description", "_callout_info",
})
# unsigned long arguments that hold addresses.
ADDRESS_NAMES = frozenset({"addr", "start", "brk", "new_addr", "newsp", "tls", "shmaddr"})


def classify_argument(syscall: str, name: str, c_type: str) -> ArgDecoder:
    """How argument ``name`` (of C type ``c_type``) of ``syscall`` is captured and shown.

    Args:
        syscall: The system call's name (``openat``).
        name: The argument's name as tracefs shows it (``filename``).
        c_type: Its C type as tracefs shows it (``const char *``).

    Returns:
        The decoder: the table's entry, else what the name and type rules give.
    """
    explicit = ARGUMENT_DECODERS.get((syscall, name))
    if explicit is not None:
        return explicit
    if name in DIRFD_NAMES:
        return _shown(Display.DIRFD)
    if name in FD_NAMES:
        return _shown(Display.FD)
    if name in SIGNAL_NAMES:
        return _shown(Display.SIGNAL)
    spelled = " ".join(c_type.split())
    if spelled == "const char *":
        return _STRING
    if spelled == "char *" and name in STRING_NAMES:
        return _STRING
    if _ctypes.c_type(spelled).pointer:
        return _shown(Display.POINTER)
    if spelled == "umode_t":
        return _shown(Display.OCTAL)
    if name in ADDRESS_NAMES:
        return _shown(Display.POINTER)
    if name == "flags":
        return _shown(Display.HEX)
    return _shown(Display.INT)


# System calls that do not return to the caller: strace writes "= ?".
NO_RETURN = frozenset({"exit", "exit_group"})

# How return values other than errors are shown, where not in decimal.
RETURN_DISPLAYS: dict[str, Display] = {
    "mmap": Display.POINTER,
    "mremap": Display.POINTER,
    "brk": Display.POINTER,
    "shmat": Display.POINTER,
    "umask": Display.OCTAL,
    "exit": Display.NONE,
    "exit_group": Display.NONE,
}


def return_display(syscall: str) -> Display:
    """How ``syscall``'s return value is shown when it is not an error."""
    return RETURN_DISPLAYS.get(syscall, Display.INT)

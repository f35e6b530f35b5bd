"""The few libc entry points rawprobe needs that Python's os module lacks."""

from __future__ import annotations

import ctypes

from ._ffi import ERR_NEGATIVE, ERR_NONE, declare

__all__ = ["LIBC", "PR_SET_PDEATHSIG", "PTRACE_DETACH", "PTRACE_TRACEME", "free", "prctl", "ptrace",
           "syscall6", "vsnprintf"]

# The C library this interpreter is linked with, through the process's own symbol namespace:
# ctypes.util.find_library("c") would run `ldconfig -p` in a subprocess at every start.
LIBC = ctypes.CDLL(None, use_errno=True)

# long syscall(long number, ...): six integer arguments cover perf_event_open(2) and bpf(2).
syscall6 = declare(
    LIBC,
    "syscall",
    ctypes.c_long,
    [ctypes.c_long, ctypes.c_void_p, ctypes.c_long, ctypes.c_long, ctypes.c_long, ctypes.c_ulong],
    ERR_NEGATIVE,
)

# int vsnprintf(char *str, size_t size, const char *format, va_list ap): libbpf hands its log
# callback a va_list; on x86_64 and arm64 a va_list argument is passed as a pointer.
vsnprintf = declare(
    LIBC,
    "vsnprintf",
    ctypes.c_int,
    [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_void_p],
    ERR_NONE,
)

# void free(void *ptr): for memory a C library malloc()ed and handed over (the C++ runtime's
# demangled names).
free = declare(LIBC, "free", None, [ctypes.c_void_p], ERR_NONE)

# int prctl(int option, unsigned long arg2, ...): for PR_SET_PDEATHSIG (include/uapi/linux/prctl.h).
PR_SET_PDEATHSIG = 1
prctl = declare(
    LIBC,
    "prctl",
    ctypes.c_int,
    [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong],
    ERR_NEGATIVE,
)

# long ptrace(enum __ptrace_request request, pid_t pid, void *addr, void *data): a command is
# stopped at its exec (PTRACE_TRACEME) while its probes are planted, then let go
# (PTRACE_DETACH); include/uapi/linux/ptrace.h.
PTRACE_TRACEME = 0
PTRACE_DETACH = 17
ptrace = declare(
    LIBC,
    "ptrace",
    ctypes.c_long,
    [ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p],
    ERR_NEGATIVE,
)

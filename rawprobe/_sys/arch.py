"""Per-architecture constants: system call numbers and the pt_regs layout.

Adding an architecture is adding an entry to these tables (and building the BPF objects for it).
Numbers come from the kernel's syscall tables (arch/x86/entry/syscalls/syscall_64.tbl,
include/uapi/asm-generic/unistd.h for arm64) and pt_regs from arch/*/include/uapi/asm/ptrace.h.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass

from .._errors import KernelFeatureError

__all__ = ["ARCH", "Arch", "UnsupportedArchError"]


class UnsupportedArchError(KernelFeatureError):
    """rawprobe has no register and system call tables for this machine."""


@dataclass(frozen=True)
class Arch:
    """What rawprobe needs to know about one machine architecture.

    Attributes:
        name: The kernel's name (``x86_64``, ``arm64``).
        nr_perf_event_open: System call number of perf_event_open(2).
        nr_bpf: System call number of bpf(2).
        registers: Register names the kernel's fetch-args accept (``%di``), each mapped to its
            index in ``struct pt_regs`` viewed as an array of 64-bit words.
        argument_registers: The ABI's integer argument registers, in order.
        return_register: The register holding a function's return value.
        stack_pointer: The stack pointer register.
        instruction_pointer: The instruction pointer register.
    """

    name: str
    nr_perf_event_open: int
    nr_bpf: int
    registers: dict[str, int]
    argument_registers: tuple[str, ...]
    return_register: str
    stack_pointer: str
    instruction_pointer: str


# struct pt_regs on x86_64, in order (arch/x86/include/asm/ptrace.h): r15 r14 r13 r12 bp bx
# r11 r10 r9 r8 ax cx dx si di orig_ax ip cs flags sp ss.
_X86_64_PT_REGS = (
    "r15", "r14", "r13", "r12", "bp", "bx", "r11", "r10", "r9", "r8",
    "ax", "cx", "dx", "si", "di", "orig_ax", "ip", "cs", "flags", "sp", "ss",
)
# The fetch-arg parser (kernel/trace/trace_probe.c) looks names up with
# regs_query_register_offset(), whose table (arch/x86/kernel/ptrace.c) is these member names.
_X86_64_REGISTERS = {name: index for index, name in enumerate(_X86_64_PT_REGS)}

X86_64 = Arch(
    name="x86_64",
    nr_perf_event_open=298,
    nr_bpf=321,
    registers=_X86_64_REGISTERS,
    argument_registers=("di", "si", "dx", "cx", "r8", "r9"),
    return_register="ax",
    stack_pointer="sp",
    instruction_pointer="ip",
)

_ARM64_REGISTERS = {f"x{i}": i for i in range(31)}
_ARM64_REGISTERS.update({"sp": 31, "pc": 32, "pstate": 33})

ARM64 = Arch(
    name="arm64",
    nr_perf_event_open=241,
    nr_bpf=280,
    registers=_ARM64_REGISTERS,
    argument_registers=("x0", "x1", "x2", "x3", "x4", "x5", "x6", "x7"),
    return_register="x0",
    stack_pointer="sp",
    instruction_pointer="pc",
)

_BY_MACHINE = {"x86_64": X86_64, "aarch64": ARM64}


def _current() -> Arch:
    machine = platform.machine()
    try:
        return _BY_MACHINE[machine]
    except KeyError:
        raise UnsupportedArchError(
            f"rawprobe does not support the {machine} architecture"
        ) from None


ARCH = _current()

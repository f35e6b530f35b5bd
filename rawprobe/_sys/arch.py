"""The machines rawprobe runs on: one table entry per architecture, and nothing else anywhere.

Adding an architecture is adding an entry here (and building the BPF objects for it). The
sources of each fact are named beside it: system call numbers from the kernel's syscall tables
(arch/x86/entry/syscalls/syscall_64.tbl, include/uapi/asm-generic/unistd.h for arm64), pt_regs
from arch/*/include/uapi/asm/ptrace.h, ELF machine numbers from the ELF gABI (``EM_*`` in
``<elf.h>``), dynamic-linker facts from glibc, DWARF register numbers from each psABI.
"""

from __future__ import annotations

import os

from .._errors import KernelFeatureError

__all__ = ["ARCH", "ARCHES", "ELF_MACHINE_NAMES", "Arch", "UnsupportedArchError",
           "arch_for_elf_machine", "host_arch"]


class UnsupportedArchError(KernelFeatureError):
    """rawprobe has no tables for this machine."""


class Arch:
    """What rawprobe needs to know about one machine architecture.

    Attributes:
        machine: Its name as ``uname -m`` and the ELF tools spell it (``x86_64``, ``aarch64``).
        kernel_name: The kernel's name for its arch/ directory (``x86``, ``arm64``), which also
            names rawprobe's BPF objects (``rawprobe.x86.bpf.o``) and ``__TARGET_ARCH_*``.
        elf_machine: ``e_machine`` of its ELF files.
        nr_perf_event_open: System call number of perf_event_open(2).
        nr_bpf: System call number of bpf(2).
        registers: Register names the kernel's fetch-args accept (``%di``), each mapped to its
            index in ``struct pt_regs`` viewed as an array of 64-bit words.
        argument_registers: The ABI's integer argument registers, in order.
        return_register: The register holding a function's return value.
        stack_pointer: The stack pointer register.
        instruction_pointer: The instruction pointer register.
        instruction_size: Bytes of every instruction, or 0 when their length varies.
        little_endian: Its byte order (``EI_DATA`` of its ELF files is ELFDATA2LSB).
        dwarf_registers: DWARF register number → kernel register name (the psABI's table).
        ld_cache_flags: The ``flags`` of this machine's native libraries in
            ``/etc/ld.so.cache`` (glibc sysdeps/generic/ldconfig.h: ``FLAG_ELF_LIBC6`` with the
            machine's ``FLAG_*_LIB64``).
        library_dirs: The dynamic linker's trusted directories, searched when its cache has no
            entry (glibc elf/dl-load.c, ``SYSTEM_DIRS``; Debian adds the multiarch ones).

    A plain slotted class, not a dataclass: importing ``dataclasses`` costs a warm symbol
    lookup (which needs this table) three times its whole budget.
    """

    __slots__ = (
        "argument_registers",
        "dwarf_registers",
        "elf_machine",
        "instruction_pointer",
        "instruction_size",
        "kernel_name",
        "ld_cache_flags",
        "library_dirs",
        "little_endian",
        "machine",
        "nr_bpf",
        "nr_perf_event_open",
        "registers",
        "return_register",
        "stack_pointer",
    )

    def __init__(
        self,
        *,
        machine: str,
        kernel_name: str,
        elf_machine: int,
        nr_perf_event_open: int,
        nr_bpf: int,
        registers: dict[str, int],
        argument_registers: tuple[str, ...],
        return_register: str,
        stack_pointer: str,
        instruction_pointer: str,
        instruction_size: int,
        dwarf_registers: dict[int, str],
        ld_cache_flags: int,
        library_dirs: tuple[str, ...],
        little_endian: bool = True,
    ) -> None:
        self.machine = machine
        self.kernel_name = kernel_name
        self.elf_machine = elf_machine
        self.nr_perf_event_open = nr_perf_event_open
        self.nr_bpf = nr_bpf
        self.registers = registers
        self.argument_registers = argument_registers
        self.return_register = return_register
        self.stack_pointer = stack_pointer
        self.instruction_pointer = instruction_pointer
        self.instruction_size = instruction_size
        self.dwarf_registers = dwarf_registers
        self.ld_cache_flags = ld_cache_flags
        self.library_dirs = library_dirs
        self.little_endian = little_endian

    def __repr__(self) -> str:
        return f"Arch({self.machine!r})"


# struct pt_regs on x86_64, in order (arch/x86/include/asm/ptrace.h): r15 r14 r13 r12 bp bx
# r11 r10 r9 r8 ax cx dx si di orig_ax ip cs flags sp ss. The fetch-arg parser
# (kernel/trace/trace_probe.c) looks names up with regs_query_register_offset(), whose table
# (arch/x86/kernel/ptrace.c) is these member names.
_X86_64_PT_REGS = (
    "r15", "r14", "r13", "r12", "bp", "bx", "r11", "r10", "r9", "r8",
    "ax", "cx", "dx", "si", "di", "orig_ax", "ip", "cs", "flags", "sp", "ss",
)

X86_64 = Arch(
    machine="x86_64",
    kernel_name="x86",
    elf_machine=62,  # EM_X86_64
    nr_perf_event_open=298,
    nr_bpf=321,
    registers={name: index for index, name in enumerate(_X86_64_PT_REGS)},
    argument_registers=("di", "si", "dx", "cx", "r8", "r9"),
    return_register="ax",
    stack_pointer="sp",
    instruction_pointer="ip",
    instruction_size=0,
    # System V AMD64 psABI, "DWARF Register Number Mapping": 0 rax, 1 rdx, 2 rcx, 3 rbx,
    # 4 rsi, 5 rdi, 6 rbp, 7 rsp, 8-15 r8-r15, 16 the return address (rip).
    dwarf_registers={0: "ax", 1: "dx", 2: "cx", 3: "bx", 4: "si", 5: "di", 6: "bp", 7: "sp",
                     **{number: f"r{number}" for number in range(8, 16)}, 16: "ip"},
    ld_cache_flags=0x0303,  # FLAG_ELF_LIBC6 | FLAG_X8664_LIB64
    library_dirs=("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64",
                  "/lib", "/usr/lib"),
)

# struct user_pt_regs on arm64 (arch/arm64/include/uapi/asm/ptrace.h): x0..x30, sp, pc, pstate.
_ARM64_REGISTERS = {f"x{i}": i for i in range(31)}
_ARM64_REGISTERS.update({"sp": 31, "pc": 32, "pstate": 33})

ARM64 = Arch(
    machine="aarch64",
    kernel_name="arm64",
    elf_machine=183,  # EM_AARCH64
    nr_perf_event_open=241,
    nr_bpf=280,
    registers=_ARM64_REGISTERS,
    argument_registers=("x0", "x1", "x2", "x3", "x4", "x5", "x6", "x7"),
    return_register="x0",
    stack_pointer="sp",
    instruction_pointer="pc",
    instruction_size=4,
    # DWARF for the Arm 64-bit Architecture (AADWARF64): 0-30 x0-x30, 31 sp.
    dwarf_registers={**{number: f"x{number}" for number in range(31)}, 31: "sp"},
    ld_cache_flags=0x0A03,  # FLAG_ELF_LIBC6 | FLAG_AARCH64_LIB64
    library_dirs=("/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/lib64",
                  "/usr/lib64", "/lib", "/usr/lib"),
)

ARCHES = (X86_64, ARM64)

# Names for messages about files of machines rawprobe does not probe (ELF gABI e_machine).
ELF_MACHINE_NAMES = {
    3: "i386 (EM_386)",
    8: "MIPS (EM_MIPS)",
    20: "PowerPC (EM_PPC)",
    21: "PowerPC64 (EM_PPC64)",
    22: "s390 (EM_S390)",
    40: "ARM (EM_ARM)",
    62: "x86_64 (EM_X86_64)",
    183: "aarch64 (EM_AARCH64)",
    243: "RISC-V (EM_RISCV)",
    247: "BPF (EM_BPF)",
    258: "LoongArch (EM_LOONGARCH)",
}


def arch_for_elf_machine(elf_machine: int) -> Arch | None:
    """The table entry for an ELF ``e_machine``, or None when rawprobe does not know it."""
    for arch in ARCHES:
        if arch.elf_machine == elf_machine:
            return arch
    return None


def host_arch() -> Arch | None:
    """The table entry for the running machine (``uname -m``), or None when it is not in it."""
    machine = os.uname().machine
    for arch in ARCHES:
        if arch.machine == machine:
            return arch
    return None


def _current() -> Arch:
    arch = host_arch()
    if arch is None:
        raise UnsupportedArchError(
            f"rawprobe does not support the {os.uname().machine} architecture"
        )
    return arch


ARCH = _current()

"""Machine facts the DWARF reader needs: DWARF register numbers as kernel register names.

One small table per architecture. rawprobe keeps its other architecture facts in
``rawprobe._sys._arch`` (pt_regs layout, system calls) and ``rawprobe._symbols._arch`` (ELF
machine, ld.so cache flags); this table belongs with them and is to be merged into the project's
single architecture table.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DWARF_ARCHES", "DwarfArch", "dwarf_arch"]

EM_X86_64 = 62  # ELF gABI e_machine


@dataclass(frozen=True)
class DwarfArch:
    """What DWARF location expressions mean on one machine.

    Attributes:
        name: The kernel's name for the architecture.
        elf_machine: ``e_machine`` of its ELF files.
        registers: DWARF register number → the register's name in kernel fetch-args (without
            the ``%``), for the registers a uprobe can read.
        return_value_register: Where a function's integer or pointer result is on return.
    """

    name: str
    elf_machine: int
    registers: dict[int, str]
    return_value_register: str

    def register_name(self, number: int) -> str | None:
        """The kernel name of DWARF register ``number``, or None when a uprobe cannot read it
        (vector and floating-point registers)."""
        return self.registers.get(number)


# System V AMD64 psABI, "DWARF Register Number Mapping": 0 rax, 1 rdx, 2 rcx, 3 rbx, 4 rsi,
# 5 rdi, 6 rbp, 7 rsp, 8-15 r8-r15, 16 the return address (RIP); 17-32 are xmm0-15, which
# struct pt_regs does not hold. The names are those the kernel's fetch-arg parser accepts
# (arch/x86/kernel/ptrace.c, regoffset_table), as perf's tools/perf/arch/x86/util/dwarf-regs.c.
X86_64 = DwarfArch(
    name="x86_64",
    elf_machine=EM_X86_64,
    registers={
        0: "ax", 1: "dx", 2: "cx", 3: "bx", 4: "si", 5: "di", 6: "bp", 7: "sp",
        8: "r8", 9: "r9", 10: "r10", 11: "r11", 12: "r12", 13: "r13", 14: "r14", 15: "r15",
        16: "ip",
    },
    return_value_register="ax",
)

DWARF_ARCHES = {X86_64.elf_machine: X86_64}


def dwarf_arch(elf_machine: int) -> DwarfArch | None:
    """The table for ELF machine ``elf_machine``, or None when rawprobe has none."""
    return DWARF_ARCHES.get(elf_machine)

"""The machines rawprobe can probe: one table entry per architecture.

Adding an architecture is adding an entry here (and, elsewhere in rawprobe, its register names
and BPF objects). Everything the symbol resolver needs to know about a machine is in this entry.
"""

from __future__ import annotations

import os

__all__ = ["ELF_MACHINE_NAMES", "Arch", "arch_for_machine", "host_arch"]


class Arch:
    """What the symbol resolver needs to know about one architecture.

    Attributes:
        name: The kernel's name for it (``uname -m``).
        elf_machine: ``e_machine`` of its ELF files (ELF gABI; ``EM_*`` in ``<elf.h>``).
        elf_class: 64 or 32 (``EI_CLASS``).
        little_endian: ``EI_DATA`` is ELFDATA2LSB.
        ld_cache_flags: The ``flags`` value of this machine's native libraries in
            ``/etc/ld.so.cache`` (glibc ``sysdeps/generic/ldconfig.h``: ``FLAG_ELF_LIBC6`` combined
            with the machine's ``FLAG_*_LIB64``; ``_DL_CACHE_DEFAULT_ID`` in glibc's per-arch
            ``dl-cache.h``).
        library_dirs: The dynamic linker's trusted directories, searched when the cache has no
            entry (glibc ``elf/dl-load.c``, ``SYSTEM_DIRS``; Debian adds the multiarch ones).
    """

    __slots__ = ("elf_class", "elf_machine", "ld_cache_flags", "library_dirs", "little_endian",
                 "name")

    def __init__(
        self,
        name: str,
        elf_machine: int,
        elf_class: int,
        little_endian: bool,
        ld_cache_flags: int,
        library_dirs: tuple[str, ...],
    ) -> None:
        self.name = name
        self.elf_machine = elf_machine
        self.elf_class = elf_class
        self.little_endian = little_endian
        self.ld_cache_flags = ld_cache_flags
        self.library_dirs = library_dirs

    def __repr__(self) -> str:
        return f"Arch({self.name!r})"


# glibc sysdeps/generic/ldconfig.h: FLAG_ELF_LIBC6 = 0x0003, FLAG_X8664_LIB64 = 0x0300,
# FLAG_AARCH64_LIB64 = 0x0a00.
_ARCHES = (
    Arch(
        name="x86_64",
        elf_machine=62,  # EM_X86_64
        elf_class=64,
        little_endian=True,
        ld_cache_flags=0x0303,
        library_dirs=(
            "/lib/x86_64-linux-gnu",
            "/usr/lib/x86_64-linux-gnu",
            "/lib64",
            "/usr/lib64",
            "/lib",
            "/usr/lib",
        ),
    ),
    Arch(
        name="aarch64",
        elf_machine=183,  # EM_AARCH64
        elf_class=64,
        little_endian=True,
        ld_cache_flags=0x0A03,
        library_dirs=(
            "/lib/aarch64-linux-gnu",
            "/usr/lib/aarch64-linux-gnu",
            "/lib64",
            "/usr/lib64",
            "/lib",
            "/usr/lib",
        ),
    ),
)

# Names for messages about files of machines rawprobe does not probe (ELF gABI e_machine values).
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


def arch_for_machine(elf_machine: int) -> Arch | None:
    """The table entry for an ELF ``e_machine``, or None when rawprobe does not know it."""
    for arch in _ARCHES:
        if arch.elf_machine == elf_machine:
            return arch
    return None


def host_arch() -> Arch | None:
    """The table entry for the running machine (``uname -m``), or None when it is not in it."""
    machine = os.uname().machine
    for arch in _ARCHES:
        if arch.name == machine:
            return arch
    return None

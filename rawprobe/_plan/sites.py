"""Probe sites the kernel cannot be trusted with.

The kernel has no blacklist for uprobes: it plants a breakpoint wherever it is asked and runs
the displaced instruction out of line. On x86_64 that is not safe for every instruction. On the
hosts rawprobe is tested on, an AVX-512 (EVEX-encoded) instruction run out of line computes
with the wrong vector registers, so a probe on one silently corrupts the traced program (and,
host-wide, every program using that code: libc's AVX-512 memset is such a site); a probe on
an AVX (VEX-encoded) instruction never fires. rawprobe refuses such sites unless forced.
"""

from __future__ import annotations

import os

from .._host.procmaps import read_maps

__all__ = ["maps_file", "probe_site_hazard"]

# Legacy prefixes that may come before an opcode (Intel SDM vol. 2, 2.1.1).
_LEGACY_PREFIXES = frozenset({0xF0, 0xF2, 0xF3, 0x2E, 0x36, 0x3E, 0x26, 0x64, 0x65, 0x66, 0x67})
_VEX = (0xC4, 0xC5)
_EVEX = 0x62  # in 64-bit mode always EVEX (BOUND does not exist there)


def probe_site_hazard(path: str, file_offset: int) -> str | None:
    """Why a uprobe at ``file_offset`` of ``path`` would harm the program or never fire,
    or None when nothing is known against it (x86_64)."""
    try:
        with open(path, "rb") as file:
            file.seek(file_offset)
            code = file.read(8)
    except OSError:
        return None
    position = 0
    while position < len(code) and code[position] in _LEGACY_PREFIXES:
        position += 1
    if position >= len(code):
        return None
    opcode = code[position]
    if opcode == _EVEX:
        return (
            "its first instruction is an AVX-512 (EVEX) instruction, which the kernel runs out "
            "of line with the wrong vector registers: the probe would corrupt the program. "
            "Probe a later instruction (SYMBOL+OFFSET), or --force"
        )
    if opcode in _VEX:
        return (
            "its first instruction is an AVX (VEX) instruction, on which the kernel's uprobe "
            "does not fire. Probe a later instruction (SYMBOL+OFFSET), or --force"
        )
    return None


def maps_file(pid: int, path: str) -> bool | None:
    """Whether process ``pid`` maps the file at ``path`` (compared by device and inode, so a
    file of the same name in another mount namespace does not count); None if unknown."""
    try:
        info = os.stat(path)
        mappings = read_maps(pid)
    except OSError:
        return None
    device = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}"
    return any(m.inode == info.st_ino and m.device == device for m in mappings)

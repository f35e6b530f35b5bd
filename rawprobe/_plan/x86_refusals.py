"""Which x86-64 instructions the kernel refuses to plant a uprobe on, and why.

When a uprobe is first installed in a process the kernel copies the instruction at the probed
address and analyses it; on some it gives up with ENOTSUPP. Through perf_event_open(2) that
refusal surfaces only when the probe is installed in a process that maps the file (at
registration for processes already running, at mmap(2) for later ones, where it is dropped
silently), so rawprobe asks this module first. It follows, step by step:

1. ``prepare_uprobe()`` in kernel/events/uprobes.c: an ``int3`` (CCh) is refused
   (``is_trap_insn()``; x86 keeps the generic definition, ``is_swbp_insn()``).
2. ``uprobe_init_insn()`` in arch/x86/kernel/uprobes.c, after the kernel's instruction decoder
   (arch/x86/lib/insn.c) split the instruction into prefixes and opcode:
   ``is_prefix_bad()`` refuses a LOCK prefix and the ES, CS, SS and DS segment prefixes
   (FS and GS are allowed: user code addresses TLS through them); ``insn_masking_exception()``
   (arch/x86/include/asm/insn.h) refuses a MOV to SS and opcode 1Fh (the kernel's
   POP_SS_OPCODE constant, though POP SS is 17h); then the first opcode byte must be set in
   ``good_insns_64``, or, for a two-byte opcode, the second one in ``good_2byte_insns``.
3. ``branch_setup_xol_ops()``: a near JMP, CALL or Jcc with an operand-size prefix (66h) is
   refused, because Intel and AMD processors read its displacement differently.

The opcode the tables are indexed with is the kernel decoder's ``opcode.bytes[0]``: for a
legacy instruction its first opcode byte (0Fh for all of the two- and three-byte maps); for a
VEX or EVEX instruction the opcode byte *inside* its map. ``vmovdqu`` (VEX 6Fh) is therefore
refused like OUTS, and ``vaddps`` (VEX 58h) accepted like POP. The kernel's decoder knows no
XOP prefix: it reads 8Fh as POP, which the table allows.

Accepted is not the same as safe. ``branch_setup_xol_ops()`` looks at the same opcode byte
without asking whether the instruction is VEX-encoded, so a VEX or EVEX instruction whose
opcode is 70h-7Fh, E8h, E9h or EBh is emulated as a Jcc, CALL or JMP: measured on Linux 6.18,
a uprobe on ``vpor %xmm0,%xmm1,%xmm2`` (C5 F1 EB D0) makes the program skip the ``vpor``.
:func:`rawprobe._plan.sites.check_site` refuses probes on VEX and EVEX instructions
altogether; this module answers only what the kernel refuses.

Not modelled, because they need the kernel decoder's full attribute tables: instructions that
decoder rejects (ENOEXEC), and, on recent kernels, the 10-byte ``66 2E 0F 1F 84`` NOP the
uprobe optimisation accepts despite its CS prefix. Call :func:`kernel_refuses` on code that
:mod:`rawprobe._plan.insn` decodes; 32-bit (compat) processes use other tables and are out of scope.
"""

from __future__ import annotations

__all__ = ["GOOD_2BYTE_INSNS", "GOOD_INSNS_64", "kernel_refuses"]


def _bitmap(rows: str) -> frozenset[int]:
    """The set opcodes of a 16 by 16 bitmap written as the kernel writes its ``W()`` rows."""
    good: set[int] = set()
    for line in rows.strip().splitlines()[1:]:
        row, *bits = line.split()
        assert len(bits) == 16, line
        good.update(int(row, 16) + column for column, bit in enumerate(bits) if bit == "1")
    return frozenset(good)


# arch/x86/kernel/uprobes.c, good_insns_64[]: W(row, bit for opcode row+0 .. row+f). Copied
# row by row from the kernel (the table is the same from v4.x through v6.x); 40-4F are REX
# prefixes and never an opcode.
GOOD_INSNS_64 = _bitmap("""
       0 1 2 3 4 5 6 7 8 9 a b c d e f
    00 1 1 1 1 1 1 0 0 1 1 1 1 1 1 0 1
    10 1 1 1 1 1 1 0 0 1 1 1 1 1 1 0 0
    20 1 1 1 1 1 1 1 0 1 1 1 1 1 1 1 0
    30 1 1 1 1 1 1 1 0 1 1 1 1 1 1 1 0
    40 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1
    50 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1
    60 0 0 0 1 1 1 1 1 1 1 1 1 0 0 0 0
    70 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1
    80 1 1 0 1 1 1 1 1 1 1 1 1 1 1 1 1
    90 1 1 1 1 1 1 1 1 1 1 0 1 1 1 1 1
    a0 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1
    b0 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1
    c0 1 1 1 1 1 1 1 1 1 1 1 1 0 0 0 0
    d0 1 1 1 1 0 0 0 1 1 1 1 1 1 1 1 1
    e0 1 1 1 1 0 0 0 0 1 1 0 1 0 0 0 0
    f0 1 0 1 1 0 1 1 1 1 1 0 0 1 1 1 1
""")

# arch/x86/kernel/uprobes.c, good_2byte_insns[] (0F xx), shared by 32- and 64-bit processes.
# For a 64-bit process it is never reached: 0Fh itself is set in good_insns_64.
GOOD_2BYTE_INSNS = _bitmap("""
       0 1 2 3 4 5 6 7 8 9 a b c d e f
    00 0 0 1 1 1 0 0 0 0 0 1 0 1 1 1 1
    10 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1
    20 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1
    30 0 1 1 1 0 0 1 0 1 1 1 1 1 1 1 1
    40 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1
    50 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1
    60 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1
    70 1 1 1 1 1 1 1 1 0 0 1 1 1 1 1 1
    80 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1
    90 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1
    a0 1 1 1 1 1 1 1 1 1 1 1 1 1 1 0 1
    b0 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1
    c0 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1
    d0 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1
    e0 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1
    f0 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1
""")

_INT3 = 0xCC
_OPERAND_SIZE = 0x66
# Legacy prefixes (arch/x86/lib/x86-opcode-map.txt): segment overrides, 66h, 67h, LOCK, REP.
_LEGACY_PREFIXES = frozenset({0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65, 0x66, 0x67, 0xF0, 0xF2, 0xF3})
# is_prefix_bad(): INAT_PFX_ES, _CS, _SS, _DS and _LOCK.
_BAD_PREFIXES = {
    0x26: "an ES segment prefix (26h)",
    0x2E: "a CS segment prefix (2Eh)",
    0x36: "an SS segment prefix (36h)",
    0x3E: "a DS segment prefix (3Eh, also NOTRACK and a branch hint)",
    0xF0: "a LOCK prefix (F0h)",
}
# insn_get_prefixes() records at most four different legacy prefixes; a fifth different one
# ends the prefixes and is read as the opcode.
_MAX_PREFIXES = 4
_REX = range(0x40, 0x50)
# VEX (C5h two bytes, C4h three) and EVEX (62h, four) in 64-bit mode: the opcode follows.
_VEX_LENGTHS = {0xC5: 2, 0xC4: 3, 0x62: 4}
_ESCAPE = 0x0F
_THREE_BYTE_ESCAPES = (0x38, 0x3A)
# insn_masking_exception(): POP_SS_OPCODE (1Fh) and MOV_SREG_OPCODE (8Eh) with ModRM.reg 2.
_POP_SS_OPCODE = 0x1F
_MOV_SREG_OPCODE = 0x8E
_SS_REGISTER = 2
# branch_setup_xol_ops(): JMP rel8, JMP rel32, CALL rel32, Jcc rel8 (70-7F), Jcc rel32 (0F 8x).
_BRANCHES = frozenset({0xEB, 0xE9, 0xE8, *range(0x70, 0x80)})
_NEAR_JCC = range(0x80, 0x90)


def kernel_refuses(code: bytes) -> str | None:
    """Why the kernel would refuse a uprobe on the x86-64 instruction at the start of ``code``.

    Args:
        code: The bytes from the probed address on (up to 15 are looked at); the instruction
            must be whole.

    Returns:
        What the kernel objects to, or None when it would plant the probe.

    Raises:
        ValueError: ``code`` ends before the instruction's opcode.
    """
    if not code:
        raise ValueError("no instruction: the code is empty")
    if code[0] == _INT3:
        return "it is an int3 breakpoint, on which the kernel plants no uprobe"
    position = 0
    prefixes: list[int] = []
    while position < len(code) and code[position] in _LEGACY_PREFIXES:
        if code[position] not in prefixes:
            if len(prefixes) == _MAX_PREFIXES:
                break
            prefixes.append(code[position])
        position += 1
    if position < len(code) and code[position] in _REX:
        position += 1
    opcode = _byte(code, position)
    opcode_length = 1
    if opcode in _VEX_LENGTHS:
        position += _VEX_LENGTHS[opcode]
        opcode = _byte(code, position)
    elif opcode == _ESCAPE:
        opcode_length = 3 if _byte(code, position + 1) in _THREE_BYTE_ESCAPES else 2
    for prefix in prefixes:
        if prefix in _BAD_PREFIXES:
            return f"it has {_BAD_PREFIXES[prefix]}, which the kernel does not single-step"
    if opcode == _POP_SS_OPCODE or (
        opcode == _MOV_SREG_OPCODE and (_byte(code, position + 1) >> 3) & 7 == _SS_REGISTER
    ):
        return (
            f"its opcode {opcode:02X}h is one the kernel takes for a load of SS, after which "
            "a single-step trap is suppressed"
        )
    if opcode not in GOOD_INSNS_64 and not (
        opcode_length == 2 and _byte(code, position + 1) in GOOD_2BYTE_INSNS
    ):
        return f"its opcode {opcode:02X}h is not in the kernel's table of probeable opcodes"
    is_branch = opcode in _BRANCHES or (
        opcode == _ESCAPE and opcode_length == 2 and _byte(code, position + 1) in _NEAR_JCC
    )
    if is_branch and _OPERAND_SIZE in prefixes:
        return (
            "it is a near branch with an operand-size prefix (66h), whose length Intel and AMD "
            "processors disagree on"
        )
    return None


def _byte(code: bytes, position: int) -> int:
    if position >= len(code):
        raise ValueError(f"the instruction is cut short: {code.hex()}")
    return code[position]

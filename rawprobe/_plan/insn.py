"""x86-64 instruction lengths, so that a probe is planted only where an instruction starts.

The kernel plants a uprobe at whatever file offset it is given. At an offset inside an
instruction it overwrites that instruction's middle with ``int3`` and, at a hit, decodes and
runs out of line whatever it finds from that byte: the traced program computes garbage or
crashes. A ``SYMBOL+OFFSET`` location is therefore checked by decoding the function from its
first byte, one instruction after another, and seeing whether OFFSET is one of the starts.

Only lengths are decoded, never operands, in 64-bit mode, after the Intel SDM (vol. 2, ch. 2
"Instruction format" and appendix A "Opcode map") and the AMD APM (vol. 3, ch. 1 and appendix
A). Covered: legacy prefixes in any order and number, REX, the one-byte map, the two-byte map
0F with the three-byte maps 0F 38 and 0F 3A, 3DNow! (0F 0F), VEX (C4, C5), EVEX (62) and XOP
(8F). Not covered, so reported as undecodable: APX (REX2, EVEX map 4), VEX maps other than
1-3, and near branches with an operand-size prefix (66 E8, 66 E9, 66 0F 8x), whose length
Intel and AMD processors disagree on. Bytes that are invalid in 64-bit mode are undecodable
too: a decoder that guessed could call a mid-instruction offset a boundary.

Operand forms that raise #UD (LEA with a register operand, say) are decoded by their format;
only the one-byte groups whose ModRM.reg decides validity (C6, C7, FE, FF), the SSE4a forms of
0F 78 and the XOP opcodes are checked member by member.

Opcodes that are undefined inside a map whose format the map itself fixes (every 0F 38 and VEX
map 2 opcode has a ModRM byte and no immediate; every 0F 3A and VEX/EVEX map 3 opcode a ModRM
byte and one immediate byte) are decoded by that format, so an instruction set extension newer
than these tables still decodes.
"""

from __future__ import annotations

from .._errors import RawprobeError

__all__ = [
    "MAX_INSTRUCTION_LENGTH",
    "UndecodableInstruction",
    "boundary_in",
    "instruction_length",
    "instruction_starts",
]

# No instruction is longer, prefixes included (SDM vol. 2, 2.3.11); a longer one raises #GP.
MAX_INSTRUCTION_LENGTH = 15


class UndecodableInstruction(RawprobeError, ValueError):
    """Bytes that are not one x86-64 instruction these tables know: invalid in 64-bit mode,
    cut short by the end of the code, or outside the tables. ``offset`` is where the
    instruction starts (its first prefix), ``reason`` says why it was not decoded."""

    def __init__(self, offset: int, reason: str) -> None:
        self.offset = offset
        self.reason = reason
        super().__init__(f"cannot decode the x86-64 instruction at offset {offset:#x}: {reason}")


# -- opcode maps ------------------------------------------------------------------------------
#
# What follows the opcode byte, one cell per opcode, laid out as the SDM's opcode tables are
# (row = high nibble, column = low nibble):
#
#   .     nothing                          M     a ModRM byte (then SIB and displacement)
#   b     an imm8 (or rel8)                Mb    ModRM, then an imm8
#   w     an imm16                         Mz    ModRM, then an imm16/imm32 (as z)
#   z     imm16 with 66h, else imm32       Mr    ModRM whose mod field is ignored (always a
#   v     imm64 with REX.W, else as z            register: no SIB or displacement)
#   wb    an imm16 then an imm8 (ENTER)    M*    ModRM, then a rule of its own (see _decode)
#   o     a moffs: 8 bytes, 4 with 67h     J     a rel32 near branch (66h: see _decode)
#   p     a prefix (taken before any map is consulted)
#   esc   an escape to another map or to VEX/EVEX/XOP (see _decode)
#   -     invalid in 64-bit mode, or undefined

# SDM vol. 2, table A-2 "One-byte Opcode Map"; AMD APM vol. 3, table.
# Invalid in 64-bit mode: PUSH/POP of ES, CS, SS, DS (06 07 0E 16 17 1E 1F), DAA DAS AAA AAS
# (27 2F 37 3F), PUSHA POPA (60 61), BOUND (62, which is EVEX instead), 82 (an alias of 80),
# far CALL/JMP with a direct address (9A EA), INTO (CE), AAM AAD (D4 D5), SALC (D6).
# 40-4F are REX prefixes. 8F is POP Ev, or XOP when ModRM.reg is not 0.
_ONE_BYTE_MAP = """
      0    1    2    3    4    5    6    7    8    9    A    B    C    D    E    F
 0    M    M    M    M    b    z    -    -    M    M    M    M    b    z    -    esc
 1    M    M    M    M    b    z    -    -    M    M    M    M    b    z    -    -
 2    M    M    M    M    b    z    p    -    M    M    M    M    b    z    p    -
 3    M    M    M    M    b    z    p    -    M    M    M    M    b    z    p    -
 4    p    p    p    p    p    p    p    p    p    p    p    p    p    p    p    p
 5    .    .    .    .    .    .    .    .    .    .    .    .    .    .    .    .
 6    -    -    esc  M    p    p    p    p    z    Mz   b    Mb   .    .    .    .
 7    b    b    b    b    b    b    b    b    b    b    b    b    b    b    b    b
 8    Mb   Mz   -    Mb   M    M    M    M    M    M    M    M    M    M    M    esc
 9    .    .    .    .    .    .    .    .    .    .    -    .    .    .    .    .
 A    o    o    o    o    .    .    .    .    b    z    .    .    .    .    .    .
 B    b    b    b    b    b    b    b    b    v    v    v    v    v    v    v    v
 C    Mb   Mb   w    .    esc  esc  M*   M*   wb   .    w    .    .    b    -    .
 D    M    M    M    M    -    -    -    .    M    M    M    M    M    M    M    M
 E    b    b    b    b    b    b    b    b    J    J    -    b    .    .    .    .
 F    p    .    p    p    .    .    M*   M*   .    .    .    .    .    .    M*   M*
"""

# SDM vol. 2, table A-3 "Two-byte Opcode Map: 00H - 77H / 80H - FFH (First Byte is 0FH)";
# AMD APM vol. 3, table.
# 0F 0F is 3DNow!: ModRM, then an imm8 that selects the operation (APM vol. 3, A.1.3).
# 0F 20-23 move to and from control and debug registers; the SDM says "the mod field is
# ignored" (vol. 2, MOV-Move to/from Control Registers).
# 0F 38 and 0F 3A escape to the three-byte maps. 0F 78 and 0F B8 depend on the prefixes.
# 0F A6 and 0F A7, blank in the SDM, are VIA's PadLock instructions (XSTORE, XCRYPT*, XSHA*,
# MONTMUL), each a fixed register-form ModRM byte. Undefined: 04 0A 0C 24-27 36 39 3B-3F 7A 7B.
_TWO_BYTE_MAP = """
      0    1    2    3    4    5    6    7    8    9    A    B    C    D    E    F
 0    M    M    M    M    -    .    .    .    .    .    -    .    -    M    .    Mb
 1    M    M    M    M    M    M    M    M    M    M    M    M    M    M    M    M
 2    Mr   Mr   Mr   Mr   -    -    -    -    M    M    M    M    M    M    M    M
 3    .    .    .    .    .    .    -    .    esc  -    esc  -    -    -    -    -
 4    M    M    M    M    M    M    M    M    M    M    M    M    M    M    M    M
 5    M    M    M    M    M    M    M    M    M    M    M    M    M    M    M    M
 6    M    M    M    M    M    M    M    M    M    M    M    M    M    M    M    M
 7    Mb   Mb   Mb   Mb   M    M    M    .    M*   M    -    -    M    M    M    M
 8    J    J    J    J    J    J    J    J    J    J    J    J    J    J    J    J
 9    M    M    M    M    M    M    M    M    M    M    M    M    M    M    M    M
 A    .    .    .    M    Mb   M    M*   M*   .    .    .    M    Mb   M    M    M
 B    M    M    M    M    M    M    M    M    M*   M    Mb   M    M    M    M    M
 C    M    M    Mb   M    Mb   Mb   Mb   M    .    .    .    .    .    .    .    .
 D    M    M    M    M    M    M    M    M    M    M    M    M    M    M    M    M
 E    M    M    M    M    M    M    M    M    M    M    M    M    M    M    M    M
 F    M    M    M    M    M    M    M    M    M    M    M    M    M    M    M    M
"""

# VEX and EVEX map 1 (0F) opcodes that take an imm8; every other one has a ModRM byte and no
# immediate, except VEX 0F 77 (VZEROUPPER, VZEROALL), which has neither. SDM vol. 2, table
# PSHUFD/PSHUFHW/PSHUFLW (70), the shift groups 12-14 (71-73), CMPPS etc. (C2), PINSRW
# (C4), PEXTRW (C5), SHUFPS (C6).
_VEX_MAP1_IMM8 = frozenset({0x70, 0x71, 0x72, 0x73, 0xC2, 0xC4, 0xC5, 0xC6})
_VZEROUPPER = 0x77

# AMD's XOP instructions (APM vol. 6, ch. 2 and A.2; APM vol. 3 for TBM and LWP), by map. XOP
# is a closed set (no processor since the Bulldozer family has it), so undefined opcodes are
# undecodable rather than decoded by their map's format. Map 8 takes an imm8, map 9 none, map
# 0Ah an imm32.
_XOP_OPCODES = {
    # VPMACS*, VPMADCS*, VPCMOV, VPPERM, VPROT* (immediate count), VPCOM*
    8: frozenset(
        {0x85, 0x86, 0x87, 0x8E, 0x8F, 0x95, 0x96, 0x97, 0x9E, 0x9F, 0xA2, 0xA3, 0xA6, 0xB6}
        | {0xC0, 0xC1, 0xC2, 0xC3, 0xCC, 0xCD, 0xCE, 0xCF, 0xEC, 0xED, 0xEE, 0xEF}
    ),
    # TBM groups (01, 02), LLWPCB/SLWPCB (12), VFRCZ* (80-83), VPROT*/VPSHL*/VPSHA* (90-9B),
    # VPHADD*/VPHSUB* (C1-E3)
    9: frozenset(
        {0x01, 0x02, 0x12, 0x80, 0x81, 0x82, 0x83}
        | set(range(0x90, 0x9C))
        | {0xC1, 0xC2, 0xC3, 0xC6, 0xC7, 0xCB, 0xD1, 0xD2, 0xD3, 0xD6, 0xD7, 0xDB}
        | {0xE1, 0xE2, 0xE3}
    ),
    # BEXTR (imm32), LWPINS/LWPVAL (imm32)
    10: frozenset({0x10, 0x12}),
}

# Legacy prefixes, SDM vol. 2, 2.1.1: groups 1 (F0 lock, F2 F3 rep), 2 (segments 2E 36 3E 26
# 64 65, and branch hints; none changes a length), 3 (66 operand size) and 4 (67 address size).
_LOCK, _REPNE, _REP = 0xF0, 0xF2, 0xF3
_OPERAND_SIZE, _ADDRESS_SIZE = 0x66, 0x67

# Immediate kinds, stored shifted left by one in the decoded maps; bit 0 says "has ModRM".
_IMM_NONE = 0
_IMM8 = 1
_IMM16 = 2
_IMM_Z = 3  # imm16 with 66h (and no REX.W), else imm32
_IMM_V = 4  # imm64 with REX.W, else as _IMM_Z
_IMM16_IMM8 = 5
_IMM_MOFFS = 6
_REL32 = 7
# Codes that are not "ModRM + immediate" but send _decode down a path of its own.
_MODRM_IGNORED = 0x100
_SPECIAL = 0x200
_ESCAPE = 0x400
_PREFIX = 0x800
_INVALID = 0x1000

_CELLS = {
    ".": _IMM_NONE << 1,
    "b": _IMM8 << 1,
    "w": _IMM16 << 1,
    "z": _IMM_Z << 1,
    "v": _IMM_V << 1,
    "wb": _IMM16_IMM8 << 1,
    "o": _IMM_MOFFS << 1,
    "J": _REL32 << 1,
    "M": 1,
    "Mb": _IMM8 << 1 | 1,
    "Mz": _IMM_Z << 1 | 1,
    "Mr": _MODRM_IGNORED,
    "M*": _SPECIAL,
    "esc": _ESCAPE,
    "p": _PREFIX,
    "-": _INVALID,
}

# The immediate kinds as byte counts: (without 66h or with REX.W, with 66h and no REX.W).
# _IMM_V, _IMM_MOFFS and _REL32 have more to them and are settled in _decode.
_IMM_BYTES = ((0, 0), (1, 1), (2, 2), (4, 2), (4, 2), (3, 3), (8, 8), (4, 4))


def _parse_map(grid: str) -> tuple[int, ...]:
    """The 256 codes of an opcode map written as a 16 x 16 grid of the cells above."""
    rows = grid.strip().splitlines()[1:]
    codes: list[int] = []
    for expected_row, row in enumerate(rows):
        label, *cells = row.split()
        if int(label, 16) != expected_row or len(cells) != 16:
            raise AssertionError(f"malformed opcode map row {row!r}")
        codes.extend(_CELLS[cell] for cell in cells)
    if len(codes) != 256:
        raise AssertionError("an opcode map has 16 rows")
    return tuple(codes)


_ONE_BYTE = _parse_map(_ONE_BYTE_MAP)
_TWO_BYTE = _parse_map(_TWO_BYTE_MAP)


def _modrm_lengths() -> tuple[int, ...]:
    """Bytes taken by a ModRM byte, its SIB byte and its displacement, by ModRM value, in
    64-bit mode with 64- or 32-bit addressing (SDM vol. 2, 2.1.5 tables 2-2 and 2-3, and 2.2.1.6
    for RIP-relative addressing; 67h does not change the encoding in 64-bit mode, and REX.B
    takes no part in the special cases). A SIB byte whose base is 5 under mod 00 adds a disp32,
    which _decode adds as it sees the SIB byte."""
    lengths = []
    for modrm in range(256):
        mod, rm = modrm >> 6, modrm & 7
        length = 1
        if mod != 3 and rm == 4:
            length += 1  # SIB
        if mod == 1:
            length += 1  # disp8
        elif mod == 2 or (mod == 0 and rm == 5):
            length += 4  # disp32, or RIP + disp32
        lengths.append(length)
    return tuple(lengths)


_MODRM_LENGTH = _modrm_lengths()
_SIB_WITHOUT_BASE = 5  # SIB.base 101b under mod 00: no base register, a disp32 instead


def _past_modrm(code: bytes | memoryview, position: int) -> int:
    """Where the operand bytes that start with the ModRM byte at ``position`` end: ModRM, then
    a SIB byte and a displacement as ModRM (and SIB.base) ask for."""
    modrm = code[position]
    end = position + _MODRM_LENGTH[modrm]
    if modrm & 0xC7 == 0x04 and code[position + 1] & 7 == _SIB_WITHOUT_BASE:
        end += 4
    return end


# -- the decoder ------------------------------------------------------------------------------


def instruction_length(code: bytes | memoryview, offset: int = 0) -> int:
    """The length in bytes of the x86-64 (64-bit mode) instruction at ``offset`` of ``code``.

    Args:
        code: machine code; the instruction must lie wholly inside it.
        offset: where the instruction starts (its first prefix byte).

    Returns:
        The length, 1 to 15, prefixes and immediates included.

    Raises:
        UndecodableInstruction: the bytes are invalid in 64-bit mode, cut short by the end of
            ``code``, or outside the tables of this module.
    """
    if not 0 <= offset < len(code):
        raise UndecodableInstruction(offset, f"offset outside the {len(code)} bytes of code")
    return _length(code, offset, len(code))


def _length(code: bytes | memoryview, offset: int, limit: int) -> int:
    """The length of the instruction at ``offset``, which must end by ``limit``. The decoder
    reads no byte past the instruction's end, so one that crosses ``limit`` is found without
    copying ``code`` up to it."""
    try:
        end = _decode(code, offset)
    except IndexError:
        raise UndecodableInstruction(offset, "the code ends inside the instruction") from None
    if end - offset > MAX_INSTRUCTION_LENGTH:
        raise UndecodableInstruction(offset, "longer than 15 bytes")
    if end > limit:
        raise UndecodableInstruction(offset, "the code ends inside the instruction")
    return end - offset


def _decode(code: bytes | memoryview, offset: int) -> int:
    """Where the instruction at ``offset`` ends (may lie beyond ``code``: the caller checks).
    Raises IndexError when the bytes that decide the length run past the end of ``code``."""
    position = offset
    rex = 0
    operand_size = address_size = vex_forbidden = False
    last_rep = 0
    # Prefixes (SDM vol. 2, 2.1.1 and 2.2.1): legacy ones in any order and number, then at
    # most one REX that counts only when it comes right before the opcode.
    while True:
        byte = code[position]
        code_point = _ONE_BYTE[byte]
        if code_point != _PREFIX:
            break
        position += 1
        if position - offset >= MAX_INSTRUCTION_LENGTH:
            return position + 1  # 15 prefixes and an opcode: too long, whatever follows
        if byte & 0xF0 == 0x40:
            rex = byte
            continue
        rex = 0  # a REX followed by a legacy prefix is ignored (SDM vol. 2, 2.2.1)
        if byte == _OPERAND_SIZE:
            operand_size = vex_forbidden = True
        elif byte == _ADDRESS_SIZE:
            address_size = True
        elif byte in (_REP, _REPNE):
            last_rep = byte
            vex_forbidden = True
        elif byte == _LOCK:
            vex_forbidden = True

    opcode = byte
    position += 1
    rex_w = rex & 0x08
    if code_point & _ESCAPE:
        if opcode == 0x0F:
            return _decode_0f(code, offset, position, operand_size, rex_w, last_rep)
        # SDM vol. 2, 2.3.2 and 2.7.1: 66, F2, F3, F0 or REX before VEX/EVEX raise #UD. 8F
        # without XOP is POP Ev, which takes any prefix: settled in _decode_xop.
        if (vex_forbidden or rex) and opcode != 0x8F:
            raise UndecodableInstruction(
                offset, f"a VEX/EVEX prefix ({opcode:02X}) after 66, F2, F3, F0 or REX"
            )
        if opcode == 0xC5:
            return _decode_vex(code, offset, position + 1, 1, code[position + 1])
        if opcode == 0xC4:
            return _decode_vex(code, offset, position + 2, code[position] & 0x1F,
                               code[position + 2])
        if opcode == 0x62:
            return _decode_evex(code, offset, position)
        return _decode_xop(code, offset, position, vex_forbidden or rex != 0)
    if code_point & _INVALID:
        raise UndecodableInstruction(offset, f"opcode {opcode:02X} is invalid in 64-bit mode")
    if code_point & _SPECIAL:
        return _decode_one_byte_group(code, offset, position, opcode, operand_size, rex_w)

    if code_point & 1:
        position = _past_modrm(code, position)
    immediate = code_point >> 1
    if immediate == _IMM_NONE:
        return position
    if immediate == _IMM_V:
        # MOV r64, imm64 (B8-BF with REX.W), SDM vol. 2, MOV; otherwise imm16/imm32.
        return position + (8 if rex_w else 2 if operand_size else 4)
    if immediate == _IMM_MOFFS:
        # A0-A3: the offset is address-sized, 8 bytes in 64-bit mode, 4 with 67h (SDM vol. 2,
        # MOV, "moffs" and 2.2.1.4 "Direct Memory-Offset MOVs").
        return position + (4 if address_size else 8)
    if immediate == _REL32:
        return position + _near_branch_displacement(offset, operand_size, rex_w)
    return position + _IMM_BYTES[immediate][operand_size and not rex_w]


def _near_branch_displacement(offset: int, operand_size: bool, rex_w: int) -> int:
    """The rel16/rel32 size of E8, E9 and 0F 80-8F. In 64-bit mode these default to a 64-bit
    operand size with a rel32; a 66h prefix (without REX.W) makes AMD processors read a rel16
    and Intel processors ignore it (SDM vol. 2, JMP/CALL/Jcc, "In 64-bit mode ... the operand
    size is fixed at 64 bits"; AMD APM vol. 3, "Near branches"), so the length is unknown."""
    if operand_size and not rex_w:
        raise UndecodableInstruction(
            offset, "a near branch with a 66h prefix, whose length Intel and AMD differ on"
        )
    return 4


def _decode_one_byte_group(
    code: bytes | memoryview, offset: int, position: int, opcode: int, operand_size: bool,
    rex_w: int,
) -> int:
    """The one-byte opcodes whose ModRM.reg field decides the immediate or the validity (SDM
    vol. 2, table A-6 "Opcode Extensions for One- and Two-byte Opcodes by Group Number")."""
    modrm = code[position]
    reg, mod = (modrm >> 3) & 7, modrm >> 6
    end = _past_modrm(code, position)
    imm_z = 2 if operand_size and not rex_w else 4
    if opcode in (0xF6, 0xF7):
        # Group 3: TEST Eb,Ib / Ev,Iz under /0 (and its alias /1, AMD APM vol. 3 A.3); NOT,
        # NEG, MUL, IMUL, DIV, IDIV (/2-/7) take no immediate.
        if reg <= 1:
            return end + (1 if opcode == 0xF6 else imm_z)
        return end
    if opcode in (0xC6, 0xC7):
        # Group 11: MOV Eb,Ib / Ev,Iz (/0); XABORT ib (C6 F8) and XBEGIN rel16/rel32 (C7 F8);
        # everything else is undefined.
        if reg == 0 or modrm == 0xF8:
            return end + (1 if opcode == 0xC6 else imm_z)
        raise UndecodableInstruction(offset, f"{opcode:02X} /{reg} is undefined")
    if opcode == 0xFE:
        # Group 4: INC/DEC Eb (/0, /1) only.
        if reg <= 1:
            return end
        raise UndecodableInstruction(offset, f"FE /{reg} is undefined")
    # Group 5 (FF): INC DEC CALL CALLF JMP JMPF PUSH; /7 is undefined, and the far forms (/3,
    # /5) need a memory operand.
    if reg == 7 or (mod == 3 and reg in (3, 5)):
        raise UndecodableInstruction(offset, f"FF /{reg} with mod {mod} is undefined")
    return end


def _decode_0f(
    code: bytes | memoryview, offset: int, position: int, operand_size: bool, rex_w: int,
    last_rep: int,
) -> int:
    """The two-byte map (0F xx) and the three-byte maps 0F 38 and 0F 3A; ``position`` is the
    byte after 0F."""
    opcode = code[position]
    position += 1
    code_point = _TWO_BYTE[opcode]
    immediate = 0
    if code_point & (_INVALID | _ESCAPE | _SPECIAL | _MODRM_IGNORED):
        if code_point & _INVALID:
            raise UndecodableInstruction(offset, f"opcode 0F {opcode:02X} is undefined")
        if code_point & _MODRM_IGNORED:
            return position + 1
        if opcode == 0x38:
            # SDM vol. 2, table A-4: every 0F 38 opcode has a ModRM byte and no immediate.
            position += 1
            code_point = 1
        elif opcode == 0x3A:
            # SDM vol. 2, table A-5: every 0F 3A opcode has a ModRM byte and an imm8.
            position += 1
            code_point = 1
            immediate = 1
        elif opcode == 0x78:
            # 0F 78 is VMREAD Ey,Gy. With 66 it is AMD's EXTRQ xmm, imm8, imm8 (66 0F 78 /0,
            # register form only) and with F2 INSERTQ xmm, xmm, imm8, imm8 (register form
            # only): SSE4a, APM vol. 4. F3 0F 78 is undefined; F2/F3 count before 66 (SDM vol.
            # 2, 2.1.2). The kernel's own decoder (arch/x86/lib/x86-opcode-map.txt) reads
            # every 66 0F 78 as VMREAD, which user space cannot run: only SSE4a executes here.
            modrm = code[position]
            if last_rep == _REP:
                raise UndecodableInstruction(offset, "F3 0F 78 is undefined")
            if last_rep == _REPNE or operand_size:
                if modrm < 0xC0:
                    raise UndecodableInstruction(
                        offset, "EXTRQ/INSERTQ (66/F2 0F 78) take only registers"
                    )
                if last_rep != _REPNE and modrm & 0x38:
                    raise UndecodableInstruction(
                        offset, f"66 0F 78 /{(modrm >> 3) & 7} is reserved (EXTRQ is /0)"
                    )
                return position + 3
            code_point = 1
        elif opcode in (0xA6, 0xA7):
            # VIA PadLock (VIA PadLock Programming Guide): 0F A6 C0/C8/D0, 0F A7 C0-E8, all
            # with a register-form ModRM byte; a memory form is undefined.
            if code[position] < 0xC0:
                raise UndecodableInstruction(offset, f"0F {opcode:02X} with a memory operand")
            return position + 1
        else:
            # 0F B8: POPCNT with F3; without it JMPE, an IA-64 instruction not in 64-bit mode.
            if last_rep != _REP:
                raise UndecodableInstruction(offset, "0F B8 without F3 (JMPE) is undefined")
            code_point = 1
    if code_point & 1:
        position = _past_modrm(code, position)
    kind = code_point >> 1
    if kind == _IMM8:
        return position + 1
    if kind == _REL32:
        return position + _near_branch_displacement(offset, operand_size, rex_w)
    return position + immediate


def _decode_vex(
    code: bytes | memoryview, offset: int, position: int, opcode_map: int, opcode: int
) -> int:
    """A VEX instruction (SDM vol. 2, 2.3.5): ``position`` is its opcode byte, ``opcode_map``
    the map the prefix selects (C5 always map 1). ModRM follows every opcode but 0F 77."""
    position += 1
    if opcode_map == 1:
        if opcode == _VZEROUPPER:
            return position
        immediate = 1 if opcode in _VEX_MAP1_IMM8 else 0
    elif opcode_map == 2:
        immediate = 0
    elif opcode_map == 3:
        immediate = 1
    else:
        raise UndecodableInstruction(offset, f"VEX opcode map {opcode_map} is not known")
    position = _past_modrm(code, position)
    return position + immediate


def _decode_evex(code: bytes | memoryview, offset: int, position: int) -> int:
    """An EVEX instruction (SDM vol. 2, 2.7.1): ``position`` is the first of the three
    payload bytes P0 P1 P2 after 62; then the opcode, a ModRM byte and maybe an imm8.
    Compressed disp8*N changes what a disp8 means, not its size."""
    p0, p1 = code[position], code[position + 1]
    if p0 & 0x08 or not p1 & 0x04:
        # P0 bit 3 must be 0 and P1 bit 2 must be 1; APX gives them meanings (B4, U) that
        # this decoder does not know.
        raise UndecodableInstruction(offset, "EVEX with reserved bits set (APX?)")
    opcode_map = p0 & 0x07
    opcode = code[position + 3]
    position += 4
    if opcode_map == 1:
        immediate = 1 if opcode in _VEX_MAP1_IMM8 else 0
    elif opcode_map == 3:
        immediate = 1
    elif opcode_map in (2, 5, 6):  # map 5 and 6: AVX512-FP16, no immediates
        immediate = 0
    else:
        raise UndecodableInstruction(offset, f"EVEX opcode map {opcode_map} is not known")
    position = _past_modrm(code, position)
    return position + immediate


def _decode_xop(code: bytes | memoryview, offset: int, position: int, prefixed: bool) -> int:
    """8F: POP Ev when ModRM.reg is 0 (SDM vol. 2, group 1A), else AMD's XOP prefix (APM vol.
    6, 1.8): two payload bytes, the opcode, ModRM, and an immediate by map: imm8 in map 8,
    none in map 9, imm32 in map 0Ah."""
    modrm = code[position]
    if modrm & 0x38 == 0:
        return _past_modrm(code, position)
    opcode_map = modrm & 0x1F
    opcodes = _XOP_OPCODES.get(opcode_map)
    if opcodes is None:
        raise UndecodableInstruction(offset, f"8F /{(modrm >> 3) & 7} is undefined")
    if prefixed:
        raise UndecodableInstruction(offset, "an XOP prefix after 66, F2, F3, F0 or REX")
    opcode = code[position + 2]
    if opcode not in opcodes:
        raise UndecodableInstruction(
            offset, f"XOP map {opcode_map} opcode {opcode:02X} is undefined"
        )
    position += 3
    position = _past_modrm(code, position)
    return position + (1 if opcode_map == 8 else 0 if opcode_map == 9 else 4)


# -- using it ---------------------------------------------------------------------------------


def instruction_starts(code: bytes | memoryview, start: int, end: int) -> list[int]:
    """The offsets of the instructions met decoding ``code`` linearly from ``start`` while
    the offset is below ``end``; every instruction must end by ``end``.

    Raises:
        UndecodableInstruction: at the first instruction that does not decode or that
            crosses ``end``.
    """
    if start < 0:
        raise UndecodableInstruction(start, "a negative offset")
    limit = min(end, len(code))
    starts = []
    position = start
    while position < end:
        starts.append(position)
        position += _length(code, position, limit)
    return starts


def boundary_in(code: bytes | memoryview, target: int) -> bool | None:
    """Whether an instruction starts ``target`` bytes into ``code``, a function's code from
    its first byte: True or False, or None when the bytes up to ``target`` do not decode."""
    position = 0
    try:
        while position < target:
            position += _length(code, position, len(code))
    except UndecodableInstruction:
        return None
    return position == target

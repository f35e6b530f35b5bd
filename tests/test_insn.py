"""The x86-64 instruction length decoder (rawprobe._plan.insn), against objdump as the oracle.

GNU objdump is an independent decoder. It checks every instruction of every function of real
binaries on this host (libc with its AVX2 and AVX-512 code, bash, libstdc++, libcrypto with
OpenSSL's hand-written XOP and AVX-512 code, and a program compiled here with ``-O2
-mavx512f`` that also holds a function of hand-picked encoding quirks assembled by gas), a
sweep over every opcode of every map under several prefixes and operand forms, and random
bytes. Hand-written encodings pin each quirk, hypothesis shows that no byte string makes the
decoder fail except with UndecodableInstruction, and llvm-objdump, when installed, is a
second oracle for the sweep.
"""

from __future__ import annotations

import functools
import os
import random
import re
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import pytest
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import NoteSection, SymbolTableSection
from helpers import build_c
from hypothesis import given, settings
from hypothesis import strategies as st

from rawprobe import RawprobeError
from rawprobe._plan.insn import (
    MAX_INSTRUCTION_LENGTH,
    UndecodableInstruction,
    boundary_in,
    instruction_length,
    instruction_starts,
)

LIBC = "/usr/lib/x86_64-linux-gnu/libc.so.6"
BASH = "/usr/bin/bash"
LIBSTDCXX = "/usr/lib/x86_64-linux-gnu/libstdc++.so.6"
LIBCRYPTO = "/usr/lib/x86_64-linux-gnu/libcrypto.so.3"  # OpenSSL's hand-written XOP, AVX-512
DEBUG_ROOT = "/usr/lib/debug/.build-id"

pytestmark = pytest.mark.skipif(
    os.uname().machine != "x86_64", reason="the oracle binaries are x86-64 ones"
)


# -- hand-written encodings -------------------------------------------------------------------

# (bytes in hex, length, what it is). Each was checked with `objdump -D -b binary -m
# i386:x86-64` when written; the oracle tests below check the tables at large.
LENGTHS = [
    # The instructions uprobes meet at function entry, and padding.
    ("90", 1, "nop"),
    ("cc", 1, "int3"),
    ("0f0b", 2, "ud2"),
    ("f30f1efa", 4, "endbr64"),
    ("55", 1, "push %rbp"),
    ("4889e5", 3, "mov %rsp,%rbp"),
    ("0f1f00", 3, "nopl (%rax)"),
    ("0f1f4000", 4, "nopl 0x0(%rax)"),
    ("0f1f440000", 5, "nopl 0x0(%rax,%rax,1)"),
    ("660f1f440000", 6, "nopw 0x0(%rax,%rax,1)"),
    ("0f1f8000000000", 7, "nopl 0x0(%rax)"),
    ("0f1f840000000000", 8, "nopl 0x0(%rax,%rax,1)"),
    ("660f1f840000000000", 9, "nopw 0x0(%rax,%rax,1)"),
    ("662e0f1f840000000000", 10, "cs nopw 0x0(%rax,%rax,1)"),
    ("66662e0f1f840000000000", 11, "data16 cs nopw"),
    ("0f1fc0", 3, "nop %eax (0F 1F /0, register form)"),
    # Legacy prefixes in any order and number; REX only right before the opcode.
    ("f0660fb10f", 5, "lock cmpxchg %cx,(%rdi)"),
    ("2e3e646590", 5, "segment prefixes in a row, then nop"),
    ("6767676790", 5, "67h four times, then nop"),
    ("f3a4", 2, "rep movsb"),
    ("f2ae", 2, "repnz scas"),
    ("4866b83412", 5, "REX.W then 66h: the REX is dropped, mov $imm16,%ax"),
    ("6648b88877665544332211", 11, "66h then REX.W: REX.W wins, movabs $imm64,%rax"),
    ("4840b878563412", 7, "two REX: the last one (no W) counts, mov $imm32,%eax"),
    ("64488b042528000000", 9, "mov %fs:0x28,%rax"),
    ("3effe0", 3, "notrack jmp *%rax"),
    # One-byte map immediates, and 66h changing imm32 into imm16.
    ("0412", 2, "add $imm8,%al"),
    ("0578563412", 5, "add $imm32,%eax"),
    ("48 05 78563412", 6, "add $imm32,%rax (REX.W keeps imm32)"),
    ("66 05 3412", 4, "add $imm16,%ax"),
    ("66 48 05 78563412", 7, "66h with REX.W: imm32"),
    ("68 78563412", 5, "push $imm32"),
    ("66 68 3412", 4, "pushw $imm16"),
    ("6a 01", 2, "push $imm8"),
    ("69 c0 78563412", 6, "imul $imm32,%eax,%eax"),
    ("66 69 c0 3412", 5, "imul $imm16,%ax,%ax"),
    ("6b c0 05", 3, "imul $imm8,%eax,%eax"),
    ("80 00 01", 3, "addb $imm8,(%rax)"),
    ("81 00 78563412", 6, "addl $imm32,(%rax)"),
    ("66 81 00 3412", 5, "addw $imm16,(%rax)"),
    ("83 00 01", 3, "addl $imm8,(%rax)"),
    ("c6 00 01", 3, "movb $imm8,(%rax)"),
    ("c7 00 78563412", 6, "movl $imm32,(%rax)"),
    ("66 c7 00 3412", 5, "movw $imm16,(%rax)"),
    ("48 c7 c0 78563412", 7, "mov $imm32,%rax (sign-extended)"),
    ("c0 e0 02", 3, "shl $imm8,%al"),
    ("c1 e0 02", 3, "shl $imm8,%eax"),
    ("d1 e0", 2, "shl %eax"),
    ("a8 01", 2, "test $imm8,%al"),
    ("a9 78563412", 5, "test $imm32,%eax"),
    ("66 a9 3412", 4, "test $imm16,%ax"),
    ("cd 80", 2, "int $0x80"),
    ("e4 80", 2, "in $0x80,%al"),
    ("e6 80", 2, "out %al,$0x80"),
    # A0-A3: the offset is 8 bytes in 64-bit mode, 4 with 67h.
    ("a1 8877665544332211", 9, "movabs 0x1122334455667788,%eax"),
    ("48 a1 8877665544332211", 10, "movabs 0x1122334455667788,%rax"),
    ("a2 8877665544332211", 9, "movabs %al,0x1122334455667788"),
    ("66 a3 8877665544332211", 10, "movabs %ax,0x1122334455667788"),
    ("67 a1 44332211", 6, "addr32 mov 0x11223344,%eax"),
    ("67 48 a0 44332211", 7, "addr32 mov 0x11223344,%al (REX.W does not widen it)"),
    # B8-BF: imm64 only with REX.W.
    ("b8 78563412", 5, "mov $imm32,%eax"),
    ("48 b8 8877665544332211", 10, "movabs $imm64,%rax"),
    ("49 bb 8877665544332211", 10, "movabs $imm64,%r11"),
    ("41 b8 78563412", 6, "mov $imm32,%r8d (REX without W)"),
    ("66 b8 3412", 4, "mov $imm16,%ax"),
    ("b0 01", 2, "mov $imm8,%al"),
    ("41 b7 01", 3, "mov $imm8,%r15b"),
    # Returns and ENTER.
    ("c3", 1, "ret"),
    ("f3 c3", 2, "repz ret"),
    ("c2 0800", 3, "ret $8"),
    ("66 c2 0800", 4, "retw $8 (imm16 whatever the operand size)"),
    ("ca 0800", 3, "lret $8"),
    ("cb", 1, "lret"),
    ("c8 1000 01", 4, "enter $0x10,$1"),
    ("c9", 1, "leave"),
    # Group 3: an immediate only for TEST (/0 and its alias /1).
    ("f6 c1 01", 3, "test $imm8,%cl"),
    ("f6 c9 01", 3, "test $imm8,%cl (F6 /1)"),
    ("f6 d1", 2, "not %cl"),
    ("f6 e1", 2, "mul %cl"),
    ("f6 44 24 08 01", 5, "testb $imm8,0x8(%rsp)"),
    ("f7 c1 78563412", 6, "test $imm32,%ecx"),
    ("f7 c9 78563412", 6, "test $imm32,%ecx (F7 /1)"),
    ("66 f7 c1 3412", 5, "test $imm16,%cx"),
    ("48 f7 c1 78563412", 7, "test $imm32,%rcx"),
    ("f7 d8", 2, "neg %eax"),
    ("48 f7 f1", 3, "div %rcx"),
    ("f7 04 25 44332211 78563412", 11, "testl $imm32,0x11223344"),
    ("f7 3c 24", 3, "idivl (%rsp)"),
    # Near branches: rel8 and rel32.
    ("eb fe", 2, "jmp rel8"),
    ("74 00", 2, "je rel8"),
    ("7f 10", 2, "jg rel8"),
    ("e0 fe", 2, "loopne rel8"),
    ("e2 fe", 2, "loop rel8"),
    ("e3 fe", 2, "jrcxz rel8"),
    ("67 e3 fe", 3, "jecxz rel8"),
    ("e8 00000000", 5, "call rel32"),
    ("e9 00000000", 5, "jmp rel32"),
    ("0f 84 00000000", 6, "je rel32"),
    ("0f 8f 00000000", 6, "jg rel32"),
    ("48 e8 00000000", 6, "rex.W call rel32"),
    ("66 48 e9 00000000", 7, "66h with REX.W: the operand size is 64, rel32"),
    ("f2 e9 00000000", 6, "bnd jmp rel32"),
    ("3e 0f 84 00000000", 7, "je rel32 with a branch hint"),
    # Indirect branches and group 5.
    ("ff d0", 2, "call *%rax"),
    ("ff 25 00000000", 6, "jmp *rel32(%rip)"),
    ("ff 1c 24", 3, "lcall *(%rsp)"),
    ("ff 30", 2, "push (%rax)"),
    ("fe 00", 2, "incb (%rax)"),
    ("8f 00", 2, "pop (%rax) (8F /0)"),
    ("41 8f 00", 3, "pop (%r8)"),
    ("66 8f 00", 3, "popw (%rax)"),
    # Transactional memory: XABORT ib (C6 F8), XBEGIN rel32 / rel16.
    ("c6 f8 01", 3, "xabort $1"),
    ("c7 f8 00000000", 6, "xbegin rel32"),
    ("66 c7 f8 0000", 5, "xbeginw rel16"),
    ("0f 01 d5", 3, "xend"),
    # ModRM, SIB and displacement (SDM vol. 2, tables 2-2 and 2-3).
    ("8b 00", 2, "mov (%rax),%eax"),
    ("8b 04 24", 3, "mov (%rsp),%eax: SIB"),
    ("8b 04 25 44332211", 7, "mov 0x11223344,%eax: SIB without base, disp32"),
    ("8b 04 65 44332211", 7, "SIB without base or index"),
    ("8b 0c 8d 44332211", 7, "mov 0x11223344(,%rcx,4),%ecx"),
    ("8b 44 24 08", 4, "mov 0x8(%rsp),%eax"),
    ("8b 84 24 44332211", 7, "mov 0x11223344(%rsp),%eax"),
    ("8b 45 00", 3, "mov 0x0(%rbp),%eax: rbp needs a disp8"),
    ("8b 05 44332211", 6, "mov 0x11223344(%rip),%eax"),
    ("4c 8b 05 44332211", 7, "mov 0x11223344(%rip),%r8"),
    ("41 8b 45 00", 4, "mov 0x0(%r13),%eax: REX.B does not free r13 of the disp8"),
    ("41 8b 04 24", 4, "mov (%r12),%eax: nor r12 of the SIB"),
    ("41 8b 04 2d 44332211", 8, "SIB base 101b under mod 00 with REX.B: still no base"),
    ("43 8b 44 35 00", 5, "mov 0x0(%r13,%r14,1),%eax"),
    ("8b 80 44332211", 6, "mov 0x11223344(%rax),%eax"),
    ("8b c1", 2, "mov %ecx,%eax"),
    ("67 8b 00", 3, "mov (%eax),%eax"),
    ("67 8b 05 44332211", 7, "mov 0x11223344(%eip),%eax"),
    ("67 8b 04 25 44332211", 8, "addr32 with SIB, no base"),
    ("8d 04 c5 00000000", 7, "lea 0x0(,%rax,8),%eax"),
    ("48 8d 3d 44332211", 7, "lea 0x11223344(%rip),%rdi"),
    # x87.
    ("d9 c1", 2, "fld %st(1)"),
    ("db 6c 24 08", 4, "fldt 0x8(%rsp)"),
    ("dd 1f", 2, "fstpl (%rdi)"),
    ("9b", 1, "fwait"),
    # The two-byte map: opcodes without and with a ModRM byte, jcc rel32 above.
    ("0f 05", 2, "syscall"),
    ("0f a2", 2, "cpuid"),
    ("0f 31", 2, "rdtsc"),
    ("0f 01 f9", 3, "rdtscp"),
    ("0f ae e8", 3, "lfence"),
    ("0f ae 38", 3, "clflush (%rax)"),
    ("0f 18 08", 3, "prefetcht0 (%rax)"),
    ("0f 0d 08", 3, "prefetchw (%rax)"),
    ("0f 44 c1", 3, "cmove %ecx,%eax"),
    ("0f 94 c0", 3, "sete %al"),
    ("0f b6 00", 3, "movzbl (%rax),%eax"),
    ("49 0f c9", 3, "bswap %r9"),
    ("0f c7 0f", 3, "cmpxchg8b (%rdi)"),
    ("0f c7 f0", 3, "rdrand %eax"),
    ("f3 0f b8 c1", 4, "popcnt %ecx,%eax"),
    ("f3 0f bc c1", 4, "tzcnt %ecx,%eax"),
    ("0f a0", 2, "push %fs"),
    ("0f a9", 2, "pop %gs"),
    ("0f ff 00", 3, "ud0 (%rax),%eax"),
    ("0f a7 c0", 3, "xstore (VIA PadLock)"),
    ("f3 0f a7 d8", 4, "repz xcrypt-ctr (VIA PadLock)"),
    ("0f b9 c1", 3, "ud1 %ecx,%eax"),
    ("0f 28 44 24 10", 5, "movaps 0x10(%rsp),%xmm0"),
    ("66 0f 6f 05 44332211", 8, "movdqa 0x11223344(%rip),%xmm0"),
    ("f2 48 0f 2a c0", 5, "cvtsi2sd %rax,%xmm0"),
    ("0f 77", 2, "emms"),
    # 0F 20-23: the mod field is ignored, no SIB or displacement follows.
    ("0f 20 c0", 3, "mov %cr0,%rax"),
    ("0f 20 00", 3, "mov %cr0,%rax (mod 00 read as a register)"),
    ("0f 22 e0", 3, "mov %rax,%cr4"),
    ("0f 23 44", 3, "mov %rsp,%db0 (mod 01, still no displacement)"),
    # Two-byte opcodes with an imm8.
    ("0f 70 c1 1b", 4, "pshufw $0x1b,%mm1,%mm0"),
    ("66 0f 70 c1 1b", 5, "pshufd $0x1b,%xmm1,%xmm0"),
    ("66 0f 71 d0 02", 5, "psrlw $2,%xmm0"),
    ("0f 72 f0 02", 4, "pslld $2,%mm0"),
    ("66 0f 73 d8 02", 5, "psrldq $2,%xmm0"),
    ("0f a4 c1 05", 4, "shld $5,%eax,%ecx"),
    ("0f ac 07 05", 4, "shrd $5,%eax,(%rdi)"),
    ("0f a5 c1", 3, "shld %cl,%eax,%ecx"),
    ("0f ba e0 05", 4, "bt $5,%eax"),
    ("48 0f ba 6c 24 08 05", 7, "btsq $5,0x8(%rsp)"),
    ("0f c2 c1 00", 4, "cmpeqps %xmm1,%xmm0"),
    ("f2 0f c2 44 24 08 01", 7, "cmpltsd 0x8(%rsp),%xmm0"),
    ("66 0f c4 c0 00", 5, "pinsrw $0,%eax,%xmm0"),
    ("66 0f c5 c0 00", 5, "pextrw $0,%xmm0,%eax"),
    ("0f c6 c1 00", 4, "shufps $0,%xmm1,%xmm0"),
    # 0F 78: VMREAD; with 66h/F2h AMD's EXTRQ/INSERTQ with two imm8.
    ("0f 78 c1", 3, "vmread %rax,%rcx"),
    ("66 0f 78 c0 01 02", 6, "extrq $2,$1,%xmm0"),
    ("f2 0f 78 c1 01 02", 6, "insertq $2,$1,%xmm1,%xmm0"),
    ("66 0f 79 c1", 4, "extrq %xmm1,%xmm0"),
    # 3DNow!: ModRM, then an imm8 that names the operation.
    ("0f 0e", 2, "femms"),
    ("0f 0f c1 9e", 4, "pfadd %mm1,%mm0"),
    ("0f 0f 44 24 08 b4", 6, "pfmul 0x8(%rsp),%mm0"),
    ("0f 0f 0d 44332211 0d", 8, "pi2fd 0x11223344(%rip),%mm1"),
    # The three-byte maps: 0F 38 without, 0F 3A with an imm8.
    ("66 0f 38 00 c1", 5, "pshufb %xmm1,%xmm0"),
    ("f2 0f 38 f1 c1", 5, "crc32l %ecx,%eax"),
    ("0f 38 f0 07", 4, "movbe (%rdi),%eax"),
    ("66 0f 38 f6 c1", 5, "adcx %ecx,%eax"),
    ("0f 38 cb d0", 4, "sha256rnds2 %xmm0,%xmm0,%xmm2"),
    ("66 0f 3a 0f c1 08", 6, "palignr $8,%xmm1,%xmm0"),
    ("66 0f 3a 16 c0 01", 6, "pextrd $1,%xmm0,%eax"),
    ("66 48 0f 3a 16 00 01", 7, "pextrq $1,%xmm0,(%rax)"),
    ("66 0f 3a 63 c1 00", 6, "pcmpistri $0,%xmm1,%xmm0"),
    ("0f 3a cc c1 00", 5, "sha1rnds4 $0,%xmm1,%xmm0"),
    ("66 0f 3a 44 44 24 08 11", 8, "pclmulqdq $0x11,0x8(%rsp),%xmm0"),
    # VEX (C5 two-byte: map 1; C4 three-byte: maps 1-3).
    ("c5 f8 77", 3, "vzeroupper (no ModRM)"),
    ("c5 fc 77", 3, "vzeroall (no ModRM)"),
    ("c5 fd 6f 07", 4, "vmovdqa (%rdi),%ymm0"),
    ("c5 fd 70 c1 1b", 5, "vpshufd $0x1b,%ymm1,%ymm0"),
    ("c5 f5 73 d1 03", 5, "vpsrlq $3,%ymm1,%ymm1"),
    ("c5 fc c2 d1 00", 5, "vcmpeqps %ymm1,%ymm0,%ymm2"),
    ("c5 f9 c4 c0 01", 5, "vpinsrw $1,%eax,%xmm0,%xmm0"),
    ("c5 f9 c5 c0 01", 5, "vpextrw $1,%xmm0,%eax"),
    ("c5 f8 c6 c1 00", 5, "vshufps $0,%xmm1,%xmm0,%xmm0"),
    ("c5 f8 90 da", 4, "kmovw %k2,%k3"),
    ("c4 41 7a 6f 08", 5, "vmovdqu (%r8),%xmm9"),
    ("c4 e2 7d 18 44 24 08", 7, "vbroadcastss 0x8(%rsp),%ymm0 (map 2)"),
    ("c4 e2 70 f2 d0", 5, "andn %eax,%ecx,%edx"),
    ("c4 e2 75 92 04 88", 6, "vgatherdps %ymm1,(%rax,%xmm1,4),%ymm0: VSIB"),
    ("c4 e3 7d 18 c1 01", 6, "vinsertf128 $1,%xmm1,%ymm0,%ymm0 (map 3)"),
    ("c4 e3 75 0f 05 44332211 08", 10, "vpalignr $8,0x11223344(%rip),%ymm1,%ymm0"),
    ("c4 e3 7b f0 c8 05", 6, "rorx $5,%eax,%ecx"),
    ("c4 e3 75 4a c2 30", 6, "vblendvps %ymm3,%ymm2,%ymm1,%ymm0 (/is4)"),
    ("c4 e3 f9 30 ca 02", 6, "kshiftrw $2,%k2,%k1"),
    ("c4 e2 78 49 00", 5, "ldtilecfg (%rax) (AMX)"),
    ("c4 e2 78 49 c0", 5, "tilerelease"),
    # EVEX (62, maps 1, 2, 3, 5, 6); disp8*N changes a disp8's meaning, not its size.
    ("62 f1 7c 48 58 c1", 6, "vaddps %zmm1,%zmm0,%zmm0"),
    ("62 f1 7c 18 58 c1", 6, "vaddps {rn-sae},%zmm1,%zmm0,%zmm0"),
    ("62 f1 7c 48 10 44 24 01", 8, "vmovups 0x40(%rsp),%zmm0: compressed disp8"),
    ("62 21 7c 48 11 bc f8 44332211", 11, "vmovups %zmm31,0x11223344(%rax,%r15,8)"),
    ("62 f1 7c 58 58 00", 6, "vaddps (%rax){1to16},%zmm0,%zmm0"),
    ("62 f1 7d c9 70 c1 1b", 7, "vpshufd $0x1b,%zmm1,%zmm0{%k1}{z}: map 1 with imm8"),
    ("62 f1 7d 48 72 d1 02", 7, "vpsrld $2,%zmm1,%zmm0"),
    ("62 f1 7c 48 c2 c9 00", 7, "vcmpeqps %zmm1,%zmm0,%k1"),
    ("62 f1 7c 48 c6 c1 00", 7, "vshufps $0,%zmm1,%zmm0,%zmm0"),
    ("62 e1 7d 08 c5 c0 01", 7, "vpextrw $1,%xmm16,%eax"),
    ("62 f1 7d 48 74 c9", 6, "vpcmpeqb %zmm1,%zmm0,%k1: map 1 without imm8"),
    ("62 f2 7d 49 90 04 88", 7, "vpgatherdd (%rax,%zmm1,4),%zmm0{%k1} (map 2)"),
    ("62 f2 7d 48 18 15 44332211", 10, "vbroadcastss 0x11223344(%rip),%zmm2"),
    ("62 f3 7d 48 25 c1 ff", 7, "vpternlogd $0xff,%zmm1,%zmm0,%zmm0 (map 3)"),
    ("62 f3 7d 48 19 c1 01", 7, "vextractf32x4 $1,%zmm0,%xmm1"),
    ("62 f5 7c 48 58 c1", 6, "vaddph %zmm1,%zmm0,%zmm0 (map 5)"),
    ("62 f5 7e 08 10 00", 6, "vmovsh (%rax),%xmm0"),
    ("62 f6 7d 48 98 c1", 6, "vfmadd132ph %zmm1,%zmm0,%zmm0 (map 6)"),
    ("62 f3 7c 48 c2 c9 00", 7, "vcmpeqph %zmm1,%zmm0,%k1"),
    # XOP (8F with ModRM.reg not 0): map 8 imm8, map 9 none, map 0Ah imm32.
    ("8f e8 70 a2 c2 30", 6, "vpcmov %xmm3,%xmm2,%xmm1,%xmm0"),
    ("8f e8 78 c0 c1 01", 6, "vprotb $1,%xmm1,%xmm0"),
    ("8f e9 68 90 c1", 5, "vprotb %xmm2,%xmm1,%xmm0"),
    ("8f e9 78 c1 00", 5, "vphaddbw (%rax),%xmm0"),
    ("8f e9 70 01 c8", 5, "blcfill %eax,%ecx"),
    ("8f ea 78 10 c8 34120000", 9, "bextr $0x1234,%eax,%ecx"),
    ("8f ea 78 12 c8 01000000", 9, "lwpval $1,%eax,%ecx"),
    # The longest instruction there may be: 15 bytes.
    ("66" * 14 + "90", 15, "fourteen 66h prefixes and a nop"),
    ("2e 67 f0 48 81 84 c8 44332211 78563412", 15, "lock addq $imm32,disp32(...) with prefixes"),
]

UNDECODABLE = [
    # (bytes in hex, a word of the reason)
    ("", "offset outside"),
    ("0f", "ends inside"),
    ("e8 000000", "ends inside"),
    ("8b 04", "ends inside"),
    ("8b 44 24", "ends inside"),
    ("c4 e2", "ends inside"),
    ("62 f1 7c 48", "ends inside"),
    ("66 66 66", "ends inside"),
    ("48 b8 01020304", "ends inside"),
    ("66" * 15 + "90", "longer than 15"),
    ("66" * 14 + "05 3412", "longer than 15"),
    ("f0" * 20, "longer than 15"),
    # Invalid in 64-bit mode.
    ("06", "invalid in 64-bit mode"),
    ("07", "invalid in 64-bit mode"),
    ("0e", "invalid in 64-bit mode"),
    ("16", "invalid in 64-bit mode"),
    ("1f", "invalid in 64-bit mode"),
    ("27", "invalid in 64-bit mode"),
    ("2f", "invalid in 64-bit mode"),
    ("37", "invalid in 64-bit mode"),
    ("3f", "invalid in 64-bit mode"),
    ("60", "invalid in 64-bit mode"),
    ("61", "invalid in 64-bit mode"),
    ("82 c0 01", "invalid in 64-bit mode"),
    ("9a 00000000 0000", "invalid in 64-bit mode"),
    ("ce", "invalid in 64-bit mode"),
    ("d4 0a", "invalid in 64-bit mode"),
    ("d5 0a", "invalid in 64-bit mode"),  # AAD; REX2 on APX processors
    ("d6", "invalid in 64-bit mode"),
    ("ea 00000000 0000", "invalid in 64-bit mode"),
    # Undefined group members and two-byte opcodes.
    ("c6 c8 01", "undefined"),
    ("c7 c8 00000000", "undefined"),
    ("fe 10", "undefined"),
    ("ff 38", "undefined"),
    ("ff d8", "undefined"),
    ("ff e8", "undefined"),
    ("0f 04", "undefined"),
    ("0f 0a", "undefined"),
    ("0f 24 c0", "undefined"),
    ("0f 36", "undefined"),
    ("0f 39", "undefined"),
    ("0f 7a c0", "undefined"),
    ("0f a6 00", "memory operand"),
    ("0f b8 c1", "JMPE"),
    ("f3 0f 78 c1", "undefined"),
    ("66 0f 78 00 01 02", "only registers"),
    ("66 0f 78 c8 01 02", "is reserved"),
    # Near branches with 66h: Intel reads a rel32, AMD a rel16.
    ("66 e8 0000 0000", "Intel and AMD"),
    ("66 e9 0000 0000", "Intel and AMD"),
    ("66 0f 84 0000 0000", "Intel and AMD"),
    # VEX and EVEX after 66h, F2h, F3h, F0h or REX raise #UD; maps outside the tables.
    ("66 c5 f8 77", "after 66"),
    ("f3 c5 f8 77", "after 66"),
    ("f0 c4 e2 7d 18 00", "after 66"),
    ("48 c5 f8 77", "after 66"),
    ("66 62 f1 7c 48 58 c1", "after 66"),
    ("c4 e0 78 00 c0", "VEX opcode map 0"),
    ("c4 e4 78 00 c0", "VEX opcode map 4"),
    ("c4 e7 78 f8 c0 00000000", "VEX opcode map 7"),
    ("62 f0 7c 48 58 c1", "EVEX opcode map 0"),
    ("62 f4 7c 48 58 c1", "EVEX opcode map 4"),
    ("62 f7 7c 48 58 c1", "EVEX opcode map 7"),
    ("62 f9 7c 48 58 c1", "reserved bits"),
    ("62 f1 78 48 58 c1", "reserved bits"),
    # XOP: maps other than 8, 9, 0Ah, opcodes outside the set, prefixes before it.
    ("8f 10", "8F /2 is undefined"),
    ("8f e8 78 00 c0 00", "XOP map 8 opcode 00"),
    ("8f ea 78 11 c0 00000000", "XOP map 10 opcode 11"),
    ("66 8f e8 78 c0 c1 01", "XOP prefix after"),
]


def _hex(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


@pytest.mark.parametrize(("encoding", "length", "what"), LENGTHS, ids=[w for _, _, w in LENGTHS])
def test_length(encoding: str, length: int, what: str) -> None:
    code = _hex(encoding)
    assert len(code) == length, f"the test's bytes for {what} are not {length} long"
    assert instruction_length(code) == length
    # Trailing bytes change nothing, and the instruction decodes at any offset.
    assert instruction_length(b"\x90\x90" + code + b"\xcc" * 16, 2) == length
    # A memoryview decodes as bytes do.
    assert instruction_length(memoryview(code)) == length


@pytest.mark.parametrize(("encoding", "reason"), UNDECODABLE, ids=[e for e, _ in UNDECODABLE])
def test_undecodable(encoding: str, reason: str) -> None:
    code = _hex(encoding)
    padded = code + (b"\x00" * 16 if reason not in ("ends inside", "offset outside") else b"")
    with pytest.raises(UndecodableInstruction) as raised:
        instruction_length(padded)
    assert reason in raised.value.reason
    assert raised.value.offset == 0
    assert reason in str(raised.value)


def test_error_is_a_value_error_and_a_rawprobe_error() -> None:
    with pytest.raises(ValueError, match=r"at offset 0x3: .*invalid in 64-bit mode"):
        instruction_length(b"\x90\x90\x90\x06", 3)
    assert issubclass(UndecodableInstruction, RawprobeError)


def test_instruction_starts() -> None:
    code = _hex("f30f1efa 55 4889e5 e8 00000000 5d c3")
    assert instruction_starts(code, 0, len(code)) == [0, 4, 5, 8, 13, 14]
    assert instruction_starts(code, 5, 13) == [5, 8]
    assert instruction_starts(memoryview(code), 4, 4) == []
    with pytest.raises(UndecodableInstruction, match="ends inside") as raised:
        instruction_starts(code, 8, 10)  # the call runs past the end
    assert raised.value.offset == 8
    with pytest.raises(UndecodableInstruction) as raised:
        instruction_starts(code + b"\x06", 0, len(code) + 1)
    assert raised.value.offset == len(code)
    with pytest.raises(UndecodableInstruction, match="ends inside"):
        instruction_starts(code, 0, len(code) + 1)  # the code ends before ``end``
    with pytest.raises(UndecodableInstruction, match="negative"):
        instruction_starts(code, -1, 4)


# -- properties -------------------------------------------------------------------------------


@settings(max_examples=3000, deadline=None)
@given(st.binary(min_size=0, max_size=24), st.integers(min_value=0, max_value=24))
def test_random_bytes_give_a_length_or_undecodable(code: bytes, offset: int) -> None:
    try:
        length = instruction_length(code, offset)
    except UndecodableInstruction as error:
        assert error.offset == offset
        return
    assert 1 <= length <= MAX_INSTRUCTION_LENGTH
    assert offset + length <= len(code)
    # The decoder looks at the instruction's own bytes only: cut there, it still decodes,
    # and cut shorter, it is truncated.
    instruction = code[offset : offset + length]
    assert instruction_length(instruction) == length
    for shorter in range(length):
        with pytest.raises(UndecodableInstruction):
            instruction_length(instruction[:shorter])


_PREFIX_BYTES = [0x66, 0x67, 0xF2, 0xF3, 0xF0, 0x2E, 0x3E, 0x64, 0x65, *range(0x40, 0x50)]


@settings(max_examples=2000, deadline=None)
@given(
    st.lists(st.sampled_from(_PREFIX_BYTES), max_size=4),
    st.sampled_from([b"", b"\x0f", b"\x0f\x38", b"\x0f\x3a", b"\xc5", b"\xc4", b"\x62", b"\x8f"]),
    st.binary(min_size=1, max_size=16),
)
def test_structured_random_bytes(prefixes: list[int], escape: bytes, rest: bytes) -> None:
    """Random bytes reach the rarer paths more often when they start like instructions."""
    code = bytes(prefixes) + escape + rest
    try:
        length = instruction_length(code)
    except UndecodableInstruction:
        return
    assert 1 <= length <= min(MAX_INSTRUCTION_LENGTH, len(code))
    assert instruction_length(code[:length]) == length


# -- objdump as the oracle --------------------------------------------------------------------

# What objdump prints for a prefix it could not attach to the instruction after it (a REX
# before another prefix, a lone 66h): the processor takes such prefixes as part of that next
# instruction, so they are merged with it.
_PREFIX_WORDS = frozenset(
    {"data16", "addr32", "cs", "ds", "es", "fs", "gs", "ss", "lock", "rep", "repz", "repnz",
     "notrack", "bnd", "xacquire", "xrelease"}
)


class Listed(NamedTuple):
    """One instruction as objdump lists it."""

    length: int
    bad: bool  # "(bad)" or ".byte": objdump could not decode it
    text: str


_PREFIX_LINE = re.compile(rf"(?:(?:{'|'.join(sorted(_PREFIX_WORDS))}|rex[.A-Z]*)(?:\s+|$))+$")


def _prefix_only(text: str) -> bool:
    return _PREFIX_LINE.match(text) is not None


def _fwait_length(raw: str) -> int:
    """The length of a FWAIT (with its prefixes) that starts the hex bytes ``raw``, or 0."""
    if "9b" not in raw:
        return 0
    for index, byte in enumerate(bytes.fromhex(raw.replace(" ", ""))):
        if byte == 0x9B:
            return index + 1
        if byte not in _LEGACY:
            return 0
    return 0


def parse_objdump(output: str) -> dict[int, Listed]:
    """``objdump -d -w`` output → {address: instruction}."""
    listing: dict[int, Listed] = {}
    pending: tuple[int, str, str] | None = None  # prefixes seen: (address, raw bytes, text)
    for line in output.splitlines():
        address_text, tab, rest = line.partition(":\t")
        if not tab or not line.startswith(" "):
            # A symbol's label: objdump starts decoding afresh, prefixes do not carry over.
            if pending is not None:
                listing[pending[0]] = Listed(len(pending[1].split()), False, pending[2])
                pending = None
            continue
        raw, _, text = rest.partition("\t")
        address, text = int(address_text, 16), text.strip()
        bad = "(bad)" in text or text.startswith(".byte")
        if pending is not None:
            if pending[0] + len(pending[1].split()) == address:
                address, raw = pending[0], f"{pending[1]} {raw}"
                # objdump read the rest without the prefixes it split off: when those
                # change lengths (66h, 67h), its length is not the processor's.
                bad = bad or any(word in pending[2].split() for word in ("data16", "addr32"))
                text = f"{pending[2]} {text}"
            else:
                listing[pending[0]] = Listed(len(pending[1].split()), False, pending[2])
            pending = None
        if _prefix_only(text):
            pending = (address, raw, text)
            continue
        length = len(raw.split())
        fwait = _fwait_length(raw)
        if fwait and fwait < length:
            # objdump folds FWAIT (9Bh) into the x87 instruction after it (fstcw for
            # fwait + fnstcw); the processor runs two instructions.
            listing[address] = Listed(fwait, False, "fwait")
            address, length = address + fwait, length - fwait
        listing[address] = Listed(length, bad, text)
    if pending is not None:
        listing[pending[0]] = Listed(len(pending[1].split()), False, pending[2])
    return listing


def run_objdump(*argv: str, drop_nops: bool = False) -> dict[int, Listed]:
    """objdump's listing; ``drop_nops`` leaves out one-byte NOPs (fast, for the slots)."""
    objdump = shutil.which("objdump")
    if objdump is None:
        pytest.skip("objdump (binutils) is not installed")
    output = subprocess.run(
        [objdump, "-d", "-w", "-z", *argv], capture_output=True, text=True, check=True
    ).stdout
    return parse_objdump(_without_nops(output) if drop_nops else output)


def _without_nops(output: str) -> str:
    """``output`` without its lines of one NOP, unless a prefix line before belongs to it."""
    kept, after_prefix = [], False
    for line in output.splitlines():
        if line.endswith("\tnop") and not after_prefix:
            continue
        kept.append(line)
        after_prefix = _prefix_only(line.rpartition("\t")[2])
    return "\n".join(kept)


@dataclass(frozen=True)
class Section:
    address: int
    file_offset: int
    data: bytes


@dataclass(frozen=True)
class Function:
    address: int
    size: int
    name: str


@dataclass
class Binary:
    """An ELF file's executable sections, its functions and objdump's listing of them."""

    path: str
    sections: list[Section]
    functions: list[Function]
    listing: dict[int, Listed]

    def section_of(self, address: int) -> Section | None:
        for section in self.sections:
            if section.address <= address < section.address + len(section.data):
                return section
        return None


def _debug_file(elf: ELFFile) -> str | None:
    """The separate debug file (with the full .symtab) installed for ``elf``, if any."""
    note_section = elf.get_section_by_name(".note.gnu.build-id")
    if not isinstance(note_section, NoteSection):
        return None
    for note in note_section.iter_notes():
        if note["n_type"] == "NT_GNU_BUILD_ID":
            build_id = note["n_desc"]
            path = f"{DEBUG_ROOT}/{build_id[:2]}/{build_id[2:]}.debug"
            return path if os.path.exists(path) else None
    return None


def _functions(elf: ELFFile) -> Iterator[Function]:
    for section in elf.iter_sections():
        if not isinstance(section, SymbolTableSection):
            continue
        for symbol in section.iter_symbols():
            if (
                symbol["st_info"]["type"] in ("STT_FUNC", "STT_GNU_IFUNC")
                and symbol["st_size"] > 0
                and symbol["st_shndx"] != "SHN_UNDEF"
            ):
                yield Function(symbol["st_value"], symbol["st_size"], symbol.name)


def load_binary(path: str) -> Binary:
    """Read ``path``'s code and functions (from its debug file too), and objdump it."""
    if not os.path.exists(path):
        pytest.skip(f"{path} is not on this host")
    with open(path, "rb") as file:
        elf = ELFFile(file)
        sections = [
            Section(s["sh_addr"], s["sh_offset"], s.data())
            for s in elf.iter_sections()
            if s["sh_type"] == "SHT_PROGBITS" and s["sh_flags"] & 0x4  # SHF_EXECINSTR
        ]
        by_address = {f.address: f for f in _functions(elf)}
        debug = _debug_file(elf)
    if debug is not None:
        with open(debug, "rb") as file:
            for function in _functions(ELFFile(file)):
                by_address.setdefault(function.address, function)
    functions = sorted(by_address.values(), key=lambda f: f.address)
    return Binary(path, sections, functions, run_objdump(path))


AVX512_SOURCE = r"""
#include <immintrin.h>
#include <stddef.h>

/* Never called: encodings with length quirks, assembled by gas, so objdump can judge them. */
__asm__(
    ".text\n.globl quirks\n.type quirks,@function\nquirks:\n"
    "endbr64\n nop\n nopl (%rax)\n nopw 0x0(%rax,%rax,1)\n nopl 0x0(%rax)\n"
    "nopw %cs:0x0(%rax,%rax,1)\n .byte 0x66,0x66,0x2e,0x0f,0x1f,0x84,0,0,0,0,0\n ud2\n int3\n"
    "int $0x80\n ud1 %eax,%ecx\n ud0 (%rax),%ecx\n"
    "movabs 0x1122334455667788,%eax\n movabs %al,0x1122334455667788\n"
    "movabs 0x1122334455667788,%rax\n movabs %ax,0x1122334455667788\n"
    ".byte 0x67,0xa1,0x44,0x33,0x22,0x11\n"
    "movabs $0x1122334455667788,%rax\n movabs $0x1122334455667788,%r11\n mov $0x1234,%ax\n"
    "mov $0x12345678,%r8d\n add $0x1234,%ax\n add $0x12345678,%eax\n add $0x12345678,%rax\n"
    "pushw $0x1234\n push $0x12345678\n push $1\n imul $0x1234,%ax,%cx\n"
    "imul $0x12345678,%eax,%ecx\n imul $5,%eax,%ecx\n movw $0x1234,(%rax)\n movl $1,8(%rsp)\n"
    "movq $-1,0x11223344(%rip)\n movb $1,(%rip)\n"
    "test $1,%cl\n test $0x1234,%cx\n testl $0x12345678,8(%rsp)\n testb $1,0x11223344(,%rax,8)\n"
    "notl %eax\n negq %rax\n mull %ecx\n divq 8(%rsp)\n idivb (%rax)\n"
    "ret $8\n lretq $8\n enter $0x10,$1\n leave\n lretq\n iretq\n"
    "jmp 1f\n 1: call 2f\n 2: jne 3f\n 3: jne quirks\n loop 4f\n 4: jrcxz 5f\n 5: jecxz 6f\n"
    "6: jmp quirks\n xbegin 7f\n 7: xabort $1\n xend\n data16 xbegin 8f\n 8:\n"
    "mov %cr0,%rax\n mov %rax,%cr4\n mov %rax,%db7\n mov %db6,%rax\n"
    "extrq $2,$1,%xmm0\n insertq $2,$1,%xmm1,%xmm0\n extrq %xmm1,%xmm0\n insertq %xmm1,%xmm0\n"
    "popcnt %eax,%ecx\n lzcnt (%rax),%ecx\n tzcnt %eax,%ecx\n"
    "femms\n pfadd %mm1,%mm0\n pfmul 8(%rsp),%mm0\n pi2fd 0x11223344(%rip),%mm1\n"
    "prefetchw (%rax)\n pshufw $0x1b,%mm1,%mm0\n psrlw $2,%xmm0\n pslld $2,%mm0\n psrldq $2,%xmm0\n"
    "shld $5,%eax,%ecx\n shrd $5,%eax,(%rdi)\n shld %cl,%eax,%ecx\n bt $5,%eax\n btsq $5,8(%rsp)\n"
    "cmpps $0,%xmm1,%xmm0\n cmpsd $1,8(%rsp),%xmm0\n pinsrw $0,%eax,%xmm0\n pextrw $0,%xmm0,%eax\n"
    "shufps $0,%xmm1,%xmm0\n palignr $8,%xmm1,%xmm0\n pextrd $1,%xmm0,%eax\n"
    "pextrq $1,%xmm0,(%rax)\n roundps $1,(%rax),%xmm0\n pcmpistri $0,%xmm1,%xmm0\n"
    "sha1rnds4 $0,%xmm1,%xmm0\n aeskeygenassist $1,%xmm1,%xmm0\n pclmulqdq $0x11,%xmm1,%xmm0\n"
    "gf2p8affineqb $1,%xmm1,%xmm0\n pshufb %xmm1,%xmm0\n crc32b %al,%ecx\n crc32q (%rax),%rcx\n"
    "movbe (%rdi),%eax\n sha256rnds2 %xmm0,%xmm1,%xmm2\n adcx %eax,%ecx\n adox (%rax),%rcx\n"
    "syscall\n cpuid\n rdtsc\n rdtscp\n lfence\n mfence\n sfence\n clflush (%rax)\n"
    "clflushopt (%rax)\n prefetcht0 (%rax)\n prefetchnta 0x40(%rax,%rbx,2)\n xsave (%rdi)\n"
    "xrstor64 (%rdi)\n cmpxchg16b (%rdi)\n rdrand %eax\n rdseed %rax\n rdpid %rax\n"
    "rdfsbase %rax\n wrgsbase %rax\n"
    "lock cmpxchg %ecx,(%rdi)\n lock xaddq %rax,0x10(%rsp)\n rep movsb\n repne scasb\n"
    "rep stosq\n mov %fs:0x28,%rax\n mov %gs:(%rax),%eax\n xchg %ax,%ax\n pause\n"
    "fld %st(1)\n fldt 8(%rsp)\n fstpl (%rdi)\n fnstcw (%rsp)\n faddp\n fisttpll (%rax)\n fwait\n"
    "movsxd (%rax),%rcx\n movzbl (%rax),%eax\n cmovne %eax,%ecx\n sete %al\n bswap %r9\n"
    "cbw\n cwtl\n cltq\n cqto\n sahf\n lahf\n pushfq\n popfq\n in $0x80,%al\n out %al,$0x80\n"
    "in (%dx),%eax\n insb\n outsl\n hlt\n cmc\n clc\n stc\n cli\n sti\n cld\n std\n int1\n"
    "xlat\n lea 0x10(%rsp,%rax,8),%rdi\n lea 0x11223344(%rip),%rax\n lea (%r13),%rax\n"
    "lea (%r12),%rax\n lea 0(,%rbx,4),%rax\n mov (%r13,%rax,2),%eax\n"
    "mov 0x11223344(,%r13,1),%eax\n addr32 mov (%eax),%eax\n addr32 lea 0x10(%eip),%eax\n"
    "notrack jmp *%rax\n jmp *0x11223344(%rip)\n"
    "call *%rax\n call *8(%rax)\n lcall *(%rax)\n ljmp *(%rax)\n pop (%rax)\n pushq 8(%rsp)\n"
    "incb (%rax)\n decl %eax\n sldt %eax\n lgdt (%rax)\n lar %ax,%cx\n lsl %eax,%ecx\n"
    "clts\n invd\n wbinvd\n sysretq\n sysenter\n sysexitq\n getsec\n rdmsr\n wrmsr\n rdpmc\n"
    "rsm\n push %fs\n pop %gs\n swapgs\n vmcall\n xgetbv\n monitor\n mwait\n clac\n stac\n"
    "vmread %rax,%rcx\n vmwrite (%rax),%rcx\n vmptrld (%rax)\n invept (%rax),%rcx\n"
    "movnti %eax,(%rdi)\n maskmovq %mm1,%mm0\n movq %mm0,%rax\n movd %eax,%xmm0\n"
    "cvtsi2sd %rax,%xmm0\n cvttsd2si %xmm0,%eax\n movdqu (%rax),%xmm0\n"
    "vzeroupper\n vzeroall\n vmovdqa (%rdi),%ymm0\n vpshufd $0x1b,%ymm1,%ymm0\n"
    "vcmpps $0,%ymm1,%ymm0,%ymm2\n vbroadcastss 8(%rsp),%ymm0\n"
    "vinsertf128 $1,%xmm1,%ymm0,%ymm0\n vpalignr $8,0x11223344(%rip),%ymm1,%ymm0\n"
    "andn %eax,%ecx,%edx\n rorx $5,%eax,%ecx\n bextr %eax,(%rdi),%ecx\n pdep %rax,%rcx,%rdx\n"
    "shlx %eax,%ecx,%edx\n vgatherdps %ymm2,(%rax,%ymm1,4),%ymm0\n vpermq $0x1b,%ymm1,%ymm0\n"
    "vblendvps %ymm3,%ymm2,%ymm1,%ymm0\n vfmadd231ps (%rax),%ymm1,%ymm0\n vmovdqu (%r8),%xmm9\n"
    "vpextrw $1,%xmm0,%eax\n vpinsrw $1,%eax,%xmm0,%xmm0\n vpsrlq $3,%ymm1,%ymm0\n"
    "vshufps $0,%xmm1,%xmm0,%xmm0\n vcvtph2ps %xmm0,%ymm0\n vcvtps2ph $0,%ymm0,%xmm0\n"
    "vpdpbusd %ymm1,%ymm2,%ymm3\n"
    "kmovw %k1,%eax\n kortestw %k1,%k2\n kshiftlw $2,%k1,%k2\n kandq %k1,%k2,%k3\n"
    "vaddps %zmm1,%zmm0,%zmm0\n vaddps {rn-sae},%zmm1,%zmm0,%zmm0\n vmovups 0x40(%rsp),%zmm0\n"
    "vmovups %zmm31,0x11223344(%rax,%r15,8)\n vpternlogd $0xff,%zmm1,%zmm0,%zmm0\n"
    "vpgatherdd (%rax,%zmm1,4),%zmm0{%k1}\n vcmpps $0,%zmm1,%zmm0,%k1\n"
    "vpshufd $0x1b,%zmm1,%zmm0{%k1}{z}\n vpsrld $2,%zmm1,%zmm0\n vextractf32x4 $1,%zmm0,%xmm1\n"
    "vaddps (%rax){1to16},%zmm0,%zmm0\n vpcmpeqb %zmm1,%zmm0,%k1\n vpcmpub $1,%zmm1,%zmm0,%k1\n"
    "vpinsrw $1,%eax,%xmm16,%xmm16\n vpextrw $1,%xmm16,%eax\n vshufps $0,%zmm1,%zmm0,%zmm0\n"
    "vpsllq $3,(%rax){1to8},%zmm0\n"
    "vaddph %zmm1,%zmm0,%zmm0\n vfmadd132ph %zmm1,%zmm0,%zmm0\n vcvtph2psx %ymm1,%zmm0\n"
    "vcmpph $0,%zmm1,%zmm0,%k1\n vmovsh (%rax),%xmm0\n vrcpph %zmm1,%zmm0\n"
    "vpcmov %xmm3,%xmm2,%xmm1,%xmm0\n vprotb $1,%xmm1,%xmm0\n vprotb %xmm2,%xmm1,%xmm0\n"
    "vpcomb $0,%xmm2,%xmm1,%xmm0\n vfrczps %xmm1,%xmm0\n vphaddbw (%rax),%xmm0\n"
    "vpperm %xmm3,%xmm2,%xmm1,%xmm0\n bextr $0x1234,%eax,%ecx\n blcfill %eax,%ecx\n"
    "blci %rax,%rcx\n llwpcb %eax\n lwpins $1,%eax,%ecx\n"
    "ldtilecfg (%rax)\n tileloadd (%rax,%rbx,1),%tmm0\n tdpbssd %tmm1,%tmm2,%tmm3\n tilerelease\n"
    "ret\n"
    ".size quirks, .-quirks\n");

void saxpy(float *restrict y, const float *restrict x, float a, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] += a * x[i];
}

float dot(const float *x, const float *y, size_t n) {
    __m512 acc = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        acc = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i), acc);
    __mmask16 tail = (__mmask16)((1u << (n - i)) - 1);
    acc = _mm512_mask3_fmadd_ps(_mm512_maskz_loadu_ps(tail, x + i),
                                _mm512_maskz_loadu_ps(tail, y + i), acc, tail);
    return _mm512_reduce_add_ps(acc);
}

void gather(float *out, const float *table, const int *index, size_t n) {
    for (size_t i = 0; i + 16 <= n; i += 16) {
        __m512i idx = _mm512_loadu_si512(index + i);
        __m512 v = _mm512_i32gather_ps(idx, table, 4);
        __mmask16 big = _mm512_cmp_ps_mask(v, _mm512_set1_ps(1.0f), _CMP_GT_OQ);
        v = _mm512_mask_add_round_ps(v, big, v, v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
        v = _mm512_shuffle_ps(v, v, 0x1b);
        __m512i bits = _mm512_srli_epi32(_mm512_castps_si512(v), 3);
        bits = _mm512_shuffle_epi32(bits, 0x4e);
        bits = _mm512_ternarylogic_epi32(bits, idx, bits, 0x96);
        _mm512_mask_compressstoreu_ps(out + i, big, _mm512_castsi512_ps(bits));
        _mm_storeu_ps(out, _mm512_extractf32x4_ps(v, 3));
    }
}

int main(int argc, char **argv) {
    (void)argv;
    float x[64], y[64];
    int idx[64];
    for (int i = 0; i < 64; i++) { x[i] = (float)i; y[i] = (float)argc; idx[i] = 63 - i; }
    saxpy(y, x, 2.0f, 64);
    gather(y, x, idx, 64);
    return (int)dot(x, y, 64 - argc) & 1;
}
"""


@functools.cache
def avx512_program() -> str:
    return str(build_c(AVX512_SOURCE, name="avx512", flags=("-O2", "-mavx512f")))


@functools.cache
def binaries() -> dict[str, Binary]:
    """The oracle binaries, read and objdumped in parallel (once per test session)."""
    paths = {
        "libc": LIBC,
        "bash": BASH,
        "libstdc++": LIBSTDCXX,
        "libcrypto": LIBCRYPTO,
        "avx512": avx512_program(),
    }
    present = {name: path for name, path in paths.items() if os.path.exists(path)}
    with ThreadPoolExecutor(max_workers=4) as pool:
        loaded = dict(zip(present, pool.map(load_binary, present.values()), strict=True))
    return loaded


def binary(name: str) -> Binary:
    loaded = binaries()
    if name not in loaded:
        pytest.skip(f"{name} is not on this host")
    return loaded[name]


@dataclass
class Coverage:
    """How one binary's functions compare with objdump."""

    functions: int = 0
    functions_agreeing: int = 0
    functions_ending_in_data: int = 0  # stopped at bytes objdump cannot decode either
    instructions: int = 0  # listed by objdump inside functions, (bad) ones excepted
    instructions_agreeing: int = 0
    disagreements: list[str] = field(default_factory=list)


def compare_functions(binary: Binary) -> Coverage:
    """Decode every function of ``binary`` from its start and hold each instruction against
    objdump's: the same start, the same length. At bytes objdump calls (bad) (data in code)
    the function ends; where this decoder refuses bytes objdump decodes, or decodes them to
    another length, it disagrees."""
    coverage = Coverage()
    for function in binary.functions:
        section = binary.section_of(function.address)
        if section is None:
            continue
        coverage.functions += 1
        start = function.address - section.address
        end = min(start + function.size, len(section.data))
        code = memoryview(section.data)[:end]
        listed = [
            binary.listing.get(address)
            for address in range(function.address, function.address + (end - start))
        ]
        coverage.instructions += sum(1 for entry in listed if entry is not None and not entry.bad)
        position, outcome = start, "agree"
        while position < end:
            entry = listed[position - start]
            raw = bytes(code[position : position + 15]).hex()
            where = f"{function.name}+{position - start:#x} ({raw})"
            try:
                length = instruction_length(code, position)
            except UndecodableInstruction as error:
                outcome = "data" if entry is not None and entry.bad else (
                    f"{where}: refused ({error.reason}), objdump: {entry}"
                )
                break
            if entry is not None and entry.bad:
                outcome = "data"
                break
            if entry is None or entry.length != length:
                outcome = f"{where}: length {length}, objdump: {entry}"
                break
            coverage.instructions_agreeing += 1
            position += length
        if outcome == "agree":
            coverage.functions_agreeing += 1
        elif outcome == "data":
            coverage.functions_ending_in_data += 1
        else:
            coverage.disagreements.append(outcome)
    return coverage


@pytest.mark.parametrize("name", ["libc", "bash", "libstdc++", "libcrypto", "avx512"])
def test_every_function_agrees_with_objdump(name: str) -> None:
    coverage = compare_functions(binary(name))
    summary = (
        f"{name}: {coverage.functions_agreeing}/{coverage.functions} functions agree "
        f"({coverage.functions_ending_in_data} end in data), "
        f"{coverage.instructions_agreeing}/{coverage.instructions} instructions"
    )
    print(summary)
    assert not coverage.disagreements, summary + "\n" + "\n".join(coverage.disagreements[:20])
    assert coverage.functions > 0
    assert coverage.instructions_agreeing == coverage.instructions, summary


# Not libcrypto: its .text holds OpenSSL's lookup tables, which objdump reads as instructions.
@pytest.mark.parametrize("name", ["libc", "bash", "libstdc++", "avx512"])
def test_every_listed_instruction_agrees_with_objdump(name: str) -> None:
    """Beyond functions: every instruction objdump lists in the executable sections (PLT,
    padding, code without a symbol) has the same length here, or objdump could not decode it."""
    loaded = binary(name)
    disagreements = []
    for section in loaded.sections:
        for offset in range(len(section.data)):
            entry = loaded.listing.get(section.address + offset)
            if entry is None:
                continue
            try:
                length = instruction_length(section.data, offset)
            except UndecodableInstruction as error:
                if not entry.bad:
                    disagreements.append(f"{section.address + offset:#x}: {error.reason} {entry}")
                continue
            if not entry.bad and length != entry.length:
                disagreements.append(f"{section.address + offset:#x}: {length} {entry}")
    assert not disagreements, "\n".join(disagreements[:20])


def _opcode_kinds(loaded: Binary) -> set[str]:
    """Which encodings (VEX, EVEX, XOP) objdump saw in ``loaded``'s functions."""
    kinds = set()
    for function in loaded.functions:
        section = loaded.section_of(function.address)
        if section is None:
            continue
        for address in range(function.address, function.address + function.size):
            entry = loaded.listing.get(address)
            if entry is None or entry.bad:
                continue
            offset = address - section.address
            first, second = (section.data[offset : offset + 2] + b"\0")[:2]
            if first == 0x8F:
                kinds.add("XOP" if second & 0x38 else "legacy")
            else:
                kinds.add({0xC4: "VEX", 0xC5: "VEX", 0x62: "EVEX"}.get(first, "legacy"))
    return kinds


def test_the_oracle_binaries_hold_avx_and_avx512_code() -> None:
    assert {"VEX", "EVEX", "XOP"} <= _opcode_kinds(binary("avx512"))
    assert {"VEX", "EVEX"} <= _opcode_kinds(binary("libc"))


# -- a sweep over every opcode, and random bytes, against objdump -----------------------------

# Each candidate sits at the start of a slot, followed by NOPs (90h): whatever displacement
# and immediate the decoders take come from them, and the NOPs after resynchronise objdump
# before the next slot. The NOPs are dropped from the listings before parsing, so the few
# candidates that are a bare NOP go uncompared here (the hand-written encodings have them).
_SWEEP_SLOT = 20
_RANDOM_SLOT = 32
_MODRM_FORMS = [
    b"\x04\x25",  # SIB without base: disp32
    b"\xc1",  # register
    b"\x05",  # RIP + disp32
    b"\x45",  # disp8
    b"\x84\x24",  # SIB + disp32
    b"\x14",  # SIB, base register, no displacement
]
_SWEEP_PREFIXES = [b"\x66", b"\xf3", b"\xf2", b"\x48", b"\x67", b"\x66\x48", b"\xf0"]
_LEGACY = frozenset(b"\x66\x67\xf2\xf3\xf0\x2e\x36\x3e\x26\x64\x65") | frozenset(range(0x40, 0x50))
_ESCAPES = (0x0F, 0x62, 0xC4, 0xC5, 0x8F)


@functools.cache
def sweep_candidates() -> tuple[bytes, ...]:
    """Every opcode of every map: without prefixes under six ModRM forms, under each of a few
    prefixes with a register and a memory form; VEX and EVEX under each ``pp``, XOP."""
    candidates = []
    for prefix, forms in [(b"", _MODRM_FORMS)] + [(p, _MODRM_FORMS[:2]) for p in _SWEEP_PREFIXES]:
        for opcode in range(256):
            if opcode not in _LEGACY and opcode not in _ESCAPES:
                candidates += [prefix + bytes([opcode]) + form for form in forms]
            if opcode not in (0x38, 0x3A):
                candidates += [prefix + bytes([0x0F, opcode]) + form for form in forms]
            for escape in (0x38, 0x3A):
                candidates += [prefix + bytes([0x0F, escape, opcode]) + form for form in forms]
    candidates += [b"\x8f" + form for form in _MODRM_FORMS]
    for pp in range(4):
        for opcode in range(256):
            for form in _MODRM_FORMS[:2]:
                candidates.append(bytes([0xC5, 0xF8 | pp, opcode]) + form)
                for vex_map in (1, 2, 3):
                    candidates.append(bytes([0xC4, 0xE0 | vex_map, 0x78 | pp, opcode]) + form)
                for evex_map in (1, 2, 3, 5, 6):
                    evex = bytes([0x62, 0xF0 | evex_map, 0x7C | pp, 0x48, opcode])
                    candidates.append(evex + form)
    for xop_map in (8, 9, 10):
        for opcode in range(256):
            for form in _MODRM_FORMS[:2]:
                with_reg_1 = bytes([form[0] | 0x08]) + form[1:]  # TBM groups need reg != 0
                for modrm in (form, with_reg_1):
                    candidates.append(bytes([0x8F, 0xE0 | xop_map, 0x78, opcode]) + modrm)
    return tuple(candidates)


def random_candidates(count: int, seed: int = 20240611) -> list[bytes]:
    """Random byte strings, often behind an escape or a prefix; most are garbage, but
    thousands decode as something."""
    generator = random.Random(seed)
    starts = [b"", b"", b"", b"\x66", b"\x48", b"\x0f", b"\x0f\x38", b"\x0f\x3a", b"\xc5",
              b"\xc4", b"\x62", b"\x8f", b"\xf3\x0f", b"\x66\x0f"]
    return [(generator.choice(starts) + generator.randbytes(16))[:16] for _ in range(count)]


def _slots(candidates: Sequence[bytes], slot: int) -> bytes:
    return b"".join(candidate.ljust(slot, b"\x90") for candidate in candidates)


def objdump_slots(candidates: Sequence[bytes], slot: int, tmp_path: Path) -> list[Listed | None]:
    """objdump's reading of each candidate."""
    path = tmp_path / "candidates.bin"
    path.write_bytes(_slots(candidates, slot))
    listing = run_objdump("-D", "-b", "binary", "-m", "i386:x86-64", str(path), drop_nops=True)
    return [listing.get(index * slot) for index in range(len(candidates))]


# Where objdump decodes and this decoder refuses on purpose: no processor runs these as
# objdump reads them, or Intel and AMD processors differ.
DELIBERATE_REFUSALS = (
    "Intel and AMD",  # 66 E8, 66 E9, 66 0F 8x
    "after 66, F2, F3, F0 or REX",  # VEX/EVEX/XOP after these prefixes: #UD
    "longer than 15 bytes",  # #GP
    "is reserved",  # 66 0F 78 /1-/7, reserved in AMD's group 17; objdump reads EXTRQ
)


def compare_slots(
    candidates: Sequence[bytes], slot: int, listed: Sequence[Listed | None]
) -> tuple[int, list[str]]:
    """(how many candidates both decoders decode alike, the disagreements)."""
    agreeing, disagreements = 0, []
    for candidate, entry in zip(candidates, listed, strict=True):
        code = candidate.ljust(slot, b"\x90")
        try:
            length = instruction_length(code)
        except UndecodableInstruction as error:
            if entry is not None and not entry.bad and not any(
                reason in error.reason for reason in DELIBERATE_REFUSALS
            ):
                disagreements.append(f"{code[:15].hex()}: refused ({error.reason}), {entry}")
            continue
        if entry is None or entry.bad:
            continue
        if entry.length == length:
            agreeing += 1
        else:
            disagreements.append(f"{code[:15].hex()}: {length}, {entry}")
    return agreeing, disagreements


def test_every_opcode_agrees_with_objdump(tmp_path: Path) -> None:
    candidates = sweep_candidates()
    listed = objdump_slots(candidates, _SWEEP_SLOT, tmp_path)
    agreeing, disagreements = compare_slots(candidates, _SWEEP_SLOT, listed)
    assert not disagreements, f"{len(disagreements)}:\n" + "\n".join(disagreements[:30])
    assert agreeing > 10000


def test_random_bytes_agree_with_objdump(tmp_path: Path) -> None:
    candidates = random_candidates(20000)
    listed = objdump_slots(candidates, _RANDOM_SLOT, tmp_path)
    agreeing, disagreements = compare_slots(candidates, _RANDOM_SLOT, listed)
    assert not disagreements, f"{len(disagreements)}:\n" + "\n".join(disagreements[:30])
    assert agreeing > 5000


def _llvm_objdump() -> str | None:
    found = shutil.which("llvm-objdump")
    if found:
        return found
    installed = sorted(Path("/usr/lib").glob("llvm-*/bin/llvm-objdump"), reverse=True)
    return str(installed[0]) if installed else None


def _llvm_excuses(candidate: bytes) -> bool:
    """Where llvm-objdump 19 departs from the manuals (or reads APX): left out."""
    stripped = candidate.lstrip(bytes(_LEGACY))
    prefixes = candidate[: len(candidate) - len(stripped)]
    near_branch = stripped[:1] in (b"\xe8", b"\xe9") or (
        stripped[:1] == b"\x0f" and 0x80 <= stripped[1] <= 0x8F
    )
    return (
        # 66h before REX.W read as a rel16; the SDM and the APM give REX.W precedence.
        (near_branch and 0x66 in prefixes)
        # D5 read as APX's REX2 prefix, which processors without APX reject.
        or stripped[:1] == b"\xd5"
        # 66/F2/F3 0F 78 memory forms read as VMREAD.
        or stripped[:2] == b"\x0f\x78"
    )


def test_every_opcode_agrees_with_llvm_objdump(tmp_path: Path) -> None:
    """A second decoder, unrelated to binutils."""
    llvm_objdump, objcopy = _llvm_objdump(), shutil.which("objcopy")
    if llvm_objdump is None or objcopy is None:
        pytest.skip("llvm-objdump or objcopy is not installed")
    candidates = sweep_candidates()
    blob, obj = tmp_path / "candidates.bin", tmp_path / "candidates.o"
    blob.write_bytes(_slots(candidates, _SWEEP_SLOT))
    subprocess.run(
        [objcopy, "-I", "binary", "-O", "elf64-x86-64", "-B", "i386:x86-64", "--rename-section",
         ".data=.text,alloc,load,readonly,code,contents", str(blob), str(obj)],
        check=True,
    )
    output = subprocess.run(
        [llvm_objdump, "-d", str(obj)], capture_output=True, text=True, check=True
    ).stdout
    # "   addr: bytes<TAB>text" becomes objdump's "   addr:<TAB>bytes<TAB>text".
    lines = []
    for line in _without_nops(output).splitlines():
        address, colon, rest = line.partition(": ")
        address = address.strip()
        if colon and address and all(c in "0123456789abcdef" for c in address):
            raw, _, text = rest.partition("\t")
            text = "(bad)" if text.strip() == "<unknown>" else text.strip()
            lines.append(f" {address}:\t{raw}\t{text}")
    listing = parse_objdump("\n".join(lines))
    listed = [
        None if _llvm_excuses(candidate) else listing.get(index * _SWEEP_SLOT)
        for index, candidate in enumerate(candidates)
    ]
    agreeing, disagreements = compare_slots(candidates, _SWEEP_SLOT, listed)
    assert not disagreements, f"{len(disagreements)}:\n" + "\n".join(disagreements[:30])
    assert agreeing > 10000


# -- boundary_in ------------------------------------------------------------------------------


def _boundary_cases(loaded: Binary, function: Function) -> Iterator[tuple[int, bool]]:
    """(file offset, expected) for each instruction objdump lists in ``function``, and for
    the byte after each start of a multi-byte instruction."""
    section = loaded.section_of(function.address)
    assert section is not None
    for address in range(function.address, function.address + function.size):
        entry = loaded.listing.get(address)
        if entry is None:
            continue
        if entry.bad:
            return
        file_offset = address - section.address + section.file_offset
        yield file_offset, True
        if entry.length > 1:
            yield file_offset + 1, False


def _check_boundaries(loaded: Binary, functions: list[Function]) -> int:
    checked = 0
    for function in functions:
        section = loaded.section_of(function.address)
        assert section is not None
        start = function.address - section.address + section.file_offset
        for file_offset, expected in _boundary_cases(loaded, function):
            found = _boundary(loaded.path, start, function.size, file_offset)
            assert found is expected, f"{function.name}+{file_offset - start:#x}"
            checked += 1
    return checked


def test_boundaries_in_the_avx512_program() -> None:
    loaded = binary("avx512")
    assert _check_boundaries(loaded, loaded.functions) > 400


def test_boundaries_in_libc() -> None:
    loaded = binary("libc")
    wanted = ("malloc", "free", "memcpy", "strlen", "printf", "open64")
    sample = [
        f for f in loaded.functions if f.name in wanted or f.name.startswith("__memset_avx512")
    ]
    sample += [f for f in loaded.functions[::200] if f.size < 2000]
    assert len(sample) > 20
    assert _check_boundaries(loaded, sample) > 1000


def _boundary(path: str, start: int, size: int, file_offset: int) -> bool | None:
    """boundary_in on a function's bytes read from ``path`` (as check_site reads them)."""
    with open(path, "rb") as file:
        file.seek(start)
        code = file.read(size or file_offset - start + MAX_INSTRUCTION_LENGTH)
    return boundary_in(code, file_offset - start)


def test_boundary_edges(tmp_path: Path) -> None:
    path = tmp_path / "code.bin"
    # 4 padding bytes, then a function: endbr64, push %rbp, mov $imm32,%eax, ret; then 06.
    path.write_bytes(_hex("cccccccc f30f1efa 55 b878563412 c3 06"))
    function_size = 11
    assert _boundary(str(path), 4, function_size, 4) is True
    assert _boundary(str(path), 4, function_size, 8) is True
    assert _boundary(str(path), 4, function_size, 9) is True
    assert _boundary(str(path), 4, function_size, 14) is True
    for inside in (5, 6, 7, 10, 11, 12, 13):
        assert _boundary(str(path), 4, function_size, inside) is False
    # The size unknown (0): decoding goes as far as the offset needs.
    assert _boundary(str(path), 4, 0, 14) is True
    assert _boundary(str(path), 4, 0, 12) is False
    assert _boundary(str(path), 4, 0, 15) is True
    # Past the function's end, or into what does not decode: not known to be a boundary.
    assert _boundary(str(path), 4, function_size, 16) is None
    assert boundary_in(b"", 1) is None


def test_boundary_unknown_when_the_code_does_not_decode(tmp_path: Path) -> None:
    path = tmp_path / "code.bin"
    path.write_bytes(_hex("55 06 90 90 c3"))  # 06 (PUSH ES) is invalid in 64-bit mode
    assert _boundary(str(path), 0, 5, 1) is True  # before the bad byte
    assert _boundary(str(path), 0, 5, 3) is None
    # An instruction cut by the function's end, and a file shorter than the function.
    path.write_bytes(_hex("55 e8 0000"))
    assert _boundary(str(path), 0, 4, 3) is None
    assert _boundary(str(path), 0, 64, 3) is None


def test_boundary_on_a_missing_file() -> None:
    with pytest.raises(OSError):
        _boundary("/nonexistent/rawprobe-insn", 0, 16, 4)

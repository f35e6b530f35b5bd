"""The ``symbol`` type: an address shown as function+offset, resolved in user space."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import build_c, run_rawprobe

SOURCE = r"""
#include <stdio.h>
#include <unistd.h>
__attribute__((noinline)) void callee(void (*fp)(void)) { asm volatile("" ::: "memory"); }
__attribute__((noinline)) void target_fn(void) { asm volatile("nop; nop; nop" ::: "memory"); }
int main(void) {
    callee(target_fn);
    callee((void (*)(void))((char *)target_fn + 1));
    callee((void (*)(void))puts);
    callee((void (*)(void))16);
    usleep(500 * 1000); /* stay alive while rawprobe reads this process's mappings */
    return 0;
}
"""


def test_addresses_resolve_to_functions() -> None:
    program: Path = build_c(SOURCE, name="symtype", flags=("-O1",))
    result = run_rawprobe("attach", "--json", f"p:{program}:callee fp=%di:symbol",
                          "--", str(program), check_status=0)
    values = [json.loads(line)["args"]["fp"] for line in result.stdout.splitlines()[:-1]]
    assert values[0] == "target_fn"
    assert values[1] == "target_fn+0x1"
    assert values[2] in ("puts", "_IO_puts")  # an alias of the same libc function
    assert values[3] == "0x10"  # in no mapping: the address itself

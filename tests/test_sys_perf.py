"""perf_event_attr as declared through ctypes, checked against the kernel's own header."""

from __future__ import annotations

import ctypes
import subprocess

from helpers import CompileC

from rawprobe._sys.perf import (
    FLAG_DISABLED,
    FLAG_ENABLE_ON_EXEC,
    FLAG_INHERIT,
    PerfEventAttr,
)

MEMBERS = [
    "type", "size", "config", "sample_period", "sample_type", "read_format", "wakeup_events",
    "bp_type", "config1", "config2", "branch_sample_type", "sample_regs_user",
    "sample_stack_user", "clockid", "sample_regs_intr", "aux_watermark", "sample_max_stack",
    "aux_sample_size", "sig_data",
]

# Prints offsetof() of each member and where the flag bits fall, per <linux/perf_event.h>.
ORACLE = r"""
#include <stdio.h>
#include <stddef.h>
#include <string.h>
#include <linux/perf_event.h>
#define P(m) printf(#m " %zu\n", offsetof(struct perf_event_attr, m));
static unsigned long long bits(struct perf_event_attr *a) {
    unsigned long long v; memcpy(&v, (char *)a + offsetof(struct perf_event_attr, read_format)
                                 + sizeof(a->read_format), 8); return v; }
int main(void) {
    P(type) P(size) P(config) P(sample_period) P(sample_type) P(read_format) P(wakeup_events)
    P(bp_type) P(config1) P(config2) P(branch_sample_type) P(sample_regs_user)
    P(sample_stack_user) P(clockid) P(sample_regs_intr) P(aux_watermark) P(sample_max_stack)
    P(aux_sample_size) P(sig_data)
    struct perf_event_attr a;
    memset(&a, 0, sizeof a); a.disabled = 1; printf("disabled %llu\n", bits(&a));
    memset(&a, 0, sizeof a); a.inherit = 1; printf("inherit %llu\n", bits(&a));
    memset(&a, 0, sizeof a); a.enable_on_exec = 1; printf("enable_on_exec %llu\n", bits(&a));
    printf("VER7 %d\n", PERF_ATTR_SIZE_VER7);
    return 0;
}
"""


def test_layout_matches_linux_perf_event_h(compile_c: CompileC) -> None:
    oracle = compile_c(ORACLE, name="perf_attr_oracle")
    output = subprocess.run([str(oracle)], capture_output=True, text=True, check=True).stdout
    facts = dict(line.split() for line in output.splitlines())
    for member in MEMBERS:
        assert getattr(PerfEventAttr, member).offset == int(facts[member]), member
    assert int(facts["disabled"]) == FLAG_DISABLED
    assert int(facts["inherit"]) == FLAG_INHERIT
    assert int(facts["enable_on_exec"]) == FLAG_ENABLE_ON_EXEC
    assert ctypes.sizeof(PerfEventAttr) == int(facts["VER7"])

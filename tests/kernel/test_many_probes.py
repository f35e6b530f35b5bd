"""Many probes at once: uprobe_multi links, left-out sites, and what a glob over libc costs."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from helpers import build_c, require_feature, run_rawprobe

from rawprobe import UsageError
from rawprobe._bpf.session import BpfSession
from rawprobe._probe.aggregations import AggregationSpec
from rawprobe._sys.features import UPROBE_MULTI
from rawprobe._tracer import Tracer

MANY_SOURCE = "\n".join(
    [f"__attribute__((noinline)) long fn{i}(long v) {{ asm volatile(\"\"); return v + {i}; }}"
     for i in range(200)]
    + ["int main(void) { long s = 0;"]
    + [f"for (int k = 0; k < {i % 3 + 1}; k++) s += fn{i}(k);" for i in range(200)]
    + ["return s == 42; }"]
)

AVX_SOURCE = r"""
#include <stdio.h>
long evex16(long a);
long vex1(long a);
__attribute__((noinline)) long plain(long a) { asm volatile(""); return a; }
asm(".text\n"
    ".globl evex16\n.type evex16,@function\nevex16:\n"
    "  vpbroadcastq %rdi,%zmm16\n  vmovq %xmm16,%rax\n  vzeroupper\n  ret\n"
    ".globl vex1\n.type vex1,@function\nvex1:\n  vmovq %rdi,%xmm1\n  vmovq %xmm1,%rax\n  ret\n");
int main(void) {
    long bad = 0;
    for (long i = 1; i <= 5; i++) bad |= (evex16(i) != i) | (vex1(i) != i) << 1 | (plain(i) != i);
    printf("bad=%ld\n", bad);
    return 0;
}
"""


@pytest.fixture(scope="module")
def many() -> Path:
    return build_c(MANY_SOURCE, name="many", flags=("-O1",))


def test_two_hundred_functions_counted_exactly(many: Path) -> None:
    require_feature(UPROBE_MULTI)  # Linux 6.6+: one link for the 200 uprobes
    started = time.monotonic()
    with Tracer(command=[str(many)], aggregation=AggregationSpec("count")) as tracer:
        tracer.add(f"p:{many}:fn*")
        session = tracer._session
        list(tracer.events(timeout=60))
        counts = tracer.aggregates().as_dict()
        assert isinstance(tracer._session, BpfSession)
        multi = tracer._session.multi
    elapsed = time.monotonic() - started
    assert counts == {(f"fn{i}", None): i % 3 + 1 for i in range(200)}
    assert session is None  # started lazily by events()
    assert multi  # one uprobe_multi link for the 200 uprobes
    # 200 perf-event uprobes would take ~20 s to remove on this kernel.
    assert elapsed < 10


def test_avx_first_instructions_are_refused(tmp_path: Path) -> None:
    program = build_c(AVX_SOURCE, name="avx", flags=("-O1",))
    for function in ("evex16", "vex1"):
        result = run_rawprobe("attach", "--count", f"p:{program}:{function}", "--", str(program))
        assert result.returncode == 2, result.stderr
        # Either rawprobe's own refusal (which --force overrides) or the kernel's (which no
        # option does: the probe would never fire).
        assert "refusing to probe" in result.stderr and (
            "--force" in result.stderr or "the kernel refuses" in result.stderr)
    # In a glob they are left out, with a warning, and the program is unharmed.
    result = run_rawprobe("attach", "--count", f"p:{program}:*", "--", str(program),
                          check_status=0)
    assert "bad=0" in result.stdout
    assert "left out (evex16)" in result.stderr and "left out (vex1)" in result.stderr
    assert "plain" in result.stdout


def test_glob_matching_nothing_names_the_pattern(many: Path) -> None:
    with pytest.raises(UsageError, match="zz"):
        Tracer().add(f"p:{many}:zz*")


def test_target_process_unharmed_by_every_libc_function() -> None:
    # Every libc function probed in one process that then does real work: it must finish,
    # and with the right output (the AVX sites rawprobe leaves out would corrupt it).
    script = ("import time, json, hashlib, subprocess; time.sleep(4); "
              "print(json.dumps({'h': hashlib.sha256(b'x').hexdigest()[:8]}), "
              "subprocess.run(['echo', 'child'], capture_output=True).stdout.strip())")
    target = subprocess.Popen(["/usr/bin/python3", "-c", script], stdout=subprocess.PIPE,
                              text=True)
    result = run_rawprobe("attach", "--count", "-p", str(target.pid), "p:libc:*", timeout=120)
    out, _ = target.communicate(timeout=60)
    assert target.returncode == 0
    assert out.strip() == """{"h": "2d711642"} b'child'"""
    assert result.returncode == 0, result.stderr

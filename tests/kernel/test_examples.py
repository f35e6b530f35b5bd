"""The example tools in examples/, run for real against programs that know what they did."""

from __future__ import annotations

import re
import subprocess
import sys

from helpers import ROOT, build_c, require_tool

EXAMPLES = ROOT / "examples"

NAPS = r"""
#include <stdlib.h>
#include <unistd.h>
__attribute__((noinline)) void nap(int ms) { usleep(ms * 1000); }
int main(int argc, char **argv) { for (int i = 0; i < 3; i++) nap(20); return 0; }
"""

QUERIES = r"""
#include <sys/sdt.h>
#include <unistd.h>
static void query(long id, const char *sql, int ms) {
    DTRACE_PROBE2(app, query__start, id, sql);
    usleep(ms * 1000);
    DTRACE_PROBE1(app, query__done, id);
}
int main(void) {
    query(1, "SELECT * FROM users", 30);
    query(2, "UPDATE stock SET n = n - 1", 5);
    return 0;
}
"""

LEAKY = r"""
#include <stdlib.h>
#include <unistd.h>
__attribute__((noinline)) void *leaky(size_t n) { return malloc(n); }
__attribute__((noinline)) void tidy(void) { free(malloc(100)); }
int main(void) {
    for (int i = 0; i < 4; i++) leaky(1000 + i);
    for (int i = 0; i < 10; i++) tidy();
    usleep(300 * 1000); /* alive while its stacks are symbolized */
    return 0;
}
"""


def run_example(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True,
                          text=True, timeout=120, cwd=ROOT)


def test_funclatency() -> None:
    program = build_c(NAPS, name="naps", flags=("-O1",))
    result = run_example("funclatency.py", f"{program}:nap", "--", str(program))
    assert result.returncode == 0, result.stderr
    assert "@nap (ns):" in result.stdout
    assert re.search(r"\[16M, 32M\)\s+3 \|@+", result.stdout), result.stdout


def test_usdt_queries() -> None:
    require_tool("gcc")
    program = build_c(QUERIES, name="queries", flags=("-O1",))
    result = run_example("usdt_queries.py", str(program), "--", str(program))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split("  pid")[0].strip().endswith("ms") for line in lines] == [True, True]
    first, second = (float(line.split()[0]) for line in lines)
    assert lines[0].endswith("SELECT * FROM users") and 30 <= first < 200
    assert lines[1].endswith("UPDATE stock SET n = n - 1") and 5 <= second < 100
    assert "2 queries" not in result.stderr and "0 queries still running" in result.stderr


def test_leaks() -> None:
    program = build_c(LEAKY, name="leaky", flags=("-O0", "-fno-omit-frame-pointer"))
    result = run_example("leaks.py", "--", str(program))
    assert result.returncode == 0, result.stderr
    top = result.stdout.split("\n\n")[0]
    assert top.startswith("4006 bytes in 4 allocations from:"), result.stdout
    assert "leaky" in top and "main" in top
    assert "tidy" not in result.stdout  # freed: not a suspect


def test_examples_type_check_strictly() -> None:
    result = subprocess.run([sys.executable, "-m", "mypy", "--strict", str(EXAMPLES)],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
